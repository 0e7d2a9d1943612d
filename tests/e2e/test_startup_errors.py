"""`stackctl up` fails with a message that names the problem and leaves nothing running."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from stackctl.model import settings

from .conftest import free_ports, port_args, stack_home, stackctl

pytestmark = pytest.mark.e2e


def no_stack_left(home) -> bool:
    return not (home / "supervisor.sock").exists() and subprocess.run(
        ["pgrep", "-f", str(home)], capture_output=True
    ).returncode == 1


@pytest.fixture
def home():
    path = stack_home()
    yield path
    stackctl(path, "down", timeout=120)
    shutil.rmtree(path, ignore_errors=True)


def fresh_ports() -> dict[str, int]:
    names = list(settings.load_source()["ports"])
    return dict(zip(names, free_ports(len(names)), strict=True))


def test_a_port_in_use_is_named_and_nothing_starts(running_stack, home):
    ports = fresh_ports()
    ports["api"] = running_stack.stack.ports["api"]
    result = stackctl(home, "up", *port_args(ports), timeout=120)
    assert result.returncode == 2
    assert f"api port {ports['api']} is already in use" in result.stderr
    assert no_stack_left(home)


def test_a_component_that_cannot_start_is_named_and_everything_stops(home):
    # A data folder that is not a PostgreSQL cluster: postgres exits at once.
    data = home / "postgres" / "data"
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("not a cluster\n")
    result = stackctl(home, "up", *port_args(fresh_ports()), timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "postgres failed" in result.stderr
    assert "last lines of postgres's log" in result.stderr
    assert no_stack_left(home)
