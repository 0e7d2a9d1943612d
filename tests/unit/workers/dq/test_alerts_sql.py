"""The DQ alert outbox against a real PostgreSQL and a stand-in Alertmanager on loopback (conftest.py).

Alerts are written to alert_outbox once per run, alert and state, and leave it (delivered_at set)
only once Alertmanager answered 200; otherwise every waiting alert records the attempt and the
error, and waits. A delivery posts only rows no other delivery holds.
"""

import socket
import threading
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest

from workers.dq import alerts
from workers.dq.checks import CheckResult
from workers.exceptions import TransientError

NOW = datetime(2026, 11, 24, 6, tzinfo=UTC)
RECOVERED = {("acme", "user_interactions", "duplicates")}


def result(check, status="fail", tenant="acme"):
    return CheckResult(tenant, "user_interactions", check, "critical", status, 3.0, 0.0, {"rows": 10})


@pytest.fixture
def closed_port_url():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more


def outbox(conn) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute("SELECT dag_run_id, alert_key, status, payload, attempts, last_error, delivered_at IS NOT NULL"
                    " FROM alert_outbox ORDER BY id")
        return cur.fetchall()


def as_planned(batch: list[dict]) -> list[dict]:
    """A posted batch without the end delivery gave each firing alert."""
    return [{k: v for k, v in alert.items() if k != "endsAt"} if "startsAt" in alert else alert for alert in batch]


def test_enqueue_writes_one_waiting_row_per_alert_keyed_by_run_tenant_table_check_and_state(platform_db):
    planned = alerts.plan([result("duplicates"), result("orphaned_items", tenant="globex")], set(), NOW)
    planned += alerts.plan([result("duplicates", status="pass")], RECOVERED, NOW)
    alerts.enqueue(platform_db, "run-1", planned)

    assert outbox(platform_db) == [
        ("run-1", "DataQualityCheckFailed/acme/user_interactions/duplicates", "firing", planned[0], 0, None, False),
        ("run-1", "DataQualityCheckFailed/globex/user_interactions/orphaned_items", "firing", planned[1], 0, None,
         False),
        ("run-1", "DataQualityCheckFailed/acme/user_interactions/duplicates", "resolved", planned[2], 0, None, False),
    ]
    assert alerts.pending(platform_db) == 3


def test_a_retried_enqueue_adds_nothing_and_the_next_run_queues_its_own(platform_db):
    planned = alerts.plan([result("duplicates"), result("orphaned_items")], set(), NOW)
    alerts.enqueue(platform_db, "run-1", planned)
    alerts.enqueue(platform_db, "run-1", planned)  # send_alert's retry plans the same alerts
    assert [row[:3] for row in outbox(platform_db)] == [
        ("run-1", "DataQualityCheckFailed/acme/user_interactions/duplicates", "firing"),
        ("run-1", "DataQualityCheckFailed/acme/user_interactions/orphaned_items", "firing"),
    ]

    alerts.enqueue(platform_db, "run-2", planned[:1])
    assert [row[0] for row in outbox(platform_db)] == ["run-1", "run-1", "run-2"]


def test_enqueue_commits_so_that_another_connection_sees_the_rows(platform_db, connect):
    alerts.enqueue(platform_db, "run-1", alerts.plan([result("duplicates")], set(), NOW))
    assert alerts.pending(connect()) == 1


def test_an_empty_outbox_posts_nothing(platform_db, alertmanager):
    alerts.enqueue(platform_db, "run-1", [])
    assert alerts.deliver(platform_db, alertmanager.url) == 0
    assert alertmanager.received == []


def test_accepted_alerts_are_posted_oldest_first_in_one_request_and_marked_delivered(platform_db, alertmanager):
    first = alerts.plan([result("duplicates")], set(), NOW)
    second = alerts.plan([result("duplicates", status="pass")], RECOVERED, NOW)
    alerts.enqueue(platform_db, "run-1", first)
    alerts.enqueue(platform_db, "run-2", second)

    assert alerts.deliver(platform_db, alertmanager.url) == 2

    [batch] = alertmanager.received
    assert as_planned(batch) == first + second  # the resolve comes last, so it wins
    assert [row[4:] for row in outbox(platform_db)] == [(1, None, True), (1, None, True)]
    assert alerts.pending(platform_db) == 0
    assert alerts.deliver(platform_db, alertmanager.url) == 0  # delivered alerts are never sent again
    assert len(alertmanager.received) == 1


