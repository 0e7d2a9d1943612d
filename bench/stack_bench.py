"""Tuned vs stock Airflow settings, and the tuned ones with TLS, on the native stack,
measured side by side in one run.

For each setting it starts a stack of its own (same machine, same code, free ports),
runs the two benchmark DAGs in bench/dags and stops the stack again:

- latency: trigger-to-success of a one-task DAG (median of several runs, polled every 0.1 s);
- throughput: wall time of a DAG of 100 mapped no-op tasks on the light pool;
- CPU floor: the CPU-seconds the whole machine spent during the mapped run (per task,
  times the tasks), divided by the cores: the wall time a perfectly parallel stack would need
  for the same work. "of floor" is floor / wall: 100% means the cores were never idle.

"stock" is the official docker-compose's configuration: Airflow's and the Celery provider's
defaults for every setting that airflow/config.yaml tunes (STOCK below), with the same
executor, auth manager, database and broker. "tls" is the tuned one with config.yaml's tls on:
Redis, PostgreSQL and every HTTP listener over TLS only, every client verifying them
(docs/security.md#tls-redis-postgresql-the-api-server-and-the-monitoring-listeners).

    .venv/bin/python bench/stack_bench.py [--latency-runs 5] [--mapped-runs 2]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "airflow"))

from stackctl.model import settings  # noqa: E402
from stackctl.native.airflow_api import AirflowApi  # noqa: E402
from stackctl.native.stack import NativeStack  # noqa: E402

# What the stock variant changes: the tuned Airflow settings are dropped (Airflow's defaults
# apply), the light pool gets the Celery provider's default concurrency, fixed, and the workers do
# not preload the Task SDK (workers/celery_imports.py).
STOCK_DROPPED = {
    "core": ["parallelism", "max_active_tasks_per_dag"],
    "scheduler": ["scheduler_idle_sleep_time", "task_instance_heartbeat_timeout"],
    "dag_processor": ["parsing_processes", "refresh_interval", "min_file_process_interval"],
    "triggerer": ["capacity"],
}
STOCK_LIGHT_CONCURRENCY = 16


def stock_source(source: dict) -> dict:
    stock = copy.deepcopy(source)
    for section, keys in STOCK_DROPPED.items():
        for key in keys:
            stock["airflow"][section].pop(key)
    light = stock["worker_pools"]["light"]
    light["min_processes"] = light["max_processes"] = STOCK_LIGHT_CONCURRENCY
    celery = stock["airflow"]["celery"]
    extra = json.loads(celery["extra_celery_config"].replace("{{", "{").replace("}}", "}"))
    extra.pop("imports")  # no preloading of the Task SDK in the worker
    celery["extra_celery_config"] = json.dumps(extra).replace("{", "{{").replace("}", "}}")
    return stock


def busy_cpu_seconds() -> float:
    """Machine-wide CPU time spent not idle, from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def free_ports(names: list[str]) -> dict[str, int]:
    sockets = [socket.socket() for _ in names]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = {name: sock.getsockname()[1] for name, sock in zip(names, sockets, strict=True)}
    for sock in sockets:
        sock.close()
    return ports


def run_once(api: AirflowApi, dag_id: str, conf: dict | None = None) -> float:
    """Seconds from the trigger (the run's queued_at) to success (its end_date), by the server's clock.

    Server timestamps keep the measurement exact without polling the API hard, which
    would itself load the api-server being measured.
    """
    run_id = api.trigger(dag_id, conf)
    run = api.wait_for_run(dag_id, run_id, timeout=900, poll=0.5)
    if run["state"] != "success":
        raise SystemExit(f"{dag_id} run {run_id} ended {run['state']}")
    return (datetime.fromisoformat(run["end_date"]) - datetime.fromisoformat(run["queued_at"])).total_seconds()


