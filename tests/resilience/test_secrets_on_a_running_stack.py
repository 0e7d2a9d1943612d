"""A started stack's secrets: owner-only files, never in the repository, a log or a command line; loopback only."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stackctl.model import settings
from stackctl.native.supervisor import Supervisor
from tests.secret_scan import scan_files, tracked_files

from .conftest import descendants

pytestmark = pytest.mark.e2e
# Data, not configuration: the PostgreSQL cluster (its own 0700 folder), training data and models.
DATA_FOLDERS = ("postgres", "objects", "alertmanager/data")
RENDERED_CONFIGS = ("airflow/airflow.cfg", "airflow/connections.json", "airflow/variables.json",
                    "prometheus/prometheus.yml", "alertmanager/alertmanager.yml", "supervisord.conf")


def generated_secrets(stack) -> dict[str, str]:
    return {name: stack.read_secret(name) for name in stack.secret_kinds}


def state_files(home: Path) -> list[Path]:
    return [path for path in home.rglob("*") if path.is_file()
            and not any(path.is_relative_to(home / folder) for folder in DATA_FOLDERS)]


def stack_pids(stack) -> set[int]:
    main = {p["pid"] for p in Supervisor(stack).processes() if p["pid"]}
    return main | {child for pid in main for child in descendants(pid)}


def test_no_generated_secret_is_in_the_repository(running_stack):
    findings = scan_files(tracked_files(settings.REPO), settings.REPO, generated_secrets(running_stack.stack))
    assert findings == [], "\n".join(map(str, findings))


def test_rendered_configs_hold_no_default_credential_or_private_key(running_stack):
    home = running_stack.stack.home
    findings = scan_files([home / name for name in RENDERED_CONFIGS], home)
    assert findings == [], "\n".join(map(str, findings))


def test_a_secret_is_only_in_owner_only_files_never_in_a_log(running_stack):
    stack = running_stack.stack
    values = generated_secrets(stack)
    holders = {}
    for path in state_files(stack.home):
        text = path.read_bytes()
        held = [name for name, value in values.items() if value.encode() in text]
        if held:
            holders[str(path.relative_to(stack.home))] = (oct(path.stat().st_mode & 0o777), held)
    assert all(mode == "0o600" for mode, _ in holders.values()), holders
    assert not [path for path in holders if path.startswith("logs/")], holders
    assert stack.secrets_dir.stat().st_mode & 0o777 == 0o700
    assert {f"secrets/{name}" for name in values} <= set(holders)


def test_no_secret_is_on_a_process_command_line(running_stack):
    values = generated_secrets(running_stack.stack)
    leaks = []
    for pid in stack_pids(running_stack.stack):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        leaks += [(pid, name) for name, value in values.items() if value in cmdline]
    assert leaks == []


def test_every_tcp_and_udp_listener_of_every_stack_process_is_on_loopback(running_stack):
    stack = running_stack.stack
    pids = stack_pids(stack)
    sockets = subprocess.run(["ss", "-Hltunp"], capture_output=True, text=True, check=True).stdout.splitlines()
    ours = [line.split() for line in sockets if any(f"pid={pid}," in line for pid in pids)]
    # Every TCP listener, and every UDP socket on a port the stack serves (the StatsD bridge's).
    # Other UDP sockets are the StatsD clients' unconnected send sockets on ephemeral ports.
    served = {str(port) for port in stack.ports.values()}
    listeners = [f for f in ours if f[0] == "tcp" or f[4].rsplit(":", 1)[1] in served]
    assert any(f[0] == "udp" for f in listeners), ours
    assert {f[4].rsplit(":", 1)[0] for f in listeners} == {"127.0.0.1"}, listeners
