from __future__ import annotations

import datetime
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from stackctl.model import settings
from stackctl.model.target import TLS_CERT, TLS_HOST, TLS_KEY
from stackctl.native import broker, certificates, lifecycle, postgres
from stackctl.native.stack import NativeStack
from stackctl.native.supervisor import environment, native_argv, native_processes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rendered_stack(home: Path, tls: bool, listeners: tuple[str, ...] = ()) -> tuple[NativeStack, dict[str, str]]:
    """A native stack on free ports for Redis, PostgreSQL, the api-server and their exporters and prober (and
    `listeners`), with the files it writes (its secrets, and with tls its CA and certificate): the stack and
    its secrets."""
    source = {**settings.load_source(), "bind_host": "127.0.0.1", "tls": tls}
    free = ("redis", "redis_exporter", "postgres", "postgres_exporter", "api", "blackbox_exporter", *listeners)
    ports = {**source["ports"], **{name: free_port() for name in free}}
    stack = NativeStack(home=home, source=source, ports=ports)
    return stack, lifecycle.render(stack)


@contextmanager
def started(stack: NativeStack, secret_values: dict[str, str], name: str) -> Iterator[subprocess.Popen]:
    """One of the model's processes, started from its native command line."""
    process = next(p for p in native_processes(stack, secret_values) if p.name == name)
    argv = native_argv(stack, process)
    if name == "postgres":  # as supervisord runs it: as its own account
        argv = postgres.as_pg_user(stack, argv)
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, **environment(stack, secret_values, process)})
    try:
        yield server
    finally:
        server.terminate()
        server.wait(10)


def wait_until_ready(server: subprocess.Popen, ready: Callable[[], bool], what: str, timeout: float) -> None:
    """Poll the server's probe; fail with its output if it exits, or after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert server.poll() is None, server.stdout.read()
        assert time.monotonic() < deadline, f"{what} did not answer"
        time.sleep(0.1)


def expire_host_certificate(stack: NativeStack, monkeypatch) -> None:
    """Replace the stack's host certificate with one the stack's CA issued a year and a day ago."""
    ca = certificates._authority(stack.tls_dir, "native", None, new_ca=False)
    then = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=certificates.HOST_DAYS + 1)
    monkeypatch.setattr(certificates, "now", lambda: then)
    key, cert = certificates.issue(ca, TLS_HOST, [stack.bind_host])
    monkeypatch.undo()
    (stack.tls_dir / TLS_KEY).write_bytes(certificates._pem_key(key))
    (stack.tls_dir / TLS_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def running_redis(home: Path, tls: bool) -> Iterator[tuple[NativeStack, dict[str, str]]]:
    stack, secret_values = rendered_stack(home, tls)
    with started(stack, secret_values, "redis") as server:
        wait_until_ready(server, lambda: broker.is_ready(stack, secret_values), "redis-server", 10)
        yield stack, secret_values


@pytest.fixture
def model_redis(tmp_path) -> Iterator[tuple[NativeStack, dict[str, str]]]:
    """Plain Redis, in a home whose path has a space."""
    yield from running_redis(tmp_path / "a home", tls=False)


@pytest.fixture
def model_redis_tls(tmp_path) -> Iterator[tuple[NativeStack, dict[str, str]]]:
    """Redis over TLS only, in a home whose path has a space."""
    yield from running_redis(tmp_path / "a home", tls=True)
