"""Incremental summaries against a full recount, on a real PostgreSQL: after any mix of new rows, late
rows, re-delivered rows, catalogue rows arriving late and edits, the checks give the same results
from the summaries a watermark kept as from summaries recounted from scratch (full_recheck)."""

from datetime import timedelta

from tests.unit.workers.dq.test_checks_sql import AS_OF, DEFECTS, HOUR, execute, seed
from workers.dq import checks, summaries

INSERT = "INSERT INTO user_interactions (tenant_id, user_id, item_id, interaction_type, occurred_at) "
# Defects that arrive as new rows, so the incremental path (not a rescan) must catch them, each one
# also late: its event time lies before the watermark.
ARRIVING = {
    "null_user_ids": INSERT + f"VALUES (%s, NULL, 1, 'view', '{HOUR - timedelta(days=2)}')",
    "null_item_ids": INSERT + f"VALUES (%s, 1, NULL, 'view', '{HOUR - timedelta(days=20)}')",
    "null_types": INSERT + f"SELECT %s, 1, 1, NULL, '{HOUR - timedelta(days=3)}'::timestamptz + n * interval '1 s'"
                           " FROM generate_series(1, 4) AS n",
    "invalid_types": INSERT + f"SELECT %s, 1, 1, 'hack', '{HOUR - timedelta(days=9)}'::timestamptz"
                              " + n * interval '1 s' FROM generate_series(1, 4) AS n",
    "orphaned_items": INSERT + f"VALUES (%s, 1, 5000, 'view', '{HOUR - timedelta(days=40)}')",
    "orphaned_users": INSERT + f"VALUES (%s, 5000, 1, 'click', '{HOUR - timedelta(hours=30)}')",
    # a batch of old events delivered again, and a copy of a copy
    "duplicates": INSERT + "SELECT tenant_id, user_id, item_id, interaction_type, occurred_at FROM user_interactions"
                           " WHERE tenant_id = %s AND interaction_id %% 7 = 0",
    "late_volume_history": INSERT + "SELECT %s, 1 + n %% 20, 1 + n %% 10, 'view',"
                                    f" '{HOUR - timedelta(weeks=3)}'::timestamptz + n * interval '1 second'"
                                    " FROM generate_series(1, 200) AS n",
}


def results(conn, tenants: list[str]) -> dict:
    found = (checks.completeness(conn, tenants) + checks.freshness(conn, tenants, AS_OF)
             + checks.anomalies(conn, tenants, AS_OF))
    return {(r.tenant_id, r.table, r.check): r for r in found}


def summary_tables(conn) -> dict:
    tables = {}
    with conn.cursor() as cur:
        for name, sql in (
                ("hourly", "SELECT * FROM dq_hourly ORDER BY tenant_id, hour, interaction_type NULLS FIRST"),
                ("totals", "SELECT * FROM dq_totals ORDER BY tenant_id, interaction_type NULLS FIRST"),
                ("orphans", "SELECT * FROM dq_orphans ORDER BY tenant_id, kind, id"),
                ("duplicates", "SELECT tenant_id, duplicates FROM dq_watermarks ORDER BY tenant_id")):
            cur.execute(sql)
            tables[name] = cur.fetchall()
    return tables


def recounted(conn, tenants: list[str]) -> tuple[dict, dict]:
    assert summaries.refresh(conn, tenants, full=True)["full"] == sorted(tenants)
    return results(conn, tenants), summary_tables(conn)


def test_incremental_agrees_with_a_full_recount_on_every_defect_arriving_after_the_watermark(platform_db):
    tenants = ["clean", *(kind.replace("_", "-") for kind in ARRIVING)]
    for tenant in tenants:
        seed(platform_db, tenant)
    assert summaries.refresh(platform_db, tenants)["full"] == sorted(tenants)  # first run: no watermark yet
    for kind, plant in ARRIVING.items():
        execute(platform_db, plant, *((kind.replace("_", "-"),) * plant.count("%s")))
    execute(platform_db, ARRIVING["duplicates"], "duplicates")  # again: copies of copies

    done = summaries.refresh(platform_db, tenants)
    assert (done["full"], done["incremental"]) == ([], sorted(tenants))
    incremental, incremental_tables = results(platform_db, tenants), summary_tables(platform_db)
    full, full_tables = recounted(platform_db, tenants)

    assert incremental_tables == full_tables
    assert incremental == full
    failed = {key for key, r in incremental.items() if r.status == "fail"}
    assert failed == {
        ("null-user-ids", "user_interactions", "completeness_user_id"),
        ("null-item-ids", "user_interactions", "completeness_item_id"),
        ("null-types", "user_interactions", "completeness_interaction_type"),
        ("invalid-types", "user_interactions", "invalid_interaction_types"),
        ("orphaned-items", "user_interactions", "orphaned_items"),
        ("orphaned-users", "user_interactions", "orphaned_users"),
        ("duplicates", "user_interactions", "duplicates"),
    }
    assert incremental[("late-volume-history", "user_interactions", "volume_zscore")].details["history"][2] == 32 + 200


