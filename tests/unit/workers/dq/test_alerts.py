from datetime import UTC, datetime

from workers.dq.alerts import FIRING_FOR, as_sent, plan, state
from workers.dq.checks import CheckResult

NOW = datetime(2026, 11, 24, 6, tzinfo=UTC)


def result(check, status, tenant="acme", severity="warning"):
    return CheckResult(tenant, "user_interactions", check, severity, status, 3.0, 0.0, {"rows": 10})


def test_failures_fire_with_stable_labels_from_the_check_time():
    [alert] = plan([result("duplicates", "fail"), result("orphaned_items", "pass")], set(), NOW)
    assert alert["labels"] == {"alertname": "DataQualityCheckFailed", "tenant": "acme", "table": "user_interactions",
                               "check": "duplicates", "severity": "warning", "component": "data-quality"}
    assert "observed 3.0 against threshold 0.0" in alert["annotations"]["description"]
    assert alert["annotations"]["runbook_url"].endswith("#duplicates")
    assert alert["startsAt"] == NOW.isoformat()
    assert state(alert) == "firing"


def test_a_firing_alert_is_sent_to_end_past_the_next_run_from_its_delivery():
    [alert] = plan([result("duplicates", "fail")], set(), NOW)
    delivered = NOW.replace(hour=20)
    assert as_sent("firing", alert, delivered) == {**alert, "endsAt": (delivered + FIRING_FOR).isoformat()}


def test_the_same_failure_gives_the_same_labels_every_run():
    first = plan([result("duplicates", "fail")], set(), NOW)
    again = plan([result("duplicates", "fail")], set(), NOW.replace(hour=12))
    assert first[0]["labels"] == again[0]["labels"]


def test_a_recovered_check_is_resolved_and_a_never_failing_one_is_not():
    alerts = plan([result("duplicates", "pass"), result("orphaned_items", "pass")],
                  {("acme", "user_interactions", "duplicates")}, NOW)
    assert [(a["labels"]["check"], a["endsAt"]) for a in alerts] == [("duplicates", NOW.isoformat())]
    assert "startsAt" not in alerts[0]
    assert state(alerts[0]) == "resolved"
    assert as_sent("resolved", alerts[0], NOW.replace(hour=20)) == alerts[0]  # its end is the check's time
