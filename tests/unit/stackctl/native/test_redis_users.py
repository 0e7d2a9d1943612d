"""Redis's users, as the model writes them, on a real redis-server: each role reaches only its own keys
and commands (stackctl/model/redis_users.py), and Celery runs a task and answers a broadcast as its user."""

from __future__ import annotations

import logging

import pytest
import redis
from celery import Celery
from celery.contrib.testing.worker import start_worker

from stackctl.errors import ConfigError
from stackctl.model import redis_users, settings
from stackctl.model.redis_users import CACHE_READER, CACHE_WRITER, CELERY, EXPORTER, password_secret
from stackctl.native import broker
from workers.training import cache

TENANT = "acme"


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


# A worker refused a command fails in its own thread, and start_worker waits for it to start: bounded here.
@pytest.mark.timeout(60)
def test_celery_runs_a_task_and_answers_a_broadcast_as_its_user(model_redis):
    """The broker and result backend URLs the stack's processes have: a task's message, its result,
    kombu's bindings and the pidbox (Flower's inspect) all stay within Celery's key patterns."""
    stack, secret_values = model_redis
    rendered = settings.render_settings(stack.source, stack.target(secret_values))["celery"]
    assert rendered["broker_url"] == broker.url(stack, secret_values)
    app = Celery("acl", broker=rendered["broker_url"], backend=rendered["result_backend"])
    app.conf.update(task_default_queue="light", task_acks_late=True, worker_send_task_events=True,
                    task_send_sent_event=True, worker_hijack_root_logger=False)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    root_level = logging.getLogger().level
    try:
        with start_worker(app, pool="solo", queues=["light"], perform_ping_check=False):
            assert add.delay(2, 3).get(timeout=30) == 5
            assert list(app.control.inspect(timeout=5).ping().values()) == [{"ok": "pong"}]
    finally:
        logging.getLogger().setLevel(root_level)  # the worker's log set-up raised it to ERROR


@pytest.mark.parametrize("queue", ["reco", "re", "light*", "a-b"])
def test_a_queue_whose_key_pattern_could_reach_the_cache_is_refused(queue):
    source = settings.load_source()
    pools = {name: {**pool, "queue": queue if name == "light" else pool["queue"]}
             for name, pool in source["worker_pools"].items()}
    with pytest.raises(ConfigError, match="worker queue"):
        redis_users.users({**source, "worker_pools": pools})
