"""The model's redis-server command, with the secret file the native stack writes, starts a real Redis
that takes the broker's password, wherever the stack's home is."""

from __future__ import annotations

import socket
import subprocess
import time

from stackctl.model import settings
from stackctl.native import broker, lifecycle
from stackctl.native.stack import NativeStack
from stackctl.native.supervisor import native_argv, native_processes


def test_redis_starts_from_a_home_with_a_space(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = {**settings.load_source(), "bind_host": "127.0.0.1"}
    stack = NativeStack(home=tmp_path / "a home", source=source, ports={**source["ports"], "redis": port})
    secret_values = lifecycle.render(stack)
    redis = next(p for p in native_processes(stack, secret_values) if p.name == "redis")
    server = subprocess.Popen(native_argv(stack, redis), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while not broker.is_ready(stack, secret_values["redis_password"]):
            assert server.poll() is None, server.stdout.read()
            assert time.monotonic() < deadline, "redis-server did not answer"
            time.sleep(0.1)
        assert not broker.is_ready(stack, "not-the-password")
    finally:
        server.terminate()
        server.wait(10)
