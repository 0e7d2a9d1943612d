"""The demo's four-tenant tenant_model_training run, each task's time split into overhead and work.

On a native stack of its own (free ports, a temporary home, torn down after; or `--home` of a
running one), with the demo's four tenants seeded as `make demo` seeds them, it runs
tenant_model_training once per mode, in the same invocation:

- `off`: every task process imports what it needs itself (no worker_pools.<pool>.preload);
- `on`: each worker's main process imports its pool's preload once before it forks (config.yaml
  worker_pools.<pool>.preload, workers/library_preload.py): for both pools the Postgres hook, the
  storage file systems and the ORM mappers a connection lookup configures; for the heavy pool also
  numpy, scipy.sparse, pyarrow, implicit and faiss.

The bench switches modes by re-rendering the stack's supervisord configuration and restarting
the workers (`off` drops the light pool's preload too). Per task instance it prints:

    wall   Airflow's duration (end_date - start_date)
    start  start_date -> the task's code starts (end of the task runner's "Pre Execute": DAG parse, context)
    exec   the task's code: its imports, the work, its storage and database round trips (the task log)
    work   the same workers.training function, warm, in one process against the same storage and
           databases (a bench run id of its own; measured once, after the runs)
    ovh    wall - work

and per run the total (the DAG run's end - start, goal <= 40 s on the 2-core machine), the time
tasks waited between queued and start, and the peak memory of the heavy worker's processes:
RSS, PSS, private (USS) and address space (what its RLIMIT_AS ceiling counts) of its main
process, of its pool processes and of the task processes they fork, sampled every 0.1 s.

The work probe deploys its own versions to the stack's inference service: run it on a stack of
its own (the default), not on one that serves anybody.

    .venv/bin/python bench/training_run_bench.py                # both modes, own stack (~3 min)
    .venv/bin/python bench/training_run_bench.py --modes on --home ~/.controlplane
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "airflow")]

from stackctl.model import settings  # noqa: E402
from stackctl.native import broker, health, lifecycle  # noqa: E402
from stackctl.native.airflow_api import AirflowApi  # noqa: E402
from stackctl.native.secrets import write_private  # noqa: E402
from stackctl.native.stack import NativeStack  # noqa: E402
from stackctl.native.supervisor import Supervisor, environment, native_processes, render_conf  # noqa: E402

DAG_ID = "tenant_model_training"
GOAL_S = 40.0
RUN_TIMEOUT_S = 600
ENV = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'airflow'}"}
# The DAG's tasks in their order (train_tenant.* are mapped over the tenants).
TASKS = ("list_tenants", "validate_training_data", "train_embeddings", "build_faiss_index", "validate_index",
         "deploy_to_production", "update_redis_cache", "check_tenant_outcome")


# --- a stack of its own ------------------------------------------------------------------

def free_ports(count: int, floor: int = 20000) -> list[int]:
    """Free TCP and UDP loopback ports below the kernel's ephemeral range (as tests/e2e/conftest.py picks them)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports: list[int] = []
    for port in random.sample(range(floor, low), low - floor):
        with socket.socket() as tcp, socket.socket(type=socket.SOCK_DGRAM) as udp:
            try:
                tcp.bind(("127.0.0.1", port))
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"fewer than {count} free ports")


