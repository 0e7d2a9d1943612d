"""stackctl status's worker probes on a broker that is down: no worker answers, and nothing raises."""

from __future__ import annotations

import socket

from stackctl.native import health


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
