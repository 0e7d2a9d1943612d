"""Prometheus: the rendered config passes `promtool check config`, the rules pass `promtool test rules`,
every alert is documented, tested and routed by Alertmanager to the receiver its severity names."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from stackctl.model import processes, settings
from stackctl.model.listeners import BASIC_AUTH_SECRETS
from stackctl.model.target import NATIVE, Target
from stackctl.render import alertmanager, prometheus

MONITORING = settings.REPO / "monitoring"
RULE_FILES = sorted((MONITORING / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((MONITORING / "prometheus" / "tests").glob("*_test.yml"))
RUNBOOKS = MONITORING / "runbooks.md"


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)


def alert_rules() -> list[dict]:
    return [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if "alert" in rule]


def test_rule_files_are_valid():
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_rule_unit_tests_pass(test_file):
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_expectation_fails(tmp_path):
    """promtool test rules can fail: a scheduler that heartbeats is not reported down."""
    rules = RULE_FILES[0]
    broken = {
        "rule_files": [str(rules)],
        "tests": [{
            "interval": "15s",
            "input_series": [{"series": "airflow_scheduler_heartbeat_total", "values": "0+1x40"}],
            "alert_rule_test": [{"eval_time": "5m", "alertname": "AirflowSchedulerDown",
                                 "exp_alerts": [{"exp_labels": {"severity": "critical"}}]}],
        }],
    }
    path = tmp_path / "broken_test.yml"
    path.write_text(yaml.safe_dump(broken))
    assert promtool("test", "rules", str(path)).returncode != 0


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_every_alert_has_severity_summary_and_a_runbook(rule):
    assert rule["labels"]["severity"] in ("critical", "warning")
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    anchor = rule["annotations"]["runbook_url"].removeprefix("monitoring/runbooks.md#")
    headings = re.findall(r"^## (\S+)", RUNBOOKS.read_text(), flags=re.M)
    assert anchor in [h.lower() for h in headings], f"no runbook section '## {rule['alert']}' in {RUNBOOKS}"


def test_every_alert_is_shown_firing_by_a_rule_test():
    fired = {
        case["alertname"]
        for path in RULE_TESTS for test in yaml.safe_load(path.read_text())["tests"]
        for case in test["alert_rule_test"] if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in alert_rules()} <= fired


@pytest.fixture
def alertmanager_config(tmp_path):
    path = tmp_path / "alertmanager.yml"
    config = alertmanager.render({"url": "http://127.0.0.1:9095/webhook"}, str(tmp_path / "token"), tmp_path)
    path.write_text(alertmanager.to_yaml(config))
    return path


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alertmanager_routes_every_alert_by_its_severity(alertmanager_config, rule):
    labels = [f"alertname={rule['alert']}", *(f"{k}={v}" for k, v in rule["labels"].items())]
    result = subprocess.run(
        ["amtool", "config", "routes", "test", f"--config.file={alertmanager_config}",
         f"--verify.receivers={rule['labels']['severity']}", *labels],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_symptoms_of_a_stopped_scheduler_are_inhibited():
    """AirflowSchedulerDown silences the alerts marked component=airflow, and only those."""
    config = alertmanager.render({"url": "http://127.0.0.1:9095/webhook"}, "/nonexistent/token", Path("/nonexistent"))
    inhibit = config["inhibit_rules"][0]
    assert inhibit["source_matchers"] == ['alertname="AirflowSchedulerDown"']
    symptoms = {r["alert"] for r in alert_rules() if r["labels"].get("component") == "airflow"}
    assert {"AirflowTaskFailureRatioHigh", "AirflowDagRunFailed", "AirflowPoolStarving"} <= symptoms
    assert "AirflowSchedulerDown" not in symptoms


def render_native_config(tmp_path: Path, source: dict) -> Path:
    ports = source["ports"]
    target = Target(kind=NATIVE, home=str(tmp_path), dags_folder="", repo=str(settings.REPO),
                    hosts={name: "127.0.0.1" for name in ports}, ports=ports, secrets={}, bind_host="127.0.0.1",
                    secrets_dir=str(tmp_path))
    expected = tmp_path / "expected_workers.yml"
    expected.write_text(prometheus.to_yaml(prometheus.expected_workers_rules(source)))
    for secret in BASIC_AUTH_SECRETS.values():  # promtool checks that password files exist
        (tmp_path / secret).write_text("not-a-real-password")
    config = prometheus.render(source, target, processes.model(source, target),
                               rule_files=[*map(str, RULE_FILES), str(expected)])
    path = tmp_path / "prometheus.yml"
    path.write_text(prometheus.to_yaml(config))
    return path


def test_rendered_native_config_is_valid(tmp_path):
    source = settings.load_source()
    path = render_native_config(tmp_path, source)
    result = promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {job["job_name"] for job in yaml.safe_load(path.read_text())["scrape_configs"]}
    assert {"statsd", "flower", "redis", "postgres", "node", "inference", "pushgateway", "alertmanager",
            "freshpoc"} <= jobs


def rendered_rules(source: dict, record: str) -> dict[str, str]:
    rules = prometheus.expected_workers_rules(source)["groups"][0]["rules"]
    return {r["labels"]["pool"]: r["expr"] for r in rules if r["record"] == record}


def test_expected_workers_follow_the_pool_sizes():
    source = settings.load_source()
    source["worker_pools"]["heavy"]["instances"] = 3
    assert rendered_rules(source, prometheus.EXPECTED_WORKERS) == {"light": "vector(1)", "heavy": "vector(3)"}


def test_pool_capacities_follow_instances_and_max_processes():
    source = settings.load_source()
    source["worker_pools"]["heavy"].update(instances=3, max_processes=4)
    light = source["worker_pools"]["light"]
    assert rendered_rules(source, prometheus.MAX_PROCESSES) == {
        "light": f"vector({light['instances'] * light['max_processes']})", "heavy": "vector(12)"}
    assert rendered_rules(source, prometheus.WORKER_MAX_PROCESSES) == {
        "light": f"vector({light['max_processes']})", "heavy": "vector(4)"}
    # Each pool's demand is read from its own queue.
    source["worker_pools"]["heavy"]["queue"] = "gpu"
    assert 'queue="gpu"' in rendered_rules(source, prometheus.DESIRED_PROCESSES)["heavy"]


def test_the_rendered_rules_are_named_as_the_alert_rules_and_dashboards_read_them():
    rules = prometheus.expected_workers_rules(settings.load_source())["groups"][0]["rules"]
    records = {r["record"] for r in rules}
    used = "".join(path.read_text() for path in RULE_FILES)
    used += (MONITORING / "dashboards" / "celery_pools.py").read_text()
    assert records == {prometheus.EXPECTED_WORKERS, prometheus.DESIRED_PROCESSES, prometheus.MAX_PROCESSES,
                       prometheus.WORKER_MAX_PROCESSES, prometheus.ONLINE_PROCESSES}
    assert all(record in used for record in records)


def test_rendered_capacity_rules_from_the_exporters_series(tmp_path):
    """The rendered rules and the alert, from the series the PostgreSQL exporter and the StatsD mapping give.

    light: one of its workers online, 20 task instances queued or running against its 16 processes;
    heavy: nothing queued, running or reported, so its desired and online processes are 0, not absent.
    """
    source = settings.load_source()
    for pool in source["worker_pools"].values():
        pool.update(instances=2, max_processes=16 if pool["queue"] == "light" else 2)
    rendered = tmp_path / "expected_workers.yml"
    rendered.write_text(prometheus.to_yaml(prometheus.expected_workers_rules(source)))
    pg = 'airflow_queue_task_instances{job="postgres", server="127.0.0.1:5433", queue="%s", state="%s"}'
    statsd = 'airflow_celery_worker_processes%s{job="statsd", pool="light", worker="light-1@vm1"}'
    annotations = {
        "summary": "The light pool needs 20 processes; its online workers can run 16 at most.",
        "description": "For 10 minutes the light queue has had 20 task instances queued or running, one process "
                       "each, above the 16 processes its online workers can grow to (all its configured workers: "
                       "32): tasks wait for a process. Add a worker, or raise max_processes.",
        "runbook_url": "monitoring/runbooks.md#workerpoolatcapacity",
    }
    test = {
        "rule_files": [str(rendered), *map(str, RULE_FILES)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": pg % ("light", "queued"), "values": "12x15"},
                {"series": pg % ("light", "running"), "values": "8x15"},
                {"series": pg % ("light", "success"), "values": "500x15"},  # not the pool's demand
                {"series": statsd % "", "values": "16x15"},
                {"series": statsd % "_max", "values": "16x15"},
                {"series": 'flower_worker_online{job="flower", worker="light-1@vm1"}', "values": "1x15"},
            ],
            "promql_expr_test": [
                {"expr": record, "eval_time": "5m",
                 "exp_samples": [{"labels": f'{record}{{pool="{pool}"}}', "value": value}
                                 for pool, value in values.items()]}
                for record, values in (
                    (prometheus.DESIRED_PROCESSES, {"light": 20, "heavy": 0}),
                    (prometheus.ONLINE_PROCESSES, {"light": 16, "heavy": 0}),
                    (prometheus.MAX_PROCESSES, {"light": 32, "heavy": 4}),
                    ("controlplane:worker_pool_online_max_processes", {"light": 16, "heavy": 0}),
                )
            ],
            "alert_rule_test": [
                {"eval_time": "9m", "alertname": "WorkerPoolAtCapacity", "exp_alerts": []},
                {"eval_time": "11m", "alertname": "WorkerPoolAtCapacity", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "pool": "light"},
                    "exp_annotations": annotations,
                }]},
            ],
        }],
    }
    path = tmp_path / "capacity_test.yml"
    path.write_text(yaml.safe_dump(test))
    result = promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
