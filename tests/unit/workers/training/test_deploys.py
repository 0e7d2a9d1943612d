"""deploy_to_production against a real PostgreSQL and real files: the tenant's lock, the order of runs,
and a crash or a lost database at each step.

The inference service is a fake in place of tasks._serve: it records the versions it loaded, and a
test makes it fail a version's health check, hold a deploy inside it, or kill the task's session.
A crash is a forked process that dies with os._exit: no except or finally block runs, as in a kill -9.
"""

import multiprocessing
import os
import re
import threading
import time
from datetime import UTC, datetime

import pytest

from tests.unit.workers.training.versions import stage_run
from workers import storage
from workers.exceptions import DataError, TransientError
from workers.platform_db import migrate
from workers.platform_db.db import transaction
from workers.training import artifacts, deploys, runs, tasks

OLD_RUN, NEW_RUN = "scheduled__2026-11-23T02:00:00+00:00", "scheduled__2026-11-24T02:00:00+00:00"
INTERVAL_END = {OLD_RUN: datetime(2026, 11, 23, 2, tzinfo=UTC), NEW_RUN: datetime(2026, 11, 24, 2, tzinfo=UTC)}
OLD, NEW = artifacts.version_for(OLD_RUN, "acme"), artifacts.version_for(NEW_RUN, "acme")
CRASHED = 70


class FakeService:
    def __init__(self):
        self.loaded: list[str] = []
        self.unhealthy: set[str] = set()
        self.on_serve = None

    def __call__(self, url, tenant_id, version, timeout_s):
        if self.on_serve:
            self.on_serve(version)
        if version in self.unhealthy:
            raise TransientError(f"inference service health does not report {tenant_id} at {version}")
        self.loaded.append(version)


@pytest.fixture
def env(monkeypatch, platform_db, worker_env):
    """Connections and variables as a worker gets them (worker_env); two runs of acme staged and started;
    the fake service."""
    base = worker_env
    for seed, run in enumerate((OLD_RUN, NEW_RUN)):
        runs.start(platform_db, run, "acme")
        stage_run(base, "acme", run, seed)
    service = FakeService()
    monkeypatch.setattr(tasks, "_serve", service)
    return platform_db, base, service


def deploy(run: str) -> dict:
    return tasks.deploy_to_production("acme", run, INTERVAL_END[run], None)


def journal(db, run: str) -> tuple:
    """(status, deploy_state, model_version, deploy_previous_version) of the run's row."""
    with db.cursor() as cur:
        cur.execute("SELECT status, deploy_state, model_version, deploy_previous_version FROM model_training_runs"
                    " WHERE dag_run_id = %s AND tenant_id = 'acme'", (run,))
        found = cur.fetchone()
    db.commit()
    return found


def failure_reason(db, run: str) -> str:
    with db.cursor() as cur:
        cur.execute("SELECT failure_reason FROM model_training_runs WHERE dag_run_id = %s", (run,))
        (reason,) = cur.fetchone()
    db.commit()
    return reason


def pointer(base) -> str | None:
    return artifacts.read_pointer(base, "acme")


def crash_while_deploying(module, function: str, run: str) -> int:
    """Deploy in a forked process that dies at the first call of module.function; returns its exit code."""
    def child():
        setattr(module, function, lambda *args: os._exit(CRASHED))
        deploy(run)
        os._exit(0)

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(60)
    return process.exitcode


def wait_until_the_lock_is_free(db) -> None:
    """PostgreSQL ends a dead client's session, and frees its lock, a moment after the socket closes."""
    deadline = time.monotonic() + 10
    while True:
        with db.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
            (held,) = cur.fetchone()
        db.commit()
        if not held:
            return
        assert time.monotonic() < deadline, "the crashed deploy's session still holds the tenant's lock"
        time.sleep(0.05)


def test_a_deploy_records_the_live_version_as_previous_and_goes_live(env):
    db, base, service = env
    assert deploy(OLD_RUN) == {"outcome": "deployed", "version": OLD, "previous": None, "published": True}
    assert deploy(NEW_RUN) == {"outcome": "deployed", "version": NEW, "previous": OLD, "published": True}

    assert journal(db, NEW_RUN) == ("success", "live", NEW, OLD)
    assert journal(db, OLD_RUN) == ("success", "replaced", OLD, None)
    assert pointer(base) == NEW
    assert service.loaded == [OLD, NEW]


