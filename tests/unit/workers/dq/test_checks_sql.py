"""The data-quality checks' SQL against a real PostgreSQL: each planted defect trips exactly its check.

The data is small and inline: 20 users, 10 items, a training run an hour old, and interactions in
the last complete hour before AS_OF, in the same hour of each of the six weeks before (the volume
check's history), and one an hour through the last three days.
"""

from datetime import UTC, datetime, timedelta

import pytest

from workers.dq import checks, summaries
from workers.platform_db.db import transaction

AS_OF = datetime(2026, 11, 24, 10, 20, tzinfo=UTC)
HOUR = datetime(2026, 11, 24, 9, tzinfo=UTC)  # the last complete hour before AS_OF
CURRENT = 31
HISTORY = (30, 31, 32, 30, 31, 32)  # the same hour 1..6 weeks earlier
CHECKS_PER_TENANT = 7 + 3 + 6  # completeness fields, freshness tables, anomaly checks


def seed(conn, tenant: str, current: int = CURRENT, history: tuple = HISTORY) -> None:
    with transaction(conn) as cur:
        cur.execute("INSERT INTO tenants (tenant_id, name) VALUES (%s, %s)", (tenant, tenant.title()))
        cur.execute("INSERT INTO users SELECT %s, n, %s FROM generate_series(1, 20) AS n",
                    (tenant, AS_OF - timedelta(days=90)))
        cur.execute("INSERT INTO items SELECT %s, n, 'item ' || n, 'books', %s, %s FROM generate_series(1, 10) AS n",
                    (tenant, AS_OF - timedelta(days=90), AS_OF - timedelta(days=1)))
        cur.execute("INSERT INTO model_training_runs (dag_run_id, tenant_id, status, started_at, finished_at)"
                    " VALUES ('seed', %s, 'success', %s, %s)",
                    (tenant, AS_OF - timedelta(hours=1), AS_OF - timedelta(minutes=30)))
        for weeks, events in enumerate((current, *history)):
            cur.execute(
                "INSERT INTO user_interactions (tenant_id, user_id, item_id, interaction_type, occurred_at)"
                " SELECT %s, 1 + n %% 20, 1 + n %% 10, (ARRAY['view', 'click', 'purchase'])[1 + n %% 3],"
                " %s + n * interval '1 minute' FROM generate_series(0, %s - 1) AS n",
                (tenant, HOUR - timedelta(weeks=weeks), events))
        cur.execute(  # 08:50, 07:50, ... over three days: never inside a volume window
            "INSERT INTO user_interactions (tenant_id, user_id, item_id, interaction_type, occurred_at)"
            " SELECT %s, 1 + n %% 20, 1 + n %% 10, 'view', %s - n * interval '1 hour'"
            " FROM generate_series(0, 71) AS n", (tenant, AS_OF - timedelta(minutes=90)))


def execute(conn, sql: str, *params) -> None:
    with transaction(conn) as cur:
        cur.execute(sql, params)


DEFAULTS = checks.DqConfig()


def anomalies(conn, tenants, config=DEFAULTS) -> list[checks.CheckResult]:
    summaries.refresh(conn, tenants)
    return checks.anomalies(conn, tenants, AS_OF, config)


def run_all(conn, tenants, config=DEFAULTS) -> list[checks.CheckResult]:
    summaries.refresh(conn, tenants)
    return (checks.completeness(conn, tenants, config) + checks.freshness(conn, tenants, AS_OF, config)
            + checks.anomalies(conn, tenants, AS_OF, config))


def failing(conn, tenant: str, config=DEFAULTS) -> dict[tuple[str, str], float | None]:
    return {(r.table, r.check): r.observed for r in run_all(conn, [tenant], config) if r.status == "fail"}


def background(rows: int) -> str:
    """A condition on the tenant's `rows` most recent interactions outside the volume window."""
    return (f"interaction_id IN (SELECT interaction_id FROM user_interactions WHERE tenant_id = %s"
            f" AND occurred_at < '{HOUR}' ORDER BY occurred_at DESC LIMIT {rows})")


