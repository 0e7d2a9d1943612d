from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from stackctl.model import settings
from stackctl.native import broker, lifecycle
from stackctl.native.stack import NativeStack
from stackctl.native.supervisor import native_argv, native_processes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def model_redis(tmp_path) -> Iterator[tuple[NativeStack, dict[str, str]]]:
    """A real redis-server from the model's command and the secret files the native stack writes,
    in a home whose path has a space: the stack and its secrets."""
    source = {**settings.load_source(), "bind_host": "127.0.0.1"}
    stack = NativeStack(home=tmp_path / "a home", source=source, ports={**source["ports"], "redis": free_port()})
    secret_values = lifecycle.render(stack)
    redis = next(p for p in native_processes(stack, secret_values) if p.name == "redis")
    server = subprocess.Popen(native_argv(stack, redis), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while not broker.is_ready(stack, secret_values):
            assert server.poll() is None, server.stdout.read()
            assert time.monotonic() < deadline, "redis-server did not answer"
            time.sleep(0.1)
        yield stack, secret_values
    finally:
        server.terminate()
        server.wait(10)