def test_a_failed_health_check_puts_back_the_live_version(env):
    db, base, service = env
    deploy(OLD_RUN)
    service.unhealthy = {NEW}
    with pytest.raises(TransientError, match=f"does not report acme at {NEW}"):
        deploy(NEW_RUN)

    assert pointer(base) == OLD
    assert service.loaded == [OLD, OLD]  # the service was asked to go back too
    assert journal(db, NEW_RUN) == ("failed", "rolled_back", NEW, OLD)
    assert journal(db, OLD_RUN)[:2] == ("success", "live")


@pytest.mark.parametrize("crash_at", ["flip", "health_check"])
@pytest.mark.parametrize("healthy_on_retry", [True, False], ids=["healthy", "unhealthy"])
def test_after_a_crash_mid_deploy_the_retry_uses_the_recorded_previous_version(env, crash_at, healthy_on_retry):
    db, base, service = env
    deploy(OLD_RUN)
    module, function = (artifacts, "write_pointer") if crash_at == "flip" else (tasks, "_serve")

    assert crash_while_deploying(module, function, NEW_RUN) == CRASHED

    # Recorded before the flip; the row claims nothing while the pointer is in doubt.
    assert journal(db, NEW_RUN) == ("running", "flipping", NEW, OLD)
    assert pointer(base) == (OLD if crash_at == "flip" else NEW)
    wait_until_the_lock_is_free(db)
    if healthy_on_retry:
        deploy(NEW_RUN)
        assert (pointer(base), journal(db, NEW_RUN)) == (NEW, ("success", "live", NEW, OLD))
        assert journal(db, OLD_RUN)[1] == "replaced"
    else:
        service.unhealthy = {NEW}
        with pytest.raises(TransientError):
            deploy(NEW_RUN)
        # The recorded previous version, not the pointer's (after a crash past the flip, the new one).
        assert (pointer(base), journal(db, NEW_RUN)) == (OLD, ("failed", "rolled_back", NEW, OLD))
        assert service.loaded[-1] == OLD
        assert journal(db, OLD_RUN)[:2] == ("success", "live")


def test_postgres_lost_at_the_end_leaves_the_pointer_with_the_live_row_and_the_retry_goes_live(env):
    db, base, service = env
    deploy(OLD_RUN)

    def kill_the_task_session(version):
        if version == NEW:
            service.on_serve = None
            with db.cursor() as cur:  # every session on the database but the test's: the task's
                cur.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                            " WHERE datname = current_database() AND pid <> pg_backend_pid()")
            db.commit()

    service.on_serve = kill_the_task_session
    with pytest.raises(Exception) as lost:  # noqa: PT011 (whatever psycopg raises for a killed session)
        deploy(NEW_RUN)

    assert not isinstance(lost.value, DataError), "a lost database must be retried"
    assert pointer(base) == OLD and journal(db, OLD_RUN)[:2] == ("success", "live")
    assert journal(db, NEW_RUN)[:2] == ("running", "flipping")  # in doubt, not "success"
    deploy(NEW_RUN)
    assert (pointer(base), journal(db, NEW_RUN)) == (NEW, ("success", "live", NEW, OLD))


@pytest.mark.parametrize("healthy", [True, False], ids=["healthy", "unhealthy"])
def test_a_torn_pointer_does_not_stop_the_next_deploy(env, healthy):
    db, base, service = env
    deploy(OLD_RUN)
    storage.write_bytes(storage.pointer_path(base, "acme"), b'{"vers')  # as an in-place write torn by a crash
    with pytest.raises(artifacts.BrokenArtifact, match="CURRENT.json is not valid JSON"):
        pointer(base)

    if healthy:
        deploy(NEW_RUN)
        assert pointer(base) == NEW
    else:
        service.unhealthy = {NEW}
        with pytest.raises(TransientError):
            deploy(NEW_RUN)
        assert pointer(base) == OLD  # the rollback writes the live version back, whole


def test_a_cleared_old_run_is_superseded_and_leaves_production_alone(env):
    db, base, service = env
    deploy(OLD_RUN)
    deploy(NEW_RUN)

    result = deploy(OLD_RUN)  # its deploy task cleared, or a backfill of its interval

    assert result == {"outcome": "superseded", "version": OLD, "live_version": NEW, "live_dag_run_id": NEW_RUN,
                      "published": False}
    assert pointer(base) == NEW and service.loaded == [OLD, NEW]
    assert journal(db, OLD_RUN)[:3] == ("superseded", "superseded", OLD)
    assert journal(db, NEW_RUN)[:2] == ("success", "live")
    assert tasks.tenant_outcome("acme", OLD_RUN) == {"tenant_id": "acme", "version": OLD, "outcome": "superseded"}
    assert tasks.update_redis_cache("acme", OLD_RUN) == {"skipped": "superseded: production serves a newer run's model"}


