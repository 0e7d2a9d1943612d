"""compose/docker-compose.yml, rendered whole from the deployment model and airflow/config.yaml.

Every process of the Airflow image (the control plane, the workers, Flower, the init job and
the reference services) is the model's process: its argv, its environment with only its own
secrets, its ports, its stop signal and timeout, its memory ceiling. The infrastructure runs
from upstream images (PostgreSQL, Redis, Prometheus and its exporters, statsd_exporter,
Grafana, Loki, Alloy, MinIO); their commands are the images' own, their ports config.yaml's.
Containers listen on every interface of their own network namespace; a port reaches the host
only where PUBLISHED says so, and then on 127.0.0.1.

`python -m stackctl render compose` writes the file; a unit test fails when the committed
file drifts from a fresh render.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from stackctl.errors import ConfigError
from stackctl.model import processes, settings
from stackctl.render import alertmanager, ansible, prometheus, web_auth

COMPOSE_FILE = settings.REPO / "compose" / "docker-compose.yml"
CONTAINER_BIND_HOST = "0.0.0.0"
HOME = "/opt/airflow"
# Ports a person opens from the host: the UI and APIs, dashboards and alerts.
PUBLISHED = ("api", "flower", "inference", "oncall_inbox", "prometheus", "alertmanager")
# Compose-only services and their ports: Grafana, Loki, Alloy and MinIO have no native counterpart.
EXTRA_PORTS = {"grafana": 3000, "loki": 3100, "alloy": 12345, "minio": 9000, "minio_console": 9001}
MERGE = "<<"  # a YAML merge key, written as an alias to one of the anchors below

HEADER = """\
# Rendered by `python -m stackctl render compose` from airflow/config.yaml and the deployment
# model (airflow/stackctl/model/processes.py). Do not edit: a unit test fails when this file drifts.
# The whole product on one Docker host. Start with:
#   cp compose/.env.example compose/.env   # then fill in every value (see the file)
#   docker compose -f compose/docker-compose.yml up -d --scale worker-heavy=2
# Every secret is a ${NAME:?...} reference to compose/.env: without it compose refuses to start,
# and each service holds only the secrets its process needs.
# Host ports bind to 127.0.0.1 only; put a TLS proxy in front to expose the UI.
"""


def env_ref(secret: str) -> str:
    name = ansible.secret_env_name(secret)
    return f"${{{name}:?set {name} in compose/.env}}"


def target(source: dict[str, Any]) -> settings.Target:
    """Hosts are the services listening on each port, ports config.yaml's, secrets .env references."""
    groups = {port: process.name for process in model(source, _bare_target(source)) for port in process.listens}
    hosts = {port: COMPOSE_SERVICE_OF.get(name, name) for port, name in groups.items()}
    return settings.Target(home=HOME, dags_folder=f"{HOME}/dags", repo=HOME, hosts=hosts, ports=source["ports"],
                           secrets={name: env_ref(name) for name in ansible.deployed_secrets(source)})


def _bare_target(source: dict[str, Any]) -> settings.Target:
    return settings.Target(home=HOME, dags_folder=f"{HOME}/dags", repo=HOME,
                           hosts=dict.fromkeys(source["ports"], "-"), ports=source["ports"],
                           secrets={name: env_ref(name) for name in ansible.deployed_secrets(source)})


def model(source: dict[str, Any], compose_target: settings.Target) -> list[processes.Process]:
    return processes.model(source, processes.Layout(compose_target, CONTAINER_BIND_HOST))


# Native processes that compose replaces with an upstream image: the StatsD bridge is the
# native stand-in for statsd_exporter.
COMPOSE_SERVICE_OF = {"statsd-bridge": "statsd-exporter"}
# The storage connection in compose: MinIO, with its credentials from .env.
STORAGE_CONNECTION = {
    "minio": {
        "conn_type": "aws",
        "login": "${MINIO_ROOT_USER:?set MINIO_ROOT_USER in compose/.env}",
        "password": "${MINIO_ROOT_PASSWORD:?set MINIO_ROOT_PASSWORD in compose/.env}",
        "extra": {"endpoint_url": f"http://minio:{EXTRA_PORTS['minio']}"},
    },
}
VARIABLES = {"platform_storage_uri": "s3://platform", "platform_storage_conn_id": "minio"}


