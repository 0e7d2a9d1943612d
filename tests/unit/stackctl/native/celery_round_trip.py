"""Run by test_redis_users.py in a process of its own (a Celery worker's threads and logging set-up stay
out of the test session): a worker on queue `light` runs a task sent through the broker and result
backend of CELERY_BROKER_URL and CELERY_RESULT_BACKEND, then answers a broadcast ping. Prints the
result, the pong, and what kombu logged of commands Redis refused."""

from __future__ import annotations

import logging
import os
import time

from celery import Celery
from celery.contrib.testing.worker import start_worker

# Kombu refreshes an expiring queue's binding every third of its expiry: the pidbox queue's, 10 s.
REFRESHES_S = 8

app = Celery("acl", broker=os.environ["CELERY_BROKER_URL"], backend=os.environ["CELERY_RESULT_BACKEND"])
app.conf.update(task_default_queue="light", task_acks_late=True, worker_send_task_events=True,
                task_send_sent_event=True)


@app.task
def add(x: int, y: int) -> int:
    return x + y


class RedisErrors(logging.Handler):
    """Counts what kombu logs when Redis refuses one of its commands (its binding refreshes warn and retry)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())


if __name__ == "__main__":
    refused = RedisErrors()
    kombu_redis = logging.getLogger("kombu.transport.redis")
    kombu_redis.addHandler(refused)
    kombu_redis.setLevel(logging.WARNING)  # the test worker logs errors only
    with start_worker(app, pool="solo", queues=["light"], perform_ping_check=False):
        print(add.delay(2, 3).get(timeout=30))
        print(list(app.control.inspect(timeout=5).ping().values()))
        time.sleep(REFRESHES_S)  # the worker's pidbox queue expires: kombu refreshes its binding meanwhile
    print(refused.seen)
