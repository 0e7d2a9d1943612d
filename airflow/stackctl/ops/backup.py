"""`stackctl backup` and `stackctl restore`: both databases and the object store's served state.

A backup (a folder or an s3:// prefix; its format in backup_archive.py) holds:

    databases/airflow.dump, databases/platform.dump   pg_dump, custom format: each one snapshot of its database
    objects/tenants/<t>/models/CURRENT.json           each tenant's pointer
    objects/tenants/<t>/models/<version>/...          the artifacts and manifest of the version it names:
                                                      a restored stack must serve it, not just know its name
    objects/tenants/<t>/training/...                  the training data: a restored stack retrains from it
    secrets/fernet_key, secrets/admin_password        what the databases' contents depend on (DATA_SECRETS)
    MANIFEST.json                                     every file's sha256, written last

Left out: staging (one run's intermediate files, rebuilt by a retry) and versions no pointer names
(history; their training rows stay in the platform database).

Consistency: each database is one snapshot (pg_dump's transaction), taken while the stack runs.
The two databases and the objects are not one instant; they are what a crash at some instant
leaves, which the deploy journal already recovers from (workers/training/deploys.py): a version
is immutable and complete before a pointer names it, and each pointer is copied before the
version it names, so every copied pointer comes with its version.

Restore replaces a running stack's data: it checks the backup first, stops every process but
PostgreSQL, restores both databases as their owner roles (so ownership and grants are the target
stack's own), resets the data-quality watermarks (transaction ids of the old cluster: see
workers/dq/summaries.forget_transaction_ids), installs DATA_SECRETS, writes the objects, then
starts the stack as `up` does,
which re-runs `airflow db migrate` and the init (the monitoring grant, platform migrations, the
pools). One backup or restore of a stack runs at a time (backup_archive.exclusive).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from psycopg2 import sql

from stackctl.errors import StackError
from stackctl.native import lifecycle, postgres
from stackctl.native.secrets import write_private
from stackctl.native.stack import NativeStack
from stackctl.native.supervisor import Supervisor
from stackctl.ops import backup_archive
from workers.dq import summaries

# Encrypted Airflow fields (trigger kwargs, connections and variables stored in the database) need
# the fernet key they were written with, and the restored users table holds the admin's password
# hash: the backup carries both (owner-only), and restore installs them, so the restored stack
# reads its data and its admin logs in with the password now in <home>/secrets/admin_password.
DATA_SECRETS = ("fernet_key", "admin_password")
PG_TIMEOUT_S = 1800
POSTGRES_START_TIMEOUT_S = 60


@dataclass(frozen=True)
class Database:
    """Where pg_dump / pg_restore connect: TCP on the stack's loopback port, the password in PGPASSWORD."""

    name: str
    host: str
    port: int
    user: str
    password: str
    tls: tuple[tuple[str, str], ...] = ()  # libpq's TLS parameters (postgres.tls_parameters)

    def run(self, command: list[str], what: str) -> None:
        # libpq reads each parameter from its PG<NAME> variable too: PGSSLMODE, PGSSLROOTCERT.
        env = {**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "10",
               **{f"PG{name.upper()}": value for name, value in self.tls}}
        args = [*command, f"--host={self.host}", f"--port={self.port}", f"--username={self.user}",
                f"--dbname={self.name}", "--no-password"]
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=PG_TIMEOUT_S)
        if done.returncode != 0:
            raise StackError(f"{what} of database {self.name} failed: {done.stderr.strip()[-2000:]}")


def dump(pg_bin: Path, database: Database, path: Path) -> None:
    # Custom format: compressed, and pg_restore can restore it without owners or grants.
    database.run([str(pg_bin / "pg_dump"), "--format=custom", f"--file={path}"], "pg_dump")


