"""dq_results against a real PostgreSQL: stored per run idempotently, and the history alerts resolve against."""

from datetime import UTC, datetime, timedelta

import pytest

from workers.dq import results
from workers.dq.checks import CheckResult

T0 = datetime(2026, 11, 24, 0, tzinfo=UTC)


def result(check="duplicates", status="fail", tenant="acme", observed=3.0, **details):
    return CheckResult(tenant, "user_interactions", check, "warning", status, observed, 0.0, details)


def count(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM dq_results")
        return cur.fetchone()[0]


def test_stored_results_read_back_per_run_in_order(platform_db):
    stored = [result("orphaned_items", "pass", observed=0.0), result("duplicates", history=[1, 2], hour="09:00"),
              result("duplicates", tenant="globex", observed=None)]
    results.store(platform_db, "run-1", T0, stored)
    results.store(platform_db, "run-2", T0, [result("bot_like_users")])

    assert results.for_run(platform_db, "run-1") == sorted(stored, key=lambda r: (r.tenant_id, r.table, r.check))
    assert results.for_run(platform_db, "nope") == []


def test_storing_a_run_again_replaces_its_rows(platform_db):
    results.store(platform_db, "run-1", T0, [result(status="fail", observed=3.0), result("orphaned_items")])
    results.store(platform_db, "run-1", T0 + timedelta(minutes=5), [result(status="pass", observed=0.0)])

    assert count(platform_db) == 2
    by_check = {r.check: r for r in results.for_run(platform_db, "run-1")}
    assert (by_check["duplicates"].status, by_check["duplicates"].observed) == ("pass", 0.0)
    assert by_check["orphaned_items"].status == "fail"  # a check the retry did not report stays
    with platform_db.cursor() as cur:
        cur.execute("SELECT checked_at FROM dq_results WHERE check_name = 'duplicates'")
        assert cur.fetchone()[0] == T0 + timedelta(minutes=5)


def test_a_failing_store_writes_nothing(platform_db):
    bad = CheckResult("acme", "items", "freshness", "urgent", "fail", 1.0, 0.0, {})  # not a known severity
    with pytest.raises(Exception, match="dq_results_severity_check"):
        results.store(platform_db, "run-1", T0, [result(), bad])
    assert count(platform_db) == 0


def test_failing_before_is_the_latest_earlier_result_of_each_check_when_it_failed(platform_db):
    results.store(platform_db, "run-1", T0, [
        result("duplicates", "fail"), result("orphaned_items", "fail"), result("bot_like_users", "pass"),
        result("duplicates", "fail", tenant="globex")])
    results.store(platform_db, "run-2", T0 + timedelta(hours=6), [
        result("orphaned_items", "pass"), result("bot_like_users", "fail")])
    results.store(platform_db, "run-4", T0 + timedelta(hours=18), [result("orphaned_items", "fail")])  # later

    current = T0 + timedelta(hours=12)
    results.store(platform_db, "run-3", current, [result("duplicates", "pass")])  # this run's own rows
    assert results.failing_before(platform_db, "run-3", current) == {
        ("acme", "user_interactions", "duplicates"),     # failed in run-1, not reported since
        ("acme", "user_interactions", "bot_like_users"),  # failed in run-2
        ("globex", "user_interactions", "duplicates"),
    }
    assert results.failing_before(platform_db, "run-1", T0) == set()


def test_failing_before_counts_a_failure_between_results_of_the_same_time(platform_db):
    """Manual runs check as of the same schedule boundary; whichever order their results were written in."""
    results.store(platform_db, "manual-1", T0, [result("duplicates", "fail"), result("orphaned_items", "pass")])
    results.store(platform_db, "manual-2", T0, [result("duplicates", "pass"), result("orphaned_items", "fail")])

    assert results.failing_before(platform_db, "run-3", T0 + timedelta(hours=6)) == {
        ("acme", "user_interactions", "duplicates"), ("acme", "user_interactions", "orphaned_items")}
