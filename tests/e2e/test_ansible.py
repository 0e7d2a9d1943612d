"""ansible/ on a real stack: a heavy pool deployed by site.yml joins the running native stack.

The play runs against localhost (local connection, supervisor mode) into a temporary prefix,
reuses the repository's .venv (common_venv exists, so nothing is installed), and renders its
configuration from the running stack's topology and secrets, passed as vault variables. Its
workers are named heavy-ansible-N@host, apart from the native heavy-N@host.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from stackctl.model import settings
from stackctl.native import broker, health
from tests.playbook import run as run_playbook

pytestmark = pytest.mark.e2e

HOSTNAME_PREFIX = "heavy-ansible"
DEADLINE_S = 240  # workers on a busy 2-core machine take a while to connect and answer
STOP_GRACE_S = 60  # an idle worker's warm shutdown takes seconds, even on a busy machine


@dataclass
class Deployment:
    prefix: Path
    inventory: Path
    extra_vars: Path
    broker_url: str
    flower_url: str
    flower_auth: tuple[str, str]
    flower_verify: ssl.SSLContext | bool

    def play(self, playbook: str, *args: str) -> subprocess.CompletedProcess:
        return run_playbook(self.inventory, playbook, "-e", f"@{self.extra_vars}", *args, timeout=900)

    def supervisorctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(Path(sys.executable).parent / "supervisorctl"), "-c",
             str(self.prefix / "supervisor" / "supervisord.conf"), *args],
            capture_output=True, text=True, timeout=120,
        )


def recap(output: str) -> dict[str, int]:
    """The PLAY RECAP line of localhost: {'ok': n, 'changed': n, ...}."""
    line = next(line for line in output.splitlines() if re.match(r"^localhost\s+:", line))
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}


@pytest.fixture(scope="module")
def deployment(running_stack, tmp_path_factory):
    stack = running_stack.stack
    workdir = tmp_path_factory.mktemp("ansible")
    prefix = workdir / "prefix"
    inventory = workdir / "hosts.yml"
    # workers_instances lives in the inventory, below scale.yml's play vars; extra vars would win.
    inventory.write_text(json.dumps({"all": {"children": {"workers_heavy": {
        "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
        "vars": {"workers_pool": "heavy", "workers_instances": 1},
    }}}}))
    secrets = {name: stack.read_secret(name) for name in stack.secret_kinds}
    extra_vars = workdir / "vars.json"
    fd = os.open(extra_vars, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({
            **{f"vault_{name}": value for name, value in secrets.items()},
            "controlplane_hosts": {name: stack.bind_host for name in stack.ports},
            "controlplane_ports": stack.ports,
            "controlplane_bind_host": stack.bind_host,
            "common_prefix": str(prefix),
            "common_source_dir": str(settings.REPO),
            # The stack's own CA issues the deployed host's certificate (the stack runs with --tls).
            "common_pki_dir": str(stack.tls_dir),
            "common_venv": str(Path(sys.executable).parent.parent),  # exists: used as is
            "common_user": getpass.getuser(),
            "common_service_manager": "supervisor",
            "workers_hostname_prefix": HOSTNAME_PREFIX,
        }, f)
    deployed = Deployment(
        prefix=prefix, inventory=inventory, extra_vars=extra_vars,
        broker_url=broker.url(stack, secrets), flower_url=stack.url("flower"),
        flower_auth=(stack.source["admin_user"], secrets["flower_password"]), flower_verify=stack.verify,
    )
    try:
        yield deployed
    finally:
        try:
            stop(deployed)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        # A deployed worker left running would serve the stack's heavy queue for the rest of the session.
        assert not ansible_pongs(deployed.broker_url), "a deployed worker still answers after the teardown"


def started_by(prefix: Path) -> list[psutil.Process]:
    """Every process the deployment started: supervisord and its programs run in the prefix (their
    `directory`), and so do their children, also once orphaned; plus whatever is still below supervisord."""
    found: dict[int, psutil.Process] = {}
    pidfile = prefix / "supervisor" / "supervisord.pid"
    with contextlib.suppress(OSError, ValueError, psutil.Error):
        supervisord = psutil.Process(int(pidfile.read_text()))
        found |= {p.pid: p for p in (supervisord, *supervisord.children(recursive=True))}
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if Path(process.cwd()).is_relative_to(prefix):
                found[process.pid] = process
    return list(found.values())


def stop(deployment: Deployment) -> None:
    """A warm shutdown of what the deployment started, for STOP_GRACE_S; then SIGKILL to whatever is left.

    The workers' stop timeout is the longest task's (an hour), so a worker with a task, or a supervisord
    that does not answer, would otherwise outlive the test, still consuming the stack's heavy queue.
    """
    with contextlib.suppress(subprocess.TimeoutExpired):
        deployment.supervisorctl("shutdown")
    _, alive = psutil.wait_procs(started_by(deployment.prefix), timeout=STOP_GRACE_S)
    for process in [*alive, *started_by(deployment.prefix)]:
        with contextlib.suppress(psutil.Error):
            process.kill()
    _, alive = psutil.wait_procs(started_by(deployment.prefix), timeout=10)
    assert not alive, f"processes of the deployment outlived SIGKILL: {alive}"


def ansible_pongs(broker_url: str) -> set[str]:
    return {name for name in health.celery_pongs(broker_url, timeout=5.0) if name.startswith(f"{HOSTNAME_PREFIX}-")}


def flower_alive(deployment: Deployment) -> set[str]:
    response = httpx.get(f"{deployment.flower_url}/api/workers", params={"status": "true"},
                         auth=deployment.flower_auth, timeout=30, verify=deployment.flower_verify)
    response.raise_for_status()
    return {name for name, alive in response.json().items() if alive and name.startswith(f"{HOSTNAME_PREFIX}-")}


def wait_for_count(deployment: Deployment, count: int) -> None:
    """Celery's ping and Flower's API both see exactly `count` workers of the deployed pool."""
    expected = {f"{HOSTNAME_PREFIX}-{n}" for n in range(1, count + 1)}
    pongs, alive = set(), set()
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        pongs, alive = ansible_pongs(deployment.broker_url), flower_alive(deployment)
        if {p.split("@")[0] for p in pongs} == expected and {a.split("@")[0] for a in alive} == expected:
            return
        time.sleep(3)
    pytest.fail(f"expected {sorted(expected)}; celery ping saw {sorted(pongs)}, Flower saw alive {sorted(alive)}")


def test_site_deploys_a_heavy_pool_that_joins_the_native_stack(deployment, running_stack):
    deployment.play("site.yml")
    wait_for_count(deployment, 1)
    # The deployed airflow.cfg is the native one apart from the deployment's own paths.
    native = running_stack.stack.airflow_cfg.read_text()
    deployed = (deployment.prefix / "airflow" / "airflow.cfg").read_text()
    parse = settings.configparser.ConfigParser(interpolation=None)
    parse.read_string(native)
    native_settings = {(s, k): v for s in parse.sections() for k, v in parse[s].items()}
    parse = settings.configparser.ConfigParser(interpolation=None)
    parse.read_string(deployed)
    deployed_settings = {(s, k): v for s in parse.sections() for k, v in parse[s].items()}
    assert set(deployed_settings) == set(native_settings)
    paths = [(str(running_stack.stack.home), "<home>"), (str(settings.REPO), "<app>"),
             (str(deployment.prefix / "app"), "<app>"), (str(deployment.prefix), "<home>")]

    def neutral(value: str) -> str:
        for path, token in paths:
            value = value.replace(path, token)
        return value

    differing = {key: (native_settings[key], deployed_settings[key]) for key in native_settings
                 if neutral(native_settings[key]) != neutral(deployed_settings[key])}
    assert differing == {}


def test_scale_takes_the_pool_to_three_and_back_to_one(deployment):
    deployment.play("scale.yml", "-e", "pool=heavy", "-e", "instances=3")
    wait_for_count(deployment, 3)
    deployment.play("scale.yml", "-e", "pool=heavy", "-e", "instances=1")
    wait_for_count(deployment, 1)


def test_a_second_run_changes_nothing(deployment):
    result = deployment.play("site.yml")
    assert recap(result.stdout)["changed"] == 0, result.stdout[-4000:]
    wait_for_count(deployment, 1)
