"""Defects to inject into a tenant's platform data, one kind at a time, for the demo and the tests.

Each function damages the data in exactly the way one check looks for, and in no other.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from workers.platform_db.db import transaction


def null_user_ids(conn, tenant: str, share: float = 0.02) -> None:
    with transaction(conn) as cur:
        cur.execute("UPDATE user_interactions SET user_id = NULL WHERE tenant_id = %s AND random() < %s",
                    (tenant, share))


def duplicates(conn, tenant: str, rows: int = 200) -> None:
    """A re-delivered batch: rows from two to three days before the data's end, ingested again."""
    with transaction(conn) as cur:
        cur.execute(
            "WITH latest AS (SELECT max(occurred_at) AS t FROM user_interactions WHERE tenant_id = %s)"
            " INSERT INTO user_interactions (tenant_id, user_id, item_id, interaction_type, weight, occurred_at)"
            " SELECT tenant_id, user_id, item_id, interaction_type, weight, occurred_at"
            " FROM user_interactions, latest WHERE tenant_id = %s"
            " AND occurred_at BETWEEN latest.t - interval '3 days' AND latest.t - interval '2 days'"
            " ORDER BY interaction_id LIMIT %s",
            (tenant, tenant, rows),
        )


def orphaned_items(conn, tenant: str, rows: int = 100) -> None:
    """Interactions that point at items missing from the catalogue."""
    with transaction(conn) as cur:
        cur.execute(
            "UPDATE user_interactions SET item_id = item_id + 10000000 WHERE interaction_id IN ("
            " SELECT interaction_id FROM user_interactions WHERE tenant_id = %s ORDER BY interaction_id LIMIT %s)",
            (tenant, rows),
        )


def invalid_types(conn, tenant: str, rows: int = 50) -> None:
    with transaction(conn) as cur:
        cur.execute(
            "UPDATE user_interactions SET interaction_type = 'hack' WHERE interaction_id IN ("
            " SELECT interaction_id FROM user_interactions WHERE tenant_id = %s ORDER BY interaction_id LIMIT %s)",
            (tenant, rows),
        )


def bot_burst(conn, tenant: str, as_of: datetime, events: int = 600) -> None:
    """One user clicking hundreds of times in one hour, five hours before the check."""
    start = as_of.replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    with transaction(conn) as cur:
        cur.execute(
            "INSERT INTO user_interactions (tenant_id, user_id, item_id, interaction_type, weight, occurred_at)"
            " SELECT %s, 1, 1 + (n %% 50), 'click', 2.0, %s + n * interval '5 seconds'"
            " FROM generate_series(0, %s - 1) AS n",
            (tenant, start, events),
        )


def stale(conn, tenant: str, hours: int = 72) -> None:
    """Drop the tenant's most recent interactions: its data stops `hours` ago."""
    with transaction(conn) as cur:
        cur.execute(
            "DELETE FROM user_interactions WHERE tenant_id = %s AND occurred_at >"
            " (SELECT max(occurred_at) FROM user_interactions WHERE tenant_id = %s) - make_interval(hours => %s)",
            (tenant, tenant, hours),
        )


def volume_spike(conn, tenant: str, as_of: datetime, events: int = 3000) -> None:
    """Many users at once in the last complete hour, none of them bot-like."""
    hour = as_of.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    with transaction(conn) as cur:
        cur.execute(
            "INSERT INTO user_interactions (tenant_id, user_id, item_id, interaction_type, weight, occurred_at)"
            " SELECT %s, 1 + (n %% 1000), 1 + (n %% 500), 'view', 1.0, %s + (n %% 3600) * interval '1 second'"
            " FROM generate_series(1, %s) AS n",
            (tenant, hour, events),
        )


KINDS = {
    "completeness_user_id": null_user_ids,
    "duplicates": duplicates,
    "orphaned_items": orphaned_items,
    "invalid_interaction_types": invalid_types,
    "bot_like_users": bot_burst,
    "freshness": stale,
    "volume_zscore": volume_spike,
}
