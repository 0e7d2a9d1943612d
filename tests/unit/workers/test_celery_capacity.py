"""A worker's online capacity gauges: what is sent, when, and through which client, without a worker."""

import socket
import time
from types import SimpleNamespace

import pytest
from celery import Celery
from celery.concurrency.prefork import TaskPool

from workers import celery_capacity
from workers.celery_capacity import CapacityStep, Reporter, live_processes, report, worker_identity


class FakeStats:
    def __init__(self):
        self.sent = []

    def gauge(self, stat, value):
        self.sent.append((stat, value))


class FakeTimer:
    """kombu's Timer as the consumer holds it: call_repeatedly returns a cancellable entry."""

    def __init__(self):
        self.entries = []

    def call_repeatedly(self, secs, fun):
        entry = SimpleNamespace(secs=secs, fun=fun, canceled=False)
        entry.cancel = lambda: setattr(entry, "canceled", True)
        self.entries.append(entry)
        return entry

    def fire(self):
        for entry in self.entries:
            if not entry.canceled:
                entry.fun()


class FakeWorkController:
    """worker_init's sender (hashable, as Celery's signals need their senders)."""

    def __init__(self, app):
        self.app = app


def prefork_pool(alive, target=None):
    """Celery's prefork TaskPool: billiard's Pool in `_pool`, its processes in `_pool._pool`."""
    target = alive if target is None else target
    return SimpleNamespace(_pool=SimpleNamespace(_pool=[object()] * alive, _processes=target), num_processes=target)


def consumer(hostname="light-1@worker-a", pool=None, max_concurrency=16):
    autoscaler = SimpleNamespace(max_concurrency=max_concurrency) if max_concurrency else None
    controller = SimpleNamespace(pool=pool or prefork_pool(2), autoscaler=autoscaler, concurrency=max_concurrency)
    return SimpleNamespace(hostname=hostname, controller=controller, timer=FakeTimer())


def test_the_hostname_gives_pool_instance_and_a_dot_free_host():
    assert worker_identity("light-1@worker-a") == ("light", "light-1", "worker-a")
    assert worker_identity("heavy-12@ip-10-0-0-7.ec2.internal") == ("heavy", "heavy-12", "ip-10-0-0-7_ec2_internal")
    assert worker_identity("celery@h") == ("celery", "celery", "h")  # not <pool>-<n>: its own pool
    assert worker_identity("light-1") == ("light", "light-1", "unknown")
    assert worker_identity("heavy-ansible-1@h", pool="heavy") == ("heavy", "heavy-ansible-1", "h")


def test_report_sends_the_live_processes_and_the_autoscalers_max():
    stats = FakeStats()
    sent = report(consumer(pool=prefork_pool(alive=3, target=5)), stats)
    assert stats.sent == [("celery_worker.processes.light.light-1.worker-a", 3),
                          ("celery_worker.processes_max.light.light-1.worker-a", 16)]
    assert sent == dict(stats.sent)


def test_without_an_autoscaler_the_max_is_the_fixed_concurrency():
    c = consumer(max_concurrency=None)
    c.controller.concurrency = 4
    stats = FakeStats()
    report(c, stats)
    assert ("celery_worker.processes_max.light.light-1.worker-a", 4) in stats.sent


def test_a_stopped_pool_reports_no_processes():
    assert live_processes(SimpleNamespace(_pool=None)) is None
    stats = FakeStats()
    report(consumer(pool=SimpleNamespace(_pool=None)), stats)
    assert [stat for stat, _ in stats.sent] == ["celery_worker.processes_max.light.light-1.worker-a"]


def test_other_pools_report_their_own_count():
    assert live_processes(SimpleNamespace(num_processes=1)) == 1  # solo


def test_the_reporter_sends_at_once_then_on_every_timer_call_until_stopped():
    c, stats = consumer(), FakeStats()
    reporter = Reporter(c, stats).start()
    assert len(stats.sent) == 2
    assert c.timer.entries[0].secs == celery_capacity.INTERVAL_S == 10.0
    c.controller.pool._pool._pool.append(object())  # the autoscaler grew the pool
    c.timer.fire()
    assert stats.sent[-2] == ("celery_worker.processes.light.light-1.worker-a", 3)
    reporter.stop()
    c.timer.fire()
    assert len(stats.sent) == 4


def test_a_failing_report_never_reaches_the_event_loop(caplog):
    c = consumer()
    c.controller = None  # anything report() trips on
    reporter = Reporter(c, FakeStats())
    reporter.tick()
    reporter.tick()
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1  # once, not every 10 s


def test_the_step_reports_again_after_the_consumer_restarts():
    """A broker reconnect empties the timer and restarts the consumer's steps (stop, then start)."""
    c, stats = consumer(), FakeStats()
    step = CapacityStep(c, stats_factory=lambda: stats)
    step.start(c)
    c.timer.entries.clear()  # asynloop: hub.timer.clear()
    step.stop(c)
    step.start(c)
    assert len(c.timer.entries) == 1 and not c.timer.entries[0].canceled
    c.timer.fire()
    assert len(stats.sent) == 6
    step.shutdown(c)
    assert c.timer.entries[0].canceled


def test_the_step_sends_nothing_when_statsd_is_off():
    c = consumer()
    step = CapacityStep(c, stats_factory=lambda: None)
    step.start(c)
    assert c.timer.entries == []


def test_worker_init_adds_the_step_to_the_apps_consumers():
    app = Celery("capacity-test", set_as_current=False)
    celery_capacity.on_worker_init(sender=FakeWorkController(app))
    assert CapacityStep in app.steps["consumer"]


def test_preload_connects_worker_init():
    from celery.signals import worker_init

    import workers.celery_imports  # noqa: F401

    app = Celery("capacity-test", set_as_current=False)
    worker_init.send(sender=FakeWorkController(app))
    assert CapacityStep in app.steps["consumer"]


def test_prefork_num_processes_is_the_autoscalers_target_not_the_live_processes():
    """Pins what live_processes relies on in the installed Celery and billiard, on a real pool."""
    pool = TaskPool(limit=1, initargs=(Celery("capacity-test", set_as_current=False), "light-1@test"))
    pool.start()
    try:
        assert live_processes(pool) == pool.num_processes == 1
        pool.grow(1)  # what Autoscaler.scale_up does before maintain_pool forks
        assert (live_processes(pool), pool.num_processes) == (1, 2)
        pool._pool.maintain_pool()
        assert live_processes(pool) == 2
        pool.shrink(1)  # signals an idle process, which exits on its own time
        assert (live_processes(pool), pool.num_processes) == (2, 1)
        deadline = time.monotonic() + 10
        while live_processes(pool) != 1 and time.monotonic() < deadline:
            pool._pool.maintain_pool()
            time.sleep(0.05)
        assert live_processes(pool) == 1
    finally:
        pool.terminate()
    assert live_processes(pool) is None


@pytest.fixture
def statsd_socket():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        yield sock


def test_airflows_client_follows_the_metrics_settings(monkeypatch, statsd_socket):
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "False")
    assert celery_capacity.airflow_stats_client() is None
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(statsd_socket.getsockname()[1]))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")
    report(consumer(), celery_capacity.airflow_stats_client())
    received = {statsd_socket.recv(1024) for _ in range(2)}
    assert received == {b"airflow.celery_worker.processes.light.light-1.worker-a:2|g",
                        b"airflow.celery_worker.processes_max.light.light-1.worker-a:16|g"}
