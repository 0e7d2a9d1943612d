"""data_quality_check against the real PostgreSQL and Alertmanager of a running stack."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import yaml

from stackctl.demo import defects
from stackctl.demo.data import TenantSpec, generate
from stackctl.demo.seed import load_tenant
from stackctl.native import health
from stackctl.native.supervisor import Supervisor
from workers.dq import checks, summaries
from workers.platform_db.db import transaction

from .conftest import platform_db, wait_for

pytestmark = pytest.mark.e2e
DAG = "data_quality_check"
END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
# The hour before AS_OF is a busy hour of the generated daily rhythm, so the volume check
# has enough history to judge it.
AS_OF = END - timedelta(hours=10)




# A manual run checks as of the last 6-hourly boundary (its data interval's end), which can lie up to
# 6 hours back: a training seeded 7 hours ago is before it and still fresh (max age 24 h).
TRAINED_BEFORE_ANY_RUN = timedelta(hours=7)
# How long past Alertmanager's group_interval a duplicate page may take to reach the inbox.
NOTIFY_SLACK_S = 15


def seed_tenant(stack, tenant: str, seed: int, trained_at: datetime) -> None:
    conn = platform_db(stack)
    try:
        load_tenant(conn, generate(TenantSpec(tenant, 1500, 600, 30_000, seed=seed), int(END.timestamp() * 1e6)))
        with transaction(conn) as cur:
            cur.execute(
                "INSERT INTO model_training_runs (dag_run_id, tenant_id, status, started_at, finished_at)"
                " VALUES ('seed', %s, 'success', %s, %s) ON CONFLICT (dag_run_id, tenant_id) DO UPDATE"
                " SET started_at = EXCLUDED.started_at", (tenant, trained_at, trained_at),
            )
    finally:
        conn.close()


def summarised(conn, tenant: str) -> bool:
    """Refresh the tenant's summaries; whether they now hold its newest rows. A refresh stops at the
    oldest transaction still running anywhere in the cluster, so the stack's own processes (the
    scheduler writing to Airflow's database) can hold it below rows written a moment ago."""
    summaries.refresh(conn, [tenant])
    with transaction(conn) as cur:
        cur.execute("SELECT (SELECT fence FROM dq_watermarks WHERE tenant_id = %s)"
                    " > (SELECT max(ingest_txid) FROM user_interactions WHERE tenant_id = %s)", (tenant, tenant))
        return bool(cur.fetchone()[0])


def failing(stack, tenant: str) -> set[str]:
    conn = platform_db(stack)
    try:
        wait_for(lambda: summarised(conn, tenant), 60, f"{tenant}'s summaries to reach its newest rows")
        found = (checks.completeness(conn, [tenant]) + checks.freshness(conn, [tenant], AS_OF)
                 + checks.anomalies(conn, [tenant], AS_OF))
    finally:
        conn.close()
    return {r.check for r in found if r.status == "fail"}


@pytest.fixture(scope="module")
def dq_stack(running_stack):
    running_stack.api.wait_for_dag(DAG)
    running_stack.api.unpause(DAG)
    yield running_stack
    # The stack is shared: tenants made here must not join other tests' all-tenant runs.
    conn = platform_db(running_stack.stack)
    try:
        with transaction(conn) as cur:
            cur.execute("UPDATE tenants SET active = false WHERE tenant_id LIKE 'dq-%%'")
    finally:
        conn.close()


def test_clean_data_trips_no_check(dq_stack):
    seed_tenant(dq_stack.stack, "dq-clean", 40, AS_OF - timedelta(hours=1))
    assert failing(dq_stack.stack, "dq-clean") == set()


@pytest.mark.parametrize("kind", sorted(defects.KINDS))
def test_each_defect_trips_exactly_its_check(dq_stack, kind):
    tenant = f"dq-{kind.replace('_', '-')}"
    seed_tenant(dq_stack.stack, tenant, 41, AS_OF - timedelta(hours=1))
    conn = platform_db(dq_stack.stack)
    try:
        inject = defects.KINDS[kind]
        inject(conn, tenant, AS_OF) if kind in ("bot_like_users", "volume_zscore") else inject(conn, tenant)
    finally:
        conn.close()
    assert failing(dq_stack.stack, tenant) == {kind}


def inbox_alerts(stack, tenant: str) -> list[dict]:
    """The tenant's DQ pages, each with its notification's received_at (Prometheus's rules may page
    about the same tenant for other reasons)."""
    notes = httpx.get(f"{stack.url('oncall_inbox')}/notifications", auth=health.listener_auth(stack, "oncall_inbox"),
                      timeout=10, verify=stack.verify).json()
    return [{**alert, "received_at": note["received_at"]} for note in notes for alert in note["alerts"]
            if alert["labels"].get("tenant") == tenant and alert["labels"]["alertname"] == "DataQualityCheckFailed"]


def group_interval_s(stack) -> int:
    """The running Alertmanager's group_interval: a group is notified again no sooner than this."""
    config = yaml.safe_load((stack.home / "alertmanager" / "alertmanager.yml").read_text())
    amount, unit = re.fullmatch(r"(\d+)([smh])", config["route"]["group_interval"]).groups()
    return int(amount) * {"s": 1, "m": 60, "h": 3600}[unit]


