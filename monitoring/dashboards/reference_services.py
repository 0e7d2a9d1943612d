"""Reference services the DAGs call (inference, FreshPoC): availability, requests, errors, latency, jobs."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from .panels import graph, mean_over_range, prom

UID = "reference-services"
SERVICES = 'job=~"inference|freshpoc"'


def build() -> Dashboard:
    return (
        Dashboard("Reference services").uid(UID).tags(["services", "controlplane"]).refresh("30s")
        .time("now-3h", "now")
        .with_row(Row("Availability"))
        .with_panel(graph("Up", prom(f"up{{{SERVICES}}}", "{{job}} {{service}}"), width=24))
        .with_row(Row("Inference"))
        .with_panel(graph("Requests by endpoint and status", prom(
            "sum by (endpoint, status) (rate(inference_requests_total[$__rate_interval]))", "{{endpoint}} {{status}}"),
            unit="reqps"))
        .with_panel(graph("Error ratio (5xx)", prom(
            'sum(rate(inference_requests_total{status=~"5.."}[$__rate_interval]))'
            " / sum(rate(inference_requests_total[$__rate_interval])) or vector(0)", "5xx"), unit="percentunit"))
        .with_panel(graph("Latency p95 by endpoint", prom(
            "histogram_quantile(0.95, sum by (le, endpoint) (increase(inference_request_seconds_bucket[$__range])))",
            "{{endpoint}}"), unit="s"))
        .with_panel(graph("Tenants served", prom("count(inference_model_loaded_timestamp_seconds)", "tenants")))
        .with_row(Row("FreshPoC services"))
        .with_panel(graph("Requests by service and status", prom(
            'sum by (service, status) (rate(freshpoc_requests_total{endpoint!="/metrics"}[$__rate_interval]))',
            "{{service}} {{status}}"), unit="reqps",
            description="503s and 400s here are also what fault injection produces in tests."))
        .with_panel(graph("Jobs finished by service and outcome", prom(
            "sum by (service, status) (increase(freshpoc_jobs_total[$__range]))", "{{service}} {{status}}"),
            bars=True))
        .with_panel(graph("Mean job duration", prom(mean_over_range("freshpoc_job_seconds", "service"), "{{service}}"),
                          unit="s", description="What a stage's deferred wait on the triggerer covers."))
        .with_panel(graph("Request latency p95 by service", prom(
            "histogram_quantile(0.95, sum by (le, service) (increase(freshpoc_request_seconds_bucket[$__range])))",
            "{{service}}"), unit="s"))
    )
