"""Health probes for each component of the native stack."""

from __future__ import annotations

import httpx
from celery import Celery
from kombu.exceptions import OperationalError

from stackctl.model import processes
from stackctl.native.stack import NativeStack
from stackctl.render import web_auth

# Components that the api-server's /api/v2/monitor/health reports on.
API_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


def api_health(stack: NativeStack) -> dict | None:
    """The api-server's health document, or None while it does not answer."""
    try:
        response = httpx.get(f"{stack.url('api')}/api/v2/monitor/health", timeout=5)
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


def flower_ready(stack: NativeStack, user: str, password: str) -> bool:
    try:
        response = httpx.get(f"{stack.url('flower')}/api/workers", auth=(user, password), timeout=5)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def http_ok(url: str, auth: tuple[str, str] | None = None) -> bool:
    try:
        return httpx.get(url, auth=auth, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def listener_auth(stack: NativeStack, port: str) -> tuple[str, str] | None:
    """What an operator's client sends to a listener: the admin user with the password of a web config
    (Prometheus, Alertmanager, the Pushgateway) or a service's token (which it takes as the basic
    password), else nothing."""
    secret = web_auth.LISTENER_PASSWORDS.get(port) or processes.TOKEN_SECRETS.get(port)
    return (stack.source["admin_user"], stack.read_secret(secret)) if secret else None


def listener_ok(stack: NativeStack, port: str, path: str) -> bool:
    return http_ok(f"{stack.url(port)}{path}", listener_auth(stack, port))


def inference_ready(stack: NativeStack) -> bool:
    return http_ok(f"{stack.url('inference')}/health")
