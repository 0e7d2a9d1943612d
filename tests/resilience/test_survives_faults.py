"""Faults injected into the running stack, each followed by the outcome users rely on.

Ordered so each test leaves the stack healthy (`stackctl status`) for the next one; the outages
of a dependency come last, after the scheduler's alert test, so their pages cannot stand in for its.
Processes are killed with SIGKILL at their real PIDs, never stopped through supervisord,
so nothing gets to clean up, as in a crash. Each fault lands at a moment the test waits for
(a message in the queue, a connection held, the pointer flipped), not whenever a task runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import xmlrpc.client

import httpx
import psutil
import pytest
import redis

from stackctl.native import broker, lifecycle
from stackctl.native.supervisor import Supervisor
from tests.e2e.test_monitoring import active_alerts, inbox, query
from tests.e2e.test_tenant_model_training import model_loads
from tests.polling import wait_for
from workers import storage

from .conftest import (
    descendants,
    frozen,
    kill_tree,
    platform_db,
    process_pid,
    seed_tenant,
    storage_base,
    training_row,
    unhealthy,
    wait_until_healthy,
    with_dags_unpaused,
)

pytestmark = pytest.mark.e2e
TRAINING = "tenant_model_training"
SMOKE = "controlplane_smoke"
PREFIX = "rz-fault-"
DEPLOY = "train_tenant.deploy_to_production"
TRAIN = "train_tenant.train_embeddings"
# How long a dependency stays down in the outage tests: far past the point where supervisord gave up
# on a process with its default 3 retries (three quick exits, 1 + 2 + 3 s of backoff).
OUTAGE_S = 60
# How long the api-server stays down in its test: past what Airflow's default heartbeat tolerance
# survives, within what config.yaml's does.
API_OUTAGE_S = 45


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


def served_version(stack, tenant: str) -> str | None:
    return httpx.get(f"{stack.url('inference')}/health", verify=stack.verify, timeout=10).json()["versions"].get(tenant)


def pointer_version(stack, tenant: str) -> str | None:
    pointer = storage.pointer_path(storage_base(stack), tenant)
    return storage.read_json(pointer)["version"] if pointer.exists() else None


def assert_deployed_once(faults, run_id: str, tenant: str, loads_before: float) -> None:
    """The run's version is live, and it was deployed once: one try of the deploy task, one model load.

    Not by counting version folders: a repeated deploy rewrites the same folder.
    """
    stack = faults.stack
    status, _, version, reason = training_row(stack, run_id, tenant)
    assert status == "success", reason
    assert task_states(faults.api, TRAINING, run_id)[DEPLOY] == ("success", 1)
    assert model_loads(stack, tenant) == loads_before + 1
    assert pointer_version(stack, tenant) == version
    assert served_version(stack, tenant) == version


def restart_hard(stack, process: str) -> int:
    """SIGKILL a supervised process; supervisord starts it again. Returns the old PID."""
    pid = process_pid(stack, process)
    kill_tree(pid)
    wait_for(lambda: process_pid(stack, process) not in (0, pid), 60, f"supervisord to restart {process}")
    return pid


def queued_messages(stack, queue: str) -> int | None:
    """Celery messages waiting in a queue: the length of its Redis list, as redis_exporter reads it
    (None while Redis does not answer)."""
    client = redis.Redis.from_url(broker.url(stack, lifecycle.read_secrets(stack)), socket_timeout=5)
    try:
        return client.llen(queue)
    except redis.RedisError:
        return None
    finally:
        client.close()


def test_redis_killed_while_a_task_message_waits_in_its_queue_the_message_survives_and_the_run_completes(faults):
    """The heavy pool is stopped first, so train_embeddings' Celery message waits in Redis's `heavy`
    list, taken by no worker, when Redis is SIGKILLed."""
    stack, api = faults.stack, faults.api
    tenant = f"{PREFIX}redis"
    seed_tenant(stack, tenant, 60_000, seed=31)
    loads = model_loads(stack, tenant)
    supervisor = Supervisor(stack)._proxy()
    supervisor.stopProcessGroup("worker-heavy", True)
    try:
        run_id = api.trigger(TRAINING, {"tenant_id": tenant})
        waiting = wait_for(lambda: queued_messages(stack, "heavy"), 180, "train_embeddings' message in the heavy queue")
        assert task_states(api, TRAINING, run_id)[TRAIN] == ("queued", 1)
        restart_hard(stack, "redis")
        killed_at = time.monotonic()
        wait_for(lambda: queued_messages(stack, "heavy") is not None, 60, "Redis to answer again")
        # Its append-only file brought the message back: nothing waits for a queued-task timeout.
        assert queued_messages(stack, "heavy") == waiting
    finally:
        supervisor.startProcessGroup("worker-heavy", True)
    assert api.wait_for_run(TRAINING, run_id, timeout=600)["state"] == "success"
    assert task_states(api, TRAINING, run_id)[TRAIN] == ("success", 1)  # run from the message that survived
    assert_deployed_once(faults, run_id, tenant, loads)
    print(f"\nredis killed with {waiting} message(s) queued: they survived, run green"
          f" {time.monotonic() - killed_at:.0f}s after the kill")


def postgres_client(worker: int, before: set[int], port: int) -> int | None:
    """A process below the worker, started since `before`, with a TCP connection to PostgreSQL's port."""
    for pid in set(descendants(worker)) - before:
        try:
            if any(c.raddr and c.raddr.port == port for c in psutil.Process(pid).net_connections("tcp")):
                return pid
        except psutil.Error:  # it ended meanwhile
            continue
    return None


