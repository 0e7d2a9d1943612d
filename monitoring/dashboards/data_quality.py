"""Data quality: failing checks per tenant, observed values, run freshness and the alerts sent."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from .panels import graph, label_variable, listing, mean_over_range, prom, single

UID = "data-quality"
TENANT = 'tenant=~"$tenant"'


def build() -> Dashboard:
    return (
        Dashboard("Data quality").uid(UID).tags(["data-quality", "controlplane"]).refresh("1m")
        .time("now-7d", "now")
        .with_variable(label_variable("tenant", "dq_check_failed", "tenant", label_text="Tenant"))
        .with_row(Row("Latest run"))
        .with_panel(single("Failing checks", prom(f"sum(dq_check_failed{{{TENANT}}})")))
        .with_panel(single("Checks run", prom(f"count(dq_check_failed{{{TENANT}}})")))
        .with_panel(single("Since the last run", prom("time() - max(dq_last_run_timestamp_seconds)"), unit="s",
                           description="data_quality_check runs every 6 hours (DataQualityChecksStale)."))
        .with_panel(single("Alerts in Alertmanager", prom('sum(alertmanager_alerts{state="active"})')))
        .with_panel(graph("Failing checks per tenant",
                          prom(f"sum by (tenant) (dq_check_failed{{{TENANT}}})", "{{tenant}}"), bars=True))
        .with_panel(listing("Check results (1 = failing)", f"dq_check_failed{{{TENANT}}}"))
        .with_row(Row("Observed values"))
        .with_panel(graph("Observed value per check",
                          prom(f"dq_check_observed{{{TENANT}}}", "{{tenant}} {{table}} {{check}}"), width=24))
        .with_row(Row("The DAG"))
        .with_panel(graph("data_quality_check run duration (mean)", prom(
            mean_over_range("airflow_dagrun_duration_seconds", "state", 'dag_id="data_quality_check"'), "{{state}}"),
            unit="s"))
        .with_panel(graph("Notifications sent by Alertmanager", prom(
            "sum by (integration) (increase(alertmanager_notifications_total[$__rate_interval]))", "{{integration}}"),
            bars=True))
    )
