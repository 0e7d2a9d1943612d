"""`make demo`: run the product's DAGs on the native stack and summarise each run.

While a run goes on it prints a progress line on stderr whenever its tasks change (done, running,
deferred, retrying, failed); stdout carries the summaries. For every run it prints the state and
duration, and for every task which worker pool ran it. It exits non-zero if a run failed or a
task ran on a pool other than its queue's.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple, TextIO

import httpx

from stackctl.demo import placement, seed
from stackctl.native import health, postgres
from stackctl.native.airflow_api import AirflowApi
from stackctl.native.stack import DEFAULT_HOME, NativeStack
from workers import storage

# (dag_id, conf) in the order the demo runs them.
DEMO_RUNS: list[tuple[str, dict]] = [
    ("controlplane_smoke", {}),
    ("tenant_model_training", {}),
    ("data_quality_check", {}),
    ("FreshPoC_E2E", {}),  # the sample dbt project (the DAG's default repository)
]
# The states that end a task instance: airflow.utils.state.TerminalTIState's values (importing
# airflow here would load its configuration).
DONE_TI_STATES = {"success", "failed", "skipped", "upstream_failed", "removed"}
# The states whose tasks a progress line names, and the word it names them with.
NAMED_TI_STATES = {"running": "running", "deferred": "deferred", "up_for_retry": "retrying", "failed": "failed"}
NAMES_PER_STATE = 5  # a line stays readable while a mapped task runs dozens of instances


class RunProgress(NamedTuple):
    done: int
    total: int  # task instances: each instance of a mapped task counts
    named: tuple[tuple[str, tuple[str, ...]], ...]  # (word, task labels) of the NAMED_TI_STATES present


def task_label(ti: dict) -> str:
    """train_embeddings[acme] for a mapped instance (its rendered map index when it has one)."""
    if ti["map_index"] < 0:
        return ti["task_id"]
    return f"{ti['task_id']}[{ti['rendered_map_index'] or ti['map_index']}]"


def run_progress(task_instances: list[dict]) -> RunProgress:
    named = ((word, tuple(sorted(task_label(ti) for ti in task_instances if ti["state"] == state)))
             for state, word in NAMED_TI_STATES.items())
    return RunProgress(sum(ti["state"] in DONE_TI_STATES for ti in task_instances), len(task_instances),
                       tuple((word, labels) for word, labels in named if labels))


def progress_line(dag_id: str, run: dict, progress: RunProgress) -> str:
    """`tenant_model_training manual__...: 7/22 tasks done; running: train_embeddings[acme]`."""
    if not progress.total:  # the scheduler has not created the run's task instances yet
        return f"{dag_id} {run['dag_run_id']}: run {run['state']}"
    parts = [f"{dag_id} {run['dag_run_id']}: {progress.done}/{progress.total} tasks done"]
    for word, labels in progress.named:
        more = f" and {len(labels) - NAMES_PER_STATE} more" if len(labels) > NAMES_PER_STATE else ""
        parts.append(f"{word}: {', '.join(labels[:NAMES_PER_STATE])}{more}")
    return "; ".join(parts)


def progress_printer(api: AirflowApi, dag_id: str, out: TextIO = sys.stderr) -> Callable[[dict], None]:
    """AirflowApi.wait_for_run's on_poll: one task-instance listing per poll, a line only when it changes."""
    last = ""

    def on_poll(run: dict) -> None:
        nonlocal last
        line = progress_line(dag_id, run, run_progress(api.task_instances(dag_id, run["dag_run_id"])))
        if line != last:
            print(line, file=out)
            last = line

    return on_poll


