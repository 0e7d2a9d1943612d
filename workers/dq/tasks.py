"""The tasks of data_quality_check as plain functions (connections: platform_db, alertmanager, pushgateway)."""

from __future__ import annotations

import logging
from datetime import datetime

from workers import hooks
from workers.dq import alerts, checks, config, results, summaries

log = logging.getLogger(__name__)


def update_summaries(tenants: list[str], full: bool = False) -> dict:
    """Bring the summaries the checks read up to date: from the watermarks, or from scratch when `full`."""
    conn = hooks.platform_db()
    try:
        done = summaries.refresh(conn, tenants, full=full)
    finally:
        conn.close()
    log.info("DQ summaries up to txid %s: %d tenants recounted in full, %d from their watermark",
             done["fence"], len(done["full"]), len(done["incremental"]))
    return done


def _run_check(name: str, tenants: list[str], dag_run_id: str, as_of: str, overrides: dict | None) -> dict:
    """`overrides`: settings a run's params give for every tenant, over each tenant's configuration."""
    checked_at = datetime.fromisoformat(as_of)
    conn = hooks.platform_db()
    try:
        configs = config.load(conn, tenants, overrides)
        if name == "completeness":
            found = checks.completeness(conn, tenants, configs)
        elif name == "freshness":
            found = checks.freshness(conn, tenants, checked_at, configs)
        else:
            found = checks.anomalies(conn, tenants, checked_at, configs)
        results.store(conn, dag_run_id, checked_at, found)
    finally:
        conn.close()
    failed = [f"{r.tenant_id}.{r.table}.{r.check} ({r.severity})" for r in found if r.status == "fail"]
    return {"checks": len(found), "failed": failed}


def check_data_completeness(tenants, dag_run_id, as_of, overrides=None) -> dict:
    return _run_check("completeness", tenants, dag_run_id, as_of, overrides)


def check_data_freshness(tenants, dag_run_id, as_of, overrides=None) -> dict:
    return _run_check("freshness", tenants, dag_run_id, as_of, overrides)


def check_for_anomalies(tenants, dag_run_id, as_of, overrides=None) -> dict:
    return _run_check("anomalies", tenants, dag_run_id, as_of, overrides)


def _planned_alerts(conn, dag_run_id: str, as_of: str) -> list[dict]:
    """The alerts of the checks this run stored: a check task that failed stored nothing, and holds none back."""
    checked_at = datetime.fromisoformat(as_of)
    return alerts.plan(results.for_run(conn, dag_run_id), results.failing_before(conn, dag_run_id, checked_at),
                       checked_at)


def decide_alert_needed(dag_run_id: str, as_of: str) -> str:
    """send_alert when a warning or critical check failed, one recovered, or alerts wait in the outbox."""
    conn = hooks.platform_db()
    try:
        to_send = _planned_alerts(conn, dag_run_id, as_of)
        waiting = alerts.pending(conn)
    finally:
        conn.close()
    return "send_alert" if to_send or waiting else "skip_alert"


def send_alert(dag_run_id: str, as_of: str) -> dict:
    """Queue this run's alerts in the outbox (once, however often this is retried), then deliver everything
    undelivered."""
    conn = hooks.platform_db()
    try:
        planned = _planned_alerts(conn, dag_run_id, as_of)
        alerts.enqueue(conn, dag_run_id, planned)
        try:
            delivered = alerts.deliver(conn, *hooks.http_service(hooks.ALERTMANAGER_CONN_ID))
        except Exception:
            log.error("DQ alerts not delivered; %d wait in alert_outbox", alerts.pending(conn))
            raise
    finally:
        conn.close()
    return {"queued": len(planned), "delivered": delivered}


def export_metrics(dag_run_id: str) -> int:
    """This run's outcomes as gauges on the Pushgateway, for the dashboards and alert rules."""
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    conn = hooks.platform_db()
    try:
        found = results.for_run(conn, dag_run_id)
    finally:
        conn.close()
    registry = CollectorRegistry()
    labels = ["tenant", "table", "check", "severity"]
    failed = Gauge("dq_check_failed", "1 when the check failed in the latest run", labels, registry=registry)
    observed = Gauge("dq_check_observed", "The check's observed value in the latest run", labels, registry=registry)
    for r in found:
        key = (r.tenant_id, r.table, r.check, r.severity)
        failed.labels(*key).set(1 if r.status == "fail" else 0)
        if r.observed is not None:
            observed.labels(*key).set(r.observed)
    Gauge("dq_last_run_timestamp_seconds", "When data_quality_check last finished its checks",
          registry=registry).set_to_current_time()
    gateway, handler = hooks.pushgateway()
    push_to_gateway(gateway, job="data_quality_check", registry=registry, handler=handler)
    return len(found)
