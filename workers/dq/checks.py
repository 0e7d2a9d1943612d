"""Data-quality checks as SQL: each query aggregates per tenant inside PostgreSQL, and only
those aggregates come back.

Interaction checks read the summaries (workers/dq/summaries.py, brought up to date by
summaries.refresh before the checks run) rather than all history: completeness, invalid types,
volume, orphans and duplicates. Freshness and bot-like users read the raw rows of a fixed window
through the (tenant_id, occurred_at) index, whose cost does not grow with history.

Every check yields one CheckResult per tenant; `status` is "fail" when the observed value
crosses the threshold. `config` is one DqConfig for every tenant, or one per tenant
(workers/dq/config.py loads them).
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
    duplicates_max: int = 0          # over all history
    orphans_max: int = 0
    invalid_types_max: int = 0
    # Volume: the last complete hour against the same hour of the week in earlier weeks.
    volume_weeks: int = 6
    volume_min_weeks: int = 3        # fewer weeks of history: no verdict
    volume_z: float = 3.0
    volume_min_change: float = 0.5   # and at least a 50% change...
    volume_min_events: float = 20.0  # ...from an hour that normally has at least this many events
    bot_max_per_hour: int = 200      # one user's interactions in one hour
    valid_types: tuple = INTERACTION_TYPES
    # check -> severity, or "table.check" -> severity for one table's (freshness has three)
    severities: dict = field(default_factory=dict)

    def severity(self, table: str, check: str, default: str) -> str:
        return self.severities.get(f"{table}.{check}", self.severities.get(check, default))


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


def _result(config: DqConfig, tenant, table, check, severity, failed, observed, threshold,
            **details) -> CheckResult:
    return CheckResult(tenant, table, check, config.severity(table, check, severity), "fail" if failed else "pass",
                       None if observed is None else float(observed), threshold, details)


def _per_tenant(config, tenants: list[str]) -> dict[str, DqConfig]:
    return config if isinstance(config, dict) else dict.fromkeys(tenants, config)


# What each completeness field of user_interactions counts in dq_totals.
_SUMMARISED = {
    "user_id": "sum(events - null_users)",
    "item_id": "sum(events - null_items)",
    "interaction_type": "coalesce(sum(events) FILTER (WHERE interaction_type IS NOT NULL), 0)",
}


def completeness(conn, tenants: list[str], config: DqConfig | dict = DqConfig()) -> list[CheckResult]:
    configs = _per_tenant(config, tenants)
    columns_of: dict[str, list[str]] = {}
    for tenant_config in configs.values():
        for table, column in tenant_config.completeness:
            if column not in columns_of.setdefault(table, []):
                columns_of[table].append(column)
    counted: dict[str, dict] = {}  # table -> tenant -> (rows, {column: filled})
    for table, columns in columns_of.items():
        if table == "user_interactions":
            unknown = [c for c in columns if c not in _SUMMARISED]
            if unknown:
                raise ValueError(f"completeness of user_interactions.{unknown[0]} is not summarised; "
                                 f"use one of {', '.join(_SUMMARISED)}")
            sql = (f"SELECT tenant_id, sum(events), {', '.join(_SUMMARISED[c] for c in columns)} FROM dq_totals"
                   " WHERE tenant_id = ANY(%(tenants)s) GROUP BY tenant_id")
        else:
            sql = (f"SELECT tenant_id, count(*), {', '.join(f'count({c})' for c in columns)} FROM {table}"
                   " WHERE tenant_id = ANY(%(tenants)s) GROUP BY tenant_id")  # names from config
        counted[table] = {row[0]: (int(row[1]), dict(zip(columns, map(int, row[2:]), strict=True)))
                          for row in _rows(conn, sql, {"tenants": tenants})}  # noqa: S608
    results = []
    for tenant in tenants:
        for (table, column), (minimum, severity) in configs[tenant].completeness.items():
            total, present = counted[table].get(tenant, (0, {}))
            filled = present.get(column, 0)
            percent = 100.0 * filled / total if total else 100.0
            results.append(_result(configs[tenant], tenant, table, f"completeness_{column}", severity,
                                   percent < minimum, round(percent, 4), minimum, rows=total,
                                   missing=total - filled))
    return results


def freshness(conn, tenants: list[str], as_of: datetime, config: DqConfig | dict = DqConfig()) -> list[CheckResult]:
    configs = _per_tenant(config, tenants)
    rules = [
        ("user_interactions", "occurred_at", "interactions_max_age_h", "critical"),
        ("items", "updated_at", "items_max_age_h", "warning"),
        ("model_training_runs", "started_at", "training_max_age_h", "warning"),
    ]
    results = []
    for table, column, limit, severity in rules:
        # Per tenant: one lookup in the (tenant_id, column) index of interactions and training runs.
        latest = dict(_rows(conn, f"SELECT t, (SELECT max({column}) FROM {table}"  # noqa: S608 (fixed names)
                                  " WHERE tenant_id = t AND {column} <= %(as_of)s)"
                                  " FROM unnest(%(tenants)s::text[]) AS t".format(column=column),
                            {"tenants": tenants, "as_of": as_of}))
        for tenant in tenants:
            max_age_h = getattr(configs[tenant], limit)
            age_h = (as_of - latest[tenant]).total_seconds() / 3600 if latest.get(tenant) else None
            results.append(_result(configs[tenant], tenant, table, "freshness", severity,
                                   age_h is None or age_h > max_age_h, None if age_h is None else round(age_h, 3),
                                   max_age_h, latest=latest[tenant].isoformat() if latest.get(tenant) else None))
    return results


def _volume(conn, tenants: list[str], as_of: datetime, configs: dict[str, DqConfig]) -> list[CheckResult]:
    """The last complete hour against the same hour of earlier weeks, from the hourly summaries."""
    hour = as_of.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    weeks = max(c.volume_weeks for c in configs.values())
    starts = [hour - timedelta(weeks=k) for k in range(weeks + 1)]
    # The first and the last event before the hour's end: two index lookups per tenant.
    span = {row[0]: row[1:] for row in _rows(conn, """
        SELECT t, (SELECT min(first_at) FROM dq_hourly WHERE tenant_id = t AND hour = (
                       SELECT min(hour) FROM dq_hourly WHERE tenant_id = t)),
                  (SELECT max(last_at) FROM dq_hourly WHERE tenant_id = t AND hour = (
                       SELECT max(hour) FROM dq_hourly WHERE tenant_id = t AND hour < %(end)s))
        FROM unnest(%(tenants)s::text[]) AS t
        """, {"tenants": tenants, "end": hour + timedelta(hours=1)}) if row[2] is not None}
    counts = {(tenant, start): int(n) for tenant, start, n in _rows(conn, """
        SELECT tenant_id, hour, sum(events) FROM dq_hourly
        WHERE tenant_id = ANY(%(tenants)s) AND hour = ANY(%(starts)s) GROUP BY tenant_id, hour
        """, {"tenants": tenants, "starts": starts})}
    results = []
    for tenant in tenants:
        config = configs[tenant]
        first_seen, last_seen = span.get(tenant, (None, None))
        current = counts.get((tenant, hour), 0)
        history = [counts.get((tenant, start), 0) for start in starts[1:config.volume_weeks + 1]
                   if first_seen is not None and start >= first_seen]
        verdict, z, change = "no verdict", None, None
        failed = False
        # A tenant whose data stops before the hour is stale, not quiet: freshness reports it.
        if last_seen is not None and last_seen >= hour and len(history) >= config.volume_min_weeks:
            mean = sum(history) / len(history)
            std = math.sqrt(sum((c - mean) ** 2 for c in history) / len(history))
            z = (current - mean) / max(std, 1.0)
            change = abs(current - mean) / max(mean, 1.0)
            failed = abs(z) > config.volume_z and change > config.volume_min_change and mean >= config.volume_min_events
            verdict = "judged"
        results.append(_result(config, tenant, "user_interactions", "volume_zscore", "warning", failed,
                               None if z is None else round(z, 3), config.volume_z, hour=hour.isoformat(),
                               events=current if first_seen is not None else 0, history=history,
                               relative_change=change, verdict=verdict))
    return results


def anomalies(conn, tenants: list[str], as_of: datetime, config: DqConfig | dict = DqConfig()) -> list[CheckResult]:
    if not tenants:  # a deployment before its first tenant: nothing to judge (the volume check's weeks are per tenant)
        return []
    configs = _per_tenant(config, tenants)
    params = {"tenants": tenants, "as_of": as_of, "since": as_of - timedelta(hours=24),
              "max_per_hour": [configs[t].bot_max_per_hour for t in tenants]}
    with conn.cursor() as cur:
        cur.execute("SET work_mem = '128MB'")  # the last 24 hours' user-hours: hash them in memory, not on disk
    duplicates = {tenant: int(n) for tenant, n in _rows(
        conn, "SELECT tenant_id, duplicates FROM dq_watermarks WHERE tenant_id = ANY(%(tenants)s)", params)}
    orphans = {(tenant, kind): int(n) for tenant, kind, n in _rows(conn, """
        SELECT tenant_id, kind, sum(interactions) FROM dq_orphans WHERE tenant_id = ANY(%(tenants)s)
        GROUP BY tenant_id, kind
        """, params)}
    per_type: dict[str, dict] = {}
    for tenant, kind, n in _rows(conn, """
            SELECT tenant_id, interaction_type, events FROM dq_totals
            WHERE tenant_id = ANY(%(tenants)s) AND interaction_type IS NOT NULL
            """, params):
        per_type.setdefault(tenant, {})[kind] = int(n)
    # The last 24 hours' rows through the (tenant_id, occurred_at) index: a fixed window, whatever the history.
    bots = dict(_rows(conn, """
        SELECT tenant_id, count(DISTINCT user_id) FROM (
            SELECT i.tenant_id, i.user_id FROM user_interactions i
            JOIN unnest(%(tenants)s::text[], %(max_per_hour)s::int[]) AS c(tenant_id, max_per_hour) USING (tenant_id)
            WHERE i.occurred_at >= %(since)s AND i.occurred_at < %(as_of)s
            GROUP BY i.tenant_id, i.user_id, date_trunc('hour', i.occurred_at, 'UTC'), c.max_per_hour
            HAVING count(*) > c.max_per_hour
        ) AS busy GROUP BY tenant_id
        """, params))
    results = []
    for tenant in tenants:
        c = configs[tenant]
        orphan_users, orphan_items = orphans.get((tenant, "user"), 0), orphans.get((tenant, "item"), 0)
        invalid = sum(n for kind, n in per_type.get(tenant, {}).items() if kind not in c.valid_types)
        found, busy = duplicates.get(tenant, 0), bots.get(tenant, 0)
        results += [
            _result(c, tenant, "user_interactions", "duplicates", "warning", found > c.duplicates_max,
                    found, c.duplicates_max),
            _result(c, tenant, "user_interactions", "orphaned_users", "warning", orphan_users > c.orphans_max,
                    orphan_users, c.orphans_max),
            _result(c, tenant, "user_interactions", "orphaned_items", "warning", orphan_items > c.orphans_max,
                    orphan_items, c.orphans_max),
            _result(c, tenant, "user_interactions", "invalid_interaction_types", "critical",
                    invalid > c.invalid_types_max, invalid, c.invalid_types_max, valid_types=list(c.valid_types)),
            _result(c, tenant, "user_interactions", "bot_like_users", "warning", busy > 0,
                    busy, c.bot_max_per_hour, window_hours=24),
        ]
    return results + _volume(conn, tenants, as_of, configs)
