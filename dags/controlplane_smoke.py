"""Smoke test of both worker pools: one light task, then one heavy task that builds a small FAISS index.

`make demo` and the end-to-end tests run it to prove each queue reaches its own pool. With
`light_burst` or `heavy_burst` above 0 it also sends that many tasks to the pool, each
holding its process for `burst_hold_seconds`: the burst the autoscaling tests and benchmark
drive the pools with.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    tags=["smoke", "controlplane"],
    # A retry 15 s after a failure, not Airflow's default 5 min: a smoke run answers quickly.
    default_args={"retries": 1, "retry_delay": pendulum.duration(seconds=15),
                  "execution_timeout": pendulum.duration(minutes=10)},
    params={
        "light_burst": Param(0, type="integer", minimum=0, maximum=200, description="extra light tasks"),
        "heavy_burst": Param(0, type="integer", minimum=0, maximum=20, description="extra heavy tasks"),
        "burst_hold_seconds": Param(0, type="number", minimum=0, maximum=300,
                                    description="how long each burst task holds its worker process"),
    },
)
def controlplane_smoke():
    @task(queue="light")
    def light_probe() -> dict:
        from workers.smoke import describe_worker

        return describe_worker()

    @task(queue="heavy", pool="heavy")
    def heavy_faiss_probe() -> dict:
        from workers.smoke import build_small_faiss_index

        return build_small_faiss_index()

    @task(queue="light")
    def burst_slots(pool: str, params=None) -> list[int]:
        from workers.smoke import burst_slots

        return burst_slots(params[f"{pool}_burst"])

    @task(queue="light")
    def light_burst(slot: int, params=None) -> dict:
        from workers.smoke import hold

        return hold(params["burst_hold_seconds"])

    @task(queue="heavy", pool="heavy")
    def heavy_burst(slot: int, params=None) -> dict:
        from workers.smoke import hold

        return hold(params["burst_hold_seconds"])

    light_probe() >> heavy_faiss_probe()
    light_burst.expand(slot=burst_slots.override(task_id="light_burst_slots")("light"))
    heavy_burst.expand(slot=burst_slots.override(task_id="heavy_burst_slots")("heavy"))


controlplane_smoke()
