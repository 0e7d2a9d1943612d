"""The deployment model: every process of the product, defined once for every target.

A process records its argv, its own environment, the host group that runs it, the ports it
listens on and the ports it reaches, its memory ceiling, how it stops, and the secrets it
needs. The native stack (stackctl/native/supervisor.py), compose (stackctl/render/compose.py) and ansible
(stackctl/render/ansible.py, as the `airflow_processes` variable the role templates loop over)
render from it; none of them types a command, an environment or a port of its own.

A target supplies its topology as a settings.Target (paths, hosts, ports, how secrets are
spelled) plus where its executables live and where its listeners bind (a Layout); it spells
a pool's instance number (INSTANCE) its own way.

Secrets follow the processes. An Airflow setting that references a secret ({secrets.<name>}
in config.yaml) reaches only the processes that hold every secret it references, and a
connection with a secret only the processes that name it; both travel in that process's
environment, never in the shared airflow.cfg or connection file. So a worker holds the
broker's password alone: Celery's results are in Redis too, and its tasks get their connections
from the api-server (TASK_CONNECTIONS) through Airflow's execution API.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from stackctl.errors import ConfigError
from stackctl.model import settings
from stackctl.render import prometheus
from workers import celery_capacity, library_preload
from workers.freshpoc import services as freshpoc_services

# Where a worker's instance number goes in its Celery hostname; each target substitutes its own
# spelling (supervisord's %(process_num)d, systemd's %i, nothing in compose).
INSTANCE = "{instance}"

# Host groups. Worker pools run in workers_<pool>; postgres and redis are managed services in
# production (only the native stack runs them); monitoring holds Prometheus and its exporters.
CONTROLPLANE, MONITORING, DATABASE, BROKER = "controlplane", "monitoring", "database", "broker"
# Every worker host, whatever its pool (the inventory's parent group of the workers_<pool> groups).
WORKERS = "workers"
LOOPBACK = "127.0.0.1"
# A process that exits within startsecs of its start (its database or broker unreachable) is
# started again after a backoff that grows by one second per try; after START_RETRIES tries in a
# row supervisord gives up (FATAL) and only an operator starts it again. 30 tries wait
# 1 + 2 + ... + 30 s = 465 s between them: a dependency may be down about eight minutes and every
# process comes back on its own, at most 30 s after it. The first failed start of `stackctl up`
# still fails at once (Supervisor.start_group: BACKOFF is a failure there). Ansible's supervisor
# templates render it too (airflow_start_retries); its systemd units never stop restarting.
START_RETRIES = 30
# The ports people open in a browser or with a client: the UI and REST API, Flower, the
# alerts and their silences, the metrics, the on-call inbox.
OPERATOR_PORTS = ("api", "flower", "prometheus", "alertmanager", "oncall_inbox")

# What a process runs: an Airflow command with the Airflow environment, Python code of this
# repository (services/), or a system program (PostgreSQL, Redis, Prometheus and its exporters).
AIRFLOW, APP, SYSTEM = "airflow", "app", "system"

# The control plane's Airflow processes sign and validate tokens and read the metadata DB.
CONTROL_PLANE_SECRETS = ("fernet_key", "airflow_db_password", "jwt_secret")
# Celery's broker and result backend, both Redis.
CELERY_SECRETS = ("redis_password",)
# The secret-bearing connections tasks use. Airflow 3's execution API serves a task every
# connection its worker does not hold, from the api-server's own: so only the api-server holds
# these, and a worker host holds no database, storage or service credential.
# The FreshPoC job services' connections (their token): the tasks start jobs, the triggerer polls them.
FRESHPOC_JOB_CONNECTIONS = tuple(service.conn_id for service in freshpoc_services.JOB_SERVICES)
TASK_CONNECTIONS = ("platform_db", "platform_redis", "inference_api", "alertmanager", "pushgateway",
                    *FRESHPOC_JOB_CONNECTIONS)
# Listeners guarded by a bearer token (services/auth.py), by port: the secret its service reads
# from `--token-file` and its clients send. The FreshPoC job services' ports are named as their
# connections.
TOKEN_SECRETS = {"inference": "inference_token", "oncall_inbox": "oncall_inbox_token",
                 **dict.fromkeys(FRESHPOC_JOB_CONNECTIONS, "freshpoc_token")}
# redis_exporter's password file, under the deployment's home: {redis address: password}.
REDIS_EXPORTER_PASSWORD_FILE = "redis/exporter-password.json"
# The role postgres_exporter connects as: read-only statistics (pg_monitor), no data.
MONITORING_DB_ROLE = "monitoring"


@dataclass(frozen=True)
class Process:
    name: str
    group: str
    runtime: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    listens: tuple[str, ...] = ()
    reaches: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    # The secret-bearing Airflow connections it uses (connections without a secret are shared).
    connections: tuple[str, ...] = ()
    # Reads or writes the platform's object storage, or serves its connection to tasks (a target
    # with s3:// hands it the credentials).
    uses_storage: bool = False
    memory_limit_mb: int = 0
    stop_signal: str = "TERM"
    stop_timeout_s: int = 30
    # The stop signal goes to the whole process group, or (False) to the main process only, which
    # stops its children itself: PostgreSQL's postmaster (its backends take SIGINT as "cancel
    # query"), and a Celery worker, whose warm shutdown lets its running tasks finish (the signal
    # in a task's process would end the task). What is left at the stop timeout is killed as a group.
    stop_as_group: bool = True
    # The signal on which it re-reads its configuration without a restart ("" = it does not).
    reload_signal: str = ""
    instances: int = 1
    one_shot: bool = False
    # Start order of the native stack (supervisord priority): lower starts first, stops last.
    priority: int = 50

    @property
    def pool(self) -> str | None:
        return self.group.removeprefix("workers_") if self.group.startswith("workers_") else None


def worker_group(pool: str) -> str:
    return f"workers_{pool}"


def web_config_file(listener: str) -> str:
    """Where Prometheus, Alertmanager or the Pushgateway reads its basic auth (render/web_auth.py), under home."""
    return f"{listener}/web.yml"


def connection_secrets(source: dict[str, Any], conn_ids: tuple[str, ...]) -> tuple[str, ...]:
    """The secrets the given connections reference, each once."""
    per_connection = split_by_secrets(source["connections"])[1]
    return tuple(sorted({secret for conn_id in conn_ids for secret in per_connection.get(conn_id, ())}))


@dataclass(frozen=True)
class Layout:
    """What differs between targets beyond settings.Target: executables and bind addresses."""

    target: settings.Target
    bind_host: str
    bin_dir: str = ""  # prefix of the venv's executables ("" = found on PATH)
    # Ports that no other host reaches (local_ports), listened on at loopback where bind_host is
    # the host's address that other hosts reach (ansible). Empty where bind_host is loopback
    # (native) or every container must reach every port (compose).
    loopback_ports: frozenset[str] = frozenset()
    # airflow-init sizes the Airflow pools from config.yaml's instances; false where the target
    # sizes them from the instances its hosts run (ansible: controlplane's pools.yml).
    sizes_airflow_pools: bool = True

    def exe(self, name: str) -> str:
        return f"{self.bin_dir}/{name}" if self.bin_dir else name

    @property
    def home(self) -> str:
        return self.target.home

    def port(self, name: str) -> str:
        return str(self.target.ports[name])

    def bind(self, name: str) -> str:
        """The address the process listening on port `name` binds to."""
        return LOOPBACK if name in self.loopback_ports else self.bind_host

    def listen(self, name: str) -> str:
        return f"{self.bind(name)}:{self.port(name)}"

    def secret_file(self, name: str) -> str:
        """Where a secret's file is on every host that holds it: <home>/secrets/<name>."""
        return f"{self.home}/secrets/{name}"

    def token_args(self, port: str) -> list[str]:
        """`--token-file <file>` for the service listening on a port guarded by a token, else nothing."""
        return ["--token-file", self.secret_file(TOKEN_SECRETS[port])] if port in TOKEN_SECRETS else []