def shared_environment(source: dict[str, Any]) -> dict[str, str]:
    """Every Airflow-image process's environment: the settings, connections and variables without a secret."""
    shared, compose_target = processes.shared_source(source), target(source)
    rendered = settings.render_settings({**shared, "bind_host": CONTAINER_BIND_HOST}, compose_target)
    for section, key in ansible.COMPOSE_EXCEPTIONS:
        rendered[section].pop(key, None)
    env = settings.to_env(rendered)
    for conn_id, fields in settings.render_connections(shared, compose_target).items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(fields, separators=(",", ":"))
    for key, value in {**settings.render_variables(source, compose_target), **VARIABLES}.items():
        env[f"AIRFLOW_VAR_{key.upper()}"] = value
    return env


def process_environment(source: dict[str, Any], compose_target: settings.Target,
                        process: processes.Process) -> dict[str, str]:
    env = {**process.env, **processes.secret_environment(source, compose_target, process)}
    if process.uses_storage:
        env["AIRFLOW_CONN_MINIO"] = json.dumps(STORAGE_CONNECTION["minio"], separators=(",", ":"))
    if process.pool:
        # dumb-init sends SIGTERM to the worker alone: Celery's warm shutdown finishes running tasks.
        env["DUMB_INIT_SETSID"] = "0"
    return env


def healthcheck(source: dict[str, Any], process: processes.Process) -> dict[str, Any] | None:
    ports = source["ports"]
    if process.one_shot:
        return None
    if process.pool:
        test = ["CMD-SHELL", "celery --app airflow.providers.celery.executors.celery_executor.app inspect ping "
                f'-d "{process.pool}@$${{HOSTNAME}}"']
    elif process.name in ("dag-processor", "triggerer"):
        job = {"dag-processor": "DagProcessorJob", "triggerer": "TriggererJob"}[process.name]
        test = ["CMD-SHELL", f'airflow jobs check --job-type {job} --hostname "$${{HOSTNAME}}"']
    elif process.name == "flower":
        test = ["CMD-SHELL", f'curl --fail --silent --user "{source["admin_user"]}:$${{FLOWER_PASSWORD}}" '
                f"http://localhost:{ports['flower']}/api/workers"]
    else:
        port = process.listens[0]
        path = {"api": "/api/v2/monitor/health"}.get(port, "/health")
        test = ["CMD", "curl", "--fail", f"http://localhost:{ports[port]}{path}"]
    return {"test": test, "interval": "30s", "timeout": "20s", "retries": 5, "start_period": "60s"}


def depends_on(process: processes.Process) -> dict[str, Any]:
    if process.one_shot:
        return {name: {"condition": "service_healthy"} for name in ("postgres", "redis")}
    needs = {"postgres": "service_healthy", "redis": "service_healthy", "statsd-exporter": "service_healthy",
             "airflow-init": "service_completed_successfully"}
    if process.pool:
        needs["api-server"] = "service_healthy"
    if process.uses_storage:
        needs["minio-init"] = "service_completed_successfully"
    if process.runtime == processes.APP:
        needs = {}
    return {name: {"condition": condition} for name, condition in needs.items()}