def test_incremental_agrees_with_a_full_recount_on_the_demo_defects_and_edits(platform_db):
    """Every planted defect of test_checks_sql after a first summary: the edits (updates, deletes) flag
    their tenant for a recount, the inserts go through the watermark."""
    tenants = ["clean", *(kind.replace("_", "-") for kind in DEFECTS)]
    for tenant in tenants:
        seed(platform_db, tenant)
    summaries.refresh(platform_db, tenants)
    for kind, (plant, _, _) in DEFECTS.items():
        execute(platform_db, plant, *((kind.replace("_", "-"),) * plant.count("%s")))

    done = summaries.refresh(platform_db, tenants)
    edited = {kind.replace("_", "-") for kind, (plant, _, _) in DEFECTS.items()
              if "user_interactions" in plant.split(" WHERE")[0] and not plant.startswith("INSERT")}
    assert set(done["full"]) == edited and "duplicates" in done["incremental"]
    incremental, incremental_tables = results(platform_db, tenants), summary_tables(platform_db)
    full, full_tables = recounted(platform_db, tenants)
    assert (incremental, incremental_tables) == (full, full_tables)
    for kind, (_, check, _) in DEFECTS.items():
        tenant = kind.replace("_", "-")
        assert {key[1:] for key, r in full.items() if key[0] == tenant and r.status == "fail"} == {check}


def test_an_orphan_is_adopted_when_its_catalogue_row_arrives_and_a_deleted_user_makes_new_ones(platform_db):
    seed(platform_db, "acme")
    execute(platform_db, ARRIVING["orphaned_users"], "acme")
    summaries.refresh(platform_db, ["acme"])
    assert results(platform_db, ["acme"])[("acme", "user_interactions", "orphaned_users")].observed == 1

    execute(platform_db, "INSERT INTO users VALUES ('acme', 5000, now())")
    assert summaries.refresh(platform_db, ["acme"])["incremental"] == ["acme"]
    assert results(platform_db, ["acme"])[("acme", "user_interactions", "orphaned_users")].observed == 0

    execute(platform_db, "DELETE FROM users WHERE tenant_id = 'acme' AND user_id = 3")
    assert summaries.refresh(platform_db, ["acme"])["full"] == ["acme"]
    orphans = results(platform_db, ["acme"])[("acme", "user_interactions", "orphaned_users")].observed
    assert orphans > 0 and orphans == recounted(platform_db, ["acme"])[0][
        ("acme", "user_interactions", "orphaned_users")].observed


def test_rows_of_a_transaction_still_open_wait_for_the_next_run(platform_db, connect):
    seed(platform_db, "acme")
    summaries.refresh(platform_db, ["acme"])
    writer = connect()
    with writer.cursor() as cur:  # an ingestion batch in progress, begun before the refresh
        cur.execute(INSERT + f"VALUES ('acme', 1, 1, 'hack', '{HOUR - timedelta(days=1)}')")
    execute(platform_db, ARRIVING["invalid_types"], "acme")  # committed, but after the open one began
    summaries.refresh(platform_db, ["acme"])
    assert results(platform_db, ["acme"])[("acme", "user_interactions", "invalid_interaction_types")].observed == 0
    writer.commit()
    summaries.refresh(platform_db, ["acme"])
    assert results(platform_db, ["acme"])[("acme", "user_interactions", "invalid_interaction_types")].observed == 5
    assert recounted(platform_db, ["acme"])[0][("acme", "user_interactions", "invalid_interaction_types")].observed == 5


def test_after_a_restore_into_another_cluster_new_rows_are_summarised_once(platform_db):
    """A restored platform database carries the old cluster's transaction ids (here far ahead of this
    one's): stackctl restore forgets them, so the next run recounts and later rows are each counted once."""
    tenants = ["restored"]
    seed(platform_db, "restored")
    summaries.refresh(platform_db, tenants)
    ahead = 10**12  # the old cluster's ids, far above this cluster's counter
    execute(platform_db, "UPDATE user_interactions SET ingest_txid = ingest_txid + %s", ahead)
    execute(platform_db, "UPDATE dq_watermarks SET fence = fence + %s, rescan = false", ahead)

    summaries.forget_transaction_ids(platform_db)
    assert summaries.refresh(platform_db, tenants)["full"] == tenants
    execute(platform_db, ARRIVING["invalid_types"], "restored")  # written after the restore
    assert summaries.refresh(platform_db, tenants)["incremental"] == tenants
    incremental, incremental_tables = results(platform_db, tenants), summary_tables(platform_db)
    assert (incremental, incremental_tables) == recounted(platform_db, tenants)
    assert incremental[("restored", "user_interactions", "invalid_interaction_types")].status == "fail"
