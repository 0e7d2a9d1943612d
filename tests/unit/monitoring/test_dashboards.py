"""Dashboards are code: the committed JSON is the generator's output, every PromQL parses, every
log query selects on labels that Alloy attaches, and the data sources match the provisioning."""

import json
import re
import subprocess

import pytest
import yaml

from monitoring.dashboards import __main__ as generator
from monitoring.dashboards.queries import panel_queries, variable_queries
from stackctl.model import settings

GRAFANA = settings.REPO / "monitoring" / "grafana"
ALLOY = settings.REPO / "monitoring" / "alloy" / "config.alloy"


def dashboards() -> dict[str, dict]:
    return {name: json.loads(text) for name, text in generator.render().items()}


@pytest.mark.parametrize("name", sorted(generator.render()))
def test_committed_json_is_the_generated_json(name):
    committed = GRAFANA / "dashboards" / name
    assert committed.exists(), f"{committed} missing: run `make dashboards`"
    assert committed.read_text() == generator.render()[name], f"{committed} is stale: run `make dashboards`"


def test_check_mode_fails_on_a_stale_file(tmp_path, monkeypatch):
    monkeypatch.setattr(generator, "OUTPUT", tmp_path)
    assert generator.main([]) == 0 and generator.main(["--check"]) == 0
    (tmp_path / "celery-pools.json").write_text("{}")
    assert generator.main(["--check"]) == 1


def test_dashboards_use_the_provisioned_data_sources():
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "datasources.yml").read_text())
    uids = {(d["type"], d["uid"]) for d in provisioned["datasources"]}
    for name, dashboard in dashboards().items():
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                source = target["datasource"]
                assert (source["type"], source["uid"]) in uids, f"{name}: {panel['title']}"
    assert len({d["uid"] for d in dashboards().values()}) == len(dashboards())


def test_every_promql_query_parses(tmp_path):
    """promtool parses each panel's query (Grafana variables substituted) as a recording rule."""
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr}
        for i, (_, expr) in enumerate(q for d in dashboards().values() for q in panel_queries(d, "prometheus"))
    ]
    assert len(rules) > 40
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def alloy_labels() -> set[str]:
    """Stream labels and structured metadata that monitoring/alloy/config.alloy attaches."""
    text = ALLOY.read_text()
    fields = {name for name in re.findall(r'"(\w+)"\s*=\s*"', text) if not name.startswith("__")}
    fields |= set(re.findall(r'target_label\s*=\s*"(\w+)"', text))
    for stage in ("stage.labels", "stage.structured_metadata"):
        for block in re.findall(re.escape(stage) + r"\s*\{\s*values\s*=\s*\{(.*?)\}", text, flags=re.S):
            fields |= set(re.findall(r"(\w+)\s*=", block))
    return fields


def test_log_queries_use_only_labels_alloy_attaches():
    labels = alloy_labels()
    assert {"dag_id", "task_id", "attempt", "level", "run_id"} <= labels
    logs = dashboards()["airflow-logs.json"]
    queries = [expr for _, expr in panel_queries(logs, "loki")]
    queries += [selector for _, selector, _ in variable_queries(logs, "loki")]
    assert queries
    for expr in queries:
        used = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", expr))
        assert used <= labels, f"{expr} selects on {used - labels}, which Alloy does not attach"
