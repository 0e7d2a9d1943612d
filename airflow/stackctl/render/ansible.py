"""The deployments beside the native stack: what they share, and ansible's rendering.

Each target differs from the native stack only in its topology: where components live
(service names, inventory groups), the paths inside its hosts, where listeners bind, and how
secrets are spelled (`${NAME:?...}` references to compose/.env, Ansible Vault variables).
Compose renders in stackctl/render/compose.py. Ansible gets one variable file,
ansible/group_vars/all/airflow.yml: the shared Airflow settings, connections and variables,
config.yaml's ports, each port's host (the first host of the inventory group whose process
listens on it), and `airflow_processes`, the deployment model's processes that the role
templates loop over. The monitoring role also gets Prometheus's and Alertmanager's
configuration as templates, from the native renderers with the inventory's hosts as Jinja
references. tests/e2e/test_ansible.py compares a deployed airflow.cfg with the native one.

`python -m stackctl render compose|ansible` rewrites the committed files, and a unit test
fails when they drift from a fresh render.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from stackctl.model import debian, processes, settings, toolchain
from stackctl.render import alertmanager, prometheus, web_auth

COMPOSE_ALERTMANAGER_FILE = settings.REPO / "compose" / "alertmanager" / "alertmanager.yml"
COMPOSE_PROMETHEUS_DIR = settings.REPO / "compose" / "prometheus"
# Inside the prometheus and alertmanager containers: their entrypoints write the secrets they
# send (from .env) to files here, as their configurations read secrets from files only.
COMPOSE_SECRETS_DIR = "/tmp"
ANSIBLE_VARS_FILE = settings.REPO / "ansible" / "group_vars" / "all" / "airflow.yml"
# The monitoring role's rendered templates, each at its destination's path under common_prefix.
ANSIBLE_MONITORING_TEMPLATES = settings.REPO / "ansible" / "roles" / "monitoring" / "templates"
EXPECTED_WORKERS_FILE = "prometheus/expected_workers.yml"

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
# The vault's keys of S3 object storage, needed only where the inventory sets an s3://
# common_storage_uri (a deployment of several hosts), and only by processes that use storage.
STORAGE_SECRETS = ("storage_access_key_id", "storage_secret_access_key")
# The host groups ansible deploys processes to (besides the worker pools); the others
# (database, broker) name where managed services live.
ANSIBLE_DEPLOYED_GROUPS = (processes.CONTROLPLANE, processes.MONITORING)


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
    """Each process binds its host's address (controlplane_bind_host) where other hosts reach
    its port, loopback where only its own host does; the Airflow pools follow the inventory's
    hosts (controlplane's pools.yml), not config.yaml's instances."""
    layout = processes.Layout(ansible_target(source), "{{ controlplane_bind_host }}",
                              bin_dir="{{ common_venv }}/bin", sizes_airflow_pools=False)
    return replace(layout, loopback_ports=processes.local_ports(processes.model(source, layout)))


def ansible_processes(source: dict[str, Any]) -> list[dict[str, Any]]:
    """The processes ansible runs, as the `airflow_processes` variable the role templates loop over."""
    layout = ansible_layout(source)
    deployed = [p for p in processes.model(source, layout)
                if p.group in ANSIBLE_DEPLOYED_GROUPS or p.pool is not None]
    return [ansible_process(source, layout, p) for p in deployed]


def ansible_process(source: dict[str, Any], layout: processes.Layout, p: processes.Process) -> dict[str, Any]:
    env = {**p.env, **processes.secret_environment(source, layout.target, p)}
    system = p.runtime == processes.SYSTEM
    program, *args = p.argv
    return {
        "name": p.name, "group": p.group, "pool": p.pool, "runtime": p.runtime,
        # A system program runs from its Debian package, under the name Debian gives it.
        "argv": [debian.executable(program), *args], "package": debian.PACKAGES[program] if system else None,
        "env": env,
        # The same environment as supervisord spells it (supervisor mode): the base environment
        # too, except for a system program, which needs none of Airflow's (as natively).
        "supervisor_environment": processes.supervisor_environment(
            env if system else {**processes.base_environment(layout), **env}),
        "secrets": list(p.secrets), "secret_files": secret_files(source, layout, p), "listens": list(p.listens),
        "memory_limit_mb": p.memory_limit_mb, "stop_signal": p.stop_signal, "stop_timeout_s": p.stop_timeout_s,
        "stop_as_group": p.stop_as_group,
        "reload_signal": p.reload_signal, "one_shot": p.one_shot,
        # Given the storage connection where the inventory puts storage on S3 (common_storage_uri).
        "uses_storage": p.uses_storage,
    }


def secret_files(source: dict[str, Any], layout: processes.Layout, process: processes.Process) -> list[dict[str, str]]:
    """The files a program reads its secrets from, as none reach a system program's environment or argv.

    Each is <home>/secrets/<name>, as natively, except redis_exporter's, which maps the broker's
    address to its password (processes.REDIS_EXPORTER_PASSWORD_FILE). A listener behind basic auth
    also gets its web config, with the password's hash (the web_password_hash filter, ansible/filter_plugins).
    """
    secrets = layout.target.secrets
    if process.runtime != processes.SYSTEM:
        # A reference service reads its token from the file its argv names (services/auth.py).
        return [{"path": layout.secret_file(name), "content": secrets[name]}
                for name in processes.argv_secret_files(process, layout)]
    if process.name == "redis-exporter":
        address = processes.redis_address(layout.target.hosts["redis"], layout.port("redis"))
        return [{"path": f"{layout.home}/{processes.REDIS_EXPORTER_PASSWORD_FILE}",
                 "content": json.dumps({address: secrets["redis_password"]})}]
    own = {web_auth.LISTENER_PASSWORDS[port] for port in process.listens if port in web_auth.LISTENER_PASSWORDS}
    # A listener's own password reaches its host as the hash in its web config only, unless the
    # program also sends it: Prometheus scrapes itself.
    sends = set(prometheus.BASIC_AUTH_SECRETS.values()) if "prometheus" in process.listens else set()
    files = [{"path": layout.secret_file(name), "content": secrets[name]}
             for name in process.secrets if name not in own - sends]
    for listener in sorted(set(process.listens) & set(web_auth.LISTENER_PASSWORDS)):
        password = f"{{{{ vault_{web_auth.LISTENER_PASSWORDS[listener]} | web_password_hash }}}}"
        files.append({"path": f"{layout.home}/{processes.web_config_file(listener)}",
                      "content": web_auth.to_yaml({"basic_auth_users": {source["admin_user"]: password}})})
    return files


def ansible_hosts(source: dict[str, Any]) -> dict[str, str]:
    """Where each port is reached: the address of the first host of the group whose process listens
    on it, or loopback where only that host reaches it."""
    layout = ansible_layout(source)
    groups = processes.port_groups(processes.model(source, layout))
    return {port: processes.LOOPBACK if port in layout.loopback_ports
            else f"{{{{ hostvars[groups['{group}'][0]]['ansible_host'] | default(groups['{group}'][0]) }}}}"
            for port, group in groups.items()}


def ansible_pool_workers(source: dict[str, Any]) -> dict[str, str]:
    """Each pool's worker count, as Jinja: the instances its hosts run now (common's pool_sizes.yml)."""
    return {pool: f'{{{{ common_pool_instances["{pool}"] }}}}' for pool in source["worker_pools"]}


def ansible_monitoring_templates(source: dict[str, Any]) -> dict[str, str]:
    """Prometheus's and Alertmanager's configuration by path under the deployment's home, from the
    native renderers; Alertmanager notifies the on-call inbox only, as in compose."""
    layout = ansible_layout(source)
    target, by = layout.target, "`python -m stackctl render ansible` (airflow/stackctl/render/prometheus.py)"
    config = prometheus.render(
        source, target, secrets_dir=f"{layout.home}/secrets",
        rule_files=[f"{target.repo}/{prometheus.RULES_DIR}/*.yml", f"{layout.home}/{EXPECTED_WORKERS_FILE}"],
    )
    workers = prometheus.expected_workers_rules(source, ansible_pool_workers(source))
    inbox = alertmanager.inbox_webhook(target.hosts["oncall_inbox"], target.ports["oncall_inbox"])
    return {
        "prometheus/prometheus.yml": prometheus.to_yaml(config, rendered_by=by),
        EXPECTED_WORKERS_FILE: prometheus.to_yaml(workers, rendered_by=by),
        "alertmanager/alertmanager.yml": alertmanager.to_yaml(
            alertmanager.render(inbox, layout.secret_file("oncall_inbox_token"), None)),
    }


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
        "airflow_pools": source["airflow_pools"],
        "airflow_start_retries": processes.START_RETRIES,
        "airflow_uv_version": toolchain.uv_version(),
        "airflow_storage_secrets": list(STORAGE_SECRETS),
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


def write() -> list[Path]:
    files = render_ansible(settings.load_source())
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(files)