def argv_secret_files(process: Process, layout: Layout) -> list[str]:
    """The secrets a process reads from the files its argv names (a service's token)."""
    return [name for name in process.secrets if layout.secret_file(name) in process.argv]


def base_environment(layout: Layout) -> dict[str, str]:
    """The environment of every Airflow and application process of a host (the image sets it in compose)."""
    return {
        "AIRFLOW_HOME": f"{layout.home}/airflow",
        "AIRFLOW_CONFIG": f"{layout.home}/airflow/airflow.cfg",
        # Tasks import their logic from workers/; stackctl lives in airflow/.
        "PYTHONPATH": f"{layout.target.repo}:{layout.target.repo}/airflow",
        "PATH": f"{layout.bin_dir}:/usr/local/bin:/usr/bin:/bin",
    }


def _airflow(layout: Layout, name: str, group: str, args: list[str], **kwargs: Any) -> Process:
    return Process(name, group, AIRFLOW, (layout.exe("airflow"), *args), **kwargs)


def _python(layout: Layout, name: str, group: str, runtime: str, args: list[str], **kwargs: Any) -> Process:
    return Process(name, group, runtime, (layout.exe("python"), *args), **kwargs)


def control_plane(source: dict[str, Any], layout: Layout) -> list[Process]:
    broker_and_stats = ("redis", "statsd")
    return [
        # It also serves the tasks' connections (TASK_CONNECTIONS) and, on a target with s3://,
        # the storage connection, to the workers through the execution API.
        _airflow(layout, "api-server", CONTROLPLANE, ["api-server"], listens=("api",),
                 reaches=("postgres", "redis", "statsd"),
                 secrets=(*CONTROL_PLANE_SECRETS, "api_secret_key", *connection_secrets(source, TASK_CONNECTIONS)),
                 connections=TASK_CONNECTIONS, uses_storage=True, priority=20),
        _airflow(layout, "scheduler", CONTROLPLANE, ["scheduler"], listens=("scheduler_health",),
                 reaches=("postgres", *broker_and_stats), secrets=(*CONTROL_PLANE_SECRETS, "redis_password"),
                 priority=30),
        _airflow(layout, "dag-processor", CONTROLPLANE, ["dag-processor"], reaches=("postgres", "statsd"),
                 secrets=CONTROL_PLANE_SECRETS, priority=30),
        # It serves no logs: its trigger logs are on the api-server's host, or in object storage.
        # Its triggers poll the FreshPoC jobs with their connections' token.
        _airflow(layout, "triggerer", CONTROLPLANE, ["triggerer", "--skip-serve-logs"],
                 reaches=("postgres", "statsd", *service_ports(source)),
                 secrets=(*CONTROL_PLANE_SECRETS, *connection_secrets(source, FRESHPOC_JOB_CONNECTIONS)),
                 connections=FRESHPOC_JOB_CONNECTIONS, uses_storage=True, priority=30),
        # A worker that sent no heartbeat for a minute (a crashed or cut-off host, which sends no
        # worker-offline event) leaves Flower's metrics, so the pool alerts see it gone.
        _airflow(layout, "flower", CONTROLPLANE, ["celery", "flower"], env={"FLOWER_PURGE_OFFLINE_WORKERS": "60"},
                 listens=("flower",), reaches=("redis",), secrets=(*CELERY_SECRETS, "flower_password"), priority=50),
        # One-shot: migrations, the admin user and the Airflow pools. The operator's
        # `stackctl airflow ...` runs with its environment too.
        _python(layout, "airflow-init", CONTROLPLANE, AIRFLOW,
                ["-m", "stackctl.ops.airflow_init",
                 *init_args(source, layout.secret_file("admin_password"), pools=layout.sizes_airflow_pools)],
                reaches=("postgres",),
                secrets=(*CONTROL_PLANE_SECRETS, "api_secret_key", "admin_password", "platform_db_password"),
                connections=("platform_db",), one_shot=True),
    ]


