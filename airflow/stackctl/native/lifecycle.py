"""Bring the native stack up in phases, report its status, and take it down.

`up` is all or nothing: if any component fails to start or to become healthy, every
process of the stack is stopped again and the error names the component.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO
from urllib.parse import urlparse

from stackctl.errors import ComponentFailedError, StackError
from stackctl.model import processes, settings
from stackctl.native import broker, health, postgres, preflight
from stackctl.native.secrets import ensure_secrets, write_private
from stackctl.native.stack import NativeStack
from stackctl.native.supervisor import CONTROL_PLANE, INFRA, Supervisor, environment, native_processes, render_conf
from stackctl.render import alertmanager, prometheus, web_auth

STARTUP_TIMEOUT_S = 240
PRIVATE_FOLDER_MODE = 0o700


def render(stack: NativeStack) -> dict[str, str]:
    """Generate missing secrets and render every config file; return the secrets."""
    secret_values = ensure_secrets(stack.secrets_dir, stack.secret_kinds)
    target = stack.target(secret_values)
    for folder in private_folders(stack, target):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(PRIVATE_FOLDER_MODE)  # an older stack's folders too
    # Shared files hold no secret: each process gets its secret-bearing settings in its own environment.
    shared = processes.shared_source(stack.source)
    write_private(stack.airflow_cfg, settings.to_airflow_cfg(settings.render_settings(shared, target)))
    connections = settings.render_connections(shared, target)
    write_private(stack.airflow_home / "connections.json", json.dumps(connections, indent=2))
    write_private(stack.airflow_home / "variables.json", json.dumps(settings.render_variables(stack.source, target)))
    broker.write_conf(stack, secret_values["redis_password"])
    (stack.home / "alertmanager" / "data").mkdir(exist_ok=True)
    inbox_url = alertmanager.inbox_webhook(stack.bind_host, stack.ports["oncall_inbox"])
    write_private(stack.home / "alertmanager" / "alertmanager.yml", alertmanager.to_yaml(
        alertmanager.render(inbox_url, str(stack.secret_path("oncall_inbox_token")), stack.secrets_dir)))
    for listener, secret in web_auth.LISTENER_PASSWORDS.items():
        write_private(stack.home / processes.web_config_file(listener),
                      web_auth.to_yaml(web_auth.render(stack.source["admin_user"], secret_values[secret])))
    render_prometheus(stack, target)
    write_private(stack.supervisor_conf, render_conf(stack, secret_values))
    stack.remember()
    return secret_values


def private_folders(stack: NativeStack, target: settings.Target) -> list[Path]:
    """The folders of the stack's data, logs and configs: only the stack's user reads them (0700).

    The state folder itself keeps its mode: PostgreSQL's unprivileged user must traverse it to
    reach its own 0700 folder (preflight.require_traversable). What the processes create inside
    is owner-only too (supervisord's umask, supervisor.PROCESS_UMASK).
    """
    folders = [stack.airflow_home, stack.logs_dir, stack.redis_dir, stack.home / "alertmanager",
               stack.home / "pushgateway", stack.home / "prometheus"]
    objects = urlparse(settings.render_variables(stack.source, target)["platform_storage_uri"])
    if objects.scheme == "file":  # object storage on this host's disk
        folders.append(Path(objects.path))
    return folders


def render_prometheus(stack: NativeStack, target: settings.Target) -> None:
    folder = stack.home / "prometheus"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    expected = folder / "expected_workers.yml"
    expected.write_text(prometheus.to_yaml(prometheus.expected_workers_rules(stack.source)))
    config = prometheus.render(
        stack.source, target, secrets_dir=str(stack.secrets_dir),
        rule_files=[str(settings.REPO / prometheus.RULES_DIR / "*.yml"), str(expected)],
    )
    write_private(folder / "prometheus.yml", prometheus.to_yaml(config))


def broker_url(stack: NativeStack, secret_values: dict[str, str]) -> str:
    return settings.render_settings(stack.source, stack.target(secret_values))["celery"]["broker_url"]


def read_secrets(stack: NativeStack) -> dict[str, str]:
    return {name: stack.read_secret(name) for name in stack.secret_kinds}


def init_process(stack: NativeStack, secret_values: dict[str, str]) -> processes.Process:
    return next(p for p in native_processes(stack, secret_values) if p.name == "airflow-init")


def operator_env(stack: NativeStack) -> dict[str, str]:
    """The environment of `airflow db migrate`, the init and the operator's `stackctl airflow ...`."""
    secret_values = read_secrets(stack)
    return {**os.environ, **environment(stack, secret_values, init_process(stack, secret_values))}


def run_airflow(stack: NativeStack, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["airflow", *args], env=operator_env(stack), capture_output=True, text=True,
                          timeout=timeout)


class StartupProgress:
    """What `up` tells its user while it works: a line when a component starts and one when it is
    healthy or done, never more (CI logs stay short). On stderr: stdout is `up`'s result, the URLs."""

    def __init__(self, out: TextIO = sys.stderr, clock: Callable[[], float] = time.monotonic):
        self.out, self.clock = out, clock
        self.started: dict[str, float] = {}
        self.finished: set[str] = set()

    def starting(self, component: str) -> None:
        self.started[component] = self.clock()
        self._say(component, "starting")

    def healthy(self, components: Iterable[str]) -> None:
        for component in components:
            self.done(component, "healthy")

    def done(self, component: str, state: str = "done") -> None:
        """Say once that a started component is `state`, with how long it took since it started."""
        if component not in self.finished:
            self.finished.add(component)
            self._say(component, f"{state} ({self.clock() - self.started[component]:.1f} s)")

    def _say(self, component: str, state: str) -> None:
        print(f"  {component:<18} {state}", file=self.out)


def control_plane_healthy(unhealthy: list[str]) -> list[str]:
    """The control-plane programs the api-server's health document shows healthy (none while it
    does not answer); `unhealthy` is health.unhealthy_api_components' answer."""
    if "api-server" in unhealthy:
        return []
    return [program for program in CONTROL_PLANE if program.replace("-", "_") not in unhealthy]


def pools_answering(hostnames: dict[str, list[str]], missing: list[str]) -> list[str]:
    """The worker groups ({group: its Celery hostnames}) every worker of which answers a ping."""
    return [group for group, names in hostnames.items() if not set(names) & set(missing)]


def wait_until(component: str, ready: Callable[[], bool], supervisor: Supervisor, groups: tuple[str, ...],
               progress: StartupProgress, timeout: float = STARTUP_TIMEOUT_S,
               why: Callable[[], str] = lambda: "") -> None:
    """Poll a readiness probe; fail early if a supervised process dies meanwhile. Once ready, the
    groups it covers are reported healthy."""
    deadline = time.monotonic() + timeout
    while not ready():
        supervisor.raise_if_failed(groups)
        if time.monotonic() > deadline:
            log = groups[0] if len(groups) == 1 else ""
            raise ComponentFailedError(
                component, f"not healthy after {timeout:.0f}s {why()}".strip(), supervisor.log_tail(log) if log else ""
            )
        time.sleep(1)
    progress.healthy(groups)


def initialise_airflow(stack: NativeStack) -> None:
    migrate = run_airflow(stack, "db", "migrate")
    if migrate.returncode != 0:
        output = migrate.stdout[-1500:] + migrate.stderr[-1500:]
        raise ComponentFailedError("airflow db migrate", "migration failed", output)
    secret_values = read_secrets(stack)
    # The monitoring grant, the platform migrations, the admin user and the pools (stackctl/ops/airflow_init.py).
    init = subprocess.run(list(init_process(stack, secret_values).argv), env=operator_env(stack),
                          capture_output=True, text=True, timeout=300)
    if init.returncode != 0:
        raise ComponentFailedError("airflow init", "initialisation failed", init.stderr[-2000:])


def up(stack: NativeStack) -> None:
    preflight.require_system_packages(stack)
    supervisor = Supervisor(stack)
    already_running = supervisor.is_running()
    if not already_running:
        preflight.require_free_ports(stack)
    stack.home.mkdir(parents=True, exist_ok=True)
    preflight.require_traversable(stack)
    secret_values = render(stack)
    try:
        postgres.ensure_cluster(stack, secret_values["postgres_superuser_password"])
        if already_running:
            supervisor.reload()
        else:
            supervisor.start_daemon()
        _start_all(stack, supervisor, secret_values)
        if already_running:
            # Prometheus reads its rule files (the per-deployment pool rules among them) on SIGHUP.
            supervisor.signal("prometheus", "HUP")
    except BaseException:
        supervisor.shutdown()
        raise


def _start_all(stack: NativeStack, supervisor: Supervisor, secret_values: dict[str, str]) -> None:
    progress = StartupProgress()
    # Infrastructure starts side by side; each one's readiness probe below waits for it.
    for group in INFRA:
        progress.starting(group)
        supervisor.start_group(group, wait=False)
    wait_until("postgres", lambda: postgres.is_ready(stack, secret_values["postgres_superuser_password"]),
               supervisor, ("postgres",), progress, timeout=60)
    wait_until("redis", lambda: broker.is_ready(stack, secret_values["redis_password"]),
               supervisor, ("redis",), progress, timeout=30)
    for component, port, path in (("oncall-inbox", "oncall_inbox", "/health"),
                                  ("alertmanager", "alertmanager", "/-/ready"),
                                  ("pushgateway", "pushgateway", "/-/ready"),
                                  ("statsd-bridge", "statsd_metrics", "/metrics"),
                                  ("node-exporter", "node_exporter", "/metrics"),
                                  ("redis-exporter", "redis_exporter", "/metrics"),
                                  ("postgres-exporter", "postgres_exporter", "/metrics"),
                                  ("blackbox-exporter", "blackbox_exporter", "/metrics")):
        wait_until(component, lambda port=port, path=path: health.listener_ok(stack, port, path), supervisor,
                   (component,), progress, timeout=30)
    postgres.ensure_databases(
        stack, secret_values["postgres_superuser_password"],
        {"airflow": secret_values["airflow_db_password"], "platform": secret_values["platform_db_password"],
         postgres.MONITORING_ROLE: secret_values["monitoring_db_password"]},
    )
    progress.starting("airflow-init")
    initialise_airflow(stack)
    progress.done("airflow-init")

    worker_hostnames = {f"worker-{pool}": stack.worker_hostnames(pool) for pool in stack.source["worker_pools"]}
    worker_groups = tuple(worker_hostnames)
    services = [p.name for p in native_processes(stack, secret_values) if p.name.startswith("freshpoc-")]
    for group in (*CONTROL_PLANE, *worker_groups, "flower", "inference", *services):
        progress.starting(group)
        supervisor.start_group(group, wait=False)

    # The two waits below cover several programs: each is reported as soon as it is healthy.
    def control_plane_unhealthy() -> list[str]:
        unhealthy = health.unhealthy_api_components(health.api_health(stack))
        progress.healthy(control_plane_healthy(unhealthy))
        return unhealthy

    wait_until(
        "api-server and jobs", lambda: not control_plane_unhealthy(), supervisor, CONTROL_PLANE, progress,
        why=lambda: "unhealthy: " + ", ".join(health.unhealthy_api_components(health.api_health(stack))),
    )
    celery_broker = broker_url(stack, secret_values)

    def workers_missing() -> list[str]:
        missing = health.missing_workers(stack, health.celery_pongs(celery_broker))
        progress.healthy(pools_answering(worker_hostnames, missing))
        return missing

    wait_until(
        "celery workers", lambda: not workers_missing(), supervisor, worker_groups, progress,
        why=lambda: "no pong from: " + ", ".join(health.missing_workers(stack, health.celery_pongs(celery_broker))),
    )
    wait_until(
        "flower", lambda: health.flower_ready(stack, stack.source["admin_user"], secret_values["flower_password"]),
        supervisor, ("flower",), progress, timeout=60,
    )
    wait_until("inference", lambda: health.inference_ready(stack), supervisor, ("inference",), progress, timeout=60)
    for name in services:
        url = f"{stack.url(name.replace('-', '_'))}/health"
        wait_until(name, lambda url=url: health.http_ok(url), supervisor, (name,), progress, timeout=60)
    # Prometheus starts last: its rules see every component up, so starting the stack pages no one.
    progress.starting("prometheus")
    supervisor.start_group("prometheus", wait=False)
    wait_until("prometheus", lambda: health.listener_ok(stack, "prometheus", "/-/ready"), supervisor,
               ("prometheus",), progress, timeout=60)


def down(stack: NativeStack) -> bool:
    supervisor = Supervisor(stack)
    if not supervisor.is_running():
        return False
    supervisor.shutdown()
    return True


def status(stack: NativeStack) -> tuple[list[dict], list[str]]:
    """Supervised processes and the components that are not healthy (empty when all are)."""
    supervisor = Supervisor(stack)
    if not supervisor.is_running():
        raise StackError(f"the stack in {stack.home} is not running; start it with `make up`")
    processes = supervisor.processes()
    problems = [f"{p['name']} is {p['statename']}" for p in processes if p["statename"] != "RUNNING"]
    problems += [f"{name} unhealthy" for name in health.unhealthy_api_components(health.api_health(stack))]
    secret_values = read_secrets(stack)
    # A worker whose machine is saturated by heavy tasks answers slowly: give it time.
    pongs = health.celery_pongs(broker_url(stack, secret_values), timeout=5.0)
    problems += [f"worker {name} does not answer ping" for name in health.missing_workers(stack, pongs)]
    return processes, problems
