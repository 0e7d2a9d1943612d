"""Every DAG imports cleanly and follows the house rules."""

import pytest

from stackctl.model import settings
from tests.unit.workers.test_tenants import IDS


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(settings.REPO / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert dagbag.dags


def test_every_dag_is_tagged_without_catchup(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.catchup is False, f"{dag_id} catches up"


def test_every_task_fits_inside_the_broker_visibility_timeout(dagbag):
    source = settings.load_source()
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            assert task.execution_timeout is not None, f"{dag.dag_id}.{task.task_id} has no execution_timeout"
            assert task.execution_timeout.total_seconds() <= source["max_task_timeout_s"]
    assert settings.visibility_timeout_s(source) > source["max_task_timeout_s"]


def test_tasks_use_queues_that_a_pool_serves(dagbag):
    queues = {pool["queue"] for pool in settings.load_source()["worker_pools"].values()}
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            assert task.queue in queues, f"{dag.dag_id}.{task.task_id} is queued on {task.queue}"


def test_training_deploys_only_after_the_recall_gate(dagbag):
    dag = dagbag.dags["tenant_model_training"]
    deploy = dag.get_task("train_tenant.deploy_to_production")
    assert deploy.get_flat_relative_ids(upstream=True) >= {
        "train_tenant.validate_training_data", "train_tenant.train_embeddings",
        "train_tenant.build_faiss_index", "train_tenant.validate_index",
    }
    assert deploy.trigger_rule == "all_success"
    for task_id in ("train_embeddings", "build_faiss_index", "validate_index"):
        task = dag.get_task(f"train_tenant.{task_id}")
        assert (task.queue, task.pool) == ("heavy", "heavy")
    assert dag.get_task("train_tenant.validate_training_data").queue == "light"
    assert dag.params["tenant_id"] is None


@pytest.mark.parametrize(("tenant_id", "valid"), IDS.items())
def test_a_tenant_id_param_takes_exactly_the_slugs(dagbag, tenant_id, valid):
    """The owner's rule (workers/tenants.py), "acme\\n" refused: by the DAG's own Param, and by the
    serialized DAG's params, which the server validates a triggered run's conf with."""
    from airflow.exceptions import ParamValidationError as ServerRefusal
    from airflow.sdk.exceptions import ParamValidationError
    from airflow.serialization.serialized_objects import DagSerialization

    dags = [dag for dag in dagbag.dags.values() if "tenant_id" in dag.params]
    assert {dag.dag_id for dag in dags} == {"tenant_model_training", "data_quality_check"}
    for dag in dags:
        param = dag.params.get_param("tenant_id")
        server = DagSerialization.from_dict(DagSerialization.to_dict(dag)).params.deep_merge({"tenant_id": tenant_id})
        if valid:
            assert param.resolve(tenant_id) == tenant_id
            assert server.validate()["tenant_id"] == tenant_id
        else:
            with pytest.raises(ParamValidationError):
                param.resolve(tenant_id)
            with pytest.raises(ServerRefusal):
                server.validate()
