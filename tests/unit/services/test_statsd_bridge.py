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


def test_udp_round_trip():
    b, registry = bridge()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    threading.Thread(target=b.serve_udp, args=("127.0.0.1", port), daemon=True).start()
    time.sleep(0.2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(b"airflow.triggerer_heartbeat:1|c", ("127.0.0.1", port))
    deadline = time.monotonic() + 5
    while sample(registry, "airflow_triggerer_heartbeat_total") != 1.0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"airflow_triggerer_heartbeat_total 1.0" in generate_latest(registry)
