"""FreshPoC_E2E: ingest a dbt repository, mine its lineage graph, analyse it, store it, report on it.

Five stages, each a job on its reference service (services/freshpoc), reached through its
Airflow HTTP connection. Each stage starts the job with the DAG run id as Idempotency-Key; a
job that ends within a second is done in that call, a longer one is waited for on the
triggerer (no worker slot held). Then it checks the result: a 4xx fails at once with the
service's message, a 5xx or timeout is retried with exponential backoff. Manual only, one run
at a time; the report's location is report_generate's result.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag

from workers.freshpoc.services import JOB_SERVICES
from workers.freshpoc.stage import JOB_WAITS, SAMPLE_PROJECT, ServiceJobOperator


@dag(
    dag_id="FreshPoC_E2E",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["poc", "local"],
    params={
        "repository": Param(
            str(SAMPLE_PROJECT), type="string", minLength=1, maxLength=2000,
            description="The dbt project's repository: an absolute path, a file:// URL or a git URL.",
        ),
        "job_wait": Param(
            "adaptive", enum=sorted(JOB_WAITS),
            description="How stages wait for their jobs: 'adaptive' (the start's answer waits up to 1 s for "
                        "the job, then polls from 0.2 s backing off to 5 s) or 'fixed_5s' (the way before, "
                        "for the benchmark: /health, start, a poll every 5 s).",
        ),
    },
    default_args={
        "queue": "light",
        "retries": 3,
        "retry_delay": pendulum.duration(seconds=10),
        "retry_exponential_backoff": True,
        "max_retry_delay": pendulum.duration(minutes=5),
        "execution_timeout": pendulum.duration(minutes=30),
    },
)
def freshpoc_e2e():
    stages = [  # one per job service, in pipeline order (workers/freshpoc/services.py)
        ServiceJobOperator(
            task_id=service.stage, http_conn_id=service.conn_id, job_wait="{{ params.job_wait }}",
            payload={"repository": "{{ params.repository }}"} if service.name == "ingestion" else {},
        )
        for service in JOB_SERVICES
    ]
    for upstream, downstream in zip(stages, stages[1:], strict=False):
        upstream >> downstream


freshpoc_e2e()
