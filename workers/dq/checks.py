"""Data-quality checks as SQL: each query aggregates per tenant inside PostgreSQL, and only
those aggregates come back.

Every check yields one CheckResult per tenant; `status` is "fail" when the observed value
crosses the threshold.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from workers.schema import INTERACTION_TYPES


@dataclass(frozen=True)
class DqConfig:
    # Completeness: (table, field) -> (minimum % of rows with a value, severity below it).
    completeness: dict = field(default_factory=lambda: {
        ("tenants", "name"): (100.0, "warning"),
        ("user_interactions", "user_id"): (99.9, "critical"),
        ("user_interactions", "item_id"): (99.9, "critical"),
        ("user_interactions", "interaction_type"): (99.0, "warning"),
        ("items", "title"): (95.0, "warning"),
        ("items", "category"): (99.0, "warning"),
        ("model_training_runs", "status"): (100.0, "warning"),
    })
    interactions_max_age_h: float = 24.0
    items_max_age_h: float = 24.0 * 7
    training_max_age_h: float = 24.0
    duplicates_max: int = 0
    # Duplicates come from re-delivered ingestion batches, so they are looked for in recent
    # data: scanning all history for them each run would cost more than every other check.
    duplicates_window_days: float = 7.0
    orphans_max: int = 0
    invalid_types_max: int = 0
    # Volume: the last complete hour against the same hour of the week in earlier weeks.
    volume_weeks: int = 6
    volume_min_weeks: int = 3        # fewer weeks of history: no verdict
    volume_z: float = 3.0
    volume_min_change: float = 0.5   # and at least a 50% change...
    volume_min_events: float = 20.0  # ...from an hour that normally has at least this many events
    bot_max_per_hour: int = 200      # one user's interactions in one hour


@dataclass(frozen=True)
class CheckResult:
    tenant_id: str
    table: str
    check: str
    severity: str
    status: str
    observed: float | None
    threshold: float | None
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _rows(conn, sql: str, params: dict) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def _result(tenant, table, check, severity, failed, observed, threshold, **details) -> CheckResult:
    return CheckResult(tenant, table, check, severity, "fail" if failed else "pass",
                       None if observed is None else float(observed), threshold, details)


def completeness(conn, tenants: list[str], config: DqConfig = DqConfig()) -> list[CheckResult]:
    results = []
    tables: dict[str, list] = {}
    for (table, column), rule in config.completeness.items():
        tables.setdefault(table, []).append((column, rule))
    for table, columns in tables.items():
        counts = ", ".join(f"count({column})" for column, _ in columns)
        rows = {row[0]: row[1:] for row in _rows(
            conn, f"SELECT tenant_id, count(*), {counts} FROM {table}"  # noqa: S608 (names from config)
                  " WHERE tenant_id = ANY(%(tenants)s) GROUP BY tenant_id", {"tenants": tenants})}
        for tenant in tenants:
            total, *present = rows.get(tenant, (0,) + (0,) * len(columns))
            for (column, (minimum, severity)), filled in zip(columns, present, strict=True):
                percent = 100.0 * filled / total if total else 100.0
                results.append(_result(tenant, table, f"completeness_{column}", severity, percent < minimum,
                                       round(percent, 4), minimum, rows=total, missing=total - filled))
    return results


def freshness(conn, tenants: list[str], as_of: datetime, config: DqConfig = DqConfig()) -> list[CheckResult]:
    rules = [
        ("user_interactions", "occurred_at", config.interactions_max_age_h, "critical"),
        ("items", "updated_at", config.items_max_age_h, "warning"),
        ("model_training_runs", "started_at", config.training_max_age_h, "warning"),
    ]
    results = []
    for table, column, max_age_h, severity in rules:
        latest = dict(_rows(conn, f"SELECT tenant_id, max({column}) FROM {table}"  # noqa: S608
                                  " WHERE tenant_id = ANY(%(tenants)s) AND {column} <= %(as_of)s"
                                  " GROUP BY tenant_id".format(column=column),
                            {"tenants": tenants, "as_of": as_of}))
        for tenant in tenants:
            age_h = (as_of - latest[tenant]).total_seconds() / 3600 if latest.get(tenant) else None
            results.append(_result(tenant, table, "freshness", severity, age_h is None or age_h > max_age_h,
                                   None if age_h is None else round(age_h, 3), max_age_h,
                                   latest=latest[tenant].isoformat() if latest.get(tenant) else None))
    return results


def _volume(conn, tenants: list[str], as_of: datetime, config: DqConfig) -> list[CheckResult]:
    hour = as_of.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    rows = _rows(conn, """
        WITH windows AS (
            SELECT k, %(hour)s::timestamptz - make_interval(days => 7 * k) AS start
            FROM generate_series(0, %(weeks)s) AS k
        ), span AS (
            SELECT tenant_id, min(occurred_at) AS first_seen, max(occurred_at) AS last_seen
            FROM user_interactions WHERE tenant_id = ANY(%(tenants)s) AND occurred_at < %(end)s GROUP BY tenant_id
        )
        SELECT s.tenant_id, w.k, w.start >= s.first_seen, s.last_seen >= w.start,
               (SELECT count(*) FROM user_interactions i
                 WHERE i.tenant_id = s.tenant_id AND i.occurred_at >= w.start
                   AND i.occurred_at < w.start + interval '1 hour')
        FROM span s CROSS JOIN windows w
        """, {"hour": hour, "weeks": config.volume_weeks, "tenants": tenants, "end": hour + timedelta(hours=1)})
    by_tenant: dict[str, dict] = {}
    for tenant, k, covered, reached, count in rows:
        by_tenant.setdefault(tenant, {})[k] = (covered, reached, count)
    results = []
    for tenant in tenants:
        windows = by_tenant.get(tenant, {})
        current = windows.get(0, (False, False, 0))
        history = [count for k, (covered, _, count) in windows.items() if k > 0 and covered]
        verdict, z, change = "no verdict", None, None
        failed = False
        # A tenant whose data stops before the hour is stale, not quiet: freshness reports it.
        if current[1] and len(history) >= config.volume_min_weeks:
            mean = sum(history) / len(history)
            std = math.sqrt(sum((c - mean) ** 2 for c in history) / len(history))
            z = (current[2] - mean) / max(std, 1.0)
            change = abs(current[2] - mean) / max(mean, 1.0)
            failed = abs(z) > config.volume_z and change > config.volume_min_change and mean >= config.volume_min_events
            verdict = "judged"
        results.append(_result(tenant, "user_interactions", "volume_zscore", "warning", failed,
                               None if z is None else round(z, 3), config.volume_z, hour=hour.isoformat(),
                               events=current[2], history=history, relative_change=change, verdict=verdict))
    return results


def anomalies(conn, tenants: list[str], as_of: datetime, config: DqConfig = DqConfig()) -> list[CheckResult]:
    params = {"tenants": tenants, "types": list(INTERACTION_TYPES), "as_of": as_of,
              "since": as_of - timedelta(hours=24), "max_per_hour": config.bot_max_per_hour,
              "recent": as_of - timedelta(days=config.duplicates_window_days)}
    with conn.cursor() as cur:
        cur.execute("SET work_mem = '128MB'")  # aggregates over millions of rows: hash in memory, not on disk
    duplicate_rows = dict(_rows(conn, """
        SELECT tenant_id, sum(copies - 1) FROM (
            SELECT tenant_id, count(*) AS copies FROM user_interactions
            WHERE tenant_id = ANY(%(tenants)s) AND occurred_at >= %(recent)s AND occurred_at < %(as_of)s
            GROUP BY tenant_id, user_id, item_id, interaction_type, occurred_at HAVING count(*) > 1
        ) AS repeated GROUP BY tenant_id
        """, params))
    counts = {row[0]: row[1:] for row in _rows(conn, """
        SELECT i.tenant_id,
               count(*) FILTER (WHERE i.user_id IS NOT NULL AND u.user_id IS NULL),
               count(*) FILTER (WHERE i.item_id IS NOT NULL AND it.item_id IS NULL),
               count(*) FILTER (WHERE i.interaction_type IS NOT NULL AND i.interaction_type <> ALL(%(types)s))
        FROM user_interactions i
        LEFT JOIN users u ON u.tenant_id = i.tenant_id AND u.user_id = i.user_id
        LEFT JOIN items it ON it.tenant_id = i.tenant_id AND it.item_id = i.item_id
        WHERE i.tenant_id = ANY(%(tenants)s)
        GROUP BY i.tenant_id
        """, params)}
    bots = dict(_rows(conn, """
        SELECT tenant_id, count(DISTINCT user_id) FROM (
            SELECT tenant_id, user_id FROM user_interactions
            WHERE tenant_id = ANY(%(tenants)s) AND occurred_at >= %(since)s AND occurred_at < %(as_of)s
            GROUP BY tenant_id, user_id, date_trunc('hour', occurred_at)
            HAVING count(*) > %(max_per_hour)s
        ) AS busy GROUP BY tenant_id
        """, params))
    results = []
    for tenant in tenants:
        orphan_users, orphan_items, invalid = counts.get(tenant, (0, 0, 0))
        duplicates = duplicate_rows.get(tenant, 0)
        results += [
            _result(tenant, "user_interactions", "duplicates", "warning", duplicates > config.duplicates_max,
                    duplicates, config.duplicates_max, window_days=config.duplicates_window_days),
            _result(tenant, "user_interactions", "orphaned_users", "warning", orphan_users > config.orphans_max,
                    orphan_users, config.orphans_max),
            _result(tenant, "user_interactions", "orphaned_items", "warning", orphan_items > config.orphans_max,
                    orphan_items, config.orphans_max),
            _result(tenant, "user_interactions", "invalid_interaction_types", "critical",
                    invalid > config.invalid_types_max, invalid, config.invalid_types_max),
            _result(tenant, "user_interactions", "bot_like_users", "warning", bots.get(tenant, 0) > 0,
                    bots.get(tenant, 0), config.bot_max_per_hour, window_hours=24),
        ]
    return results + _volume(conn, tenants, as_of, config)
