"""The summaries the DQ checks read instead of all history (tables of migration V008).

Per tenant: dq_hourly (events, NULL user and item ids, first and last event time, per UTC hour
and interaction type), dq_totals (the same counts over all history, per type), dq_orphans (ids
the catalogue lacks, with their interaction counts) and, in dq_watermarks, the duplicate count
over all history and the fence the summaries reach.

A summary table rather than time partitions with BRIN: the checks need per-hour counts over all
history (volume, completeness, invalid types), and a partitioned table would still have to be
counted row by row; summaries hold one row per tenant, hour and type, about 70k for 20 tenants
over 60 days, whatever the number of events.

The watermark is the writing transaction's id (user_interactions.ingest_txid), not the event
time: a late event (occurred_at long past) is still new to the summaries, and it is counted in
the hour it occurred. Each refresh takes the rows with txid from the tenant's last fence up to
the current fence, the oldest transaction still running (every one below it has ended, so no row
below it can still appear). Inserts are all the summaries follow; an update or delete sets the
tenant's rescan flag (V008's triggers), and its next refresh is a full one.
"""

from __future__ import annotations

from workers.platform_db.db import transaction

# The rows to add to the summaries: all of a tenant's below the fence, or those since its watermark.
_ALL_ROWS = ("SELECT * FROM user_interactions WHERE tenant_id = ANY(%(tenants)s)"
             " AND (ingest_txid < %(fence)s OR ingest_txid IS NULL)")
# `lowest` (the smallest watermark) is a constant the BRIN index on ingest_txid can use.
_NEW_ROWS = ("SELECT i.* FROM user_interactions i"
             " JOIN unnest(%(tenants)s::text[], %(since)s::bigint[]) AS w(tenant_id, since) USING (tenant_id)"
             " WHERE i.ingest_txid >= %(lowest)s AND i.ingest_txid < %(fence)s AND i.ingest_txid >= w.since")

_ADD_HOURLY = """
    INSERT INTO dq_hourly AS h (tenant_id, hour, interaction_type, events, null_users, null_items, first_at, last_at)
    SELECT tenant_id, date_trunc('hour', occurred_at, 'UTC'), interaction_type, count(*),
           count(*) - count(user_id), count(*) - count(item_id), min(occurred_at), max(occurred_at)
    FROM ({rows}) AS n GROUP BY 1, 2, 3
    ON CONFLICT ON CONSTRAINT dq_hourly_key DO UPDATE SET
        events = h.events + EXCLUDED.events, null_users = h.null_users + EXCLUDED.null_users,
        null_items = h.null_items + EXCLUDED.null_items, first_at = least(h.first_at, EXCLUDED.first_at),
        last_at = greatest(h.last_at, EXCLUDED.last_at)
"""
_ADD_TOTALS = """
    INSERT INTO dq_totals AS h (tenant_id, interaction_type, events, null_users, null_items)
    SELECT tenant_id, interaction_type, count(*), count(*) - count(user_id), count(*) - count(item_id)
    FROM ({rows}) AS n GROUP BY 1, 2
    ON CONFLICT ON CONSTRAINT dq_totals_key DO UPDATE SET
        events = h.events + EXCLUDED.events, null_users = h.null_users + EXCLUDED.null_users,
        null_items = h.null_items + EXCLUDED.null_items
"""
# A recount's totals from the hourly counts it just made: no second pass over all of the rows.
_TOTALS_FROM_HOURLY = """
    INSERT INTO dq_totals (tenant_id, interaction_type, events, null_users, null_items)
    SELECT tenant_id, interaction_type, sum(events), sum(null_users), sum(null_items) FROM dq_hourly
    WHERE tenant_id = ANY(%(tenants)s) GROUP BY 1, 2
"""
_ADD_ORPHANS = """
    INSERT INTO dq_orphans AS o (tenant_id, kind, id, interactions)
    SELECT n.tenant_id, '{kind}', n.{kind}_id, count(*) FROM ({rows}) AS n
    WHERE n.{kind}_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM {kind}s c WHERE c.tenant_id = n.tenant_id AND c.{kind}_id = n.{kind}_id)
    GROUP BY 1, 3
    ON CONFLICT (tenant_id, kind, id) DO UPDATE SET interactions = o.interactions + EXCLUDED.interactions
"""
# Catalogue rows arrive after their events: an id the catalogue has now is no longer an orphan.
_DROP_ADOPTED = """
    DELETE FROM dq_orphans o WHERE o.tenant_id = ANY(%(tenants)s) AND CASE o.kind
        WHEN 'user' THEN EXISTS (SELECT 1 FROM users c WHERE c.tenant_id = o.tenant_id AND c.user_id = o.id)
        ELSE EXISTS (SELECT 1 FROM items c WHERE c.tenant_id = o.tenant_id AND c.item_id = o.id) END
"""
# A row is a duplicate when a row with the same natural key came before it, in (txid, id) order: the
# order refreshes take rows in, so earlier copies are always summarised already or in the same batch,
# and over all rows this counts what `copies - 1` per key counts.
_ALL_DUPLICATES = """
    SELECT tenant_id, sum(copies - 1) FROM (
        SELECT tenant_id, count(*) AS copies FROM ({rows}) AS n
        GROUP BY tenant_id, user_id, item_id, interaction_type, occurred_at HAVING count(*) > 1
    ) AS repeated GROUP BY tenant_id
"""
_NEW_DUPLICATES = """
    SELECT n.tenant_id, count(*) FROM ({rows}) AS n
    WHERE EXISTS (
        SELECT 1 FROM user_interactions b
        WHERE b.tenant_id = n.tenant_id AND b.occurred_at = n.occurred_at
          AND (coalesce(b.ingest_txid, 0), b.interaction_id) < (coalesce(n.ingest_txid, 0), n.interaction_id)
          AND b.user_id IS NOT DISTINCT FROM n.user_id AND b.item_id IS NOT DISTINCT FROM n.item_id
          AND b.interaction_type IS NOT DISTINCT FROM n.interaction_type)
    GROUP BY n.tenant_id
"""


