"""Which Celery worker, and so which pool, ran each task instance of a DAG run.

Airflow records the Celery task id of each try (task_instance.external_executor_id);
Flower, which watches the workers' events, knows the worker that ran it.
"""

from __future__ import annotations

import time

import httpx

from stackctl.native import postgres
from stackctl.native.stack import NativeStack


def celery_ids(stack: NativeStack, dag_id: str, run_id: str) -> dict[tuple[str, int], str]:
    conn = postgres.connect(stack, stack.read_secret("airflow_db_password"), user="airflow", dbname="airflow")
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT task_id, map_index, external_executor_id FROM task_instance"
                " WHERE dag_id = %s AND run_id = %s AND external_executor_id IS NOT NULL",
                (dag_id, run_id),
            )
            return {(task_id, map_index): celery_id for task_id, map_index, celery_id in cur.fetchall()}
    finally:
        conn.close()


def worker_of(stack: NativeStack, celery_id: str, wait_s: float = 10) -> str | None:
    """The worker Flower saw run a Celery task; events arrive asynchronously, so wait a little."""
    deadline = time.monotonic() + wait_s
    while True:
        response = httpx.get(
            f"{stack.url('flower')}/api/task/info/{celery_id}",
            auth=(stack.source["admin_user"], stack.read_secret("flower_password")),
            timeout=10, verify=stack.verify,
        )
        worker = response.json().get("worker") if response.status_code == 200 else None
        if worker or time.monotonic() > deadline:
            return worker
        time.sleep(0.5)


def pool_of(worker: str | None) -> str | None:
    """`heavy-2@host` ran on the heavy pool: the pool is the hostname's prefix."""
    if not worker:
        return None
    return worker.split("@", 1)[0].rsplit("-", 1)[0]


def workers_by_task(stack: NativeStack, dag_id: str, run_id: str) -> dict[tuple[str, int], str | None]:
    return {key: worker_of(stack, celery_id) for key, celery_id in celery_ids(stack, dag_id, run_id).items()}
