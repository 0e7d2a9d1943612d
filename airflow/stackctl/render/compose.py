"""compose/: docker-compose.yml, .env.example and the configuration files it mounts, rendered whole from
the deployment model and airflow/config.yaml.

Every service is a process of the model that compose runs (Process.runs_on): its argv, its
environment with only its own secrets, its ports, its health check (its Probe), what it waits
for (its start wave and the ports it reaches), its stop signal and timeout, its memory ceiling,
its replicas (the pool's instances). The Airflow image runs the Airflow processes, the reference
services and the one-shots; every other process runs from the upstream image its Image names,
with the model's argv resolved against that image's own folders (image_target). Containers
listen on every interface of their own network namespace; a port reaches the host only when it
is one of the model's PUBLIC_PORTS, and then on 127.0.0.1.

`python -m stackctl render compose` writes the files; a unit test fails when a committed file
drifts from a fresh render, and another when a service, port or probe is not the model's.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from stackctl.errors import ConfigError
from stackctl.model import monitoring, processes, settings
from stackctl.model.infrastructure import COMPOSE_BUCKET
from stackctl.model.listeners import BASIC, CREDENTIALS, WEB_CONFIG
from stackctl.model.process import (
    AIRFLOW,
    AIRFLOW_JOB,
    CELERY,
    HTTP,
    INSTANCE,
    POSTGRES,
    REDIS,
    Image,
    Process,
    waves,
)
from stackctl.model.redis_users import EXPORTER, password_secret
from stackctl.model.secrets import SecretFile, deployed_secrets, env_name, shared_source
from stackctl.model.target import COMPOSE, Target
from stackctl.render import alertmanager, prometheus

COMPOSE_DIR = settings.REPO / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
CONTAINER_BIND_HOST = "0.0.0.0"
HOME = "/opt/airflow"  # the Airflow image's home, and the repository's files in it
# An upstream image reads its rendered configuration here (read-only mounts), apart from its state,
# and its secret files here (written from .env by its entrypoint, its user's only).
CONFIG_DIR, SECRETS_DIR = "/etc/controlplane", "/tmp/secrets"
AIRFLOW_IMAGE = "${AIRFLOW_IMAGE:-controlplane-airflow:local}"
WEB_CONFIG_JOB = "web-config"  # the one-shot that writes the listeners' web configs into their volume
MERGE = "<<"  # a YAML merge key, written as an alias to one of the anchors below

# Airflow settings (section, key) that compose renders differently from the native stack,
# each with the reason. Every other setting is equal apart from hosts, ports, paths and
# secret spelling.
COMPOSE_EXCEPTIONS = {
    ("secrets", "backend"): "connections and variables are AIRFLOW_CONN_*/AIRFLOW_VAR_* variables",
    ("secrets", "backend_kwargs"): "no LocalFilesystemBackend files in containers",
}
# The storage connection in compose: MinIO, as the admin user.
STORAGE_CONNECTION_ID = "minio"
VARIABLES = {"platform_storage_uri": f"s3://{COMPOSE_BUCKET}", "platform_storage_conn_id": STORAGE_CONNECTION_ID}
# The one-shots a service waits for, by what it needs: the migrated metadata database (every Airflow
# process), the bucket (every process that uses storage), the web configs (their listeners).
ONE_SHOTS_NEEDED = {
    "airflow-init": lambda p: p.runtime == AIRFLOW,
    "minio-init": lambda p: p.uses_storage,
    WEB_CONFIG_JOB: lambda p: any(path.startswith("web/") for path in p.config_files),
}

HEADER = """\
# Rendered by `python -m stackctl render compose` from airflow/config.yaml and the deployment
# model (airflow/stackctl/model/). Do not edit: a unit test fails when this file drifts.
# The whole product on one Docker host. Start with:
#   cp compose/.env.example compose/.env   # then fill in every value (see the file)
#   docker compose -f compose/docker-compose.yml up -d
# A pool's size is worker_pools.<pool>.instances in airflow/config.yaml: set it and re-render,
# which sets the pool's replicas, the Airflow pool's slots and the workers the alerts expect
# together (`--scale` would change the replicas alone).
# Every secret is a ${NAME:?...} reference to compose/.env: without it compose refuses to start,
# and each service holds only the secrets its process needs.
# Host ports bind to 127.0.0.1 only; put a TLS proxy in front to expose the UI.
"""


def env_ref(secret: str) -> str:
    name = env_name(secret)
    return f"${{{name}:?set {name} in compose/.env}}"


def target(source: dict[str, Any]) -> Target:
    """The Airflow image's target: hosts are the services listening on each port, ports config.yaml's,
    secrets .env references."""
    bare = Target(kind=COMPOSE, home=HOME, repo=HOME, dags_folder=f"{HOME}/dags",
                  hosts=dict.fromkeys(source["ports"], "-"), ports=source["ports"],
                  secrets={name: env_ref(name) for name in deployed_secrets(source)}, bind_host=CONTAINER_BIND_HOST,
                  tls=settings.tls_for(source, COMPOSE))
    return replace(bare, hosts={port: p.name for p in processes.model(source, bare) for port in p.listens})


def image_target(compose_target: Target, image: Image | None) -> Target:
    """Where a process's paths lie in its container: the Airflow image's home, or an upstream image's
    writable folder for its state, CONFIG_DIR for its configuration and SECRETS_DIR for its secrets."""
    if image is None:
        return compose_target
    return replace(compose_target, home=image.data_root, config_dir=CONFIG_DIR, secrets_dir=SECRETS_DIR)


def model(source: dict[str, Any]) -> list[Process]:
    """Compose's processes, each built for its own container's paths."""
    compose_target = target(source)
    found = []
    for process in processes.model(source, compose_target):
        own = image_target(compose_target, process.image)
        found.append(process if own is compose_target
                     else next(p for p in processes.model(source, own) if p.name == process.name))
    return found


def shared_environment(source: dict[str, Any]) -> dict[str, str]:
    """Every Airflow-image process's environment: the settings, connections and variables without a secret."""
    shared, compose_target = shared_source(source), target(source)
    rendered = settings.render_settings(shared, compose_target)
    for section, key in COMPOSE_EXCEPTIONS:
        rendered[section].pop(key, None)
    env = settings.to_env(rendered)
    for conn_id, fields in settings.render_connections(shared, compose_target).items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(fields, separators=(",", ":"))
    for key, value in {**settings.render_variables(source, compose_target), **VARIABLES}.items():
        env[f"AIRFLOW_VAR_{key.upper()}"] = value
    return env


