"""Every native process runs under supervisord: restarted on crash, logged to files, one status."""

from __future__ import annotations

import shlex
import subprocess
import time
import xmlrpc.client
from dataclasses import dataclass, field

from supervisor.xmlrpc import SupervisorTransport

from . import broker, postgres, settings
from .errors import ComponentFailedError, StackError
from .layout import NativeStack

# Start phases: infrastructure first, then the Airflow control plane and the workers, Prometheus last.
INFRA = ("postgres", "redis", "oncall-inbox", "alertmanager", "pushgateway", "statsd-bridge",
         "node-exporter", "redis-exporter", "postgres-exporter")
CONTROL_PLANE = ("api-server", "scheduler", "dag-processor", "triggerer")


@dataclass
class Program:
    name: str
    command: list[str]
    priority: int
    numprocs: int = 1
    user: str | None = None
    stopsignal: str = "TERM"
    stopwaitsecs: int = 30
    stopasgroup: bool = True
    environment: dict[str, str] = field(default_factory=dict)


def worker_programs(stack: NativeStack) -> list[Program]:
    programs = []
    for pool, spec in stack.source["worker_pools"].items():
        command = [
            "airflow", "celery", "worker",
            "--queues", spec["queue"],
            "--concurrency", str(spec["concurrency"]),
            # %(process_num)d is supervisord's instance number; %%h becomes celery's %h (host).
            "--celery-hostname", f"{pool}-%(process_num)d@%%h",
            # Task logs land in the shared log folder; the log server would bind 0.0.0.0.
            "--skip-serve-logs",
        ]
        if int(spec["memory_limit_mb"]) > 0:
            limit = int(spec["memory_limit_mb"]) * 1024 * 1024
            command = ["prlimit", f"--as={limit}", "--", *command]
        programs.append(
            Program(
                name=f"worker-{pool}",
                command=command,
                priority=40,
                numprocs=int(spec["instances"]),
                environment={"AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": str(spec["prefetch_multiplier"])},
            )
        )
    return programs


def monitoring_programs(stack: NativeStack) -> list[Program]:
    """Prometheus and the exporters it scrapes (Debian packages), each on loopback."""
    listen = {name: f"{stack.bind_host}:{stack.ports[name]}"
              for name in ("prometheus", "node_exporter", "redis_exporter", "postgres_exporter")}
    queues = ",".join(f"db0={pool['queue']}" for pool in stack.source["worker_pools"].values())
    return [
        Program(
            "prometheus",
            [
                "prometheus", f"--config.file={stack.home / 'prometheus' / 'prometheus.yml'}",
                f"--storage.tsdb.path={stack.home / 'prometheus' / 'data'}",
                f"--storage.tsdb.retention.time={stack.source['monitoring']['retention']}",
                f"--web.listen-address={listen['prometheus']}",
            ],
            priority=60,  # started last and stopped first: a start or stop of the stack pages no one
        ),
        Program(
            "node-exporter",
            ["prometheus-node-exporter", f"--web.listen-address={listen['node_exporter']}"],
            priority=15,
        ),
        Program(
            "redis-exporter",
            [
                "prometheus-redis-exporter", f"--redis.addr={broker.redis_address(stack)}",
                f"--redis.password-file={broker.exporter_password_file(stack)}",
                # Each Celery queue is a Redis list named after the queue: its length is the backlog.
                f"--check-single-keys={queues}",
                f"--web.listen-address={listen['redis_exporter']}",
            ],
            priority=15,
        ),
        Program(
            "postgres-exporter",
            ["prometheus-postgres-exporter", f"--web.listen-address={listen['postgres_exporter']}"],
            priority=15,
            environment={
                "DATA_SOURCE_URI": f"{stack.bind_host}:{stack.ports['postgres']}/postgres?sslmode=disable",
                "DATA_SOURCE_USER": postgres.MONITORING_ROLE,
                "DATA_SOURCE_PASS_FILE": str(stack.secret_path("monitoring_db_password")),
            },
        ),
    ]


