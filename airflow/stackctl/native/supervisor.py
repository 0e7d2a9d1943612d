"""Every native process runs under supervisord: restarted on crash, logged to files, one status."""

from __future__ import annotations

import shlex
import subprocess
import time
import xmlrpc.client

from supervisor.xmlrpc import SupervisorTransport

from stackctl.errors import ComponentFailedError, StackError
from stackctl.model import debian, processes
from stackctl.model.process import INSTANCE, SYSTEM, Process
from stackctl.native.stack import NativeStack
from stackctl.render.supervisord import supervisor_environment

# supervisord's umask, which its processes inherit: what they write is their user's only (0600, 0700).
PROCESS_UMASK = 0o077


def native_processes(stack: NativeStack, secret_values: dict[str, str]) -> list[Process]:
    return processes.model(stack.source, stack.target(secret_values))


def native_argv(stack: NativeStack, process: Process) -> list[str]:
    program, *args = process.argv
    if process.name == "postgres":
        # Debian keeps the server off PATH; its sockets go in the stack's own folder, which the
        # unprivileged user owns (Debian's /var/run/postgresql is the system cluster's).
        program, args = str(stack.pg_bin / "postgres"), [*args, "-c", f"unix_socket_directories={stack.pg_socket_dir}"]
    argv = [debian.executable(program), *args]
    if process.memory_limit_mb > 0:
        argv = ["prlimit", f"--as={process.memory_limit_mb * 1024 * 1024}", "--", *argv]
    return argv


def environment(stack: NativeStack, secret_values: dict[str, str], process: Process) -> dict[str, str]:
    """What a process gets: the Airflow environment, its own variables, and its secrets only."""
    target = stack.target(secret_values)
    env = processes.base_environment(target) if process.runtime != SYSTEM else {}
    return {**env, **process.env, **processes.secret_environment(stack.source, target, process)}


def _command(argv: list[str], pool: str | None) -> str:
    command = " ".join(shlex.quote(part.replace("%", "%%")) for part in argv)
    # Pools are numbered from 1 even with one instance, matching their Celery hostnames.
    return command.replace(INSTANCE, "%(process_num)d") if pool else command


def render_conf(stack: NativeStack, secret_values: dict[str, str]) -> str:
    lines = [
        "; Rendered by stackctl from its deployment model (stackctl/model/processes.py). Do not edit.",
        "[unix_http_server]",
        f"file={stack.supervisor_socket}",
        "chmod=0700",
        "[supervisord]",
        # Every file and folder a process creates (objects, logs, data) is its owner's only.
        f"umask={PROCESS_UMASK:03o}",
        f"logfile={stack.logs_dir / 'supervisord.log'}",
        f"pidfile={stack.home / 'supervisord.pid'}",
        f"directory={stack.home}",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "[supervisorctl]",
        f"serverurl=unix://{stack.supervisor_socket}",
    ]
    for process in native_processes(stack, secret_values):
        if process.one_shot:
            continue  # stackctl runs it itself, between the phases (lifecycle.initialise_airflow)
        process_name = "%(program_name)s-%(process_num)d" if process.pool else process.name
        lines += [
            f"[program:{process.name}]",
            "command=" + _command(native_argv(stack, process), process.pool),
            f"priority={int(process.phase)}",
            f"numprocs={process.instances}",
            "numprocs_start=1",
            f"process_name={process_name}",
            "autostart=false",  # stackctl starts phases in order, after the database is migrated
            "autorestart=true",
            "startsecs=5",
            f"startretries={processes.START_RETRIES}",
            f"stopsignal={process.stop_signal}",
            f"stopwaitsecs={process.stop_timeout_s}",
            f"stopasgroup={str(process.stop_as_group).lower()}",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={stack.logs_dir / process_name}.log",
            "stdout_logfile_maxbytes=20MB",
            "stdout_logfile_backups=3",
        ]
        if process.name == "postgres" and stack.pg_user:
            lines.append(f"user={stack.pg_user}")
        env = environment(stack, secret_values, process)
        if env:
            lines.append(f"environment={supervisor_environment(env)}")
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

    def signal(self, process: str, signal: str) -> None:
        self._proxy().signalProcess(process, signal)

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

    def stop_in_order(self, phases: list[list[str]]) -> None:
        """Stop each phase's programs together, and wait until they are down before the next phase.

        supervisord's own stopAllProcesses signals every program at once and only then waits, so the
        broker could stop while a worker still drains its tasks (its warm shutdown then retries the
        broker until stopwaitsecs, an hour for a worker)."""
        proxy = self._proxy()
        for groups in phases:
            for group in groups:
                try:
                    proxy.stopProcessGroup(group, False)
                except xmlrpc.client.Fault as fault:
                    if "BAD_NAME" not in fault.faultString:  # a program this conf does not have
                        raise
            while any(info["group"] in groups and info["statename"] in ("STARTING", "RUNNING", "BACKOFF", "STOPPING")
                      for info in proxy.getAllProcessInfo()):
                time.sleep(0.2)

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
