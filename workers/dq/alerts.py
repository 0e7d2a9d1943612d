"""DQ alerts to Alertmanager's v2 API, through an outbox so that none is lost.

Labels are stable per (tenant, table, check), so a check that keeps failing is one alert
that Alertmanager deduplicates, and a check that passes again resolves it (endsAt = now).
A firing alert carries an endsAt past the next scheduled run, so it stays up between runs
and lapses on its own only if the DAG stops running.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import httpx

from workers.dq.checks import CheckResult
from workers.exceptions import TransientError
from workers.platform_db.db import transaction

ALERTNAME = "DataQualityCheckFailed"
FIRING_FOR = timedelta(hours=13)  # two 6-hourly runs, plus slack
RUNBOOK = "https://runbooks.example.internal/data-quality#{check}"


def alert_key(tenant: str, table: str, check: str) -> str:
    return f"{ALERTNAME}/{tenant}/{table}/{check}"


def _labels(tenant: str, table: str, check: str, severity: str) -> dict:
    return {"alertname": ALERTNAME, "tenant": tenant, "table": table, "check": check, "severity": severity,
            "component": "data-quality"}


def firing(result: CheckResult, now: datetime) -> dict:
    return {
        "labels": _labels(result.tenant_id, result.table, result.check, result.severity),
        "annotations": {
            "summary": f"{result.check} failed for {result.tenant_id}.{result.table}",
            "description": f"observed {result.observed} against threshold {result.threshold} "
                           f"({json.dumps(result.details, default=str)[:500]})",
            "runbook_url": RUNBOOK.format(check=result.check),
        },
        "startsAt": now.isoformat(),
        "endsAt": (now + FIRING_FOR).isoformat(),
    }


def resolved(result: CheckResult, now: datetime) -> dict:
    return {
        "labels": _labels(result.tenant_id, result.table, result.check, result.severity),
        "annotations": {"summary": f"{result.check} passes again for {result.tenant_id}.{result.table}"},
        "endsAt": now.isoformat(),
    }


def plan(results: list[CheckResult], previously_failing: set[tuple[str, str, str]], now: datetime) -> list[dict]:
    """What to tell Alertmanager after a run: every failure, and every check that recovered."""
    alerts = [firing(r, now) for r in results if r.status == "fail"]
    alerts += [resolved(r, now) for r in results
               if r.status == "pass" and (r.tenant_id, r.table, r.check) in previously_failing]
    return alerts


def enqueue(conn, alerts: list[dict]) -> None:
    with transaction(conn) as cur:
        for alert in alerts:
            labels = alert["labels"]
            cur.execute("INSERT INTO alert_outbox (alert_key, payload) VALUES (%s, %s)",
                        (alert_key(labels["tenant"], labels["table"], labels["check"]), json.dumps(alert)))


def pending(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM alert_outbox WHERE delivered_at IS NULL")
        return cur.fetchone()[0]


def deliver(conn, alertmanager_url: str) -> int:
    """Post every undelivered alert, oldest first; mark them delivered only when Alertmanager accepts."""
    with conn.cursor() as cur:
        cur.execute("SELECT id, payload FROM alert_outbox WHERE delivered_at IS NULL ORDER BY id")
        rows = cur.fetchall()
    if not rows:
        return 0
    ids = [row[0] for row in rows]
    payloads = [row[1] if isinstance(row[1], dict) else json.loads(row[1]) for row in rows]
    try:
        response = httpx.post(f"{alertmanager_url}/api/v2/alerts", json=payloads, timeout=15)
        error = None if response.status_code == 200 else f"HTTP {response.status_code}: {response.text[:300]}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    with transaction(conn) as cur:
        if error is None:
            cur.execute("UPDATE alert_outbox SET delivered_at = now(), attempts = attempts + 1 WHERE id = ANY(%s)",
                        (ids,))
        else:
            cur.execute("UPDATE alert_outbox SET attempts = attempts + 1, last_error = %s WHERE id = ANY(%s)",
                        (error, ids))
    if error is not None:
        raise TransientError(f"Alertmanager at {alertmanager_url} did not take {len(ids)} alerts ({error}); "
                             "they wait in alert_outbox for the next attempt")
    return len(ids)
