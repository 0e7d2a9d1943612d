"""Ansible's rendering of the deployment model: one variable file and the monitoring role's templates.

ansible/group_vars/all/airflow.yml holds the shared Airflow settings, connections and variables,
config.yaml's ports, each port's host (the first host of the inventory group whose process
listens on it), and `airflow_processes`, the model's processes the role templates loop over: each
with its argv, environment, secret files, folders, probe and start phase. Hosts, ports and paths
are inventory variables and secrets vault variables, as Jinja references the target resolves. The
monitoring role also gets Prometheus's and Alertmanager's configuration as templates, from the
native renderers. tests/e2e/test_ansible.py compares a deployed airflow.cfg with the native one.

`python -m stackctl render ansible` rewrites the committed files, and a unit test fails when they
drift from a fresh render.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from stackctl.model import debian, monitoring, processes, settings, toolchain
from stackctl.model.control_plane import LOOKS_UP_FOR_TASKS, TASK_CONNECTIONS
from stackctl.model.infrastructure import MANAGED_GROUPS
from stackctl.model.listeners import WEB_CONFIG_SECRETS
from stackctl.model.process import SYSTEM, Process, web_config_file
from stackctl.model.secrets import (
    CONNECTION_ENV_PREFIX,
    SECRETS_MANAGER_BACKEND,
    STORAGE_SECRETS,
    deployed_secrets,
    shared_source,
)
from stackctl.model.target import ANSIBLE, LOOPBACK, TLS_CA, TLS_CERT, TLS_KEY, Target
from stackctl.render import alertmanager, prometheus, web_auth
from stackctl.render.supervisord import supervisor_environment

ANSIBLE_VARS_FILE = settings.REPO / "ansible" / "group_vars" / "all" / "airflow.yml"
# The monitoring role's rendered templates, each at its destination's path under common_prefix.
ANSIBLE_MONITORING_TEMPLATES = settings.REPO / "ansible" / "roles" / "monitoring" / "templates"


def ansible_target(source: dict[str, Any]) -> Target:
    """Jinja references resolved by Ansible on each host: inventory topology and vault secrets.

    Each process binds its host's address (controlplane_bind_host) where other hosts reach its
    port, loopback where only its own host does; the Airflow pools follow the inventory's hosts
    (controlplane's pools.yml), not config.yaml's instances."""
    return Target(
        kind=ANSIBLE,
        home="{{ common_prefix }}",
        dags_folder="{{ common_app_dir }}/dags",
        repo="{{ common_app_dir }}",
        hosts={name: f"{{{{ controlplane_hosts.{name} }}}}" for name in source["ports"]},
        ports={name: f"{{{{ controlplane_ports.{name} }}}}" for name in source["ports"]},
        secrets={name: f"{{{{ vault_{name} }}}}" for name in deployed_secrets(source)},
        bind_host="{{ controlplane_bind_host }}",
        bin_dir="{{ common_venv }}/bin",
        loopback_ports=processes.local_ports(processes.of_kind(source, ANSIBLE, deployed_secrets(source))),
        sizes_airflow_pools=False,
        tls=settings.tls_for(source, ANSIBLE),
    )


def ansible_hosts(source: dict[str, Any]) -> dict[str, str]:
    """Where each port an ansible host serves is reached (controlplane_hosts): the address of the first
    host of the group whose process listens on it, or loopback where only that host reaches it."""
    model = processes.of_kind(source, ANSIBLE, deployed_secrets(source))
    local = processes.local_ports(model)

    def first_host(group: str) -> str:
        return f"{{{{ hostvars[groups['{group}'][0]]['ansible_host'] | default(groups['{group}'][0]) }}}}"

    return {port: LOOPBACK if port in local else first_host(group)
            for port, group in processes.port_groups(model).items()}


def ansible_process(source: dict[str, Any], target: Target, p: Process) -> dict[str, Any]:
    secret_env = processes.secret_environment(source, target, p)
    # The tasks' connections apart: a host's files hold them only with the local secrets backend
    # (common_secrets_backend); with Secrets Manager the process looks them up there instead. A
    # service's own connection (the inference service's cache reader) stays in its environment.
    looks_up_for_tasks = p.name in LOOKS_UP_FOR_TASKS
    connection_env = {key: value for key, value in secret_env.items()
                      if looks_up_for_tasks and key.startswith(CONNECTION_ENV_PREFIX)}
    env = {**p.env, **{key: value for key, value in secret_env.items() if key not in connection_env}}
    system = p.runtime == SYSTEM
    program, *args = p.argv
    return {
        "name": p.name, "group": p.group, "pool": p.pool, "runtime": p.runtime,
        # A system program runs from its Debian package, under the name Debian gives it.
        "argv": [debian.executable(program), *args], "package": debian.PACKAGES[program] if system else None,
        "env": env,
        # The same environment as supervisord spells it (supervisor mode): the base environment
        # too, except for a system program, which needs none of Airflow's (as natively).
        "supervisor_environment": supervisor_environment(
            env if system else {**processes.base_environment(target), **env}),
        # It looks connections up for the tasks (the api-server, the triggerer): with Secrets Manager it
        # reads them there.
        "looks_up_for_tasks": looks_up_for_tasks,
        "connection_env": connection_env,
        "secrets": list(p.secrets), "secret_files": secret_files(source, target, p), "listens": list(p.listens),
        # Its folders under common_prefix: the state it writes and those of its rendered configuration.
        "folders": sorted({*p.state, *(path.rsplit("/", 1)[0] for path in p.config_files)}),
        # The repository's files it reads, copied apart from the code (a change restarts only it).
        "repo_files": list(p.repo_files),
        # With the scheme its port is reached by (https where it serves TLS: Target.scheme).
        "probe": {**asdict(p.probe), "scheme": target.scheme(p.probe.port)} if p.probe else None,
        "priority": int(p.phase),
        "memory_limit_mb": p.memory_limit_mb, "stop_signal": p.stop_signal, "stop_timeout_s": p.stop_timeout_s,
        "stop_as_group": p.stop_as_group,
        "reload_signal": p.reload_signal, "one_shot": p.one_shot,
        # Given the storage connection where the inventory puts storage on S3 (common_storage_uri).
        "uses_storage": p.uses_storage,
    }


def secret_files(source: dict[str, Any], target: Target, process: Process) -> list[dict[str, str]]:
    """The files a program reads its secrets from (none reach a system program's environment or argv),
    and a basic-auth listener's web config, with the password's hash (the web_password_hash filter,
    ansible/filter_plugins): a listener's own password reaches its host as that hash only."""
    files = [{"path": target.secret_file(file.name), "content": file.render(target.secrets)}
             for file in process.secret_files]
    for listener in sorted(set(process.listens) & set(WEB_CONFIG_SECRETS)):
        password = f"{{{{ vault_{WEB_CONFIG_SECRETS[listener]} | web_password_hash }}}}"
        files.append({"path": target.config(web_config_file(listener)),
                      "content": web_auth.to_yaml(web_auth.render(source["admin_user"], password, target))})
    return files


def ansible_pool_workers(source: dict[str, Any]) -> dict[str, str]:
    """Each pool's worker count, as Jinja: the instances its hosts run now (common's pool_sizes.yml)."""
    return {pool: f'{{{{ common_pool_instances["{pool}"] }}}}' for pool in source["worker_pools"]}


def ansible_monitoring_templates(source: dict[str, Any]) -> dict[str, str]:
    """Prometheus's and Alertmanager's configuration by path under the deployment's home, from the
    native renderers; Alertmanager notifies the on-call inbox only, as in compose."""
    target = ansible_target(source)
    by = "`python -m stackctl render ansible` (airflow/stackctl/render/prometheus.py)"
    config = prometheus.render(
        source, target, processes.model(source, target),
        rule_files=[target.repo_file(f"{monitoring.RULES_DIR}/*.yml"), target.config(monitoring.EXPECTED_WORKERS)],
    )
    workers = prometheus.expected_workers_rules(source, ansible_pool_workers(source))
    inbox = alertmanager.inbox_webhook(target, target.hosts["oncall_inbox"])
    return {
        monitoring.PROMETHEUS_CONFIG: prometheus.to_yaml(config, rendered_by=by),
        monitoring.EXPECTED_WORKERS: prometheus.to_yaml(workers, rendered_by=by),
        monitoring.ALERTMANAGER_CONFIG: alertmanager.to_yaml(
            alertmanager.render(inbox, target.secret_file("oncall_inbox_token"), None)),
        # The HTTPS probes' CA (ansible's hosts always have TLS: settings.tls_for).
        monitoring.BLACKBOX_TLS_CONFIG: prometheus.to_yaml(prometheus.blackbox_config(target), rendered_by=by),
    }


def ansible_processes(source: dict[str, Any]) -> list[dict[str, Any]]:
    """The processes ansible deploys, as the `airflow_processes` variable the role templates loop over:
    every process of the model on ansible's hosts but the managed services the inventory points at."""
    target = ansible_target(source)
    return [ansible_process(source, target, p) for p in processes.model(source, target)
            if p.group not in MANAGED_GROUPS]


def rendered_connections(source: dict[str, Any], target: Target) -> dict[str, dict[str, Any]]:
    connections = settings.render_connections(source, target)
    for fields in connections.values():
        if "port" in fields:
            fields["port"] = fields["port"].replace(" }}", " | int }}")
    return connections


def ansible_vars(source: dict[str, Any]) -> dict[str, Any]:
    target, shared = ansible_target(source), shared_source(source)
    return {
        # Shared by every host: no secret. Each process's secrets are in airflow_processes[].env (and
        # .connection_env).
        "airflow_settings": settings.render_settings(shared, target),
        "airflow_connections": rendered_connections(shared, target),
        # What the controller publishes into Secrets Manager with that backend (controlplane's
        # secrets_manager.yml): the shared connections and the tasks' secret-bearing ones.
        "airflow_secret_connections": rendered_connections(
            {**source, "connections": {conn_id: source["connections"][conn_id] for conn_id in TASK_CONNECTIONS}},
            target),
        "airflow_variables": settings.render_variables(source, target),
        "airflow_base_environment": processes.base_environment(target),
        "airflow_processes": ansible_processes(source),
        "airflow_worker_pools": source["worker_pools"],
        "airflow_pools": source["airflow_pools"],
        "airflow_start_retries": processes.START_RETRIES,
        "airflow_uv_version": toolchain.uv_version(),
        "airflow_storage_secrets": list(STORAGE_SECRETS),
        "airflow_secrets_manager_backend": SECRETS_MANAGER_BACKEND,
        # Where each host keeps the CAs its clients trust and its own certificate and key
        # (roles/common/tasks/tls.yml installs them from the deployment's CA on the controller).
        "airflow_tls": {
            "ca": target.tls_file(TLS_CA), "cert": target.tls_file(TLS_CERT), "key": target.tls_file(TLS_KEY),
            # On a monitoring host: every certificate's expiry, for node_exporter.
            "expiry_metrics": target.state(monitoring.CERTIFICATE_METRICS),
        },
        "controlplane_ports": source["ports"],
        "controlplane_hosts": ansible_hosts(source),
    }


def render_ansible_vars(source: dict[str, Any]) -> str:
    header = (
        "---\n# Rendered by `python -m stackctl render ansible` from airflow/config.yaml. Do not edit.\n"
        "# Hosts, ports and paths are inventory variables; secrets are Ansible Vault variables (vault_*).\n"
        "# yamllint disable rule:line-length\n"  # rendered URLs are long and cannot be wrapped
    )
    return header + yaml.dump(ansible_vars(source), Dumper=_IndentedDumper, sort_keys=False, width=1000)


class _IndentedDumper(yaml.SafeDumper):
    """Indents list items under their key, as yamllint (ansible-lint) expects."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def render_ansible(source: dict[str, Any]) -> dict[Path, str]:
    """Every file `python -m stackctl render ansible` writes, by path."""
    templates = {ANSIBLE_MONITORING_TEMPLATES / f"{path}.j2": text
                 for path, text in ansible_monitoring_templates(source).items()}
    return {ANSIBLE_VARS_FILE: render_ansible_vars(source), **templates}
