"""Monitoring on the live native stack: Prometheus scrapes everything, every dashboard panel and
every alert rule's metric has data, Alloy's log parsing matches the task logs Airflow writes, and
stopping the heavy pool pages on-call through Alertmanager, then resolves.

This module runs after the workload tests (see conftest.py): its panels need the series that the
smoke, training and data-quality runs produce.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import yaml

from monitoring.dashboards import __main__ as dashboards
from monitoring.dashboards.queries import panel_queries, variable_queries
from stackctl.model import settings
from stackctl.native import health
from stackctl.native.supervisor import Supervisor

from .conftest import wait_for

pytestmark = pytest.mark.after_workloads

RULE_FILES = sorted((settings.REPO / "monitoring" / "prometheus" / "rules").glob("*.yml"))
ALLOY = settings.REPO / "monitoring" / "alloy" / "config.alloy"


def query(stack, expr: str) -> list[dict]:
    response = httpx.get(f"{stack.url('prometheus')}/api/v1/query", params={"query": expr},
                         auth=health.listener_auth(stack, "prometheus"), verify=stack.verify, timeout=30)
    body = response.json()
    assert body["status"] == "success", f"{expr}: {body.get('error')}"
    return body["data"]["result"]


def empty_panels(stack) -> list[str]:
    empty = []
    for name, text in dashboards.render().items():
        dashboard = json.loads(text)
        for title, expr in panel_queries(dashboard, "prometheus"):
            if not query(stack, expr):
                empty.append(f"{name} / {title}: {expr}")
        for variable, metric, label in variable_queries(dashboard, "prometheus"):
            if not any(label in series["metric"] for series in query(stack, metric)):
                empty.append(f"{name} / variable {variable}: no {label} on {metric}")
    return empty


def test_prometheus_scrapes_every_target(running_stack):
    stack = running_stack.stack

    def unhealthy():
        targets = httpx.get(f"{stack.url('prometheus')}/api/v1/targets", auth=health.listener_auth(stack, "prometheus"),
                            verify=stack.verify, timeout=10).json()["data"]["activeTargets"]
        return [f"{t['labels']['job']}: {t['lastError']}" for t in targets if t["health"] != "up"]

    wait_for(lambda: not unhealthy(), 60, "every scrape target up")


def test_every_dashboard_panel_returns_data(running_stack):
    """Each PromQL query of each generated dashboard returns at least one series."""
    stack = running_stack.stack
    deadline = time.monotonic() + 60  # batch-job pushes reach Prometheus on its next scrape
    while (empty := empty_panels(stack)) and time.monotonic() < deadline:
        time.sleep(5)
    assert not empty, "panels without data:\n" + "\n".join(empty)


def rule_metrics() -> set[str]:
    """Metric names that the alert and recording rules read."""
    names = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                expr = re.sub(r'"[^"]*"', "", rule["expr"])            # string literals
                expr = re.sub(r"\{[^}]*\}", "", expr)                  # label matchers
                expr = re.sub(r"\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
                expr = re.sub(r"\[[^\]]*\]", "", expr)                  # range selectors
                for token in re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(?!\s*\()", expr):  # not functions
                    if token not in {"and", "or", "unless", "bool", "offset"} and not re.fullmatch(r"\d+\w*", token):
                        names.add(token)
    return names


def test_every_metric_an_alert_rule_uses_exists(running_stack):
    names = rule_metrics()
    assert {"airflow_scheduler_heartbeat_total", "flower_worker_online", "redis_key_size",
            "training_last_success_timestamp_seconds", "dq_check_failed"} <= names
    missing = [name for name in sorted(names) if not query(running_stack.stack, f'count({{__name__="{name}"}})')]
    assert not missing, f"alert rules use metrics Prometheus does not have: {missing}"


def alloy_path_pattern() -> re.Pattern:
    expression = re.search(r'stage\.regex\s*\{[^}]*expression\s*=\s*"(.*)"', ALLOY.read_text()).group(1)
    return re.compile(expression.replace("\\\\", "\\"))  # the .alloy string escapes backslashes


def test_alloy_parses_the_task_logs_the_stack_writes(running_stack):
    """What Alloy consumes in compose, checked against the files Airflow 3 writes natively."""
    pattern = alloy_path_pattern()
    logs = sorted(Path(running_stack.stack.logs_dir, "airflow").rglob("*.log"))
    task_logs = [path for path in logs if "dag_id=" in str(path)]
    assert task_logs, "no task logs written"
    for path in task_logs:
        match = pattern.search(str(path))
        assert match, f"Alloy's pattern does not match {path}"
        assert match["dag_id"] and match["task_id"] and match["attempt"].isdigit()
    for line in task_logs[0].read_text().splitlines()[:20]:
        record = json.loads(line)
        assert "level" in record and "timestamp" in record, record
        datetime.fromisoformat(record["timestamp"])  # stage.timestamp parses it as RFC 3339


def active_alerts(stack, alertname: str) -> list[dict]:
    alerts = httpx.get(f"{stack.url('alertmanager')}/api/v2/alerts", params={"filter": f'alertname="{alertname}"'},
                       auth=health.listener_auth(stack, "alertmanager"), verify=stack.verify, timeout=10).json()
    return [a for a in alerts if a["status"]["state"] == "active"]


def inbox(stack, alertname: str, status: str) -> list[dict]:
    notes = httpx.get(f"{stack.url('oncall_inbox')}/notifications", auth=health.listener_auth(stack, "oncall_inbox"),
                      timeout=10, verify=stack.verify).json()
    return [a for note in notes for a in note["alerts"]
            if a["labels"].get("alertname") == alertname and a["status"] == status]


def test_stopping_the_heavy_pool_pages_and_restarting_it_resolves(running_stack):
    stack = running_stack.stack
    supervisor = Supervisor(stack)
    supervisor._proxy().stopProcessGroup("worker-heavy", True)
    try:
        alert = wait_for(lambda: active_alerts(stack, "CeleryWorkerPoolDown"), 240,
                         "CeleryWorkerPoolDown in Alertmanager")[0]
        assert alert["labels"]["pool"] == "heavy" and alert["labels"]["severity"] == "critical"
        assert {r["name"] for r in alert["receivers"]} == {"critical"}
        wait_for(lambda: inbox(stack, "CeleryWorkerPoolDown", "firing"), 60, "the page in the on-call inbox")
    finally:
        supervisor.start_group("worker-heavy")
    wait_for(lambda: not active_alerts(stack, "CeleryWorkerPoolDown"), 180, "CeleryWorkerPoolDown to resolve")
    wait_for(lambda: inbox(stack, "CeleryWorkerPoolDown", "resolved"), 90, "the resolution in the on-call inbox")
    assert not query(stack, 'controlplane:worker_pool_online_workers{pool="heavy"} == 0')


def test_the_statsd_bridge_dropped_no_airflow_name(running_stack):
    """After the workloads, every StatsD name Airflow sent had a mapping: nothing was dropped.

    monitoring/statsd/mapping.yml ends with a catch-all that drops (and counts) any other name,
    so an Airflow name the mapping misses shows here, not as a new unbounded metric.
    """
    base = running_stack.stack.url("statsd_metrics")
    text = httpx.get(f"{base}/metrics", timeout=10).text
    assert "statsd_exporter_events_actions_total" in text, "the bridge exposes no action counter"
    found = re.search(r'^statsd_exporter_events_actions_total\{action="drop"\} (\S+)$', text, re.MULTILINE)
    dropped = float(found.group(1)) if found else 0.0
    names = httpx.get(f"{base}/dropped", timeout=10).json() if dropped else {}
    assert dropped == 0, (f"the StatsD bridge dropped {dropped:g} events; names (count) it has no mapping for:\n"
                          + "\n".join(f"{name} ({count})" for name, count in sorted(names.items())))
