"""dq_results: every check's outcome per run, which is also the history alerts are resolved against."""

from __future__ import annotations

import json
from datetime import datetime

from workers.dq.checks import CheckResult
from workers.platform_db.db import transaction


def store(conn, dag_run_id: str, checked_at: datetime, results: list[CheckResult]) -> None:
    """Upsert: a retried check task replaces its rows instead of adding to them."""
    with transaction(conn) as cur:
        for r in results:
            cur.execute(
                "INSERT INTO dq_results (dag_run_id, tenant_id, table_name, check_name, severity, status,"
                " observed, threshold, details, checked_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (dag_run_id, tenant_id, table_name, check_name) DO UPDATE SET"
                " severity = EXCLUDED.severity, status = EXCLUDED.status, observed = EXCLUDED.observed,"
                " threshold = EXCLUDED.threshold, details = EXCLUDED.details, checked_at = EXCLUDED.checked_at",
                (dag_run_id, r.tenant_id, r.table, r.check, r.severity, r.status, r.observed, r.threshold,
                 json.dumps(r.details, default=str), checked_at),
            )


def for_run(conn, dag_run_id: str) -> list[CheckResult]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT tenant_id, table_name, check_name, severity, status, observed, threshold, details"
            " FROM dq_results WHERE dag_run_id = %s ORDER BY tenant_id, table_name, check_name", (dag_run_id,),
        )
        return [CheckResult(*row) for row in cur.fetchall()]


def failing_before(conn, dag_run_id: str, checked_at: datetime) -> set[tuple[str, str, str]]:
    """(tenant, table, check) whose latest result before this run failed: candidates to resolve.

    Runs can share a check time (manual runs check as of the same schedule boundary). Between
    results of the same time, a failure counts: resolving an alert that is not up is harmless,
    while missing a resolve would leave a page up until it lapses.
    """
    with conn.cursor() as cur:
        cur.execute(
            "SELECT tenant_id, table_name, check_name, status FROM ("
            "  SELECT DISTINCT ON (tenant_id, table_name, check_name) tenant_id, table_name, check_name, status"
            "  FROM dq_results WHERE dag_run_id <> %s AND checked_at <= %s"
            "  ORDER BY tenant_id, table_name, check_name, checked_at DESC, status = 'fail' DESC"
            ") AS latest WHERE status = 'fail'",
            (dag_run_id, checked_at),
        )
        return {(tenant, table, check) for tenant, table, check, _ in cur.fetchall()}
