"""The DQ alert outbox against a real PostgreSQL and a stand-in Alertmanager on loopback.

Alerts are written to alert_outbox first and leave it (delivered_at set) only once Alertmanager
answered 200; otherwise every waiting alert records the attempt and the error, and waits.
"""

import json
import socketserver
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler

import psycopg2
import pytest

from workers.dq import alerts
from workers.dq.checks import CheckResult
from workers.exceptions import TransientError

NOW = datetime(2026, 11, 24, 6, tzinfo=UTC)


def result(check, status="fail", tenant="acme"):
    return CheckResult(tenant, "user_interactions", check, "critical", status, 3.0, 0.0, {"rows": 10})


class FakeAlertmanager(socketserver.ThreadingTCPServer):
    """Takes POST /api/v2/alerts and answers `status`; keeps every body it was sent."""

    daemon_threads = True

    def __init__(self):  # a plain TCP server: HTTPServer's bind looks the host name up, slowly
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status = 200
        self.received: list[list[dict]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (the http.server API)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.path == "/api/v2/alerts"
        self.server.received.append(json.loads(body))
        self.send_response(self.server.status)
        self.end_headers()
        self.wfile.write(b"" if self.server.status == 200 else b"cluster is not ready")

    def log_message(self, *args):
        pass


@pytest.fixture
def alertmanager():
    server = FakeAlertmanager()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port_url():
    server = FakeAlertmanager()
    url = server.url
    server.server_close()  # nothing listens there any more
    return url


def second_connection(server):
    return psycopg2.connect(host=server.host, port=server.port, user=server.user, dbname=server.dbname)


def outbox(conn) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute("SELECT alert_key, payload, attempts, last_error, delivered_at IS NOT NULL"
                    " FROM alert_outbox ORDER BY id")
        return cur.fetchall()


def test_enqueue_writes_one_waiting_row_per_alert_keyed_by_tenant_table_and_check(platform_db):
    planned = alerts.plan([result("duplicates"), result("orphaned_items", tenant="globex")], set(), NOW)
    alerts.enqueue(platform_db, planned)

    assert outbox(platform_db) == [
        ("DataQualityCheckFailed/acme/user_interactions/duplicates", planned[0], 0, None, False),
        ("DataQualityCheckFailed/globex/user_interactions/orphaned_items", planned[1], 0, None, False),
    ]
    assert alerts.pending(platform_db) == 2


def test_enqueue_commits_so_that_another_connection_sees_the_rows(platform_db, platform_pg):
    alerts.enqueue(platform_db, alerts.plan([result("duplicates")], set(), NOW))
    other = second_connection(platform_pg)
    try:
        assert alerts.pending(other) == 1
    finally:
        other.close()


def test_an_empty_outbox_posts_nothing(platform_db, alertmanager):
    alerts.enqueue(platform_db, [])
    assert alerts.deliver(platform_db, alertmanager.url) == 0
    assert alertmanager.received == []


def test_accepted_alerts_are_posted_oldest_first_in_one_request_and_marked_delivered(platform_db, alertmanager):
    first = alerts.plan([result("duplicates")], set(), NOW)
    second = alerts.plan([result("duplicates", status="pass")], {("acme", "user_interactions", "duplicates")}, NOW)
    alerts.enqueue(platform_db, first)
    alerts.enqueue(platform_db, second)

    assert alerts.deliver(platform_db, alertmanager.url) == 2

    assert alertmanager.received == [first + second]  # the resolve comes last, so it wins
    assert [row[2:] for row in outbox(platform_db)] == [(1, None, True), (1, None, True)]
    assert alerts.pending(platform_db) == 0
    assert alerts.deliver(platform_db, alertmanager.url) == 0  # delivered alerts are never sent again
    assert len(alertmanager.received) == 1


def test_a_refusing_alertmanager_leaves_alerts_waiting_with_the_error(platform_db, alertmanager):
    alerts.enqueue(platform_db, alerts.plan([result("duplicates")], set(), NOW))
    alertmanager.status = 503

    with pytest.raises(TransientError, match="did not take 1 alerts .*HTTP 503: cluster is not ready"):
        alerts.deliver(platform_db, alertmanager.url)

    [(_, _, attempts, error, delivered)] = outbox(platform_db)
    assert (attempts, error, delivered) == (1, "HTTP 503: cluster is not ready", False)
    assert alerts.pending(platform_db) == 1


def test_an_unreachable_alertmanager_leaves_alerts_waiting_and_the_next_attempt_delivers_them(
        platform_db, closed_port_url, alertmanager):
    older = alerts.plan([result("duplicates")], set(), NOW)
    alerts.enqueue(platform_db, older)
    with pytest.raises(TransientError):
        alerts.deliver(platform_db, closed_port_url)
    [(_, _, attempts, error, _)] = outbox(platform_db)
    assert attempts == 1 and error.startswith("ConnectError")

    newer = alerts.plan([result("invalid_interaction_types")], set(), NOW)
    alerts.enqueue(platform_db, newer)
    assert alerts.deliver(platform_db, alertmanager.url) == 2

    assert alertmanager.received == [older + newer]
    assert [(attempts, delivered) for _, _, attempts, _, delivered in outbox(platform_db)] == [(2, True), (1, True)]
    assert alerts.pending(platform_db) == 0


def test_alerts_queued_while_a_delivery_is_in_flight_wait_for_the_next_one(platform_db, platform_pg, alertmanager,
                                                                           monkeypatch):
    """deliver marks delivered only the rows it read, not rows another run queued meanwhile."""
    alerts.enqueue(platform_db, alerts.plan([result("duplicates")], set(), NOW))
    other = second_connection(platform_pg)
    late = alerts.plan([result("orphaned_items")], set(), NOW)
    real_post = alerts.httpx.post

    def post_then_enqueue(*args, **kwargs):
        response = real_post(*args, **kwargs)
        alerts.enqueue(other, late)
        return response

    monkeypatch.setattr(alerts.httpx, "post", post_then_enqueue)
    try:
        assert alerts.deliver(platform_db, alertmanager.url) == 1
    finally:
        other.close()
        monkeypatch.undo()
    assert alerts.pending(platform_db) == 1
    assert alerts.deliver(platform_db, alertmanager.url) == 1
    assert alertmanager.received[-1] == late
