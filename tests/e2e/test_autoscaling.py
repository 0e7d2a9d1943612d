"""Celery's autoscaler on the live stack: pools grow under a burst, shrink when idle, never kill a running task.

The bursts come from controlplane_smoke's burst params; each pool's processes are read from
`celery inspect stats` (the autoscaler's current size and the pool's process ids).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from stackctl.native import broker, health, lifecycle

from .conftest import wait_for

pytestmark = pytest.mark.e2e

KEEPALIVE_S = 30  # Celery's AUTOSCALE_KEEPALIVE: an idle process outlives the last growth by this much
# How long the long burst holds its processes: the keep-alive, and 90 s for the short burst's tasks to
# start and end and for the autoscaler to act on a loaded machine (40 s was too little with the other suites
# running beside this one, and 60 s once: its long tasks started 50 s late and the shrink came 25 s late).
LONG_HOLD_S = KEEPALIVE_S + 90


def pool_workers(running_stack, pool: str) -> list[dict]:
    """The stack's own workers of the pool, by their exact Celery hostnames: another worker on the broker
    whose name merely starts with the pool's (test_ansible's heavy-ansible-N@host) is not counted."""
    stack = running_stack.stack
    ours = set(stack.worker_hostnames(pool))
    broker_url = broker.url(stack, lifecycle.read_secrets(stack))
    return [w for name, w in health.worker_processes(broker_url).items() if name in ours]


def processes(running_stack, pool: str) -> int:
    return sum(w["current"] or 0 for w in pool_workers(running_stack, pool))


def burst(running_stack, **params) -> str:
    api = running_stack.api
    api.wait_for_dag("controlplane_smoke")
    api.unpause("controlplane_smoke")
    return api.trigger("controlplane_smoke", params)


def finished(running_stack, run_id: str) -> dict | None:
    run = running_stack.api.dag_run("controlplane_smoke", run_id)
    return run if run["state"] in ("success", "failed") else None


def at_capacity_alerts(running_stack, pool: str) -> list[dict]:
    stack = running_stack.stack
    response = httpx.get(f"{stack.url('prometheus')}/api/v1/query", timeout=10,
                         auth=health.listener_auth(stack, "prometheus"), verify=stack.verify,
                         params={"query": f'ALERTS{{alertname="WorkerPoolAtCapacity",pool="{pool}"}}'})
    return response.json()["data"]["result"]


def burst_tasks(running_stack, run_id: str, task_id: str) -> list[dict]:
    return [ti for ti in running_stack.api.task_instances("controlplane_smoke", run_id) if ti["task_id"] == task_id]


def wait_for_minimum(running_stack, pool: str) -> int:
    minimum = running_stack.stack.source["worker_pools"][pool]["min_processes"]
    wait_for(lambda: processes(running_stack, pool) == minimum, KEEPALIVE_S * 4, f"the {pool} pool at its minimum")
    return minimum


def test_a_light_burst_grows_the_pool_toward_its_maximum_and_it_shrinks_back(running_stack):
    spec = running_stack.stack.source["worker_pools"]["light"]
    minimum = wait_for_minimum(running_stack, "light")
    run_id = burst(running_stack, light_burst=48, burst_hold_seconds=15)
    peak, alert_states = minimum, set()
    deadline = time.monotonic() + 600
    while not (run := finished(running_stack, run_id)) and time.monotonic() < deadline:
        peak = max(peak, processes(running_stack, "light"))
        alert_states |= {a["metric"]["alertstate"] for a in at_capacity_alerts(running_stack, "light")}
        time.sleep(1)
    assert run and run["state"] == "success", run
    assert len(burst_tasks(running_stack, run_id, "light_burst")) == 48
    # Grew from the minimum toward the maximum, never past it.
    assert minimum < peak <= spec["max_processes"] * spec["instances"], (minimum, peak)
    # 32 tasks queued or running (max_active_tasks_per_dag) against 16 processes: the alert's condition
    # holds on live data (it pends; firing takes its 10 minutes, proven by promtool).
    assert alert_states & {"pending", "firing"}, "WorkerPoolAtCapacity never became pending during the burst"
    # After the keep-alive, the idle processes go: back to the minimum, and the alert resolves.
    wait_for_minimum(running_stack, "light")
    wait_for(lambda: not at_capacity_alerts(running_stack, "light"), 120, "WorkerPoolAtCapacity to resolve")


def test_scale_down_never_kills_a_running_task(running_stack):
    """A short and a long burst together: the pool shrinks while the long tasks still run, and none is lost.

    The shrink comes a keep-alive after the short tasks end (and after the pool last grew); the long
    tasks hold their processes LONG_HOLD_S, which leaves a window to see it in even when task starts
    lag on a loaded machine. Only the short burst's own tasks must have ended, not its whole run (whose
    FAISS probe waits on the heavy pool).
    """
    wait_for_minimum(running_stack, "light")
    long_run = burst(running_stack, light_burst=6, burst_hold_seconds=LONG_HOLD_S)
    short_run = burst(running_stack, light_burst=8, burst_hold_seconds=2)
    peak, shrank_while_long_ran, short_done_at, samples = 0, False, None, []
    started = time.monotonic()
    deadline = started + 600
    while not finished(running_stack, long_run) and time.monotonic() < deadline:
        now = processes(running_stack, "light")
        peak = max(peak, now)
        running_long = [ti for ti in burst_tasks(running_stack, long_run, "light_burst") if ti["state"] == "running"]
        short = burst_tasks(running_stack, short_run, "light_burst")
        if short_done_at is None and len(short) == 8 and all(ti["state"] == "success" for ti in short):
            short_done_at = time.monotonic() - started
        if short_done_at is not None and len(running_long) == 6 and now < peak:
            shrank_while_long_ran = True
        samples.append(f"{time.monotonic() - started:.0f}s: {now} processes, {len(running_long)} long running")
        time.sleep(2)
    assert shrank_while_long_ran, (f"the pool never shrank while the long tasks ran (peak {peak}, short burst done"
                                   f" at {short_done_at}s): " + "; ".join(samples))
    for run_id in (long_run, short_run):
        assert finished(running_stack, run_id)["state"] == "success"
    long_tasks = burst_tasks(running_stack, long_run, "light_burst")
    assert [(ti["state"], ti["try_number"]) for ti in long_tasks] == [("success", 1)] * 6


def address_space_limit(pid: int) -> str:
    limits = Path(f"/proc/{pid}/limits").read_text()
    return next(line for line in limits.splitlines() if line.startswith("Max address space")).split()[3]


def test_a_heavy_burst_beyond_the_maximum_waits_under_the_memory_ceiling(running_stack):
    spec = running_stack.stack.source["worker_pools"]["heavy"]
    most = spec["max_processes"] * spec["instances"]
    ceiling = str(spec["memory_limit_mb"] * 1024 * 1024)
    run_id = burst(running_stack, heavy_burst=most + 3, burst_hold_seconds=6)
    peak_running, peak_processes, limits = 0, 0, set()
    deadline = time.monotonic() + 600
    while not (run := finished(running_stack, run_id)) and time.monotonic() < deadline:
        tasks = burst_tasks(running_stack, run_id, "heavy_burst")
        peak_running = max(peak_running, sum(ti["state"] == "running" for ti in tasks))
        workers = pool_workers(running_stack, "heavy")
        peak_processes = max(peak_processes, sum(w["current"] or 0 for w in workers))
        limits |= {address_space_limit(pid) for w in workers for pid in w["pids"] if Path(f"/proc/{pid}").exists()}
        time.sleep(1)
    assert run and run["state"] == "success", run
    assert [ti["state"] for ti in burst_tasks(running_stack, run_id, "heavy_burst")] == ["success"] * (most + 3)
    assert 1 <= peak_running <= most and peak_processes <= most, (peak_running, peak_processes)
    assert limits == {ceiling}, limits
