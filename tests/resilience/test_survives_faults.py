"""Faults injected into the running stack, each followed by the outcome users rely on.

Ordered so each test leaves the stack healthy (`stackctl status`) for the next one.
Processes are killed with SIGKILL at their real PIDs, never stopped through supervisord,
so nothing gets to clean up, as in a crash.
"""

from __future__ import annotations

import os
import signal

import httpx
import pytest

from tests.e2e.test_monitoring import active_alerts, inbox
from tests.polling import wait_for
from workers import storage

from .conftest import (
    descendants,
    kill_tree,
    process_pid,
    seed_tenant,
    storage_base,
    training_row,
    wait_until_healthy,
    with_dags_unpaused,
)

pytestmark = pytest.mark.e2e
TRAINING = "tenant_model_training"
SMOKE = "controlplane_smoke"
PREFIX = "rz-fault-"


@pytest.fixture(scope="module")
def faults(running_stack):
    yield from with_dags_unpaused(running_stack, (TRAINING, SMOKE), PREFIX)


@pytest.fixture(autouse=True)
def healthy_after(faults):
    """A fault test is over only when the stack is healthy again."""
    yield
    wait_until_healthy(faults)


def task_states(api, dag: str, run_id: str) -> dict[str, tuple[str, int]]:
    return {ti["task_id"]: (ti["state"], ti["try_number"]) for ti in api.task_instances(dag, run_id)}


def deployed_versions(stack, tenant: str) -> list[str]:
    return sorted(p.name for p in storage.models_dir(storage_base(stack), tenant).iterdir() if p.name.startswith("m-"))


def assert_deployed_once(stack, run_id: str, tenant: str) -> None:
    status, _, version, reason = training_row(stack, run_id, tenant)
    assert status == "success", reason
    assert deployed_versions(stack, tenant) == [version]
    assert storage.read_json(storage.pointer_path(storage_base(stack), tenant)) == {"version": version}
    assert httpx.get(f"{stack.url('inference')}/health", timeout=10).json()["versions"][tenant] == version


def restart_hard(stack, process: str) -> int:
    """SIGKILL a supervised process; supervisord starts it again. Returns the old PID."""
    pid = process_pid(stack, process)
    kill_tree(pid)
    wait_for(lambda: process_pid(stack, process) not in (0, pid), 60, f"supervisord to restart {process}")
    return pid


def train_until_a_task_runs(faults, tenant: str, seed: int) -> str:
    """Seed a tenant, trigger its training, and return the run id once one of its tasks runs."""
    seed_tenant(faults.stack, tenant, 60_000, seed=seed)
    run_id = faults.api.trigger(TRAINING, {"tenant_id": tenant})
    wait_for(lambda: any(state == "running" for state, _ in task_states(faults.api, TRAINING, run_id).values()),
             120, "a task of the run to start")
    return run_id


def test_redis_restarted_during_a_run_the_run_completes(faults):
    stack, api = faults.stack, faults.api
    tenant = f"{PREFIX}redis"
    run_id = train_until_a_task_runs(faults, tenant, seed=31)
    restart_hard(stack, "redis")
    assert api.dag_run(TRAINING, run_id)["state"] == "running"  # the restart happened during the run
    assert api.wait_for_run(TRAINING, run_id, timeout=600)["state"] == "success"
    assert_deployed_once(stack, run_id, tenant)


def test_postgres_restarted_during_a_run_the_scheduler_recovers_and_the_run_completes(faults):
    stack, api = faults.stack, faults.api
    tenant = f"{PREFIX}postgres"
    run_id = train_until_a_task_runs(faults, tenant, seed=32)
    restart_hard(stack, "postgres")
    # The API answers again once the database is back; then the run must still finish.
    wait_for(lambda: api_answers(api, run_id), 120, "the API to answer with the database back")
    assert api.wait_for_run(TRAINING, run_id, timeout=600)["state"] == "success"
    assert_deployed_once(stack, run_id, tenant)


def api_answers(api, run_id: str) -> bool:
    try:
        return api.dag_run(TRAINING, run_id)["state"] in ("queued", "running", "success", "failed")
    except Exception:  # noqa: BLE001 (any error means: not back yet)
        return False


def test_kill_9_of_the_heavy_worker_mid_training_retries_and_deploys_exactly_one_version(faults):
    stack, api = faults.stack, faults.api
    tenant = f"{PREFIX}kill"
    # Large enough that training runs for seconds, so the kill lands inside it.
    seed_tenant(stack, tenant, 300_000, seed=33)
    worker = process_pid(stack, "worker-heavy-1")
    pool_children = set(descendants(worker))
    run_id = api.trigger(TRAINING, {"tenant_id": tenant})
    # The heavy worker runs a task in a process below its pool child: wait for one to appear.
    wait_for(lambda: set(descendants(worker)) - pool_children, 180, "a heavy task process", poll=0.2)
    assert task_states(api, TRAINING, run_id)["train_tenant.train_embeddings"] == ("running", 1)
    kill_tree(worker)

    run = api.wait_for_run(TRAINING, run_id, timeout=600)
    states = task_states(api, TRAINING, run_id)
    assert run["state"] == "success", states
    assert states["train_tenant.train_embeddings"] == ("success", 2)  # the killed try was retried
    assert_deployed_once(stack, run_id, tenant)
    assert process_pid(stack, "worker-heavy-1") != worker


def test_a_hung_scheduler_fires_the_heartbeat_alert_and_once_killed_is_restarted_and_the_alert_clears(faults):
    """SIGSTOP first (a hung scheduler: alive for supervisord, silent for Prometheus), then SIGKILL."""
    stack, api = faults.stack, faults.api
    old = process_pid(stack, "scheduler")
    os.kill(old, signal.SIGSTOP)
    try:
        run_id = api.trigger(SMOKE)  # accepted by the API while no scheduler works
        alert = wait_for(lambda: active_alerts(stack, "AirflowSchedulerDown"), 300,
                         "AirflowSchedulerDown in Alertmanager")[0]
        assert alert["labels"]["severity"] == "critical"
        wait_for(lambda: inbox(stack, "AirflowSchedulerDown", "firing"), 90, "the page in the on-call inbox")
    finally:
        kill_tree(old)
    wait_for(lambda: process_pid(stack, "scheduler") not in (0, old), 60, "supervisord to restart the scheduler")
    assert api.wait_for_run(SMOKE, run_id, timeout=300)["state"] == "success"
    wait_for(lambda: not active_alerts(stack, "AirflowSchedulerDown"), 240, "AirflowSchedulerDown to clear")
    wait_for(lambda: inbox(stack, "AirflowSchedulerDown", "resolved"), 90, "the resolution in the on-call inbox")
