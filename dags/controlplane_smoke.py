"""Smoke test of both worker pools: one light task, then one heavy task that builds a small FAISS index.

`make demo` and the end-to-end tests run it to prove each queue reaches its own pool.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    tags=["smoke", "controlplane"],
    default_args={"retries": 1, "execution_timeout": pendulum.duration(minutes=10)},
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

    light_probe() >> heavy_faiss_probe()


controlplane_smoke()
