"""model_training_runs: one row per (DAG run, tenant) with status, stage, timings, metrics, the training
decision and its reason, and the failure reason."""

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
            " stage = EXCLUDED.stage, finished_at = NULL, failure_reason = NULL, decision = NULL,"
            " decision_reason = NULL",
            (dag_run_id, tenant_id),
        )


def merge_metrics(conn, dag_run_id: str, tenant_id: str, metrics: dict) -> None:
    with transaction(conn) as cur:
        cur.execute(
            "UPDATE model_training_runs SET metrics = metrics || %s::jsonb"
            " WHERE dag_run_id = %s AND tenant_id = %s",
            (json.dumps(metrics), dag_run_id, tenant_id),
        )


def decide(conn, dag_run_id: str, tenant_id: str, decision: str, reason: str) -> None:
    """Record the training decision (migration V009). keep_champion ends the run here as 'champion_kept':
    nothing is deployed, and the tasks after training skip; deploy and popularity go on to the deploy."""
    kept = decision == "keep_champion"
    with transaction(conn) as cur:
        cur.execute(
            "UPDATE model_training_runs SET decision = %s, decision_reason = %s,"
            " status = CASE WHEN %s THEN 'champion_kept' ELSE status END,"
            " finished_at = CASE WHEN %s THEN now() END, failure_reason = NULL"
            " WHERE dag_run_id = %s AND tenant_id = %s",
            (decision, reason[:4000], kept, kept, dag_run_id, tenant_id),
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