def restore_database(pg_bin: Path, superuser: Database, database: Database, path: Path) -> None:
    """Replace the database with the dump: dropped, created empty for its owner, restored as that owner.

    --no-owner/--no-privileges: every object is the restoring owner's, as in a freshly made stack,
    and grants are the target's own (the init grants the monitoring role again). One transaction:
    a failed restore leaves the database empty, never half-filled.
    """
    conn = postgres_connect(superuser)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            name, owner = sql.Identifier(database.name), sql.Identifier(database.user)
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(name, owner))
    finally:
        conn.close()
    database.run([str(pg_bin / "pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
                  "--single-transaction", str(path)], "pg_restore")


def postgres_connect(database: Database):
    import psycopg2

    return psycopg2.connect(host=database.host, port=database.port, user=database.user,
                            password=database.password, dbname=database.name, connect_timeout=10, **dict(database.tls))


# --- objects ---------------------------------------------------------------------------------

def _files_below(base, relative: str) -> list[str]:
    """Paths (relative to the storage root) of every file below base/relative."""
    folder = base / relative
    if not folder.exists():
        return []
    prefix = base.path.rstrip("/") + "/"
    return sorted(found.removeprefix(prefix) for found in folder.fs.find(folder.path))


def copy_objects(base, target: Path) -> dict[str, str | None]:
    """Copy each tenant's pointer, the version it names and the training data; {tenant: version}."""
    from workers import storage

    served = {}
    for tenant in storage.root_tenants(base):
        pointer = f"tenants/{tenant}/models/CURRENT.json"
        wanted = _files_below(base, f"tenants/{tenant}/training")
        version = None
        if (base / pointer).exists():
            data = storage.read_bytes(base / pointer)
            _write(target / pointer, data)
            try:
                version = json.loads(data)["version"]
            except (ValueError, KeyError, TypeError):
                raise StackError(f"{base / pointer} names no version; fix or remove it, then back up again") from None
            published = f"tenants/{tenant}/models/{version}"
            if not (base / published / "manifest.json").exists():
                raise StackError(f"{base / pointer} names {version}, which has no manifest.json: not published")
            wanted += _files_below(base, published)
        served[tenant] = version
        for relative in wanted:
            _write(target / relative, storage.read_bytes(base / relative))
    return served


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def restore_objects(folder: Path, base) -> None:
    """Write the backup's objects into the stack's storage: data, then each version's manifest, then
    the pointers, as publish and deploy do (workers/training/artifacts.py), so a reader never meets a
    pointer to an incomplete version; manifests and pointers are replaced atomically."""
    from workers import storage

    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    last = {"manifest.json": 1, "CURRENT.json": 2}
    for relative in sorted(files, key=lambda name: last.get(name.rsplit("/", 1)[-1], 0)):
        data = (folder / relative).read_bytes()
        if relative.rsplit("/", 1)[-1] in last:
            storage.replace_atomically(base / relative, data)
        else:
            storage.write_bytes(base / relative, data)


# --- the stack -------------------------------------------------------------------------------

def _databases(stack: NativeStack, secret_values: dict[str, str]) -> dict[str, Database]:
    """Each database reached as its owner role (postgres.DATABASES), whose password is <owner>_db_password."""
    tls = tuple(postgres.tls_parameters(stack).items())
    return {name: Database(name, stack.bind_host, stack.ports["postgres"], owner, secret_values[f"{owner}_db_password"],
                           tls) for name, owner in postgres.DATABASES.items()}


def _superuser(stack: NativeStack, secret_values: dict[str, str], dbname: str = "postgres") -> Database:
    return Database(dbname, stack.bind_host, stack.ports["postgres"], postgres.SUPERUSER,
                    secret_values["postgres_superuser_password"], tuple(postgres.tls_parameters(stack).items()))


def _pg_bin(stack: NativeStack) -> Path:
    if stack.pg_bin is None:
        raise StackError("PostgreSQL 15's client programs are not installed (/usr/lib/postgresql/15/bin): `make setup`")
    return stack.pg_bin


def storage_base(stack: NativeStack):
    # The stack's Airflow settings for this process, before Airflow is imported: an s3:// root's
    # connection is the stack's (its connections file), as for the workers. Only Airflow's: the rest
    # of that environment (its PATH) is for Airflow's processes, not for this one's runuser.
    os.environ.update({key: value for key, value in lifecycle.operator_env(stack).items() if key.startswith("AIRFLOW")})
    from workers import storage

    variables = json.loads((stack.airflow_home / "variables.json").read_text())
    return storage.root(variables["platform_storage_uri"], variables.get("platform_storage_conn_id"))


def _require_running(stack: NativeStack) -> None:
    if not Supervisor(stack).is_running():
        raise StackError(f"the stack in {stack.home} is not running; start it with `stackctl --home {stack.home} up`")


def backup(stack: NativeStack, destination: str) -> dict:
    """Write a backup of the running stack to a new folder or s3:// prefix; what it holds."""
    _require_running(stack)
    secret_values = lifecycle.read_secrets(stack)
    pg_bin = _pg_bin(stack)
    with backup_archive.exclusive(stack.home), backup_archive.staging_folder(destination) as folder:
        started = time.monotonic()
        (folder / "databases").mkdir()
        for name, database in _databases(stack, secret_values).items():
            dump(pg_bin, database, folder / "databases" / f"{name}.dump")
        served = copy_objects(storage_base(stack), folder / "objects")
        (folder / "secrets").mkdir(mode=backup_archive.PRIVATE_FOLDER_MODE)
        for name in DATA_SECRETS:
            write_private(folder / "secrets" / name, secret_values[name])
        where = backup_archive.publish(folder, destination, {
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "stack": str(stack.home),
            "databases": sorted(postgres.DATABASES), "tenants": served,
        })
        return {"where": where, "tenants": served, "seconds": round(time.monotonic() - started, 1)}


# What a restore would replace, by database: (what, query counting it). Scheduled runs do not count:
# the DAGs are unpaused at creation (config.yaml), so a fresh stack's scheduler has made each
# schedule's latest firing within a minute of `up`; runs someone asked for (manual, backfill) and
# tenants are what marks a stack as used.
IN_USE = {
    "airflow": ("DAG runs not made by the schedule", "SELECT count(*) FROM dag_run WHERE run_type <> 'scheduled'"),
    "platform": ("tenants", "SELECT count(*) FROM tenants"),
}


def existing_data(stack: NativeStack, secret_values: dict[str, str]) -> list[str]:
    """What a restore would replace (empty for a fresh stack), e.g. ["3 tenants"]."""
    found = []
    for dbname, (what, query) in IN_USE.items():
        conn = postgres_connect(_superuser(stack, secret_values, dbname))
        try:
            with conn.cursor() as cur:
                cur.execute(query)
                count = cur.fetchone()[0]
        finally:
            conn.close()
        if count:
            found.append(f"{count} {what}")
    return found


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[], None]
    left: str  # the state a failure of this step leaves


