"""data_quality_check's structure: alerting runs whatever the check tasks ended in, and a failed check
still fails the run (Airflow 3 decides a run's state by its leaf tasks alone)."""

import pytest

from stackctl.model import settings

CHECKS = {"check_data_completeness", "check_data_freshness", "check_for_anomalies"}


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(settings.REPO / "dags" / "data_quality_check.py"))
    assert bag.import_errors == {}
    return bag.dags["data_quality_check"]


def test_alerting_waits_for_every_check_and_runs_whatever_they_ended_in(dag):
    decide = dag.get_task("decide_alert_needed")
    assert decide.upstream_task_ids >= CHECKS
    assert decide.trigger_rule == "all_done"
    for branch in ("send_alert", "skip_alert"):  # no check upstream of them directly, to leave them upstream_failed
        upstream = dag.get_task(branch).upstream_task_ids
        assert "decide_alert_needed" in upstream and not upstream & CHECKS


def test_a_failed_check_leaves_a_leaf_upstream_failed_so_the_run_fails(dag):
    for check in CHECKS:
        assert any(task.trigger_rule == "all_success" and not task.downstream_task_ids
                   for task in dag.get_task(check).downstream_list), f"a failed {check} would leave the run green"


def test_the_checks_read_summaries_updated_first_and_a_run_can_recount_them_in_full(dag):
    for check in CHECKS:
        assert "update_summaries" in dag.get_task(check).upstream_task_ids
    assert dag.params.get_param("full_recheck").value is False
    # Empty freshness limits: each tenant's own (dq_tenant_config), not a run-wide default over them.
    assert all(dag.params[key] is None for key in ("interactions_max_age_h", "items_max_age_h", "training_max_age_h"))
