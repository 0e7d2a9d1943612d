"""Redis's users, as the model writes them, on a real redis-server: each role reaches only its own keys
and commands (stackctl/model/redis_users.py), and Celery runs a task and answers a broadcast as its user."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from stackctl.errors import ConfigError
from stackctl.model import redis_users, settings
from stackctl.model.redis_users import CACHE_READER, CACHE_WRITER, CELERY, EXPORTER, password_secret
from stackctl.native import broker
from workers.training import cache

TENANT = "acme"
ROUND_TRIP = Path(__file__).with_name("celery_round_trip.py")


def client(stack, secret_values, user: str, db: int = 1) -> redis.Redis:
    return redis.Redis(host=stack.bind_host, port=stack.ports["redis"], username=user,
                       password=secret_values[password_secret(user)], db=db, socket_timeout=5)


def test_the_cache_reader_reads_the_cache_and_writes_nothing(model_redis):
    writer, reader = (client(*model_redis, user) for user in (CACHE_WRITER, CACHE_READER))
    assert cache.write_popular(writer, TENANT, [3, 1, 2]) == 3
    assert cache.read_popular(reader, TENANT) == [3, 1, 2]
    with pytest.raises(redis.exceptions.NoPermissionError):
        cache.write_popular(reader, TENANT, [9])
    with pytest.raises(redis.exceptions.NoPermissionError):
        reader.delete(cache.key(TENANT))
    assert cache.read_popular(reader, TENANT) == [3, 1, 2]


def test_celerys_user_can_neither_read_nor_write_the_cache(model_redis):
    cache.write_popular(client(*model_redis, CACHE_WRITER), TENANT, [3, 1, 2])
    celery_user = client(*model_redis, CELERY)
    for attempt in (lambda: cache.read_popular(celery_user, TENANT),
                    lambda: cache.write_popular(celery_user, TENANT, [9]),
                    lambda: celery_user.delete(cache.key(TENANT)), lambda: celery_user.keys("*")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()


@pytest.mark.parametrize("user", [CACHE_WRITER, CACHE_READER, EXPORTER])
def test_no_other_user_can_send_a_celery_message(model_redis, user):
    with pytest.raises(redis.exceptions.NoPermissionError):
        client(*model_redis, user, db=0).lpush("light", b'{"task": "injected"}')


def test_the_exporter_reads_info_and_queue_lengths_only(model_redis):
    exporter = client(*model_redis, EXPORTER, db=0)
    assert exporter.info()["redis_version"]
    assert exporter.llen("light") == 0
    exporter_on_cache = client(*model_redis, EXPORTER)
    with pytest.raises(redis.exceptions.NoPermissionError):
        exporter_on_cache.lrange(cache.key(TENANT), 0, -1)
    with pytest.raises(redis.exceptions.NoPermissionError):
        exporter.config_set("appendonly", "no")


def test_a_connection_without_a_user_is_refused(model_redis):
    stack, _ = model_redis
    anonymous = redis.Redis(host=stack.bind_host, port=stack.ports["redis"], socket_timeout=5)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()


def test_celery_runs_a_task_and_answers_a_broadcast_as_its_user(model_redis):
    """The broker and result backend URLs the stack's processes have: a task's message, its result,
    kombu's bindings and the pidbox (Flower's inspect) all stay within Celery's key patterns."""
    stack, secret_values = model_redis
    rendered = settings.render_settings(stack.source, stack.target(secret_values))["celery"]
    assert rendered["broker_url"] == broker.url(stack, secret_values)
    env = {**os.environ, "CELERY_BROKER_URL": rendered["broker_url"],
           "CELERY_RESULT_BACKEND": rendered["result_backend"]}
    try:
        result = subprocess.run([sys.executable, str(ROUND_TRIP)], capture_output=True, text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired as exc:
        # A worker refused a command fails in its own thread, and start_worker waits for it forever.
        pytest.fail(f"no result in 60 s; the worker said: {str(exc.stderr)[-3000:]}")
    assert result.stdout == "5\n[{'ok': 'pong'}]\n[]\n", result.stderr[-3000:]


@pytest.mark.parametrize("queue", ["reco", "re", "light*", "a-b"])
def test_a_queue_whose_key_pattern_could_reach_the_cache_is_refused(queue):
    source = settings.load_source()
    pools = {name: {**pool, "queue": queue if name == "light" else pool["queue"]}
             for name, pool in source["worker_pools"].items()}
    with pytest.raises(ConfigError, match="worker queue"):
        redis_users.users({**source, "worker_pools": pools})