def test_an_older_run_never_deployed_before_is_superseded_too(env):
    db, base, service = env
    deploy(NEW_RUN)
    assert deploy(OLD_RUN)["outcome"] == "superseded"
    assert pointer(base) == NEW and service.loaded == [NEW]


def test_a_cleared_deploy_of_the_live_run_changes_nothing(env):
    db, base, service = env
    deploy(OLD_RUN)
    deploy(NEW_RUN)
    versions = sorted(p.name for p in storage.models_dir(base, "acme").iterdir())

    assert deploy(NEW_RUN) == {"outcome": "deployed", "version": NEW, "previous": NEW, "published": False}

    assert sorted(p.name for p in storage.models_dir(base, "acme").iterdir()) == versions
    assert (pointer(base), journal(db, NEW_RUN)) == (NEW, ("success", "live", NEW, OLD))


@pytest.mark.parametrize("first", [OLD_RUN, NEW_RUN], ids=["older_holds_the_lock", "newer_holds_the_lock"])
def test_of_two_deploys_at_once_one_wins_the_other_reports_it_and_the_newer_ends_live(env, first):
    db, base, service = env
    second = NEW_RUN if first == OLD_RUN else OLD_RUN
    inside, release = threading.Event(), threading.Event()

    def hold_the_first(version):
        if version == artifacts.version_for(first, "acme") and not inside.is_set():
            inside.set()
            assert release.wait(30)

    service.on_serve = hold_the_first
    results = {}
    winner = threading.Thread(target=lambda: results.update(first=deploy(first)))
    winner.start()
    assert inside.wait(30), "the first deploy did not reach the service"
    try:
        with pytest.raises(deploys.DeployInProgress, match="another deploy of this tenant is in progress"):
            deploy(second)
    finally:
        release.set()
        winner.join(30)

    assert results["first"]["outcome"] == "deployed"
    assert service.loaded == [artifacts.version_for(first, "acme")]  # only the winner reached the service
    assert journal(db, second)[0] == "failed" and "in progress" in failure_reason(db, second)
    # Airflow retries the loser, which decides against what the winner left.
    assert deploy(second)["outcome"] == ("deployed" if second == NEW_RUN else "superseded")
    assert pointer(base) == NEW and journal(db, NEW_RUN)[:2] == ("success", "live")


def test_the_deploy_order_is_the_data_interval_end_else_run_after():
    end, after = datetime(2026, 11, 24, 2, tzinfo=UTC), datetime(2026, 11, 24, 9, tzinfo=UTC)
    assert deploys.deploy_order(end, after) == end
    assert deploys.deploy_order(None, after) == after
    with pytest.raises(DataError, match="needs the DAG run's data_interval_end or run_after"):
        deploys.deploy_order(None, None)


def test_a_deploy_without_a_recorded_run_is_a_data_error(env):
    db, base, service = env
    with transaction(db) as cur:
        cur.execute("DELETE FROM model_training_runs WHERE dag_run_id = %s", (NEW_RUN,))
    with pytest.raises(DataError, match=re.escape(f"no training run was recorded for {NEW_RUN}")):
        deploy(NEW_RUN)
    assert pointer(base) is None


def test_the_migration_makes_each_tenants_latest_successful_run_the_live_one(empty_db, tmp_path):
    """Deploys made before V006: the pointer names the latest successful run's version."""
    before = tmp_path / "migrations"
    before.mkdir()
    for version, path in migrate.migration_files():
        if version < 6:
            (before / path.name).write_bytes(path.read_bytes())
    migrate.apply(empty_db, before)
    with transaction(empty_db) as cur:
        cur.execute("INSERT INTO tenants (tenant_id, name) VALUES ('acme', 'Acme'), ('globex', 'Globex')")
        cur.execute(
            "INSERT INTO model_training_runs (dag_run_id, tenant_id, status, started_at, finished_at, model_version)"
            " VALUES ('r1', 'acme', 'success', '2026-11-22 02:00Z', '2026-11-22 02:10Z', 'm-1'),"
            "        ('r2', 'acme', 'success', '2026-11-23 02:00Z', '2026-11-23 02:10Z', 'm-2'),"
            "        ('r3', 'acme', 'failed', '2026-11-24 02:00Z', '2026-11-24 02:10Z', NULL),"
            "        ('r1', 'globex', 'failed', '2026-11-22 02:00Z', '2026-11-22 02:10Z', NULL)")

    migrate.apply(empty_db)

    with empty_db.cursor() as cur:
        cur.execute("SELECT tenant_id, dag_run_id, deploy_order FROM model_training_runs WHERE deploy_state = 'live'")
        assert cur.fetchall() == [("acme", "r2", datetime(2026, 11, 23, 2, tzinfo=UTC))]
