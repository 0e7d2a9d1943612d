"""End to end on a real stack: PostgreSQL, Redis, the Airflow components, both Celery pools, Flower."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from stackctl.demo import placement
from stackctl.native.supervisor import Supervisor

from .conftest import STACKCTL_ENV

pytestmark = pytest.mark.e2e


def test_smoke_dag_runs_each_task_on_its_own_pool(running_stack):
    api = running_stack.api
    api.wait_for_dag("controlplane_smoke")
    api.unpause("controlplane_smoke")
    run_id = api.trigger("controlplane_smoke")
    run = api.wait_for_run("controlplane_smoke", run_id, timeout=300)
    assert run["state"] == "success"

    tis = {ti["task_id"]: ti for ti in api.task_instances("controlplane_smoke", run_id)}
    # Without burst params the burst tasks map over nothing and are skipped; every other task succeeds.
    assert {tid: ti["state"] for tid, ti in tis.items() if ti["state"] != "success"} == {
        "light_burst": "skipped", "heavy_burst": "skipped"}
    workers = placement.workers_by_task(running_stack.stack, "controlplane_smoke", run_id)
    assert placement.pool_of(workers[("light_probe", -1)]) == "light"
    assert placement.pool_of(workers[("heavy_faiss_probe", -1)]) == "heavy"
    assert tis["heavy_faiss_probe"]["pool"] == "heavy"


def test_demo_summarises_each_task_with_its_pool(running_stack):
    demo = subprocess.run(
        [sys.executable, "-m", "stackctl.demo"],
        env={**STACKCTL_ENV, "CONTROLPLANE_HOME": str(running_stack.home)},
        capture_output=True, text=True, timeout=600,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "state=success" in demo.stdout
    light_line = next(line for line in demo.stdout.splitlines() if "light_probe" in line)
    heavy_line = next(line for line in demo.stdout.splitlines() if "heavy_faiss_probe" in line)
    assert " light " in light_line and "light-1@" in light_line
    assert " heavy " in heavy_line and "heavy-1@" in heavy_line


def test_rest_api_refuses_requests_without_a_token(running_stack):
    response = httpx.get(f"{running_stack.stack.url('api')}/api/v2/dags", timeout=10, verify=running_stack.stack.verify)
    assert response.status_code == 401


def test_rest_api_refuses_a_wrong_password(running_stack):
    response = httpx.post(
        f"{running_stack.stack.url('api')}/auth/token",
        json={"username": "admin", "password": "admin"},  # pragma: allowlist secret (it must be refused)
        timeout=10, verify=running_stack.stack.verify,
    )
    assert response.status_code == 401


def test_flower_requires_credentials(running_stack):
    url, verify = f"{running_stack.stack.url('flower')}/api/workers", running_stack.stack.verify
    assert httpx.get(url, timeout=10, verify=verify).status_code == 401
    assert httpx.get(url, auth=("admin", "admin"), timeout=10, verify=verify).status_code == 401


def test_status_reports_every_component_healthy(running_stack):
    status = running_stack.stackctl("status", timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.strip().endswith("healthy")
    for component in ("postgres", "redis", "api-server", "scheduler", "dag-processor", "triggerer",
                      "worker-light-1", "worker-heavy-1", "flower"):
        assert f"{component} " in status.stdout
    # Each pool's capacity: desired processes (from Prometheus) against what its workers run.
    for pool, spec in running_stack.stack.source["worker_pools"].items():
        row = next(line.split() for line in status.stdout.splitlines() if line.startswith(f"{pool} "))
        desired, online, online_max, configured = row[1:5]
        assert desired.isdigit(), row  # "?" when Prometheus does not answer
        assert spec["min_processes"] <= int(online) <= int(online_max) == spec["max_processes"], row
        assert int(configured) == spec["instances"] * spec["max_processes"], row


def test_up_again_is_harmless(running_stack):
    supervisor = Supervisor(running_stack.stack)
    before = {p["name"]: p["pid"] for p in supervisor.processes()}
    again = running_stack.stackctl("up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert {p["name"]: p["pid"] for p in supervisor.processes()} == before


def test_secret_files_and_rendered_configs_are_owner_only(running_stack):
    stack = running_stack.stack
    # The secrets folder holds the files programs read secrets from too (Redis's password line).
    for path in [*stack.secrets_dir.iterdir(), stack.airflow_cfg,
                 stack.supervisor_conf]:
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert stack.secrets_dir.stat().st_mode & 0o777 == 0o700


def test_every_listener_of_the_stack_is_on_loopback(running_stack):
    supervisor = Supervisor(running_stack.stack)
    pids = {str(p["pid"]) for p in supervisor.processes()}
    listeners = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    ours = [line for line in listeners.splitlines() if any(f"pid={pid}," in line for pid in pids)]
    assert ours, "no listener found for the stack's processes"
    addresses = {line.split()[3].rsplit(":", 1)[0] for line in ours}
    assert addresses == {"127.0.0.1"}, ours


def test_heavy_workers_run_under_a_memory_ceiling(running_stack):
    stack = running_stack.stack
    heavy = next(p for p in Supervisor(stack).processes() if p["group"] == "worker-heavy")
    limits = Path(f"/proc/{heavy['pid']}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max address space"))
    expected = stack.source["worker_pools"]["heavy"]["memory_limit_mb"] * 1024 * 1024
    assert line.split()[3] == str(expected)


def test_airflow_statsd_reaches_the_bridge_as_mapped_metrics(running_stack):
    """Native stand-in for statsd_exporter: Airflow's own StatsD names come out labelled."""
    api = running_stack.api
    api.wait_for_dag("controlplane_smoke")
    api.unpause("controlplane_smoke")
    assert api.wait_for_run("controlplane_smoke", api.trigger("controlplane_smoke"), timeout=300)["state"] == "success"
    url = f"{running_stack.stack.url('statsd_metrics')}/metrics"
    expected = [
        "airflow_scheduler_heartbeat_total ",
        "airflow_triggerer_heartbeat_total ",
        'airflow_ti_finish_total{dag_id="controlplane_smoke",state="success",task_id="heavy_faiss_probe"}',
        'airflow_dagrun_duration_seconds_count{dag_id="controlplane_smoke",state="success"}',
    ]
    deadline = time.monotonic() + 60
    while True:
        text = httpx.get(url, timeout=10).text
        missing = [name for name in expected if name not in text]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert missing == []
    assert "statsd_bridge_errors_total" not in text or 'reason="conflict"' not in text