# defect -> (how to plant it in tenant %s, the one (table, check) it must trip, the observed value)
DEFECTS = {
    "null_user_ids": (f"UPDATE user_interactions SET user_id = NULL WHERE {background(1)}",
                      ("user_interactions", "completeness_user_id"), round(100 * 288 / 289, 4)),
    "null_item_ids": (f"UPDATE user_interactions SET item_id = NULL WHERE {background(1)}",
                      ("user_interactions", "completeness_item_id"), round(100 * 288 / 289, 4)),
    "null_types": (f"UPDATE user_interactions SET interaction_type = NULL WHERE {background(3)}",
                   ("user_interactions", "completeness_interaction_type"), round(100 * 286 / 289, 4)),
    "missing_titles": ("UPDATE items SET title = NULL WHERE tenant_id = %s AND item_id = 3",
                       ("items", "completeness_title"), 90.0),
    "missing_categories": ("UPDATE items SET category = NULL WHERE tenant_id = %s AND item_id = 3",
                           ("items", "completeness_category"), 90.0),
    "duplicates": ("INSERT INTO user_interactions (tenant_id, user_id, item_id, interaction_type, occurred_at)"
                   " SELECT tenant_id, user_id, item_id, interaction_type, occurred_at FROM user_interactions"
                   f" WHERE {background(5)}",
                   ("user_interactions", "duplicates"), 5.0),
    "orphaned_users": ("INSERT INTO user_interactions (tenant_id, user_id, item_id, interaction_type, occurred_at)"
                       f" VALUES (%s, 999, 1, 'view', '{AS_OF - timedelta(hours=30)}')",
                       ("user_interactions", "orphaned_users"), 1.0),
    "orphaned_items": (f"UPDATE user_interactions SET item_id = item_id + 1000 WHERE {background(3)}",
                       ("user_interactions", "orphaned_items"), 3.0),
    "invalid_types": (f"UPDATE user_interactions SET interaction_type = 'hack' WHERE {background(4)}",
                      ("user_interactions", "invalid_interaction_types"), 4.0),
    "bot_burst": ("INSERT INTO user_interactions (tenant_id, user_id, item_id, interaction_type, occurred_at)"
                  " SELECT %s, 7, 1 + n %% 10, 'click', '2026-11-24 05:00+00'::timestamptz + n * interval '7 seconds'"
                  " FROM generate_series(0, 250) AS n",
                  ("user_interactions", "bot_like_users"), 1.0),
    "stale_interactions": (f"DELETE FROM user_interactions WHERE tenant_id = %s AND occurred_at > "
                           f"'{AS_OF - timedelta(hours=72)}'",
                           ("user_interactions", "freshness"), None),
    "stale_items": (f"UPDATE items SET updated_at = '{AS_OF - timedelta(days=8)}' WHERE tenant_id = %s",
                    ("items", "freshness"), 192.0),
    "stale_training": (f"UPDATE model_training_runs SET started_at = '{AS_OF - timedelta(hours=30)}'"
                       " WHERE tenant_id = %s", ("model_training_runs", "freshness"), 30.0),
    "volume_spike": ("INSERT INTO user_interactions (tenant_id, user_id, item_id, interaction_type, occurred_at)"
                     " SELECT %s, 1 + n %% 20, 1 + n %% 10, 'view',"
                     f" '{HOUR}'::timestamptz + interval '1 second' + n * interval '10 seconds'"
                     " FROM generate_series(0, 299) AS n",
                     ("user_interactions", "volume_zscore"), None),
    "volume_drop": ("DELETE FROM user_interactions WHERE tenant_id = %s"  # all but 3 of the hour's events
                    f" AND occurred_at >= '{HOUR + timedelta(minutes=3)}' AND occurred_at < '{AS_OF}'",
                    ("user_interactions", "volume_zscore"), None),
}


def test_clean_data_passes_every_check_with_one_result_per_check(platform_db):
    seed(platform_db, "acme")
    found = run_all(platform_db, ["acme"])
    assert len(found) == len({(r.table, r.check) for r in found}) == CHECKS_PER_TENANT
    assert [r for r in found if r.status != "pass"] == []
    volume = next(r for r in found if r.check == "volume_zscore")
    assert volume.details["verdict"] == "judged"
    assert volume.details["events"] == CURRENT and sorted(volume.details["history"]) == sorted(HISTORY)


@pytest.fixture(scope="module")
def planted(new_platform_db):
    """One database: a clean tenant, and one tenant per defect with only that defect planted."""
    with new_platform_db("platform_defects") as conn:
        seed(conn, "clean")
        for kind, (plant, _, _) in DEFECTS.items():
            tenant = kind.replace("_", "-")
            seed(conn, tenant)
            execute(conn, plant, *((tenant,) * plant.count("%s")))
        found: dict[str, dict] = {}
        for r in run_all(conn, ["clean", *(kind.replace("_", "-") for kind in DEFECTS)]):
            found.setdefault(r.tenant_id, {})
            if r.status == "fail":
                found[r.tenant_id][(r.table, r.check)] = r.observed
        yield found


def test_the_tenant_next_to_every_defect_stays_clean(planted):
    assert planted["clean"] == {}


@pytest.mark.parametrize("kind", sorted(DEFECTS))
def test_each_defect_trips_exactly_its_check_and_only_for_its_tenant(planted, kind):
    _, check, observed = DEFECTS[kind]
    found = planted[kind.replace("_", "-")]
    assert set(found) == {check}
    if observed is not None:
        assert found[check] == pytest.approx(observed)


