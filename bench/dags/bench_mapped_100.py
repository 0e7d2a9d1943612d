"""Benchmark DAG: 100 mapped no-op tasks on the light pool, for throughput."""

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["bench"])
def bench_mapped_100():
    @task(queue="light")
    def noop(i: int) -> None:
        return None

    noop.expand(i=list(range(100)))


bench_mapped_100()
