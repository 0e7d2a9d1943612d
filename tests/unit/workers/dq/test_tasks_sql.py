"""data_quality_check's alerting tasks against a real PostgreSQL and a stand-in Alertmanager (conftest.py):
a failed check task holds back no other check's alerts, and a retried send_alert pages once."""

from datetime import UTC, datetime, timedelta

import pytest

from workers import hooks
from workers.dq import alerts, results, tasks
from workers.dq.checks import CheckResult
from workers.exceptions import TransientError

AS_OF = datetime(2026, 11, 24, 12, tzinfo=UTC)


def result(table, check, status):
    return CheckResult("acme", table, check, "warning", status, 3.0, 0.0, {})


@pytest.fixture
def airflow_connections(monkeypatch, connect, alertmanager):
    """What the tasks read through workers.hooks: the test's database, and the stand-in Alertmanager."""
    monkeypatch.setattr(hooks, "platform_db", connect)
    monkeypatch.setattr(hooks, "http_service",
                        lambda conn_id: {hooks.ALERTMANAGER_CONN_ID: (alertmanager.url, None)}[conn_id])


def posted(alertmanager) -> list[tuple[str, str]]:
    return [(alert["labels"]["check"], "firing" if "startsAt" in alert else "resolved")
            for batch in alertmanager.received for alert in batch]


def test_a_failed_check_task_holds_back_none_of_the_alerts_of_the_checks_that_ran(
        platform_db, airflow_connections, alertmanager):
    results.store(platform_db, "run-1", AS_OF - timedelta(hours=6), [
        result("user_interactions", "freshness", "fail"), result("user_interactions", "duplicates", "fail")])
    # run-2: check_for_anomalies stored its results; check_data_freshness failed and stored none.
    results.store(platform_db, "run-2", AS_OF, [
        result("user_interactions", "duplicates", "pass"), result("user_interactions", "orphaned_items", "fail")])

    assert tasks.decide_alert_needed("run-2", AS_OF.isoformat()) == "send_alert"
    assert tasks.send_alert("run-2", AS_OF.isoformat()) == {"queued": 2, "delivered": 2}

    # freshness is neither resolved nor paged again: this run has no verdict on it.
    assert posted(alertmanager) == [("orphaned_items", "firing"), ("duplicates", "resolved")]


def test_a_retried_send_alert_pages_once(platform_db, airflow_connections, alertmanager):
    results.store(platform_db, "run-1", AS_OF, [result("user_interactions", "orphaned_items", "fail")])
    alertmanager.status = 503
    with pytest.raises(TransientError):
        tasks.send_alert("run-1", AS_OF.isoformat())
    alertmanager.status = 200

    assert tasks.send_alert("run-1", AS_OF.isoformat()) == {"queued": 1, "delivered": 1}
    assert tasks.send_alert("run-1", AS_OF.isoformat()) == {"queued": 1, "delivered": 0}  # e.g. cleared by hand

    assert [len(batch) for batch in alertmanager.received] == [1, 1]  # the refused attempt, then the page
    assert alerts.pending(platform_db) == 0


def test_the_checks_read_what_update_summaries_counted_with_each_tenant_configuration(platform_db,
                                                                                      airflow_connections):
    from tests.unit.workers.dq.test_checks_sql import AS_OF as SEEDED_AS_OF
    from tests.unit.workers.dq.test_checks_sql import execute, seed

    seed(platform_db, "acme")
    execute(platform_db, "INSERT INTO user_interactions (tenant_id, user_id, item_id, interaction_type, occurred_at)"
                         " VALUES ('acme', 1, 1, 'like', %s)", SEEDED_AS_OF - timedelta(days=2))
    as_of = SEEDED_AS_OF.isoformat()
    assert tasks.check_for_anomalies(["acme"], "run-0", as_of)["failed"] == []  # nothing counted yet

    assert tasks.update_summaries(["acme"])["full"] == ["acme"]
    assert tasks.check_for_anomalies(["acme"], "run-1", as_of)["failed"] == [
        "acme.user_interactions.invalid_interaction_types (critical)"]
    execute(platform_db, "INSERT INTO dq_tenant_config (tenant_id, valid_types)"
                         " VALUES ('acme', '{view,click,purchase,like}')")
    assert tasks.update_summaries(["acme"], full=True)["full"] == ["acme"]
    assert tasks.check_for_anomalies(["acme"], "run-2", as_of)["failed"] == []
    assert tasks.check_data_freshness(["acme"], "run-2", as_of, {"interactions_max_age_h": 0.5, "items_max_age_h": None}
                                      )["failed"] == ["acme.user_interactions.freshness (critical)"]