def test_the_volume_check_fails_both_ways_with_the_z_score_as_observed(platform_db):
    seed(platform_db, "acme")
    seed(platform_db, "globex")
    execute(platform_db, DEFECTS["volume_spike"][0], "acme")
    execute(platform_db, DEFECTS["volume_drop"][0], "globex")
    by_tenant = {r.tenant_id: r for r in anomalies(platform_db, ["acme", "globex"])
                 if r.check == "volume_zscore"}
    mean = sum(HISTORY) / len(HISTORY)
    std = (sum((c - mean) ** 2 for c in HISTORY) / len(HISTORY)) ** 0.5
    assert by_tenant["acme"].observed == pytest.approx((CURRENT + 300 - mean) / max(std, 1.0), abs=1e-3)
    assert by_tenant["globex"].observed == pytest.approx((3 - mean) / max(std, 1.0), abs=1e-3)
    assert by_tenant["acme"].details["events"] == CURRENT + 300 and by_tenant["globex"].details["events"] == 3


def test_too_little_history_gives_no_verdict_even_on_a_spike(platform_db):
    seed(platform_db, "acme", history=HISTORY[:2])
    execute(platform_db, DEFECTS["volume_spike"][0], "acme")
    [volume] = [r for r in anomalies(platform_db, ["acme"]) if r.check == "volume_zscore"]
    assert (volume.status, volume.observed, volume.details["verdict"]) == ("pass", None, "no verdict")


def test_a_spike_in_a_normally_quiet_hour_does_not_fail(platform_db):
    seed(platform_db, "acme", current=60, history=(5, 6, 5, 6, 5, 6))
    [volume] = [r for r in anomalies(platform_db, ["acme"]) if r.check == "volume_zscore"]
    assert volume.details["verdict"] == "judged" and volume.observed > 3
    assert volume.status == "pass"


def test_bots_outside_their_window_are_not_counted_but_duplicates_are_across_all_history(platform_db):
    seed(platform_db, "acme")
    execute(platform_db, DEFECTS["bot_burst"][0].replace("2026-11-24 05:00", "2026-11-23 05:00"), "acme")
    assert failing(platform_db, "acme") == {}
    six_weeks_ago = HOUR - timedelta(weeks=6)  # a re-delivered batch of old events: still duplicates
    execute(platform_db,
            "INSERT INTO user_interactions (tenant_id, user_id, item_id, interaction_type, occurred_at)"
            " SELECT tenant_id, user_id, item_id, interaction_type, occurred_at FROM user_interactions"
            " WHERE tenant_id = %s AND occurred_at >= %s AND occurred_at < %s + interval '5 minutes'",
            "acme", six_weeks_ago, six_weeks_ago)
    assert failing(platform_db, "acme") == {("user_interactions", "duplicates"): 5.0}


def test_a_tenant_without_rows_is_not_fresh_and_rows_after_as_of_do_not_count(platform_db):
    seed(platform_db, "acme")
    execute(platform_db, "INSERT INTO tenants (tenant_id, name) VALUES ('empty', 'Empty')")
    execute(platform_db, "UPDATE model_training_runs SET started_at = %s WHERE tenant_id = 'acme'",
            AS_OF + timedelta(hours=1))  # a run that started after the checked moment
    found = {(r.tenant_id, r.table, r.check): r for r in run_all(platform_db, ["acme", "empty"])}

    assert {key[1] for key, r in found.items() if key[0] == "empty" and r.status == "fail"} == {
        "user_interactions", "items", "model_training_runs"}
    assert all(r.observed is None for key, r in found.items() if key[0] == "empty" and key[2] == "freshness")
    nothing = found[("empty", "user_interactions", "completeness_user_id")]
    assert (nothing.status, nothing.observed, nothing.details) == ("pass", 100.0, {"rows": 0, "missing": 0})
    assert found[("acme", "model_training_runs", "freshness")].status == "fail"
    assert found[("acme", "model_training_runs", "freshness")].details["latest"] is None


def test_completeness_reports_rows_and_missing_and_honours_configured_thresholds(platform_db):
    seed(platform_db, "acme")
    execute(platform_db, DEFECTS["missing_titles"][0], "acme")
    summaries.refresh(platform_db, ["acme"])
    lenient = checks.DqConfig(completeness={("items", "title"): (90.0, "warning")})
    [title] = checks.completeness(platform_db, ["acme"], lenient)
    assert (title.status, title.observed, title.details) == ("pass", 90.0, {"rows": 10, "missing": 1})
    [title] = [r for r in checks.completeness(platform_db, ["acme"]) if r.check == "completeness_title"]
    assert (title.status, title.severity, title.threshold) == ("fail", "warning", 95.0)


def test_a_deployment_without_tenants_checks_nothing_and_fails_nothing(platform_db):
    # A fresh deployment runs data_quality_check on its schedule before any tenant is onboarded.
    assert run_all(platform_db, []) == []