def restore(stack: NativeStack, source: str, force: bool = False, log: Callable[[str], None] = print) -> dict:
    """Replace the running stack's databases, data secrets and objects with the backup's, and start it again."""
    _require_running(stack)
    pg_bin = _pg_bin(stack)
    with backup_archive.exclusive(stack.home), backup_archive.fetched(source) as (folder, manifest):
        secret_values = lifecycle.read_secrets(stack)
        found = existing_data(stack, secret_values)
        if found and not force:
            raise StackError(f"the stack in {stack.home} already has data ({', '.join(found)}); restore replaces it: "
                             "pass --force to replace it, or restore into a fresh stack")
        started = time.monotonic()
        supervisor = Supervisor(stack)
        owners = _databases(stack, secret_values)
        again = f"run `stackctl --home {stack.home} restore --force {source}` again to finish"

        def keep_only_postgres() -> None:
            # A full stop, then supervisord with PostgreSQL alone: nothing else holds a connection or
            # writes an object while they are replaced. `up` below starts the rest.
            supervisor.shutdown()
            supervisor.start_daemon()
            supervisor.start_group("postgres", wait=False)
            deadline = time.monotonic() + POSTGRES_START_TIMEOUT_S
            while not postgres.is_ready(stack, secret_values["postgres_superuser_password"]):
                supervisor.raise_if_failed(("postgres",))
                if time.monotonic() > deadline:
                    raise StackError(f"PostgreSQL does not accept connections after {POSTGRES_START_TIMEOUT_S} s; "
                                     f"see {stack.program_log('postgres')}")
                time.sleep(1)

        def install_secrets() -> None:
            for name in DATA_SECRETS:
                write_private(stack.secret_path(name), (folder / "secrets" / name).read_text())

        steps = [Step("stop every process but PostgreSQL", keep_only_postgres,
                      f"nothing restored; the stack is stopped or partly stopped: `stackctl --home {stack.home} up`")]
        for name, database in owners.items():
            steps.append(Step(
                f"restore the {name} database",
                lambda database=database: restore_database(pg_bin, _superuser(stack, secret_values), database,
                                                           folder / "databases" / f"{database.name}.dump"),
                f"the {name} database is empty (its restore is one transaction), the stack stopped; {again}"))
        def forget_transaction_ids() -> None:
            conn = postgres.connect(stack, secret_values["platform_db_password"], user="platform", dbname="platform")
            try:
                summaries.forget_transaction_ids(conn)
            finally:
                conn.close()

        steps += [
            Step("reset the data-quality watermarks (the old cluster's transaction ids)", forget_transaction_ids,
                 f"databases restored, the next data-quality run may miss new rows, the stack stopped; {again}"),
            Step("install the backup's fernet key and admin password", install_secrets,
                 f"databases restored, secrets maybe not, the stack stopped; {again}"),
            Step("write the objects", lambda: restore_objects(folder / "objects", storage_base(stack)),
                 f"databases restored, objects partly written (no pointer before its version), "
                 f"the stack stopped; {again}"),
            Step("start the stack (migrations, init, health)", lambda: lifecycle.up(stack),
                 f"everything restored but the stack did not become healthy and is stopped: "
                 f"see the error, then `stackctl --home {stack.home} up`"),
        ]
        for number, step in enumerate(steps, 1):
            log(f"restore [{number}/{len(steps)}] at {time.monotonic() - started:.0f} s: {step.name}")
            try:
                step.run()
            except Exception as exc:
                raise StackError(f"restore failed at step {number}/{len(steps)} ({step.name}): {exc}\n"
                                 f"state: {step.left}") from exc
        return {"tenants": manifest["tenants"], "created_at": manifest["created_at"],
                "seconds": round(time.monotonic() - started, 1)}
