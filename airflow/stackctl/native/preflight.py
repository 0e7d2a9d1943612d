"""Checks made before anything starts, so a failure names its cause and leaves nothing behind."""

from __future__ import annotations

import errno
import pwd
import shutil
import socket
import subprocess

from stackctl.errors import PreflightError
from stackctl.model import debian
from stackctl.native.stack import NativeStack


def require_system_packages(stack: NativeStack) -> None:
    missing = []
    if stack.pg_bin is None:
        missing.append("postgresql-15 (no /usr/lib/postgresql/15/bin/postgres)")
    if shutil.which("redis-server") is None:
        missing.append("redis-server (no redis-server on PATH)")
    for program, package in debian.PACKAGES.items():
        binary = debian.executable(program)
        if shutil.which(binary) is None:
            missing.append(f"{package} (no {binary} on PATH)")
    if shutil.which("prlimit") is None:
        missing.append("util-linux (no prlimit on PATH)")
    if missing:
        raise PreflightError(
            "missing system packages: " + "; ".join(missing) + ". Run `make setup`, which installs them with apt."
        )
    if stack.pg_user is not None:
        try:
            pwd.getpwnam(stack.pg_user)
        except KeyError:
            raise PreflightError(
                f"system user {stack.pg_user!r}, which runs PostgreSQL when the stack is started as root, "
                "does not exist. Run `make setup`, which creates it."
            ) from None


def require_traversable(stack: NativeStack) -> None:
    """PostgreSQL runs unprivileged, so it must be able to reach its data folder."""
    if stack.pg_user is None:
        return
    probe = subprocess.run(
        ["runuser", "-u", stack.pg_user, "--", "test", "-x", str(stack.home)], capture_output=True
    )
    if probe.returncode != 0:
        raise PreflightError(
            f"user {stack.pg_user!r} cannot reach the state folder {stack.home}: a parent folder is not "
            "world-searchable (chmod o+x it), or choose another folder with --home."
        )


def port_holder(port: int) -> str:
    """Best-effort description of the process listening on a port."""
    try:
        out = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.splitlines()[0].split()[-1] if out else ""


def require_free_ports(stack: NativeStack) -> None:
    busy = []
    for component, port in stack.listened_ports.items():
        # TCP and UDP both: the StatsD port takes UDP, the rest TCP.
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as sock:
                # As the servers themselves do: connections left in TIME_WAIT by a stack that
                # just stopped must not count as "in use", only a live listener.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((stack.bind_host, port))
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        raise
                    holder = port_holder(port)
                    busy.append(f"{component} port {port} is already in use" + (f" by {holder}" if holder else ""))
                    break
    if busy:
        raise PreflightError(
            "; ".join(busy) + ". Stop what holds it, or start on other ports: "
            "`stackctl up --port <component>=<free port>`."
        )