def storage_connection(source: dict[str, Any]) -> dict[str, Any]:
    compose_target = target(source)
    return {"conn_type": "aws", "login": source["admin_user"], "password": env_ref("minio_root_password"),
            "extra": {"endpoint_url": f"http://{compose_target.hosts['minio']}:{compose_target.port('minio')}"}}


def escaped(value: str) -> str:
    """A literal $ as compose reads it ($$): a command's shell variables are the container's."""
    return value.replace("$", "$$")


def secret_file_command(file: SecretFile, path: str) -> str:
    """Shell that writes a secret file from the container's environment (compose/.env's values)."""
    format_string = re.sub(r"(?<!\{)\{(\w+)\}(?!\})", "%s", file.template.replace("%", "%%"))
    format_string = format_string.replace("{{", "{").replace("}}", "}").replace("\\", "\\\\").replace("\n", "\\n")
    args = " ".join(f'"$${{{env_name(secret)}}}"' for secret in file.secrets)
    quoted = format_string.replace("'", "'\\''")  # a ' ends the single-quoted format: close, escape, reopen
    return f"printf '{quoted}' {args} > {path}"


def wrapper(process: Process, own: Target, shell: str) -> list[str]:
    """An entrypoint that makes the process's state folders and writes its secret files (its image's
    user's own, where the image starts as root), then runs the command: [] when it needs none."""
    if not process.secret_files and not process.state:
        return []
    folders = [own.state(path) for path in process.state]
    steps = [f"mkdir -p {' '.join(folders)}"] if folders else []
    if process.secret_files:
        steps += ["umask 077", f"mkdir -p {own.secrets_folder}",
                  *(secret_file_command(file, own.secret_file(file.name)) for file in process.secret_files)]
        folders.append(own.secrets_folder)
    if process.image and process.image.user:
        steps.append(f"chown -R {process.image.user} {' '.join(folders)}")
    return [shell, "-c", " && ".join([*steps, 'exec "$$@"']), "--"]


