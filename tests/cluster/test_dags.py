"""The three product DAGs on the cluster: green, each task on a host of its queue's pool."""

from __future__ import annotations

import time

import pytest

from stackctl import postgres
from stackctl.demo import seed
from workers import storage

from .conftest import BUCKET, HOSTS

# Which hosts serve each queue: the inventory's pool groups.
QUEUE_HOSTS = {queue: {host for host, groups in HOSTS.items() if f"workers_{queue}" in groups}
               for queue in ("light", "heavy")}
RUNS = [("tenant_model_training", {}), ("data_quality_check", {}), ("FreshPoC_E2E", {})]


@pytest.fixture(scope="module")
def seeded(deployed, storage_connection):
    """The demo tenants in cp's platform database and their training data in the S3 bucket."""
    conn = postgres.connect(deployed.managed, deployed.secrets["platform_db_password"], user="platform",
                            dbname="platform")
    try:
        end_us = int(time.time() // 3600 * 3600 * 1_000_000)
        return seed.seed(conn, storage.root(f"s3://{BUCKET}", storage_connection), end_us)
    finally:
        conn.close()


@pytest.mark.parametrize(("dag_id", "conf"), RUNS, ids=[dag_id for dag_id, _ in RUNS])
def test_dag_runs_green_with_each_task_on_its_pools_hosts(deployed, seeded, dag_id, conf):
    api = deployed.api()
    api.wait_for_dag(dag_id)
    api.unpause(dag_id)
    run_id = api.trigger(dag_id, conf)
    run = api.wait_for_run(dag_id, run_id, timeout=600)
    tasks = api.task_instances(dag_id, run_id)
    failed = {t["task_id"]: t["state"] for t in tasks if t["state"] not in ("success", "skipped")}
    assert run["state"] == "success", f"{dag_id}: {failed}"
    ran = [t for t in tasks if t["state"] == "success" and t["queue"] in QUEUE_HOSTS]
    assert ran, f"{dag_id} ran no task on a worker"
    misplaced = {(t["task_id"], t["map_index"]): (t["queue"], t["hostname"]) for t in ran
                 if t["hostname"] not in QUEUE_HOSTS[t["queue"]]}
    assert misplaced == {}
