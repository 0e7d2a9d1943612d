"""The stack's own Redis, the Celery broker: loopback only, a user per role, AOF on (its flags are
the model's: model/infrastructure.py)."""

from __future__ import annotations

import redis as redis_client

from stackctl.model import settings
from stackctl.model.redis_users import EXPORTER, password_secret
from stackctl.model.target import TLS_CA
from stackctl.native.stack import NativeStack


def url(stack: NativeStack, secret_values: dict[str, str]) -> str:
    """Celery's broker URL, as the stack's processes have it."""
    return settings.render_settings(stack.source, stack.target(secret_values))["celery"]["broker_url"]


def is_ready(stack: NativeStack, secret_values: dict[str, str]) -> bool:
    """Whether Redis answers a PING from the exporter's user (the one whose job is to ask)."""
    target = stack.target(secret_values)
    tls = {"ssl": True, "ssl_ca_certs": target.tls_file(TLS_CA)} if target.tls else {}
    client = redis_client.Redis(host=stack.bind_host, port=stack.ports["redis"], username=EXPORTER,
                                password=secret_values[password_secret(EXPORTER)], socket_timeout=2, **tls)
    try:
        return bool(client.ping())
    except redis_client.RedisError:
        return False
    finally:
        client.close()
