"""FreshPoC_E2E through the real stack: the reference services, the triggerer, the light pool, PostgreSQL."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from celery import Celery

from services.freshpoc.jobs import job_id
from stackctl.demo.run import freshpoc_report
from stackctl.native import broker, health
from workers.freshpoc.keys import run_key
from workers.freshpoc.services import SERVICES

from .conftest import platform_db, storage_base

pytestmark = pytest.mark.e2e
DAG = "FreshPoC_E2E"
SAMPLE_MODELS = ("customers", "orders", "stg_customers", "stg_orders", "stg_payments")
# A service answers within a second alone; beside the other suites on two cores a lineage query took
# over 10 s (CI), so the tests' clients wait longer than that.
SERVICE_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def freshpoc(running_stack):
    running_stack.api.wait_for_dag(DAG, timeout=300)
    running_stack.api.unpause(DAG)
    return running_stack


def service_url(stack, service: str) -> str:
    return stack.url(f"freshpoc_{service}")


def admin(stack) -> httpx.Client:
    token = stack.read_secret("freshpoc_admin_token")
    return httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=SERVICE_TIMEOUT_S,
                        verify=stack.verify)


@pytest.fixture
def faults(freshpoc):
    """Set a fault plan on one service; every plan is cleared after the test."""
    client = admin(freshpoc.stack)

    def inject(service: str, **plan) -> dict:
        response = client.put(f"{service_url(freshpoc.stack, service)}/admin/faults", json={"ttl_s": 900, **plan})
        assert response.status_code == 200, response.text
        return response.json()["faults"]

    yield inject
    for service in SERVICES:
        client.delete(f"{service_url(freshpoc.stack, service.name)}/admin/faults")
    client.close()


def run_dag(stack_env, conf: dict | None = None, timeout: float = 900) -> tuple[str, dict]:
    run_id = stack_env.api.trigger(DAG, conf or {})
    return run_id, stack_env.api.wait_for_run(DAG, run_id, timeout=timeout)


def task_instances(stack_env, run_id: str) -> dict[str, dict]:
    return {ti["task_id"]: ti for ti in stack_env.api.task_instances(DAG, run_id)}


def job(stack, service: str, dag_run_id: str) -> dict:
    response = httpx.get(f"{service_url(stack, service)}/api/v1/jobs/{job_id(service, dag_run_id)}",
                         auth=health.listener_auth(stack, f"freshpoc_{service}"), verify=stack.verify,
                         timeout=SERVICE_TIMEOUT_S)
    assert response.status_code == 200, response.text
    return response.json()


def task_log(stack_env, run_id: str, task_id: str, try_number: int) -> str:
    logs = stack_env.api.request("GET", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                                 params={"full_content": "true"})
    return json.dumps(logs["content"])


def node_write_times(stack) -> dict:
    conn = platform_db(stack)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT node_id, updated_at FROM freshpoc_nodes WHERE project = 'jaffle_shop'")
            return dict(cur.fetchall())
    finally:
        conn.close()


def report_path(stack, dag_run_id: str):
    return storage_base(stack) / "freshpoc" / "runs" / run_key(dag_run_id) / "report" / "lineage.html"


def test_happy_path_reports_the_sample_lineage_and_a_cleared_stage_does_not_redo_its_job(freshpoc):
    stack = freshpoc.stack
    run_id, run = run_dag(freshpoc)
    assert run["state"] == "success"
    tis = task_instances(freshpoc, run_id)
    assert {task: (ti["state"], ti["try_number"]) for task, ti in tis.items()} == {
        task: ("success", 1) for task in ("ingestion_trigger", "miner_run", "analyzer_run", "writer_apply",
                                          "report_generate")
    }
    report = freshpoc_report(freshpoc.api, run_id)  # what `make demo` prints
    assert report["report"] == str(report_path(stack, run_id))
    assert report["models"] == sorted(SAMPLE_MODELS)
    html = report_path(stack, run_id).read_text()
    for model in SAMPLE_MODELS:
        assert f"<tr id=\"model.jaffle_shop.{model}\">" in html
    customers_row = html.split('<tr id="model.jaffle_shop.customers">')[1].split("</tr>")[0]
    assert "stg_customers, stg_orders, stg_payments" in customers_row  # its upstream lineage
    assert "legacy_invoices" in html.split("<h2>Orphans</h2>")[1]

    upstream = httpx.get(f"{service_url(stack, 'query')}/api/v1/projects/jaffle_shop/lineage",
                         timeout=SERVICE_TIMEOUT_S, verify=stack.verify, params={
        "node": "model.jaffle_shop.customers", "direction": "upstream"}).json()["nodes"]
    assert {(n["name"], n["distance"]) for n in upstream} == {
        ("stg_customers", 1), ("stg_orders", 1), ("stg_payments", 1),
        ("jaffle_shop.customers", 2), ("jaffle_shop.orders", 2), ("raw_payments", 2),
    }

    # Clear the writer after its job finished: the retried stage gets the finished job back.
    written = node_write_times(stack)
    assert job(stack, "writer", run_id)["runs"] == 1
    freshpoc.api.request("POST", f"/dags/{DAG}/clearTaskInstances", json={
        "dag_run_id": run_id, "task_ids": ["writer_apply"], "only_failed": False, "reset_dag_runs": True,
        "dry_run": False, "include_downstream": False,
    })
    assert freshpoc.api.wait_for_run(DAG, run_id, timeout=600)["state"] == "success"
    assert task_instances(freshpoc, run_id)["writer_apply"]["try_number"] == 2
    assert job(stack, "writer", run_id)["runs"] == 1
    assert node_write_times(stack) == written
    assert "started earlier for this DAG run" in task_log(freshpoc, run_id, "writer_apply", 2)


def test_a_service_failing_twice_with_503_still_succeeds(freshpoc, faults):
    faults("miner", fail_503_times=2)
    run_id, run = run_dag(freshpoc)
    assert run["state"] == "success"
    miner = task_instances(freshpoc, run_id)["miner_run"]
    assert miner["try_number"] == 3  # two retryable failures, then success
    assert "freshpoc_miner answered 503" in task_log(freshpoc, run_id, "miner_run", 1)
    assert job(freshpoc.stack, "miner", run_id)["runs"] == 1


def test_a_400_fails_the_stage_on_the_first_try_with_the_service_message(freshpoc, faults):
    message = "analysis refused: project is under a legal hold (injected)"
    faults("analyzer", reject_400=message)
    run_id, run = run_dag(freshpoc)
    assert run["state"] == "failed"
    tis = task_instances(freshpoc, run_id)
    assert (tis["analyzer_run"]["state"], tis["analyzer_run"]["try_number"]) == ("failed", 1)
    assert tis["writer_apply"]["state"] == "upstream_failed"
    assert message in task_log(freshpoc, run_id, "analyzer_run", 1)


def light_slots_held_by(stack, run_id: str) -> list[str]:
    """The task ids of one DAG run that the light worker is executing now (its busy slots)."""
    secret_values = {name: stack.read_secret(name) for name in stack.secret_kinds}
    app = Celery(broker=broker.url(stack, secret_values))
    try:
        hosts = stack.worker_hostnames("light")
        active = app.control.inspect(destination=hosts, timeout=10, limit=len(hosts)).active() or {}
    finally:
        app.close()
    assert set(active) == set(hosts), f"the light worker did not answer: {active}"
    workloads = [json.loads(task["args"][0]) for tasks in active.values() for task in tasks]
    return [w["ti"]["task_id"] for w in workloads if w.get("ti", {}).get("run_id") == run_id]


def wait_for_writer_state(freshpoc, run_id: str, state: str) -> None:
    deadline = time.monotonic() + 600
    while task_instances(freshpoc, run_id).get("writer_apply", {}).get("state") != state:
        assert time.monotonic() < deadline, f"writer_apply never became {state}"
        assert freshpoc.api.dag_run(DAG, run_id)["state"] in ("queued", "running")
        time.sleep(0.5)


def test_a_slow_job_is_waited_on_without_holding_a_light_slot(freshpoc, faults):
    stack = freshpoc.stack
    # The writer answers the job's POST after 20 s (a synchronous call, which holds a slot), and
    # the job itself then takes 60 s (waited on by the triggerer, which must not hold one).
    faults("writer", response_delay_s=20, job_delay_s=60)
    run_id = freshpoc.api.trigger(DAG, {})
    wait_for_writer_state(freshpoc, run_id, "running")
    assert "writer_apply" in light_slots_held_by(stack, run_id)  # the probe sees a task that holds a slot

    wait_for_writer_state(freshpoc, run_id, "deferred")
    # The worker process ends within moments of the deferral; from then on no slot is held.
    deadline = time.monotonic() + 20
    while (held := light_slots_held_by(stack, run_id)) and time.monotonic() < deadline:
        time.sleep(1)
    assert held == [], f"FreshPoC tasks hold light slots while writer_apply is deferred: {held}"
    assert job(stack, "writer", run_id)["status"] == "running"  # the slow job is still being waited on
    assert task_instances(freshpoc, run_id)["writer_apply"]["state"] == "deferred"
    assert light_slots_held_by(stack, run_id) == []

    run = freshpoc.api.wait_for_run(DAG, run_id, timeout=900)
    assert run["state"] == "success"
    assert task_instances(freshpoc, run_id)["writer_apply"]["try_number"] == 1
