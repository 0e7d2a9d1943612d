"""Monitoring's processes: Prometheus, Alertmanager, the Pushgateway, the exporters, StatsD, the
on-call inbox; and, in compose only, Grafana and the log pipeline (Loki, Alloy).

Each process says what Prometheus scrapes of it (Scrape); Prometheus reaches every scraped port.
"""

from __future__ import annotations

from typing import Any

from stackctl.model.control_plane import python
from stackctl.model.listeners import BASIC_AUTH_SECRETS, WEB_CONFIG_SECRETS
from stackctl.model.process import (
    APP,
    HTTP,
    MONITORING,
    SYSTEM,
    Image,
    Phase,
    Probe,
    Process,
    Scrape,
    web_config_file,
)
from stackctl.model.redis_users import EXPORTER, password_secret
from stackctl.model.secrets import SecretFile
from stackctl.model.services import https_args, token_args
from stackctl.model.target import ANSIBLE, COMPOSE, NATIVE, TLS_CA, Target

# Repository files the monitoring programs read.
BLACKBOX_CONFIG = "monitoring/blackbox/blackbox.yml"
# With tls, the modules with the CA that HTTPS probes verify against (render/prometheus.blackbox_config).
BLACKBOX_TLS_CONFIG = "blackbox.yml"
POSTGRES_EXPORTER_QUERIES = "monitoring/postgres_exporter/queries.yml"
STATSD_MAPPING = "monitoring/statsd/mapping.yml"
RULES_DIR = "monitoring/prometheus/rules"
# The rendered configuration files of Prometheus (its pool rules are rendered per deployment) and Alertmanager.
PROMETHEUS_CONFIG, EXPECTED_WORKERS = "prometheus/prometheus.yml", "prometheus/expected_workers.yml"
ALERTMANAGER_CONFIG = "alertmanager/alertmanager.yml"
# The role postgres_exporter connects as: read-only statistics (pg_monitor), no data.
MONITORING_DB_ROLE = "monitoring"
# redis_exporter's password file: {redis address: password}.
REDIS_EXPORTER_PASSWORD = "redis-exporter.json"
# node_exporter's textfile collector reads the *.prom files here (under the home).
TEXTFILE_DIR = "node_exporter"
# There, when each certificate of the deployment expires (native/certificates.expiry_metrics).
CERTIFICATE_METRICS = f"{TEXTFILE_DIR}/certificates.prom"
PROMETHEUS_TOOLS = "prom/"  # the Prometheus project's images
# Everything compose runs of Grafana's stack: no Debian package here, so no native counterpart.
COMPOSE_ONLY = frozenset({COMPOSE})
BESIDE_COMPOSE = frozenset({NATIVE, ANSIBLE})


def redis_address(target: Target) -> str:
    return f"{'rediss' if target.tls else 'redis'}://{target.hosts['redis']}:{target.port('redis')}"


def metrics(port: str) -> Probe:
    return Probe(HTTP, port, "/metrics")


