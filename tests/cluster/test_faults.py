"""Host faults on the cluster: a heavy host cut off mid-task, a light host crashed, Redis restarted;
and, while heavy-1 is still cut off, scale.yml adding an instance on heavy-2 and removing it mid-task.

Each fault is measured from the moment it lands to the recovery the test waits for; the times
print with `pytest -s`.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import psutil
import pytest
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from stackctl.model import settings
from stackctl.model.process import celery_hostname
from stackctl.native import broker
from stackctl.native.supervisor import Supervisor
from tests.polling import wait_for

TRAINING, SMOKE = "tenant_model_training", "controlplane_smoke"
TENANT = "initech"
WORKER = "worker-heavy-1"  # the heavy pool's supervisor program on each heavy host
ADDED = "worker-heavy-2"  # the program of a second heavy instance on a host (scale.yml)


def successful_deploys(deployed, tenant: str) -> float:
    """The inference service's own count of successful model loads for the tenant."""
    text = httpx.get(f"{deployed.url('inference')}/metrics", verify=deployed.managed.verify, timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "inference_deploys_total" and sample.labels.get("tenant") == tenant
               and sample.labels.get("outcome") == "loaded")


def active_alerts(deployed, alertname: str) -> list[dict]:
    alerts = httpx.get(f"{deployed.url('alertmanager')}/api/v2/alerts", auth=deployed.auth("alertmanager_password"),
                       params={"filter": f'alertname="{alertname}"'}, verify=deployed.managed.verify,
                       timeout=10).json()
    return [a for a in alerts if a["status"]["state"] == "active"]


def pages(deployed, alertname: str, status: str, since: datetime) -> list[dict]:
    """The inbox's pages of an alert that started firing after `since`: not one an earlier test caused
    (any restart of light-1's only worker, a certificate rotation's say, pages CeleryWorkerPoolDown)."""
    notes = httpx.get(f"{deployed.url('oncall_inbox')}/notifications", auth=deployed.auth("oncall_inbox_token"),
                      timeout=10, verify=deployed.managed.verify).json()
    return [a for note in notes for a in note["alerts"]
            if a["labels"].get("alertname") == alertname and a["status"] == status and started(a) > since]


def started(alert: dict) -> datetime:
    """An alert's startsAt (RFC 3339, with Go's nanoseconds, which fromisoformat does not take), to the second."""
    return datetime.fromisoformat(re.sub(r"\.\d+", "", alert["startsAt"]).replace("Z", "+00:00"))


def running_on(api, dag_id: str, run_id: str, host: str, queue: str) -> dict | None:
    return next((t for t in api.task_instances(dag_id, run_id)
                 if t["state"] == "running" and t["hostname"] == host and t["queue"] == queue), None)


@dataclass
class Cut:
    at: float  # time.monotonic() of the cut
    deploys: float  # the tenant's successful deploys after the run


@pytest.fixture(scope="module")
def heavy_1_cut(deployed):
    """heavy-1's link, cut by the first test and restored by the last (or here, after a failure).

    The pool alert needs minutes (Flower forgets the worker after 60 s, then `for: 5m`): the
    light-host and Redis faults run meanwhile.
    """
    state: dict[str, Cut] = {}
    yield state
    deployed.cluster["heavy-1"].restore()


def test_a_heavy_host_cut_off_mid_task_its_task_runs_again_on_the_other_and_deploys_once(
        deployed, seeded, heavy_1_cut):
    api, heavy_1, heavy_2 = deployed.api(), deployed.cluster["heavy-1"], deployed.cluster["heavy-2"]
    api.unpause(TRAINING)
    deploys = successful_deploys(deployed, TENANT)
    # Only heavy-1 serves the heavy queue until its link is cut, so the task runs there.
    deployed.supervisorctl(heavy_2, "stop", WORKER)
    run_id = api.trigger(TRAINING, {"tenant_id": TENANT})
    try:
        cut = wait_for(lambda: running_on(api, TRAINING, run_id, "heavy-1", "heavy"), 300,
                       "a heavy task running on heavy-1", poll=0.1)
        heavy_1.cut()
        cut_at = time.monotonic()
    finally:
        deployed.supervisorctl(heavy_2, "start", WORKER)
    run = api.wait_for_run(TRAINING, run_id, timeout=600)
    tasks = {(t["task_id"], t["map_index"]): t for t in api.task_instances(TRAINING, run_id)}
    assert run["state"] == "success", {key: t["state"] for key, t in tasks.items()}
    again = tasks[(cut["task_id"], cut["map_index"])]
    assert (again["hostname"], again["try_number"]) == ("heavy-2", cut["try_number"] + 1)
    deploy = next(t for (task_id, _), t in tasks.items() if task_id.endswith("deploy_to_production"))
    assert deploy["try_number"] == 1
    assert successful_deploys(deployed, TENANT) == deploys + 1
    heavy_1_cut["cut"] = Cut(cut_at, deploys + 1)
    print(f"\nheavy-1 cut: its task ran again on heavy-2, run green {time.monotonic() - cut_at:.0f}s after the cut")


