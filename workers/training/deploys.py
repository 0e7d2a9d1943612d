"""Putting a tenant's published version into production: one deploy at a time per tenant, never an
older run's version over a newer one's, and a crash at any point recoverable by the task's retry.

Production is the tenant's CURRENT.json pointer (what the inference service loads when it starts)
and the version the service has loaded. Each deploy is journaled on its run's model_training_runs
row (deploy_* columns, migration V006); the row in deploy_state 'live' is the version production
serves, at most one per tenant.

Which run is newer: the run's data_interval_end, or its run_after when it has no data interval
(a manual run triggered without a logical date); ties by dag_run_id. Both are fixed when the run
is created and a cleared task keeps them, so the order is the same on every try; it is stored as
deploy_order. A scheduled or backfill run's run_after is its data interval's end, so the two agree.

One deploy, in this order, under the tenant's lock:

  1. decide     against the live row: older than it, the run is 'superseded' and production untouched
  2. record     deploy_previous_version (the live version) and deploy_state 'flipping', COMMITTED
                before the pointer changes
  3. flip       the pointer, replaced atomically
  4. serve      the service loads the version and its health reports it
  5. go live    one transaction: this row 'live' and status 'success', the old live row 'replaced'

If 3, 4 or 5 fails, the pointer goes back to the recorded previous version, the service too (best
effort), and the row to 'rolled_back'; the stage guard records the failure. Step 5 is inside that
guard on purpose: if PostgreSQL fails there, the pointer goes back, so it names the row that says
'live' and no row claims a version production does not serve.

A crash (no except block runs) after 2 and before 5 leaves the row 'flipping': the pointer names
this version or the recorded previous one, and no row says 'success' for it. The retry sees
'flipping' and takes the RECORDED previous version, never the pointer's (which may already be the
new, unverified one), then redoes 3-5: steps 3-5 are idempotent. So after any single crash the
row and the pointer agree once the retry ran, and until then the row says the pointer is in doubt.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from workers.exceptions import DataError, TransientError
from workers.platform_db.db import transaction
from workers.training import artifacts

log = logging.getLogger(__name__)

# The tenant's lock: a session-level advisory lock, pg_try_advisory_lock(_LOCK_SPACE, hashtext(tenant)).
# - Advisory, not SELECT ... FOR UPDATE on the tenant's row: that row lock would also block every
#   foreign-key check on the tenant (its training rows being inserted) for the whole deploy.
# - Session level, not pg_advisory_xact_lock: the deploy commits more than once (the previous
#   version must be durable before the pointer flips) and the lock must span all of it. It lives
#   as long as the connection: a worker that dies loses its socket, PostgreSQL ends the session,
#   and the lock is free. (It needs a direct connection, not a transaction-pooling PgBouncer.)
# - Try, not wait: a waiting deploy would hold a worker slot through the other one's health check.
#   The loser fails at once with DeployInProgress, a TransientError, and its Airflow retry then
#   decides against whatever the winner left in production.
# A hashtext collision between two tenants only makes them take turns.
_LOCK_SPACE = 0x6465706C  # "depl": apart from any other advisory lock on this database


class DeployInProgress(TransientError):
    """Another deploy of the tenant holds its lock; retry later."""


@dataclass(frozen=True)
class Deploy:
    tenant_id: str
    dag_run_id: str
    version: str
    order: datetime  # see deploy_order

    def is_older_than(self, dag_run_id: str, order: datetime) -> bool:
        return (self.order, self.dag_run_id) < (order, dag_run_id)


@dataclass(frozen=True)
class _Live:
    dag_run_id: str
    version: str
    order: datetime


def deploy_order(data_interval_end: datetime | None, run_after: datetime | None) -> datetime:
    """When the run's data ends: its data interval's end, or run_after for a run without one."""
    order = data_interval_end or run_after
    if order is None:
        raise DataError("a deploy needs the DAG run's data_interval_end or run_after to order it; both are empty")
    return order


def deploy(conn, base, candidate: Deploy, serve) -> dict:
    """Deploy a published version (see the module's docstring). `serve(version)` has the service load it
    and returns once its health reports it; it raises otherwise.

    Returns {"outcome": "deployed" | "superseded", "version", ...}; raises DeployInProgress while another
    deploy of the tenant runs, and whatever `serve` or storage raised after rolling back.
    """
    with _tenant_lock(conn, candidate.tenant_id):
        with transaction(conn) as cur:
            live = _live(cur, candidate.tenant_id)
            state, recorded_previous = _journal(cur, candidate)
        if live and live.dag_run_id != candidate.dag_run_id and candidate.is_older_than(live.dag_run_id, live.order):
            return _supersede(conn, candidate, live)
        if state == "flipping":
            previous = recorded_previous  # an attempt crashed after recording it; the pointer may be ours already
        elif state == "live":
            previous = candidate.version  # a cleared deploy of what production serves: nothing to go back to
        else:
            previous = live.version if live else None
            _record_flipping(conn, candidate, previous)
        try:
            artifacts.write_pointer(base, candidate.tenant_id, candidate.version)
            serve(candidate.version)
            _go_live(conn, candidate)
        except Exception:
            _roll_back(conn, base, candidate, previous, serve)
            raise
    log.info("tenant %s: %s is live (was %s)", candidate.tenant_id, candidate.version, previous)
    return {"outcome": "deployed", "version": candidate.version, "previous": previous}


@contextmanager
def _tenant_lock(conn, tenant_id: str):
    with transaction(conn) as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s::integer, hashtext(%s))", (_LOCK_SPACE, tenant_id))
        (acquired,) = cur.fetchone()
    if not acquired:
        raise DeployInProgress(f"tenant {tenant_id}: another deploy of this tenant is in progress; "
                               "this one will decide against its result on retry")
    try:
        yield
    finally:
        try:
            with transaction(conn) as cur:
                cur.execute("SELECT pg_advisory_unlock(%s::integer, hashtext(%s))", (_LOCK_SPACE, tenant_id))
        except Exception as exc:  # noqa: BLE001 (the session is gone, and its lock with it)
            log.warning("tenant %s: deploy lock not released explicitly (%s); the session's end releases it",
                        tenant_id, exc)


def _live(cur, tenant_id: str) -> _Live | None:
    cur.execute("SELECT dag_run_id, model_version, deploy_order FROM model_training_runs"
                " WHERE tenant_id = %s AND deploy_state = 'live'", (tenant_id,))
    row = cur.fetchone()
    return _Live(*row) if row else None


def _journal(cur, candidate: Deploy) -> tuple[str | None, str | None]:
    cur.execute("SELECT deploy_state, deploy_previous_version FROM model_training_runs"
                " WHERE dag_run_id = %s AND tenant_id = %s", (candidate.dag_run_id, candidate.tenant_id))
    row = cur.fetchone()
    if row is None:
        raise DataError(f"tenant {candidate.tenant_id}: no training run was recorded for {candidate.dag_run_id}")
    return row


def _supersede(conn, candidate: Deploy, live: _Live) -> dict:
    with transaction(conn) as cur:
        cur.execute(
            "UPDATE model_training_runs SET status = 'superseded', deploy_state = 'superseded',"
            " model_version = %s, deploy_order = %s, finished_at = now(), failure_reason = NULL"
            " WHERE dag_run_id = %s AND tenant_id = %s",
            (candidate.version, candidate.order, candidate.dag_run_id, candidate.tenant_id),
        )
    log.warning("tenant %s: %s of run %s is superseded: production keeps %s of the newer run %s; left alone",
                candidate.tenant_id, candidate.version, candidate.dag_run_id, live.version, live.dag_run_id)
    return {"outcome": "superseded", "version": candidate.version, "live_version": live.version,
            "live_dag_run_id": live.dag_run_id}


def _record_flipping(conn, candidate: Deploy, previous: str | None) -> None:
    with transaction(conn) as cur:
        cur.execute(
            "UPDATE model_training_runs SET deploy_state = 'flipping', deploy_previous_version = %s,"
            " deploy_order = %s, model_version = %s WHERE dag_run_id = %s AND tenant_id = %s",
            (previous, candidate.order, candidate.version, candidate.dag_run_id, candidate.tenant_id),
        )


def _go_live(conn, candidate: Deploy) -> None:
    """The run's success and production's new version, in one transaction."""
    with transaction(conn) as cur:
        # First the old live row (and any crashed attempt's 'flipping' one): one live row per tenant.
        cur.execute(
            "UPDATE model_training_runs SET deploy_state = 'replaced'"
            " WHERE tenant_id = %s AND dag_run_id <> %s AND deploy_state IN ('live', 'flipping')",
            (candidate.tenant_id, candidate.dag_run_id),
        )
        cur.execute(
            "UPDATE model_training_runs SET status = 'success', stage = 'deploy_to_production',"
            " deploy_state = 'live', model_version = %s, finished_at = now(), failure_reason = NULL"
            " WHERE dag_run_id = %s AND tenant_id = %s",
            (candidate.version, candidate.dag_run_id, candidate.tenant_id),
        )


def _roll_back(conn, base, candidate: Deploy, previous: str | None, serve) -> None:
    artifacts.write_pointer(base, candidate.tenant_id, previous)
    if previous is not None and previous != candidate.version:
        try:
            serve(previous)
        except Exception as exc:  # noqa: BLE001 (best effort: at its start the service loads the pointer's version)
            log.error("tenant %s: the service did not reload %s after the rollback: %s",
                      candidate.tenant_id, previous, exc)
    with transaction(conn) as cur:
        cur.execute(
            "UPDATE model_training_runs SET deploy_state = 'rolled_back'"
            " WHERE dag_run_id = %s AND tenant_id = %s AND deploy_state = 'flipping'",
            (candidate.dag_run_id, candidate.tenant_id),
        )
