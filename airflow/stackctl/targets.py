"""Render airflow/config.yaml for compose and ansible, the deployments beside the native stack.

Each target differs from the native stack only in its topology: where components live
(service names, inventory variables), the paths inside its hosts, where listeners bind, and
how secrets are spelled (`${NAME:?...}` references to compose/.env, Ansible Vault variables).
Compose's other differences are listed in COMPOSE_EXCEPTIONS and COMPOSE_VARIABLES;
tests/unit/compose/test_compose.py proves every other Airflow setting equals the native one.
Ansible renders airflow.cfg and the LocalFilesystemBackend files as the native stack does;
tests/e2e/test_ansible.py compares a deployed airflow.cfg with the native one.

The rendered text is committed (a region of compose/docker-compose.yml, and
ansible/group_vars/all/airflow.yml); `python -m stackctl render compose|ansible` rewrites
it and a unit test fails when the committed text drifts from a fresh render.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from . import alertmanager, prometheus, settings
from .errors import ConfigError

COMPOSE_FILE = settings.REPO / "compose" / "docker-compose.yml"
COMPOSE_ALERTMANAGER_FILE = settings.REPO / "compose" / "alertmanager" / "alertmanager.yml"
COMPOSE_PROMETHEUS_DIR = settings.REPO / "compose" / "prometheus"
# Inside the prometheus container: its entrypoint writes FLOWER_PASSWORD (from .env) to this file.
COMPOSE_FLOWER_PASSWORD_FILE = "/tmp/flower_password"
ANSIBLE_VARS_FILE = settings.REPO / "ansible" / "group_vars" / "all" / "airflow.yml"
BEGIN = "# BEGIN rendered by `python -m stackctl render compose` from airflow/config.yaml. Do not edit."
END = "# END rendered"

# Containers listen on every interface of their own network namespace; nothing publishes a
# port to the host unless compose says so.
CONTAINER_BIND_HOST = "0.0.0.0"
COMPOSE_HOME = "/opt/airflow"
ADMIN_PASSWORD_FILE = "/tmp/admin_password"  # written by compose/init/airflow-init.sh inside its container
FRESHPOC_SERVICES = ("ingestion", "miner", "analyzer", "writer", "query", "reporting")
# Compose service names and the ports they listen on inside the compose network.
COMPOSE_HOSTS = {
    "api": "api-server", "flower": "flower", "postgres": "postgres", "redis": "redis",
    "scheduler_health": "scheduler", "inference": "inference", "alertmanager": "alertmanager",
    "pushgateway": "pushgateway", "oncall_inbox": "oncall-inbox", "statsd": "statsd-exporter",
    "statsd_metrics": "statsd-exporter", "prometheus": "prometheus", "node_exporter": "node-exporter",
    "redis_exporter": "redis-exporter", "postgres_exporter": "postgres-exporter",
    # services/freshpoc (another branch): ports guessed, reconciled with config.yaml at merge.
    **{f"freshpoc_{name}": f"freshpoc-{name}" for name in FRESHPOC_SERVICES},
}
COMPOSE_PORTS = {
    "api": 8080, "flower": 5555, "postgres": 5432, "redis": 6379, "scheduler_health": 8974, "inference": 8090,
    "alertmanager": 9093, "pushgateway": 9091, "oncall_inbox": 9095, "statsd": 9125, "statsd_metrics": 9102,
    "prometheus": 9090, "node_exporter": 9100, "redis_exporter": 9121, "postgres_exporter": 9187,
    **{f"freshpoc_{name}": 8101 + n for n, name in enumerate(FRESHPOC_SERVICES)},
}
# Compose keeps data in MinIO; the connection's credentials come from .env like every secret.
COMPOSE_VARIABLES = {"platform_storage_uri": "s3://platform", "platform_storage_conn_id": "minio"}
COMPOSE_EXTRA_CONNECTIONS = {
    "minio": {
        "conn_type": "aws",
        "login": "${MINIO_ROOT_USER:?set MINIO_ROOT_USER in compose/.env}",
        "password": "${MINIO_ROOT_PASSWORD:?set MINIO_ROOT_PASSWORD in compose/.env}",
        "extra": {"endpoint_url": "http://minio:9000"},
    },
}

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


def deployed_secrets(source: dict[str, Any]) -> list[str]:
    """The secrets a compose or ansible deployment must provide."""
    return [name for name in source["secrets"] if name not in NATIVE_ONLY_SECRETS]


def secret_env_name(secret: str) -> str:
    return secret.upper()


def compose_target(source: dict[str, Any]) -> settings.Target:
    missing = set(source["ports"]) - set(COMPOSE_HOSTS)
    if missing:
        raise ConfigError(f"components without a compose service: {', '.join(sorted(missing))} (stackctl/targets.py)")
    return settings.Target(
        home=COMPOSE_HOME,
        dags_folder=f"{COMPOSE_HOME}/dags",
        repo=COMPOSE_HOME,
        hosts=COMPOSE_HOSTS,
        ports=COMPOSE_PORTS,
        secrets={
            name: f"${{{secret_env_name(name)}:?set {secret_env_name(name)} in compose/.env}}"
            for name in deployed_secrets(source)
        },
    )


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


def with_bind_host(source: dict[str, Any], bind_host: str) -> dict[str, Any]:
    return {**source, "bind_host": bind_host}


def compose_settings(source: dict[str, Any]) -> dict[str, dict[str, str]]:
    rendered = settings.render_settings(with_bind_host(source, CONTAINER_BIND_HOST), compose_target(source))
    for section, key in COMPOSE_EXCEPTIONS:
        rendered[section].pop(key)
    return {section: options for section, options in rendered.items() if options}


def compose_environment(source: dict[str, Any]) -> dict[str, str]:
    """Every Airflow process's environment in compose: settings, connections, variables."""
    target = compose_target(source)
    env = settings.to_env(compose_settings(source))
    connections = {**settings.render_connections(source, target), **COMPOSE_EXTRA_CONNECTIONS}
    for conn_id, fields in connections.items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(fields, separators=(",", ":"))
    variables = {**settings.render_variables(source, target), **COMPOSE_VARIABLES}
    for key, value in variables.items():
        env[f"AIRFLOW_VAR_{key.upper()}"] = value
    stray = [key for key, value in env.items() if "$" in re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "", value)]
    if stray:
        raise ConfigError(f"a literal $ would be read by compose as a variable in: {', '.join(stray)}")
    return env


