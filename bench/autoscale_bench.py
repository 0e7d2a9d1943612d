"""Autoscaled worker pools against fixed ones, measured side by side in one run.

For each variant it starts a native stack of its own (same machine, same code, free ports,
only the smoke DAG loaded) and measures:

- idle memory: the proportional set size (PSS) of every process of the stack, summed, once
  the stack has been idle for longer than Celery's autoscale keep-alive;
- burst: the wall time of a run of 48 light tasks that each hold a process for 2 s
  (controlplane_smoke with light_burst=48), trigger to success by the server's clock, after
  one warm-up burst and the keep-alive, so an autoscaled pool starts from its minimum.

Variants: "autoscaled" is airflow/config.yaml; "fixed min" pins every pool at its minimum;
"fixed max (today)" pins every pool at its maximum, the light pool's 16 processes of the
fixed sizes before autoscaling (the heavy pool had 1; it is pinned at 1 here too).

    .venv/bin/python bench/autoscale_bench.py [--bursts 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

from stack_bench import REPO, bench_stack, run_once

from stackctl.model import settings
from stackctl.native.supervisor import Supervisor

BURST = {"light_burst": 48, "burst_hold_seconds": 2}
IDLE_S = 45  # longer than Celery's AUTOSCALE_KEEPALIVE (30 s): the idle processes are gone


def pinned(source: dict, size: str) -> dict:
    """The source with every pool fixed at its minimum or its maximum ('min' or 'max')."""
    variant = copy.deepcopy(source)
    for pool in variant["worker_pools"].values():
        pool["min_processes"] = pool["max_processes"] = pool[f"{size}_processes"]
    return variant


def today(source: dict) -> dict:
    """The fixed sizes before autoscaling: light at its maximum (16), heavy at 1."""
    variant = pinned(source, "max")
    variant["worker_pools"]["heavy"]["min_processes"] = variant["worker_pools"]["heavy"]["max_processes"] = 1
    return variant


def descendants(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [int(child) for child in children.read_text().split()] if children.exists() else []
    return found + [grand for child in found for grand in descendants(child)]


def pss_mb(pid: int) -> float:
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0.0
    return next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")) / 1024


def stack_memory_mb(stack) -> tuple[float, int]:
    """PSS of every supervised process and its descendants, and how many processes that is."""
    pids = []
    for info in Supervisor(stack).processes():
        if info["pid"]:
            pids += [info["pid"], *descendants(info["pid"])]
    return sum(pss_mb(pid) for pid in pids), len(pids)


def measure(name: str, source: dict, bursts: int) -> dict:
    with tempfile.TemporaryDirectory() as dags:
        (Path(dags) / "controlplane_smoke.py").symlink_to(REPO / "dags" / "controlplane_smoke.py")
        Path(dags).chmod(0o755)
        with bench_stack(name, source, dags_folder=Path(dags)) as (stack, api):
            api.wait_for_dag("controlplane_smoke")
            api.unpause("controlplane_smoke")
            run_once(api, "controlplane_smoke", BURST)  # warm-up: connections and first imports
            walls = []
            for _ in range(bursts):
                time.sleep(IDLE_S)
                walls.append(run_once(api, "controlplane_smoke", BURST))
            time.sleep(IDLE_S)
            memory, count = stack_memory_mb(stack)
    return {"idle_mb": memory, "idle_processes": count, "burst_s": statistics.median(walls)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bursts", type=int, default=3)
    args = parser.parse_args()
    source = settings.load_source(REPO / "airflow" / "config.yaml")
    variants = {"autoscaled": source, "fixed min": pinned(source, "min"), "fixed max (today)": today(source)}
    results = {name: measure(name, variant, args.bursts) for name, variant in variants.items()}
    auto = results["autoscaled"]
    light = source["worker_pools"]["light"]
    print(f"\nautoscaling benchmark: light pool {light['min_processes']}..{light['max_processes']} processes; "
          f"medians of {args.bursts} bursts of {BURST['light_burst']} tasks x {BURST['burst_hold_seconds']} s\n")
    print(f"{'variant':<20} {'idle PSS (MB)':>14} {'processes':>10} {'burst wall (s)':>15} "
          f"{'idle vs auto':>13} {'burst vs auto':>14}")
    for name, r in results.items():
        print(f"{name:<20} {r['idle_mb']:>14.0f} {r['idle_processes']:>10} {r['burst_s']:>15.1f} "
              f"{r['idle_mb'] / auto['idle_mb']:>12.2f}x {r['burst_s'] / auto['burst_s']:>13.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