def stackctl(home: Path, *args: str, timeout: int = 900) -> None:
    done = subprocess.run([sys.executable, "-m", "stackctl", "--home", str(home), *args], env=ENV,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"stackctl {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def start_stack() -> Path:
    home = Path(tempfile.mkdtemp(prefix="training-run-bench-"))
    home.chmod(0o755)  # the unprivileged PostgreSQL user must reach it
    names = list(settings.load_source()["ports"])
    ports = [arg for name, port in zip(names, free_ports(len(names)), strict=True)
             for arg in ("--port", f"{name}={port}")]
    started = time.monotonic()
    stackctl(home, "up", *ports)
    print(f"stack up in {time.monotonic() - started:.0f} s at {home}", file=sys.stderr)
    return home


# --- the preload switch ------------------------------------------------------------------

def set_preload(stack: NativeStack, on: bool) -> None:
    """Re-render supervisord's configuration with or without the pools' preload, restart what changed."""
    source = copy.deepcopy(stack.source)
    if not on:
        for spec in source["worker_pools"].values():
            spec.pop("preload", None)
    secret_values = lifecycle.read_secrets(stack)
    write_private(stack.supervisor_conf, render_conf(dataclasses.replace(stack, source=source), secret_values))
    supervisor = Supervisor(stack)
    supervisor.reload()  # stops and re-adds only the programs whose configuration changed: the workers
    for pool in source["worker_pools"]:
        supervisor.start_group(f"worker-{pool}")
    broker_url = broker.url(stack, secret_values)
    deadline = time.monotonic() + 120
    while health.missing_workers(stack, health.celery_pongs(broker_url)):
        if time.monotonic() > deadline:
            raise RuntimeError("the workers did not answer within 120 s of their restart")
        time.sleep(1)


# --- memory of the heavy worker's processes ----------------------------------------------

def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def _memory_mb(pid: int) -> dict[str, float] | None:
    """RSS, PSS and private (USS) of a process (/proc/<pid>/smaps_rollup), and its address space
    (VmSize: what the heavy pool's RLIMIT_AS ceiling counts), MB."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    kb = {line.split(":")[0]: int(line.split()[1]) for line in lines[1:] if line.split()[-1] == "kB"}
    vm_kb = next((int(line.split()[1]) for line in status if line.startswith("VmSize:")), 0)
    return {"rss": kb.get("Rss", 0) / 1024, "pss": kb.get("Pss", 0) / 1024,
            "uss": (kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) / 1024, "vm": vm_kb / 1024}


class MemorySampler(threading.Thread):
    """Peak memory of the heavy worker's main process, pool processes and task processes (by depth)."""

    LEVELS = ("main", "pool process", "task process")

    def __init__(self, stack: NativeStack):
        super().__init__(daemon=True)
        self.stack, self.stop = stack, threading.Event()
        self.peaks: dict[str, dict[str, float]] = {}
        self.tasks_seen: set[int] = set()

    def _main_pid(self) -> int | None:
        return next((info["pid"] for info in Supervisor(self.stack).processes()
                     if info["group"] == "worker-heavy" and info["pid"]), None)

    def run(self) -> None:
        main = self._main_pid()
        while main and not self.stop.wait(0.1):
            tree = _children()
            level = [main]
            for name in self.LEVELS:
                for pid in level:
                    if (memory := _memory_mb(pid)) is None:
                        continue
                    if name == "task process":
                        self.tasks_seen.add(pid)
                    peak = self.peaks.setdefault(name, dict.fromkeys(memory, 0.0))
                    for key, value in memory.items():
                        peak[key] = max(peak[key], value)
                level = [child for pid in level for child in tree.get(pid, [])]


# --- one run ---------------------------------------------------------------------------

def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def log_marks(stack: NativeStack, run_id: str, ti: dict) -> tuple[float | None, float | None]:
    """(the task's code starts, it returned) from its log: the end of "Pre Execute", "Done. Returned value"."""
    path = (stack.airflow_home.parent / "logs" / "airflow" / f"dag_id={DAG_ID}" / f"run_id={run_id}"
            / f"task_id={ti['task_id']}")
    path = (path / f"map_index={ti['map_index']}" if ti["map_index"] >= 0 else path) / f"attempt={ti['try_number']}.log"
    started = returned = None
    in_pre = False
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None, None
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        text = str(event.get("event", ""))
        if text == "::group::Pre Execute":
            in_pre = True
        elif in_pre and text == "::endgroup::":
            started, in_pre = _ts(event["timestamp"]), False
        elif text.startswith("Done. Returned value"):
            returned = _ts(event["timestamp"])
    return started, returned


def run_once(stack: NativeStack, api: AirflowApi, mode: str) -> dict:
    set_preload(stack, mode == "on")
    sampler = MemorySampler(stack)
    sampler.start()
    run_id = api.trigger(DAG_ID, {})
    run = api.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT_S, poll=0.5)
    sampler.stop.set()
    sampler.join()
    tasks = {}
    for ti in api.task_instances(DAG_ID, run_id):
        start, end = _ts(ti["start_date"]), _ts(ti["end_date"])
        code_start, returned = log_marks(stack, run_id, ti)
        tasks[(ti["task_id"].split(".")[-1], ti["map_index"])] = {
            "state": ti["state"], "wall": (end - start) if start and end else None,
            "wait": (start - _ts(ti["queued_when"])) if start and ti.get("queued_when") else None,
            "start": (code_start - start) if code_start and start else None,
            "exec": (returned - code_start) if returned and code_start else None,
        }
    return {"state": run["state"], "total": _ts(run["end_date"]) - _ts(run["start_date"]), "tasks": tasks,
            "memory": sampler.peaks, "task_processes": len(sampler.tasks_seen)}


