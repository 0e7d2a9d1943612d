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
from stackctl.model import monitoring, secrets, settings
from stackctl.model.listeners import WEB_CONFIG_SECRETS
from stackctl.model.process import AIRFLOW, Process, waves, web_config_file
from stackctl.model.target import TLS_HOST, Target
from stackctl.native import broker, certificates, health, postgres, preflight
from stackctl.native.secrets import ensure_secrets, write_private
from stackctl.native.stack import NativeStack
from stackctl.native.supervisor import Supervisor, environment, native_processes, render_conf
from stackctl.render import alertmanager, prometheus, web_auth

# A wave starts a dozen Airflow processes at once: on a 2-core host already busy with runs, CI saw the
# api-server's FAB app still loading after 240 s, with its wave's others healthy only at 218-242 s.
STARTUP_TIMEOUT_S = 420
OTHER_STARTUP_TIMEOUT_S = 60
PRIVATE_FOLDER_MODE = 0o700


def render(stack: NativeStack) -> dict[str, str]:
    """Generate missing secrets and render every config file; return the secrets."""
    secret_values = ensure_secrets(stack.secrets_dir, stack.secret_kinds)
    # The stack's CA and its one host's certificate, issued or renewed, and their expiry for
    # node_exporter (CertificateExpiresSoon); Redis, PostgreSQL and the api-server serve them where
    # config.yaml's tls is on.
    certificates.ensure(stack.tls_dir, "native", {TLS_HOST: [stack.bind_host, "localhost"]},
                        own_ca=settings.own_ca(stack.source))
    certificates.write_expiry_metrics(stack.tls_dir, stack.home / monitoring.TEXTFILE_DIR)
    target = stack.target(secret_values)
    model = native_processes(stack, secret_values)
    for folder in private_folders(stack, target, model):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(PRIVATE_FOLDER_MODE)  # an older stack's folders too
    for process in model:
        if process.name != "postgres":  # native/postgres.py makes its folders, for its own user
            for folder in process.state:
                Path(target.state(folder)).mkdir(parents=True, exist_ok=True)
    # Shared files hold no secret: each process gets its secret-bearing settings in its own environment.
    shared = secrets.shared_source(stack.source)
    write_private(stack.airflow_cfg, settings.to_airflow_cfg(settings.render_settings(shared, target)))
    connections = settings.render_connections(shared, target)
    write_private(stack.airflow_home / "connections.json", json.dumps(connections, indent=2))
    write_private(stack.airflow_home / "variables.json", json.dumps(settings.render_variables(stack.source, target)))
    # The files programs read their secrets from, beside the secrets themselves (a file that is one
    # secret as it is, is that secret's own file).
    for file in {file for process in model for file in process.secret_files if file.name not in secret_values}:
        write_private(Path(target.secret_file(file.name)), file.render(secret_values))
    inbox = alertmanager.inbox_webhook(target, stack.bind_host)
    write_private(Path(target.config(monitoring.ALERTMANAGER_CONFIG)), alertmanager.to_yaml(
        alertmanager.render(inbox, target.secret_file("oncall_inbox_token"), stack.secrets_dir)))
    for listener, secret in WEB_CONFIG_SECRETS.items():
        write_private(Path(target.config(web_config_file(listener))),
                      web_auth.to_yaml(web_auth.render(stack.source["admin_user"],
                                                        web_auth.password_hash(secret_values[secret]), target)))
    render_prometheus(stack, target, model)
    write_private(stack.supervisor_conf, render_conf(stack, secret_values))
    stack.remember()
    return secret_values


def private_folders(stack: NativeStack, target: Target, model: list[Process]) -> list[Path]:
    """The folders of the stack's data, logs and configs: only the stack's user reads them (0700).

    The state folder itself keeps its mode: PostgreSQL's unprivileged user must traverse it to
    reach its own 0700 folder (preflight.require_traversable), which native/postgres.py makes. What
    the processes create inside is owner-only too (supervisord's umask, supervisor.PROCESS_UMASK).
    """
    written = {path.split("/")[0] for process in model if process.name != "postgres"
               for path in (*process.state, *process.config_files)}
    folders = [stack.airflow_home, stack.logs_dir, stack.tls_dir, stack.home / monitoring.TEXTFILE_DIR,
               *(stack.home / name for name in sorted(written))]
    objects = urlparse(settings.render_variables(stack.source, target)["platform_storage_uri"])
    if objects.scheme == "file":  # object storage on this host's disk
        folders.append(Path(objects.path))
    return folders