def test_a_firing_alert_delivered_late_ends_a_firing_window_after_its_delivery(platform_db, alertmanager):
    checked = datetime.now(UTC).replace(microsecond=0) - alerts.FIRING_FOR - timedelta(days=1)
    alerts.enqueue(platform_db, "run-1", alerts.plan([result("orphaned_items")], set(), checked))
    alerts.enqueue(platform_db, "run-1", alerts.plan([result("duplicates", status="pass")], RECOVERED, checked))

    before = datetime.now(UTC)
    alerts.deliver(platform_db, alertmanager.url)
    after = datetime.now(UTC)

    [[fired, resolve]] = alertmanager.received
    assert fired["startsAt"] == checked.isoformat()  # when the check saw it
    assert before + alerts.FIRING_FOR <= datetime.fromisoformat(fired["endsAt"]) <= after + alerts.FIRING_FOR
    assert resolve["endsAt"] == checked.isoformat()  # already past: resolved on arrival


def test_two_deliveries_at_once_post_each_alert_once(platform_db, connect, alertmanager):
    planned = alerts.plan([result("duplicates"), result("orphaned_items"), result("bot_like_users")], set(), NOW)
    alerts.enqueue(platform_db, "run-1", planned)
    alertmanager.delay = 0.5  # the first delivery is still posting when the second reads the outbox
    start = threading.Barrier(2)
    delivered = []

    def delivery(conn):
        start.wait()
        delivered.append(alerts.deliver(conn, alertmanager.url))

    threads = [threading.Thread(target=delivery, args=(connect(),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # All to one, or split as their row locks fell (SKIP LOCKED); never a row to both.
    assert sum(delivered) == 3
    posted = [alert["labels"]["check"] for batch in alertmanager.received for alert in batch]
    assert sorted(posted) == ["bot_like_users", "duplicates", "orphaned_items"]
    assert alerts.pending(platform_db) == 0


def test_a_delivery_that_stalls_while_holding_its_rows_is_cut_off_and_they_wait(platform_db, connect, alertmanager,
                                                                                  monkeypatch):
    alerts.enqueue(platform_db, "run-1", alerts.plan([result("duplicates")], set(), NOW))
    monkeypatch.setattr(alerts, "LOCKS_HELD_AT_MOST", "200ms")
    alertmanager.delay = 1.0

    with pytest.raises(psycopg2.Error):  # the session ended while the worker waited for Alertmanager
        alerts.deliver(connect(), alertmanager.url)

    with platform_db.cursor() as cur:
        cur.execute("SELECT id FROM alert_outbox WHERE delivered_at IS NULL FOR UPDATE NOWAIT")  # not locked
        assert len(cur.fetchall()) == 1
    platform_db.rollback()


def test_a_refusing_alertmanager_leaves_alerts_waiting_with_the_error(platform_db, alertmanager):
    alerts.enqueue(platform_db, "run-1", alerts.plan([result("duplicates")], set(), NOW))
    alertmanager.status = 503

    with pytest.raises(TransientError, match="did not take 1 alerts .*HTTP 503: cluster is not ready"):
        alerts.deliver(platform_db, alertmanager.url)

    [(*_, attempts, error, delivered)] = outbox(platform_db)
    assert (attempts, error, delivered) == (1, "HTTP 503: cluster is not ready", False)
    assert alerts.pending(platform_db) == 1


def test_an_unreachable_alertmanager_leaves_alerts_waiting_and_the_next_attempt_delivers_them(
        platform_db, closed_port_url, alertmanager):
    older = alerts.plan([result("duplicates")], set(), NOW)
    alerts.enqueue(platform_db, "run-1", older)
    with pytest.raises(TransientError):
        alerts.deliver(platform_db, closed_port_url)
    [(*_, attempts, error, _)] = outbox(platform_db)
    assert attempts == 1 and error.startswith("ConnectError")

    newer = alerts.plan([result("invalid_interaction_types")], set(), NOW)
    alerts.enqueue(platform_db, "run-2", newer)
    assert alerts.deliver(platform_db, alertmanager.url) == 2

    assert [as_planned(batch) for batch in alertmanager.received] == [older + newer]
    assert [(attempts, delivered) for *_, attempts, _, delivered in outbox(platform_db)] == [(2, True), (1, True)]
    assert alerts.pending(platform_db) == 0


def test_alerts_queued_while_a_delivery_is_in_flight_wait_for_the_next_one(platform_db, connect, alertmanager,
                                                                           monkeypatch):
    """deliver marks delivered only the rows it read, not rows another run queued meanwhile."""
    alerts.enqueue(platform_db, "run-1", alerts.plan([result("duplicates")], set(), NOW))
    other = connect()
    late = alerts.plan([result("orphaned_items")], set(), NOW)
    real_post = alerts.httpx.post

    def post_then_enqueue(*args, **kwargs):
        response = real_post(*args, **kwargs)
        alerts.enqueue(other, "run-2", late)
        return response

    monkeypatch.setattr(alerts.httpx, "post", post_then_enqueue)
    assert alerts.deliver(platform_db, alertmanager.url) == 1
    monkeypatch.undo()
    assert alerts.pending(platform_db) == 1
    assert alerts.deliver(platform_db, alertmanager.url) == 1
    assert as_planned(alertmanager.received[-1]) == late