def service_ports(source: dict[str, Any]) -> tuple[str, ...]:
    return tuple(name for name in source["ports"] if name.startswith("freshpoc_"))


def init_args(source: dict[str, Any], admin_password_file: str, pools: bool = True) -> list[str]:
    """Arguments of `python -m stackctl.ops.airflow_init`: the admin user and (pools) the Airflow pools."""
    args = ["--user", f"{source['admin_user']}:Admin:{admin_password_file}"]
    for name, slots in (settings.airflow_pool_slots(source) if pools else {}).items():
        args += ["--pool", f"{name}:{slots}:{source['airflow_pools'][name]['description']}"]
    return args


def celery_hostname(pool: str, instance: str | int, host: str = "%h") -> str:
    """<pool>-<n>@<host>: Flower, `celery inspect` and the worker-pool alerts read the pool back from it."""
    return f"{pool}-{instance}@{host}"


def workers(source: dict[str, Any], layout: Layout) -> list[Process]:
    task_reaches = ("api", "redis", "postgres", "statsd", "inference", "alertmanager", "pushgateway",
                    *service_ports(source))
    processes = []
    for pool, spec in source["worker_pools"].items():
        processes.append(_airflow(
            layout, f"worker-{pool}", worker_group(pool),
            # Celery's autoscaler: min processes when idle, up to max while tasks wait.
            ["celery", "worker", "--queues", spec["queue"],
             "--autoscale", f"{spec['max_processes']},{spec['min_processes']}",
             "--celery-hostname", celery_hostname(pool, INSTANCE),
             # No worker serves its task logs (Airflow's log server binds 0.0.0.0): they are in
             # the host's one log folder, or, across hosts, in object storage (remote logging).
             "--skip-serve-logs"],
            env={"AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": str(spec["prefetch_multiplier"]),
                 celery_capacity.POOL_ENV: pool,  # the pool its capacity gauges report (workers/celery_capacity.py)
                 # Libraries its main process imports before it forks (workers/library_preload.py).
                 **preload_environment(spec)},
            reaches=task_reaches,
            # Only the broker's: tasks get their connections from the api-server (TASK_CONNECTIONS).
            secrets=CELERY_SECRETS,
            memory_limit_mb=int(spec["memory_limit_mb"]),
            # Celery's warm shutdown: running tasks get until the longest allowed task ends.
            stop_timeout_s=int(source["max_task_timeout_s"]) + 60, stop_as_group=False,
            instances=int(spec["instances"]),
            priority=40,
        ))
    return processes


