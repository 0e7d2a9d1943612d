"""Every StatsD name Airflow 3.3.2 emits is mapped, with its dynamic parts as labels; others drop.

The names come from Airflow's own metrics registry (metrics_template.yaml, the source of its
metrics docs: each metric's name and, when it has tags, its legacy name with the tags in it),
plus the few names its code sends outside the registry. Both forms go out over plain StatsD
(legacy_names_on defaults to True), so both must map. A name Airflow adds in an upgrade fails
test_every_airflow_name_is_mapped until monitoring/statsd/mapping.yml maps it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

import airflow
from services.statsd_bridge.mapping import Mapper
from services.statsd_bridge.server import Bridge

MAPPING = Path(__file__).resolve().parents[3] / "monitoring" / "statsd" / "mapping.yml"
REGISTRY = Path(airflow.__file__).parent / "_shared" / "observability" / "metrics" / "metrics_template.yaml"
PREFIX = "airflow."  # [metrics] statsd_prefix
STATSD_TYPE = {"counter": "c", "gauge": "g", "timer": "ms"}

# Two realistic sets of the values Airflow puts in names. A dot in a tag value is sent as "__"
# (a task in a task group). job_name is the Job class, always "job".
VALUES = (
    {"job_name": "job", "job_id": "42", "dag_id": "etl_daily", "task_id": "extract", "return_code": "0",
     "operator_name": "PythonOperator", "task_type": "BashOperator", "file_name": "etl_daily",
     "dag_file": "etl_daily", "bundle_name": "dags-folder", "executor_class_name": "CeleryExecutor",
     "pool_name": "default_pool", "hostname": "cp-1__example__com", "queue": "default", "state": "success",
     "event_type": "START", "transport_type": "http", "worker_name": "edge-1", "status": "succeeded"},
    {"job_name": "job", "job_id": "7", "dag_id": "tenant-b_training", "task_id": "train__fit", "return_code": "1",
     "operator_name": "_PythonDecoratedOperator", "task_type": "_PythonDecoratedOperator",
     "file_name": "tenant_training", "dag_file": "tenant_training", "bundle_name": "example_dags",
     "executor_class_name": "LocalExecutor", "pool_name": "heavy", "hostname": "worker-2", "queue": "heavy",
     "state": "up_for_retry", "event_type": "COMPLETE", "transport_type": "kafka", "worker_name": "edge_2",
     "status": "failed"},
)


def registry_metrics() -> list[dict]:
    return yaml.safe_load(REGISTRY.read_text())["metrics"]


def extra_lines(values: dict[str, str]) -> list[str]:
    """Names Airflow 3.3.2 (and this repo's workers) send outside the registry."""
    return [
        "schedulerjobrunner_end:1|c",  # jobs/scheduler_job_runner.py: SchedulerJob rows marked failed
        *(f"deadline_alerts.callback_{state}:1|c"  # models/callback.py: {prefix}.callback_{CallbackState}
          for state in ("scheduled", "pending", "queued", "running", "success", "failed")),
        "dag_processing.processes:-1|c",  # dag_processing/manager.py decrements it
        f"executor.open_slots.{values['executor_class_name']}:3|g",  # with several executors configured
        f"celery_worker.processes.{values['pool_name']}.{values['pool_name']}-1.{values['worker_name']}:2|g",
        f"celery_worker.processes_max.{values['pool_name']}.{values['pool_name']}-1.{values['worker_name']}:4|g",
    ]


def airflow_lines(values: dict[str, str]) -> list[str]:
    """One StatsD line per name Airflow 3.3.2 emits, with these values in its dynamic parts."""
    lines = []
    for metric in registry_metrics():
        kind = STATSD_TYPE[metric["type"]]
        lines.append(f"{metric['name'].format(**values)}:1|{kind}")  # the bare name; tags lost
        if metric.get("legacy_name", "-") != "-":
            lines.append(f"{metric['legacy_name'].format(**values)}:1|{kind}")
    return [PREFIX + line for line in lines + extra_lines(values)]


def test_the_registry_is_airflow_3_3s():
    """The list below is Airflow's own: fail loudly if the registry moved or shrank."""
    assert airflow.__version__ == "3.3.2"
    names = {metric["name"] for metric in registry_metrics()}
    assert len(names) > 100
    assert {"dag_processing.last_duration", "operator_successes", "ti.finish", "pool.open_slots"} <= names


@pytest.mark.parametrize("values", VALUES, ids=["sample1", "sample2"])
def test_every_airflow_name_is_mapped(values):
    mapper, registry = Mapper.load(MAPPING), CollectorRegistry()
    bridge = Bridge(mapper, registry)
    lines = airflow_lines(values)
    assert len(lines) > 170
    dropped = [line for line in lines if mapper.map(line.split(":")[0]) is None]
    unmapped = [line for line in lines if (m := mapper.map(line.split(":")[0])) and not m.matched]
    assert not dropped, "the mapping drops Airflow names:\n" + "\n".join(dropped)
    assert not unmapped
    for line in lines:
        bridge.handle_line(line)
    assert registry.get_sample_value("statsd_exporter_events_actions_total", {"action": "drop"}) is None
    # No name maps to two types or label sets (the bridge and statsd_exporter both refuse that).
    assert registry.get_sample_value("statsd_bridge_errors_total", {"reason": "conflict"}) is None


def metric_names(values: dict[str, str]) -> set[str]:
    mapper = Mapper.load(MAPPING)
    return {mapper.map(line.split(":")[0]).name for line in airflow_lines(values)}


def test_dynamic_parts_become_labels_so_the_metric_names_are_bounded():
    """Other DAGs, tasks, files, operators, pools, hosts: the same metric names, new label values."""
    first, second = (metric_names(values) for values in VALUES)
    assert first == second
    assert not any(value in name for name in first for value in ("etl_daily", "PythonOperator", "heavy"))


def test_per_file_parse_times_and_per_operator_counts_are_labels():
    mapper = Mapper.load(MAPPING)
    parse = mapper.map("airflow.dag_processing.last_duration.dags-folder.etl_daily")
    assert (parse.name, parse.labels, parse.scale) == (
        "airflow_dag_processing_last_duration_seconds", {"bundle": "dags-folder", "file": "etl_daily"}, 1000)
    seconds_ago = mapper.map("airflow.dag_processing.last_run.seconds_ago.etl_daily")
    assert (seconds_ago.name, seconds_ago.labels) == ("airflow_dag_processing_last_run_seconds_ago",
                                                      {"file": "etl_daily"})
    for outcome in ("successes", "failures"):
        mapped = mapper.map(f"airflow.operator_{outcome}__PythonDecoratedOperator")
        assert (mapped.name, mapped.labels) == (f"airflow_operator_{outcome}_total",
                                                {"operator": "_PythonDecoratedOperator"})
    created = mapper.map("airflow.task_instance_created_BashOperator")
    assert (created.name, created.labels) == ("airflow_task_instance_created_total", {"task_type": "BashOperator"})
    exit_ = mapper.map("airflow.local_task_job.task_exit.42.etl.load.0")
    assert exit_.labels == {"dag_id": "etl", "task_id": "load", "return_code": "0"}  # no job_id: one per run


@pytest.mark.parametrize("name", [
    "airflow.dag_processing.last_duration.etl_daily",  # Airflow 2's form, without the bundle
    "airflow.some_future_metric.etl_daily",
    "airflow.operator_successes",  # mapped (untagged): the control below
    "myapp.requests",
])
def test_an_unknown_name_is_dropped_and_counted(name):
    registry = CollectorRegistry()
    bridge = Bridge(Mapper.load(MAPPING), registry)
    bridge.handle_line(f"{name}:1|c")
    dropped = registry.get_sample_value("statsd_exporter_events_actions_total", {"action": "drop"})
    if name == "airflow.operator_successes":
        assert dropped is None
    else:
        assert dropped == 1
        assert bridge.dropped_names() == {name: 1}
