"""tenant_model_training's structure for the training decisions: when the champion is kept, the tasks after
train_embeddings skip (workers/training/tasks.py raises AirflowSkipException in the first of them, and
all_success skips the rest), while check_tenant_outcome, the run's only leaf per tenant, runs whatever they
ended in and decides the run's state (Airflow 3 decides it by the leaf tasks)."""

import pytest

from stackctl.model import settings

AFTER_TRAINING = ("build_faiss_index", "validate_index", "deploy_to_production", "update_redis_cache")


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(settings.REPO / "dags" / "tenant_model_training.py"))
    assert bag.import_errors == {}
    return bag.dags["tenant_model_training"]


def test_a_skip_after_training_runs_down_the_chain_to_the_outcome(dag):
    chain = ["train_embeddings", *AFTER_TRAINING, "check_tenant_outcome"]
    for upstream, downstream in zip(chain[:-1], chain[1:], strict=True):
        assert dag.get_task(f"train_tenant.{upstream}").downstream_task_ids == {f"train_tenant.{downstream}"}
    for task_id in AFTER_TRAINING:
        assert dag.get_task(f"train_tenant.{task_id}").trigger_rule == "all_success"


def test_the_outcome_runs_whatever_came_before_and_is_the_only_leaf(dag):
    assert dag.get_task("train_tenant.check_tenant_outcome").trigger_rule == "all_done"
    assert [task.task_id for task in dag.leaves] == ["train_tenant.check_tenant_outcome"]