def healthcheck(source: dict[str, Any], process: Process) -> dict[str, Any] | None:
    """The process's probe, spelled with the tools of its image."""
    probe = process.probe
    if probe is None or process.one_shot:
        return None
    port = source["ports"].get(probe.port)
    if probe.kind == HTTP:
        credential = CREDENTIALS.get(probe.port)
        auth = credential and credential.scheme in (BASIC, WEB_CONFIG)
        password = f"$${{{env_name(credential.secret)}}}" if auth else ""
        if process.image is None:  # the Airflow image has curl
            user = f' --user "{source["admin_user"]}:{password}"' if auth else ""
            test = ["CMD-SHELL", f"curl --fail --silent{user} http://localhost:{port}{probe.path}"]
        elif process.image.http_probe == "bash":  # no HTTP client: bash's /dev/tcp asks
            test = ["CMD", "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET {probe.path} "
                    f"HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
        else:
            userinfo = f'{source["admin_user"]}:{password}@' if auth else ""
            test = ["CMD-SHELL", process.image.http_probe.format(url=f'"http://{userinfo}localhost:{port}{probe.path}"')]
    elif probe.kind == POSTGRES:
        test = ["CMD", "pg_isready", "-U", "postgres", "-h", "127.0.0.1", "-p", str(port)]
    elif probe.kind == REDIS:
        password = f'"$${{{env_name(password_secret(EXPORTER))}}}"'
        test = ["CMD-SHELL", f"REDISCLI_AUTH={password} redis-cli --user {EXPORTER} -p {port} ping | grep -q PONG"]
    elif probe.kind == CELERY:
        test = ["CMD-SHELL", "celery --app airflow.providers.celery.executors.celery_executor.app inspect ping "
                f'-d "{process.pool}@$${{HOSTNAME}}"']
    elif probe.kind == AIRFLOW_JOB:
        test = ["CMD-SHELL", f'airflow jobs check --job-type {probe.job} --hostname "$${{HOSTNAME}}"']
    else:
        raise ConfigError(f"compose cannot probe {process.name}: unknown probe kind {probe.kind!r}")
    slow = process.image is None  # the Airflow image's checks start Python
    return {"test": test, "interval": "30s", "timeout": "20s" if slow else "5s", "retries": 5,
            "start_period": "60s" if slow else "20s"}


def depends_on(process: Process, compose_model: list[Process]) -> dict[str, Any]:
    """What a service waits for: each process it reaches that starts in an earlier wave (healthy, or
    done for a one-shot), and the one-shots that prepare what it needs (ONE_SHOTS_NEEDED)."""
    wave_of = {p.name: index for index, wave in enumerate(waves(compose_model)) for p in wave}
    serving = processes.serving(compose_model)
    needs = {serving[port].name for port in process.reaches if wave_of[serving[port].name] < wave_of[process.name]}
    needs |= {p.name for p in compose_model if p.name in ONE_SHOTS_NEEDED and ONE_SHOTS_NEEDED[p.name](process)
              and p is not process}
    return {p.name: {"condition": "service_completed_successfully" if p.one_shot else "service_healthy"}
            for p in compose_model if p.name in needs}


def published(source: dict[str, Any], process: Process) -> list[str]:
    return [f"127.0.0.1:{source['ports'][port]}:{source['ports'][port]}"
            for port in process.listens if port in processes.PUBLIC_PORTS]


def airflow_service(source: dict[str, Any], compose_target: Target, process: Process) -> dict[str, Any]:
    service: dict[str, Any] = {MERGE: "*airflow-common"}
    command = [arg.replace(f"-{INSTANCE}", "") for arg in process.argv]
    env = {MERGE: "*airflow-env", **process.env, **processes.secret_environment(source, compose_target, process)}
    if process.one_shot and process.name == "airflow-init":
        # Migrates the Airflow database, then runs the init (compose/init/airflow-init.sh).
        command = ["bash", f"{HOME}/compose-init/airflow-init.sh", *command]
        service["volumes"] = [f"./init:{HOME}/compose-init:ro"]
    if process.uses_storage:
        env[f"AIRFLOW_CONN_{STORAGE_CONNECTION_ID.upper()}"] = json.dumps(storage_connection(source),
                                                                          separators=(",", ":"))
    if process.pool:
        # dumb-init sends SIGTERM to the worker alone: Celery's warm shutdown finishes running tasks.
        env["DUMB_INIT_SETSID"] = "0"
        service["deploy"] = {"replicas": process.instances}
    # The service reads its secret files (never argv or its environment, natively): the entrypoint
    # writes them from .env, owner-only, then runs the command.
    entry = wrapper(process, compose_target, "bash")
    if entry:
        service["entrypoint"] = ["/usr/bin/dumb-init", "--", *entry]
    if process.name == WEB_CONFIG_JOB:
        # A fresh volume is root's: root writes it. The files hold hashes only, readable by the listeners.
        service["user"] = "0"
        service["volumes"] = [f"web-config:{compose_target.config('web')}"]
    env.update({env_name(s): env_ref(s) for s in secrets_in_files_or_probe(process)})
    service["command"] = command
    service["environment"] = env
    if process.one_shot:
        service["restart"] = "no"
    return service


def secrets_in_files_or_probe(process: Process) -> list[str]:
    """The secrets a container reads from its environment itself: its entrypoint writes them to files,
    its health check sends one, a one-shot or an upstream image reads them."""
    named = {secret for file in process.secret_files for secret in file.secrets}
    credential = CREDENTIALS.get(process.probe.port) if process.probe else None
    if credential and credential.scheme in (BASIC, WEB_CONFIG):
        named.add(credential.secret)
    if process.runtime != AIRFLOW:  # no AIRFLOW__ or AIRFLOW_CONN_ variables carry them
        named |= set(process.secrets)
    return sorted(named, key=list(process.secrets).index)


def image_service(source: dict[str, Any], process: Process) -> dict[str, Any]:
    """A process from its upstream image: the model's argv on the image's own folders."""
    image = process.image
    own = image_target(target(source), image)
    program, *args = process.argv
    argv = [*(image.entrypoint or (program,)), *args]
    entry = wrapper(process, own, "/bin/sh")
    service: dict[str, Any] = {"image": image.ref}
    if entry:
        service["entrypoint"], service["command"] = entry, [escaped(a) for a in argv]
    else:
        service["entrypoint"], service["command"] = [argv[0]], [escaped(a) for a in argv[1:]]
    env = {**process.env, **image.env(own), **{env_name(s): env_ref(s) for s in secrets_in_files_or_probe(process)}}
    if env:
        service["environment"] = env
    volumes = [f"{process.name}-data:{image.data_root}"] if image.data_root != "/tmp" else []
    volumes += [f"./{path}:{own.config(path)}:ro" for path in process.config_files if not path.startswith("web/")]
    if any(path.startswith("web/") for path in process.config_files):
        volumes.append(f"web-config:{own.config('web')}:ro")
    volumes += [f"../{path}:{own.repo_file(path)}:ro" for path in process.repo_files]
    volumes += list(image.mounts)
    if volumes:
        service["volumes"] = volumes
    if image.host_pid:
        service["pid"] = "host"
    service["restart"] = "no" if process.one_shot else "unless-stopped"
    return service


def service(source: dict[str, Any], compose_model: list[Process], process: Process) -> dict[str, Any]:
    found = (airflow_service(source, target(source), process) if process.image is None
             else image_service(source, process))
    ports = published(source, process)
    if ports:
        found["ports"] = ports
    if not process.one_shot:
        found["stop_signal"] = f"SIG{process.stop_signal}"
        found["stop_grace_period"] = f"{process.stop_timeout_s}s"
    if process.memory_limit_mb > 0:
        # The ceiling holds per process; a container holds up to the pool's max_processes of them.
        processes_at_most = int(source["worker_pools"][process.pool]["max_processes"]) if process.pool else 1
        found.setdefault("deploy", {})["resources"] = {
            "limits": {"memory": f"{process.memory_limit_mb * processes_at_most}M"}}
    check = healthcheck(source, process)
    if check:
        found["healthcheck"] = check
    needs = depends_on(process, compose_model)
    if needs:
        found["depends_on"] = needs
    return found


def render(source: dict[str, Any]) -> str:
    env = shared_environment(source)
    stray = [key for key, value in env.items() if "$" in re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "", value)]
    if stray:
        raise ConfigError(f"a literal $ would be read by compose as a variable in: {', '.join(stray)}")
    compose_model = model(source)
    anchors = {
        "x-airflow-env": env,
        "x-airflow-common": {
            "image": AIRFLOW_IMAGE,
            "build": {"context": "..", "dockerfile": "airflow/Dockerfile"},
            "entrypoint": ["/usr/bin/dumb-init", "--"],
            # Task logs: the api-server reads them from the shared volume, alloy ships them to Loki.
            "volumes": [f"airflow-logs:{HOME}/logs"],
            "restart": "unless-stopped",
        },
    }
    services = {p.name: service(source, compose_model, p) for p in compose_model}
    volumes = ["airflow-logs", "web-config", *(f"{p.name}-data" for p in compose_model
                                               if p.image and p.image.data_root != "/tmp")]
    body = yaml.dump({**anchors, "services": services, "volumes": dict.fromkeys(volumes)}, Dumper=Dumper,
                     sort_keys=False, width=10_000)
    return HEADER + _with_anchors(body)


