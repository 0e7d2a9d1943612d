"""stackctl status's worker probes on a broker that is down: no worker answers, and nothing raises."""

from __future__ import annotations

import socket

from stackctl.native import health
from stackctl.native.stack import NativeStack


def refused_broker_url() -> str:
    """A Redis URL on a loopback port that nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://:password@127.0.0.1:{port}/0"


def test_a_broker_that_refuses_connections_means_no_worker_answers():
    url = refused_broker_url()
    assert health.celery_pongs(url, timeout=1) == set()
    assert health.worker_processes(url, timeout=1) == {}


def test_a_job_is_not_ready_while_the_api_server_does_not_answer(monkeypatch, tmp_path):
    """A job's probe reads the api-server's health document: no document, no verdict of healthy."""
    stack = NativeStack.load(tmp_path)
    triggerer = next(p for p in stack.processes() if p.name == "triggerer")
    monkeypatch.setattr(health, "api_health", lambda stack: None)
    assert not health.ready(stack, triggerer, {})
    monkeypatch.setattr(health, "api_health", lambda stack: {"triggerer": {"status": "unhealthy"}})
    assert not health.ready(stack, triggerer, {})
    monkeypatch.setattr(health, "api_health", lambda stack: {"triggerer": {"status": "healthy"}})
    assert health.ready(stack, triggerer, {})