def training_at_work(faults, tenant: str, seed: int) -> tuple[str, float, int]:
    """A training run of a newly seeded tenant, once train_embeddings is at work: its task process is
    the one below the heavy worker that holds its platform-database connection (tasks._tracked).

    Returns the run's id, the tenant's model loads before it, and the task process's PID.
    """
    stack = faults.stack
    seed_tenant(stack, tenant, 60_000, seed=seed)
    loads = model_loads(stack, tenant)
    worker = process_pid(stack, "worker-heavy-1")
    before = set(descendants(worker))
    run_id = faults.api.trigger(TRAINING, {"tenant_id": tenant})
    task = wait_for(lambda: postgres_client(worker, before, stack.ports["postgres"]), 180,
                    "a heavy task holding a PostgreSQL connection", poll=0.1)
    return run_id, loads, task


def test_postgres_killed_while_a_task_holds_a_connection_the_task_is_retried_and_the_run_completes(faults):
    """train_embeddings holds its platform-database connection for its whole stage (tasks._tracked).

    Once a new process below the heavy worker holds a connection to PostgreSQL, the test freezes it
    (SIGSTOP), SIGKILLs PostgreSQL and thaws the task when the API answers again: the connection died
    with the server whatever the timing, so the task fails on its next statement and must be retried.
    """
    stack, api = faults.stack, faults.api
    tenant = f"{PREFIX}postgres"
    run_id, loads, holder = training_at_work(faults, tenant, seed=32)
    with frozen(holder):
        assert task_states(api, TRAINING, run_id)[TRAIN] == ("running", 1)
        restart_hard(stack, "postgres")
        killed_at = time.monotonic()
        wait_for(lambda: api_answers(api, run_id), 120, "the API to answer with the database back")
    assert api.wait_for_run(TRAINING, run_id, timeout=600)["state"] == "success"
    assert task_states(api, TRAINING, run_id)[TRAIN] == ("success", 2)  # the try that lost its connection failed
    assert_deployed_once(faults, run_id, tenant, loads)
    print(f"\npostgres killed while train_embeddings held a connection: retried, run green"
          f" {time.monotonic() - killed_at:.0f}s after the kill")


def api_answers(api, run_id: str) -> bool:
    try:
        return api.dag_run(TRAINING, run_id)["state"] in ("queued", "running", "success", "failed")
    except Exception:  # noqa: BLE001 (any error means: not back yet)
        return False


def assert_green_with_the_killed_try_retried(api, run_id: str, task_id: str) -> None:
    run = api.wait_for_run(TRAINING, run_id, timeout=600)
    states = task_states(api, TRAINING, run_id)
    assert run["state"] == "success", states
    assert states[task_id] == ("success", 2)


