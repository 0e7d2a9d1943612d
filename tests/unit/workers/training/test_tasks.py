"""The training tasks per selection decision, against a real PostgreSQL and real files.

Selection is a fake here (its own tests are test_selection.py): it returns each decision with a small
model, so these tests are about what the tasks do with it: the row, the staged model, the index stages,
the manifest, the deploy, the outcome. The inference service is a fake in place of tasks._serve and the
Pushgateway a list of pushes. test_real_selection_* run the real selection on generated data.
"""

import sys
import types
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from airflow.sdk.exceptions import AirflowSkipException

import workers.training
from stackctl.demo.data import TenantSpec, generate
from stackctl.demo.seed import export_tenant
from tests.unit.services.served_versions import factor_model, neighbour_model, popularity_model
from tests.unit.workers.training.versions import stage_run
from workers import storage
from workers.training import artifacts, runs, selection, tasks
from workers.training import metrics as training_metrics
from workers.training.served import ServedModel

CHAMPION_RUN, RUN = "scheduled__2026-11-23T02:00:00+00:00", "scheduled__2026-11-24T02:00:00+00:00"
ORDER = {CHAMPION_RUN: datetime(2026, 11, 23, 2, tzinfo=UTC), RUN: datetime(2026, 11, 24, 2, tzinfo=UTC)}


@dataclass
class Outcome:
    decision: str
    reason: str
    model: ServedModel
    report: dict = field(default_factory=dict)


def report(lift, family, champion=None) -> dict:
    return {"ndcg_lift": lift, "model": {"ndcg_at_10": 0.3, "recall_at_10": 0.4},
            "popularity": {"ndcg_at_10": 0.2, "recall_at_10": 0.3}, "chosen": {"family": family, "config": {}},
            "search": [{"family": "als", "config": {"factors": 8}, "ndcg_at_10": 0.3, "seconds": 0.2},
                       {"family": "item_knn", "config": {"K": 5}, "ndcg_at_10": 0.25, "seconds": 0.1}],
            "protocol": {"test_interactions": 500}, "champion": champion, "eval_users": 300}


class FakeSelection:
    """Stands in for workers.training.selection: returns `outcome` and records what it was asked."""

    def __init__(self):
        self.outcome: Outcome | None = None
        self.champions: list = []

    def select(self, arrays, champion, **options):
        self.champions.append(champion)
        return self.outcome


@pytest.fixture
def env(monkeypatch, platform_db, worker_env):
    base = worker_env
    export_tenant(base, generate(TenantSpec("acme", n_users=60, n_items=30, n_interactions=400, seed=5),
                                 1_795_500_000_000_000))
    loaded, pushes = [], []
    monkeypatch.setattr(tasks, "_serve", lambda service, tenant, version, timeout: loaded.append(version))
    monkeypatch.setattr(training_metrics, "push_outcome",
                        lambda gateway, tenant, registry, handler: pushes.append(
                            {m.name: m.samples[0].value for m in registry.collect()}))
    fake = FakeSelection()
    module = types.ModuleType("workers.training.selection")
    module.select = fake.select
    monkeypatch.setitem(sys.modules, "workers.training.selection", module)
    monkeypatch.setattr(workers.training, "selection", module, raising=False)
    return types.SimpleNamespace(db=platform_db, base=base, loaded=loaded, pushes=pushes, selection=fake)


def row(db, run=RUN) -> dict:
    with db.cursor() as cur:
        cur.execute("SELECT status, stage, model_version, decision, decision_reason, failure_reason, metrics,"
                    " finished_at, deploy_state FROM model_training_runs WHERE dag_run_id = %s AND tenant_id = 'acme'",
                    (run,))
        found = cur.fetchone()
    db.commit()
    keys = ("status", "stage", "model_version", "decision", "decision_reason", "failure_reason", "metrics",
            "finished_at", "deploy_state")
    return dict(zip(keys, found, strict=True))


def through_the_index(run=RUN) -> tuple[dict, dict]:
    tasks.validate_training_data("acme", run)
    return tasks.train_embeddings("acme", run)


def deploy(run=RUN) -> dict:
    return tasks.deploy_to_production("acme", run, ORDER[run], None)


def manifest(base, run=RUN) -> dict:
    return storage.read_json(storage.models_dir(base, "acme") / artifacts.version_for(run, "acme") / "manifest.json")


def deployed_champion(env) -> str:
    """A champion live before RUN: CHAMPION_RUN staged and deployed."""
    runs.start(env.db, CHAMPION_RUN, "acme")
    stage_run(env.base, "acme", CHAMPION_RUN, seed=1)
    deploy(CHAMPION_RUN)
    return artifacts.version_for(CHAMPION_RUN, "acme")


