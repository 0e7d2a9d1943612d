"""The three product DAGs on the cluster: green, each task on a host of its queue's pool, the log of a
task that ran on a worker host readable through the api-server, from object storage, and a connection
rotated in Secrets Manager before they run used by their tasks, with no restart."""

from __future__ import annotations

import json
import secrets as token

import pytest

from stackctl.model.redis_users import CACHE_WRITER, password_secret
from stackctl.ops import secrets_manager
from workers import hooks
from workers.training import cache

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
def rotated(deployed) -> dict:
    """The cache writer's Redis password rotated as an operator would, before the DAGs run: a new password
    added to its Redis user, put into Secrets Manager, the old one removed from Redis, and the vault
    given the new one (a later site.yml run publishes the same value). Returns the api-server's pid and
    the cache's database."""
    api_server_pid = deployed.supervisorctl(deployed.cp, "pid", "api-server").strip()
    redis, secrets = deployed.redis_admin(), deployed.aws("secretsmanager")
    old, new = deployed.secrets[password_secret(CACHE_WRITER)], token.token_urlsafe(24)
    redis.execute_command("ACL", "SETUSER", CACHE_WRITER, f">{new}")
    name = f"{secrets_manager.CONNECTIONS_PREFIX}/{hooks.REDIS_CONN_ID}"
    fields = json.loads(secrets.get_secret_value(SecretId=name)["SecretString"])
    assert fields["password"] == old  # what site.yml published
    secrets.put_secret_value(SecretId=name, SecretString=secrets_manager.connection_secret({**fields, "password": new}))
    redis.execute_command("ACL", "SETUSER", CACHE_WRITER, f"<{old}")
    redis.execute_command("ACL", "LOG", "RESET")
    deployed.secrets[password_secret(CACHE_WRITER)] = new
    vault = deployed.inventory.parent / "group_vars" / "all" / "vault.yml"
    vault.write_text(json.dumps({**json.loads(vault.read_text()), f"vault_{password_secret(CACHE_WRITER)}": new}))
    return {"api_server_pid": api_server_pid, "cache_db": json.loads(fields["extra"])["db"]}


@pytest.fixture(scope="module")
def finished(deployed, seeded, rotated):
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
    listed = deployed.aws("s3").list_objects_v2(Bucket=BUCKET, Prefix="logs/")["Contents"]
    keys = [obj["Key"] for obj in listed]
    assert any(f"run_id={run['dag_run_id']}" in key and task["task_id"] in key for key in keys), keys[:20]


def test_a_connection_rotated_in_secrets_manager_is_used_by_the_next_tasks_without_a_restart(
        deployed, rotated, finished):
    """Every tenant's cache warm-up wrote its popular items as the cache writer, whose old password
    Redis no longer takes: with the new one, from Secrets Manager, on its first try."""
    run, tasks = finished["tenant_model_training"]
    warmed = [t for t in tasks if t["task_id"].endswith("update_redis_cache") and t["state"] != "skipped"]
    assert warmed and {(t["state"], t["try_number"]) for t in warmed} == {("success", 1)}, warmed
    redis = deployed.redis_admin(rotated["cache_db"])
    assert len(list(redis.scan_iter(match=cache.key("*")))) >= len(warmed)
    refused = [entry for entry in redis.execute_command("ACL", "LOG") if CACHE_WRITER in str(entry)]
    assert refused == []
    assert deployed.supervisorctl(deployed.cp, "pid", "api-server").strip() == rotated["api_server_pid"]
