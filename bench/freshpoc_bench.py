"""FreshPoC_E2E on the sample dbt project, end to end: the old way of waiting for jobs vs the new, in one run.

It starts a native stack of its own (free ports, only the FreshPoC DAG, as bench/stack_bench.py
does) and triggers FreshPoC_E2E alternately with each `job_wait` (workers/freshpoc/stage.py):

- fixed_5s: how stages waited before issue 18: GET /health, start the job, defer, the trigger
  polling every 5 s;
- adaptive: one start call whose answer waits up to 1 s for the job (a short job ends there,
  without a deferral), then polls from 0.2 s backing off to 5 s.

For each it prints the median trigger-to-success time (the run's queued_at to end_date, by
the server's clock), each stage's median duration, and the requests the five job services
answered per run (their /metrics): readiness checks, starts and the triggers' polls. A run
with polls deferred. Goal: adaptive at most 15 s on a 2-core machine.

    .venv/bin/python bench/freshpoc_bench.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from collections import Counter
from datetime import datetime
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "airflow")]

from stack_bench import bench_stack  # noqa: E402

from stackctl.model import settings  # noqa: E402
from workers.freshpoc.services import JOB_SERVICES  # noqa: E402

DAG = "FreshPoC_E2E"
WAITS = ("fixed_5s", "adaptive")  # before, after
GOAL_S = 15.0
ENDPOINTS = {"/health": "readiness", "/api/v1/jobs": "start", "/api/v1/jobs/{job_id}": "poll"}


def requests_answered(stack) -> Counter:
    """Requests the five job services have answered so far, by kind (readiness, start, poll)."""
    counts = Counter()
    for service in JOB_SERVICES:  # the DAG's stages run on these
        text = httpx.get(f"{stack.url(service.conn_id)}/metrics", verify=stack.verify, timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "freshpoc_requests_total" and sample.labels["endpoint"] in ENDPOINTS:
                    counts[ENDPOINTS[sample.labels["endpoint"]]] += int(sample.value)
    return counts


def seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def run_once(stack, api, job_wait: str) -> dict:
    """One run: its trigger-to-success time, each stage's duration, and the requests it made."""
    before = requests_answered(stack)
    run_id = api.trigger(DAG, {"job_wait": job_wait})
    run = api.wait_for_run(DAG, run_id, timeout=900, poll=0.5)
    if run["state"] != "success":
        raise SystemExit(f"{DAG} run {run_id} ({job_wait}) ended {run['state']}")
    tis = sorted(api.task_instances(DAG, run_id), key=lambda ti: ti["start_date"])
    stages = {ti["task_id"]: seconds(ti["start_date"], ti["end_date"]) for ti in tis}  # in the order they ran
    return {"total_s": seconds(run["queued_at"], run["end_date"]), "stages": stages,
            "requests": requests_answered(stack) - before}


def measure(runs: int) -> dict[str, list[dict]]:
    """Both ways on one stack, alternating, after a warm-up run of each."""
    dags_folder = Path(tempfile.mkdtemp(prefix="cp-bench-freshpoc-dags-"))
    shutil.copy(REPO / "dags" / "freshpoc_e2e.py", dags_folder)
    results: dict[str, list[dict]] = {wait: [] for wait in WAITS}
    try:
        source = settings.load_source(REPO / "airflow" / "config.yaml")
        with bench_stack("freshpoc", source, dags_folder) as (stack, api):
            api.wait_for_dag(DAG, timeout=300)
            api.unpause(DAG)
            for wait in WAITS:  # warm-up: the light pool's processes, the services' first requests
                run_once(stack, api, wait)
            for n in range(runs):
                for wait in WAITS:
                    results[wait].append(run_once(stack, api, wait))
                    print(f"[freshpoc] run {n + 1}/{runs} {wait}: {results[wait][-1]['total_s']:.1f}s",
                          file=sys.stderr)
    finally:
        shutil.rmtree(dags_folder, ignore_errors=True)
    return results


def median(values) -> float:
    return statistics.median(list(values))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="measured runs of each way (after one warm-up each)")
    args = parser.parse_args()
    results = measure(args.runs)
    old, new = results["fixed_5s"], results["adaptive"]
    print(f"\nFreshPoC_E2E on the sample project, {os.cpu_count()} cores; medians of {args.runs} runs each\n")
    print(f"{'':<38} {'fixed_5s':>9} {'adaptive':>9} {'old/new':>8}")
    rows = [("trigger to success (s)", [r["total_s"] for r in old], [r["total_s"] for r in new])]
    rows += [(f"  {task} (s)", [r["stages"][task] for r in old], [r["stages"][task] for r in new])
             for task in new[0]["stages"]]
    rows.append(("  between stages: scheduling (s)",
                 [r["total_s"] - sum(r["stages"].values()) for r in old],
                 [r["total_s"] - sum(r["stages"].values()) for r in new]))
    for label, before, after in rows:
        print(f"{label:<38} {median(before):>9.2f} {median(after):>9.2f} {median(before) / median(after):>7.2f}x")
    for kind in ENDPOINTS.values():
        print(f"{'requests per run: ' + kind:<38} {median(r['requests'][kind] for r in old):>9.0f} "
              f"{median(r['requests'][kind] for r in new):>9.0f}")
    worst = max(r["total_s"] for r in new)
    verdict = "met" if worst <= GOAL_S else "NOT met"
    print(f"\nadaptive: slowest run {worst:.1f}s; goal at most {GOAL_S:.0f}s: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