def freshpoc_programs(stack: NativeStack) -> list[Program]:
    """One process per FreshPoC service, for each `freshpoc_<service>` port of the source."""
    return [
        Program(
            name.replace("_", "-"),
            ["python", "-m", "services.freshpoc", name.removeprefix("freshpoc_"),
             "--host", stack.bind_host, "--port", str(port)],
            priority=50,
            # Fault injection (tests) is on only with the admin token's file; see services/freshpoc.
            environment={"FRESHPOC_ADMIN_TOKEN_FILE": str(stack.secret_path("freshpoc_admin_token"))},
        )
        for name, port in stack.ports.items() if name.startswith("freshpoc_")
    ]


def programs(stack: NativeStack) -> list[Program]:
    pg = stack.pg_bin
    return [
        Program(
            "postgres",
            [
                str(pg / "postgres"), "-D", str(stack.pg_data),
                "-c", f"listen_addresses={stack.bind_host}",
                "-c", f"port={stack.ports['postgres']}",
                "-c", f"unix_socket_directories={stack.pg_socket_dir}",
            ],
            priority=10,
            user=stack.pg_user,
            stopsignal="INT",  # fast shutdown
            stopasgroup=False,  # backends take SIGINT as "cancel query"; the postmaster stops them
        ),
        Program("redis", ["redis-server", str(stack.redis_dir / "redis.conf")], priority=10),
        Program("api-server", ["airflow", "api-server"], priority=20),
        Program("scheduler", ["airflow", "scheduler"], priority=30),
        Program("dag-processor", ["airflow", "dag-processor"], priority=30),
        Program("triggerer", ["airflow", "triggerer", "--skip-serve-logs"], priority=30),
        *worker_programs(stack),
        Program("flower", ["airflow", "celery", "flower"], priority=50),
        Program(
            "alertmanager",
            [
                "prometheus-alertmanager", f"--config.file={stack.home / 'alertmanager' / 'alertmanager.yml'}",
                f"--storage.path={stack.home / 'alertmanager' / 'data'}",
                f"--web.listen-address={stack.bind_host}:{stack.ports['alertmanager']}",
                "--cluster.listen-address=",  # a single instance: no gossip port
            ],
            priority=15,
        ),
        Program(
            "statsd-bridge",
            ["python", "-m", "services.statsd_bridge", "--host", stack.bind_host,
             "--udp-port", str(stack.ports["statsd"]), "--metrics-port", str(stack.ports["statsd_metrics"]),
             "--mapping", str(settings.REPO / "monitoring" / "statsd" / "mapping.yml")],
            priority=15,
        ),
        Program(
            "pushgateway",
            ["prometheus-pushgateway", f"--web.listen-address={stack.bind_host}:{stack.ports['pushgateway']}",
             # Batch results survive a restart in this stack's own file: Debian's default,
             # /var/lib/prometheus/pushgateway.data, would be shared by every stack on the machine.
             f"--persistence.file={stack.home / 'pushgateway' / 'metrics.data'}"],
            priority=15,
        ),
        *monitoring_programs(stack),
        Program(
            "oncall-inbox",
            ["python", "-m", "services.oncall_inbox", "--host", stack.bind_host,
             "--port", str(stack.ports["oncall_inbox"]), "--inbox", str(stack.home / "oncall" / "inbox.jsonl")],
            priority=15,
        ),
        Program(
            "inference",
            ["python", "-m", "services.inference", "--host", stack.bind_host, "--port", str(stack.ports["inference"])],
            priority=50,
        ),
        *freshpoc_programs(stack),
    ]


def _env_line(env: dict[str, str]) -> str:
    return ",".join(f'{key}="{value}"' for key, value in env.items())


