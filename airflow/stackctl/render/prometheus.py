"""Prometheus's configuration, rendered from the one source for any deployment target.

The scrape targets come from the target's hosts and ports, so the native stack and compose
scrape the same jobs under the same names, and the alert rules and dashboards (monitoring/)
see the same series everywhere.
"""

from __future__ import annotations

from typing import Any

import yaml

from stackctl.model.settings import Target
from stackctl.render import web_auth

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
# (job, component, path, blackbox module): components without a /metrics of their own, probed
# over HTTP by the blackbox exporter (its modules: BLACKBOX_CONFIG). The job's probe_success is
# what the component's alert selects on, and its instance label is the probed URL.
PROBE_JOBS = (
    ("api-server", "api", "/api/v2/monitor/health", "http_2xx"),
)
# The blackbox exporter's modules (relative to the repository).
BLACKBOX_CONFIG = "monitoring/blackbox/blackbox.yml"

# postgres_exporter's custom queries (relative to the repository): airflow_queue_task_instances.
POSTGRES_EXPORTER_QUERIES = "monitoring/postgres_exporter/queries.yml"
# The alert and recording rules (relative to the repository), every file of which Prometheus loads.
RULES_DIR = "monitoring/prometheus/rules"

# Recording rules rendered per deployment (expected_workers_rules), each labelled with its pool.
EXPECTED_WORKERS = "controlplane:worker_pool_expected_workers"
DESIRED_PROCESSES = "controlplane:worker_pool_desired_processes"
MAX_PROCESSES = "controlplane:worker_pool_max_processes"
WORKER_MAX_PROCESSES = "controlplane:worker_pool_worker_max_processes"
ONLINE_PROCESSES = "controlplane:worker_pool_online_processes"
# Tasks one Celery process runs at once: the KEDA query's divisor (Airflow's Helm chart divides
# by the worker's concurrency; here each autoscaled process is a slot of one).
TASKS_PER_PROCESS = 1


# The scraped components behind basic auth (user: admin_user), with the secret holding the password.
BASIC_AUTH_SECRETS = {"flower": "flower_password", **web_auth.LISTENER_PASSWORDS}


def render(source: dict[str, Any], target: Target, *, secrets_dir: str, rule_files: list[str]) -> dict:
    """secrets_dir: where Prometheus finds the password files it sends (<secrets_dir>/<secret>)."""
    monitoring = source["monitoring"]

    def basic_auth(component: str) -> dict[str, str]:
        return {"username": source["admin_user"], "password_file": f"{secrets_dir}/{BASIC_AUTH_SECRETS[component]}"}

    jobs = []
    for job, component in SCRAPE_JOBS:
        scrape: dict[str, Any] = {
            "job_name": job,
            "static_configs": [{"targets": [f"{target.hosts[component]}:{target.ports[component]}"]}],
        }
        if job == "pushgateway":
            scrape["honor_labels"] = True  # keep the job and grouping labels the batch jobs pushed
        if component in BASIC_AUTH_SECRETS:
            scrape["basic_auth"] = basic_auth(component)
        jobs.append(scrape)
    prober = f"{target.hosts['blackbox_exporter']}:{target.ports['blackbox_exporter']}"
    jobs += [probe_job(job, f"http://{target.hosts[component]}:{target.ports[component]}{path}", module, prober)
             for job, component, path, module in PROBE_JOBS]
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
                {"static_configs": [{"targets": [f"{target.hosts['alertmanager']}:{target.ports['alertmanager']}"]}],
                 "basic_auth": basic_auth("alertmanager")}
            ]
        },
        "scrape_configs": jobs,
    }


def probe_job(job: str, url: str, module: str, prober: str) -> dict[str, Any]:
    """A scrape of the blackbox exporter's /probe for one URL (the exporter's documented relabelling):
    the URL becomes the probe's target parameter and the series' instance label."""
    return {
        "job_name": job,
        "metrics_path": "/probe",
        "params": {"module": [module]},
        "static_configs": [{"targets": [url]}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": prober},
        ],
    }


def expected_workers_rules(source: dict[str, Any], workers: dict[str, str] | None = None) -> dict:
    """Each pool's size and capacity from airflow/config.yaml, and its demand, as recording rules.

    Every series is labelled with its pool; each deployment renders its own file, as the sizes are
    its own:
    - expected workers: `instances`, or `workers[pool]` where the deployment sizes the pool itself
      (ansible: an expression over the inventory's hosts, which the target resolves); the
      CeleryWorkerPoolDown/Degraded alerts compare Flower's online workers with it;
    - desired processes: queued plus running task instances of the pool's queue (the KEDA query of
      Airflow's Helm chart, from the PostgreSQL exporter), per process; 0 when none;
    - max processes: instances x max_processes, the most the pool can run when all its workers are up;
    - worker max processes: max_processes, the most one of its workers grows to (WorkerPoolAtCapacity);
    - online processes: the processes its workers run now (airflow_celery_worker_processes); 0 when none.
    """
    def exprs(name: str, pool: dict[str, Any]) -> dict[str, str]:
        instances, most = int(pool["instances"]), int(pool["max_processes"])
        queued_or_running = f'airflow_queue_task_instances{{queue="{pool["queue"]}", state=~"queued|running"}}'
        expected, max_processes = str(instances), str(instances * most)
        if workers:  # a count the target resolves later: PromQL multiplies it
            expected, max_processes = workers[name], f"{workers[name]} * {most}"
        return {
            EXPECTED_WORKERS: f"vector({expected})",
            DESIRED_PROCESSES: f"ceil(sum({queued_or_running}) / {TASKS_PER_PROCESS}) or vector(0)",
            MAX_PROCESSES: f"vector({max_processes})",
            WORKER_MAX_PROCESSES: f"vector({most})",
            ONLINE_PROCESSES: f'sum(airflow_celery_worker_processes{{pool="{name}"}}) or vector(0)',
        }

    per_pool = {name: exprs(name, pool) for name, pool in source["worker_pools"].items()}
    rules = [{"record": record, "expr": per_pool[name][record], "labels": {"pool": name}}
             for record in (EXPECTED_WORKERS, DESIRED_PROCESSES, MAX_PROCESSES, WORKER_MAX_PROCESSES,
                            ONLINE_PROCESSES)
             for name in per_pool]
    return {"groups": [{"name": "worker-pool-sizes", "rules": rules}]}


def to_yaml(config: dict, rendered_by: str = "stackctl (airflow/stackctl/render/prometheus.py)") -> str:
    return f"# Rendered by {rendered_by}. Do not edit.\n" + yaml.safe_dump(config, sort_keys=False)