def test_deploy_the_selected_model_indexed_with_its_choice_in_the_row_and_the_manifest(env):
    model = factor_model(seed=3)
    env.selection.outcome = Outcome("deploy", "als beats popularity by 50% on the test period", model,
                                    report(0.5, "als"))
    result = through_the_index()
    assert result["decision"] == "deploy" and result["ndcg_lift"] == 0.5
    assert env.selection.champions == [None]  # no serving version yet
    assert tasks.build_faiss_index("acme", RUN)["indexed"] is True
    assert tasks.validate_index("acme", RUN)["recall_at_10"] >= 0.95
    assert deploy()["outcome"] == "deployed"

    recorded = row(env.db)
    assert (recorded["status"], recorded["decision"], recorded["decision_reason"]) == (
        "success", "deploy", "als beats popularity by 50% on the test period")
    training = recorded["metrics"]["training"]
    assert training["served"] == {"family": "als", "config": {"factors": 8}, "has_vectors": True}
    assert len(training["search"]) == 2 and training["ndcg_lift"] == 0.5
    published = manifest(env.base)
    assert published["model"] == {"family": "als", "config": {"factors": 8}}
    assert published["decision"] == "deploy" and published["scoring"] == "faiss index"
    assert published["search"] == training["search"]
    assert published["metrics"]["training"]["ndcg_lift"] == 0.5
    loaded, index = artifacts.load_version(env.base, "acme", recorded["model_version"])
    assert loaded.family == "als" and index is not None

    assert tasks.tenant_outcome("acme", RUN)["decision"] == "deploy"
    assert env.pushes[-1]["training_last_run_success"] == 1 and env.pushes[-1]["training_ndcg_lift_ratio"] == 0.5


def test_too_little_data_deploys_popularity_unindexed_and_records_why(env):
    reason = "120 evaluation users, fewer than the 200 needed to judge a model: serving popular items"
    env.selection.outcome = Outcome("popularity", reason, popularity_model(), report(None, "popularity"))
    assert through_the_index()["decision"] == "popularity"
    index_stage = tasks.build_faiss_index("acme", RUN)
    assert index_stage["indexed"] is False and "scored without an index" in index_stage["note"]
    assert tasks.validate_index("acme", RUN)["recall_at_10"] is None
    assert not (storage.staging_dir(env.base, "acme", artifacts.run_key(RUN)) / "index.faiss").exists()
    assert deploy()["outcome"] == "deployed"

    recorded = row(env.db)
    assert (recorded["status"], recorded["decision"], recorded["decision_reason"]) == ("success", "popularity", reason)
    published = manifest(env.base)
    assert published["model"] == {"family": "popularity", "config": {}}
    assert published["scoring"].startswith("exact, without an index: the popularity family has no item vectors")
    model, index = artifacts.load_version(env.base, "acme", recorded["model_version"])
    assert index is None
    items, source = model.recommend(7, 5)
    assert source == "popular" and [i["item_id"] for i in items] == [100, 99, 98, 97, 96]

    outcome = tasks.tenant_outcome("acme", RUN)
    assert (outcome["decision"], outcome["reason"]) == ("popularity", reason)
    pushed = env.pushes[-1]
    assert pushed["training_last_run_success"] == 1 and "training_last_success_timestamp_seconds" in pushed
    assert "training_ndcg_lift_ratio" not in pushed and "training_index_items" not in pushed


def test_a_family_without_vectors_but_with_neighbours_is_scored_exactly(env):
    env.selection.outcome = Outcome("deploy", "item_knn wins", neighbour_model(), report(0.3, "item_knn"))
    through_the_index()
    assert tasks.build_faiss_index("acme", RUN)["indexed"] is False
    assert tasks.validate_index("acme", RUN)["indexed"] is False
    deploy()
    assert manifest(env.base)["scoring"].startswith("exact, without an index: the item_knn family")


def test_a_worse_challenger_keeps_the_champion_and_the_rest_of_the_run_skips(env):
    champion = deployed_champion(env)
    comparison = {"ndcg": 0.31, "challenger_ndcg": 0.2, "tolerance": 0.02, "verdict": "challenger worse"}
    reason = "the challenger's nDCG@10 0.2000 is below the champion's 0.3100 minus 2%: the champion keeps serving"
    env.selection.outcome = Outcome("keep_champion", reason, factor_model(seed=4), report(0.1, "als", comparison))
    result = through_the_index()
    assert (result["decision"], result["serving_version"]) == ("keep_champion", champion)
    (seen_champion,) = env.selection.champions
    assert seen_champion.family == "als"  # the serving version's model was the one compared

    recorded = row(env.db)
    assert (recorded["status"], recorded["decision"], recorded["decision_reason"]) == (
        "champion_kept", "keep_champion", reason)
    assert recorded["model_version"] is None and recorded["finished_at"] is not None
    assert recorded["metrics"]["training"]["champion"] == {**comparison, "version": champion}
    assert not (storage.staging_dir(env.base, "acme", artifacts.run_key(RUN)) / "model.json").exists()
    for task in (tasks.build_faiss_index, tasks.validate_index):
        with pytest.raises(AirflowSkipException, match="the champion was kept"):
            task("acme", RUN)
    with pytest.raises(AirflowSkipException, match="the champion was kept"):
        deploy()
    assert tasks.update_redis_cache("acme", RUN) == {
        "skipped": "champion kept: production serves the champion's popular items"}
    assert row(env.db)["status"] == "champion_kept"  # no skipped stage marked the row running again

    assert tasks.tenant_outcome("acme", RUN) == {"tenant_id": "acme", "version": champion,
                                                 "outcome": "champion_kept", "reason": reason}
    pushed = env.pushes[-1]
    assert pushed["training_last_run_success"] == 1
    assert "training_last_success_timestamp_seconds" not in pushed and "training_ndcg_lift_ratio" not in pushed
    assert artifacts.read_pointer(env.base, "acme") == champion and env.loaded == [champion]
    assert row(env.db, CHAMPION_RUN)["deploy_state"] == "live"