@contextmanager
def bench_stack(name: str, source: dict, dags_folder: Path = REPO / "bench" / "dags"):
    """A native stack of its own for one variant of the source, on free ports; yields (stack, api)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"cp-bench-{name.replace(' ', '-')}-"))
    workdir.chmod(0o755)
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump(source, sort_keys=False))
    env = {
        **os.environ,
        "CONTROLPLANE_CONFIG": str(config),
        "CONTROLPLANE_DAGS_FOLDER": str(dags_folder),
        "PYTHONPATH": f"{REPO}:{REPO / 'airflow'}",
    }
    home = workdir / "stack"
    ports = free_ports(list(source["ports"]))
    stackctl = [sys.executable, "-m", "stackctl", "--home", str(home)]
    port_args = [arg for item in ports.items() for arg in ("--port", "=".join(map(str, item)))]
    print(f"[{name}] starting a stack in {home}", file=sys.stderr)
    try:  # a stack that failed half-way up is stopped and removed too
        started = subprocess.run([*stackctl, "up", *port_args], env=env, capture_output=True, text=True,
                                 timeout=900)
        if started.returncode != 0:
            raise SystemExit(f"[{name}] stackctl up failed:\n{started.stderr}")
        # Its ports from the state folder, and this variant's source (tls: the api-server's scheme and CA).
        stack = dataclasses.replace(NativeStack.load(home), source=settings.load_source(config))
        api = AirflowApi(stack.url("api"), stack.source["admin_user"], stack.read_secret("admin_password"),
                         verify=stack.verify)
        try:
            yield stack, api
        finally:
            api.close()
    finally:
        subprocess.run([*stackctl, "down"], env=env, capture_output=True, timeout=300)
        shutil.rmtree(workdir, ignore_errors=True)


def measure(name: str, source: dict, latency_runs: int, mapped_runs: int) -> dict:
    with bench_stack(name, source) as (_, api):
        for dag_id in ("bench_one_task", "bench_mapped_100"):
            api.wait_for_dag(dag_id)
            api.unpause(dag_id)
        # Warm-up: every pool process runs its first task (connections, first imports).
        run_once(api, "bench_one_task")
        run_once(api, "bench_mapped_100")
        time.sleep(5)
        latencies = [run_once(api, "bench_one_task") for _ in range(latency_runs)]
        walls, cpus = [], []
        for _ in range(mapped_runs):
            time.sleep(5)
            cpu_before = busy_cpu_seconds()
            wall = run_once(api, "bench_mapped_100")
            cpus.append(busy_cpu_seconds() - cpu_before)
            walls.append(wall)
    wall = statistics.median(walls)
    cpu = statistics.median(cpus)
    cores = os.cpu_count() or 1
    return {
        "latency_s": statistics.median(latencies),
        "mapped_wall_s": wall,
        "cpu_per_task_s": cpu / 100,
        "floor_s": cpu / 100 * 100 / cores,
        "of_floor": (cpu / cores) / wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-runs", type=int, default=5)
    parser.add_argument("--mapped-runs", type=int, default=3)
    args = parser.parse_args()
    tuned_source = settings.load_source(REPO / "airflow" / "config.yaml")
    results = {
        "tuned": measure("tuned", {**tuned_source, "tls": False}, args.latency_runs, args.mapped_runs),
        "tls": measure("tls", {**tuned_source, "tls": True}, args.latency_runs, args.mapped_runs),
        "stock": measure("stock", stock_source({**tuned_source, "tls": False}), args.latency_runs, args.mapped_runs),
    }
    tuned, tls, stock = results["tuned"], results["tls"], results["stock"]
    print(f"\nnative stack benchmark, {os.cpu_count()} cores; medians "
          f"({args.latency_runs} latency runs, {args.mapped_runs} mapped runs per setting)\n")
    print(f"{'metric':<44} {'tuned':>9} {'tls':>9} {'tls/tuned':>10}")
    for label, key in (("one-task DAG, trigger to success (s)", "latency_s"),
                       ("100 mapped no-op tasks, wall time (s)", "mapped_wall_s"),
                       ("CPU-seconds per task, whole machine", "cpu_per_task_s")):
        print(f"{label:<44} {tuned[key]:>9.2f} {tls[key]:>9.2f} {tls[key] / tuned[key]:>9.2f}x")
    print(f"\n{'metric':<44} {'tuned':>9} {'stock':>9} {'stock/tuned':>12}")
    rows = [
        ("one-task DAG, trigger to success (s)", "latency_s"),
        ("100 mapped no-op tasks, wall time (s)", "mapped_wall_s"),
        ("CPU-seconds per task, whole machine", "cpu_per_task_s"),
        ("CPU floor for 100 tasks (s)", "floor_s"),
    ]
    for label, key in rows:
        print(f"{label:<44} {tuned[key]:>9.2f} {stock[key]:>9.2f} {stock[key] / tuned[key]:>11.2f}x")
    print(f"{'wall time vs its own floor (floor / wall)':<44} {tuned['of_floor']:>8.0%} {stock['of_floor']:>9.0%}")
    print(f"{'tuned wall vs tuned floor':<44} {tuned['mapped_wall_s'] / tuned['floor_s']:>8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
