"""Production's pointer torn, and two deploys of one tenant at once, on the running stack.

One training run (the module's setup) deploys three tenants with a logical date a month back, so
their live versions come from an old data interval: a backfill of a recent day, and a run of now,
are both newer than production, and either alone would deploy. The lock decides between them, and
the deploy journal's order (workers/training/deploys.py) decides which version production keeps.
"""

from __future__ import annotations

import contextlib
import os
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.test_tenant_model_training import model_loads
from tests.polling import wait_for
from workers import storage

from .conftest import (
    frozen,
    platform_db,
    process_pid,
    seed_tenant,
    storage_base,
    training_row,
    wait_until_healthy,
    with_dags_unpaused,
)
from .test_survives_faults import deploy_journal, pointer_version, restart_hard, served_version, task_states

pytestmark = pytest.mark.e2e
TRAINING = "tenant_model_training"
PREFIX = "rz-race-"
TORN, BYSTANDER, RACED = (f"{PREFIX}{name}" for name in ("torn", "bystander", "raced"))
DEPLOY = "train_tenant.deploy_to_production"


def last_firing(now: datetime) -> datetime:
    """The latest time the DAG's schedule (0 2 * * *) fired."""
    today = now.replace(hour=2, minute=0, second=0, microsecond=0)
    return today if now >= today else today - timedelta(days=1)


# A backfillable day before the last firing, and the setup's logical date a month back at 03:00:
# off the schedule, so the backfill never meets the setup's run.
BACKFILLED_DAY = last_firing(datetime.now(UTC)) - timedelta(days=2)
SETUP_LOGICAL_DATE = BACKFILLED_DAY - timedelta(days=28) + timedelta(hours=1)


@pytest.fixture(scope="module")
def races(running_stack):
    yield from with_dags_unpaused(running_stack, (TRAINING,), PREFIX)


@pytest.fixture(scope="module")
def live_versions(races) -> dict[str, str]:
    """The three tenants seeded and deployed by one run dated a month back: {tenant: live version}."""
    stack, api = races.stack, races.api
    # Unpausing makes the scheduler start the schedule's latest firing for every active tenant:
    # let it end before this module's tenants exist, so it trains none of them.
    wait_for(lambda: no_run_pending(api), 300, f"{TRAINING}'s scheduled run to end")
    for seed, tenant in enumerate((TORN, BYSTANDER, RACED), start=41):
        seed_tenant(stack, tenant, 20_000, seed=seed)
    started = time.monotonic()
    run_id = api.request("POST", f"/dags/{TRAINING}/dagRuns",
                         json={"logical_date": SETUP_LOGICAL_DATE.isoformat(), "conf": {}})["dag_run_id"]
    assert api.wait_for_run(TRAINING, run_id, timeout=600)["state"] == "success"
    versions = {tenant: training_row(stack, run_id, tenant)[2] for tenant in (TORN, BYSTANDER, RACED)}
    assert all(served_version(stack, tenant) == version for tenant, version in versions.items())
    print(f"\nEVIDENCE setup: one run deployed {len(versions)} tenants in {time.monotonic() - started:.0f}s")
    return versions


def no_run_pending(api) -> bool:
    """The scheduler has made its next firing tomorrow's and no run of the DAG is queued or running."""
    next_run = api.request("GET", f"/dags/{TRAINING}")["next_dagrun_run_after"]
    if next_run is None or datetime.fromisoformat(next_run) <= datetime.now(UTC):
        return False
    pending = api.request("GET", f"/dags/{TRAINING}/dagRuns", params={"state": ["queued", "running"]})
    return pending["total_entries"] == 0


def health(stack) -> dict | None:
    """The inference service's /health, or None while it does not answer."""
    try:
        return httpx.get(f"{stack.url('inference')}/health", verify=stack.verify, timeout=5).json()
    except httpx.HTTPError:
        return None


