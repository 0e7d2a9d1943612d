"""The model's redis-server command, with the secret file the native stack writes, starts a real Redis
that takes its users' passwords, wherever the stack's home is."""

from __future__ import annotations

from stackctl.native import broker


def test_redis_starts_from_a_home_with_a_space(model_redis):
    stack, secret_values = model_redis
    assert " " in str(stack.home)
    assert broker.is_ready(stack, secret_values)
    assert not broker.is_ready(stack, {**secret_values, "redis_exporter_password": "not-the-password"})
