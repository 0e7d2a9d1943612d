"""Online capacity: each Celery worker reports, as StatsD gauges, how many pool processes it runs.

With `--autoscale max,min` a worker's capacity moves between min and max processes, and only
the worker knows where it is. Its main process sends, now and every INTERVAL_S on the worker's
own timer (the event loop's; no thread), from a consumer bootstep (CapacityStep) that
workers/celery_imports.py installs:

    <prefix>.celery_worker.processes.<pool>.<instance>.<host>       the pool processes alive now
    <prefix>.celery_worker.processes_max.<pool>.<instance>.<host>   the most it may grow to

through Airflow's StatsD client, so [metrics] statsd_on/host/port/prefix, the allow and block
lists and the stat name handler apply; with statsd_on off nothing is sent. The Celery hostname
<pool>-<n>@<host> (stackctl.model.processes.celery_hostname) gives the last three components; each is
one StatsD name component, so anything but letters, digits, `_` and `-` (a host's dots) becomes
`_`. monitoring/statsd/mapping.yml turns them into airflow_celery_worker_processes{pool, worker}
and airflow_celery_worker_processes_max{pool, worker}, worker being <instance>@<host>, with a
ttl: StatsD cannot delete a gauge, so a worker that stops reporting (dead, or in its warm
shutdown: it takes no new task) leaves no stale capacity behind.

"Alive now" is the length of billiard's process list, not the pool's `num_processes`: for
prefork that is billiard's `_processes`, the target the autoscaler sets, which grow() raises
before the processes are forked and which stays up when a process keeps dying or cannot be
forked. The list is what Celery's own `inspect stats` shows as the pool's processes.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from typing import Any, Protocol

from celery import bootsteps

log = logging.getLogger(__name__)

# Prometheus scrapes every 10 s (config.yaml monitoring.scrape_interval): one value per scrape.
INTERVAL_S = 10.0
PROCESSES = "celery_worker.processes"
PROCESSES_MAX = "celery_worker.processes_max"

# The worker's pool, as the deployment model hands it to every worker process (stackctl.model.processes);
# without it the pool is read from the hostname.
POOL_ENV = "CONTROLPLANE_WORKER_POOL"

_NOT_A_COMPONENT = re.compile(r"[^A-Za-z0-9_-]")
_NUMBERED = re.compile(r"^(.+)-\d+$")


class StatsClient(Protocol):
    def gauge(self, stat: str, value: float) -> Any: ...


def component(text: str) -> str:
    """One StatsD name component: no dot, only characters Airflow's stat name check accepts."""
    return _NOT_A_COMPONENT.sub("_", text) or "_"


def worker_identity(hostname: str, pool: str | None = None) -> tuple[str, str, str]:
    """(pool, instance, host) of a Celery hostname <pool>-<n>@<host>, each one StatsD component.

    A given pool wins over the hostname's (a deployment may name its workers otherwise, e.g.
    heavy-ansible-1@h). Without one, a hostname without the -<n> suffix is its own pool; one
    without `@` has no host part.
    """
    instance, _, host = hostname.partition("@") if "@" in hostname else (hostname, "", "unknown")
    numbered = _NUMBERED.match(instance)
    pool = pool or (numbered.group(1) if numbered else instance)
    return component(pool), component(instance), component(host)


def live_processes(pool: Any) -> int | None:
    """The pool's processes alive now; None when the pool is stopped or has no processes to count."""
    processes = getattr(getattr(pool, "_pool", None), "_pool", None)  # prefork: billiard's list
    if isinstance(processes, list):
        return len(processes)
    if getattr(pool, "_pool", ...) is None:  # prefork, stopped
        return None
    try:
        return int(pool.num_processes)  # solo, threads, gevent...: the pool's own count
    except (AttributeError, TypeError):
        return None


def max_processes(controller: Any) -> int | None:
    """The autoscaler's ceiling (it follows `celery control autoscale`); the fixed concurrency without one."""
    autoscaler = getattr(controller, "autoscaler", None)
    value = autoscaler.max_concurrency if autoscaler is not None else getattr(controller, "concurrency", None)
    return int(value) if value else None


