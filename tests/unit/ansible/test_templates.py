"""Every template of site.yml renders against the shipped example inventory, with no undefined variable.

Ansible's own inventory and variable managers load inventories/production/ and the playbook's
group_vars (the rendered airflow.yml among them); each role's templates are rendered with
Ansible's templar for every host of every play that applies the role, once per item of the
task that uses them. Nothing connects to a host: facts are not needed, because the roles
read none.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from ansible.vars.manager import VariableManager

from stackctl import settings

ANSIBLE = settings.REPO / "ansible"
EXAMPLE_INVENTORY = ANSIBLE / "inventories" / "production"


def vault_values() -> dict[str, str]:
    """vault.example.yml names every vault variable; the test gives each a placeholder value."""
    example = yaml.safe_load((EXAMPLE_INVENTORY / "vault.example.yml").read_text())
    return {name: f"test-{name}" for name in example}


def role_template_tasks(role: str) -> list[tuple[str, dict]]:
    """(template file, task) for every ansible.builtin.template task of a role."""
    found = []
    for tasks_file in sorted((ANSIBLE / "roles" / role / "tasks").glob("*.yml")):
        for task in yaml.safe_load(tasks_file.read_text()) or []:
            for inner in task.get("block", [task]):
                module = inner.get("ansible.builtin.template")
                if module:
                    found.append((module["src"], inner))
    return found


def role_vars(loader: DataLoader, role: str) -> dict:
    merged: dict = {}
    for kind in ("defaults", "vars"):
        path = ANSIBLE / "roles" / role / kind / "main.yml"
        if path.exists():
            # Ansible's own loader: its templates are trusted (Ansible 2.19 renders no others).
            merged.update(loader.load_from_file(str(path), trusted_as_template=True) or {})
    return merged


def plays() -> list[tuple[str, list[str]]]:
    """(hosts pattern, roles with their dependencies) of each play of site.yml."""
    result = []
    for play in yaml.safe_load((ANSIBLE / "site.yml").read_text()):
        roles = []
        for entry in play["roles"]:
            name = entry["role"] if isinstance(entry, dict) else entry
            meta = yaml.safe_load((ANSIBLE / "roles" / name / "meta" / "main.yml").read_text())
            roles += [dep["role"] for dep in meta.get("dependencies") or []] + [name]
        result.append((play["hosts"], roles))
    return result


def render_site(inventory_dir: Path) -> list[str]:
    """Render every template of site.yml; return the rendered files' names (host:role/template[item])."""
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(inventory_dir / "hosts.yml")])
    variables = VariableManager(loader=loader, inventory=inventory)
    rendered = []
    for pattern, roles in plays():
        hosts = inventory.get_hosts(pattern)
        assert hosts, f"the example inventory has no host for the play on {pattern!r}"
        for host in hosts:
            host_vars = variables.get_vars(host=host)
            # The playbook's group_vars (the rendered airflow.yml) sit beside site.yml.
            for path in sorted((ANSIBLE / "group_vars").rglob("*.yml")):
                group = path.parent.name if path.parent.parent.name == "group_vars" else path.stem
                if group == "all" or group in host_vars["group_names"]:
                    host_vars.update(loader.load_from_file(str(path), trusted_as_template=True))
            host_vars.update(vault_values())
            # Role defaults and vars are visible play-wide (a dependency's defaults included).
            play_vars = {k: v for role in roles for k, v in role_vars(loader, role).items()}
            for role in roles:
                context = {**play_vars, **host_vars, "ansible_managed": "managed", "playbook_dir": str(ANSIBLE)}
                templar = Templar(loader=loader, variables=context)
                for src, task in role_template_tasks(role):
                    loop_var = task.get("loop_control", {}).get("loop_var", "item")
                    items = templar.template(trust_as_template(task["loop"])) if "loop" in task else [None]
                    source = trust_as_template((ANSIBLE / "roles" / role / "templates" / src).read_text())
                    for item in items:
                        item_templar = Templar(loader=loader, variables={**context, loop_var: copy.deepcopy(item)})
                        item_templar.template(source)
                        label = item["name"] if isinstance(item, dict) else item
                        rendered.append(f"{host.name}:{role}/{src}[{label}]")
    return rendered


def test_every_template_renders_against_the_example_inventory():
    rendered = render_site(EXAMPLE_INVENTORY)
    names = {name.split(":", 1)[1].split("[")[0] for name in rendered}
    assert {"controlplane/airflow-component.service.j2", "workers/airflow-worker@.service.j2",
            "common/process.env.j2", "common/airflow.cfg.j2"} <= names
    # The control plane renders one unit per model process, Flower and the reference services included.
    control_plane_units = {name for name in rendered if "airflow-component.service.j2" in name}
    assert any("[flower]" in name for name in control_plane_units)
    assert any("[freshpoc-writer]" in name for name in control_plane_units)


@pytest.mark.parametrize("group", ["database", "broker", "monitoring", "controlplane"])
def test_a_missing_host_group_fails_the_render(group, tmp_path):
    inventory_dir = tmp_path / "production"
    shutil.copytree(EXAMPLE_INVENTORY, inventory_dir)
    hosts_file = inventory_dir / "hosts.yml"
    inventory = yaml.safe_load(hosts_file.read_text())
    del inventory["all"]["children"][group]
    hosts_file.write_text(yaml.safe_dump(inventory))
    with pytest.raises(Exception) as failure:  # noqa: B017 - AssertionError or Ansible's undefined-variable error
        render_site(inventory_dir)
    assert group in str(failure.value) or "undefined" in str(failure.value).lower()