def airflow_init_args(source: dict[str, Any], admin_password_file: str) -> list[str]:
    """Arguments of `python -m stackctl.airflow_init`: the admin user and the Airflow pools."""
    args = ["--user", f"{source['admin_user']}:Admin:{admin_password_file}"]
    for name, slots in settings.airflow_pool_slots(source).items():
        args += ["--pool", f"{name}:{slots}:{source['airflow_pools'][name]['description']}"]
    return args


def _quoted(value: Any) -> str:
    return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar


def render_compose_region(source: dict[str, Any]) -> str:
    """YAML anchors for compose: the Airflow environment, then one worker fragment per pool."""
    lines = [BEGIN, "x-airflow-env: &airflow-env"]
    lines += [f"  {key}: {_quoted(value)}" for key, value in compose_environment(source).items()]
    # airflow-init's arguments for stackctl.airflow_init; the script writes the password file.
    init_args = json.dumps(airflow_init_args(source, ADMIN_PASSWORD_FILE))
    lines.append(f"x-airflow-init-args: &airflow-init-args {init_args}")
    for pool, spec in source["worker_pools"].items():
        command = ["celery", "worker", "--queues", spec["queue"], "--concurrency", str(spec["concurrency"]),
                   "--celery-hostname", f"{pool}@%h"]
        lines += [
            f"x-worker-{pool}: &worker-{pool}",
            f"  command: {json.dumps(command)}",
            "  environment:",
            "    <<: *airflow-env",
            f"    AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER: {_quoted(str(spec['prefetch_multiplier']))}",
            "    # dumb-init sends SIGTERM to the worker alone: Celery's warm shutdown finishes running tasks.",
            '    DUMB_INIT_SETSID: "0"',
        ]
        if int(spec["memory_limit_mb"]) > 0:
            limit_mb = int(spec["memory_limit_mb"]) * int(spec["concurrency"])
            lines += ["  deploy:", "    resources:", "      limits:", f'        memory: "{limit_mb}M"']
    lines.append(END)
    return "\n".join(lines) + "\n"


