"""ansible/: the playbooks parse, the tree is clean under `ansible-lint --profile production`, and
scale.yml refuses a bad request before touching a host."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stackctl.model import settings

ANSIBLE = settings.REPO / "ansible"
BIN = Path(sys.executable).parent


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    return subprocess.run(list(args), cwd=ANSIBLE, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("playbook", ["site.yml", "scale.yml"])
def test_syntax_check(playbook):
    result = run(str(BIN / "ansible-playbook"), "--syntax-check", "-e", "pool=heavy", "-e", "instances=2", playbook)
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_production_profile():
    result = run(str(BIN / "ansible-lint"), "--offline", "--profile", "production", "--nocolor")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]


@pytest.mark.parametrize(("extra", "message"), [
    ([], "scale.yml needs -e pool="),
    (["-e", "pool=medium", "-e", "instances=2"], "scale.yml needs -e pool=<light|heavy>"),
    (["-e", "pool=heavy", "-e", "instances=three"], "scale.yml needs -e pool="),
])
def test_scale_refuses_a_bad_request(extra, message, tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text('{"all": {"children": {"workers_heavy": {"hosts": {"localhost": '
                         f'{{"ansible_connection": "local", "ansible_python_interpreter": "{sys.executable}"}}}}}}}}}}')
    result = run(str(BIN / "ansible-playbook"), "-i", str(inventory), "scale.yml", *extra)
    assert result.returncode != 0
    assert message in result.stdout
    assert "Resize a worker pool" not in result.stdout  # stopped before any host was touched


def test_the_filter_plugins_load_as_ansible_playbook_loads_them(tmp_path):
    """ansible-playbook imports ansible/filter_plugins/ with none of the repository on sys.path: each
    plugin finds stackctl, and what stackctl imports, itself (the test process's own path does not count)."""
    for plugin in sorted((settings.REPO / "ansible" / "filter_plugins").glob("*.py")):
        load = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('plugin', sys.argv[1]); "
                "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
                "print(sorted(module.FilterModule().filters()))")
        result = subprocess.run([sys.executable, "-c", load, str(plugin)], cwd=tmp_path, capture_output=True,
                                text=True, timeout=60, env={"PATH": os.environ["PATH"]})
        assert result.returncode == 0, f"{plugin.name}: {result.stderr[-2000:]}"
