"""Benchmark DAG: one light no-op task, for trigger-to-success latency."""

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["bench"])
def bench_one_task():
    @task(queue="light")
    def noop() -> None:
        return None

    noop()


bench_one_task()
