"""Bad input against the running stack: refused with a clear error, and nothing runs or deploys."""

from __future__ import annotations

import io
import secrets
import stat

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stackctl.native.airflow_api import AirflowApi, ApiError
from workers import storage
from workers.freshpoc.keys import run_key
from workers.platform_db.db import transaction

from .conftest import platform_db, storage_base, training_row, with_dags_unpaused

pytestmark = pytest.mark.e2e
TRAINING, DQ = "tenant_model_training", "data_quality_check"
PREFIX = "rz-input-"


@pytest.fixture(scope="module")
def stack(running_stack):
    yield from with_dags_unpaused(running_stack, (TRAINING, DQ), PREFIX)


def run_count(api, dag: str) -> int:
    return api.request("GET", f"/dags/{dag}/dagRuns")["total_entries"]


@pytest.mark.parametrize("dag", [TRAINING, DQ])
@pytest.mark.parametrize(("conf", "reason"), [
    ({"tenant_id": "../../etc/passwd"}, "does not match"),
    ({"tenant_id": "acme'; DROP TABLE tenants; --"}, "does not match"),
    ({"tenant_id": ["acme"]}, "is not of type"),
    ({"tenant_id": "a" * 64}, "Invalid input for param tenant_id"),
    ({"tenant_id": "acme", "padding": "x" * 1_000_000}, "max_dagrun_request_bytes"),
], ids=["path-traversal", "sql", "wrong-type", "too-long", "oversized-conf"])
def test_a_bad_conf_gets_400_naming_the_problem_and_nothing_runs(stack, dag, conf, reason):
    before = run_count(stack.api, dag)
    with pytest.raises(ApiError) as refused:
        stack.api.trigger(dag, conf)
    assert refused.value.status_code == 400
    assert reason in str(refused.value)
    assert run_count(stack.api, dag) == before


def test_an_oversized_backfill_conf_gets_400_naming_the_limit(stack):
    """A backfill copies dag_run_conf into every run it creates; the plugin refuses it before Airflow parses it.

    The dates are reversed, so had the body reached Airflow it would answer 422 and create nothing.
    """
    with pytest.raises(ApiError) as refused:
        stack.api.request("POST", "/backfills", json={
            "dag_id": TRAINING, "from_date": "2020-01-02T00:00:00Z", "to_date": "2020-01-01T00:00:00Z",
            "dag_run_conf": {"tenant_id": "acme", "padding": "x" * 1_000_000}})
    assert refused.value.status_code == 400
    assert "the backfill request is over" in str(refused.value)
    assert "max_dagrun_request_bytes" in str(refused.value)


def parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


# A corrupt file is tests/e2e/test_tenant_model_training.py's case.
BAD_FILES = {
    "empty-file": (b"", "is not a readable Parquet file"),
    "missing-columns": (parquet(pa.table({"user_id": [1, 2], "item_id": [3, 4]})), "lacks columns"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_training_files_fail_the_run_with_the_reason_and_deploy_nothing(stack, kind):
    content, reason = BAD_FILES[kind]
    tenant = f"{PREFIX}{kind}"
    conn = platform_db(stack.stack)
    try:
        with transaction(conn) as cur:
            cur.execute("INSERT INTO tenants (tenant_id, name) VALUES (%s, %s)"
                        " ON CONFLICT (tenant_id) DO UPDATE SET active = true", (tenant, kind))
    finally:
        conn.close()
    base = storage_base(stack.stack)
    storage.write_bytes(storage.training_dir(base, tenant) / "part-00000.parquet", content)

    run_id = stack.api.trigger(TRAINING, {"tenant_id": tenant})
    assert stack.api.wait_for_run(TRAINING, run_id, timeout=300)["state"] == "failed"
    status, stage, version, recorded = training_row(stack.stack, run_id, tenant)
    assert (status, stage, version) == ("failed", "validate_training_data", None)
    assert reason in recorded
    assert not storage.models_dir(base, tenant).exists()
    tries = {ti["task_id"]: ti["try_number"] for ti in stack.api.task_instances(TRAINING, run_id)}
    assert tries["train_tenant.validate_training_data"] == 1  # bad data is not retried
    served = httpx.get(f"{stack.stack.url('inference')}/health", verify=stack.stack.verify, timeout=10).json()
    assert tenant not in served["versions"]


def test_a_request_without_a_token_gets_401(stack):
    response = httpx.post(f"{stack.stack.url('api')}/api/v2/dags/{TRAINING}/dagRuns",
                          json={"logical_date": None, "conf": {}}, timeout=10, verify=stack.stack.verify)
    assert response.status_code == 401


def test_a_viewer_can_read_but_triggering_a_dag_gets_403(stack):
    password = secrets.token_urlsafe(16)
    created = httpx.post(f"{stack.stack.url('api')}/auth/fab/v1/users", timeout=30, verify=stack.stack.verify,
                         headers={"Authorization": f"Bearer {stack.api.token()}"},
                         json={"username": "rz-viewer", "email": "viewer@localhost", "first_name": "Read",
                               "last_name": "Only", "roles": [{"name": "Viewer"}], "password": password})
    assert created.status_code in (200, 201), created.text
    viewer = AirflowApi(stack.stack.url("api"), "rz-viewer", password, verify=stack.stack.verify)
    try:
        before = run_count(viewer, TRAINING)  # a Viewer may read runs
        with pytest.raises(ApiError) as refused:
            viewer.trigger(TRAINING, {"tenant_id": "acme"})
        assert refused.value.status_code == 403
        assert run_count(viewer, TRAINING) == before
    finally:
        viewer.close()


def test_flower_without_credentials_gets_401(stack):
    url, verify = f"{stack.stack.url('flower')}/api/workers", stack.stack.verify
    assert httpx.get(url, timeout=10, verify=verify).status_code == 401
    wrong = ("admin", "admin")  # pragma: allowlist secret (a default password must be refused)
    assert httpx.get(url, auth=wrong, timeout=10, verify=verify).status_code == 401


def test_a_host_folder_as_repository_fails_ingestion_at_once_and_stores_nothing(stack):
    """Issue 17: FreshPoC_E2E with file:///etc once copied the host's YAML files into object storage."""
    dag = "FreshPoC_E2E"
    stack.api.wait_for_dag(dag, timeout=300)
    stack.api.unpause(dag)
    run_id = stack.api.trigger(dag, {"repository": "file:///etc"})
    assert stack.api.wait_for_run(dag, run_id, timeout=300)["state"] == "failed"
    tis = {ti["task_id"]: ti for ti in stack.api.task_instances(dag, run_id)}
    assert (tis["ingestion_trigger"]["state"], tis["ingestion_trigger"]["try_number"]) == ("failed", 1)
    assert tis["miner_run"]["state"] == "upstream_failed"
    base = storage_base(stack.stack)
    assert not (base / "freshpoc" / "runs" / run_key(run_id)).exists()
    # What the stack does store (job records, logs) only its own user can read.
    for folder in (stack.stack.home / "objects", stack.stack.logs_dir):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
