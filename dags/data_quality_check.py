"""Per-tenant completeness, freshness and anomaly checks, pushed down to PostgreSQL, with alerts.

Every 6 hours, or on demand for one tenant. update_summaries first adds the interactions
written since each tenant's watermark to small per-hour summaries (or, with full_recheck,
recounts them from scratch); the checks then run as SQL over those summaries and fixed windows,
with each tenant's thresholds, severities and valid types from dq_tenant_config. Results go to
dq_results (also the history). If a warning or critical check failed, one recovered, or
alerts wait in the outbox, send_alert posts them to Alertmanager; otherwise skip_alert.
Outcomes are also pushed to the Pushgateway as metrics.

Alerting waits for every check task but runs whatever they ended in, so a failed check task
holds back none of the others' alerts. export_metrics needs every check to succeed: as a leaf,
it is what fails the run when one did not (Airflow decides a run's state by its leaves).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, TriggerRule, dag, task

from workers.tenants import PARAM_PATTERN


@dag(
    schedule="0 */6 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["data-quality", "alerting"],
    params={
        "tenant_id": Param(None, type=["null", "string"], pattern=PARAM_PATTERN, maxLength=63,
                           description="Check one tenant (a slug); leave empty for every active tenant."),
        "full_recheck": Param(False, type="boolean",
                              description="Recount every summary from all history instead of from the watermarks."),
        # Empty: each tenant's own limit (dq_tenant_config); a number overrides it for this run.
        "interactions_max_age_h": Param(None, type=["null", "number"], minimum=1, maximum=24 * 30),
        "items_max_age_h": Param(None, type=["null", "number"], minimum=1, maximum=24 * 365),
        "training_max_age_h": Param(None, type=["null", "number"], minimum=1, maximum=24 * 30),
    },
    default_args={
        "queue": "light",
        "retries": 2,
        "retry_delay": pendulum.duration(seconds=15),
        "retry_exponential_backoff": True,
        "max_retry_delay": pendulum.duration(minutes=5),
        "execution_timeout": pendulum.duration(minutes=20),
    },
)
def data_quality_check():
    @task
    def list_tenants(params=None) -> list[str]:
        from workers.platform_db.tenants import list_tenants

        return list_tenants(params["tenant_id"])

    @task
    def as_of(dag_run=None) -> str:
        """The run's reference time (its data interval's end, or when it was triggered), never now()."""
        return (dag_run.data_interval_end or dag_run.run_after).isoformat()

    @task
    def update_summaries(tenants: list[str], params=None) -> dict:
        from workers.dq import tasks

        return tasks.update_summaries(tenants, full=params["full_recheck"])

    @task
    def check_data_completeness(tenants: list[str], as_of: str, run_id=None) -> dict:
        from workers.dq import tasks

        return tasks.check_data_completeness(tenants, run_id, as_of)

    @task
    def check_data_freshness(tenants: list[str], as_of: str, run_id=None, params=None) -> dict:
        from workers.dq import tasks

        limits = {key: params[key] for key in ("interactions_max_age_h", "items_max_age_h", "training_max_age_h")}
        return tasks.check_data_freshness(tenants, run_id, as_of, limits)

    @task
    def check_for_anomalies(tenants: list[str], as_of: str, run_id=None) -> dict:
        from workers.dq import tasks

        return tasks.check_for_anomalies(tenants, run_id, as_of)

    @task.branch(trigger_rule=TriggerRule.ALL_DONE)
    def decide_alert_needed(as_of: str, run_id=None) -> str:
        from workers.dq import tasks

        return tasks.decide_alert_needed(run_id, as_of)

    @task(retries=3)
    def send_alert(as_of: str, run_id=None) -> dict:
        from workers.dq import tasks

        return tasks.send_alert(run_id, as_of)

    @task
    def skip_alert() -> None:
        """Nothing failed, recovered or waits in the outbox."""

    @task
    def export_metrics(run_id=None) -> int:
        from workers.dq import tasks

        return tasks.export_metrics(run_id)

    tenants, reference = list_tenants(), as_of()
    summarised = update_summaries(tenants)
    checked = [
        check_data_completeness(tenants, reference),
        check_data_freshness(tenants, reference),
        check_for_anomalies(tenants, reference),
    ]
    summarised >> checked
    decision = decide_alert_needed(reference)
    checked >> decision >> [send_alert(reference), skip_alert()]
    checked >> export_metrics()


data_quality_check()
