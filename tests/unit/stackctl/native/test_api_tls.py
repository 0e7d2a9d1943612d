"""The api-server over HTTPS (config.yaml's tls): the settings the api-server serves it with are the
stack's certificate and key, and its clients verify it against the stack's CA alone: the task SDK's
client (the execution API, which task tokens reach), stackctl and the blackbox exporter's probe. A
client that trusts another CA, and any client of a certificate that expired, is refused with an error
that says so.

The server here is uvicorn with those files, as `airflow api-server` starts it from [api] ssl_cert and
ssl_key; the api-server itself needs a migrated database, and the benchmark's tls stack runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from stackctl.model import settings
from stackctl.model.target import TLS_CA
from stackctl.native import certificates, health
from stackctl.native.stack import NativeStack

from .conftest import expire_host_certificate, rendered_stack, started

CALL = Path(__file__).with_name("execution_api_call.py")


async def execution_api(scope, receive, send) -> None:
    """An ASGI app that answers every request 200, as the execution API's /health does."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


@contextmanager
def serving(stack: NativeStack, secret_values: dict[str, str]) -> Iterator[None]:
    """uvicorn on the api's port with the [api] ssl_cert and ssl_key the stack renders."""
    api = settings.render_settings(stack.source, stack.target(secret_values))["api"]
    server = uvicorn.Server(uvicorn.Config(execution_api, host=stack.bind_host, port=stack.ports["api"],
                                           ssl_certfile=api["ssl_cert"], ssl_keyfile=api["ssl_key"],
                                           log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def https_api(tmp_path) -> Iterator[tuple[NativeStack, dict[str, str]]]:
    stack, secret_values = rendered_stack(tmp_path / "a home", tls=True)
    with serving(stack, secret_values):
        yield stack, secret_values


def execution_api_call(stack: NativeStack, secret_values: dict[str, str], **api: str) -> str:
    """The task SDK's client, configured as the stack's workers are (or with `api` settings changed), asking
    the execution API's health."""
    rendered = settings.render_settings(stack.source, stack.target(secret_values))
    env = {**os.environ, **settings.to_env({"api": {**rendered["api"], **api}}),
           "AIRFLOW__WORKERS__EXECUTION_API_RETRIES": "1"}  # a refusal is final: no backing off
    done = subprocess.run([sys.executable, str(CALL), rendered["core"]["execution_api_server_url"]],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_tasks_reach_the_execution_api_over_https_verified_against_the_stacks_ca(https_api):
    stack, secret_values = https_api
    rendered = settings.render_settings(stack.source, stack.target(secret_values))
    assert rendered["core"]["execution_api_server_url"].startswith("https://")
    assert rendered["api"]["base_url"].startswith("https://")
    assert rendered["api"]["ssl_ca_file"] == str(stack.tls_dir / TLS_CA)
    assert execution_api_call(stack, secret_values) == "200"


def test_a_task_that_trusts_another_ca_is_refused_and_says_why(https_api, tmp_path):
    stack, secret_values = https_api
    other = tmp_path / "other"
    certificates.ensure(other, "other", {"cp": ["127.0.0.1"]})
    # A worker host's view: no certificate of the api-server's own beside the CA.
    answer = execution_api_call(stack, secret_values, ssl_ca_file=str(other / TLS_CA), ssl_cert="")
    assert answer.startswith("refused") and "certificate verify failed" in answer


def test_stackctl_verifies_the_api_server_and_a_client_without_the_ca_is_refused(https_api):
    stack, _ = https_api
    assert stack.url("api").startswith("https://")
    assert health.http_ok(f"{stack.url('api')}/execution/health", verify=stack.verify)
    with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
        httpx.get(f"{stack.url('api')}/execution/health", timeout=5)  # the public CAs only


def test_the_blackbox_exporter_probes_the_api_server_over_verified_https(https_api):
    stack, secret_values = https_api
    with started(stack, secret_values, "blackbox-exporter") as exporter:
        probe = (f"http://127.0.0.1:{stack.ports['blackbox_exporter']}/probe?module=http_2xx"
                 f"&target={stack.url('api')}/execution/health")
        deadline = time.monotonic() + 20
        while True:
            try:
                metrics = httpx.get(probe, timeout=10).text
                break
            except httpx.TransportError:
                assert exporter.poll() is None, exporter.stdout.read()
                assert time.monotonic() < deadline, "the blackbox exporter did not start"
                time.sleep(0.2)
    assert "\nprobe_success 1\n" in metrics
    assert "\nprobe_http_ssl 1\n" in metrics


def test_an_api_server_whose_certificate_expired_is_refused_and_the_task_says_why(tmp_path, monkeypatch):
    stack, secret_values = rendered_stack(tmp_path / "a home", tls=True)
    expire_host_certificate(stack, monkeypatch)
    with serving(stack, secret_values):
        answer = execution_api_call(stack, secret_values)
        assert answer.startswith("refused") and "certificate has expired" in answer
        assert not health.http_ok(f"{stack.url('api')}/execution/health", verify=stack.verify)
