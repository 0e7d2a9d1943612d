"""Redis over TLS (config.yaml's tls), as the model runs it and its clients reach it: the tasks'
connection through workers/hooks.py, Celery's broker and result URLs, the exporter and the
stack's probe all verify Redis's certificate against the stack's CA; a client without TLS, one
that trusts another CA, and any client of a Redis whose certificate expired are refused, each
with an error that says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import redis
from celery import Celery

from stackctl.model import settings
from stackctl.model.redis_users import CACHE_WRITER, EXPORTER, password_secret
from stackctl.model.target import TLS_CA
from stackctl.native import broker, certificates
from stackctl.native.supervisor import native_processes
from workers import hooks
from workers.training import cache

from .conftest import expire_host_certificate, rendered_stack, started

ROUND_TRIP = Path(__file__).with_name("celery_round_trip.py")


def test_the_tasks_cache_connection_verifies_redis_and_works(model_redis_tls, monkeypatch):
    stack, secret_values = model_redis_tls
    assert " " in str(stack.home)  # the CA's path, in a URL and in a connection's extra
    fields = settings.render_connections(stack.source, stack.target(secret_values))[hooks.REDIS_CONN_ID]
    monkeypatch.setenv("AIRFLOW_CONN_PLATFORM_REDIS", json.dumps(fields))
    client = hooks.redis_client(hooks.REDIS_CONN_ID)
    assert client.connection_pool.connection_kwargs["ssl_ca_certs"] == str(stack.tls_dir / TLS_CA)
    assert cache.write_popular(client, "acme", [2, 1]) == 2
    assert cache.read_popular(client, "acme") == [2, 1]


def client(stack, secret_values, **tls) -> redis.Redis:
    return redis.Redis(host=stack.bind_host, port=stack.ports["redis"], username=CACHE_WRITER,
                       password=secret_values[password_secret(CACHE_WRITER)], socket_timeout=5, **tls)


def test_a_client_without_tls_is_refused(model_redis_tls):
    with pytest.raises(redis.exceptions.ConnectionError):
        client(*model_redis_tls).ping()


def test_a_client_that_trusts_another_ca_is_refused_and_says_why(model_redis_tls, tmp_path):
    other = tmp_path / "other"
    certificates.ensure(other, "other", {"cp": ["127.0.0.1"]})
    with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
        client(*model_redis_tls, ssl=True, ssl_ca_certs=str(other / TLS_CA)).ping()


def test_a_redis_whose_certificate_expired_is_refused_and_the_client_says_why(tmp_path, monkeypatch):
    stack, secret_values = rendered_stack(tmp_path / "home", tls=True)
    expire_host_certificate(stack, monkeypatch)
    with started(stack, secret_values, "redis"):
        verifying = client(stack, secret_values, ssl=True, ssl_ca_certs=str(stack.tls_dir / TLS_CA))
        deadline = time.monotonic() + 10
        while True:
            try:
                verifying.ping()
                pytest.fail("a client accepted Redis's expired certificate")
            except redis.exceptions.ConnectionError as exc:
                if "certificate has expired" in str(exc):
                    break
                assert time.monotonic() < deadline, str(exc)  # refused only until Redis listens
                time.sleep(0.1)
    assert not broker.is_ready(stack, secret_values)  # the stack's probe verifies it too


def test_celery_runs_a_task_over_tls_and_verifies_redis(model_redis_tls, tmp_path):
    stack, secret_values = model_redis_tls
    rendered = settings.render_settings(stack.source, stack.target(secret_values))["celery"]
    # The same URL with another CA: kombu refuses Redis.
    other = tmp_path / "other"
    certificates.ensure(other, "other", {"cp": ["127.0.0.1"]})
    ca = quote(str(stack.tls_dir / TLS_CA))
    assert rendered["broker_url"].endswith(f"?ssl_cert_reqs=required&ssl_ca_certs={ca}")
    distrusting = Celery(broker=rendered["broker_url"].replace(ca, quote(str(other / TLS_CA))))
    with pytest.raises(Exception, match="certificate verify failed"), distrusting.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
    env = {**os.environ, "CELERY_BROKER_URL": rendered["broker_url"],
           "CELERY_RESULT_BACKEND": rendered["result_backend"]}
    result = subprocess.run([sys.executable, str(ROUND_TRIP)], capture_output=True, text=True, timeout=60, env=env)
    assert result.stdout == "5\n[{'ok': 'pong'}]\n[]\n", result.stderr[-3000:]


def test_the_exporter_reads_redis_over_tls(model_redis_tls):
    stack, secret_values = model_redis_tls
    process = next(p for p in native_processes(stack, secret_values) if p.name == "redis-exporter")
    assert any(arg.startswith("--redis.addr=rediss://") for arg in process.argv)
    with started(stack, secret_values, "redis-exporter") as exporter:
        deadline = time.monotonic() + 20
        while True:
            try:
                metrics = httpx.get(f"http://127.0.0.1:{stack.ports['redis_exporter']}/metrics", timeout=5).text
                break
            except httpx.TransportError:
                assert exporter.poll() is None and time.monotonic() < deadline, "the exporter did not start"
                time.sleep(0.2)
        assert "\nredis_up 1\n" in metrics
        assert 'redis_key_size{db="db0",key="light"} 0' in metrics
    assert f"--redis.user={EXPORTER}" in process.argv
