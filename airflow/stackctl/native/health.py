"""Health of the native stack's components: each process's probe (model/process.py Probe), asked natively."""

from __future__ import annotations

import ssl

import httpx
from celery import Celery
from kombu.exceptions import OperationalError

from stackctl.model.control_plane import API_HEALTH_COMPONENTS, API_HEALTH_PATH
from stackctl.model.listeners import BASIC, BEARER, CREDENTIALS, WEB_CONFIG
from stackctl.model.process import AIRFLOW_JOB, CELERY, HTTP, POSTGRES, REDIS, Process
from stackctl.native import broker, postgres
from stackctl.native.stack import NativeStack

# Components that the api-server's /api/v2/monitor/health reports on.
API_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


def api_health(stack: NativeStack) -> dict | None:
    """The api-server's health document, or None while it does not answer."""
    try:
        response = httpx.get(f"{stack.url('api')}{API_HEALTH_PATH}", timeout=5, verify=stack.verify)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def unhealthy_api_components(health: dict | None) -> list[str]:
    if health is None:
        return ["api-server"]
    return [name for name in API_COMPONENTS if (health.get(name) or {}).get("status") != "healthy"]


def broker_errors(app: Celery) -> tuple[type[BaseException], ...]:
    """What the broker's client raises while the broker is down or restarting: kombu re-raises a
    refused connection as its OperationalError, and redis-py's own errors (right after a Redis
    restart) are not OSErrors either."""
    return (OSError, OperationalError, *app.connection().connection_errors)


def celery_pongs(broker_url: str, timeout: float = 2.0) -> set[str]:
    """Hostnames of the Celery workers that answer a ping on this broker."""
    app = Celery(broker=broker_url)
    try:
        replies = app.control.ping(timeout=timeout) or []
    except broker_errors(app):
        return set()
    finally:
        app.close()
    return {hostname for reply in replies for hostname in reply}


def worker_processes(broker_url: str, timeout: float = 5.0) -> dict[str, dict]:
    """Each answering worker's autoscaler: {hostname: {current, min, max, pids}} from `celery inspect stats`."""
    app = Celery(broker=broker_url)
    try:
        replies = app.control.inspect(timeout=timeout).stats() or {}
    except broker_errors(app):
        return {}
    finally:
        app.close()
    return {
        hostname: {**{key: stats.get("autoscaler", {}).get(key) for key in ("current", "min", "max")},
                   "pids": stats.get("pool", {}).get("processes", [])}
        for hostname, stats in replies.items()
    }


def missing_workers(stack: NativeStack, pongs: set[str]) -> list[str]:
    expected = [name for pool in stack.source["worker_pools"] for name in stack.worker_hostnames(pool)]
    return [name for name in expected if name not in pongs]


def http_ok(url: str, auth: tuple[str, str] | None = None, verify: ssl.SSLContext | bool = True) -> bool:
    try:
        return httpx.get(url, auth=auth, timeout=5, verify=verify).status_code == 200
    except httpx.HTTPError:
        return False


def listener_auth(stack: NativeStack, port: str) -> tuple[str, str] | None:
    """What an operator's client sends to a listener that checks basic auth (Flower, Prometheus,
    Alertmanager, the Pushgateway) or a bearer token (which the services take as the basic password):
    the admin user and the listener's secret; else nothing."""
    credential = CREDENTIALS.get(port)
    if credential is None or credential.scheme not in (BASIC, WEB_CONFIG, BEARER):
        return None
    return stack.source["admin_user"], stack.read_secret(credential.secret)


def listener_ok(stack: NativeStack, port: str, path: str) -> bool:
    return http_ok(f"{stack.url(port)}{path}", listener_auth(stack, port), stack.verify)


def pool_hostnames(stack: NativeStack, process: Process) -> list[str]:
    return stack.worker_hostnames(process.pool) if process.pool else []


def ready(stack: NativeStack, process: Process, secret_values: dict[str, str]) -> bool:
    """Whether a process answers its probe (a process without one is ready once it runs)."""
    probe = process.probe
    if probe is None:
        return True
    if probe.kind == HTTP:
        return listener_ok(stack, probe.port, probe.path)
    if probe.kind == POSTGRES:
        return postgres.is_ready(stack, secret_values["postgres_superuser_password"])
    if probe.kind == REDIS:
        return broker.is_ready(stack, secret_values)
    if probe.kind == CELERY:
        return not set(pool_hostnames(stack, process)) - celery_pongs(broker.url(stack, secret_values))
    if probe.kind == AIRFLOW_JOB:  # as the api-server's health document reports it, once it answers
        document = api_health(stack)
        return document is not None and API_HEALTH_COMPONENTS[probe.job] not in unhealthy_api_components(document)
    raise ValueError(f"unknown probe kind {probe.kind!r} of {process.name}")


def why_not_ready(stack: NativeStack, process: Process, secret_values: dict[str, str]) -> str:
    """What a late process's probe says, where it says more than no."""
    kind = process.probe.kind if process.probe else None
    if kind == CELERY:
        pongs = celery_pongs(broker.url(stack, secret_values))
        return "no pong from: " + ", ".join(name for name in pool_hostnames(stack, process) if name not in pongs)
    if kind == AIRFLOW_JOB:
        return "unhealthy: " + ", ".join(unhealthy_api_components(api_health(stack)))
    return ""