# --- the work, warm, in one process ------------------------------------------------------

PROBE = r"""
import json, sys, time
from datetime import datetime, timezone
from workers.platform_db.tenants import list_tenants
from workers.training import tasks

def timed(fn, *args):
    started = time.perf_counter(); fn(*args); return time.perf_counter() - started

def chain(tenant, run_id):
    now = datetime.now(timezone.utc)
    return {
        "validate_training_data": timed(tasks.validate_training_data, tenant, run_id),
        "train_embeddings": timed(tasks.train_embeddings, tenant, run_id),
        "build_faiss_index": timed(tasks.build_faiss_index, tenant, run_id),
        "validate_index": timed(tasks.validate_index, tenant, run_id),
        "deploy_to_production": timed(tasks.deploy_to_production, tenant, run_id, now, now),
        "update_redis_cache": timed(tasks.update_redis_cache, tenant, run_id),
        "check_tenant_outcome": timed(tasks.tenant_outcome, tenant, run_id),
    }

tenants = list_tenants(None)
stamp = f"{time.time():.0f}"
chain(tenants[0], f"bench_warmup__{stamp}")  # imports, first connections, page cache
work = {"list_tenants": timed(list_tenants, None), "tenants": tenants}
work["per_tenant"] = [chain(tenant, f"bench_work__{stamp}") for tenant in tenants]
print("WORK " + json.dumps(work))
"""