def preload_environment(spec: dict[str, Any]) -> dict[str, str]:
    """PRELOAD_ENV for a worker pool that names libraries to preload (worker_pools.<pool>.preload), else nothing."""
    modules = spec.get("preload") or []
    if not isinstance(modules, list) or not all(isinstance(name, str) for name in modules):
        raise ConfigError(f"worker_pools.*.preload: a list of module names, got {modules!r}")
    value = ",".join(modules)
    try:
        library_preload.modules_from_env({library_preload.PRELOAD_ENV: value})
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return {library_preload.PRELOAD_ENV: value} if modules else {}


def reference_services(source: dict[str, Any], layout: Layout) -> list[Process]:
    """The inference service and the FreshPoC services, on the control plane's hosts."""
    processes = [_python(
        layout, "inference", CONTROLPLANE, AIRFLOW,
        ["-m", "services.inference", "--host", layout.bind("inference"), "--port", layout.port("inference"),
         *layout.token_args("inference")],
        listens=("inference",), reaches=("redis",), secrets=("redis_password", TOKEN_SECRETS["inference"]),
        connections=("platform_redis",),
        uses_storage=True, priority=50,
    )]
    for port in service_ports(source):
        service = port.removeprefix("freshpoc_")
        # Only the services that read or write the lineage graph get the platform database.
        uses_db = freshpoc_services.BY_NAME[service].uses_db
        env, connections = {}, ("platform_db",) if uses_db else ()
        secrets: tuple[str, ...] = ("platform_db_password",) if uses_db else ()
        # A job service takes the bearer token of its job routes from a file (services/auth.py).
        token = layout.token_args(port)
        secrets = (*secrets, TOKEN_SECRETS[port]) if token else secrets
        # Fault injection (tests) is on only with the admin token's file; a target without it has it off.
        if "freshpoc_admin_token" in layout.target.secrets:
            env["FRESHPOC_ADMIN_TOKEN_FILE"] = layout.secret_file("freshpoc_admin_token")
            secrets = (*secrets, "freshpoc_admin_token")
        processes.append(_python(
            layout, f"freshpoc-{service}", CONTROLPLANE, AIRFLOW,
            ["-m", "services.freshpoc", service, "--host", layout.bind(port), "--port", layout.port(port), *token,
             *(ingestion_args(source, layout) if service == "ingestion" else [])],
            env=env, listens=(port,), reaches=("postgres",) if uses_db else (), secrets=secrets,
            connections=connections, uses_storage=True, priority=50,
        ))
    return processes


