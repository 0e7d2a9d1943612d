"""Prometheus: the rendered config passes `promtool check config`, the rules pass `promtool test rules`,
every alert is documented, tested and routed by Alertmanager to the receiver its severity names."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from stackctl import alertmanager, prometheus, settings

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
    path.write_text(alertmanager.to_yaml(alertmanager.render("http://127.0.0.1:9095/webhook", tmp_path)))
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
    inhibit = alertmanager.render("http://127.0.0.1:9095/webhook", Path("/nonexistent"))["inhibit_rules"][0]
    assert inhibit["source_matchers"] == ['alertname="AirflowSchedulerDown"']
    symptoms = {r["alert"] for r in alert_rules() if r["labels"].get("component") == "airflow"}
    assert {"AirflowTaskFailureRatioHigh", "AirflowDagRunFailed", "AirflowPoolStarving"} <= symptoms
    assert "AirflowSchedulerDown" not in symptoms


def render_native_config(tmp_path: Path, source: dict) -> Path:
    ports = source["ports"]
    target = settings.Target(home=str(tmp_path), dags_folder="", repo=str(settings.REPO),
                             hosts={name: "127.0.0.1" for name in ports}, ports=ports, secrets={})
    expected = tmp_path / "expected_workers.yml"
    expected.write_text(prometheus.to_yaml(prometheus.expected_workers_rules(source)))
    password = tmp_path / "flower_password"
    password.write_text("not-a-real-password")
    config = prometheus.render(source, target, flower_password_file=str(password),
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


def test_expected_workers_follow_the_pool_sizes():
    source = settings.load_source()
    source["worker_pools"]["heavy"]["instances"] = 3
    rules = prometheus.expected_workers_rules(source)["groups"][0]["rules"]
    assert {r["labels"]["pool"]: r["expr"] for r in rules} == {"light": "vector(1)", "heavy": "vector(3)"}
