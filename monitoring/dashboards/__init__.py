"""Grafana dashboards as code (grafana-foundation-sdk).

`python -m monitoring.dashboards` writes monitoring/grafana/dashboards/<uid>.json; a unit test
fails when the committed JSON differs from what this package generates, and an end-to-end test
evaluates every panel's PromQL against the live Prometheus of the native stack.
"""
