"""The demo package is not shipped: the image and the hosts leave it out, and nothing they run imports it."""

import ast
import subprocess

import yaml

from stackctl.model import settings

DEMO = "airflow/stackctl/demo"
SHIPPED = ("workers", "services", "dags", "plugins")


def test_the_image_leaves_the_demo_out():
    dockerfile = (settings.REPO / "airflow" / "Dockerfile").read_text()
    assert "COPY --chown=airflow:0 airflow/stackctl/ " in dockerfile  # the context is the repository root
    ignored = [line.strip() for line in (settings.REPO / ".dockerignore").read_text().splitlines()]
    assert DEMO in ignored


def test_the_hosts_code_archive_leaves_the_demo_out(tmp_path):
    tasks = yaml.safe_load((settings.REPO / "ansible" / "roles" / "common" / "tasks" / "code.yml").read_text())
    argv = next(t["ansible.builtin.command"]["argv"] for t in tasks
                if t.get("ansible.builtin.command", {}).get("argv", [None])[0] == "tar")
    assert f"--exclude={DEMO}" in argv
    archive = tmp_path / "code.tar"
    subprocess.run([a.replace("{{ common_code_archive.path }}", str(archive))
                    .replace("{{ common_source_dir }}", str(settings.REPO)) for a in argv], check=True)
    members = subprocess.run(["tar", "--list", f"--file={archive}"], check=True, capture_output=True,
                             text=True).stdout.splitlines()
    assert "airflow/stackctl/cli.py" in members and "workers/hooks.py" in members
    assert not [m for m in members if m.startswith(DEMO)]


def imports_of_the_demo(path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        found += [f"line {node.lineno}: {n}" for n in names if n == "stackctl.demo" or n.startswith("stackctl.demo.")]
    return found


def test_nothing_shipped_imports_the_demo():
    offenders = {
        str(path.relative_to(settings.REPO)): found
        for folder in SHIPPED
        for path in sorted((settings.REPO / folder).rglob("*.py"))
        if (found := imports_of_the_demo(path))
    }
    assert offenders == {}
