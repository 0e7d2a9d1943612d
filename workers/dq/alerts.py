"""DQ alerts to Alertmanager's v2 API, through an outbox so that none is lost and none is sent twice.

Labels are stable per (tenant, table, check), so a check that keeps failing is one alert
that Alertmanager deduplicates, and a check that passes again resolves it (endsAt = the check's
time). A firing alert ends FIRING_FOR after it is delivered, past the next scheduled run, so it
stays up between runs and lapses on its own only if the DAG stops running.
"""

from __future__ import annotations

import json
import ssl
from datetime import UTC, datetime, timedelta

import httpx

from workers.dq.checks import CheckResult
from workers.exceptions import TransientError
from workers.platform_db.db import transaction

ALERTNAME = "DataQualityCheckFailed"
FIRING_FOR = timedelta(hours=13)  # two 6-hourly runs, plus slack
RUNBOOK = "https://runbooks.example.internal/data-quality#{check}"
# A delivery holds its rows' locks across the POST (see deliver): these bound how long.
POST_TIMEOUT = httpx.Timeout(10.0)  # per phase: connect, write, read
LOCKS_HELD_AT_MOST = "60s"  # then PostgreSQL ends a stalled delivery's session, which releases them


def alert_key(tenant: str, table: str, check: str) -> str:
    return f"{ALERTNAME}/{tenant}/{table}/{check}"


def _labels(tenant: str, table: str, check: str, severity: str) -> dict:
    return {"alertname": ALERTNAME, "tenant": tenant, "table": table, "check": check, "severity": severity,
            "component": "data-quality"}


def firing(result: CheckResult, now: datetime) -> dict:
    """Without endsAt: delivery sets it (see as_sent)."""
    return {
        "labels": _labels(result.tenant_id, result.table, result.check, result.severity),
        "annotations": {
            "summary": f"{result.check} failed for {result.tenant_id}.{result.table}",
            "description": f"observed {result.observed} against threshold {result.threshold} "
                           f"({json.dumps(result.details, default=str)[:500]})",
            "runbook_url": RUNBOOK.format(check=result.check),
        },
        "startsAt": now.isoformat(),
    }


def resolved(result: CheckResult, now: datetime) -> dict:
    return {
        "labels": _labels(result.tenant_id, result.table, result.check, result.severity),
        "annotations": {"summary": f"{result.check} passes again for {result.tenant_id}.{result.table}"},
        "endsAt": now.isoformat(),
    }


def state(alert: dict) -> str:
    """A planned alert whose end is already known is a resolve."""
    return "resolved" if "endsAt" in alert else "firing"


def plan(results: list[CheckResult], previously_failing: set[tuple[str, str, str]], now: datetime) -> list[dict]:
    """What to tell Alertmanager after a run: every failure, and every check that recovered."""
    alerts = [firing(r, now) for r in results if r.status == "fail"]
    alerts += [resolved(r, now) for r in results
               if r.status == "pass" and (r.tenant_id, r.table, r.check) in previously_failing]
    return alerts


def enqueue(conn, dag_run_id: str, alerts: list[dict]) -> None:
    """Queue a run's alerts once per alert and state: a retry plans the same ones, which are already there."""
    with transaction(conn) as cur:
        for alert in alerts:
            labels = alert["labels"]
            cur.execute("INSERT INTO alert_outbox (dag_run_id, alert_key, status, payload) VALUES (%s, %s, %s, %s)"
                        " ON CONFLICT (dag_run_id, alert_key, status) DO NOTHING",
                        (dag_run_id, alert_key(labels["tenant"], labels["table"], labels["check"]), state(alert),
                         json.dumps(alert)))


def pending(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM alert_outbox WHERE delivered_at IS NULL")
        return cur.fetchone()[0]


def as_sent(status: str, payload: dict, now: datetime) -> dict:
    """A firing alert ends FIRING_FOR after `now`, its delivery: one that waited in the outbox longer than
    that would otherwise arrive already expired and never page."""
    return {**payload, "endsAt": (now + FIRING_FOR).isoformat()} if status == "firing" else payload


def _post(alertmanager_url: str, auth: tuple[str, str] | None, verify: ssl.SSLContext | bool,
          payloads: list[dict]) -> str | None:
    """None when Alertmanager took the alerts, else why not."""
    try:
        response = httpx.post(f"{alertmanager_url}/api/v2/alerts", json=payloads, auth=auth, verify=verify,
                              timeout=POST_TIMEOUT)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if response.status_code == 200 else f"HTTP {response.status_code}: {response.text[:300]}"


def deliver(conn, alertmanager_url: str, auth: tuple[str, str] | None = None,
            verify: ssl.SSLContext | bool = True) -> int:
    """Post every undelivered alert no other delivery holds, oldest first, with Alertmanager's basic auth
    (verified against `verify` over HTTPS); mark them delivered only when Alertmanager accepts.

    Reading, posting and marking are one transaction that locks the rows it read (SKIP LOCKED: a
    concurrent delivery takes only the others), so no two deliveries post the same row. Holding row
    locks across an HTTP call is acceptable because it is bounded: the POST times out (a failed
    attempt, recorded), and PostgreSQL ends a session left idle in its transaction past
    LOCKS_HELD_AT_MOST (a worker that stalls or dies: rolled back). Either way the rows wait for the
    next delivery; if Alertmanager had taken them, it takes them again as the same alerts (same
    labels), no second page. A claim with a lease would add a column and a clock to get right, and
    would still re-post after a lost answer.
    """
    with transaction(conn) as cur:
        cur.execute("SELECT set_config('idle_in_transaction_session_timeout', %s, true)", (LOCKS_HELD_AT_MOST,))
        cur.execute("SELECT id, status, payload FROM alert_outbox WHERE delivered_at IS NULL ORDER BY id"
                    " FOR UPDATE SKIP LOCKED")
        rows = cur.fetchall()
        if not rows:
            return 0
        ids = [row[0] for row in rows]
        now = datetime.now(UTC)
        payloads = [as_sent(status, payload if isinstance(payload, dict) else json.loads(payload), now)
                    for _, status, payload in rows]
        error = _post(alertmanager_url, auth, verify, payloads)
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