def processes(source: dict[str, Any], target: Target) -> list[Process]:
    """Everything but Prometheus (prometheus() needs what the others expose)."""
    queues = ",".join(f"db0={pool['queue']}" for pool in source["worker_pools"].values())
    inbox_args, inbox_files = token_args(target, "oncall_inbox")
    # The address as the template spells it: its braces (a target's Jinja) doubled.
    redis = redis_address(target).replace("{", "{{").replace("}", "}}")
    password_file = SecretFile(REDIS_EXPORTER_PASSWORD, '{{"' + redis + '": "{' + password_secret(EXPORTER) + '}"}}')
    ready = "/-/ready"
    # The deployment's certificates' expiry (native/certificates.py), where it has certificates: the
    # native stack always, ansible's monitoring host (roles/monitoring); compose's containers none yet.
    textfiles = target.kind != COMPOSE
    return [
        Process("alertmanager", MONITORING, SYSTEM, (
            "alertmanager", f"--config.file={target.config(ALERTMANAGER_CONFIG)}",
            f"--storage.path={target.state('alertmanager/data')}",
            f"--web.listen-address={target.listen('alertmanager')}",
            f"--web.config.file={target.config(web_config_file('alertmanager'))}",
            "--cluster.listen-address=",  # a single instance: no gossip port
        ), Phase.MONITORING, listens=("alertmanager",), reaches=("oncall_inbox",),
            probe=Probe(HTTP, "alertmanager", ready),
            image=Image("prom/alertmanager:v0.27.0", data_root="/alertmanager"),
            scrape=(Scrape("alertmanager", "alertmanager"),),
            # Its own users' password (the web config's hash), and the inbox's token, which its webhook sends.
            secrets=("alertmanager_password", "oncall_inbox_token"),
            secret_files=(SecretFile.of("oncall_inbox_token"),),
            config_files=(ALERTMANAGER_CONFIG, web_config_file("alertmanager")), state=("alertmanager/data",),
            reload_signal="HUP"),
        Process("pushgateway", MONITORING, SYSTEM, (
            "pushgateway", f"--web.listen-address={target.listen('pushgateway')}",
            f"--web.config.file={target.config(web_config_file('pushgateway'))}",
            # Batch results survive a restart in this deployment's own file: Debian's default,
            # /var/lib/prometheus/pushgateway.data, would be shared by every stack on the machine.
            f"--persistence.file={target.state('pushgateway/metrics.data')}",
        ), Phase.MONITORING, listens=("pushgateway",), probe=Probe(HTTP, "pushgateway", ready),
            image=Image("prom/pushgateway:v1.10.0"),
            # Its series keep the job and grouping labels the batch jobs pushed.
            scrape=(Scrape("pushgateway", "pushgateway", honor_labels=True),),
            secrets=("pushgateway_password",), config_files=(web_config_file("pushgateway"),), state=("pushgateway",)),
        python(target, "statsd-bridge", MONITORING, APP, [
            "-m", "services.statsd_bridge", "--host", target.bind("statsd"), "--udp-port", target.port("statsd"),
            "--metrics-host", target.bind("statsd_metrics"), "--metrics-port", target.port("statsd_metrics"),
            "--mapping", target.repo_file(STATSD_MAPPING),
        ], Phase.MONITORING, runs_on=BESIDE_COMPOSE, listens=("statsd", "statsd_metrics"),
            probe=metrics("statsd_metrics"), scrape=(Scrape("statsd", "statsd_metrics"),),
            repo_files=(STATSD_MAPPING,)),
        # compose's StatsD: the upstream statsd_exporter, which the native bridge stands in for (it
        # has no Debian or PyPI package); the same mapping, ports and scrape job.
        Process("statsd-exporter", MONITORING, SYSTEM, (
            "statsd_exporter", f"--statsd.mapping-config={target.repo_file(STATSD_MAPPING)}",
            f"--statsd.listen-udp={target.listen('statsd')}", f"--web.listen-address={target.listen('statsd_metrics')}",
        ), Phase.MONITORING, runs_on=COMPOSE_ONLY, listens=("statsd", "statsd_metrics"),
            probe=metrics("statsd_metrics"), image=Image("prom/statsd-exporter:v0.28.0"),
            scrape=(Scrape("statsd", "statsd_metrics"),), repo_files=(STATSD_MAPPING,)),
        python(target, "oncall-inbox", MONITORING, APP, [
            "-m", "services.oncall_inbox", "--host", target.bind("oncall_inbox"), "--port", target.port("oncall_inbox"),
            "--inbox", target.state("oncall/inbox.jsonl"), *inbox_args, *https_args(target, "oncall_inbox"),
        ], Phase.MONITORING, listens=("oncall_inbox",), probe=Probe(HTTP, "oncall_inbox", "/health"),
            secrets=tuple(file.name for file in inbox_files), secret_files=inbox_files, state=("oncall",)),
        Process("node-exporter", MONITORING, SYSTEM,
                ("node_exporter", f"--web.listen-address={target.listen('node_exporter')}",
                 *([f"--collector.textfile.directory={target.state(TEXTFILE_DIR)}"] if textfiles else [])),
                Phase.MONITORING,
                listens=("node_exporter",), probe=metrics("node_exporter"), state=(TEXTFILE_DIR,) if textfiles else (),
                # In a container it reports the host's file systems and processes.
                image=Image("prom/node-exporter:v1.8.2", entrypoint=("node_exporter", "--path.rootfs=/host"),
                            mounts=("/:/host:ro,rslave",), host_pid=True),
                scrape=(Scrape("node", "node_exporter"),)),
        Process("redis-exporter", MONITORING, SYSTEM, (
            "redis_exporter", f"--redis.addr={redis_address(target)}",
            # With tls, it verifies Redis's certificate against the deployment's CA.
            *([f"--tls-ca-cert-file={target.tls_file(TLS_CA)}"] if target.tls else []),
            # Its own Redis user; the password comes from a file keyed by address, never from the command line.
            f"--redis.user={EXPORTER}", f"--redis.password-file={target.secret_file(REDIS_EXPORTER_PASSWORD)}",
            # Each Celery queue is a Redis list named after the queue: its length is the backlog.
            f"--check-single-keys={queues}",
            f"--web.listen-address={target.listen('redis_exporter')}",
        ), Phase.MONITORING, listens=("redis_exporter",), reaches=("redis",),
            probe=metrics("redis_exporter"),
            image=Image("oliver006/redis_exporter:v1.67.0-alpine", entrypoint=("/redis_exporter",)),
            scrape=(Scrape("redis", "redis_exporter"),), secrets=(password_secret(EXPORTER),),
            secret_files=(password_file,)),
        # Connected to the airflow database: its custom query counts queued and running task
        # instances per queue (the monitoring role reads only their queue and state columns);
        # the built-in pg_* metrics are the cluster's wherever it connects.
        Process("postgres-exporter", MONITORING, SYSTEM,
                ("postgres_exporter", f"--web.listen-address={target.listen('postgres_exporter')}",
                 f"--extend.query-path={target.repo_file(POSTGRES_EXPORTER_QUERIES)}"), Phase.MONITORING,
                env={
                    "DATA_SOURCE_URI": f"{target.hosts['postgres']}:{target.port('postgres')}/airflow"
                                       f"?sslmode={target.postgres_tls.get('sslmode', 'disable')}",
                    # The CA by lib/pq's variable: the exporter's DSN parser splits a path with a space.
                    **({"PGSSLROOTCERT": target.postgres_tls["sslrootcert"]} if target.tls else {}),
                    "DATA_SOURCE_USER": MONITORING_DB_ROLE,
                    "DATA_SOURCE_PASS_FILE": target.secret_file("monitoring_db_password"),
                },
                listens=("postgres_exporter",), reaches=("postgres",), probe=metrics("postgres_exporter"),
                image=Image("quay.io/prometheuscommunity/postgres-exporter:v0.16.0"),
                scrape=(Scrape("postgres", "postgres_exporter"),), secrets=("monitoring_db_password",),
                secret_files=(SecretFile.of("monitoring_db_password"),), repo_files=(POSTGRES_EXPORTER_QUERIES,)),
        # Prometheus's HTTP prober for the components without a /metrics of their own (the api-server).
        Process("blackbox-exporter", MONITORING, SYSTEM, (
            "blackbox_exporter",
            f"--config.file={target.config(BLACKBOX_TLS_CONFIG) if target.tls else target.repo_file(BLACKBOX_CONFIG)}",
            f"--web.listen-address={target.listen('blackbox_exporter')}",
        ), Phase.MONITORING, listens=("blackbox_exporter",), reaches=("api",),
            probe=metrics("blackbox_exporter"), image=Image("prom/blackbox-exporter:v0.25.0"),
            repo_files=(BLACKBOX_CONFIG,)),
        *compose_only(source, target),
    ]


