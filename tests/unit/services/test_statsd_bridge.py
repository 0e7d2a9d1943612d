"""Pin the statsd_exporter semantics the bridge implements, and the mapping's Airflow names."""

import socket
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from services.statsd_bridge.mapping import Mapper
from services.statsd_bridge.server import Bridge

MAPPING = Path(__file__).resolve().parents[3] / "monitoring" / "statsd" / "mapping.yml"


@pytest.fixture
def mapper():
    return Mapper({"defaults": {"observer_type": "histogram"}, "mappings": [
        {"match": "a.*.b", "name": "first_$1", "labels": {"x": "$1"}},
        {"match": "a.*.*", "name": "second", "labels": {"x": "$1", "y": "${2}"}},
        {"match": "noisy.*", "action": "drop"},
    ]})


def test_a_star_matches_exactly_one_component(mapper):
    assert mapper.map("a.one.b").name == "first_one"
    assert mapper.map("a.one.two.b").name == "a_one_two_b"  # two components: no rule matches


def test_the_first_matching_rule_wins_and_captures_fill_labels(mapper):
    assert mapper.map("a.k.b").labels == {"x": "k"}
    assert mapper.map("a.k.c") .labels == {"x": "k", "y": "c"}


def test_unmatched_names_are_sanitised_and_dropped_names_vanish(mapper):
    assert mapper.map("some-thing.odd").name == "some_thing_odd"
    assert mapper.map("noisy.spam") is None


def bridge():
    registry = CollectorRegistry()
    return Bridge(Mapper.load(MAPPING), registry), registry


def sample(registry, name, labels=None):
    return registry.get_sample_value(name, labels or {})


def test_airflow_names_map_to_labelled_metrics():
    b, registry = bridge()
    b.handle_packet(b"airflow.scheduler_heartbeat:1|c\nairflow.scheduler_heartbeat:1|c|@0.5\n"
                    b"airflow.ti.finish.etl.load.success:1|c\n"
                    b"airflow.dagrun.duration.success.etl:1500|ms\n"
                    b"airflow.pool.open_slots.heavy:3|g\nairflow.pool.open_slots.heavy:-1|g\n")
    assert sample(registry, "airflow_scheduler_heartbeat_total") == 3.0  # 1 + 1/0.5
    assert sample(registry, "airflow_ti_finish_total", {"dag_id": "etl", "task_id": "load", "state": "success"}) == 1
    labels = {"dag_id": "etl", "state": "success"}
    assert sample(registry, "airflow_dagrun_duration_seconds_sum", labels) == 1.5  # ms -> s
    assert sample(registry, "airflow_dagrun_duration_seconds_bucket", {**labels, "le": "2.5"}) == 1
    assert sample(registry, "airflow_pool_open_slots", {"pool": "heavy"}) == 2.0
    b.handle_packet(b"airflow.ti.finish:1|c\n")  # the bare tagged name is dropped
    assert sample(registry, "airflow_ti_finish") is None


def test_malformed_lines_and_conflicts_are_counted_not_fatal():
    b, registry = bridge()
    assert not b.handle_line("no-colon-here")
    assert b.handle_line("airflow.dagbag_size:4|g")
    assert not b.handle_line("airflow.dagbag_size:1|c")  # the same name as another type
    assert sample(registry, "statsd_bridge_errors_total", {"reason": "malformed"}) == 1
    assert sample(registry, "statsd_bridge_errors_total", {"reason": "conflict"}) == 1
    # A bare name whose series would collide with a mapped counter's is refused, not fatal.
    b.metrics.clear()
    assert b.handle_line("airflow.ti_failures:1|c")
    assert not b.handle_line("airflow.ti.failures:1|g")  # sanitised to airflow_ti_failures


