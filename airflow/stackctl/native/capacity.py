"""Each worker pool's capacity, as `make status` shows it: desired against online processes.

Desired is the KEDA query over the metadata database (queued plus running task instances of
the pool's queue, one per process), which Prometheus records from the PostgreSQL exporter's
custom query; online is what the pool's workers run now, from `celery inspect stats`.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from stackctl.native import health
from stackctl.native.stack import NativeStack

DESIRED = "controlplane:worker_pool_desired_processes"


@dataclass(frozen=True)
class PoolCapacity:
    pool: str
    desired: int | None  # None: Prometheus did not answer
    online: int          # processes the pool's workers run now
    online_max: int      # the most the online workers can grow to
    configured_max: int  # instances x max_processes


def desired_processes(stack: NativeStack) -> dict[str, int] | None:
    try:
        response = httpx.get(f"{stack.url('prometheus')}/api/v1/query", params={"query": DESIRED},
                             auth=health.listener_auth(stack, "prometheus"), verify=stack.verify, timeout=5)
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    return {r["metric"].get("pool", ""): int(float(r["value"][1])) for r in response.json()["data"]["result"]}


def pools(stack: NativeStack, broker_url: str) -> list[PoolCapacity]:
    workers = health.worker_processes(broker_url)
    desired = desired_processes(stack)
    result = []
    for pool, spec in stack.source["worker_pools"].items():
        mine = [w for name, w in workers.items() if name.split("@")[0].rsplit("-", 1)[0] == pool]
        result.append(PoolCapacity(
            pool=pool,
            desired=None if desired is None else desired.get(pool, 0),
            online=sum(w["current"] or 0 for w in mine),
            online_max=sum(w["max"] or 0 for w in mine),
            configured_max=int(spec["instances"]) * int(spec["max_processes"]),
        ))
    return result


def table(capacities: list[PoolCapacity]) -> str:
    lines = [f"{'pool':<8} {'desired':>8} {'online':>7} {'max online':>11} {'max configured':>15}"]
    for c in capacities:
        desired = "?" if c.desired is None else str(c.desired)
        lines.append(f"{c.pool:<8} {desired:>8} {c.online:>7} {c.online_max:>11} {c.configured_max:>15}")
    return "\n".join(lines)
