"""Per-tenant DQ configuration: dq_tenant_config rows (migration V008), over the defaults of DqConfig.

A tenant without a row gets the defaults. The table's named CHECK constraints refuse bad values
when they are written; `validate` gives the same verdicts to values that come from elsewhere (a
DAG run's params), so a bad one is named before any check runs.
"""

from __future__ import annotations

import dataclasses
import re

from workers.dq.checks import DqConfig
from workers.exceptions import DataError

SEVERITIES = ("info", "warning", "critical")
TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_COLUMNS = ("valid_types", "interactions_max_age_h", "items_max_age_h", "training_max_age_h", "duplicates_max",
            "orphans_max", "invalid_types_max", "bot_max_per_hour", "volume_z", "completeness", "severities")


class ConfigError(DataError):
    """A DQ configuration value is refused; the message names the tenant, the setting and the rule."""


def validate(tenant: str, values: dict) -> None:
    for key, value in values.items():
        if key.endswith("_max_age_h") or key == "volume_z":
            ok = isinstance(value, int | float) and value > 0
            rule = "a number above 0"
        elif key in ("duplicates_max", "orphans_max", "invalid_types_max"):
            ok, rule = isinstance(value, int) and value >= 0, "a whole number, 0 or more"
        elif key == "bot_max_per_hour":
            ok, rule = isinstance(value, int) and value > 0, "a whole number above 0"
        elif key == "valid_types":
            ok = 0 < len(value) <= 50 and all(isinstance(t, str) and TYPE_NAME.match(t) for t in value)
            rule = "1-50 names, each a lower-case letter then up to 31 of a-z, 0-9 and '_'"
        elif key == "severities":
            ok, rule = all(v in SEVERITIES for v in value.values()), f"each one of {', '.join(SEVERITIES)}"
        elif key == "completeness":
            ok = all(isinstance(v, int | float) and 0 <= v <= 100 for v in value.values())
            rule = "each a percentage from 0 to 100"
        else:
            ok, rule = False, f"one of the settings {', '.join(_COLUMNS)}"
        if not ok:
            raise ConfigError(f"DQ configuration of tenant {tenant}: {key} = {value!r} is refused; it must be {rule}")


def _apply(tenant: str, base: DqConfig, row: dict) -> DqConfig:
    completeness = dict(base.completeness)
    for name, minimum in (row.pop("completeness", None) or {}).items():
        table, _, column = name.partition(".")
        if (table, column) not in completeness:
            raise ConfigError(f"DQ configuration of tenant {tenant}: completeness names {name!r}, which no check "
                              f"measures; use one of {', '.join(f'{t}.{c}' for t, c in completeness)}")
        completeness[(table, column)] = (float(minimum), completeness[(table, column)][1])
    if "valid_types" in row:
        row["valid_types"] = tuple(row["valid_types"])
    return dataclasses.replace(base, completeness=completeness, **row)


def load(conn, tenants: list[str], overrides: dict | None = None) -> dict[str, DqConfig]:
    """Each tenant's configuration: the defaults, then its row, then `overrides` (a run's params)."""
    overrides = {key: value for key, value in (overrides or {}).items() if value is not None}
    for tenant in tenants:
        validate(tenant, overrides)
    with conn.cursor() as cur:
        cur.execute(f"SELECT tenant_id, {', '.join(_COLUMNS)} FROM dq_tenant_config"  # noqa: S608 (fixed names)
                    " WHERE tenant_id = ANY(%s)", (tenants,))
        rows = {row[0]: dict(zip(_COLUMNS, row[1:], strict=True)) for row in cur.fetchall()}
    configs = {}
    for tenant in tenants:
        row = rows.get(tenant, {})
        for key in ("duplicates_max", "orphans_max", "invalid_types_max", "bot_max_per_hour"):
            if key in row:
                row[key] = int(row[key])
        configs[tenant] = _apply(tenant, DqConfig(), {**row, **overrides})
    return configs


def set_valid_types(cur, tenant: str, types: list[str]) -> None:
    """Write the tenant's valid interaction types (onboarding), keeping its other settings."""
    validate(tenant, {"valid_types": types})
    cur.execute("INSERT INTO dq_tenant_config (tenant_id, valid_types) VALUES (%s, %s) ON CONFLICT (tenant_id)"
                " DO UPDATE SET valid_types = EXCLUDED.valid_types, updated_at = now()", (tenant, list(types)))
