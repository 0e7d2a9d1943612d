"""The Debian packages have one owner, stackctl/model/debian.py: airflow/setup.sh installs exactly its
packages and stops exactly its services. setup.sh runs on a copy of the repository's files it reads,
with apt, dpkg, systemd and uv as stubs that log their arguments, as root would on a fresh host.
"""

import os
import shutil
import subprocess

import pytest

from stackctl.model import debian, settings, toolchain

# What setup.sh reads: itself, the owners it runs with python3, and the locks it names.
READ_BY_SETUP = ("airflow/setup.sh", "airflow/stackctl/model/debian.py", "airflow/stackctl/model/toolchain.py",
                 "pyproject.toml")
STUBS = {
    # Nothing is installed yet: every package is queried, and each is missing.
    "dpkg-query": 'echo "${@: -1}" >> "$LOG/queried"; exit 1',
    "apt-get": 'echo "$*" >> "$LOG/apt-get"',
    "systemctl": 'echo "$*" >> "$LOG/systemctl"',
    "service": 'echo "$*" >> "$LOG/service"',
    "id": "exit 0",
    "uv": f'[[ $1 == --version ]] && echo "uv {toolchain.uv_version()}"; exit 0',  # the one setup.sh wants
}


@pytest.fixture
def fresh_host(tmp_path):
    """(run setup.sh, its log folder) on a copy of what it reads, with the system's tools stubbed."""
    repo, bin_dir, log = tmp_path / "repo", tmp_path / "bin", tmp_path / "log"
    for name in READ_BY_SETUP:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(settings.REPO / name, repo / name)
    bin_dir.mkdir()
    log.mkdir()
    for name, body in STUBS.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(log)}

    def run():
        return subprocess.run(["bash", str(repo / "airflow" / "setup.sh")], env=env, capture_output=True, text=True)

    return run, log


def logged(log, name) -> list[str]:
    path = log / name
    return path.read_text().splitlines() if path.exists() else []


def test_setup_checks_and_installs_exactly_the_owners_packages(fresh_host):
    run, log = fresh_host
    result = run()
    assert sorted(logged(log, "queried")) == sorted(debian.SYSTEM_PACKAGES)
    if os.geteuid() != 0:  # it names the packages to install instead
        assert f"sudo apt-get install {' '.join(debian.SYSTEM_PACKAGES)}" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    installed = next(line for line in logged(log, "apt-get") if line.startswith("install"))
    assert sorted(installed.split()[installed.split().index("--no-install-recommends") + 1:]) == sorted(
        debian.SYSTEM_PACKAGES)


def test_setup_stops_exactly_the_owners_services(fresh_host):
    run, log = fresh_host
    if os.geteuid() != 0:
        pytest.skip("setup.sh stops services only as root")
    assert run().returncode == 0
    stopped = {line.split()[1] for line in logged(log, "systemctl") if line.startswith("stop ")}
    assert stopped == set(debian.DEBIAN_SERVICES)
    assert {line.split()[0] for line in logged(log, "service")} == set(debian.DEBIAN_SERVICES) - {"postgresql"}
