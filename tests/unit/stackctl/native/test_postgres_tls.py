"""PostgreSQL over TLS (config.yaml's tls), as the model runs it and its clients reach it: stackctl,
Airflow's sync and async engines, the tasks' and the services' platform connection, pg_dump and the
exporter all verify its certificate (verify-full); a plain connection, a client that trusts another
CA, and any client of a server whose certificate expired are refused, each with an error that says so."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import ssl
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg2
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine

from stackctl.errors import StackError
from stackctl.model import settings
from stackctl.model.target import TLS_CA
from stackctl.native import certificates, postgres
from stackctl.native.stack import NativeStack
from stackctl.ops import airflow_database, backup
from workers import hooks

from .conftest import expire_host_certificate, rendered_stack, started, wait_until_ready

SSL_IN_USE = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


@contextmanager
def running_postgres(stack: NativeStack, secret_values: dict[str, str]) -> Iterator[NativeStack]:
    """The model's PostgreSQL of `stack`, with its cluster, roles and databases made as `stackctl up` makes them."""
    superuser = secret_values["postgres_superuser_password"]
    postgres.ensure_cluster(stack, superuser)
    with started(stack, secret_values, "postgres") as server:
        wait_until_ready(server, lambda: postgres.is_ready(stack, superuser), "postgres", 30)
        postgres.ensure_databases(stack, superuser, {
            "airflow": secret_values["airflow_db_password"], "platform": secret_values["platform_db_password"],
            postgres.MONITORING_ROLE: secret_values["monitoring_db_password"]})
        yield stack


@pytest.fixture
def home() -> Iterator[Path]:
    """A state folder PostgreSQL's unprivileged account can enter (pytest's own is root's alone), whose
    path has a space: the CA's path goes in URLs and in a connection's extra."""
    parent = Path(tempfile.mkdtemp(prefix="pytest-pg-tls-"))
    parent.chmod(0o711)
    try:
        yield parent / "a home"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def model_postgres_tls(home) -> Iterator[tuple[NativeStack, dict[str, str]]]:
    stack, secret_values = rendered_stack(home, tls=True)
    with running_postgres(stack, secret_values):
        yield stack, secret_values


def uses_tls(conn) -> bool:
    with conn.cursor() as cur:
        cur.execute(SSL_IN_USE)
        return cur.fetchone()[0]


def verifies(conn) -> bool:
    """A libpq connection over TLS that verified the server's CA and name (libpq's default, prefer, uses
    TLS where the server offers it and verifies nothing)."""
    info = conn.info  # psycopg2's, or psycopg 3's (the provider's hook uses it where it is installed)
    parameters = info.dsn_parameters if hasattr(info, "dsn_parameters") else info.get_parameters()
    return uses_tls(conn) and parameters["sslmode"] == "verify-full"


def test_stackctl_airflow_and_the_tasks_reach_postgres_over_verified_tls(model_postgres_tls, monkeypatch):
    stack, secret_values = model_postgres_tls
    target = stack.target(secret_values)
    conn = postgres.connect(stack, secret_values["postgres_superuser_password"])
    assert verifies(conn)
    conn.close()

    database = settings.render_settings(stack.source, target)["database"]
    assert "sslmode=verify-full&sslrootcert=" in database["sql_alchemy_conn"]
    engine = create_engine(database["sql_alchemy_conn"])
    with engine.connect() as sync:
        assert verifies(sync.connection.dbapi_connection)
    engine.dispose()

    async def async_engine_uses_tls() -> bool:
        engine = create_async_engine(database["sql_alchemy_conn_async"],
                                     connect_args=airflow_database.connect_args(database["sql_alchemy_conn"]))
        try:
            async with engine.connect() as conn:
                return (await conn.execute(text(SSL_IN_USE))).scalar()
        finally:
            await engine.dispose()

    assert asyncio.run(async_engine_uses_tls())

    fields = settings.render_connections(stack.source, target)[hooks.DB_CONN_ID]
    assert json.loads(fields["extra"]) == {"sslmode": "verify-full", "sslrootcert": str(stack.tls_dir / TLS_CA)}
    monkeypatch.setenv("AIRFLOW_CONN_PLATFORM_DB", json.dumps(fields))
    for connect in (hooks.platform_db, hooks.platform_db_for_service):
        conn = connect()
        assert verifies(conn)
        conn.close()


