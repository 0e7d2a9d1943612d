"""Load demo tenants into the platform database and export their training data to object storage.

Deterministic: the same specs and end time give the same rows and files, and loading again
replaces a tenant's data in one transaction instead of duplicating it.
"""

from __future__ import annotations

import io

import numpy as np

from stackctl.demo import defects
from stackctl.demo.data import TenantData, TenantSpec, generate, to_parquet_parts
from workers import storage
from workers.platform_db.db import transaction

DEMO_TENANTS = (
    TenantSpec("acme", n_users=4000, n_items=2000, n_interactions=60_000, seed=11),
    TenantSpec("globex", n_users=3000, n_items=1500, n_interactions=40_000, seed=12),
    TenantSpec("initech", n_users=2000, n_items=800, n_interactions=25_000, seed=13),
    TenantSpec("umbrella", n_users=2000, n_items=800, n_interactions=25_000, seed=14),
)
# The demo's defective tenant: data_quality_check pages for it and stays quiet for the rest.
# Its training files are clean, so it trains like the others.
DEFECTIVE_TENANT = "umbrella"
DEMO_DEFECTS = ("completeness_user_id", "orphaned_items", "invalid_interaction_types")


def _copy(cur, table: str, columns: list[str], rows) -> None:
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join(str(v) for v in row) + "\n")
    buffer.seek(0)
    cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buffer)


def load_tenant(conn, data: TenantData) -> None:
    tenant = data.spec.tenant_id
    first_us, last_us = int(data.occurred_at_us.min()), int(data.occurred_at_us.max())
    created = np.datetime64(first_us, "us").astype(str) + "+00"

    def updated(i: int) -> str:  # catalogue edits spread over the last three days
        return np.datetime64(last_us - (i % 72) * 3_600_000_000, "us").astype(str) + "+00"

    with transaction(conn) as cur:
        cur.execute(
            "INSERT INTO tenants (tenant_id, name) VALUES (%s, %s) ON CONFLICT (tenant_id) DO UPDATE SET active = true",
            (tenant, tenant.title()),
        )
        for table in ("user_interactions", "items", "users"):
            cur.execute(f"DELETE FROM {table} WHERE tenant_id = %s", (tenant,))  # noqa: S608 (fixed names)
        _copy(cur, "users", ["tenant_id", "user_id", "created_at"],
              ((tenant, u, created) for u in range(1, data.spec.n_users + 1)))
        _copy(cur, "items", ["tenant_id", "item_id", "title", "category", "created_at", "updated_at"],
              ((tenant, i + 1, f"item {i + 1}", f"topic-{t}", created, updated(i))
               for i, t in enumerate(data.item_topic)))
        timestamps = data.occurred_at_us.astype("datetime64[us]").astype(str)
        columns = ["tenant_id", "user_id", "item_id", "interaction_type", "weight", "occurred_at"]
        _copy(cur, "user_interactions", columns,
              ((tenant, u, i, k, w, f"{ts}+00") for u, i, k, w, ts in
               zip(data.user_id, data.item_id, data.interaction_type, data.weight, timestamps, strict=True)))


def export_tenant(base, data: TenantData) -> list[str]:
    """Replace the tenant's training files with this data's Parquet parts."""
    folder = storage.training_dir(base, data.spec.tenant_id)
    if folder.exists():
        for old in folder.iterdir():
            old.unlink()
    names = []
    for n, part in enumerate(to_parquet_parts(data.to_arrow())):
        name = f"part-{n:05d}.parquet"
        storage.write_bytes(folder / name, part)
        names.append(name)
    return names


def seed(conn, base, end_us: int, specs: tuple[TenantSpec, ...] = DEMO_TENANTS) -> list[str]:
    for spec in specs:
        data = generate(spec, end_us)
        load_tenant(conn, data)
        export_tenant(base, data)
        if spec.tenant_id == DEFECTIVE_TENANT:
            for kind in DEMO_DEFECTS:
                defects.KINDS[kind](conn, spec.tenant_id)
    return [spec.tenant_id for spec in specs]