def airflow_service(source: dict[str, Any], compose_target: settings.Target,
                    process: processes.Process) -> dict[str, Any]:
    service: dict[str, Any] = {MERGE: "*airflow-common"}
    if process.one_shot:
        # Migrates the Airflow and platform databases, writes the admin password file, then runs argv.
        service["entrypoint"] = ["/usr/bin/dumb-init", "--", "bash", f"{HOME}/compose-init/airflow-init.sh"]
        service["volumes"] = [f"./init:{HOME}/compose-init:ro"]
        service["restart"] = "no"
    service["command"] = [arg.replace(f"-{processes.INSTANCE}", "") for arg in process.argv]
    env = {MERGE: "*airflow-env", **process_environment(source, compose_target, process)}
    layout = processes.Layout(compose_target, CONTAINER_BIND_HOST)
    token_files = processes.argv_secret_files(process, layout)
    if token_files:
        # The service reads its token from a file (never argv or its environment, natively): the
        # entrypoint writes it from .env, owner-only, then runs the command.
        writes = " && ".join(f'printf %s "$${ansible.secret_env_name(s)}" > {layout.secret_file(s)}'
                             for s in token_files)
        service["entrypoint"] = ["/usr/bin/dumb-init", "--", "bash", "-c",
                                 f'umask 077 && mkdir -p {HOME}/secrets && {writes} && exec "$$@"', "--"]
        env.update({ansible.secret_env_name(s): env_ref(s) for s in token_files})
    if process.one_shot:
        env["ADMIN_PASSWORD"] = env_ref("admin_password")
        env["ADMIN_PASSWORD_FILE"] = f"{HOME}/secrets/admin_password"
    if process.name == "flower":
        env["FLOWER_PASSWORD"] = env_ref("flower_password")  # its health check's credentials
    service["environment"] = env
    published = [p for p in process.listens if p in PUBLISHED]
    if published:
        service["ports"] = [f"127.0.0.1:{source['ports'][p]}:{source['ports'][p]}" for p in published]
    service["stop_signal"] = f"SIG{process.stop_signal}"
    service["stop_grace_period"] = f"{process.stop_timeout_s}s"
    if process.memory_limit_mb > 0:
        # The ceiling holds per process; a container holds up to the pool's max_processes of them.
        processes_at_most = int(source["worker_pools"][process.pool]["max_processes"]) if process.pool else 1
        service["deploy"] = {"resources": {"limits": {"memory": f"{process.memory_limit_mb * processes_at_most}M"}}}
    check = healthcheck(source, process)
    if check:
        service["healthcheck"] = check
    service["depends_on"] = depends_on(process)
    return service