def _with_anchors(text: str) -> str:
    """Turn the two anchor blocks into YAML anchors and the merge markers into aliases of them."""
    for name in ("airflow-env", "airflow-common"):
        text = text.replace(f"x-{name}:\n", f"x-{name}: &{name}\n", 1)
    return re.sub(r"'?<<'?: '?\*([a-z-]+)'?", r"<<: *\1", text).replace(": null\n", ":\n")


class Dumper(yaml.SafeDumper):
    """Lists (commands, volumes, ports) on one line each; no aliases of repeated values."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


Dumper.add_representer(list, lambda dumper, value: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", value, flow_style=True))


def render_env_example(source: dict[str, Any]) -> str:
    """compose/.env.example: every secret a compose service holds, empty."""
    held = {secret for process in model(source) for secret in process.secrets}
    names = [env_name(secret) for secret in source["secrets"] if secret in held]
    return (
        "# Rendered by `python -m stackctl render compose` from airflow/config.yaml. Do not edit.\n"
        "# Copy to compose/.env (never commit it) and give every variable a long random value, e.g.\n"
        '#   python3 -c "import secrets; print(secrets.token_urlsafe(32))"\n'
        "# FERNET_KEY must be a Fernet key:\n"
        '#   python3 -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"\n'
        "# Compose refuses to start while any of them is missing or empty. Use URL-safe characters:\n"
        "# several values sit inside database and broker URLs.\n"
        + "".join(f"{name}=\n" for name in names)
        + "# Optional: a prebuilt image instead of building airflow/Dockerfile.\n"
        "# AIRFLOW_IMAGE=registry.example.com/controlplane-airflow:1.0\n"
    )


def render_configs(source: dict[str, Any]) -> dict[str, str]:
    """The configuration files compose mounts into Prometheus and Alertmanager, by path under compose/;
    Alertmanager notifies the on-call inbox only (no PagerDuty or Slack files are mounted)."""
    by_name = {p.name: p for p in model(source)}
    own = image_target(target(source), by_name["prometheus"].image)
    config = prometheus.render(source, own, list(by_name.values()), rule_files=[
        own.repo_file(f"{monitoring.RULES_DIR}/*.yml"), own.config(monitoring.EXPECTED_WORKERS)])
    by = "`python -m stackctl render compose` (airflow/stackctl/render/prometheus.py)"
    inbox = alertmanager.inbox_webhook(own, own.hosts["oncall_inbox"])
    inbox_token = image_target(target(source), by_name["alertmanager"].image).secret_file("oncall_inbox_token")
    return {
        monitoring.PROMETHEUS_CONFIG: prometheus.to_yaml(config, rendered_by=by),
        # The expected workers follow config.yaml's instances, as the pools' replicas do.
        monitoring.EXPECTED_WORKERS: prometheus.to_yaml(prometheus.expected_workers_rules(source), rendered_by=by),
        monitoring.ALERTMANAGER_CONFIG: alertmanager.to_yaml(alertmanager.render(inbox, inbox_token, None)),
    }


def render_all(source: dict[str, Any]) -> dict[Path, str]:
    """Every file `python -m stackctl render compose` writes, by path."""
    return {COMPOSE_FILE: render(source), ENV_EXAMPLE: render_env_example(source),
            **{COMPOSE_DIR / path: text for path, text in render_configs(source).items()}}
