"""Imported once by each Celery worker process before it forks its pool (Celery's `imports` setting).

Airflow 3 forks a fresh process for every task from the pool process. Modules the pool
process already holds are inherited for free; anything else (the Task SDK's DAG and task
decorators are imported lazily) is imported again by every task, which costs about 50 ms of
CPU per task on this machine. Importing them here once removes that cost.
"""

import pendulum  # noqa: F401
from airflow.sdk import DAG, BaseOperator, Param, dag, task  # noqa: F401