def test_a_crashed_light_host_pages_and_its_run_is_retried_once_it_is_back(deployed):
    api, light_1 = deployed.api(), deployed.cluster["light-1"]
    api.unpause(SMOKE)
    run_id = api.trigger(SMOKE, {"light_burst": 1, "burst_hold_seconds": 20})
    held = wait_for(lambda: next((t for t in api.task_instances(SMOKE, run_id)
                                  if t["task_id"] == "light_burst" and t["state"] == "running"), None),
                    300, "the light burst task running", poll=0.2)
    assert held["hostname"] == "light-1"
    crashed = datetime.now(UTC).replace(microsecond=0)
    light_1.crash()
    crashed_at = time.monotonic()
    try:
        wait_for(lambda: pages(deployed, "CeleryWorkerPoolDown", "firing", crashed), 300, "CeleryWorkerPoolDown's page")
        paged_s = time.monotonic() - crashed_at
    finally:
        deployed.boot(light_1)
    run = api.wait_for_run(SMOKE, run_id, timeout=600)
    tasks = {(t["task_id"], t["map_index"]): t for t in api.task_instances(SMOKE, run_id)}
    assert run["state"] == "success", {key: t["state"] for key, t in tasks.items()}
    again = tasks[("light_burst", held["map_index"])]
    assert (again["hostname"], again["try_number"]) == ("light-1", held["try_number"] + 1)
    wait_for(lambda: pages(deployed, "CeleryWorkerPoolDown", "resolved", crashed), 300,
             "CeleryWorkerPoolDown resolved")
    print(f"\nlight-1 crash: paged after {paged_s:.0f}s, run green {time.monotonic() - crashed_at:.0f}s "
          "after the crash")


def test_workers_on_other_hosts_survive_a_redis_restart_without_one_of_their_own(deployed):
    workers = {name: deployed.supervisorctl(deployed.cluster[name], "pid", program)
               for name, program in (("light-1", "worker-light-1"), ("heavy-2", WORKER))}
    supervisor = Supervisor(deployed.managed)
    supervisor._proxy().stopProcess("redis", True)
    restarted_at = time.monotonic()
    supervisor._proxy().startProcess("redis", True)
    api = deployed.api()
    run_id = api.trigger(SMOKE, {"light_burst": 2, "heavy_burst": 1})
    assert api.wait_for_run(SMOKE, run_id, timeout=300)["state"] == "success"
    print(f"\nRedis restart: a run on both pools green {time.monotonic() - restarted_at:.0f}s after it")
    after = {name: deployed.supervisorctl(deployed.cluster[name], "pid", program)
             for name, program in (("light-1", "worker-light-1"), ("heavy-2", WORKER))}
    assert after == workers


def heavy_slots(api) -> int:
    return api.request("GET", "/pools/heavy")["slots"]


def celery_name(host, instance: int) -> str:
    return celery_hostname("heavy", instance, host.name)


def set_consuming(deployed, worker: str, consume: bool) -> None:
    """Have one Celery worker stop or resume consuming the heavy queue, and wait for its answer."""
    app = Celery(broker=broker.url(deployed.managed, deployed.secrets))
    control = app.control.add_consumer if consume else app.control.cancel_consumer
    try:
        replies = control("heavy", destination=[worker], reply=True, timeout=10)
    finally:
        app.close()
    assert [worker] == [name for reply in replies for name in reply], f"{worker} did not answer: {replies}"


def task_processes(worker_pid: int) -> list[psutil.Process]:
    """A Celery worker's task processes: its pool's children fork one per task (the Task SDK's
    supervisor forks the task itself)."""
    return [task for child in psutil.Process(worker_pid).children() for task in child.children(recursive=True)]


