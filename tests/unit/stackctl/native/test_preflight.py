import socket
import subprocess
import sys

import pytest

from stackctl.errors import PreflightError
from stackctl.model import debian, settings
from stackctl.native import preflight
from stackctl.native.stack import NativeStack


def test_a_port_in_use_is_named_with_its_component(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        stack = NativeStack.load(tmp_path, {"flower": port})
        with pytest.raises(PreflightError, match=f"flower port {port} is already in use"):
            preflight.require_free_ports(stack)


def test_free_ports_pass(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    stack = NativeStack.load(tmp_path, {name: free for name in ["api"]})
    stack = NativeStack(stack.home, stack.source, {"api": free})
    preflight.require_free_ports(stack)


def test_missing_system_packages_are_named(tmp_path, monkeypatch):
    stack = NativeStack.load(tmp_path)
    monkeypatch.setattr(NativeStack, "pg_bin", None)
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server, no prlimit
    with pytest.raises(PreflightError) as error:
        preflight.require_system_packages(stack)
    message = str(error.value)
    assert "postgresql-15" in message and "redis-server" in message and "util-linux" in message
    assert "make setup" in message
    # Each package it names is one `make setup` installs (stackctl/model/debian.py, their owner).
    named = [problem.split(" (")[0] for problem in message.removeprefix("missing system packages: ")
             .split(". Run")[0].split("; ")]
    assert named and set(named) <= set(debian.SYSTEM_PACKAGES)


def test_stackctl_up_reports_a_missing_package_and_starts_nothing(tmp_path):
    """The CLI exits 2 with the package named, before creating any state."""
    env = {"PATH": str(tmp_path), "PYTHONPATH": f"{settings.REPO}:{settings.REPO / 'airflow'}"}
    result = subprocess.run(
        [sys.executable, "-m", "stackctl", "--home", str(tmp_path / "state"), "up"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "missing system packages" in result.stderr and "redis-server" in result.stderr
    assert not (tmp_path / "state").exists()


def test_port_override_must_name_a_component(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{settings.REPO}:{settings.REPO / 'airflow'}"}
    result = subprocess.run(
        [sys.executable, "-m", "stackctl", "--home", str(tmp_path), "up", "--port", "bogus=1"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "unknown component in --port: bogus" in result.stderr