def test_kill_9_of_the_heavy_worker_mid_training_retries_and_deploys_exactly_one_version(faults):
    stack, api = faults.stack, faults.api
    tenant = f"{PREFIX}kill"
    # Large enough that training runs for seconds, so the kill lands inside it.
    seed_tenant(stack, tenant, 300_000, seed=33)
    loads = model_loads(stack, tenant)
    worker = process_pid(stack, "worker-heavy-1")
    pool_children = set(descendants(worker))
    run_id = api.trigger(TRAINING, {"tenant_id": tenant})
    # The heavy worker runs a task in a process below its pool child: wait for one to appear.
    wait_for(lambda: set(descendants(worker)) - pool_children, 180, "a heavy task process", poll=0.2)
    assert task_states(api, TRAINING, run_id)[TRAIN] == ("running", 1)
    kill_tree(worker)
    killed_at = time.monotonic()

    assert_green_with_the_killed_try_retried(api, run_id, TRAIN)
    assert_deployed_once(faults, run_id, tenant, loads)
    assert process_pid(stack, "worker-heavy-1") != worker
    print(f"\nheavy worker killed mid-training: retried, run green {time.monotonic() - killed_at:.0f}s after the kill")


def deploy_journal(stack, run_id: str, tenant: str) -> tuple[str | None, str | None]:
    """(deploy_state, model_version) of the run's row (workers/training/deploys.py)."""
    conn = platform_db(stack)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT deploy_state, model_version FROM model_training_runs"
                        " WHERE dag_run_id = %s AND tenant_id = %s", (run_id, tenant))
            return cur.fetchone() or (None, None)
    finally:
        conn.close()


def test_kill_9_of_the_light_worker_right_after_the_pointer_flip_the_retry_makes_pointer_row_and_service_agree(faults):
    """How the kill lands right after the flip: the inference service is frozen (SIGSTOP) while the
    run validates its index, before its deploy starts. The deploy then records 'flipping', replaces
    CURRENT.json, and blocks in its POST /api/v1/deploy to the frozen service (60 s timeout). The test
    waits until the row says 'flipping' and the pointer names the row's version (flipped, not served,
    not live), SIGKILLs the light worker's whole tree, and thaws the service.

    The retry finds 'flipping' and redoes the flip, the load and the go-live. It could instead roll
    back to the recorded previous version, but only if it could not serve; the service is back, so
    it completes. Either way the row, the pointer and the service must name the same version.
    """
    stack, api = faults.stack, faults.api
    tenant = f"{PREFIX}flip"
    seed_tenant(stack, tenant, 20_000, seed=34)
    light, inference = process_pid(stack, "worker-light-1"), process_pid(stack, "inference")
    run_id = api.trigger(TRAINING, {"tenant_id": tenant})
    wait_for(lambda: task_states(api, TRAINING, run_id).get("train_tenant.validate_index", ("none",))[0]
             in ("running", "success"), 300, "validate_index to run", poll=0.2)
    with frozen(inference):
        assert pointer_version(stack, tenant) is None  # frozen before the flip
        version = wait_for(lambda: (journal := deploy_journal(stack, run_id, tenant))[0] == "flipping"
                           and pointer_version(stack, tenant) == journal[1] and journal[1], 120,
                           "the deploy to flip the pointer", poll=0.1)
        assert task_states(api, TRAINING, run_id)[DEPLOY] == ("running", 1)
        kill_tree(light)
    killed_at = time.monotonic()

    assert_green_with_the_killed_try_retried(api, run_id, DEPLOY)
    status, _, row_version, reason = training_row(stack, run_id, tenant)
    assert (status, deploy_journal(stack, run_id, tenant)[0]) == ("success", "live"), reason
    assert row_version == pointer_version(stack, tenant) == served_version(stack, tenant) == version
    print(f"\nlight worker killed right after the flip: the retry made row, pointer and service agree on"
          f" {version} {time.monotonic() - killed_at:.0f}s after the kill")


def probe_results(stack) -> list[str]:
    """probe_success{job="api-server"} over the last five minutes, as Prometheus stored it."""
    series = query(stack, 'probe_success{job="api-server"}[5m]')
    return [value for _, value in series[0]["values"]] if series else []