def ingestion_args(source: dict[str, Any], layout: Layout) -> list[str]:
    """What the FreshPoC ingestion service may read (config.yaml freshpoc.ingestion)."""
    rules = source["freshpoc"]["ingestion"]
    args = [arg for root in rules["allowed_roots"] for arg in ("--allowed-root", root.format(repo=layout.target.repo))]
    return [*args, "--max-clone-mb", str(rules["max_clone_mb"]), "--clone-timeout-s", str(rules["clone_timeout_s"])]


def monitoring(source: dict[str, Any], layout: Layout) -> list[Process]:
    """Prometheus, Alertmanager, the Pushgateway, the exporters, the StatsD bridge, the on-call inbox."""
    home, queues = layout.home, ",".join(f"db0={pool['queue']}" for pool in source["worker_pools"].values())
    return [
        Process("alertmanager", MONITORING, SYSTEM, (
            "alertmanager", f"--config.file={home}/alertmanager/alertmanager.yml",
            f"--storage.path={home}/alertmanager/data", f"--web.listen-address={layout.listen('alertmanager')}",
            f"--web.config.file={home}/{web_config_file('alertmanager')}",
            "--cluster.listen-address=",  # a single instance: no gossip port
        ), listens=("alertmanager",), reaches=("oncall_inbox",),
            secrets=("alertmanager_password", "oncall_inbox_token"),
            reload_signal="HUP", priority=15),
        Process("pushgateway", MONITORING, SYSTEM, (
            "pushgateway", f"--web.listen-address={layout.listen('pushgateway')}",
            f"--web.config.file={home}/{web_config_file('pushgateway')}",
            # Batch results survive a restart in this deployment's own file: Debian's default,
            # /var/lib/prometheus/pushgateway.data, would be shared by every stack on the machine.
            f"--persistence.file={home}/pushgateway/metrics.data",
        ), listens=("pushgateway",), secrets=("pushgateway_password",), priority=15),
        _python(layout, "statsd-bridge", MONITORING, APP, [
            "-m", "services.statsd_bridge", "--host", layout.bind("statsd"), "--udp-port", layout.port("statsd"),
            "--metrics-host", layout.bind("statsd_metrics"), "--metrics-port", layout.port("statsd_metrics"),
            "--mapping", f"{layout.target.repo}/monitoring/statsd/mapping.yml",
        ], listens=("statsd", "statsd_metrics"), priority=15),
        _python(layout, "oncall-inbox", MONITORING, APP, [
            "-m", "services.oncall_inbox", "--host", layout.bind("oncall_inbox"), "--port", layout.port("oncall_inbox"),
            "--inbox", f"{home}/oncall/inbox.jsonl", *layout.token_args("oncall_inbox"),
        ], listens=("oncall_inbox",), secrets=(TOKEN_SECRETS["oncall_inbox"],), priority=15),
        Process("node-exporter", MONITORING, SYSTEM,
                ("node_exporter", f"--web.listen-address={layout.listen('node_exporter')}"),
                listens=("node_exporter",), priority=15),
        Process("redis-exporter", MONITORING, SYSTEM, (
            "redis_exporter", f"--redis.addr={redis_address(layout.target.hosts['redis'], layout.port('redis'))}",
            # The password comes from a file keyed by address, never from the command line.
            f"--redis.password-file={home}/{REDIS_EXPORTER_PASSWORD_FILE}",
            # Each Celery queue is a Redis list named after the queue: its length is the backlog.
            f"--check-single-keys={queues}",
            f"--web.listen-address={layout.listen('redis_exporter')}",
        ), listens=("redis_exporter",), reaches=("redis",), secrets=("redis_password",), priority=15),
        # Connected to the airflow database: its custom query counts queued and running task
        # instances per queue (the monitoring role reads only their queue and state columns);
        # the built-in pg_* metrics are the cluster's wherever it connects.
        Process("postgres-exporter", MONITORING, SYSTEM,
                ("postgres_exporter", f"--web.listen-address={layout.listen('postgres_exporter')}",
                 f"--extend.query-path={layout.target.repo}/{prometheus.POSTGRES_EXPORTER_QUERIES}"),
                env={
                    "DATA_SOURCE_URI": f"{layout.target.hosts['postgres']}:{layout.port('postgres')}"
                                       "/airflow?sslmode=disable",
                    "DATA_SOURCE_USER": MONITORING_DB_ROLE,
                    "DATA_SOURCE_PASS_FILE": layout.secret_file("monitoring_db_password"),
                },
                listens=("postgres_exporter",), reaches=("postgres",), secrets=("monitoring_db_password",),
                priority=15),
        # Prometheus's HTTP prober for the components without a /metrics of their own (the api-server).
        Process("blackbox-exporter", MONITORING, SYSTEM, (
            "blackbox_exporter", f"--config.file={layout.target.repo}/{prometheus.BLACKBOX_CONFIG}",
            f"--web.listen-address={layout.listen('blackbox_exporter')}",
        ), listens=("blackbox_exporter",), reaches=tuple(component for _, component, _, _ in prometheus.PROBE_JOBS),
            priority=15),
        # Started last and stopped first: a start or stop of the stack pages no one.
        Process("prometheus", MONITORING, SYSTEM, (
            "prometheus", f"--config.file={home}/prometheus/prometheus.yml",
            f"--storage.tsdb.path={home}/prometheus/data",
            f"--storage.tsdb.retention.time={source['monitoring']['retention']}",
            f"--web.listen-address={layout.listen('prometheus')}",
            f"--web.config.file={home}/{web_config_file('prometheus')}",
        ), listens=("prometheus",), reaches=(*(port for _, port in prometheus.SCRAPE_JOBS), "blackbox_exporter",
                                             *service_ports(source)),
            # Its own users' password (its web config), and those it sends to what it scrapes and alerts.
            secrets=tuple(prometheus.BASIC_AUTH_SECRETS.values()), reload_signal="HUP", priority=60),
    ]


