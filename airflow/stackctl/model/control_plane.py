"""The Airflow control plane's processes: api-server, scheduler, dag-processor, triggerer, Flower, and
the one-shot init.

The secrets follow each process (model/secrets.py): the control plane's Airflow processes sign and
validate tokens and read the metadata DB; only the api-server holds the tasks' connections, which
Airflow 3's execution API serves a task on its worker's behalf.
"""

from __future__ import annotations

from typing import Any

from stackctl.model import settings
from stackctl.model.process import (
    AIRFLOW,
    AIRFLOW_JOB,
    CONTROLPLANE,
    HTTP,
    Phase,
    Probe,
    Process,
    Scrape,
)
from stackctl.model.redis_users import CELERY, password_secret
from stackctl.model.secrets import SecretFile, connection_secrets
from stackctl.model.target import TLS_CERT, TLS_KEY, Target
from workers.freshpoc import services as freshpoc_services

CONTROL_PLANE_SECRETS = ("fernet_key", "airflow_db_password", "jwt_secret")
# Celery's broker and result backend, both Redis, as its user.
CELERY_SECRETS = (password_secret(CELERY),)
# The FreshPoC job services' connections (their token): the tasks start jobs, the triggerer polls them.
FRESHPOC_JOB_CONNECTIONS = tuple(service.conn_id for service in freshpoc_services.JOB_SERVICES)
# The secret-bearing connections tasks use. Airflow 3's execution API serves a task every
# connection its worker does not hold, from the api-server's own: so only the api-server holds
# these, and a worker host holds no database, storage or service credential.
TASK_CONNECTIONS = ("platform_db", "platform_redis", "inference_api", "alertmanager", "pushgateway",
                    *FRESHPOC_JOB_CONNECTIONS)
# The processes that look connections up on the tasks' behalf: the api-server for the execution API,
# the triggerer for the triggers it runs. With a secrets backend (ansible's common_secrets_backend)
# they read it instead of holding the tasks' connections.
LOOKS_UP_FOR_TASKS = ("api-server", "triggerer")
# What the api-server's health document calls each job (/api/v2/monitor/health).
API_HEALTH_COMPONENTS = {"DagProcessorJob": "dag_processor", "TriggererJob": "triggerer"}
API_HEALTH_PATH = "/api/v2/monitor/health"


def airflow(target: Target, name: str, args: list[str], phase: Phase, group: str = CONTROLPLANE,
            **kwargs: Any) -> Process:
    return Process(name, group, AIRFLOW, (target.exe("airflow"), *args), phase, **kwargs)


def python(target: Target, name: str, group: str, runtime: str, args: list[str], phase: Phase,
           **kwargs: Any) -> Process:
    return Process(name, group, runtime, (target.exe("python"), *args), phase, **kwargs)


def flower_https(target: Target) -> dict[str, str]:
    """Flower's certfile and keyfile options (as FLOWER_* variables: `airflow celery flower` has no
    flag for them), the host's, where it serves HTTPS."""
    if target.scheme("flower") != "https":
        return {}
    return {"FLOWER_CERTFILE": target.tls_file(TLS_CERT), "FLOWER_KEYFILE": target.tls_file(TLS_KEY)}


def service_ports(source: dict[str, Any]) -> tuple[str, ...]:
    """The FreshPoC services' ports (each named as its connection)."""
    return tuple(service.conn_id for service in freshpoc_services.SERVICES)


def processes(source: dict[str, Any], target: Target) -> list[Process]:
    return [
        # It also serves the tasks' connections (TASK_CONNECTIONS) and, on a target with s3://,
        # the storage connection, to the workers through the execution API. It answers its health
        # document with 200 even while a component it reports on is unhealthy: the probe asks only
        # that it serves; the jobs have probes of their own.
        airflow(target, "api-server", ["api-server"], Phase.API, listens=("api",),
                reaches=("postgres", "redis", "statsd"), probe=Probe(HTTP, "api", API_HEALTH_PATH),
                # It has no /metrics of its own: the blackbox exporter probes its health document.
                scrape=(Scrape("api-server", "api", blackbox="http_2xx"),),
                secrets=(*CONTROL_PLANE_SECRETS, "api_secret_key", *connection_secrets(source, TASK_CONNECTIONS)),
                connections=TASK_CONNECTIONS, uses_storage=True),
        airflow(target, "scheduler", ["scheduler"], Phase.SCHEDULING, listens=("scheduler_health",),
                reaches=("postgres", "redis", "statsd"), probe=Probe(HTTP, "scheduler_health", "/health"),
                secrets=(*CONTROL_PLANE_SECRETS, *CELERY_SECRETS)),
        airflow(target, "dag-processor", ["dag-processor"], Phase.SCHEDULING, reaches=("postgres", "statsd"),
                probe=Probe(AIRFLOW_JOB, job="DagProcessorJob"), secrets=CONTROL_PLANE_SECRETS),
        # It serves no logs: its trigger logs are on the api-server's host, or in object storage.
        # Its triggers poll the FreshPoC jobs with their connections' token.
        airflow(target, "triggerer", ["triggerer", "--skip-serve-logs"], Phase.SCHEDULING,
                reaches=("postgres", "statsd", *service_ports(source)), probe=Probe(AIRFLOW_JOB, job="TriggererJob"),
                secrets=(*CONTROL_PLANE_SECRETS, *connection_secrets(source, FRESHPOC_JOB_CONNECTIONS)),
                connections=FRESHPOC_JOB_CONNECTIONS, uses_storage=True),
        # A worker that sent no heartbeat for a minute (a crashed or cut-off host, which sends no
        # worker-offline event) leaves Flower's metrics, so the pool alerts see it gone.
        airflow(target, "flower", ["celery", "flower"], Phase.SERVICES, env={"FLOWER_PURGE_OFFLINE_WORKERS": "60",
                                                                             **flower_https(target)},
                listens=("flower",), reaches=("redis",), probe=Probe(HTTP, "flower", "/api/workers"),
                scrape=(Scrape("flower", "flower"),), secrets=(*CELERY_SECRETS, "flower_password")),
        # One-shot: migrations, the admin user and the Airflow pools. The operator's
        # `stackctl airflow ...` runs with its environment too.
        python(target, "airflow-init", CONTROLPLANE, AIRFLOW,
               ["-m", "stackctl.ops.airflow_init",
                *init_args(source, target.secret_file("admin_password"), pools=target.sizes_airflow_pools)],
               Phase.INIT, reaches=("postgres",),
               secrets=(*CONTROL_PLANE_SECRETS, "api_secret_key", "admin_password", "platform_db_password"),
               # The admin's password: from a file, never its command line.
               secret_files=(SecretFile.of("admin_password"),), connections=("platform_db",), one_shot=True),
    ]


def init_args(source: dict[str, Any], admin_password_file: str, pools: bool = True) -> list[str]:
    """Arguments of `python -m stackctl.ops.airflow_init`: the admin user and (pools) the Airflow pools."""
    args = ["--user", f"{source['admin_user']}:Admin:{admin_password_file}"]
    for name, slots in (settings.airflow_pool_slots(source) if pools else {}).items():
        args += ["--pool", f"{name}:{slots}:{source['airflow_pools'][name]['description']}"]
    return args