def _add(cur, params: dict, *, full: bool) -> dict[str, int]:
    """Add the rows (all of the tenants' below the fence, or the new ones) to the summaries; return the
    duplicates among them."""
    if full:
        rows = _ALL_ROWS
    else:  # read once through the BRIN index, then by each of the statements below
        cur.execute(f"CREATE TEMPORARY TABLE dq_new ON COMMIT DROP AS {_NEW_ROWS}", params)
        rows = "SELECT * FROM dq_new"
    cur.execute(_ADD_HOURLY.format(rows=rows), params)
    cur.execute(_TOTALS_FROM_HOURLY if full else _ADD_TOTALS.format(rows=rows), params)
    for kind in ("user", "item"):
        cur.execute(_ADD_ORPHANS.format(rows=rows, kind=kind), params)
    cur.execute((_ALL_DUPLICATES if full else _NEW_DUPLICATES).format(rows=rows), params)
    return {tenant: int(count) for tenant, count in cur.fetchall()}


def refresh(conn, tenants: list[str], full: bool = False) -> dict:
    """Bring the tenants' summaries up to the current fence: from scratch for `full`, for a tenant never
    summarised and for one flagged for a rescan; otherwise from its watermark. Returns which went how."""
    with transaction(conn) as cur:
        cur.execute("SET LOCAL work_mem = '128MB'")  # aggregates over millions of rows in a full run
        # whose anti-joins with the catalogue the planner would run as merge joins, sorting every row:
        # hashing the catalogue (400k users for 20 tenants) is several times faster.
        cur.execute("SET LOCAL enable_mergejoin = off")
        # Serialises refreshes, and orders them with the rescan triggers (see V008).
        cur.execute("LOCK TABLE dq_watermarks IN EXCLUSIVE MODE")
        cur.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        fence = cur.fetchone()[0]
        cur.execute("SELECT t, w.fence, coalesce(w.rescan, false) FROM unnest(%s::text[]) AS t"
                    " LEFT JOIN dq_watermarks w ON w.tenant_id = t", (tenants,))
        marks = cur.fetchall()
        rescan = [t for t, since, flagged in marks if full or since is None or flagged]
        since = {t: since for t, since, _ in marks if t not in rescan}
        if rescan:
            cur.execute("DELETE FROM dq_hourly WHERE tenant_id = ANY(%s)", (rescan,))
            cur.execute("DELETE FROM dq_totals WHERE tenant_id = ANY(%s)", (rescan,))
            cur.execute("DELETE FROM dq_orphans WHERE tenant_id = ANY(%s)", (rescan,))
            duplicates = _add(cur, {"tenants": rescan, "fence": fence}, full=True)
            cur.execute(
                "INSERT INTO dq_watermarks AS w (tenant_id, fence, duplicates, rescan, refreshed_at)"
                " SELECT t, %s, 0, false, now() FROM unnest(%s::text[]) AS t ON CONFLICT (tenant_id) DO UPDATE"
                " SET fence = EXCLUDED.fence, duplicates = 0, rescan = false, refreshed_at = now()",
                (fence, rescan))
        else:
            duplicates = {}
        if since:
            params = {"tenants": list(since), "since": list(since.values()), "lowest": min(since.values()),
                      "fence": fence}
            duplicates.update(_add(cur, params, full=False))
            cur.execute("UPDATE dq_watermarks SET fence = %s, refreshed_at = now() WHERE tenant_id = ANY(%s)",
                        (fence, list(since)))
        cur.execute(_DROP_ADOPTED, {"tenants": tenants})
        cur.execute("UPDATE dq_watermarks w SET duplicates = w.duplicates + d.n"
                    " FROM unnest(%s::text[], %s::bigint[]) AS d(t, n) WHERE w.tenant_id = d.t",
                    (list(duplicates), list(duplicates.values())))
    return {"fence": fence, "full": sorted(rescan), "incremental": sorted(since)}


def forget_transaction_ids(conn) -> None:
    """After the platform database was restored into another PostgreSQL cluster (stackctl restore).

    Its rows' ingest_txid and the tenants' fences are the old cluster's transaction ids, which
    mean nothing here: a new row could sit below a restored fence and never be summarised, or a
    restored row above the new fences and be counted twice. So every restored row becomes history
    (NULL: below any fence, as rows written before V008) and every tenant is recounted from scratch.
    """
    with transaction(conn) as cur:
        cur.execute("SELECT to_regclass('dq_watermarks')")
        if cur.fetchone()[0] is None:  # a backup from before V008: its migration starts the summaries afresh
            return
        cur.execute("UPDATE user_interactions SET ingest_txid = NULL WHERE ingest_txid IS NOT NULL")
        cur.execute("UPDATE dq_watermarks SET fence = NULL, rescan = true")