def render_conf(stack: NativeStack) -> str:
    lines = [
        "; Rendered by stackctl. Do not edit: edit airflow/config.yaml or airflow/stackctl.",
        "[unix_http_server]",
        f"file={stack.supervisor_socket}",
        "chmod=0700",
        "[supervisord]",
        f"logfile={stack.logs_dir / 'supervisord.log'}",
        f"pidfile={stack.home / 'supervisord.pid'}",
        f"directory={stack.home}",
        f"environment={_env_line(stack.airflow_env())}",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "[supervisorctl]",
        f"serverurl=unix://{stack.supervisor_socket}",
    ]
    for program in programs(stack):
        # Pools are numbered from 1 even with one instance, matching their Celery hostnames.
        process_name = "%(program_name)s-%(process_num)d" if program.name.startswith("worker-") else program.name
        lines += [
            f"[program:{program.name}]",
            "command=" + " ".join(shlex.quote(part) for part in program.command),
            f"priority={program.priority}",
            f"numprocs={program.numprocs}",
            "numprocs_start=1",
            f"process_name={process_name}",
            "autostart=false",  # stackctl starts phases in order, after the database is migrated
            "autorestart=true",
            "startsecs=5",
            "startretries=3",
            f"stopsignal={program.stopsignal}",
            f"stopwaitsecs={program.stopwaitsecs}",
            f"stopasgroup={str(program.stopasgroup).lower()}",
            f"killasgroup={str(program.stopasgroup).lower()}",
            "redirect_stderr=true",
            f"stdout_logfile={stack.logs_dir / process_name}.log",
            "stdout_logfile_maxbytes=20MB",
            "stdout_logfile_backups=3",
        ]
        if program.user:
            lines.append(f"user={program.user}")
        if program.environment:
            lines.append(f"environment={_env_line(program.environment)}")
    return "\n".join(lines) + "\n"


class Supervisor:
    """A thin client of one stack's supervisord."""

    def __init__(self, stack: NativeStack):
        self.stack = stack

    def _proxy(self):
        transport = SupervisorTransport(None, None, f"unix://{self.stack.supervisor_socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def is_running(self) -> bool:
        if not self.stack.supervisor_socket.exists():
            return False
        try:
            return self._proxy().getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Fault):
            return False

    def start_daemon(self) -> None:
        started = subprocess.run(
            [str(self.stack.venv_bin / "supervisord"), "-c", str(self.stack.supervisor_conf)],
            capture_output=True, text=True,
        )
        if started.returncode != 0:
            raise StackError(f"supervisord did not start: {started.stdout}{started.stderr}")
        deadline = time.monotonic() + 15
        while not self.is_running():
            if time.monotonic() > deadline:
                raise StackError(f"supervisord did not start; see {self.stack.logs_dir / 'supervisord.log'}")
            time.sleep(0.2)

    def reload(self) -> None:
        """Pick up a re-rendered config (new or resized programs) without touching the rest."""
        added, changed, removed = self._proxy().reloadConfig()[0]
        for group in removed:
            self._proxy().stopProcessGroup(group)
            self._proxy().removeProcessGroup(group)
        for group in changed:
            self._proxy().stopProcessGroup(group)
            self._proxy().removeProcessGroup(group)
            self._proxy().addProcessGroup(group)
        for group in added:
            self._proxy().addProcessGroup(group)

    def processes(self) -> list[dict]:
        return self._proxy().getAllProcessInfo()

    def start_group(self, group: str, wait: bool = True) -> None:
        """Start a program's processes; fail with its log if it cannot stay up.

        wait=False returns at once; the caller's readiness probe then watches the process.
        """
        try:
            self._proxy().startProcessGroup(group, wait)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" not in fault.faultString:
                raise ComponentFailedError(group, fault.faultString, self.log_tail(group)) from None
        self.raise_if_failed([group])

    def raise_if_failed(self, groups: list[str] | tuple[str, ...]) -> None:
        for info in self.processes():
            if info["group"] in groups and info["statename"] in ("FATAL", "BACKOFF", "EXITED", "STOPPED"):
                raise ComponentFailedError(
                    info["name"], f"process is {info['statename']} ({info['spawnerr'] or 'exited'})",
                    self.log_tail(info["name"]),
                )

    def log_tail(self, process: str, lines: int = 25) -> str:
        log = self.stack.program_log(process)
        if not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def shutdown(self) -> None:
        """Stop every program (in reverse priority), then supervisord itself."""
        if not self.is_running():
            return
        proxy = self._proxy()
        proxy.stopAllProcesses(True)
        proxy.shutdown()
        deadline = time.monotonic() + 30
        while self.stack.supervisor_socket.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