def infrastructure_services(source: dict[str, Any]) -> dict[str, Any]:
    """Upstream images; every port comes from config.yaml (or EXTRA_PORTS for compose-only services)."""
    ports, ref = source["ports"], env_ref
    healthy = {"interval": "30s", "timeout": "5s", "retries": 5}

    def http_check(port: int, path: str) -> dict[str, Any]:
        return {"test": ["CMD", "wget", "-q", "-O", "/dev/null", f"http://localhost:{port}{path}"], **healthy}

    def authenticated_check(listener: str, path: str) -> dict[str, Any]:
        """A probe of a listener behind basic auth, with its password from the container's environment."""
        variable = ansible.secret_env_name(web_auth.LISTENER_PASSWORDS[listener])
        url = f'http://{source["admin_user"]}:$${{{variable}}}@localhost:{ports[listener]}{path}'
        return {"test": ["CMD-SHELL", f'wget -q -O /dev/null "{url}"'], **healthy}

    def written_secrets(names: tuple[str, ...]) -> str:
        """Shell that writes secrets from .env to the files the program's configuration reads."""
        return "umask 077 && " + " && ".join(
            f'printf %s "$${ansible.secret_env_name(name)}" > {ansible.COMPOSE_SECRETS_DIR}/{name}' for name in names)

    web_config = "web-config:/etc/web-config:ro"  # the web-config service's basic-auth files
    web_config_ready = {"web-config": {"condition": "service_completed_successfully"}}
    prometheus_sends = tuple(prometheus.BASIC_AUTH_SECRETS.values())

    def published(port: int) -> list[str]:
        return [f"127.0.0.1:{port}:{port}"]

    return {
        "postgres": {
            "image": "postgres:15-bookworm",
            "command": ["postgres", "-c", f"port={ports['postgres']}"],
            "environment": {"POSTGRES_PASSWORD": ref("postgres_superuser_password"),
                            "PGPORT": str(ports["postgres"]),
                            **{ansible.secret_env_name(s): ref(s) for s in
                               ("airflow_db_password", "platform_db_password", "monitoring_db_password")}},
            "volumes": ["postgres-data:/var/lib/postgresql/data",
                        "./postgres/init-databases.sh:/docker-entrypoint-initdb.d/init-databases.sh:ro"],
            "healthcheck": {"test": ["CMD", "pg_isready", "-U", "postgres", "-p", str(ports["postgres"])], **healthy},
            "restart": "unless-stopped",
        },
        "redis": {
            "image": "redis:7.2-bookworm",
            "environment": {"REDIS_PASSWORD": ref("redis_password"), "REDISCLI_AUTH": ref("redis_password")},
            # The password stays out of the compose file and out of `docker inspect`'s command line.
            "command": ["sh", "-c", f'exec redis-server --port {ports["redis"]} --requirepass "$$REDIS_PASSWORD" '
                        "--appendonly yes --appendfsync everysec"],
            "volumes": ["redis-data:/data"],
            "healthcheck": {"test": ["CMD", "redis-cli", "-p", str(ports["redis"]), "ping"], **healthy},
            "restart": "unless-stopped",
        },
        "statsd-exporter": {
            "image": "prom/statsd-exporter:v0.28.0",
            "command": ["--statsd.mapping-config=/etc/statsd/mapping.yml", f"--statsd.listen-udp=:{ports['statsd']}",
                        f"--web.listen-address=:{ports['statsd_metrics']}"],
            "volumes": ["../monitoring/statsd/mapping.yml:/etc/statsd/mapping.yml:ro"],
            "healthcheck": http_check(ports["statsd_metrics"], "/metrics"),
            "restart": "unless-stopped",
        },
        "prometheus": {
            "image": "prom/prometheus:v2.55.1",
            # Prometheus reads the passwords it sends from files: the entrypoint writes them from .env first.
            "entrypoint": ["/bin/sh", "-c"],
            "command": [
                f"{written_secrets(prometheus_sends)} && "
                "exec /bin/prometheus --config.file=/etc/prometheus/prometheus.yml --storage.tsdb.path=/prometheus "
                f"--storage.tsdb.retention.time={source['monitoring']['retention']} "
                f"--web.listen-address=:{ports['prometheus']} --web.config.file=/etc/web-config/prometheus.yml"],
            "environment": {ansible.secret_env_name(name): ref(name) for name in prometheus_sends},
            "volumes": ["./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro",
                        "./prometheus/expected_workers.yml:/etc/prometheus/expected_workers.yml:ro",
                        "../monitoring/prometheus/rules:/etc/prometheus/rules:ro", "prometheus-data:/prometheus",
                        web_config],
            "ports": published(ports["prometheus"]),
            "healthcheck": authenticated_check("prometheus", "/-/ready"),
            "restart": "unless-stopped",
            "depends_on": {"alertmanager": {"condition": "service_healthy"}, **web_config_ready},
        },
        "alertmanager": {
            "image": "prom/alertmanager:v0.27.0",
            # Rendered from stackctl/render/alertmanager.py, the native renderer: the same routes and inhibitions.
            # The webhook reads the inbox's token from a file: the entrypoint writes it from .env first.
            "entrypoint": ["/bin/sh", "-c"],
            "command": [
                f"{written_secrets(('oncall_inbox_token',))} && exec /bin/alertmanager "
                "--config.file=/etc/alertmanager/alertmanager.yml --storage.path=/alertmanager "
                f"--web.listen-address=:{ports['alertmanager']} --web.config.file=/etc/web-config/alertmanager.yml"],
            "environment": {ansible.secret_env_name(name): ref(name)
                            for name in ("oncall_inbox_token", "alertmanager_password")},
            "volumes": ["./alertmanager/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro",
                        "alertmanager-data:/alertmanager", web_config],
            "ports": published(ports["alertmanager"]),
            "healthcheck": authenticated_check("alertmanager", "/-/ready"),
            "restart": "unless-stopped",
            "depends_on": {"oncall-inbox": {"condition": "service_healthy"}, **web_config_ready},
        },
        "pushgateway": {
            "image": "prom/pushgateway:v1.10.0",
            "command": [f"--web.listen-address=:{ports['pushgateway']}",
                        "--web.config.file=/etc/web-config/pushgateway.yml"],
            "environment": {ansible.secret_env_name("pushgateway_password"): ref("pushgateway_password")},
            "volumes": [web_config],
            "healthcheck": authenticated_check("pushgateway", "/-/ready"),
            "restart": "unless-stopped",
            "depends_on": web_config_ready,
        },
        "node-exporter": {
            "image": "prom/node-exporter:v1.8.2",
            "command": ["--path.rootfs=/host", f"--web.listen-address=:{ports['node_exporter']}"],
            "pid": "host",
            "volumes": ["/:/host:ro,rslave"],
            "healthcheck": http_check(ports["node_exporter"], "/metrics"),
            "restart": "unless-stopped",
        },
        "redis-exporter": {
            "image": "oliver006/redis_exporter:v1.67.0-alpine",
            "environment": {
                "REDIS_ADDR": processes.redis_address("redis", ports["redis"]),
                "REDIS_PASSWORD": ref("redis_password"),
                # Celery queues are Redis lists: their lengths are the queue depths Flower does not give.
                "REDIS_EXPORTER_CHECK_SINGLE_KEYS": ",".join(
                    f"db0={pool['queue']}" for pool in source["worker_pools"].values()),
                "REDIS_EXPORTER_WEB_LISTEN_ADDRESS": f":{ports['redis_exporter']}",
            },
            "healthcheck": http_check(ports["redis_exporter"], "/metrics"),
            "restart": "unless-stopped",
            "depends_on": {"redis": {"condition": "service_healthy"}},
        },
        "postgres-exporter": {
            "image": "quay.io/prometheuscommunity/postgres-exporter:v0.16.0",
            # The native exporter's custom queries: task instances queued and running per queue.
            "command": [f"--web.listen-address=:{ports['postgres_exporter']}",
                        "--extend.query-path=/etc/postgres_exporter/queries.yml"],
            "environment": {
                # The airflow database, for the custom query; the pg_* metrics are the cluster's.
                "DATA_SOURCE_URI": f"postgres:{ports['postgres']}/airflow?sslmode=disable",
                # pg_monitor (postgres/init-databases.sh) and task_instance(queue, state) (init/airflow-init.sh).
                "DATA_SOURCE_USER": processes.MONITORING_DB_ROLE,
                "DATA_SOURCE_PASS": ref("monitoring_db_password"),
            },
            "volumes": [f"../{prometheus.POSTGRES_EXPORTER_QUERIES}:/etc/postgres_exporter/queries.yml:ro"],
            "healthcheck": http_check(ports["postgres_exporter"], "/metrics"),
            "restart": "unless-stopped",
            "depends_on": {"postgres": {"condition": "service_healthy"}},
        },
        "blackbox-exporter": {
            "image": "prom/blackbox-exporter:v0.25.0",
            "command": ["--config.file=/etc/blackbox_exporter/blackbox.yml",
                        f"--web.listen-address=:{ports['blackbox_exporter']}"],
            "volumes": [f"../{prometheus.BLACKBOX_CONFIG}:/etc/blackbox_exporter/blackbox.yml:ro"],
            "healthcheck": http_check(ports["blackbox_exporter"], "/metrics"),
            "restart": "unless-stopped",
        },
        **compose_only_services(),
    }


