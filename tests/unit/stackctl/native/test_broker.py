"""The rendered redis.conf starts a real redis-server, wherever the stack's home is."""

from __future__ import annotations

import socket
import subprocess
import time

from stackctl.model import settings
from stackctl.native import broker
from stackctl.native.stack import NativeStack


def test_redis_starts_from_a_home_with_a_space(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = {**settings.load_source(), "bind_host": "127.0.0.1"}
    stack = NativeStack(home=tmp_path / "a home", source=source, ports={**source["ports"], "redis": port})
    broker.write_conf(stack, "s3cret")
    server = subprocess.Popen(["redis-server", str(stack.redis_dir / "redis.conf")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while not broker.is_ready(stack, "s3cret"):
            assert server.poll() is None, server.stdout.read()
            assert time.monotonic() < deadline, "redis-server did not answer"
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(10)
