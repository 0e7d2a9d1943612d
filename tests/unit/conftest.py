"""Unit tests run without a stack: Airflow gets a throwaway home, so nothing touches ~/airflow."""

import os
import pwd
import shlex
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

AIRFLOW_HOME = os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow-unit-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.pop("AIRFLOW_CONFIG", None)


def pytest_unconfigure(config):
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)  # the throwaway home goes with the session


# --- A throwaway PostgreSQL for the SQL layer (pytest-postgresql) ------------------------------
#
# One server per session on a random loopback port, started with pytest-postgresql's executor.
# The migrated platform schema is built once, in a template database; every test gets a fresh
# copy of it (CREATE DATABASE ... TEMPLATE), so tests never see each other's rows.
#
# PostgreSQL refuses to run as root, and the tests run as root here and in CI. Then pg_ctl is
# given to the plugin as a two-line wrapper that runs it as the stack's unprivileged account
# (cpstack, created by `make setup`, as airflow/stackctl/native/postgres.py does for the stack's own
# cluster), and the data directory, socket and log live in a folder owned by that account.
# As any other user, the plugin runs pg_ctl directly.

PG_DBNAME = "platform"
PG_SUPERUSER = "postgres"
# A test cluster: durability is not needed, speed is; and little WAL kept, as it may sit in memory.
PG_OPTIONS = ("-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
              " -c max_wal_size=64MB -c min_wal_size=32MB")


def _scratch_parent() -> str | None:
    """tmpfs when it has room: a cluster and its per-test databases are thousands of small files, which a
    disk (ext4 mounted with discard, here) creates and removes many times slower. None: the temp folder."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) and shutil.disk_usage(shm).free >= 1 << 30:
        return shm
    return None


def _real_pg_ctl(request) -> str:
    from stackctl.native.stack import PG_BIN_CANDIDATES

    chosen = request.config.getoption("postgresql_exec", default=None)  # --postgresql-exec, if given
    candidates = [chosen] if chosen else [*(str(Path(c) / "pg_ctl") for c in PG_BIN_CANDIDATES),
                                          shutil.which("pg_ctl")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"no PostgreSQL server (pg_ctl) among {candidates}: `make setup` installs PostgreSQL 15")


def _pg_ctl_as(user: str, pg_ctl: str, folder) -> str:
    """A pg_ctl that runs the real one as `user` (from /, which that user can read)."""
    wrapper = folder / "pg_ctl"
    command = f'runuser -u {shlex.quote(user)} -- {shlex.quote(pg_ctl)} "$@"'
    wrapper.write_text(f"#!/bin/sh\ncd / || exit 1\nexec {command}\n")
    wrapper.chmod(0o755)
    return str(wrapper)


def _apply_migrations(host, port, user, dbname, password=None, **_):
    import psycopg2

    from workers.platform_db import migrate

    conn = psycopg2.connect(host=host, port=port, user=user, dbname=dbname, password=password)
    try:
        migrate.apply(conn)
    finally:
        conn.close()


@pytest.fixture(scope="session")
def platform_pg(request, tmp_path_factory):
    """The session's PostgreSQL server (a pytest-postgresql executor) with the migrated template database."""
    from port_for import get_port
    from pytest_postgresql.executors import PostgreSQLExecutor
    from pytest_postgresql.janitor import DatabaseJanitor

    from stackctl.native.stack import POSTGRES_SYSTEM_USER

    pg_ctl = _real_pg_ctl(request)
    # mkdtemp: a 0700 folder whose parents every user can traverse (pytest's basetemp is 0700
    # and root's, so the unprivileged account could not reach it).
    folder = Path(tempfile.mkdtemp(prefix="pytest-platform-pg-", dir=_scratch_parent()))
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam(POSTGRES_SYSTEM_USER)
        except KeyError:
            shutil.rmtree(folder)
            pytest.fail(f"running as root needs the system user {POSTGRES_SYSTEM_USER} (`make setup` creates it)")
        os.chown(folder, account.pw_uid, account.pw_gid)
        # The wrapper stays in a folder of root's: the unprivileged account must not be able to swap it.
        pg_ctl = _pg_ctl_as(POSTGRES_SYSTEM_USER, pg_ctl, tmp_path_factory.mktemp("pg-ctl"))
    executor = PostgreSQLExecutor(
        executable=pg_ctl, host="127.0.0.1", port=get_port(None), datadir=str(folder / "data"),
        unixsocketdir=str(folder), logfile=str(folder / "postgresql.log"), startparams="-w",
        dbname=PG_DBNAME, user=PG_SUPERUSER, postgres_options=PG_OPTIONS,
    )
    try:
        executor.start()
        template = DatabaseJanitor(user=executor.user, host=executor.host, port=executor.port,
                                   dbname=executor.template_dbname, as_template=True)
        template.init()
        template.load(_apply_migrations)
        yield executor
    finally:
        try:
            if executor.running():
                executor.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _fresh_database(server, dbname: str, template: str | None):
    import psycopg2
    from pytest_postgresql.janitor import DatabaseJanitor

    with DatabaseJanitor(user=server.user, host=server.host, port=server.port, dbname=dbname,
                         template_dbname=template):
        conn = psycopg2.connect(host=server.host, port=server.port, user=server.user, dbname=dbname)
        try:
            yield conn
        finally:
            conn.close()


@pytest.fixture
def platform_db(platform_pg):
    """A psycopg2 connection to a fresh platform database with every migration applied."""
    with _fresh_database(platform_pg, platform_pg.dbname, platform_pg.template_dbname) as conn:
        yield conn


@pytest.fixture(scope="session")
def new_platform_db(platform_pg):
    """For fixtures of a wider scope: `with new_platform_db(name) as conn:` gives a fresh migrated database."""
    return lambda name: _fresh_database(platform_pg, name, platform_pg.template_dbname)


@pytest.fixture
def empty_db(platform_pg):
    """A psycopg2 connection to a fresh, empty database on the same server."""
    with _fresh_database(platform_pg, f"{platform_pg.dbname}_empty", None) as conn:
        yield conn
