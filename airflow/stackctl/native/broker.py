"""The stack's own Redis, the Celery broker: loopback only, password required, AOF on."""

from __future__ import annotations

import json

import redis as redis_client

from stackctl.model import processes
from stackctl.native.secrets import write_private
from stackctl.native.stack import NativeStack


def write_conf(stack: NativeStack, password: str) -> None:
    stack.redis_dir.mkdir(parents=True, exist_ok=True)
    write_private(
        stack.redis_dir / "redis.conf",
        "\n".join([
            f"bind {stack.bind_host}",
            f"port {stack.ports['redis']}",
            "protected-mode yes",
            f"requirepass {password}",
            f"dir {json.dumps(str(stack.redis_dir))}",  # quoted: the home may hold spaces
            # Queued task messages survive a Redis restart.
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            "daemonize no",
            "",
        ]),
    )
    # redis_exporter reads the password from a file keyed by address, not from its command line.
    write_private(exporter_password_file(stack), json.dumps({redis_address(stack): password}))


def redis_address(stack: NativeStack) -> str:
    return processes.redis_address(stack.bind_host, stack.ports["redis"])


def exporter_password_file(stack: NativeStack):
    return stack.home / processes.REDIS_EXPORTER_PASSWORD_FILE


def is_ready(stack: NativeStack, password: str) -> bool:
    client = redis_client.Redis(
        host=stack.bind_host, port=stack.ports["redis"], password=password, socket_timeout=2
    )
    try:
        return bool(client.ping())
    except redis_client.RedisError:
        return False
    finally:
        client.close()
