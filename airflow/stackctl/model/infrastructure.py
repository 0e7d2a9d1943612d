"""PostgreSQL, Redis and object storage: run by the native stack and compose, managed services elsewhere.

Ansible's inventory points at the platform team's own: its `database` and `broker` groups say where
PostgreSQL and Redis are (MANAGED_GROUPS: the roles deploy nothing there), and an s3:// URI where
objects are. The native stack keeps objects in a folder (file://), compose in MinIO.
"""

from __future__ import annotations

from typing import Any

from stackctl.model.process import (
    BROKER,
    DATABASE,
    HTTP,
    POSTGRES,
    REDIS,
    STORAGE,
    SYSTEM,
    Image,
    Phase,
    Probe,
    Process,
)
from stackctl.model.redis_users import users, users_file
from stackctl.model.target import COMPOSE, TLS_CA, TLS_CERT, TLS_KEY, Target

# Host groups whose processes a platform team runs as managed services: ansible points at them.
MANAGED_GROUPS = (DATABASE, BROKER)
# The bucket of the platform's data in compose's MinIO (its platform_storage_uri is s3://<bucket>).
COMPOSE_BUCKET = "platform"


def redis_port(target: Target) -> tuple[str, ...]:
    """Redis's port: plain, or with tls TLS only (port 0 closes the plain one) with the host's certificate.
    Clients authenticate as their Redis user, not with a certificate of their own."""
    if not target.tls:
        return ("--port", target.port("redis"))
    return ("--port", "0", "--tls-port", target.port("redis"), "--tls-cert-file", target.tls_file(TLS_CERT),
            "--tls-key-file", target.tls_file(TLS_KEY), "--tls-ca-cert-file", target.tls_file(TLS_CA),
            "--tls-auth-clients", "no")


# PostgreSQL reads its certificate and key as the unprivileged account it runs as, which cannot enter
# the host's owner-only TLS folder: it is given copies in a folder of its own (native/postgres.py).
POSTGRES_TLS = "postgres/tls"


def postgres_tls(target: Target) -> tuple[str, ...]:
    """With tls, PostgreSQL's TLS on its one port; its pg_hba.conf then takes TCP connections over TLS only
    (native/postgres.py). Clients authenticate with their role's password, not with a certificate."""
    if not target.tls:
        return ()
    return ("-c", "ssl=on", "-c", f"ssl_cert_file={target.state(f'{POSTGRES_TLS}/{TLS_CERT}')}",
            "-c", f"ssl_key_file={target.state(f'{POSTGRES_TLS}/{TLS_KEY}')}")


def processes(source: dict[str, Any], target: Target) -> list[Process]:
    minio_user = {"MINIO_ROOT_USER": source["admin_user"]}
    redis_users = users_file(source)
    return [
        Process("postgres", DATABASE, SYSTEM, (
            "postgres", "-D", target.state("postgres/data"), "-c", f"listen_addresses={target.bind('postgres')}",
            "-c", f"port={target.port('postgres')}", *postgres_tls(target),
        ), Phase.DATA, listens=("postgres",), probe=Probe(POSTGRES, "postgres"),
            # The image's entrypoint creates the cluster on its first start, its roles and databases
            # from compose/postgres/init-databases.sh (natively: native/postgres.py).
            image=Image("postgres:15-bookworm", data_root="/var/lib/postgresql/data",
                        entrypoint=("docker-entrypoint.sh", "postgres"),
                        env=lambda t: {"PGDATA": t.state("postgres/data"), "PGPORT": t.port("postgres"),
                                       "POSTGRES_PASSWORD": t.secrets["postgres_superuser_password"]},
                        mounts=("./postgres/init-databases.sh:/docker-entrypoint-initdb.d/init-databases.sh:ro",)),
            # The database holds every role's credentials: it creates them on its first start.
            secrets=("postgres_superuser_password", "airflow_db_password", "platform_db_password",
                     "monitoring_db_password"),
            state=("postgres/data",), stop_signal="INT", stop_as_group=False),  # INT: fast shutdown
        Process("redis", BROKER, SYSTEM, (
            "redis-server", "--bind", target.bind("redis"), *redis_port(target), "--protected-mode", "yes",
            "--dir", target.state("redis"),
            # Queued task messages survive a Redis restart: the append-only file, no snapshots.
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            # Its users and their passwords (model/redis_users.py).
            "--include", target.secret_file(redis_users.name),
        ), Phase.DATA, listens=("redis",), probe=Probe(REDIS, "redis"),
            image=Image("redis:7.2-bookworm", data_root="/data", entrypoint=("docker-entrypoint.sh", "redis-server"),
                        user="redis"),
            secrets=tuple(user.secret for user in users(source)), secret_files=(redis_users,), state=("redis",)),
        Process("minio", STORAGE, SYSTEM, (
            "minio", "server", target.state("minio"), "--address", target.listen("minio"),
            "--console-address", target.listen("minio_console"),
        ), Phase.DATA, runs_on=frozenset({COMPOSE}), env=minio_user, listens=("minio", "minio_console"),
            probe=Probe(HTTP, "minio", "/minio/health/live"),
            image=Image("minio/minio:RELEASE.2024-11-07T00-52-20Z", data_root="/data", http_probe="mc ready local"),
            secrets=("minio_root_password",), state=("minio",)),
        # The bucket named by compose's platform_storage_uri.
        Process("minio-init", STORAGE, SYSTEM, (
            "sh", "-c", f'mc alias set local http://{target.hosts["minio"]}:{target.port("minio")} '
                        f'"$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" && mc mb --ignore-existing local/{COMPOSE_BUCKET}',
        ), Phase.INIT, runs_on=frozenset({COMPOSE}), env=minio_user, reaches=("minio",),
            image=Image("minio/mc:RELEASE.2024-11-05T11-29-45Z"), secrets=("minio_root_password",), one_shot=True),
    ]