def undelivered(stack, tenant: str) -> int:
    """The tenant's alerts still waiting in the outbox."""
    conn = platform_db(stack)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM alert_outbox WHERE delivered_at IS NULL AND alert_key LIKE %s",
                        (f"%/{tenant}/%",))
            return cur.fetchone()[0]
    finally:
        conn.close()


def run_dq(api, tenant: str) -> dict:
    return api.wait_for_run(DAG, api.trigger(DAG, {"tenant_id": tenant}), timeout=300)


def break_types(stack, tenant: str, fixed: bool = False) -> None:
    conn = platform_db(stack)
    try:
        if fixed:
            with transaction(conn) as cur:
                cur.execute("UPDATE user_interactions SET interaction_type = 'view'"
                            " WHERE tenant_id = %s AND interaction_type = 'hack'", (tenant,))
        else:
            defects.invalid_types(conn, tenant)
    finally:
        conn.close()


def test_an_alert_pages_once_across_runs_and_resolves_when_fixed(dq_stack):
    stack, api, tenant = dq_stack.stack, dq_stack.api, "dq-paging"
    seed_tenant(stack, tenant, 42, datetime.now(UTC) - TRAINED_BEFORE_ANY_RUN)
    break_types(stack, tenant)
    assert run_dq(api, tenant)["state"] == "success"
    assert run_dq(api, tenant)["state"] == "success"
    paged = wait_for(lambda: [a for a in inbox_alerts(stack, tenant) if a["status"] == "firing"], 60, "the page")
    # Alertmanager notifies a group again group_interval after its last notification: a second page
    # (the alert delivered again under other labels, or resolved and fired again) would be here by then.
    time.sleep(max(0.0, paged[0]["received_at"] + group_interval_s(stack) + NOTIFY_SLACK_S - time.time()))
    firing = [a for a in inbox_alerts(stack, tenant) if a["status"] == "firing"]
    assert len(firing) == 1
    assert undelivered(stack, tenant) == 0
    labels = firing[0]["labels"]
    assert (labels["check"], labels["table"], labels["severity"]) == (
        "invalid_interaction_types", "user_interactions", "critical")
    assert "observed 50.0 against threshold 0.0" in firing[0]["annotations"]["description"]
    assert firing[0]["annotations"]["runbook_url"]

    break_types(stack, tenant, fixed=True)
    assert run_dq(api, tenant)["state"] == "success"
    wait_for(lambda: [a for a in inbox_alerts(stack, tenant) if a["status"] == "resolved"], 120, "the resolve")


def test_alerts_wait_in_the_outbox_while_alertmanager_is_down(dq_stack):
    stack, api, tenant = dq_stack.stack, dq_stack.api, "dq-outbox"
    seed_tenant(stack, tenant, 43, datetime.now(UTC) - TRAINED_BEFORE_ANY_RUN)
    break_types(stack, tenant)
    supervisor = Supervisor(stack)
    supervisor._proxy().stopProcess("alertmanager", True)
    try:
        run_id = api.trigger(DAG, {"tenant_id": tenant})

        def send_failed():
            tis = {ti["task_id"]: ti for ti in api.task_instances(DAG, run_id)}
            return tis.get("send_alert", {}).get("state") in ("up_for_retry", "failed")

        wait_for(send_failed, 180, "send_alert to fail")
        conn = platform_db(stack)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*), max(last_error) FROM alert_outbox WHERE delivered_at IS NULL"
                            " AND alert_key LIKE %s", (f"%/{tenant}/%",))
                waiting, error = cur.fetchone()
        finally:
            conn.close()
        assert waiting >= 1 and "ConnectError" in error
        assert inbox_alerts(stack, tenant) == []
    finally:
        supervisor._proxy().startProcess("alertmanager", True)
    assert api.wait_for_run(DAG, run_id, timeout=300)["state"] == "success"  # the retry delivers
    wait_for(lambda: inbox_alerts(stack, tenant), 60, "the delayed page")


def stored_results(stack, run_id: str) -> dict:
    conn = platform_db(stack)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT table_name, check_name, status, observed FROM dq_results WHERE dag_run_id = %s",
                        (run_id,))
            return {(table, check): (status, observed) for table, check, status, observed in cur.fetchall()}
    finally:
        conn.close()


def test_a_full_recheck_run_agrees_with_the_incremental_run_after_new_data(dq_stack):
    stack, api, tenant = dq_stack.stack, dq_stack.api, "dq-recheck"
    seed_tenant(stack, tenant, 44, datetime.now(UTC) - TRAINED_BEFORE_ANY_RUN)
    assert run_dq(api, tenant)["state"] == "success"  # the tenant's first run: summarised in full
    conn = platform_db(stack)
    try:
        defects.duplicates(conn, tenant)  # a re-delivered batch: new rows, old event times
    finally:
        conn.close()
    runs = [api.trigger(DAG, {"tenant_id": tenant, "full_recheck": full}) for full in (False, True)]
    for run_id in runs:  # max_active_runs=1: one after the other; in either order they must agree
        assert api.wait_for_run(DAG, run_id, timeout=300)["state"] == "success"
    incremental, full = (stored_results(stack, run_id) for run_id in runs)
    assert incremental == full and incremental[("user_interactions", "duplicates")][0] == "fail"
