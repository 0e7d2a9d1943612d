"""Prometheus's configuration, rendered from the one source for any deployment target.

The scrape targets come from the target's hosts and ports, so the native stack and compose
scrape the same jobs under the same names, and the alert rules and dashboards (monitoring/)
see the same series everywhere.
"""

from __future__ import annotations

from typing import Any

import yaml

from stackctl.model import settings
from stackctl.model.listeners import BASIC_AUTH_SECRETS
from stackctl.model.monitoring import BLACKBOX_CONFIG
from stackctl.model.process import Process, Scrape
from stackctl.model.target import TLS_CA, Target

# Recording rules rendered per deployment (expected_workers_rules), each labelled with its pool.
EXPECTED_WORKERS = "controlplane:worker_pool_expected_workers"
DESIRED_PROCESSES = "controlplane:worker_pool_desired_processes"
MAX_PROCESSES = "controlplane:worker_pool_max_processes"
WORKER_MAX_PROCESSES = "controlplane:worker_pool_worker_max_processes"
ONLINE_PROCESSES = "controlplane:worker_pool_online_processes"
# Tasks one Celery process runs at once: the KEDA query's divisor (Airflow's Helm chart divides
# by the worker's concurrency; here each autoscaled process is a slot of one).
TASKS_PER_PROCESS = 1


def render(source: dict[str, Any], target: Target, model: list[Process], *, rule_files: list[str]) -> dict:
    """The scrape jobs of the model's processes (Process.scrape), in the order the processes come;
    Prometheus reads the passwords it sends from its secret files on the target."""
    monitoring = source["monitoring"]

    def basic_auth(port: str) -> dict[str, str]:
        return {"username": source["admin_user"], "password_file": target.secret_file(BASIC_AUTH_SECRETS[port])}

    def address(port: str) -> str:
        return f"{target.hosts[port]}:{target.ports[port]}"

    def client(port: str) -> dict[str, Any]:
        """How Prometheus reaches a listener: its basic auth, and over HTTPS the CA it verifies it against."""
        config: dict[str, Any] = {"basic_auth": basic_auth(port)} if port in BASIC_AUTH_SECRETS else {}
        if target.scheme(port) == "https":
            config |= {"scheme": "https", "tls_config": {"ca_file": target.tls_file(TLS_CA)}}
        return config

    jobs: dict[str, list[Scrape]] = {}
    for scrape in (scrape for process in model for scrape in process.scrape):
        jobs.setdefault(scrape.job, []).append(scrape)
    prober = address("blackbox_exporter")
    probes = {process.scrape[0].job: process for process in model if process.scrape and process.scrape[0].blackbox}
    configs = []
    for job, scrapes in jobs.items():
        if job in probes:
            probe = probes[job].probe
            url = f"{target.scheme(probe.port)}://{address(probe.port)}{probe.path}"
            configs.append(probe_job(job, url, scrapes[0].blackbox, prober))
            continue
        config: dict[str, Any] = {"job_name": job, "static_configs": [
            {"targets": [address(s.port)], **({"labels": s.labels} if s.labels else {})} for s in scrapes]}
        if scrapes[0].honor_labels:
            config["honor_labels"] = True
        configs.append(config | client(scrapes[0].port))
    return {
        "global": {
            "scrape_interval": monitoring["scrape_interval"],
            "evaluation_interval": monitoring["evaluation_interval"],
        },
        "rule_files": rule_files,
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [address("alertmanager")]}], **client("alertmanager")}]
        },
        "scrape_configs": configs,
    }


def blackbox_config(target: Target) -> dict[str, Any]:
    """The blackbox exporter's modules (the repository's monitoring/blackbox/blackbox.yml) with the CA that
    its HTTP probes verify an HTTPS listener against: a module's tls_config names a file, each host's own."""
    config = yaml.safe_load((settings.REPO / BLACKBOX_CONFIG).read_text())
    for module in config["modules"].values():
        if module["prober"] == "http":
            module["http"]["tls_config"] = {"ca_file": target.tls_file(TLS_CA)}
    return config


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