def redis_address(host: str, port: str | int) -> str:
    return f"redis://{host}:{port}"


def infrastructure(layout: Layout) -> list[Process]:
    """PostgreSQL and Redis: run by the native stack, managed services elsewhere."""
    home = layout.home
    return [
        Process("postgres", DATABASE, SYSTEM, (
            "postgres", "-D", f"{home}/postgres/data", "-c", f"listen_addresses={layout.bind('postgres')}",
            "-c", f"port={layout.port('postgres')}", "-c", f"unix_socket_directories={home}/postgres/socket",
        # The database holds every role's credentials: it creates them on its first start.
        ), listens=("postgres",), secrets=("postgres_superuser_password", "airflow_db_password",
                                           "platform_db_password", "monitoring_db_password"),
            stop_signal="INT", stop_as_group=False,  # fast shutdown
            priority=10),
        Process("redis", BROKER, SYSTEM, ("redis-server", f"{home}/redis/redis.conf"), listens=("redis",),
                secrets=("redis_password",), priority=10),
    ]


def model(source: dict[str, Any], layout: Layout) -> list[Process]:
    processes = [*infrastructure(layout), *control_plane(source, layout), *workers(source, layout),
                 *reference_services(source, layout), *monitoring(source, layout)]
    _check(source, processes)
    return processes


