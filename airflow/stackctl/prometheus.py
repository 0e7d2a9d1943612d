"""Prometheus's configuration, rendered from the one source for any deployment target.

The scrape targets come from the target's hosts and ports, so the native stack and compose
scrape the same jobs under the same names, and the alert rules and dashboards (monitoring/)
see the same series everywhere.
"""

from __future__ import annotations

from typing import Any

import yaml

from .settings import Target

# (job, component whose port serves /metrics). The job names are what rules and dashboards
# select on: keep them stable.
SCRAPE_JOBS = (
    ("prometheus", "prometheus"),
    ("alertmanager", "alertmanager"),
    ("pushgateway", "pushgateway"),
    ("statsd", "statsd_metrics"),  # Airflow's StatsD, mapped (the bridge natively, statsd_exporter in compose)
    ("flower", "flower"),
    ("redis", "redis_exporter"),
    ("postgres", "postgres_exporter"),
    ("node", "node_exporter"),
    ("inference", "inference"),
)

EXPECTED_WORKERS = "controlplane:worker_pool_expected_workers"


def render(source: dict[str, Any], target: Target, *, flower_password_file: str, rule_files: list[str]) -> dict:
    monitoring = source["monitoring"]
    jobs = []
    for job, component in SCRAPE_JOBS:
        scrape: dict[str, Any] = {
            "job_name": job,
            "static_configs": [{"targets": [f"{target.hosts[component]}:{target.ports[component]}"]}],
        }
        if job == "pushgateway":
            scrape["honor_labels"] = True  # keep the job and grouping labels the batch jobs pushed
        if job == "flower":
            scrape["basic_auth"] = {"username": source["admin_user"], "password_file": flower_password_file}
        jobs.append(scrape)
    services = sorted(name for name in target.ports if name.startswith("freshpoc_"))
    if services:
        jobs.append({
            "job_name": "freshpoc",
            "static_configs": [
                {"targets": [f"{target.hosts[name]}:{target.ports[name]}"],
                 "labels": {"service": name.removeprefix("freshpoc_")}}
                for name in services
            ],
        })
    return {
        "global": {
            "scrape_interval": monitoring["scrape_interval"],
            "evaluation_interval": monitoring["evaluation_interval"],
        },
        "rule_files": rule_files,
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [f"{target.hosts['alertmanager']}:{target.ports['alertmanager']}"]}]}
            ]
        },
        "scrape_configs": jobs,
    }


def expected_workers_rules(source: dict[str, Any]) -> dict:
    """How many Celery workers each pool should have online, as recording rules.

    The WorkerPoolDegraded alert compares Flower's online workers with these. They follow the
    deployment's pool sizes, so each deployment renders its own file.
    """
    rules = [
        {"record": EXPECTED_WORKERS, "expr": f"vector({int(pool['instances'])})", "labels": {"pool": name}}
        for name, pool in source["worker_pools"].items()
    ]
    return {"groups": [{"name": "worker-pool-sizes", "rules": rules}]}


def to_yaml(config: dict, rendered_by: str = "stackctl (airflow/stackctl/prometheus.py)") -> str:
    return f"# Rendered by {rendered_by}. Do not edit.\n" + yaml.safe_dump(config, sort_keys=False)