def measure_work(stack: NativeStack) -> dict:
    """The plain functions' time, warm, with the api-server's connections (the tasks get them from it)."""
    secret_values = lifecycle.read_secrets(stack)
    api_server = next(p for p in native_processes(stack, secret_values) if p.name == "api-server")
    env = {**os.environ, **environment(stack, secret_values, api_server), "PYTHONPATH": ENV["PYTHONPATH"]}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=600)
    line = next((line for line in done.stdout.splitlines() if line.startswith("WORK ")), None)
    if line is None:
        raise RuntimeError(f"work probe failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    work = json.loads(line[5:])
    result = {("list_tenants", -1): work["list_tenants"]}
    for index, per_task in enumerate(work["per_tenant"]):
        result.update({(task, index): seconds for task, seconds in per_task.items()})
    return result


# --- the table ----------------------------------------------------------------------------

def _f(value: float | None, width: int = 6) -> str:
    return f"{value:{width}.2f}" if value is not None else " " * (width - 1) + "-"


def report(runs: dict[str, dict], work: dict, tenants: list[str]) -> list[str]:
    modes = list(runs)
    head = f"{'task':<24}{'tenant':<9}" + "".join(
        f"| {mode + ': wall':>10} {'start':>6} {'exec':>6} {'ovh':>6} " for mode in modes) + f"| {'work':>6}"
    lines = [head, "-" * len(head)]
    keys = sorted({key for run in runs.values() for key in run["tasks"]},
                  key=lambda key: (TASKS.index(key[0]) if key[0] in TASKS else 99, key[1]))
    sums = {mode: {"wall": 0.0, "ovh": 0.0} for mode in modes}
    work_sum = 0.0
    for key in keys:
        task, index = key
        row = f"{task:<24}{(tenants[index] if 0 <= index < len(tenants) else '-'):<9}"
        seconds = work.get(key)
        for mode in modes:
            t = runs[mode]["tasks"].get(key, {})
            overhead = t["wall"] - seconds if t.get("wall") is not None and seconds is not None else None
            row += f"| {_f(t.get('wall'), 10)} {_f(t.get('start'))} {_f(t.get('exec'))} {_f(overhead)} "
            sums[mode]["wall"] += t.get("wall") or 0
            sums[mode]["ovh"] += overhead or 0
        work_sum += seconds or 0
        lines.append(row + f"| {_f(seconds)}")
    lines.append("-" * len(head))
    lines.append(f"{'sum over tasks':<33}" + "".join(
        f"| {_f(sums[m]['wall'], 10)} {'':>6} {'':>6} {_f(sums[m]['ovh'])} " for m in modes) + f"| {_f(work_sum)}")
    lines.append("")
    for mode, run in runs.items():
        waits = [t["wait"] for t in run["tasks"].values() if t.get("wait") is not None]
        verdict = "meets" if run["total"] <= GOAL_S and run["state"] == "success" else "MISSES"
        lines.append(f"preload {mode:<3}: run {run['state']} in {run['total']:.1f} s ({verdict} the goal of "
                     f"<= {GOAL_S:.0f} s); queued->start {sum(waits):.1f} s over {len(waits)} tasks "
                     f"(max {max(waits, default=0):.1f} s)")
        for level in MemorySampler.LEVELS:
            if peak := run["memory"].get(level):
                lines.append(f"  heavy {level:<13} peak MB: RSS {peak['rss']:6.0f}  PSS {peak['pss']:6.0f}  "
                             f"private {peak['uss']:6.0f}  address space {peak['vm']:6.0f}")
        lines.append(f"  ({run['task_processes']} heavy task processes sampled)")
    if len(modes) == 2:
        a, b = (runs[m]["total"] for m in modes)
        lines.append(f"run total {modes[0]} -> {modes[1]}: {a:.1f} s -> {b:.1f} s ({a - b:+.1f} s)")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="a running native stack's home (default: start one of its own)")
    parser.add_argument("--modes", default="off,on", help="preload modes to run, in order (off, on)")
    parser.add_argument("--keep", action="store_true", help="leave the bench's own stack running")
    parser.add_argument("--json", type=Path, help="also write every run's task instances and the work here")
    args = parser.parse_args()
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    if not modes or set(modes) - {"off", "on"}:
        parser.error("--modes: off, on or both")
    home = args.home or start_stack()
    stack = NativeStack.load(home)
    api = AirflowApi(stack.url("api"), stack.source["admin_user"], stack.read_secret("admin_password"))
    try:
        from stackctl.demo.run import seed_demo_data

        tenants = seed_demo_data(stack)
        print(f"seeded {', '.join(tenants)}", file=sys.stderr)
        api.wait_for_dag(DAG_ID)
        api.unpause(DAG_ID)
        runs = {}
        for mode in modes:
            runs[mode] = run_once(stack, api, mode)
            print(f"preload {mode}: {runs[mode]['state']} in {runs[mode]['total']:.1f} s", file=sys.stderr)
        set_preload(stack, True)  # the stack's configuration as config.yaml has it
        work = measure_work(stack)
        tenants = sorted(tenants)  # list_tenants orders them: the map index is the position
        print(f"tenant_model_training, {len(tenants)} demo tenants, {os.cpu_count()} cores; seconds")
        print("\n".join(report(runs, work, tenants)))
        if args.json:
            args.json.write_text(json.dumps({
                "runs": {mode: {**run, "tasks": {f"{task}[{index}]": t for (task, index), t in run["tasks"].items()}}
                         for mode, run in runs.items()},
                "work": {f"{task}[{index}]": seconds for (task, index), seconds in work.items()},
            }, indent=1))
        return 0 if all(run["state"] == "success" for run in runs.values()) else 1
    finally:
        api.close()
        if not args.home and not args.keep:
            stackctl(home, "down", timeout=300)
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