def test_a_truncated_pointer_leaves_only_its_tenant_unserved_after_a_restart_and_its_next_deploy_recovers(
        races, live_versions):
    """The service loads each tenant on its own, so a restart serves the others and reports the torn
    one under `errors`; a deploy takes the previous version from its journal, never from the pointer,
    and replaces the pointer whole, so the tenant's next run repairs it."""
    stack, api = races.stack, races.api
    pointer = storage.pointer_path(storage_base(stack), TORN)
    # A torn write: the first half of the JSON, as an in-place write cut off by a crash would leave it.
    os.truncate(pointer.path, len(storage.read_bytes(pointer)) // 2)
    restart_hard(stack, "inference")
    restarted_at = time.monotonic()
    after_restart = wait_for(lambda: health(stack), 120, "the inference service to answer after its restart")
    up_s = time.monotonic() - restarted_at
    assert after_restart["versions"].get(BYSTANDER) == live_versions[BYSTANDER]
    assert after_restart["versions"].get(RACED) == live_versions[RACED]
    assert TORN not in after_restart["versions"]
    assert "not valid JSON" in after_restart["errors"].get(TORN, ""), after_restart
    assert after_restart["status"] == "degraded"
    wait_until_healthy(races)

    loads = model_loads(stack, TORN)
    run_id = api.trigger(TRAINING, {"tenant_id": TORN})
    assert api.wait_for_run(TRAINING, run_id, timeout=600)["state"] == "success"
    status, _, version, reason = training_row(stack, run_id, TORN)
    assert status == "success", reason
    assert task_states(api, TRAINING, run_id)[DEPLOY] == ("success", 1)
    assert model_loads(stack, TORN) == loads + 1
    assert storage.read_json(pointer) == {"version": version}  # whole again, naming the new version
    recovered = health(stack)
    assert recovered["versions"][TORN] == version != live_versions[TORN]
    assert TORN not in recovered["errors"] and recovered["status"] == "ok", recovered
    print(f"\nEVIDENCE torn pointer: service up {up_s:.0f}s after the kill, {BYSTANDER} and {RACED} served,"
          f" {TORN} under errors; its next deploy made the pointer whole ({version}),"
          f" served {time.monotonic() - restarted_at:.0f}s after the kill")


def flipped(stack, run_id: str, tenant: str) -> str | None:
    """The run's version once its deploy holds the lock and has flipped the pointer to it."""
    state, version = deploy_journal(stack, run_id, tenant)
    return version if state == "flipping" and pointer_version(stack, tenant) == version else None


def deploy_pid(api, run_id: str) -> int:
    """The PID of the process running the run's deploy task (the task instance's `pid`)."""
    return next(ti["pid"] for ti in api.task_instances(TRAINING, run_id) if ti["task_id"] == DEPLOY)


def backfill_one_day(api, day: datetime, conf: dict) -> str:
    """POST /api/v2/backfills for the one firing of the schedule on `day`; returns the run's id."""
    window = {"from_date": (day - timedelta(hours=1)).isoformat(), "to_date": (day + timedelta(hours=1)).isoformat()}
    backfill = api.request("POST", "/backfills", json={"dag_id": TRAINING, **window, "dag_run_conf": conf})
    runs = api.request("GET", f"/dags/{TRAINING}/dagRuns", params={"limit": 100})["dag_runs"]
    created = [run["dag_run_id"] for run in runs if run["run_type"] == "backfill"]
    assert len(created) == 1, (backfill, created)
    return created[0]


def first_try_over(api, run_id: str) -> tuple[str, int] | None:
    state = task_states(api, TRAINING, run_id).get(DEPLOY)
    return state if state and (state[0] in ("up_for_retry", "success", "failed") or state[1] > 1) else None


def live_rows(stack, tenant: str) -> list[str]:
    conn = platform_db(stack)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT dag_run_id FROM model_training_runs WHERE tenant_id = %s AND deploy_state = 'live'",
                        (tenant,))
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def test_a_backfill_deploy_meeting_a_newer_runs_deploy_waits_for_it_and_is_superseded(races, live_versions):
    """The overlap, made deterministic: with the inference service frozen, the newer (manual) run's
    deploy takes the tenant's lock, flips the pointer and blocks in its request to the service; the
    test then freezes that deploy's own process (SIGSTOP at the task instance's PID), so it holds the
    lock for as long as needed, thaws the service and backfills an older day for the same tenant. That
    run trains and its deploy runs while the newer one is mid-flight: it must fail at the lock
    (DeployInProgress) without touching production; its retry, once the newer deploy went live,
    must end 'superseded'. Both runs are newer than production, so without the lock both would flip,
    and without the supersede branch the retry would put the older version over the newer one.
    """
    stack, api = races.stack, races.api
    loads = model_loads(stack, RACED)
    started = time.monotonic()
    with contextlib.ExitStack() as held:
        with frozen(process_pid(stack, "inference")):
            newer = api.trigger(TRAINING, {"tenant_id": RACED})
            newer_version = wait_for(lambda: flipped(stack, newer, RACED), 300,
                                     "the newer run's deploy to flip the pointer", poll=0.1)
            held.enter_context(frozen(deploy_pid(api, newer)))
        older = backfill_one_day(api, BACKFILLED_DAY, {"tenant_id": RACED})
        older_first_try = wait_for(lambda: first_try_over(api, older), 600, "the backfill's deploy to run")
        assert older_first_try == ("up_for_retry", 1), f"the backfill's deploy ignored the held lock: {older_first_try}"
        assert "another deploy of this tenant is in progress" in training_row(stack, older, RACED)[3]
        assert deploy_journal(stack, newer, RACED) == ("flipping", newer_version)  # still held, untouched
        overlap_s = time.monotonic() - started
    run_states = {run_id: api.wait_for_run(TRAINING, run_id, timeout=300)["state"] for run_id in (newer, older)}
    rows = {run_id: (training_row(stack, run_id, RACED)[0], deploy_journal(stack, run_id, RACED))
            for run_id in (newer, older)}
    tries = {run_id: task_states(api, TRAINING, run_id)[DEPLOY] for run_id in (newer, older)}
    load_delta = model_loads(stack, RACED) - loads
    print(f"\nEVIDENCE race: newer {newer} ({newer_version}), backfill {older}; live: {live_rows(stack, RACED)};"
          f" pointer {pointer_version(stack, RACED)}; deploy task (state, try)"
          f" {tries}; runs {run_states}; rows (status, (deploy_state, version)) {rows}; model loads +{load_delta:.0f};"
          f" overlap staged in {overlap_s:.0f}s, both runs ended {time.monotonic() - started:.0f}s after the start")
    assert run_states == {newer: "success", older: "success"}
    assert rows[newer] == ("success", ("live", newer_version))
    assert rows[older][0] == "superseded" and rows[older][1][0] == "superseded"
    assert tries == {newer: ("success", 1), older: ("success", 2)}
    assert load_delta == 1  # only the winner's deploy had the service load a model
    assert pointer_version(stack, RACED) == served_version(stack, RACED) == newer_version
    assert live_rows(stack, RACED) == [newer]