def test_backups_dump_over_verified_tls(model_postgres_tls, tmp_path):
    stack, secret_values = model_postgres_tls
    platform = backup._databases(stack, secret_values)["platform"]
    backup.dump(stack.pg_bin, platform, tmp_path / "platform.dump")
    assert (tmp_path / "platform.dump").stat().st_size > 0
    # pg_dump verifies: trusting another CA, it is refused.
    other = tmp_path / "other"
    certificates.ensure(other, "other", {"cp": ["127.0.0.1"]})
    trusting_other = {**dict(platform.tls), "sslrootcert": str(other / TLS_CA)}
    distrusting = dataclasses.replace(platform, tls=tuple(trusting_other.items()))
    with pytest.raises(StackError, match="certificate verify failed"):
        backup.dump(stack.pg_bin, distrusting, tmp_path / "refused.dump")


def test_the_exporter_reads_postgres_over_tls(model_postgres_tls):
    stack, secret_values = model_postgres_tls
    with started(stack, secret_values, "postgres-exporter") as exporter:
        deadline = time.monotonic() + 20
        while True:
            try:
                metrics = httpx.get(f"http://127.0.0.1:{stack.ports['postgres_exporter']}/metrics", timeout=5).text
                if "\npg_up " in metrics:
                    break
            except httpx.TransportError:
                pass
            assert exporter.poll() is None, exporter.stdout.read()
            assert time.monotonic() < deadline, "the exporter did not report pg_up"
            time.sleep(0.2)
    assert "\npg_up 1\n" in metrics


def plain(stack: NativeStack, secret_values: dict[str, str], **tls):
    return psycopg2.connect(host=stack.bind_host, port=stack.ports["postgres"], user=postgres.SUPERUSER,
                            password=secret_values["postgres_superuser_password"], dbname="postgres",
                            connect_timeout=3, **tls)


def test_a_client_without_tls_is_refused(model_postgres_tls):
    with pytest.raises(psycopg2.OperationalError, match="no encryption"):
        plain(*model_postgres_tls, sslmode="disable")


def test_a_client_that_trusts_another_ca_is_refused_and_says_why(model_postgres_tls, tmp_path):
    other = tmp_path / "other"
    certificates.ensure(other, "other", {"cp": ["127.0.0.1"]})
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        plain(*model_postgres_tls, sslmode="verify-full", sslrootcert=str(other / TLS_CA))


def test_a_postgres_whose_certificate_expired_is_refused_and_the_client_says_why(home, monkeypatch):
    stack, secret_values = rendered_stack(home, tls=True)
    expire_host_certificate(stack, monkeypatch)
    superuser = secret_values["postgres_superuser_password"]
    postgres.ensure_cluster(stack, superuser)
    database = settings.render_settings(stack.source, stack.target(secret_values))["database"]

    async def async_engine_error() -> str:
        engine = create_async_engine(database["sql_alchemy_conn_async"],
                                     connect_args=airflow_database.connect_args(database["sql_alchemy_conn"]))
        try:
            async with engine.connect():
                pytest.fail("Airflow's async engine accepted PostgreSQL's expired certificate")
        except ssl.SSLCertVerificationError as exc:
            return str(exc)
        finally:
            await engine.dispose()

    with started(stack, secret_values, "postgres") as server:
        deadline = time.monotonic() + 30
        while True:
            try:
                postgres.connect(stack, superuser).close()
                pytest.fail("a client accepted PostgreSQL's expired certificate")
            except psycopg2.OperationalError as exc:  # libpq does not say why
                if "certificate verify failed" in str(exc):
                    break
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, str(exc)  # refused only until PostgreSQL listens
                time.sleep(0.2)
        assert not postgres.is_ready(stack, superuser)
        assert "certificate has expired" in asyncio.run(async_engine_error())


def test_without_tls_postgres_takes_plain_connections_and_no_tls_parameter_is_rendered(home):
    stack, secret_values = rendered_stack(home, tls=False)
    target = stack.target(secret_values)
    assert "?" not in settings.render_settings(stack.source, target)["database"]["sql_alchemy_conn"]
    assert json.loads(settings.render_connections(stack.source, target)[hooks.DB_CONN_ID]["extra"]) == {}
    assert airflow_database.connect_args(settings.render_settings(stack.source, target)["database"]
                                         ["sql_alchemy_conn"]) == {}
    with running_postgres(stack, secret_values):
        conn = plain(stack, secret_values, sslmode="disable")
        assert not uses_tls(conn)
        conn.close()

