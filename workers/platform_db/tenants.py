"""The tenants every pipeline iterates over: shared by training and data quality."""

from __future__ import annotations

from workers import hooks
from workers.exceptions import DataError


def list_tenants(tenant_id: str | None) -> list[str]:
    """The requested tenant (which must exist and be active), or every active tenant."""
    conn = hooks.platform_db()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT tenant_id FROM tenants WHERE active ORDER BY tenant_id")
            active = [row[0] for row in cur.fetchall()]
    finally:
        conn.close()
    if tenant_id is None:
        return active
    if tenant_id not in active:
        raise DataError(f"tenant {tenant_id} does not exist or is not active")
    return [tenant_id]