def compose_only_services() -> dict[str, Any]:
    """Dashboards, logs and object storage: no native counterpart."""
    ports = EXTRA_PORTS
    healthy = {"interval": "30s", "timeout": "5s", "retries": 5}
    minio_env = {"MINIO_ROOT_USER": "${MINIO_ROOT_USER:?set MINIO_ROOT_USER in compose/.env}",
                 "MINIO_ROOT_PASSWORD": "${MINIO_ROOT_PASSWORD:?set MINIO_ROOT_PASSWORD in compose/.env}"}
    return {
        "grafana": {
            "image": "grafana/grafana:11.3.0",
            "environment": {"GF_SECURITY_ADMIN_USER": "admin",
                            "GF_SECURITY_ADMIN_PASSWORD": "${GRAFANA_ADMIN_PASSWORD:?set GRAFANA_ADMIN_PASSWORD in "
                                                          "compose/.env}",
                            "GF_USERS_ALLOW_SIGN_UP": "false", "GF_SERVER_HTTP_PORT": str(ports["grafana"]),
                            # The data sources' basic auth (monitoring/grafana/provisioning/datasources).
                            **{ansible.secret_env_name(s): env_ref(s)
                               for s in ("prometheus_password", "alertmanager_password")}},
            "volumes": ["../monitoring/grafana/provisioning:/etc/grafana/provisioning:ro",
                        "../monitoring/grafana/dashboards:/var/lib/grafana/dashboards:ro",
                        "grafana-data:/var/lib/grafana"],
            "ports": [f"127.0.0.1:{ports['grafana']}:{ports['grafana']}"],
            "healthcheck": {"test": ["CMD", "wget", "-q", "-O", "/dev/null",
                                     f"http://localhost:{ports['grafana']}/api/health"], **healthy},
            "restart": "unless-stopped",
            "depends_on": {"prometheus": {"condition": "service_healthy"}, "loki": {"condition": "service_healthy"}},
        },
        "loki": {
            "image": "grafana/loki:3.3.2",
            "command": ["-config.file=/etc/loki/loki.yml"],
            "volumes": ["../monitoring/loki/loki.yml:/etc/loki/loki.yml:ro", "loki-data:/loki"],
            "healthcheck": {"test": ["CMD", "wget", "-q", "-O", "/dev/null", f"http://localhost:{ports['loki']}/ready"],
                            **healthy, "start_period": "20s"},
            "restart": "unless-stopped",
        },
        "alloy": {
            "image": "grafana/alloy:v1.5.1",
            "command": ["run", f"--server.http.listen-addr=0.0.0.0:{ports['alloy']}",
                        "--storage.path=/var/lib/alloy/data", "/etc/alloy/config.alloy"],
            "volumes": ["../monitoring/alloy/config.alloy:/etc/alloy/config.alloy:ro",
                        f"airflow-logs:{HOME}/logs:ro"],
            # The image is Ubuntu-based without curl or wget: bash's /dev/tcp probes the listener.
            "healthcheck": {"test": ["CMD", "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{ports['alloy']}"], **healthy},
            "restart": "unless-stopped",
            "depends_on": {"loki": {"condition": "service_healthy"}},
        },
        "minio": {
            "image": "minio/minio:RELEASE.2024-11-07T00-52-20Z",
            "command": ["server", "/data", "--address", f":{ports['minio']}",
                        "--console-address", f":{ports['minio_console']}"],
            "environment": minio_env,
            "volumes": ["minio-data:/data"],
            "ports": [f"127.0.0.1:{ports['minio_console']}:{ports['minio_console']}"],
            "healthcheck": {"test": ["CMD", "mc", "ready", "local"], **healthy},
            "restart": "unless-stopped",
        },
        "minio-init": {
            "image": "minio/mc:RELEASE.2024-11-05T11-29-45Z",
            "environment": minio_env,
            # The bucket named by the platform_storage_uri variable.
            "entrypoint": ["sh", "-c", f'mc alias set local http://minio:{ports["minio"]} "$$MINIO_ROOT_USER" '
                           f'"$$MINIO_ROOT_PASSWORD" && mc mb --ignore-existing local/'
                           f'{VARIABLES["platform_storage_uri"].removeprefix("s3://")}'],
            "restart": "no",
            "depends_on": {"minio": {"condition": "service_healthy"}},
        },
    }


