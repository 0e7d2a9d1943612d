from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from stackctl.model import settings
from stackctl.native import broker, lifecycle, postgres
from stackctl.native.stack import NativeStack
from stackctl.native.supervisor import environment, native_argv, native_processes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rendered_stack(home: Path, tls: bool) -> tuple[NativeStack, dict[str, str]]:
    """A native stack on free ports for Redis, PostgreSQL, the api-server and their exporters and prober,
    with the files it writes (its secrets, and with tls its CA and certificate): the stack and its secrets."""
    source = {**settings.load_source(), "bind_host": "127.0.0.1", "tls": tls}
    ports = {**source["ports"], **{name: free_port() for name in ("redis", "redis_exporter", "postgres",
                                                                  "postgres_exporter", "api", "blackbox_exporter")}}
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


def running_redis(home: Path, tls: bool) -> Iterator[tuple[NativeStack, dict[str, str]]]:
    stack, secret_values = rendered_stack(home, tls)
    with started(stack, secret_values, "redis") as server:
        deadline = time.monotonic() + 10
        while not broker.is_ready(stack, secret_values):
            assert server.poll() is None, server.stdout.read()
            assert time.monotonic() < deadline, "redis-server did not answer"
            time.sleep(0.1)
        yield stack, secret_values


@pytest.fixture
def model_redis(tmp_path) -> Iterator[tuple[NativeStack, dict[str, str]]]:
    """Plain Redis, in a home whose path has a space."""
    yield from running_redis(tmp_path / "a home", tls=False)


@pytest.fixture
def model_redis_tls(tmp_path) -> Iterator[tuple[NativeStack, dict[str, str]]]:
    """Redis over TLS only, in a home whose path has a space."""
    yield from running_redis(tmp_path / "a home", tls=True)
