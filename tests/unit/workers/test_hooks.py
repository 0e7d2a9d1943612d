"""workers/hooks.py is the only code that reads Airflow connections and variables, and reads them right.

The hooks get their connections and variables as AIRFLOW_CONN_*/AIRFLOW_VAR_* environment
variables, as Airflow's secrets backend reads them on a worker or a service.
"""

import ast
import json
import ssl

import pytest

from stackctl.model import settings
from stackctl.native import certificates
from workers import hooks, storage

HOOKS = settings.REPO / "workers" / "hooks.py"
SCANNED = ("workers", "services", "dags", "plugins")
AIRFLOW_SECRETS = {"BaseHook", "Variable", "Connection"}


def reads_of_airflow_secrets(path) -> list[str]:
    """Where a file imports BaseHook, Variable or Connection from airflow, or calls get_connection or Variable.get."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "airflow":
            found += [f"line {node.lineno}: imports {a.name}" for a in node.names if a.name in AIRFLOW_SECRETS]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            attribute, owner = node.func.attr, node.func.value
            owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", None)
            if attribute == "get_connection" or (attribute == "get" and owner_name == "Variable"):
                found.append(f"line {node.lineno}: calls {owner_name}.{attribute}")
    return found


def test_only_the_hooks_module_reads_connections_and_variables():
    offenders = {
        str(path.relative_to(settings.REPO)): found
        for folder in SCANNED
        for path in sorted((settings.REPO / folder).rglob("*.py"))
        if path != HOOKS and (found := reads_of_airflow_secrets(path))
    }
    assert offenders == {}, "read connections and variables through workers/hooks.py"


def test_the_scan_finds_what_the_hooks_module_reads():
    found = reads_of_airflow_secrets(HOOKS)
    assert any("imports BaseHook" in f for f in found) and any("imports Variable" in f for f in found)
    assert any("get_connection" in f for f in found) and any("Variable.get" in f for f in found)


def test_a_service_s_url_defaults_to_http(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_INFERENCE_API", json.dumps({"conn_type": "http", "host": "inference.local",
                                                                  "port": 8090}))
    monkeypatch.setenv("AIRFLOW_CONN_PUSHGATEWAY", json.dumps({"conn_type": "http", "host": "pgw.example",
                                                               "port": 443, "schema": "https"}))
    assert hooks.http_service(hooks.INFERENCE_CONN_ID)[0] == "http://inference.local:8090"
    assert hooks.http_service(hooks.PUSHGATEWAY_CONN_ID)[0] == "https://pgw.example:443"


def test_a_service_s_auth_comes_from_its_connection(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_INFERENCE_API", json.dumps({"conn_type": "http", "host": "inference.local",
                                                                  "port": 8090, "password": "tok"}))
    monkeypatch.setenv("AIRFLOW_CONN_ALERTMANAGER", json.dumps({"conn_type": "http", "host": "am", "port": 9093,
                                                                "login": "admin", "password": "pw"}))
    monkeypatch.setenv("AIRFLOW_CONN_PUSHGATEWAY", json.dumps({"conn_type": "http", "host": "pgw", "port": 9091}))
    assert hooks.http_service(hooks.INFERENCE_CONN_ID) == ("http://inference.local:8090", ("airflow", "tok"), True)
    assert hooks.http_service(hooks.ALERTMANAGER_CONN_ID) == ("http://am:9093", ("admin", "pw"), True)
    assert hooks.http_service(hooks.PUSHGATEWAY_CONN_ID) == ("http://pgw:9091", None, True)


def test_an_https_service_is_verified_against_its_connection_s_ca(monkeypatch, tmp_path):
    certificates.ensure(tmp_path, "test", {"host": ["127.0.0.1"]})
    monkeypatch.setenv("AIRFLOW_CONN_PUSHGATEWAY", json.dumps({"conn_type": "http", "host": "pgw", "port": 9091,
                                                               "schema": "https",
                                                               "extra": {"verify": str(tmp_path / "ca.crt")}}))
    service = hooks.http_service(hooks.PUSHGATEWAY_CONN_ID)
    assert service.url == "https://pgw:9091"
    [ca] = service.verify.get_ca_certs()  # the connection's CA alone, not the public ones
    assert dict(name for [name] in ca["subject"])["commonName"].startswith("test CA")
    assert service.verify.verify_mode == ssl.CERT_REQUIRED and service.verify.check_hostname


def test_redis_client_uses_the_connection_its_user_and_its_database(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PLATFORM_REDIS", json.dumps({
        "conn_type": "redis", "host": "redis.local", "port": 6380, "login": "cache-writer", "password": "cache-secret",
        "extra": {"db": 1}}))
    monkeypatch.setenv("AIRFLOW_CONN_OTHER_REDIS", json.dumps({"conn_type": "redis", "host": "other", "port": 6379}))
    client = hooks.redis_client(hooks.REDIS_CONN_ID)
    settings_of = client.connection_pool.connection_kwargs
    assert (settings_of["host"], settings_of["port"], settings_of["username"], settings_of["password"],
            settings_of["db"]) == ("redis.local", 6380, "cache-writer", "cache-secret", 1)
    assert settings_of["socket_timeout"] == 10
    other = hooks.redis_client("other_redis").connection_pool.connection_kwargs
    assert (other["db"], other["username"]) == (0, None)


@pytest.mark.parametrize(("conn_id", "expected"), [(None, ""), ("platform_s3", "platform_s3")])
def test_platform_storage_root_comes_from_the_variables(monkeypatch, conn_id, expected):
    monkeypatch.setenv("AIRFLOW_VAR_PLATFORM_STORAGE_URI", "s3://platform/data")
    if conn_id:
        monkeypatch.setenv("AIRFLOW_VAR_PLATFORM_STORAGE_CONN_ID", conn_id)
    else:
        monkeypatch.delenv("AIRFLOW_VAR_PLATFORM_STORAGE_CONN_ID", raising=False)
    monkeypatch.setattr(storage, "root", lambda uri, conn: (uri, conn))
    assert hooks.platform_storage_root() == ("s3://platform/data", expected)


def test_platform_storage_root_on_local_files(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_VAR_PLATFORM_STORAGE_URI", f"file://{tmp_path}/objects")
    monkeypatch.delenv("AIRFLOW_VAR_PLATFORM_STORAGE_CONN_ID", raising=False)
    root = hooks.platform_storage_root()
    assert (root.protocol, root.path, root.conn_id) == ("file", f"{tmp_path}/objects", None)


@pytest.fixture
def platform_conn_env(monkeypatch, platform_db, platform_pg):
    """AIRFLOW_CONN_PLATFORM_DB pointing at the fresh platform database of the `platform_db` fixture."""
    monkeypatch.setenv("AIRFLOW_CONN_PLATFORM_DB", json.dumps({
        "conn_type": "postgres", "host": platform_pg.host, "port": platform_pg.port, "login": platform_pg.user,
        "schema": platform_pg.dbname}))
    return platform_db


@pytest.mark.parametrize("connect", [hooks.platform_db, hooks.platform_db_for_service], ids=["task", "service"])
def test_platform_db_reaches_the_migrated_platform_database(platform_conn_env, connect):
    with platform_conn_env, platform_conn_env.cursor() as cur:
        cur.execute("INSERT INTO tenants (tenant_id, name) VALUES ('acme', 'Acme')")
    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT tenant_id FROM tenants")
            assert cur.fetchall() == [("acme",)]
    finally:
        conn.close()


def test_a_service_gives_up_connecting_after_five_seconds(platform_conn_env):
    conn = hooks.platform_db_for_service()
    try:
        assert conn.get_dsn_parameters()["connect_timeout"] == "5"
    finally:
        conn.close()
