"""Pin the statsd_exporter semantics the bridge implements, and the mapping's Airflow names."""

import json
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from services.statsd_bridge.mapping import Mapper
from services.statsd_bridge.server import Bridge, serve_http

MAPPING = Path(__file__).resolve().parents[3] / "monitoring" / "statsd" / "mapping.yml"


@pytest.fixture
def mapper():
    return Mapper({"defaults": {"observer_type": "histogram"}, "mappings": [
        {"match": "a.*.b", "name": "first_$1", "labels": {"x": "$1"}},
        {"match": "a.*.*", "name": "second", "labels": {"x": "$1", "y": "${2}"}},
        {"match": "noisy.*", "action": "drop", "name": "dropped"},
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
    b.handle_packet(b"airflow.ti.finish:1|c\n")  # the bare tag-only name: a total, apart from the labelled one
    assert sample(registry, "airflow_untagged_ti_finish_total") == 1
    assert sample(registry, "airflow_ti_finish") is None


def test_malformed_lines_and_conflicts_are_counted_not_fatal():
    b, registry = bridge()
    assert not b.handle_line("no-colon-here")
    assert b.handle_line("airflow.dagbag_size:4|g")
    assert not b.handle_line("airflow.dagbag_size:1|c")  # the same name as another type
    assert sample(registry, "statsd_bridge_errors_total", {"reason": "malformed"}) == 1
    assert sample(registry, "statsd_bridge_errors_total", {"reason": "conflict"}) == 1
    # Without a catch-all, an unmapped name whose series would collide with a mapped counter's is
    # refused, not fatal.
    b = Bridge(Mapper({"mappings": [{"match": "airflow.ti_failures", "name": "airflow_ti_failures_total"}]}),
               CollectorRegistry())
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
    assert Mapper({"mappings": [{"match": "a.b", "name": "a"}]}).map("a.b").ttl == 0  # no ttl: never expires
    with pytest.raises(ValueError, match="duration"):
        Mapper({"mappings": [{"match": "a.b", "name": "a", "ttl": 30}]})  # Go would read nanoseconds


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
    b, registry, clock = ttl_bridge([{"match": "solo.x", "name": "solo", "ttl": "10s"}])
    assert b.handle_line("solo.x:4|g")
    clock.now += 11
    b.expire()
    assert sample(registry, "solo") is None
    assert not b.handle_line("solo.x:1|c")  # still a gauge: another type is refused
    assert b.handle_line("solo.x:+2|g")  # a relative update starts again from 0, as in statsd_exporter
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


# statsd_exporter's mapping features the bridge implements for the bounded mapping: the drop
# action, regex rules (the catch-all), every rule named, scale, its action counters.

def test_every_rule_needs_a_name_and_a_glob_star_is_a_whole_component():
    """statsd_exporter refuses to load either file: the bridge must not accept what it refuses."""
    with pytest.raises(ValueError, match="didn't set a metric name"):
        Mapper({"mappings": [{"match": "a.*", "action": "drop"}]})
    for match in ("a.b_*", "a.*b", "single"):
        with pytest.raises(ValueError, match="invalid match"):
            Mapper({"mappings": [{"match": match, "name": "x"}]})


def test_glob_rules_win_over_regex_rules_listed_before_them():
    mapper = Mapper({"mappings": [
        {"match": "^a\\.(.+)$", "match_type": "regex", "name": "by_regex"},
        {"match": "a.*", "name": "by_glob"},
        {"match": ".", "match_type": "regex", "action": "drop", "name": "dropped"},
    ]})
    assert mapper.map("a.b").name == "by_glob"  # statsd_exporter tries every glob first
    assert mapper.map("a.b.c").name == "by_regex"  # then the regex rules, in order
    assert mapper.map("other") is None  # the catch-all: `.` matches anywhere in any name


def test_regex_templates_expand_as_go_does():
    mapper = Mapper({"mappings": [
        {"match": "^op_(successes|failures)_(.+)$", "match_type": "regex", "name": "op_${1}_total",
         "labels": {"operator": "${2}", "raw": "$2_x", "dollar": "$$1"}},
    ]})
    mapped = mapper.map("op_failures__PythonDecoratedOperator")
    assert mapped.name == "op_failures_total"
    # Go reads $2_x as the group "2_x": empty. ${2} is the group.
    assert mapped.labels == {"operator": "_PythonDecoratedOperator", "raw": "", "dollar": "$1"}


def test_drops_are_counted_by_action_with_the_last_names_kept():
    b, registry = bridge()
    b.handle_packet(b"airflow.scheduler_heartbeat:1|c\nmyapp.requests:1|c\nmyapp.requests:1|c\nairflow.new.metric:2|g\n")
    assert sample(registry, "statsd_exporter_events_actions_total", {"action": "drop"}) == 3
    assert sample(registry, "statsd_exporter_events_actions_total", {"action": "map"}) == 1
    assert sample(registry, "myapp_requests_total") is None and sample(registry, "airflow_new_metric") is None
    assert b.dropped_names() == {"myapp.requests": 2, "airflow.new.metric": 1}
    b.handle_packet(b"".join(f"unknown.n{i}:1|c\n".encode() for i in range(300)))
    kept = b.dropped_names()
    assert len(kept) == 100 and "unknown.n299" in kept and "myapp.requests" not in kept  # bounded, newest kept


def test_without_a_catch_all_an_unmatched_name_counts_as_unmapped():
    b = Bridge(Mapper({"mappings": [{"match": "a.b", "name": "ab"}]}), registry := CollectorRegistry())
    b.handle_packet(b"a.b:1|c\nc.d:1|c\n")
    assert sample(registry, "statsd_exporter_events_unmapped_total") == 1
    assert sample(registry, "c_d_total") == 1
    assert sample(registry, "statsd_exporter_events_actions_total", {"action": "drop"}) is None


def test_a_negative_counter_is_refused_not_fatal():
    """Airflow decrements dag_processing.processes: StatsD -1|c, which statsd_exporter refuses."""
    b, registry = bridge()
    assert b.handle_line("airflow.dag_processing.processes:1|c")
    assert not b.handle_line("airflow.dag_processing.processes:-1|c")
    assert sample(registry, "airflow_dag_processing_processes_total") == 1
    assert sample(registry, "statsd_bridge_errors_total", {"reason": "illegal_negative_counter"}) == 1


def test_scale_multiplies_the_value_after_milliseconds_become_seconds():
    """Airflow sends a DAG file's parse time in seconds as a timer: the mapping scales it by 1000."""
    b, registry = bridge()
    b.handle_line("airflow.dag_processing.last_duration.dags-folder.etl:1.5|ms")
    labels = {"bundle": "dags-folder", "file": "etl"}
    assert sample(registry, "airflow_dag_processing_last_duration_seconds_sum", labels) == 1.5


def test_the_metrics_endpoint_serves_metrics_and_the_dropped_names():
    b, _ = bridge()
    b.handle_line("myapp.requests:1|c")
    server = serve_http(b, "127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
            assert 'statsd_exporter_events_actions_total{action="drop"} 1.0' in response.read().decode()
        with urllib.request.urlopen(f"{base}/dropped", timeout=5) as response:
            assert json.load(response) == {"myapp.requests": 1}
    finally:
        server.shutdown()
