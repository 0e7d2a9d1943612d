"""Receive StatsD lines over UDP and keep them as Prometheus metrics."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from .mapping import Mapper

log = logging.getLogger(__name__)
# statsd_exporter's default histogram buckets, in seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# How often series past their ttl are dropped (statsd_exporter: every second).
SWEEP_INTERVAL_S = 1.0
# An unlabelled metric whose one series expired: unregistered, created again by its next line.
_EXPIRED = object()
# How many of the last dropped StatsD names the bridge remembers (logged once each, at /dropped).
DROPPED_NAMES_KEPT = 100


class Bridge:
    def __init__(self, mapper: Mapper, registry: CollectorRegistry, clock: Callable[[], float] = time.monotonic):
        self.mapper = mapper
        self.registry = registry
        self.clock = clock
        self.metrics: dict[str, tuple[str, tuple[str, ...], object]] = {}
        # The series of rules with a ttl: (metric name, label values) -> (last update, ttl in seconds).
        self.expiring: dict[tuple[str, tuple[str, ...]], tuple[float, float]] = {}
        self.last_sweep = clock()
        self.errors = Counter("statsd_bridge_errors_total", "Lines or metrics the bridge could not take",
                              ["reason"], registry=registry)
        # statsd_exporter's own counters, under its names: rules, dashboards and tests read one
        # series whichever exporter runs. A dropped name (a drop rule, or the mapping's final
        # catch-all) counts as action="drop", a mapped one as action="map"; a name that no rule
        # matched (possible only without a catch-all) as unmapped.
        self.actions = Counter("statsd_exporter_events_actions_total", "The total number of StatsD events by action.",
                               ["action"], registry=registry)
        self.unmapped = Counter("statsd_exporter_events_unmapped_total",
                                "The total number of StatsD events no mapping was found for.", registry=registry)
        self.refused: set[str] = set()
        # The last DROPPED_NAMES_KEPT dropped names, oldest first, with how often each was dropped.
        self.dropped: OrderedDict[str, int] = OrderedDict()
        self.dropped_lock = threading.Lock()

    def _metric(self, kind: str, name: str, labelnames: tuple[str, ...]):
        known = self.metrics.get(name)
        if known is None or (known[:2] == (kind, labelnames) and known[2] is _EXPIRED):
            cls = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}[kind]
            extra = {"buckets": BUCKETS} if kind == "histogram" else {}
            try:
                metric = cls(name, f"StatsD metric mapped to {name}", labelnames, registry=self.registry, **extra)
            except ValueError:  # an invalid name, or one whose series another metric already exposes
                metric = None
            self.metrics[name] = (kind, labelnames, metric)
            return metric
        if known[:2] != (kind, labelnames):
            return None  # statsd_exporter also refuses a name seen with another type or labels
        return known[2]

    def _refused(self, name: str, mapped_name: str) -> None:
        self.errors.labels("conflict").inc()
        if mapped_name not in self.refused:
            self.refused.add(mapped_name)
            log.warning("refusing %s: %s already exists with another type or labels", name, mapped_name)

    def handle_line(self, line: str) -> bool:
        try:
            name, rest = line.split(":", 1)
            fields = rest.split("|")
            raw, kind = fields[0], fields[1]
            rate = next((float(f[1:]) for f in fields[2:] if f.startswith("@")), 1.0)
            value = float(raw)
        except (ValueError, IndexError):
            self.errors.labels("malformed").inc()
            return False
        mapped = self.mapper.map(name)
        if mapped is None:
            self._drop(name)
            return True
        if mapped.matched:
            self.actions.labels("map").inc()
        else:
            self.unmapped.inc()
        value *= mapped.scale
        labelnames = tuple(sorted(mapped.labels))
        metric_kind = {"c": "counter", "g": "gauge", "ms": "histogram", "h": "histogram", "d": "histogram"}.get(kind)
        if metric_kind is None:
            self.errors.labels("unsupported_type").inc()
            return False
        metric = self._metric(metric_kind, mapped.name, labelnames)
        if metric is None:
            self._refused(name, mapped.name)
            return False
        if metric_kind == "counter" and value < 0:  # statsd_exporter refuses it too (a StatsD decr)
            self.errors.labels("illegal_negative_counter").inc()
            return False
        child = metric.labels(**mapped.labels) if labelnames else metric
        if metric_kind == "counter":
            child.inc(value / rate)
        elif metric_kind == "gauge":
            if raw.startswith(("+", "-")):
                child.inc(value)
            else:
                child.set(value)
        else:
            child.observe(value / 1000.0 if kind == "ms" else value)
        series = (mapped.name, tuple(mapped.labels[label] for label in labelnames))
        if mapped.ttl:
            self.expiring[series] = (self.clock(), mapped.ttl)
        else:
            self.expiring.pop(series, None)
        return True

    def _drop(self, name: str) -> None:
        self.actions.labels("drop").inc()
        with self.dropped_lock:
            first = name not in self.dropped
            self.dropped[name] = self.dropped.pop(name, 0) + 1
            while len(self.dropped) > DROPPED_NAMES_KEPT:
                self.dropped.popitem(last=False)
        if first:
            log.warning("dropping StatsD name %s: no mapping in the mapping file", name)

    def dropped_names(self) -> dict[str, int]:
        """The last dropped names (at most DROPPED_NAMES_KEPT), each with how often it was dropped."""
        with self.dropped_lock:
            return dict(self.dropped)

    def expire(self) -> int:
        """Drop the series not updated for longer than their rule's ttl, as statsd_exporter does.

        A labelled series is removed from its metric; an unlabelled metric is unregistered until
        its next line (keeping its type, so another type is still refused). Returns how many.
        """
        now = self.last_sweep = self.clock()
        stale = [series for series, (seen, ttl) in self.expiring.items() if seen + ttl < now]
        for name, values in stale:
            del self.expiring[(name, values)]
            kind, labelnames, metric = self.metrics[name]
            if labelnames:
                metric.remove(*values)
            else:
                self.registry.unregister(metric)
                self.metrics[name] = (kind, labelnames, _EXPIRED)
        return len(stale)

    def maybe_expire(self) -> None:
        if self.clock() - self.last_sweep >= SWEEP_INTERVAL_S:
            self.expire()

    def handle_packet(self, packet: bytes) -> None:
        for line in packet.decode(errors="replace").splitlines():
            if line.strip():
                self.handle_line(line.strip())

    def serve_udp(self, host: str, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, port))
        # Wake up at least every sweep interval, so series expire while no packet arrives.
        sock.settimeout(SWEEP_INTERVAL_S)
        log.info("statsd bridge listening on udp %s:%d", host, port)
        while True:
            try:
                packet, _ = sock.recvfrom(65535)
            except TimeoutError:
                pass
            else:
                self.handle_packet(packet)
            self.maybe_expire()


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


def wsgi_app(bridge: Bridge):
    """/dropped: the last dropped names as JSON; any other path: the metrics."""
    metrics = make_wsgi_app(bridge.registry)

    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/dropped":
            body = json.dumps(bridge.dropped_names(), indent=1, sort_keys=True).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return metrics(environ, start_response)
    return app


def serve_http(bridge: Bridge, host: str, port: int) -> WSGIServer:
    """Serve wsgi_app in a daemon thread; returns the server (its port, shutdown())."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]  # an IPv6 address too
    server_class = type("_Server", (_ThreadingWSGIServer,), {"address_family": family})
    server = make_server(host, port, wsgi_app(bridge), server_class, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log.info("statsd bridge metrics on http %s:%d (/metrics, /dropped)", host, server.server_port)
    return server