def report(consumer: Any, stats: StatsClient) -> dict[str, int]:
    """Send the worker's gauges once; returns what was sent, by stat name."""
    suffix = ".".join(worker_identity(consumer.hostname, os.environ.get(POOL_ENV)))
    controller = consumer.controller
    values = {PROCESSES: live_processes(controller.pool), PROCESSES_MAX: max_processes(controller)}
    sent = {}
    for name, value in values.items():
        if value is not None:
            stats.gauge(f"{name}.{suffix}", value)
            sent[f"{name}.{suffix}"] = value
    return sent


def airflow_stats_client() -> Any | None:
    """Airflow's configured StatsD client ([metrics]); None when StatsD is off.

    A client of its own rather than Airflow's module-level Stats: nothing initialises that one
    in a Celery worker's main process, and initialising it here would change what the task
    processes forked from it send.
    """
    from airflow._shared.observability.metrics.base_stats_logger import NoStatsLogger
    from airflow.observability.metrics import stats_utils

    client = stats_utils.get_stats_factory()()
    return None if isinstance(client, NoStatsLogger) else client


class Reporter:
    """Sends report() now and then every interval on the worker's timer, until stop()."""

    def __init__(self, consumer: Any, stats: StatsClient, interval: float = INTERVAL_S):
        self.consumer, self.stats, self.interval = consumer, stats, interval
        self.entry: Any = None
        self.failed = False

    def tick(self) -> None:
        try:
            report(self.consumer, self.stats)
        except Exception:  # never let a metric break the worker's event loop
            # The first failure is a warning, its repeats (every interval) only debug.
            log.log(logging.DEBUG if self.failed else logging.WARNING, "could not report the pool's capacity",
                    exc_info=True)
            self.failed = True
        else:
            self.failed = False

    def start(self) -> Reporter:
        self.stop()
        self.tick()
        self.entry = self.consumer.timer.call_repeatedly(self.interval, self.tick)
        return self

    def stop(self) -> None:
        if self.entry is not None:
            self.entry.cancel()
            self.entry = None


class CapacityStep(bootsteps.StartStopStep):
    """A consumer bootstep: reports while the consumer runs, from the pool's start to the warm shutdown.

    Not Celery's worker_ready signal: it is sent once, while the event loop empties its timer
    (celery.worker.loops.asynloop: hub.timer.clear()) on every broker connection loss and only
    the consumer's steps, restarted after the reconnect, schedule their calls again (as
    Celery's own Heart and Gossip do). A warm shutdown stops the consumer's steps before the
    pool waits for its running tasks: a worker that takes no new task stops reporting.
    """

    label = "Capacity"

    def __init__(self, parent: Any, stats_factory: Callable[[], Any] | None = None, **kwargs: Any):
        super().__init__(parent, **kwargs)
        self.stats_factory = stats_factory or airflow_stats_client
        self.stats: Any = None
        self.reporter: Reporter | None = None

    def start(self, parent: Any) -> None:
        if self.stats is None:
            try:
                self.stats = self.stats_factory() or False
            except Exception:
                log.warning("no StatsD client: the pool's capacity is not reported", exc_info=True)
                self.stats = False
            if self.stats is False:
                log.info("[metrics] statsd_on is off: the pool's capacity is not reported")
        if self.stats is not False:
            self.reporter = Reporter(parent, self.stats).start()

    def stop(self, parent: Any) -> None:
        if self.reporter is not None:
            self.reporter.stop()
            self.reporter = None

    shutdown = stop


def install(app: Any) -> None:
    """Add CapacityStep to the consumers this app's workers create from now on."""
    app.steps["consumer"].add(CapacityStep)


def on_worker_init(sender: Any = None, **_: Any) -> None:
    """Celery's worker_init (main process; sender is the WorkController, before it builds its consumer)."""
    install(sender.app)
