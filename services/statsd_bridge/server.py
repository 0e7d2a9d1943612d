"""Receive StatsD lines over UDP and keep them as Prometheus metrics."""

from __future__ import annotations

import logging
import socket

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .mapping import Mapper

log = logging.getLogger(__name__)
# statsd_exporter's default histogram buckets, in seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Bridge:
    def __init__(self, mapper: Mapper, registry: CollectorRegistry):
        self.mapper = mapper
        self.registry = registry
        self.metrics: dict[str, tuple[str, tuple[str, ...], object]] = {}
        self.errors = Counter("statsd_bridge_errors_total", "Lines or metrics the bridge could not take",
                              ["reason"], registry=registry)
        self.refused: set[str] = set()

    def _metric(self, kind: str, name: str, labelnames: tuple[str, ...]):
        known = self.metrics.get(name)
        if known is None:
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
            return True
        labelnames = tuple(sorted(mapped.labels))
        metric_kind = {"c": "counter", "g": "gauge", "ms": "histogram", "h": "histogram", "d": "histogram"}.get(kind)
        if metric_kind is None:
            self.errors.labels("unsupported_type").inc()
            return False
        metric = self._metric(metric_kind, mapped.name, labelnames)
        if metric is None:
            self._refused(name, mapped.name)
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
        return True

    def handle_packet(self, packet: bytes) -> None:
        for line in packet.decode(errors="replace").splitlines():
            if line.strip():
                self.handle_line(line.strip())

    def serve_udp(self, host: str, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, port))
        log.info("statsd bridge listening on udp %s:%d", host, port)
        while True:
            packet, _ = sock.recvfrom(65535)
            self.handle_packet(packet)
