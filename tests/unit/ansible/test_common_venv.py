"""The common role's Python environment: every host installs uv at the version pyproject.toml requires."""

from __future__ import annotations

import yaml

from stackctl.model import toolchain

from .conftest import ANSIBLE


def test_every_host_installs_uv_at_the_owners_version(example_site):
    tasks = yaml.safe_load((ANSIBLE / "roles" / "common" / "tasks" / "venv.yml").read_text())
    install = next(inner["ansible.builtin.pip"] for task in tasks for inner in task.get("block", [task])
                   if "ansible.builtin.pip" in inner)
    for play in example_site.host_plays():
        assert example_site.evaluate(play, install["name"]) == f"uv=={toolchain.uv_version()}", play.host
