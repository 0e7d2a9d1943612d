"""The deployments beside the native stack: what they share, and ansible's rendering.

Each target differs from the native stack only in its topology: where components live
(service names, inventory groups), the paths inside its hosts, where listeners bind, and how
secrets are spelled (`${NAME:?...}` references to compose/.env, Ansible Vault variables).
Compose renders in stackctl/compose.py. Ansible gets one variable file,
ansible/group_vars/all/airflow.yml: the shared Airflow settings, connections and variables,
config.yaml's ports, each port's host (the first host of the inventory group whose process
listens on it), and `airflow_processes`, the deployment model's processes that the role
templates loop over. tests/e2e/test_ansible.py compares a deployed airflow.cfg with the
native one.

`python -m stackctl render compose|ansible` rewrites the committed files, and a unit test
fails when they drift from a fresh render.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from . import processes, settings

COMPOSE_ALERTMANAGER_FILE = settings.REPO / "compose" / "alertmanager" / "alertmanager.yml"
COMPOSE_PROMETHEUS_DIR = settings.REPO / "compose" / "prometheus"
# Inside the prometheus container: its entrypoint writes FLOWER_PASSWORD (from .env) to this file.
COMPOSE_FLOWER_PASSWORD_FILE = "/tmp/flower_password"
ANSIBLE_VARS_FILE = settings.REPO / "ansible" / "group_vars" / "all" / "airflow.yml"

# Airflow settings (section, key) that compose renders differently from the native stack,
# each with the reason. Every other setting is equal apart from hosts, ports, paths and
# secret spelling.
COMPOSE_EXCEPTIONS = {
    ("secrets", "backend"): "connections and variables are AIRFLOW_CONN_*/AIRFLOW_VAR_* variables",
    ("secrets", "backend_kwargs"): "no LocalFilesystemBackend files in containers",
}

# Secrets only the native stack generates: the FreshPoC services' fault-injection token is for
# tests, and a deployment without it has fault injection off.
NATIVE_ONLY_SECRETS = {"freshpoc_admin_token"}
# The host groups ansible deploys processes to; the others (database, broker, monitoring) name
# where managed or separately installed services live.
ANSIBLE_DEPLOYED_GROUPS = (processes.CONTROLPLANE,)


def deployed_secrets(source: dict[str, Any]) -> list[str]:
    """The secrets a compose or ansible deployment must provide."""
    return [name for name in source["secrets"] if name not in NATIVE_ONLY_SECRETS]


def secret_env_name(secret: str) -> str:
    return secret.upper()


def ansible_target(source: dict[str, Any]) -> settings.Target:
    """Jinja references resolved by Ansible on each host: inventory topology and vault secrets."""
    return settings.Target(
        home="{{ common_prefix }}",
        dags_folder="{{ common_app_dir }}/dags",
        repo="{{ common_app_dir }}",
        hosts={name: f"{{{{ controlplane_hosts.{name} }}}}" for name in source["ports"]},
        ports={name: f"{{{{ controlplane_ports.{name} }}}}" for name in source["ports"]},
        secrets={name: f"{{{{ vault_{name} }}}}" for name in deployed_secrets(source)},
    )


def ansible_layout(source: dict[str, Any]) -> processes.Layout:
    return processes.Layout(ansible_target(source), "{{ controlplane_bind_host }}", bin_dir="{{ common_venv }}/bin")


def ansible_processes(source: dict[str, Any]) -> list[dict[str, Any]]:
    """The processes ansible runs, as the `airflow_processes` variable the role templates loop over."""
    layout = ansible_layout(source)
    base = processes.base_environment(layout)
    deployed = [p for p in processes.model(source, layout)
                if p.group in ANSIBLE_DEPLOYED_GROUPS or p.pool is not None] + [processes.log_server(layout)]
    envs = {p.name: {**p.env, **processes.secret_environment(source, layout.target, p)} for p in deployed}
    return [{
        "name": p.name, "group": p.group, "pool": p.pool, "argv": list(p.argv), "env": envs[p.name],
        # The same environment as supervisord spells it (supervisor mode), with the base environment.
        "supervisor_environment": processes.supervisor_environment({**base, **envs[p.name]}),
        "secrets": list(p.secrets), "listens": list(p.listens), "memory_limit_mb": p.memory_limit_mb,
        "stop_signal": p.stop_signal, "stop_timeout_s": p.stop_timeout_s, "one_shot": p.one_shot,
    } for p in deployed]


def ansible_hosts(source: dict[str, Any]) -> dict[str, str]:
    """Where each port is reached: the address of the first host of the group whose process listens on it."""
    groups = processes.port_groups(processes.model(source, ansible_layout(source)))
    return {port: f"{{{{ hostvars[groups['{group}'][0]]['ansible_host'] | default(groups['{group}'][0]) }}}}"
            for port, group in groups.items()}


def ansible_vars(source: dict[str, Any]) -> dict[str, Any]:
    target, shared = ansible_target(source), processes.shared_source(source)
    connections = settings.render_connections(shared, target)
    for fields in connections.values():
        if "port" in fields:
            fields["port"] = fields["port"].replace(" }}", " | int }}")
    return {
        # Shared by every host: no secret. Each process's secrets are in airflow_processes[].env.
        "airflow_settings": settings.render_settings({**shared, "bind_host": "{{ controlplane_bind_host }}"}, target),
        "airflow_connections": connections,
        "airflow_variables": settings.render_variables(source, target),
        "airflow_base_environment": processes.base_environment(ansible_layout(source)),
        "airflow_processes": ansible_processes(source),
        "airflow_worker_pools": source["worker_pools"],
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


def write() -> list[Path]:
    ANSIBLE_VARS_FILE.parent.mkdir(parents=True, exist_ok=True)
    ANSIBLE_VARS_FILE.write_text(render_ansible_vars(settings.load_source()))
    return [ANSIBLE_VARS_FILE]