def replace_region(text: str, region: str) -> str:
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ConfigError(f"{COMPOSE_FILE} lacks the rendered region ({BEGIN!r} ... {END!r})")
    return text[:start] + region + text[end + len(END) + 1:]


def committed_compose_region(path: Path = COMPOSE_FILE) -> str:
    text = path.read_text()
    start, end = text.find(BEGIN), text.find(END)
    return text[start:end + len(END) + 1]


def ansible_vars(source: dict[str, Any]) -> dict[str, Any]:
    target = ansible_target(source)
    connections = settings.render_connections(source, target)
    for fields in connections.values():
        if "port" in fields:
            fields["port"] = fields["port"].replace(" }}", " | int }}")
    return {
        "airflow_settings": settings.render_settings(with_bind_host(source, "{{ controlplane_bind_host }}"), target),
        "airflow_connections": connections,
        "airflow_variables": settings.render_variables(source, target),
        "airflow_worker_pools": source["worker_pools"],
        "airflow_init_args": airflow_init_args(source, "{{ common_prefix }}/secrets/admin_password"),
        "airflow_secret_names": deployed_secrets(source),
        "airflow_max_task_timeout_s": int(source["max_task_timeout_s"]),
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


def render_compose_alertmanager() -> str:
    """Alertmanager's config for compose, from the native renderer; PagerDuty and Slack files are
    not mounted in compose, so every notification goes to the on-call inbox service."""
    inbox_url = f"http://{COMPOSE_HOSTS['oncall_inbox']}:{COMPOSE_PORTS['oncall_inbox']}/webhook"
    return alertmanager.to_yaml(alertmanager.render(inbox_url, Path("/nonexistent")))


def render_compose_prometheus(source: dict[str, Any]) -> dict[str, str]:
    """prometheus.yml and the expected worker counts for compose, by the native renderer.

    The expected counts follow config.yaml's `instances`: after `--scale worker-<pool>=N`, set the
    pool's instances to N and re-render, or CeleryWorkerPoolDegraded/Down compares with the old size.
    """
    config = prometheus.render(
        source, compose_target(source), flower_password_file=COMPOSE_FLOWER_PASSWORD_FILE,
        rule_files=["/etc/prometheus/rules/*.yml", "/etc/prometheus/expected_workers.yml"],
    )
    by = "`python -m stackctl render compose` (airflow/stackctl/prometheus.py)"
    return {
        "prometheus.yml": prometheus.to_yaml(config, rendered_by=by),
        "expected_workers.yml": prometheus.to_yaml(prometheus.expected_workers_rules(source), rendered_by=by),
    }


def write(kind: str) -> list[Path]:
    source = settings.load_source()
    if kind == "compose":
        COMPOSE_FILE.write_text(replace_region(COMPOSE_FILE.read_text(), render_compose_region(source)))
        COMPOSE_ALERTMANAGER_FILE.parent.mkdir(parents=True, exist_ok=True)
        COMPOSE_ALERTMANAGER_FILE.write_text(render_compose_alertmanager())
        COMPOSE_PROMETHEUS_DIR.mkdir(parents=True, exist_ok=True)
        written = [COMPOSE_FILE, COMPOSE_ALERTMANAGER_FILE]
        for name, text in render_compose_prometheus(source).items():
            (COMPOSE_PROMETHEUS_DIR / name).write_text(text)
            written.append(COMPOSE_PROMETHEUS_DIR / name)
        return written
    ANSIBLE_VARS_FILE.parent.mkdir(parents=True, exist_ok=True)
    ANSIBLE_VARS_FILE.write_text(render_ansible_vars(source))
    return [ANSIBLE_VARS_FILE]
