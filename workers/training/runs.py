"""model_training_runs: one row per (DAG run, tenant) with status, stage, timings, metrics and failure reason."""

from __future__ import annotations

import json
from contextlib import contextmanager

from workers.platform_db.db import transaction


def start(conn, dag_run_id: str, tenant_id: str) -> None:
    """Open (or re-open, on a re-run) the tenant's row for this DAG run."""
    with transaction(conn) as cur:
        cur.execute(
            "INSERT INTO model_training_runs (dag_run_id, tenant_id, status, stage, started_at)"
            " VALUES (%s, %s, 'running', 'validate_training_data', now())"
            " ON CONFLICT (dag_run_id, tenant_id) DO UPDATE SET status = 'running',"
            " stage = EXCLUDED.stage, finished_at = NULL, failure_reason = NULL",
            (dag_run_id, tenant_id),
        )


def merge_metrics(conn, dag_run_id: str, tenant_id: str, metrics: dict) -> None:
    with transaction(conn) as cur:
        cur.execute(
            "UPDATE model_training_runs SET metrics = metrics || %s::jsonb"
            " WHERE dag_run_id = %s AND tenant_id = %s",
            (json.dumps(metrics), dag_run_id, tenant_id),
        )


@contextmanager
def stage(conn, dag_run_id: str, tenant_id: str, name: str):
    """Mark the stage running; on any error record it as the run's failure, then re-raise."""
    with transaction(conn) as cur:
        cur.execute(
            "UPDATE model_training_runs SET stage = %s, status = 'running'"
            " WHERE dag_run_id = %s AND tenant_id = %s",
            (name, dag_run_id, tenant_id),
        )
    try:
        yield
    except BaseException as exc:
        with transaction(conn) as cur:
            cur.execute(
                "UPDATE model_training_runs SET status = 'failed', finished_at = now(), failure_reason = %s"
                " WHERE dag_run_id = %s AND tenant_id = %s",
                (f"{name}: {exc}"[:4000], dag_run_id, tenant_id),
            )
        raise
