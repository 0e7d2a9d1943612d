"""The deployment model: every process of the product, defined once for every target.

Each process (process.py) is built for a target (target.py) by the module of its part: the
infrastructure, the Airflow control plane, the worker pools, the reference services, monitoring.
The native stack (native/supervisor.py), compose (render/compose.py) and ansible
(render/ansible.py, as the `airflow_processes` variable the role templates loop over) render
from it; none of them types a command, an environment, a port, a probe or a start order of its own.
"""

from __future__ import annotations

from typing import Any

from stackctl.errors import ConfigError
from stackctl.model import control_plane, infrastructure, monitoring, services, worker_pools
from stackctl.model.process import AIRFLOW, Process
from stackctl.model.secrets import airflow_environment, split_by_secrets
from stackctl.model.target import ANSIBLE, COMPOSE, NATIVE, Target

# A process that exits within startsecs of its start (its database or broker unreachable) is
# started again after a backoff that grows by one second per try; after START_RETRIES tries in a
# row supervisord gives up (FATAL) and only an operator starts it again. 30 tries wait
# 1 + 2 + ... + 30 s = 465 s between them: a dependency may be down about eight minutes and every
# process comes back on its own, at most 30 s after it. The first failed start of `stackctl up`
# still fails at once (Supervisor.start_group: BACKOFF is a failure there). Ansible's supervisor
# templates render it too (airflow_start_retries); its systemd units never stop restarting.
START_RETRIES = 30
# The ports reached from outside the deployment: people with a browser or a client (the UI and
# REST API, Flower, the metrics, alerts and silences, the on-call inbox, dashboards, the object
# store's console) and the applications the inference service serves. Compose publishes them
# (on the host's loopback), the firewall opens them to operators, and none binds to loopback only.
PUBLIC_PORTS = ("api", "flower", "prometheus", "alertmanager", "oncall_inbox", "inference", "grafana",
                "minio_console")


def every_process(source: dict[str, Any], target: Target) -> list[Process]:
    """Every process of every target, built for this one."""
    found = [*infrastructure.processes(source, target), *control_plane.processes(source, target),
             *worker_pools.processes(source, target), *services.processes(source, target),
             *monitoring.processes(source, target)]
    return [*found, monitoring.prometheus(source, target, [p for p in found if target.kind in p.runs_on])]


def model(source: dict[str, Any], target: Target) -> list[Process]:
    """The processes the target runs."""
    found = every_process(source, target)
    _check(source, found)
    return [process for process in found if target.kind in process.runs_on]


def _check(source: dict[str, Any], processes: list[Process]) -> None:
    for kind in (NATIVE, COMPOSE, ANSIBLE):
        names = [p.name for p in processes if kind in p.runs_on]
        if len(set(names)) != len(names):
            raise ConfigError(f"process names must be unique: {names}")
        listened = [port for p in processes if kind in p.runs_on for port in p.listens]
        if len(set(listened)) != len(listened):
            raise ConfigError(f"a port has two listening processes on {kind}: {sorted(listened)}")
    unowned = set(source["ports"]) - {port for p in processes for port in p.listens}
    if unowned:
        raise ConfigError(f"every port needs exactly one listening process; without one: {sorted(unowned)}")
    connection_secrets = split_by_secrets(source["connections"])[1]
    for process in processes:
        files = {secret for file in process.secret_files for secret in file.secrets}
        unknown = (set(process.secrets) - set(source["secrets"]) or set(process.reaches) - set(source["ports"])
                   or set(process.connections) - set(connection_secrets) or files - set(process.secrets))
        if unknown:
            raise ConfigError(f"process {process.name} names unknown secrets, ports or connections: {sorted(unknown)}")
        for conn_id in process.connections:
            if not connection_secrets[conn_id] <= set(process.secrets):
                raise ConfigError(f"process {process.name} uses connection {conn_id} without its secrets "
                                  f"{sorted(connection_secrets[conn_id])}")


def port_groups(processes: list[Process]) -> dict[str, str]:
    """The host group serving each port: where every other process reaches it."""
    return {port: p.group for p in processes for port in p.listens}


def serving(processes: list[Process]) -> dict[str, Process]:
    """The process listening on each port."""
    return {port: p for p in processes for port in p.listens}


def local_ports(processes: list[Process]) -> frozenset[str]:
    """The ports that only their own host group reaches, and no operator: loopback is enough.

    A group's processes share its host (ansible deploys each group's processes to its hosts and
    reaches a port at its group's first host), so a port reached from no other group needs no
    address that other hosts can reach.
    """
    groups = port_groups(processes)
    remote = {port for p in processes for port in p.reaches if groups[port] != p.group}
    return frozenset(set(groups) - remote - set(PUBLIC_PORTS))


def base_environment(target: Target) -> dict[str, str]:
    """The environment of every Airflow and application process of a host (the image sets it in compose)."""
    return {
        "AIRFLOW_HOME": f"{target.home}/airflow",
        "AIRFLOW_CONFIG": f"{target.home}/airflow/airflow.cfg",
        # Tasks import their logic from workers/; stackctl lives in airflow/.
        "PYTHONPATH": f"{target.repo}:{target.repo}/airflow",
        "PATH": f"{target.bin_dir}:/usr/local/bin:/usr/bin:/bin",
    }


def secret_environment(source: dict[str, Any], target: Target, process: Process) -> dict[str, str]:
    """The AIRFLOW__S__K and AIRFLOW_CONN_* variables of the secret-bearing settings an Airflow process holds."""
    if process.runtime != AIRFLOW:
        return {}
    return airflow_environment(source, target, process.secrets, process.connections)


def of_kind(source: dict[str, Any], kind: str, secrets: list[str]) -> list[Process]:
    """The processes a kind of target runs, with placeholder topology: what runs where, not how.
    secrets: the secrets the target has (a native test stack's fault-injection token among them)."""
    placeholder = Target(kind=kind, home="", repo="", dags_folder="", hosts=dict.fromkeys(source["ports"], ""),
                         ports=source["ports"], secrets=dict.fromkeys(secrets, ""), bind_host="")
    return model(source, placeholder)
