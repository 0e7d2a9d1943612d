"""The stack's own PostgreSQL cluster: created once, run unprivileged, holding Airflow's database."""

from __future__ import annotations

import os
import subprocess
import tempfile

import psycopg2
from psycopg2 import sql

from stackctl.errors import ComponentFailedError
from stackctl.model import monitoring
from stackctl.model.infrastructure import POSTGRES_TLS
from stackctl.model.target import TLS_CERT, TLS_KEY
from stackctl.native.secrets import write_private
from stackctl.native.stack import NativeStack

SUPERUSER = "postgres"
# Databases of the stack and the role that owns each: Airflow's metadata, and the platform's
# own data (tenants, interactions, training runs), kept apart from it.
DATABASES = {"airflow": "airflow", "platform": "platform"}
# The role postgres_exporter connects as: read-only statistics (pg_monitor), and of the data
# only MONITORING_COLUMNS of the airflow database, for the exporter's queued and running task
# instances per queue (monitoring/postgres_exporter/queries.yml): {table: columns}.
MONITORING_ROLE = monitoring.MONITORING_DB_ROLE
MONITORING_COLUMNS = {"task_instance": ("queue", "state")}


def as_pg_user(stack: NativeStack, command: list[str]) -> list[str]:
    return ["runuser", "-u", stack.pg_user, "--", *command] if stack.pg_user else command


def ensure_cluster(stack: NativeStack, superuser_password: str) -> None:
    """initdb on first start; on every start, who may connect how (pg_hba.conf) and, with tls, its
    certificate and key."""
    ids = stack.pg_user_ids()
    for folder in (stack.pg_dir, stack.pg_socket_dir, stack.home / POSTGRES_TLS):
        folder.mkdir(parents=True, exist_ok=True)
        if ids:
            os.chown(folder, *ids)
    stack.pg_dir.chmod(0o700)
    if not (stack.pg_data / "PG_VERSION").exists():
        _initdb(stack, superuser_password, ids)
    write_private(stack.pg_data / "pg_hba.conf", hba(stack.tls), ids)
    if stack.tls:  # copies it can read as its own account: the stack's TLS folder is the stack user's alone
        for name in (TLS_CERT, TLS_KEY):
            write_private(stack.home / POSTGRES_TLS / name, (stack.tls_dir / name).read_text(), ids)


def hba(tls: bool) -> str:
    """Password (SCRAM) authentication for every connection: over the socket, which only the stack's
    accounts can enter, and over TCP, from loopback only (listen_addresses is the bind host) and with
    tls over TLS only: `hostssl`, and no `host` line for a plain connection to match."""
    tcp = "hostssl" if tls else "host"
    return (
        "# Written by stackctl on every start (native/postgres.py): edits here are replaced.\n"
        "local    all  all                scram-sha-256\n"
        f"{tcp:<8} all  all  127.0.0.1/32  scram-sha-256\n"
        f"{tcp:<8} all  all  ::1/128       scram-sha-256\n"
    )


def _initdb(stack: NativeStack, superuser_password: str, ids: tuple[int, int] | None) -> None:
    # initdb reads the superuser password from a file the unprivileged user can read;
    # it lives inside the 0700 folder and is removed at once.
    with tempfile.NamedTemporaryFile("w", dir=stack.pg_dir, delete=False) as pwfile:
        pwfile.write(superuser_password)
    try:
        if ids:
            os.chown(pwfile.name, *ids)
        result = subprocess.run(
            as_pg_user(stack, [
                str(stack.pg_bin / "initdb"), "-D", str(stack.pg_data), "-U", SUPERUSER,
                "--auth=scram-sha-256", f"--pwfile={pwfile.name}", "--encoding=UTF8", "--locale=C",
            ]),
            capture_output=True, text=True,
        )
    finally:
        os.unlink(pwfile.name)
    if result.returncode != 0:
        raise ComponentFailedError("postgres", "initdb failed", result.stderr[-2000:])


def tls_parameters(stack: NativeStack) -> dict[str, str]:
    """libpq's TLS parameters for the stack's clients (model/target.Target.postgres_tls)."""
    return stack.target({}).postgres_tls


def connect(stack: NativeStack, password: str, user: str = SUPERUSER, dbname: str = "postgres"):
    return psycopg2.connect(
        host=stack.bind_host, port=stack.ports["postgres"], user=user, password=password,
        dbname=dbname, connect_timeout=3, **tls_parameters(stack),
    )


def reload(stack: NativeStack, superuser_password: str) -> None:
    """A running PostgreSQL re-reads pg_hba.conf and its certificate and key."""
    conn = connect(stack, superuser_password)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_reload_conf()")
    finally:
        conn.close()


def is_ready(stack: NativeStack, superuser_password: str) -> bool:
    try:
        connect(stack, superuser_password).close()
        return True
    except psycopg2.OperationalError:
        return False


def ensure_databases(stack: NativeStack, superuser_password: str, role_passwords: dict[str, str]) -> None:
    """Create each role and database if missing; reset role passwords to the current secrets."""
    conn = connect(stack, superuser_password)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for role, password in role_passwords.items():
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(
                    sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(role)), (password,)
                )
                if role == MONITORING_ROLE:
                    cur.execute(sql.SQL("GRANT pg_monitor TO {}").format(sql.Identifier(role)))
            for database, owner in DATABASES.items():
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                if not cur.fetchone():
                    cur.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(owner))
                    )
    finally:
        conn.close()


def grant_monitoring(conn) -> None:
    """Let the monitoring role read MONITORING_COLUMNS of the airflow database, and nothing else of it.

    `conn` is a connection to the airflow database as its owner or a superuser (compose's init
    runs it as the owner). The tables exist only after `airflow db migrate`: call it after each
    migration; granting again is harmless.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT current_database()")
        database = sql.Identifier(cur.fetchone()[0])
        role = sql.Identifier(MONITORING_ROLE)
        # CONNECT and the schema's USAGE are PUBLIC's by default; granted too for a hardened cluster.
        cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, role))
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role))
        for table, columns in MONITORING_COLUMNS.items():
            cur.execute(sql.SQL("GRANT SELECT ({}) ON {} TO {}").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table), role))
    conn.commit()
