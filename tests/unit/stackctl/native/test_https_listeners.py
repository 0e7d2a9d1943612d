"""The HTTP listeners besides the api-server over HTTPS (config.yaml's tls), and their clients verifying
them against the stack's CA alone:
- Prometheus, Alertmanager and the Pushgateway serve the stack's certificate from their web config,
  beside their basic auth; Prometheus's scrapes and alerting, the tasks' pushes and alerts (their
  connections) and stackctl verify it;
- the inference service serves it with uvicorn's --ssl-certfile, and the tasks' connection verifies it.
A client that trusts another CA is refused with an error that says so.

Each is the model's own process, started from its native command line and rendered files."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from stackctl.model import settings
from stackctl.model.target import TLS_CA
from stackctl.native import certificates, health
from stackctl.native.stack import NativeStack
from workers import hooks
from workers.dq import alerts
from workers.dq.checks import CheckResult

from .conftest import rendered_stack, started, wait_until_ready

LISTENERS = ("pushgateway", "alertmanager", "prometheus")


@pytest.fixture
def https_monitoring(tmp_path, monkeypatch) -> Iterator[NativeStack]:
    """The three listeners on free ports over TLS, and the tasks' connections to them as the stack renders them."""
    stack, secret_values = rendered_stack(tmp_path / "a home", tls=True, listeners=LISTENERS)
    connections = settings.render_connections(stack.source, stack.target(secret_values))
    for conn_id in (hooks.PUSHGATEWAY_CONN_ID, hooks.ALERTMANAGER_CONN_ID):
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connections[conn_id]))
    with ExitStack() as running:
        for name in LISTENERS:
            server = running.enter_context(started(stack, secret_values, name))
            wait_until_ready(server, lambda name=name: health.listener_ok(stack, name, "/-/ready"), name, 30)
        yield stack


def prometheus_up(stack: NativeStack) -> dict[str, str]:
    answer = httpx.get(f"{stack.url('prometheus')}/api/v1/query", params={"query": "up"}, verify=stack.verify,
                       auth=health.listener_auth(stack, "prometheus"), timeout=10).json()
    return {series["metric"]["job"]: series["value"][1] for series in answer["data"]["result"]}


def test_prometheus_scrapes_and_alerts_the_monitoring_listeners_over_verified_https(https_monitoring):
    stack = https_monitoring
    assert all(stack.url(name).startswith("https://") for name in LISTENERS)
    deadline = time.monotonic() + 60
    while not {"alertmanager", "pushgateway", "prometheus"} <= set(prometheus_up(stack)):
        assert time.monotonic() < deadline, "Prometheus did not scrape the three"
        time.sleep(1)
    up = prometheus_up(stack)
    assert (up["alertmanager"], up["pushgateway"], up["prometheus"]) == ("1", "1", "1")
    answer = httpx.get(f"{stack.url('prometheus')}/api/v1/alertmanagers", verify=stack.verify,
                       auth=health.listener_auth(stack, "prometheus"), timeout=10).json()
    assert [am["url"] for am in answer["data"]["activeAlertmanagers"]] == [
        f"{stack.url('alertmanager')}/api/v2/alerts"]


def test_tasks_push_and_alert_over_verified_https(https_monitoring, platform_db):
    stack = https_monitoring
    gateway, handler = hooks.pushgateway()
    assert gateway == stack.url("pushgateway")
    registry = CollectorRegistry()
    Gauge("dq_last_run_timestamp_seconds", "pushed over https", registry=registry).set(1)
    push_to_gateway(gateway, job="data_quality_check", registry=registry, handler=handler)
    metrics = httpx.get(f"{gateway}/metrics", auth=health.listener_auth(stack, "pushgateway"), verify=stack.verify)
    assert "dq_last_run_timestamp_seconds" in metrics.text

    check = CheckResult("acme", "user_interactions", "duplicates", "critical", "fail", 3.0, 0.0, {})
    alerts.enqueue(platform_db, "run-1", alerts.plan([check], set(), datetime.now(UTC)))
    assert alerts.deliver(platform_db, *hooks.http_service(hooks.ALERTMANAGER_CONN_ID)) == 1


