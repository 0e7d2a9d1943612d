"""Reference services the DAGs call: availability, request rate, errors and latency."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from .panels import graph, prom

UID = "reference-services"
SERVICES = 'job=~"inference"'


def build() -> Dashboard:
    return (
        Dashboard("Reference services").uid(UID).tags(["services", "controlplane"]).refresh("30s")
        .time("now-3h", "now")
        .with_row(Row("Availability"))
        .with_panel(graph("Up", prom(f"up{{{SERVICES}}}", "{{job}}"), width=24))
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
    )