def test_an_instance_added_on_heavy_2_then_removed_mid_task_finishes_its_task_first_and_the_pool_follows(
        deployed, seeded, heavy_1_cut):
    """Runs while heavy-1 is cut off (scaling heavy-2 up is what an operator would do then):
    scale.yml counts the unreachable host at its last recorded size."""
    api, heavy_2 = deployed.api(), deployed.cluster["heavy-2"]
    per_instance = settings.load_source()["worker_pools"]["heavy"]["max_processes"]
    slots = heavy_slots(api)
    deployed.play("scale.yml", "-e", "pool=heavy", "-e", "instances=2", "-e", "on_hosts=heavy-2")
    assert "RUNNING" in deployed.supervisorctl(heavy_2, "status", ADDED)
    assert heavy_slots(api) == slots + per_instance
    tenant = next(t for t in seeded if t != TENANT)  # the degraded test counts TENANT's deploys
    # Only the added instance serves the heavy queue now: heavy-1 is cut off, and heavy-2's first
    # instance stops consuming it (Celery's remote control; stopping its program would fight
    # scale.yml, which waits for it). The next heavy task runs on the added instance, frozen as it
    # starts, so it is still running when the removal comes.
    first = celery_name(heavy_2, 1)
    set_consuming(deployed, first, False)
    scaled: dict = {}
    try:
        added = int(deployed.supervisorctl(heavy_2, "pid", ADDED))
        run_id = api.trigger(TRAINING, {"tenant_id": tenant})
        frozen = wait_for(lambda: task_processes(added), 300, "a heavy task on the added instance", poll=0.05)
        for process in frozen:
            process.send_signal(signal.SIGSTOP)
        held = wait_for(lambda: running_on(api, TRAINING, run_id, "heavy-2", "heavy"), 60, "the frozen task running")
        scaling = threading.Thread(target=lambda: scaled.update(result=deployed.play(
            "scale.yml", "-e", "pool=heavy", "-e", "instances=1", "-e", "on_hosts=heavy-2")))
        scaling.start()
        # Celery's warm shutdown: the instance stops taking tasks and waits for its running one.
        wait_for(lambda: "STOPPING" in deployed.supervisorctl(heavy_2, "status", ADDED, check=False), 300,
                 "scale.yml stopping the added instance")
        stopping_at = time.monotonic()
        time.sleep(5)
        assert psutil.pid_exists(added), "the instance quit before its task finished"
        for process in frozen:
            process.send_signal(signal.SIGCONT)
        wait_for(lambda: not psutil.pid_exists(added), 300, "the added instance to exit", poll=0.2)
        exited_at, shutdown_s = datetime.now(UTC), time.monotonic() - stopping_at
        scaling.join(timeout=600)
    finally:
        set_consuming(deployed, first, True)
    assert "result" in scaled, "scale.yml to one instance failed (its output is above)"
    finished = next(t for t in api.task_instances(TRAINING, run_id)
                    if (t["task_id"], t["map_index"]) == (held["task_id"], held["map_index"]))
    assert (finished["state"], finished["try_number"]) == ("success", held["try_number"])
    assert datetime.fromisoformat(finished["end_date"]) <= exited_at, "the instance exited before its task ended"
    assert ADDED not in deployed.supervisorctl(heavy_2, "status", check=False)
    assert heavy_slots(api) == slots
    run = api.wait_for_run(TRAINING, run_id, timeout=600)
    assert run["state"] == "success", {t["task_id"]: t["state"] for t in api.task_instances(TRAINING, run_id)}
    print(f"\nscale.yml: the removed instance exited {shutdown_s:.0f}s into its warm shutdown (the test held "
          f"its task frozen for 5 s of it), after its task; the heavy pool went {slots} -> {slots + per_instance} "
          f"-> {slots} slots")


def test_the_cut_heavy_host_fires_the_degraded_alert_which_clears_and_its_stale_try_deploys_nothing(
        deployed, heavy_1_cut):
    cut = heavy_1_cut.get("cut")
    assert cut, "heavy-1 was not cut (the first fault test failed)"
    wait_for(lambda: active_alerts(deployed, "CeleryWorkerPoolDegraded"), 600, "CeleryWorkerPoolDegraded")
    degraded_s = time.monotonic() - cut.at
    deployed.cluster["heavy-1"].restore()
    restored_at = time.monotonic()
    wait_for(lambda: not active_alerts(deployed, "CeleryWorkerPoolDegraded"), 300,
             "CeleryWorkerPoolDegraded to clear")
    cleared_s = time.monotonic() - restored_at
    # heavy-1 is back: its stale try neither deploys again nor replaces the served version.
    time.sleep(20)
    assert successful_deploys(deployed, TENANT) == cut.deploys
    print(f"\nheavy-1 cut: CeleryWorkerPoolDegraded {degraded_s:.0f}s after the cut, "
          f"cleared {cleared_s:.0f}s after the link came back")