def test_a_rerun_after_a_kept_champion_reopens_the_row_and_can_deploy(env):
    deployed_champion(env)
    env.selection.outcome = Outcome("keep_champion", "worse", factor_model(seed=4), report(0.1, "als", {}))
    through_the_index()
    env.selection.outcome = Outcome("deploy", "better now", factor_model(seed=5), report(0.6, "als", {}))
    through_the_index()  # a cleared run starts again at validate_training_data
    recorded = row(env.db)
    assert (recorded["status"], recorded["decision"], recorded["finished_at"]) == ("running", "deploy", None)
    tasks.build_faiss_index("acme", RUN)
    tasks.validate_index("acme", RUN)
    assert deploy()["outcome"] == "deployed"
    assert artifacts.read_pointer(env.base, "acme") == artifacts.version_for(RUN, "acme")


def test_an_unreadable_serving_version_is_no_champion_and_the_problem_is_recorded(env):
    storage.replace_json(storage.pointer_path(env.base, "acme"), {"version": "m-gone"})
    env.selection.outcome = Outcome("deploy", "fine", factor_model(seed=3), report(0.5, "als"))
    through_the_index()
    assert env.selection.champions == [None]
    assert "m-gone holds no published version" in row(env.db)["metrics"]["training"]["champion_problem"]


def test_small_data_passes_validation(env):
    assert tasks.validate_training_data("acme", RUN)["interactions"] == 400
    assert row(env.db)["status"] == "running"



@pytest.fixture
def real_selection(env, monkeypatch):
    """The real workers.training.selection back in place of the fake."""
    monkeypatch.setitem(sys.modules, "workers.training.selection", selection)
    monkeypatch.setattr(workers.training, "selection", selection)
    return env


def test_real_selection_on_too_little_data_deploys_popularity(real_selection):
    env = real_selection
    assert through_the_index()["decision"] == "popularity"
    tasks.build_faiss_index("acme", RUN)
    tasks.validate_index("acme", RUN)
    deploy()
    recorded = row(env.db)
    assert (recorded["status"], recorded["decision"]) == ("success", "popularity")
    assert recorded["decision_reason"].startswith("too little data to judge a learned model")
    assert manifest(env.base)["model"]["family"] == "popularity"


def test_real_selection_deploys_then_an_equal_challenger_from_the_same_data_deploys_too(real_selection, small_tenant):
    """Same data twice: the second run's challenger is the champion's equal, within the tolerance: deploy."""
    env = real_selection
    export_tenant(env.base, small_tenant)
    runs.start(env.db, CHAMPION_RUN, "acme")
    result = tasks.train_embeddings("acme", CHAMPION_RUN, budget_s=1.0)
    assert result["decision"] == "deploy" and result["ndcg_lift"] > 0.2
    tasks.build_faiss_index("acme", CHAMPION_RUN)
    tasks.validate_index("acme", CHAMPION_RUN)
    deploy(CHAMPION_RUN)
    runs.start(env.db, RUN, "acme")
    again = tasks.train_embeddings("acme", RUN, budget_s=1.0)
    assert again["decision"] == "deploy" and again["serving_version"] == artifacts.version_for(CHAMPION_RUN, "acme")
    comparison = row(env.db)["metrics"]["training"]["champion"]
    assert comparison["version"] == again["serving_version"] and comparison["verdict"] == "challenger"


def test_a_model_that_loses_to_popularity_fails_the_run_with_its_figures_recorded(env, monkeypatch):
    from workers.exceptions import QualityGateError

    def losing(arrays, champion, **options):
        error = QualityGateError("als nDCG@10 0.1225 does not beat popularity 0.1648 on the test period")
        error.report = report(None, "als")
        raise error

    monkeypatch.setattr(sys.modules["workers.training.selection"], "select", losing)
    with pytest.raises(QualityGateError, match="does not beat popularity"):
        through_the_index()
    recorded = row(env.db)
    assert (recorded["status"], recorded["stage"]) == ("failed", "train_embeddings")
    assert "does not beat popularity" in recorded["failure_reason"]
    assert recorded["metrics"]["training"]["search"][0]["family"] == "als"
    assert not (storage.staging_dir(env.base, "acme", artifacts.run_key(RUN)) / "model.json").exists()
