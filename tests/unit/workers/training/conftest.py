"""What the training task functions read through workers.hooks, as a worker gets it: connections and
variables in the environment, pointing at the throwaway platform database and a local object store."""

from __future__ import annotations

import json

import pytest

from workers import storage
from workers.platform_db.db import transaction


@pytest.fixture
def worker_env(monkeypatch, platform_db, platform_pg, tmp_path):
    """The platform_db, inference_api and pushgateway connections and the storage variables; tenant acme
    registered. Returns the object storage root."""
    monkeypatch.setenv("AIRFLOW_CONN_PLATFORM_DB", json.dumps({
        "conn_type": "postgres", "host": platform_pg.host, "port": platform_pg.port, "login": platform_pg.user,
        "schema": platform_pg.dbname}))
    monkeypatch.setenv("AIRFLOW_VAR_PLATFORM_STORAGE_URI", f"file://{tmp_path}/objects")
    monkeypatch.delenv("AIRFLOW_VAR_PLATFORM_STORAGE_CONN_ID", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_INFERENCE_API", '{"conn_type": "http", "host": "inference.test", "port": 8090}')
    monkeypatch.setenv("AIRFLOW_CONN_PUSHGATEWAY", '{"conn_type": "http", "host": "pushgateway.test", "port": 9091}')
    with transaction(platform_db) as cur:
        cur.execute("INSERT INTO tenants (tenant_id, name) VALUES ('acme', 'Acme')")
    return storage.root(f"file://{tmp_path}/objects")