def compose_only(source: dict[str, Any], target: Target) -> list[Process]:
    """Dashboards and log search (Grafana, Loki, Alloy), and the web configs' one-shot."""
    def url(port: str) -> str:
        return f"http://{target.hosts[port]}:{target.port(port)}"

    passwords = tuple(WEB_CONFIG_SECRETS.values())
    return [
        # Its data sources (monitoring/grafana/provisioning) read these variables: Grafana expands them.
        Process("grafana", MONITORING, SYSTEM, ("/run.sh",), Phase.SERVICES, runs_on=COMPOSE_ONLY, env={
            "GF_SERVER_HTTP_PORT": target.port("grafana"), "GF_SECURITY_ADMIN_USER": source["admin_user"],
            "GF_SECURITY_ADMIN_PASSWORD__FILE": target.secret_file("grafana_admin_password"),
            "GF_USERS_ALLOW_SIGN_UP": "false",
            "GF_PATHS_PROVISIONING": target.repo_file("monitoring/grafana/provisioning"),
            "DASHBOARDS_PATH": target.repo_file("monitoring/grafana/dashboards"),
            "PROMETHEUS_URL": url("prometheus"), "ALERTMANAGER_URL": url("alertmanager"), "LOKI_URL": url("loki"),
            "SCRAPE_INTERVAL": source["monitoring"]["scrape_interval"], "ADMIN_USER": source["admin_user"],
        }, listens=("grafana",), reaches=("prometheus", "alertmanager", "loki"),
            probe=Probe(HTTP, "grafana", "/api/health"),
            image=Image("grafana/grafana:11.3.0", data_root="/var/lib/grafana"),
            # The data sources' basic auth, and its own admin's password.
            secrets=("grafana_admin_password", "prometheus_password", "alertmanager_password"),
            secret_files=(SecretFile.of("grafana_admin_password"),),
            repo_files=("monitoring/grafana/provisioning", "monitoring/grafana/dashboards")),
        Process("loki", MONITORING, SYSTEM, (
            "loki", f"-config.file={target.repo_file('monitoring/loki/loki.yml')}",
            f"-server.http-listen-port={target.port('loki')}",
        ), Phase.MONITORING, runs_on=COMPOSE_ONLY, listens=("loki",), probe=Probe(HTTP, "loki", "/ready"),
            image=Image("grafana/loki:3.3.2", data_root="/loki"), repo_files=("monitoring/loki/loki.yml",)),
        # Task logs from the Airflow processes' log volume to Loki (monitoring/alloy/config.alloy reads LOKI_URL).
        Process("alloy", MONITORING, SYSTEM, (
            "alloy", "run", f"--server.http.listen-addr={target.listen('alloy')}",
            f"--storage.path={target.state('data')}",
            target.repo_file("monitoring/alloy/config.alloy"),
        ), Phase.MONITORING, runs_on=COMPOSE_ONLY, env={"LOKI_URL": f"{url('loki')}/loki/api/v1/push"},
            listens=("alloy",), reaches=("loki",), probe=Probe(HTTP, "alloy", "/-/ready"),
            # Without curl or wget in the image, bash's /dev/tcp asks its ready endpoint.
            image=Image("grafana/alloy:v1.5.1", data_root="/var/lib/alloy", http_probe="bash",
                        mounts=("airflow-logs:/opt/airflow/logs:ro",)),
            repo_files=("monitoring/alloy/config.alloy",)),
        # The basic-auth web configs of Prometheus, Alertmanager and the Pushgateway, with bcrypt hashes
        # of their passwords (render/web_auth.py): natively stackctl writes them, ansible the role.
        python(target, "web-config", MONITORING, APP,
               ["-m", "stackctl.render.web_auth", target.config("web"), source["admin_user"]], Phase.DATA,
               runs_on=COMPOSE_ONLY, secrets=passwords, one_shot=True),
    ]