def serve_and_send(b, packet: bytes) -> None:
    """Run the bridge's UDP loop on a free loopback port and send it one packet."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    threading.Thread(target=b.serve_udp, args=("127.0.0.1", port), daemon=True).start()
    time.sleep(0.2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(packet, ("127.0.0.1", port))


def test_udp_round_trip():
    b, registry = bridge()
    serve_and_send(b, b"airflow.triggerer_heartbeat:1|c")
    deadline = time.monotonic() + 5
    while sample(registry, "airflow_triggerer_heartbeat_total") != 1.0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"airflow_triggerer_heartbeat_total 1.0" in generate_latest(registry)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_ttl_is_a_go_duration_and_defaults_apply_to_rules_without_one():
    mapper = Mapper({"defaults": {"ttl": "1m30s"}, "mappings": [
        {"match": "a.*", "name": "a", "labels": {"x": "$1"}, "ttl": "30s"},
        {"match": "b.*", "name": "b", "labels": {"x": "$1"}},
        {"match": "c.*", "name": "c", "labels": {"x": "$1"}, "ttl": "500ms"},
    ]})
    assert [mapper.map(n).ttl for n in ("a.1", "b.1", "c.1", "unmatched")] == [30.0, 90.0, 0.5, 90.0]
    assert Mapper({"mappings": [{"match": "a", "name": "a"}]}).map("a").ttl == 0  # no ttl: never expires
    with pytest.raises(ValueError, match="duration"):
        Mapper({"mappings": [{"match": "a", "name": "a", "ttl": 30}]})  # Go would read nanoseconds


def ttl_bridge(mappings):
    clock, registry = FakeClock(), CollectorRegistry()
    return Bridge(Mapper({"mappings": mappings}), registry, clock=clock), registry, clock


def test_a_gauge_vanishes_after_its_ttl_unless_it_is_sent_again():
    b, registry, clock = ttl_bridge([{"match": "g.*", "name": "g", "labels": {"w": "$1"}, "ttl": "30s"},
                                     {"match": "keep.*", "name": "keep", "labels": {"w": "$1"}}])
    b.handle_packet(b"g.one:3|g\ng.two:5|g\nkeep.one:7|g\n")
    clock.now += 20
    b.handle_line("g.two:6|g")  # two is refreshed, one is not
    clock.now += 10
    assert b.expire() == 0  # one is exactly 30 s old: not yet past its ttl
    assert sample(registry, "g", {"w": "one"}) == 3
    clock.now += 0.5
    assert b.expire() == 1
    assert sample(registry, "g", {"w": "one"}) is None
    assert sample(registry, "g", {"w": "two"}) == 6
    clock.now += 30
    b.expire()
    assert sample(registry, "g", {"w": "two"}) is None
    assert sample(registry, "keep", {"w": "one"}) == 7  # a rule without a ttl keeps its series
    assert b"g{" not in generate_latest(registry)
    b.handle_line("g.one:2|g")  # a worker that comes back reappears with its new value
    assert sample(registry, "g", {"w": "one"}) == 2


def test_an_unlabelled_series_expires_and_returns_keeping_its_type():
    b, registry, clock = ttl_bridge([{"match": "solo", "name": "solo", "ttl": "10s"}])
    assert b.handle_line("solo:4|g")
    clock.now += 11
    b.expire()
    assert sample(registry, "solo") is None
    assert not b.handle_line("solo:1|c")  # still a gauge: another type is refused
    assert b.handle_line("solo:+2|g")  # a relative update starts again from 0, as in statsd_exporter
    assert sample(registry, "solo") == 2


def test_expiry_runs_once_per_sweep_interval():
    b, registry, clock = ttl_bridge([{"match": "g.*", "name": "g", "labels": {"w": "$1"}, "ttl": "1s"}])
    b.handle_line("g.one:1|g")
    clock.now += 1.5
    b.maybe_expire()
    assert sample(registry, "g", {"w": "one"}) is None


def test_celery_capacity_gauges_map_to_pool_and_worker_with_a_ttl():
    mapper = Mapper.load(MAPPING)
    for stat, name in (("processes", "airflow_celery_worker_processes"),
                       ("processes_max", "airflow_celery_worker_processes_max")):
        mapped = mapper.map(f"airflow.celery_worker.{stat}.light.light-1.worker-host_example_com")
        assert (mapped.name, mapped.labels, mapped.ttl) == (
            name, {"pool": "light", "worker": "light-1@worker-host_example_com"}, 30.0)
    clock, registry = FakeClock(), CollectorRegistry()
    b = Bridge(mapper, registry, clock=clock)
    b.handle_packet(b"airflow.celery_worker.processes.heavy.heavy-2.h1:1|g\n"
                    b"airflow.celery_worker.processes_max.heavy.heavy-2.h1:2|g\n")
    labels = {"pool": "heavy", "worker": "heavy-2@h1"}
    assert sample(registry, "airflow_celery_worker_processes", labels) == 1
    assert sample(registry, "airflow_celery_worker_processes_max", labels) == 2
    clock.now += 31  # the worker died: three reports (10 s apart) missed
    b.expire()
    assert sample(registry, "airflow_celery_worker_processes", labels) is None
    assert sample(registry, "airflow_celery_worker_processes_max", labels) is None


def test_the_udp_loop_expires_series_while_no_packet_arrives():
    b, registry, clock = ttl_bridge([{"match": "g.*", "name": "g", "labels": {"w": "$1"}, "ttl": "30s"}])
    serve_and_send(b, b"g.one:1|g")
    deadline = time.monotonic() + 5
    while sample(registry, "g", {"w": "one"}) != 1.0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sample(registry, "g", {"w": "one"}) == 1.0
    clock.now += 31  # the loop wakes up within a sweep interval of real time, and sweeps
    while sample(registry, "g", {"w": "one"}) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sample(registry, "g", {"w": "one"}) is None