def render(source: dict[str, Any]) -> str:
    env = shared_environment(source)
    stray = [key for key, value in env.items() if "$" in re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "", value)]
    if stray:
        raise ConfigError(f"a literal $ would be read by compose as a variable in: {', '.join(stray)}")
    compose_target = target(source)
    image_processes = [p for p in model(source, compose_target) if p.runtime != processes.SYSTEM
                       and p.name not in COMPOSE_SERVICE_OF]
    anchors = {
        "x-airflow-env": env,
        "x-airflow-common": {
            "image": "${AIRFLOW_IMAGE:-controlplane-airflow:local}",
            "build": {"context": "..", "dockerfile": "airflow/Dockerfile"},
            "entrypoint": ["/usr/bin/dumb-init", "--"],
            # Task logs: the api-server reads them from the shared volume, alloy ships them to Loki.
            "volumes": [f"airflow-logs:{HOME}/logs"],
            "restart": "unless-stopped",
        },
    }
    services = {**{p.name: airflow_service(source, compose_target, p) for p in image_processes},
                "web-config": web_config_service(source), **infrastructure_services(source)}
    volumes = {name: None for name in ("postgres-data", "redis-data", "airflow-logs", "prometheus-data", "web-config",
                                       "alertmanager-data", "grafana-data", "loki-data", "minio-data")}
    body = yaml.dump({**anchors, "services": services, "volumes": volumes}, Dumper=_Dumper, sort_keys=False,
                     width=10_000)
    return HEADER + _with_anchors(body)


