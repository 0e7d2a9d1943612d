"""Per-tenant model selection against the serving model, a FAISS index where the model has item vectors,
deployed as a new version, with a cache warm-up.

Daily at 02:00 for every active tenant, or on demand for one (`{"tenant_id": "acme"}`).
Each tenant is one mapped branch, so tenants train in parallel on the heavy pool and one
tenant's failure does not stop the others. Data and quality failures fail at once; I/O
retries with backoff. The cache warm-up is best effort: its failure shows, but the tenant
counts as deployed.

train_embeddings selects a model on a validation period, judges it on the test period against
popularity and against the serving version (the champion), and decides (workers/training/tasks.py):
  deploy         the selected model goes through the index, the recall gate and the deploy
  popularity     too little data to judge a learned model: a popularity model is deployed (no index:
                 it has no item vectors) and the run records why
  keep_champion  the challenger is worse than the champion beyond the tolerance: the run ends
                 'champion_kept', the index, deploy and cache tasks skip, the serving version stays
`check_tenant_outcome` (all_done) runs in every case; it fails the run for any tenant neither deployed
nor kept at its champion.

Deploys of one tenant take turns under a lock in the platform database, whatever starts them
(this schedule, a backfill, a cleared task of an old run), and an older run's model never
replaces a newer one's: it ends "superseded", production left alone (workers/training/deploys.py).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task, task_group

from workers.tenants import PARAM_PATTERN

HEAVY = {"queue": "heavy", "pool": "heavy", "retries": 1}


@dag(
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["ml", "training", "faiss"],
    params={
        "tenant_id": Param(
            None, type=["null", "string"], pattern=PARAM_PATTERN, maxLength=63,
            description="Train one tenant (a slug); leave empty for every active tenant.",
        ),
    },
    default_args={
        "queue": "light",
        "retries": 3,
        "retry_delay": pendulum.duration(seconds=20),
        "retry_exponential_backoff": True,
        "max_retry_delay": pendulum.duration(minutes=10),
        "execution_timeout": pendulum.duration(minutes=30),
    },
)
def tenant_model_training():
    @task
    def list_tenants(params=None) -> list[str]:
        from workers.platform_db.tenants import list_tenants

        return list_tenants(params["tenant_id"])

    @task_group
    def train_tenant(tenant_id: str):
        @task
        def validate_training_data(tenant_id: str, run_id=None) -> dict:
            from workers.training import tasks

            return tasks.validate_training_data(tenant_id, run_id)

        @task(**HEAVY)
        def train_embeddings(tenant_id: str, run_id=None) -> dict:
            from workers.training import tasks

            return tasks.train_embeddings(tenant_id, run_id)

        @task(**HEAVY)
        def build_faiss_index(tenant_id: str, run_id=None) -> dict:
            from workers.training import tasks

            return tasks.build_faiss_index(tenant_id, run_id)

        @task(**HEAVY)
        def validate_index(tenant_id: str, run_id=None) -> dict:
            from workers.training import tasks

            return tasks.validate_index(tenant_id, run_id)

        @task
        def deploy_to_production(tenant_id: str, run_id=None, dag_run=None) -> dict:
            from workers.training import tasks

            return tasks.deploy_to_production(tenant_id, run_id, dag_run.data_interval_end, dag_run.run_after)

        @task(retries=1, execution_timeout=pendulum.duration(minutes=5))
        def update_redis_cache(tenant_id: str, run_id=None) -> dict:
            from workers.training import tasks

            return tasks.update_redis_cache(tenant_id, run_id)

        @task(trigger_rule="all_done", retries=0)
        def check_tenant_outcome(tenant_id: str, run_id=None) -> dict:
            from workers.training import tasks

            return tasks.tenant_outcome(tenant_id, run_id)

        deployed = deploy_to_production(tenant_id)
        (
            validate_training_data(tenant_id)
            >> train_embeddings(tenant_id)
            >> build_faiss_index(tenant_id)
            >> validate_index(tenant_id)
            >> deployed
            >> update_redis_cache(tenant_id)
            >> check_tenant_outcome(tenant_id)
        )

    train_tenant.expand(tenant_id=list_tenants())


tenant_model_training()