def render_prometheus(stack: NativeStack, target: Target, model: list[Process]) -> None:
    expected = Path(target.config(monitoring.EXPECTED_WORKERS))
    write_private(expected, prometheus.to_yaml(prometheus.expected_workers_rules(stack.source)))
    config = prometheus.render(stack.source, target, model,
                               rule_files=[target.repo_file(f"{monitoring.RULES_DIR}/*.yml"), str(expected)])
    write_private(Path(target.config(monitoring.PROMETHEUS_CONFIG)), prometheus.to_yaml(config))
    if target.tls:
        write_private(Path(target.config(monitoring.BLACKBOX_TLS_CONFIG)),
                      prometheus.to_yaml(prometheus.blackbox_config(target)))


def read_secrets(stack: NativeStack) -> dict[str, str]:
    return {name: stack.read_secret(name) for name in stack.secret_kinds}


def init_process(stack: NativeStack, secret_values: dict[str, str]) -> Process:
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


def wait_until_ready(stack: NativeStack, supervisor: Supervisor, waiting: list[Process],
                     secret_values: dict[str, str], progress: StartupProgress) -> None:
    """Probe the processes of a wave until each is ready (model/process.py Probe), saying so as each is;
    fail early if a supervised process dies meanwhile, or one is not ready in time."""
    started = time.monotonic()
    waiting = list(waiting)
    while waiting:
        for process in [p for p in waiting if health.ready(stack, p, secret_values)]:
            progress.healthy([process.name])
            waiting.remove(process)
        if not waiting:
            return
        supervisor.raise_if_failed(tuple(p.name for p in waiting))
        late = [p for p in waiting if time.monotonic() - started > startup_timeout(p)]
        if late:
            why = health.why_not_ready(stack, late[0], secret_values)
            raise ComponentFailedError(late[0].name, f"not healthy after {startup_timeout(late[0])}s {why}".strip(),
                                       supervisor.log_tail(late[0].name))
        time.sleep(1)


def startup_timeout(process: Process) -> int:
    """Airflow's processes wait for the database, the api-server or the broker; the others start at once."""
    return STARTUP_TIMEOUT_S if process.runtime == AIRFLOW else OTHER_STARTUP_TIMEOUT_S


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
            # PostgreSQL re-reads pg_hba.conf and a renewed or rotated certificate (ensure_cluster).
            postgres.reload(stack, secret_values["postgres_superuser_password"])
    except BaseException:
        supervisor.shutdown()
        raise


def _start_all(stack: NativeStack, supervisor: Supervisor, secret_values: dict[str, str]) -> None:
    """Start the model's processes wave by wave (model/process.py waves): each wave's one-shots, then its
    other processes side by side; Prometheus is the last wave, so its rules see every component up and
    starting the stack pages no one."""
    progress = StartupProgress()
    for wave in waves(native_processes(stack, secret_values)):
        for process in (p for p in wave if p.one_shot):
            progress.starting(process.name)
            run_one_shot(stack, process, secret_values)
            progress.done(process.name)
        running = [p for p in wave if not p.one_shot]
        for process in running:
            progress.starting(process.name)
            supervisor.start_group(process.name, wait=False)
        wait_until_ready(stack, supervisor, running, secret_values, progress)


def run_one_shot(stack: NativeStack, process: Process, secret_values: dict[str, str]) -> None:
    """The native stack's one-shot is airflow-init, after the databases and roles it migrates exist
    (compose's PostgreSQL image creates them from compose/postgres/init-databases.sh)."""
    postgres.ensure_databases(
        stack, secret_values["postgres_superuser_password"],
        {"airflow": secret_values["airflow_db_password"], "platform": secret_values["platform_db_password"],
         postgres.MONITORING_ROLE: secret_values["monitoring_db_password"]},
    )
    initialise_airflow(stack)


def down(stack: NativeStack) -> bool:
    supervisor = Supervisor(stack)
    if not supervisor.is_running():
        return False
    # In reverse start order, one phase after another: the workers drain (warm shutdown: running
    # tasks finish) while the broker, the database and the execution API they report to still run.
    model = [p for p in native_processes(stack, read_secrets(stack)) if not p.one_shot]
    supervisor.stop_in_order([[p.name for p in model if p.phase == phase]
                              for phase in sorted({p.phase for p in model}, reverse=True)])
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
    pongs = health.celery_pongs(broker.url(stack, secret_values), timeout=5.0)
    problems += [f"worker {name} does not answer ping" for name in health.missing_workers(stack, pongs)]
    return processes, problems