def seed_demo_data(stack: NativeStack) -> list[str]:
    """Demo tenants into the platform database and their training data into object storage."""
    storage_uri = json.loads((stack.airflow_home / "variables.json").read_text())["platform_storage_uri"]
    conn = postgres.connect(stack, stack.read_secret("platform_db_password"), user="platform", dbname="platform")
    try:
        # Data ends at the current hour: fresh for the data-quality checks, and the same all hour.
        end_us = int(time.time() // 3600 * 3600 * 1_000_000)
        return seed.seed(conn, storage.root(storage_uri), end_us)
    finally:
        conn.close()


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def print_inbox(stack: NativeStack) -> None:
    """What reached on-call: the notifications Alertmanager sent to the local inbox."""
    time.sleep(15)  # Alertmanager's group_wait
    notifications = httpx.get(f"{stack.url('oncall_inbox')}/notifications",
                              auth=health.listener_auth(stack, "oncall_inbox"), timeout=10,
                              verify=stack.verify).json()
    print(f"\non-call inbox ({stack.url('oncall_inbox')}/notifications): {len(notifications)} notifications")
    for note in notifications[-10:]:
        for alert in note["alerts"]:
            labels = alert["labels"]
            where = f"{labels.get('tenant', '-')}.{labels.get('table', '-')}.{labels.get('check', '-')}"
            print(f"  {alert['status']:<9} {labels.get('severity', '-'):<9} {where}: "
                  f"{alert['annotations'].get('description', '')[:80]}")


def freshpoc_report(api: AirflowApi, run_id: str) -> dict:
    """report_generate's result: where the lineage report is, and the models it lists."""
    entry = api.request("GET", f"/dags/FreshPoC_E2E/dagRuns/{run_id}/taskInstances/report_generate"
                               "/xcomEntries/return_value")
    return entry["value"] if isinstance(entry["value"], dict) else json.loads(entry["value"])


def summarise(stack: NativeStack, api: AirflowApi, dag_id: str, run: dict) -> list[str]:
    """Print one run's summary; return the problems found."""
    problems = []
    duration = _seconds(run["start_date"], run["end_date"])
    print(f"\n{dag_id}  run {run['dag_run_id']}  state={run['state']}  duration={duration or 0:.1f}s")
    if run["state"] != "success":
        problems.append(f"{dag_id} run {run['dag_run_id']} ended {run['state']}")
    workers = placement.workers_by_task(stack, dag_id, run["dag_run_id"])
    print(f"  {'task':<32} {'state':<10} {'secs':>6}  {'queue':<7} {'pool':<7} worker")
    for ti in sorted(api.task_instances(dag_id, run["dag_run_id"]), key=lambda t: t["start_date"] or ""):
        worker = workers.get((ti["task_id"], ti["map_index"]))
        pool = placement.pool_of(worker)
        name = ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")
        print(f"  {name:<32} {ti['state'] or '-':<10} {ti['duration'] or 0:>6.1f}  {ti['queue']:<7} "
              f"{pool or '-':<7} {worker or '-'}")
        if pool and pool != ti["queue"]:
            problems.append(f"{dag_id}.{name} was queued on {ti['queue']} but ran on the {pool} pool")
    return problems


def main() -> int:
    stack = NativeStack.load(DEFAULT_HOME)
    api = AirflowApi(stack.url("api"), stack.source["admin_user"], stack.read_secret("admin_password"),
                     verify=stack.verify)
    problems = []
    report = None
    print("demo data: tenants " + ", ".join(seed_demo_data(stack)))
    try:
        for dag_id, conf in DEMO_RUNS:
            api.wait_for_dag(dag_id)
            api.unpause(dag_id)
            run_id = api.trigger(dag_id, conf)
            run = api.wait_for_run(dag_id, run_id, timeout=1800, on_poll=progress_printer(api, dag_id))
            problems += summarise(stack, api, dag_id, run)
            if dag_id == "FreshPoC_E2E" and run["state"] == "success":
                report = freshpoc_report(api, run_id)
    finally:
        api.close()
    print()
    if problems:
        print("demo: PROBLEMS\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print_inbox(stack)
    print("demo: every run succeeded, each task on its own queue's pool")
    if report:
        print(f"FreshPoC lineage report of {report['project']} ({len(report['models'])} models): {report['report']}")
    print(f"try: curl '{stack.url('inference')}/api/v1/recommend?tenant_id=acme&user_id=42&k=5'")
    return 0

