"""model_training_runs against a real PostgreSQL: one row per (DAG run, tenant) through its stages."""

from datetime import UTC, datetime

import psycopg2
import pytest

from workers.platform_db.db import transaction
from workers.training import deploys, runs

RUN = "scheduled__2026-11-24T02:00:00+00:00"


def deployed(conn, base, run: str, tenant: str, version: str) -> None:
    """The deploy stage's end: the version live (workers/training/deploys.py, with a service that always loads)."""
    order = datetime(2026, 11, 24, 2, tzinfo=UTC)
    deploys.deploy(conn, base, deploys.Deploy(tenant, run, version, order), serve=lambda version: None)


@pytest.fixture
def db(platform_db):
    with transaction(platform_db) as cur:
        cur.execute("INSERT INTO tenants (tenant_id, name) VALUES ('acme', 'Acme'), ('globex', 'Globex')")
    return platform_db


def row(conn, tenant="acme", run=RUN) -> dict | None:
    with conn.cursor() as cur:
        cur.execute("SELECT status, stage, started_at, finished_at, model_version, metrics, failure_reason"
                    " FROM model_training_runs WHERE dag_run_id = %s AND tenant_id = %s", (run, tenant))
        found = cur.fetchone()
    conn.commit()
    keys = ("status", "stage", "started_at", "finished_at", "model_version", "metrics", "failure_reason")
    return dict(zip(keys, found, strict=True)) if found else None


def test_start_opens_a_running_row_at_the_first_stage(db):
    runs.start(db, RUN, "acme")
    opened = row(db)
    assert {k: opened[k] for k in ("status", "stage", "finished_at", "model_version", "metrics", "failure_reason")} \
        == {"status": "running", "stage": "validate_training_data", "finished_at": None, "model_version": None,
            "metrics": {}, "failure_reason": None}
    assert opened["started_at"] is not None
    assert row(db, "globex") is None


def test_a_tenant_that_does_not_exist_gets_no_row(db):
    with pytest.raises(psycopg2.errors.ForeignKeyViolation):
        runs.start(db, RUN, "initech")
    assert row(db, "initech") is None


def test_a_successful_run_records_its_stages_metrics_and_version(db, base):
    runs.start(db, RUN, "acme")
    for stage, key, metrics in [("validate_training_data", "data", {"rows": 30000}),
                                ("train_embeddings", "training", {"ndcg_lift": 0.2}),
                                ("build_faiss_index", "index", {"nlist": 64})]:
        with runs.stage(db, RUN, "acme", stage):
            assert row(db)["stage"] == stage
        runs.merge_metrics(db, RUN, "acme", {key: metrics})
    runs.merge_metrics(db, RUN, "acme", {"data": {"rows": 30001}})  # a key merged again is replaced
    with runs.stage(db, RUN, "acme", "deploy_to_production"):
        deployed(db, base, RUN, "acme", "m-20261124-abc")

    done = row(db)
    assert (done["status"], done["stage"], done["model_version"], done["failure_reason"]) == (
        "success", "deploy_to_production", "m-20261124-abc", None)
    assert done["metrics"] == {"data": {"rows": 30001}, "training": {"ndcg_lift": 0.2}, "index": {"nlist": 64}}
    assert done["finished_at"] >= done["started_at"]


def test_an_error_in_a_stage_is_recorded_as_the_failure_and_raised(db):
    runs.start(db, RUN, "acme")
    with (pytest.raises(ValueError, match="part-00000.parquet is not a readable Parquet file"),
          runs.stage(db, RUN, "acme", "train_embeddings")):
        raise ValueError("part-00000.parquet is not a readable Parquet file")
    failed = row(db)
    assert (failed["status"], failed["stage"], failed["model_version"]) == ("failed", "train_embeddings", None)
    assert failed["failure_reason"] == "train_embeddings: part-00000.parquet is not a readable Parquet file"
    assert failed["finished_at"] is not None


def test_a_long_failure_reason_is_cut_to_4000_characters(db):
    runs.start(db, RUN, "acme")
    with pytest.raises(RuntimeError), runs.stage(db, RUN, "acme", "validate_index"):
        raise RuntimeError("x" * 10_000)
    assert len(row(db)["failure_reason"]) == 4000


def test_a_rerun_reopens_the_row_and_clears_the_failure(db):
    runs.start(db, RUN, "acme")
    first_start = row(db)["started_at"]
    with pytest.raises(RuntimeError), runs.stage(db, RUN, "acme", "build_faiss_index"):
        raise RuntimeError("out of memory")

    runs.start(db, RUN, "acme")

    reopened = row(db)
    assert (reopened["status"], reopened["stage"], reopened["finished_at"], reopened["failure_reason"]) == (
        "running", "validate_training_data", None, None)
    assert reopened["started_at"] == first_start  # the row is the DAG run's: it started when the run first did
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM model_training_runs")
        assert cur.fetchone() == (1,)


def test_runs_and_tenants_are_kept_apart(db, base):
    runs.start(db, RUN, "acme")
    runs.start(db, RUN, "globex")
    runs.start(db, "manual__1", "acme")
    with pytest.raises(RuntimeError), runs.stage(db, RUN, "globex", "train_embeddings"):
        raise RuntimeError("boom")
    deployed(db, base, "manual__1", "acme", "m-1")
    assert row(db)["status"] == "running"
    assert row(db, "globex")["status"] == "failed"
    assert row(db, "acme", "manual__1")["model_version"] == "m-1"


def decision_of(conn, run=RUN) -> tuple:
    with conn.cursor() as cur:
        cur.execute("SELECT status, decision, decision_reason, finished_at IS NOT NULL FROM model_training_runs"
                    " WHERE dag_run_id = %s AND tenant_id = 'acme'", (run,))
        found = cur.fetchone()
    conn.commit()
    return found


def test_a_kept_champion_ends_the_run_as_champion_kept_with_its_reason(db):
    runs.start(db, RUN, "acme")
    runs.decide(db, RUN, "acme", "keep_champion", "the challenger is 20% below the champion")
    assert decision_of(db) == ("champion_kept", "keep_champion", "the challenger is 20% below the champion", True)


def test_deploy_and_popularity_decisions_leave_the_run_going_and_a_rerun_clears_the_decision(db):
    runs.start(db, RUN, "acme")
    runs.decide(db, RUN, "acme", "popularity", "too little data")
    assert decision_of(db) == ("running", "popularity", "too little data", False)
    runs.start(db, RUN, "acme")
    assert decision_of(db) == ("running", None, None, False)


def test_only_the_known_decisions_and_statuses_are_stored(db):
    runs.start(db, RUN, "acme")
    with pytest.raises(psycopg2.errors.CheckViolation):
        runs.decide(db, RUN, "acme", "coin_flip", "why not")
    db.rollback()
    with pytest.raises(psycopg2.errors.CheckViolation), transaction(db) as cur:
        cur.execute("UPDATE model_training_runs SET status = 'kept'")