def prometheus(source: dict[str, Any], target: Target, scraped: list[Process]) -> Process:
    """Started last and stopped first: a start or stop of the stack pages no one."""
    scrapes = [scrape for process in scraped for scrape in process.scrape]
    probes = ("blackbox_exporter",) if any(scrape.blackbox for scrape in scrapes) else ()
    reaches = dict.fromkeys([*(scrape.port for scrape in scrapes if not scrape.blackbox), *probes, "alertmanager"])
    sends = tuple(BASIC_AUTH_SECRETS.values())
    return Process("prometheus", MONITORING, SYSTEM, (
        "prometheus", f"--config.file={target.config(PROMETHEUS_CONFIG)}",
        f"--storage.tsdb.path={target.state('prometheus/data')}",
        f"--storage.tsdb.retention.time={source['monitoring']['retention']}",
        f"--web.listen-address={target.listen('prometheus')}",
        f"--web.config.file={target.config(web_config_file('prometheus'))}",
    ), Phase.ALERTING, listens=("prometheus",),
        reaches=tuple(reaches),
        probe=Probe(HTTP, "prometheus", "/-/ready"), image=Image("prom/prometheus:v2.55.1", data_root="/prometheus"),
        scrape=(Scrape("prometheus", "prometheus"),),
        # Its own users' password (its web config), and those it sends to what it scrapes and alerts.
        secrets=sends, secret_files=tuple(SecretFile.of(secret) for secret in sends),
        config_files=(PROMETHEUS_CONFIG, EXPECTED_WORKERS, web_config_file("prometheus")),
        repo_files=(RULES_DIR,), state=("prometheus/data",), reload_signal="HUP")
