"""FreshPoC_E2E's structure: one stage per job service of workers/freshpoc/services.py, in its order, each a
deferrable job on its service's HTTP connection."""

from datetime import timedelta
from pathlib import Path

import pytest

from stackctl.model import settings
from workers.freshpoc.services import JOB_SERVICES


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(settings.REPO / "dags" / "freshpoc_e2e.py"))
    assert bag.import_errors == {}
    return bag.dags["FreshPoC_E2E"]


def test_manual_one_run_at_a_time_and_tagged(dag):
    assert dag.timetable.__class__.__name__ == "NullTimetable" and dag.max_active_runs == 1  # schedule=None
    assert set(dag.tags) == {"poc", "local"}


def test_the_job_services_stages_run_in_order_on_their_connections(dag):
    order = [service.stage for service in JOB_SERVICES]
    assert [task.task_id for task in dag.topological_sort()] == order
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}
    connections = settings.load_source()["connections"]
    for service in JOB_SERVICES:
        conn_id = dag.get_task(service.stage).http_conn_id
        assert conn_id == service.conn_id and connections[conn_id]["conn_type"] == "http"


def test_retries_backoff_timeout_and_queue(dag):
    for task in dag.tasks:
        assert task.retries == 3 and task.retry_exponential_backoff
        assert task.execution_timeout == timedelta(minutes=30)
        assert task.queue == "light"


def test_the_default_repository_is_the_bundled_sample(dag):
    default = Path(dag.params["repository"])
    assert (default / "dbt_project.yml").is_file()
    assert dag.get_task("ingestion_trigger").payload == {"repository": "{{ params.repository }}"}
