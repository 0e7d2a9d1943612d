"""Run by test_redis_users.py in a process of its own (a Celery worker's threads and logging set-up stay
out of the test session): a worker on queue `light` runs a task sent through the broker and result
backend of CELERY_BROKER_URL and CELERY_RESULT_BACKEND, then answers a broadcast ping. Prints the
result and the pong."""

from __future__ import annotations

import os

from celery import Celery
from celery.contrib.testing.worker import start_worker

app = Celery("acl", broker=os.environ["CELERY_BROKER_URL"], backend=os.environ["CELERY_RESULT_BACKEND"])
app.conf.update(task_default_queue="light", task_acks_late=True, worker_send_task_events=True,
                task_send_sent_event=True)


@app.task
def add(x: int, y: int) -> int:
    return x + y


if __name__ == "__main__":
    with start_worker(app, pool="solo", queues=["light"], perform_ping_check=False):
        print(add.delay(2, 3).get(timeout=30))
        print(list(app.control.inspect(timeout=5).ping().values()))