def test_the_api_server_killed_mid_task_and_down_45s_the_task_outlives_it_and_the_health_probe_sees_it(faults):
    """The whole api-server, its uvicorn workers too, SIGKILLed while train_embeddings works, then held
    down through supervisord for API_OUTAGE_S, as a restart under load can take. The task's supervisor
    cannot heartbeat through the execution API meanwhile; the task must outlive that
    ([workers] max_failed_heartbeats in config.yaml: Airflow's default of 3 ends it within about 30 s).

    The task process is frozen for the outage so that its work spans it whatever the machine's speed
    (its supervisor, the process that heartbeats, keeps running); it is the process below the heavy
    worker that holds a PostgreSQL connection, as in the PostgreSQL test above.
    """
    stack, api = faults.stack, faults.api
    tenant = f"{PREFIX}api"
    run_id, loads, task = training_at_work(faults, tenant, seed=35)
    supervisor = Supervisor(stack)._proxy()
    with frozen(task):
        assert task_states(api, TRAINING, run_id)[TRAIN] == ("running", 1)
        kill_tree(process_pid(stack, "api-server"))
        try:
            with contextlib.suppress(xmlrpc.client.Fault):  # NOT_RUNNING: supervisord had not restarted it yet
                supervisor.stopProcess("api-server", True)
            time.sleep(API_OUTAGE_S)
        finally:
            supervisor.startProcess("api-server", True)
        wait_for(lambda: api_answers(api, run_id), 120, "the api-server to answer again", poll=0.5)

    assert api.wait_for_run(TRAINING, run_id, timeout=600)["state"] == "success"
    assert task_states(api, TRAINING, run_id)[TRAIN] == ("success", 1)  # it outlived the outage: no retry
    assert_deployed_once(faults, run_id, tenant, loads)
    # AirflowApiServerDown's input (promtool tests the rule): the probe failed while it was down.
    assert "0" in probe_results(stack)
    wait_for(lambda: probe_results(stack)[-1:] == ["1"], 60, "the api-server probe to succeed again")
    print(f"\napi-server killed mid-training and down {API_OUTAGE_S}s: the task outlived it (try 1), run green")


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


def given_up_on(stack) -> list[str]:
    """The processes supervisord stopped restarting (FATAL): only an operator starts them again."""
    return [p["name"] for p in Supervisor(stack).processes() if p["statename"] == "FATAL"]


def healthy_unless_given_up_on(faults) -> bool:
    if fatal := given_up_on(faults.stack):
        pytest.fail(f"supervisord gave up on {fatal}")
    return not unhealthy(faults)


def test_the_database_and_the_broker_down_for_a_minute_every_process_comes_back_on_its_own_and_a_run_is_green(
        faults):
    """Both stopped through supervisord at once, as an outage of the managed services would be:
    nothing restarts them, and every process that depends on either must outlast it."""
    stack, api = faults.stack, faults.api
    supervisor = Supervisor(stack)
    pids = {p["name"]: p["pid"] for p in supervisor.processes()}
    dependencies = ("postgres", "redis")
    for dependency in dependencies:
        supervisor._proxy().stopProcess(dependency, True)
    try:
        back_at = time.monotonic() + OUTAGE_S
        while time.monotonic() < back_at:
            assert not given_up_on(stack), "supervisord gave up while the database and the broker were down"
            time.sleep(2)
    finally:
        for dependency in dependencies:
            supervisor._proxy().startProcess(dependency, True)
    started_at = time.monotonic()
    wait_for(lambda: healthy_unless_given_up_on(faults), 300, "every process back after the outage", poll=2)
    recovered_s = time.monotonic() - started_at
    restarted = sorted(p["name"] for p in supervisor.processes()
                       if p["name"] not in dependencies and p["pid"] != pids[p["name"]])
    assert api.wait_for_run(SMOKE, api.trigger(SMOKE), timeout=300)["state"] == "success"
    print(f"\nPostgreSQL and Redis down {OUTAGE_S}s: stack healthy {recovered_s:.0f}s after they started again;"
          f" restarted on their own: {', '.join(restarted) or 'none'}")