def _check(source: dict[str, Any], processes: list[Process]) -> None:
    names = [p.name for p in processes]
    if len(set(names)) != len(names):
        raise ConfigError(f"process names must be unique: {names}")
    listened = [port for p in processes for port in p.listens]
    unowned = set(source["ports"]) - set(listened)
    if unowned or len(set(listened)) != len(listened):
        raise ConfigError(f"every port needs exactly one listening process; without one: {sorted(unowned)}")
    connection_secrets = split_by_secrets(source["connections"])[1]
    for process in processes:
        unknown = (set(process.secrets) - set(source["secrets"]) or set(process.reaches) - set(source["ports"])
                   or set(process.connections) - set(connection_secrets))
        if unknown:
            raise ConfigError(f"process {process.name} names unknown secrets, ports or connections: {sorted(unknown)}")
        for conn_id in process.connections:
            if not connection_secrets[conn_id] <= set(process.secrets):
                raise ConfigError(f"process {process.name} uses connection {conn_id} without its secrets "
                                  f"{sorted(connection_secrets[conn_id])}")


def port_groups(processes: list[Process]) -> dict[str, str]:
    """The host group serving each port: where every other process reaches it."""
    return {port: p.group for p in processes for port in p.listens}


def local_ports(processes: list[Process]) -> frozenset[str]:
    """The ports that only their own host group reaches, and no operator: loopback is enough.

    A group's processes share its host (ansible deploys each group's processes to its hosts and
    reaches a port at its group's first host), so a port reached from no other group needs no
    address that other hosts can reach.
    """
    serving = port_groups(processes)
    remote = {port for p in processes for port in p.reaches if serving[port] != p.group}
    return frozenset(set(serving) - remote - set(OPERATOR_PORTS))


# --- secrets per process ------------------------------------------------------------------

SECRET_REFERENCE = re.compile(r"\{secrets\.(\w+)\}")


def referenced_secrets(value: Any) -> set[str]:
    return set(SECRET_REFERENCE.findall(json.dumps(value)))


def split_by_secrets(items: dict[str, Any]) -> tuple[dict[str, Any], dict[str, set[str]]]:
    """Items without a secret reference (shared by every process), and the secrets of the others."""
    shared = {key: value for key, value in items.items() if not referenced_secrets(value)}
    private = {key: referenced_secrets(value) for key, value in items.items() if referenced_secrets(value)}
    return shared, private


def shared_source(source: dict[str, Any]) -> dict[str, Any]:
    """config.yaml with every secret-bearing setting and connection removed: airflow.cfg's content."""
    airflow = {section: split_by_secrets(options)[0] for section, options in source["airflow"].items()}
    return {**source, "airflow": {s: o for s, o in airflow.items() if o},
            "connections": split_by_secrets(source["connections"])[0]}


def private_settings(source: dict[str, Any], process: Process) -> dict[str, dict[str, str]]:
    """The secret-bearing Airflow settings this process may hold: {section: {key: template}}."""
    held = set(process.secrets)
    chosen: dict[str, dict[str, str]] = {}
    for section, options in source["airflow"].items():
        for key, secrets in split_by_secrets(options)[1].items():
            if secrets <= held:
                chosen.setdefault(section, {})[key] = options[key]
    return chosen


def secret_environment(source: dict[str, Any], target: settings.Target, process: Process) -> dict[str, str]:
    """AIRFLOW__S__K and AIRFLOW_CONN_* variables of the secret-bearing settings a process holds."""
    if process.runtime != AIRFLOW:
        return {}
    own = {**source, "airflow": private_settings(source, process),
           "connections": {conn_id: source["connections"][conn_id] for conn_id in process.connections}}
    env = settings.to_env(settings.render_settings(own, target))
    for conn_id, fields in settings.render_connections(own, target).items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(fields, separators=(",", ":"))
    return env


def supervisor_environment(env: dict[str, str]) -> str:
    """supervisord's environment= value: % doubled (its expansion), JSON values whole in single quotes."""
    def quoted(value: str) -> str:
        value = value.replace("%", "%%")
        return f"'{value}'" if '"' in value else f'"{value}"'

    return ",".join(f"{key}={quoted(value)}" for key, value in env.items())
