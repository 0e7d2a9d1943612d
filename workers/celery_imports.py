"""Imported once by each Celery worker process before it forks its pool (Celery's `imports` setting).

Airflow 3 forks a fresh process for every task from the pool process. Modules the pool
process already holds are inherited for free; anything else (the Task SDK's DAG and task
decorators are imported lazily) is imported again by every task, which costs about 50 ms of
CPU per task on this machine. Importing them here once removes that cost.

It is also the one place where a worker's main process can join in before its consumer
exists: on Celery's worker_init signal it adds workers/celery_capacity.py's bootstep, which
reports the pool processes the worker runs (its online capacity under --autoscale) as StatsD
gauges. worker_init is sent in the main process only.

Each pool then imports what its config.yaml entry names (worker_pools.<pool>.preload), in its
main process only (workers/library_preload.py): both pools the Postgres hook, the storage file
systems and the ORM mappers every connection lookup configures; the heavy pool also numpy,
scipy.sparse, pyarrow, implicit and faiss, after which it proves that a forked process can still
run their OpenMP parallel regions. The light pool pays no ML library's memory.
"""

import pendulum  # noqa: F401
from airflow.providers.http.hooks.http import HttpHook  # noqa: F401 (each FreshPoC stage's client: about 0.3 s)
from airflow.sdk import DAG, BaseOperator, Param, dag, task  # noqa: F401
from celery.signals import worker_init

from workers import celery_capacity, library_preload

worker_init.connect(celery_capacity.on_worker_init, weak=False, dispatch_uid="workers.celery_capacity")

library_preload.preload_from_env()
