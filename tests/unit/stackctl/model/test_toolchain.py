"""uv's version has one owner, pyproject.toml's [tool.uv] required-version: setup.sh and the image read it
through toolchain.py, ansible gets it rendered (the hosts' install: tests/unit/ansible/test_templates.py),
uv itself refuses any other, and no other file writes the version.
"""

import re
import shutil
import subprocess
import sys

import pytest

from stackctl.model import settings, toolchain
from tests.secret_scan import tracked_files

SETUP_SH = settings.REPO / "airflow" / "setup.sh"
DOCKERFILE = settings.REPO / "airflow" / "Dockerfile"
# The owner, and the ansible variables rendered from it (a unit test keeps that render fresh).
WRITTEN_IN = {"pyproject.toml", "ansible/group_vars/all/airflow.yml"}


def test_the_owner_pins_one_version():
    assert re.fullmatch(r"\d+\.\d+\.\d+", toolchain.uv_version())


def test_a_range_is_refused(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.uv]\nrequired-version = ">=0.13"\n')
    with pytest.raises(ValueError, match="must pin one version"):
        toolchain.uv_version(pyproject)


def test_setup_sh_installs_the_owners_version():
    assignment = next(line for line in SETUP_SH.read_text().splitlines() if line.startswith("UV_VERSION="))
    shown = subprocess.run(["bash", "-c", f'{assignment} && echo "$UV_VERSION"'], cwd=settings.REPO,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert shown == toolchain.uv_version()
    assert 'pip install --quiet "uv==$UV_VERSION"' in SETUP_SH.read_text()


def test_the_image_installs_the_owners_version(tmp_path):
    """The Dockerfile's uv-version stage, run here with its / as tmp_path."""
    text = DOCKERFILE.read_text()
    stage = text.split("FROM python:3.11-slim-bookworm AS uv-version\n", 1)[1].split("\nFROM ", 1)[0]
    for source, destination in re.findall(r"^COPY (\S+) (\S+)$", stage, re.MULTILINE):
        (tmp_path / destination.lstrip("/")).mkdir(parents=True, exist_ok=True)
        shutil.copy(settings.REPO / source, tmp_path / destination.lstrip("/"))
    command = re.search(r"^RUN python (\S+) > (\S+)$", stage, re.MULTILINE)
    output = tmp_path / command.group(2).lstrip("/")
    with output.open("w") as f:
        subprocess.run([sys.executable, tmp_path / command.group(1).lstrip("/")], stdout=f, check=True)
    assert output.read_text().strip() == toolchain.uv_version()
    assert f"COPY --from=uv-version {command.group(2)} /tmp/uv-version" in text
    assert 'pip install --no-cache-dir "uv==$(cat /tmp/uv-version)"' in text


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed (airflow/setup.sh installs it)")
def test_uv_refuses_to_run_at_another_version(tmp_path):
    pyproject = (settings.REPO / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(pyproject.replace(f'"=={toolchain.uv_version()}"', '"==0.0.1"'))
    refused = subprocess.run(["uv", "lock", "--check", "--offline"], cwd=tmp_path, capture_output=True, text=True)
    assert refused.returncode != 0 and "Required uv version `==0.0.1`" in refused.stderr


def test_no_other_file_writes_the_version():
    version = toolchain.uv_version()
    written = {str(path.relative_to(settings.REPO)) for path in tracked_files(settings.REPO)
               if not path.name.endswith(".lock") and version in path.read_text(errors="replace")}
    assert written == WRITTEN_IN, "read uv's version from pyproject.toml (airflow/stackctl/model/toolchain.py)"