def _with_anchors(text: str) -> str:
    """Turn the two anchor blocks into YAML anchors and the merge markers into aliases of them."""
    for name in ("airflow-env", "airflow-common"):
        text = text.replace(f"x-{name}:\n", f"x-{name}: &{name}\n", 1)
    return re.sub(r"'?<<'?: '?\*([a-z-]+)'?", r"<<: *\1", text).replace(": null\n", ":\n")


class _Dumper(yaml.SafeDumper):
    """Lists (commands, volumes, ports) on one line each; no aliases of repeated values."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_Dumper.add_representer(list, lambda dumper, value: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", value, flow_style=True))


def web_config_service(source: dict[str, Any]) -> dict[str, Any]:
    """One-shot: the basic-auth web configs of Prometheus, Alertmanager and the Pushgateway, with
    bcrypt hashes of their .env passwords (stackctl/render/web_auth.py), into the volume the three mount.
    Root writes the volume (a fresh volume is root's); the files hold hashes only, readable by the
    three images' user."""
    return {
        MERGE: "*airflow-common",
        "user": "0",
        "command": ["python", "-m", "stackctl.render.web_auth", "/web-config", source["admin_user"]],
        "environment": {ansible.secret_env_name(secret): env_ref(secret)
                        for secret in web_auth.LISTENER_PASSWORDS.values()},
        "volumes": ["web-config:/web-config"],
        "restart": "no",
    }


def render_alertmanager(source: dict[str, Any]) -> str:
    """Alertmanager's config for compose, from the native renderer; PagerDuty and Slack files are
    not mounted in compose, so every notification goes to the on-call inbox service."""
    inbox_url = alertmanager.inbox_webhook(target(source).hosts["oncall_inbox"], source["ports"]["oncall_inbox"])
    return alertmanager.to_yaml(
        alertmanager.render(inbox_url, f"{ansible.COMPOSE_SECRETS_DIR}/oncall_inbox_token", None))


def render_prometheus(source: dict[str, Any]) -> dict[str, str]:
    """prometheus.yml and the expected worker counts for compose, by the native renderer.

    The expected counts follow config.yaml's `instances`: after `--scale worker-<pool>=N`, set the
    pool's instances to N and re-render, or CeleryWorkerPoolDegraded/Down compares with the old size.
    """
    config = prometheus.render(
        source, target(source), secrets_dir=ansible.COMPOSE_SECRETS_DIR,
        rule_files=["/etc/prometheus/rules/*.yml", "/etc/prometheus/expected_workers.yml"],
    )
    by = "`python -m stackctl render compose` (airflow/stackctl/render/prometheus.py)"
    return {
        "prometheus.yml": prometheus.to_yaml(config, rendered_by=by),
        "expected_workers.yml": prometheus.to_yaml(prometheus.expected_workers_rules(source), rendered_by=by),
    }


def write() -> list[Path]:
    source = settings.load_source()
    files = {COMPOSE_FILE: render(source), ansible.COMPOSE_ALERTMANAGER_FILE: render_alertmanager(source),
             **{ansible.COMPOSE_PROMETHEUS_DIR / name: text for name, text in render_prometheus(source).items()}}
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(files)