def test_a_client_that_trusts_another_ca_is_refused_and_says_why(https_monitoring, tmp_path, monkeypatch):
    stack = https_monitoring
    with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
        httpx.get(f"{stack.url('prometheus')}/-/ready", timeout=5)  # the public CAs only
    other = tmp_path / "other"
    certificates.ensure(other, "other", {"cp": ["127.0.0.1"]})
    connection = json.loads(os.environ["AIRFLOW_CONN_PUSHGATEWAY"])
    assert json.loads(connection["extra"]) == {"verify": str(stack.tls_dir / TLS_CA)}
    monkeypatch.setenv("AIRFLOW_CONN_PUSHGATEWAY", json.dumps({**connection, "extra": {"verify": str(other / TLS_CA)}}))
    gateway, handler = hooks.pushgateway()
    with pytest.raises(OSError, match="certificate verify failed"):
        push_to_gateway(gateway, job="data_quality_check", registry=CollectorRegistry(), handler=handler)


def test_the_inference_service_serves_https_that_the_tasks_verify(tmp_path, monkeypatch):
    stack, secret_values = rendered_stack(tmp_path / "a home", tls=True, listeners=("inference",))
    connection = settings.render_connections(stack.source, stack.target(secret_values))[hooks.INFERENCE_CONN_ID]
    monkeypatch.setenv(f"AIRFLOW_CONN_{hooks.INFERENCE_CONN_ID.upper()}", json.dumps(connection))
    service = hooks.http_service(hooks.INFERENCE_CONN_ID)
    assert service.url == stack.url("inference") and service.url.startswith("https://")
    with started(stack, secret_values, "inference") as server:
        wait_until_ready(server, lambda: health.listener_ok(stack, "inference", "/health"), "inference", 60)
        warmed = httpx.post(f"{service.url}/api/v1/cache/warm", json={"tenant_id": "acme"}, auth=service.auth,
                            verify=service.verify, timeout=10)
        # The token reached the service over the verified connection: it answers for a tenant it has no model of.
        assert (warmed.status_code, warmed.json()) == (404, {"detail": "unknown tenant acme: no model deployed"})
        with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
            httpx.get(f"{service.url}/health", timeout=5)  # the public CAs only


def test_alertmanager_pages_the_on_call_inbox_over_verified_https(tmp_path):
    stack, secret_values = rendered_stack(tmp_path / "a home", tls=True, listeners=("alertmanager", "oncall_inbox"))
    assert stack.url("oncall_inbox").startswith("https://")
    with started(stack, secret_values, "oncall-inbox") as inbox, started(stack, secret_values, "alertmanager") as am:
        wait_until_ready(inbox, lambda: health.listener_ok(stack, "oncall_inbox", "/health"), "the inbox", 60)
        wait_until_ready(am, lambda: health.listener_ok(stack, "alertmanager", "/-/ready"), "alertmanager", 30)
        alert = [{"labels": {"alertname": "HttpsPage", "severity": "critical"}}]
        posted = httpx.post(f"{stack.url('alertmanager')}/api/v2/alerts", json=alert, verify=stack.verify,
                            auth=health.listener_auth(stack, "alertmanager"), timeout=10)
        assert posted.status_code == 200
        deadline = time.monotonic() + 60
        while not (notes := httpx.get(f"{stack.url('oncall_inbox')}/notifications", verify=stack.verify,
                                      auth=health.listener_auth(stack, "oncall_inbox"), timeout=10).json()):
            assert time.monotonic() < deadline, "Alertmanager's webhook did not reach the inbox"
            time.sleep(1)
        assert notes[0]["alerts"][0]["labels"]["alertname"] == "HttpsPage"
        with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
            httpx.get(f"{stack.url('oncall_inbox')}/health", timeout=5)  # the public CAs only


def test_flower_serves_https_with_its_basic_auth(tmp_path):
    stack, secret_values = rendered_stack(tmp_path / "a home", tls=True, listeners=("flower",))
    assert stack.url("flower").startswith("https://")
    with started(stack, secret_values, "redis"), started(stack, secret_values, "flower") as flower:
        wait_until_ready(flower, lambda: health.listener_ok(stack, "flower", "/api/workers"), "flower", 120)
        assert httpx.get(f"{stack.url('flower')}/api/workers", verify=stack.verify, timeout=10).status_code == 401
        with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
            httpx.get(f"{stack.url('flower')}/api/workers", timeout=5)  # the public CAs only
