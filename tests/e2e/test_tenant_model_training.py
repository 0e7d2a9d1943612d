"""tenant_model_training through the real stack: REST API, both pools, PostgreSQL, Redis, inference service."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stackctl.airflow_api import ApiError
from stackctl.demo.run import seed_demo_data
from workers import storage
from workers.platform_db.db import transaction

from .conftest import platform_db, storage_base, training_row

pytestmark = pytest.mark.e2e
DAG = "tenant_model_training"


@pytest.fixture(scope="module")
def training(running_stack):
    seed_demo_data(running_stack.stack)
    running_stack.api.wait_for_dag(DAG)
    running_stack.api.unpause(DAG)
    return running_stack


def model_loads(stack, tenant: str) -> float:
    """How often the inference service loaded a model of the tenant (inference_deploys_total, outcome "loaded").

    A deploy counts here each time it has the service load its version; a repeated deploy of the same
    version rewrites the same version folder, so only this count, or the deploy task's tries, shows it.
    """
    text = httpx.get(f"{stack.url('inference')}/metrics", timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "inference_deploys_total" and sample.labels.get("tenant") == tenant
               and sample.labels.get("outcome") == "loaded")


def deploy_tries(api, run_id: str) -> int:
    return next(ti["try_number"] for ti in api.task_instances(DAG, run_id)
                if ti["task_id"] == "train_tenant.deploy_to_production")


@pytest.mark.parametrize("conf", [
    {"tenant_id": "../../etc/passwd"},
    {"tenant_id": "acme'; DROP TABLE tenants; --"},
    {"tenant_id": 42},
    {"tenant_id": "a" * 100},
])
def test_a_bad_conf_is_refused_with_400_and_nothing_runs(training, conf):
    api = training.api
    before = api.request("GET", f"/dags/{DAG}/dagRuns")["total_entries"]
    with pytest.raises(ApiError) as refused:
        api.trigger(DAG, conf)
    assert refused.value.status_code == 400
    assert api.request("GET", f"/dags/{DAG}/dagRuns")["total_entries"] == before


def test_corrupt_data_fails_with_the_reason_and_deploys_nothing(training):
    stack = training.stack
    conn = platform_db(stack)
    try:
        with transaction(conn) as cur:
            cur.execute("INSERT INTO tenants (tenant_id, name) VALUES ('broken', 'Broken') ON CONFLICT DO NOTHING")
    finally:
        conn.close()
    base = storage_base(stack)
    storage.write_bytes(storage.training_dir(base, "broken") / "part-00000.parquet", b"PAR1 garbage")

    run_id = training.api.trigger(DAG, {"tenant_id": "broken"})
    run = training.api.wait_for_run(DAG, run_id, timeout=300)
    assert run["state"] == "failed"
    status, stage, version, reason = training_row(stack, run_id, "broken")
    assert (status, stage, version) == ("failed", "validate_training_data", None)
    assert "part-00000.parquet is not a readable Parquet file" in reason
    assert not storage.models_dir(base, "broken").exists()
    tries = {ti["task_id"]: ti["try_number"] for ti in training.api.task_instances(DAG, run_id)}
    assert tries["train_tenant.validate_training_data"] == 1  # a data error is not retried
    conn = platform_db(stack)
    try:
        with transaction(conn) as cur:  # the stack is shared: keep it out of all-tenant runs
            cur.execute("UPDATE tenants SET active = false WHERE tenant_id = 'broken'")
    finally:
        conn.close()


def test_a_tenant_trains_deploys_serves_and_a_cleared_deploy_loads_the_same_version_once_more(training):
    stack, api = training.stack, training.api
    loads = model_loads(stack, "initech")
    run_id = api.trigger(DAG, {"tenant_id": "initech"})
    assert api.wait_for_run(DAG, run_id, timeout=600)["state"] == "success"
    status, _, version, _ = training_row(stack, run_id, "initech")
    assert status == "success" and version.startswith("m-")
    assert (deploy_tries(api, run_id), model_loads(stack, "initech")) == (1, loads + 1)  # deployed once
    assert httpx.get(f"{stack.url('inference')}/health", timeout=10).json()["versions"]["initech"] == version
    recs = httpx.get(f"{stack.url('inference')}/api/v1/recommend",
                     params={"tenant_id": "initech", "user_id": 7, "k": 5}, timeout=10).json()
    assert recs["version"] == version and len(recs["items"]) == 5

    api.request("POST", f"/dags/{DAG}/clearTaskInstances", json={
        "dag_run_id": run_id, "task_ids": ["train_tenant.deploy_to_production"], "only_failed": False,
        "reset_dag_runs": True, "dry_run": False, "include_downstream": False,
    })
    assert api.wait_for_run(DAG, run_id, timeout=300)["state"] == "success"
    # The cleared task ran once more and had the service load the same version once more: one load per try.
    assert (deploy_tries(api, run_id), model_loads(stack, "initech")) == (2, loads + 2)
    assert training_row(stack, run_id, "initech")[2] == version
    assert storage.read_json(storage.pointer_path(storage_base(stack), "initech")) == {"version": version}
    assert httpx.get(f"{stack.url('inference')}/health", timeout=10).json()["versions"]["initech"] == version
