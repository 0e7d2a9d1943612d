"""The Celery worker pools: one worker program per pool, each subscribed to its own queue."""

from __future__ import annotations

from typing import Any

from stackctl.errors import ConfigError
from stackctl.model.control_plane import CELERY_SECRETS, airflow, service_ports
from stackctl.model.process import CELERY, INSTANCE, Phase, Probe, Process, celery_hostname, worker_group
from stackctl.model.target import Target
from workers import celery_capacity, library_preload


def processes(source: dict[str, Any], target: Target) -> list[Process]:
    task_reaches = ("api", "redis", "postgres", "statsd", "inference", "alertmanager", "pushgateway",
                    *service_ports(source))
    found = []
    for pool, spec in source["worker_pools"].items():
        found.append(airflow(
            target, f"worker-{pool}",
            # Celery's autoscaler: min processes when idle, up to max while tasks wait.
            ["celery", "worker", "--queues", spec["queue"],
             "--autoscale", f"{spec['max_processes']},{spec['min_processes']}",
             "--celery-hostname", celery_hostname(pool, INSTANCE),
             # No worker serves its task logs (Airflow's log server binds 0.0.0.0): they are in
             # the host's one log folder, or, across hosts, in object storage (remote logging).
             "--skip-serve-logs"],
            Phase.WORKERS, group=worker_group(pool),
            env={"AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": str(spec["prefetch_multiplier"]),
                 celery_capacity.POOL_ENV: pool,  # the pool its capacity gauges report (workers/celery_capacity.py)
                 # Libraries its main process imports before it forks (workers/library_preload.py).
                 **preload_environment(spec)},
            reaches=task_reaches, probe=Probe(CELERY),
            # Only the broker's: tasks get their connections from the api-server (TASK_CONNECTIONS).
            secrets=CELERY_SECRETS,
            memory_limit_mb=int(spec["memory_limit_mb"]),
            # Celery's warm shutdown: running tasks get until the longest allowed task ends.
            stop_timeout_s=int(source["max_task_timeout_s"]) + 60, stop_as_group=False,
            instances=int(spec["instances"]),
        ))
    return found


def preload_environment(spec: dict[str, Any]) -> dict[str, str]:
    """PRELOAD_ENV for a worker pool that names libraries to preload (worker_pools.<pool>.preload), else nothing."""
    modules = spec.get("preload") or []
    if not isinstance(modules, list) or not all(isinstance(name, str) for name in modules):
        raise ConfigError(f"worker_pools.*.preload: a list of module names, got {modules!r}")
    value = ",".join(modules)
    try:
        library_preload.modules_from_env({library_preload.PRELOAD_ENV: value})
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return {library_preload.PRELOAD_ENV: value} if modules else {}
