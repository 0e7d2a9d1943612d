"""The three product DAGs on the cluster: green, each task on a host of its queue's pool, and the
log of a task that ran on a worker host readable through the api-server, from object storage."""

from __future__ import annotations

import boto3
import pytest

from .conftest import BUCKET, HOSTS

# Which hosts serve each queue: the inventory's pool groups.
QUEUE_HOSTS = {queue: {host for host, groups in HOSTS.items() if f"workers_{queue}" in groups}
               for queue in ("light", "heavy")}
DAGS = ["tenant_model_training", "data_quality_check", "FreshPoC_E2E"]


def conf(deployed, dag_id: str) -> dict:
    """FreshPoC's sample project as the ingestion service's host has it.

    The DAG's default is the sample's path in the code of the host that parses the DAG, and the
    worker that runs the stage parses it too. Real hosts all have the code at common_app_dir; the
    test cluster's hosts share one filesystem under a prefix each, so light-1's path would lie
    outside cp's freshpoc.ingestion.allowed_roots.
    """
    if dag_id != "FreshPoC_E2E":
        return {}
    return {"repository": str(deployed.cluster["cp"].prefix / "app" / "services" / "freshpoc" / "samples"
                              / "jaffle_shop")}


@pytest.fixture(scope="module")
def finished(deployed, seeded):
    """Each DAG run once on the demo tenants: {dag_id: (run, task instances)}."""
    api = deployed.api()
    runs = {}
    for dag_id in DAGS:
        api.wait_for_dag(dag_id)
        api.unpause(dag_id)
        runs[dag_id] = api.trigger(dag_id, conf(deployed, dag_id))
    finished = {}
    for dag_id, run_id in runs.items():
        finished[dag_id] = (api.wait_for_run(dag_id, run_id, timeout=600), api.task_instances(dag_id, run_id))
    return finished


@pytest.mark.parametrize("dag_id", DAGS)
def test_dag_runs_green_with_each_task_on_its_pools_hosts(finished, dag_id):
    run, tasks = finished[dag_id]
    failed = {t["task_id"]: t["state"] for t in tasks if t["state"] not in ("success", "skipped")}
    assert run["state"] == "success", f"{dag_id}: {failed}"
    ran = [t for t in tasks if t["state"] == "success" and t["queue"] in QUEUE_HOSTS]
    assert ran, f"{dag_id} ran no task on a worker"
    misplaced = {(t["task_id"], t["map_index"]): (t["queue"], t["hostname"]) for t in ran
                 if t["hostname"] not in QUEUE_HOSTS[t["queue"]]}
    assert misplaced == {}


def test_the_log_of_a_task_on_a_worker_host_is_read_from_object_storage(deployed, finished):
    run, tasks = finished["tenant_model_training"]
    task = next(t for t in tasks if t["state"] == "success" and t["queue"] == "heavy")
    api = deployed.api()
    path = (f"/dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}/taskInstances/{task['task_id']}"
            f"/logs/{task['try_number']}")
    log = api.request("GET", path, params={"map_index": task["map_index"]})
    text = "\n".join(str(line) for line in log["content"])
    assert f"s3://{BUCKET}/logs" in text, text[:2000]  # the source Airflow names: the remote log
    s3 = boto3.client("s3", endpoint_url=deployed.storage_endpoint, region_name="us-east-1",
                      aws_access_key_id=deployed.secrets["storage_access_key_id"],
                      aws_secret_access_key=deployed.secrets["storage_secret_access_key"])
    keys = [obj["Key"] for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix="logs/")["Contents"]]
    assert any(f"run_id={run['dag_run_id']}" in key and task["task_id"] in key for key in keys), keys[:20]
