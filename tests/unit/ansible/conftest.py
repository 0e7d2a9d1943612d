"""site.yml's templates as Ansible renders them on each host of an inventory, without a host.

Ansible's own inventory and variable managers load the inventory and the playbook's group_vars
(the rendered airflow.yml among them), with hostvars as a play has them (Prometheus's pool
sizes add up the workers of every host); each role's templates are rendered with Ansible's templar
for every host of every play that applies the role, once per item of the task that uses them.
The tasks are followed from each role's tasks/main.yml through include_tasks and include_role
(with the include's vars), so a template shared through common is rendered with the programs
each role hands it. Nothing connects to a host: facts are not needed, because the roles read none.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import filter_loader
from ansible.template import Templar, trust_as_template
from ansible.vars.hostvars import HostVars
from ansible.vars.manager import VariableManager

from stackctl.model import settings

ANSIBLE = settings.REPO / "ansible"
EXAMPLE_INVENTORY = ANSIBLE / "inventories" / "production"
# The playbooks' own filters (ansible.cfg's filter_plugins), as ansible-playbook loads them.
filter_loader.add_directory(str(ANSIBLE / "filter_plugins"))


@dataclass(frozen=True)
class TemplateTask:
    role: str  # the role whose templates/ folder holds the task's src
    task: dict
    include_vars: dict  # the vars of the include_role that runs it


@dataclass(frozen=True)
class HostPlay:
    """A host of a play: the roles the play applies to it and the variables they see."""

    host: str
    roles: list[str]
    variables: dict


@dataclass(frozen=True)
class Rendered:
    host: str
    role: str
    src: str
    label: str
    text: str

    @property
    def name(self) -> str:
        return f"{self.role}/{self.src}"


def vault_values() -> dict[str, str]:
    """vault.example.yml names every vault variable; the tests give each a placeholder value."""
    example = yaml.safe_load((EXAMPLE_INVENTORY / "vault.example.yml").read_text())
    return {name: f"test-{name}" for name in example}


def template_tasks(loader: DataLoader, role: str, tasks_file: str = "main.yml",
                   include_vars: dict | None = None) -> list[TemplateTask]:
    """Every ansible.builtin.template task that a role's tasks file runs, includes followed."""
    # Ansible's own loader: its templates are trusted (Ansible 2.19 renders no others).
    tasks = loader.load_from_file(str(ANSIBLE / "roles" / role / "tasks" / tasks_file), trusted_as_template=True)
    found = []
    for task in tasks or []:
        for inner in task.get("block", [task]):
            if "ansible.builtin.template" in inner:
                found.append(TemplateTask(role, inner, include_vars or {}))
            elif "ansible.builtin.include_tasks" in inner:
                found += template_tasks(loader, role, inner["ansible.builtin.include_tasks"], include_vars)
            elif "ansible.builtin.include_role" in inner:
                spec = inner["ansible.builtin.include_role"]
                found += template_tasks(loader, spec["name"], spec.get("tasks_from", "main.yml"),
                                        {**(include_vars or {}), **inner.get("vars", {})})
    return found


def role_vars(loader: DataLoader, role: str) -> dict:
    merged: dict = {}
    for kind in ("defaults", "vars"):
        path = ANSIBLE / "roles" / role / kind / "main.yml"
        if path.exists():
            merged.update(loader.load_from_file(str(path), trusted_as_template=True) or {})
    return merged


def prerequisites(role: str) -> list[str]:
    """The roles a role runs before its own tasks: its meta dependencies, and the roles its tasks
    import statically (controlplane imports common)."""
    meta = yaml.safe_load((ANSIBLE / "roles" / role / "meta" / "main.yml").read_text())
    tasks = yaml.safe_load((ANSIBLE / "roles" / role / "tasks" / "main.yml").read_text())
    return [dep["role"] for dep in meta.get("dependencies") or []] + [
        task["ansible.builtin.import_role"]["name"] for task in tasks if "ansible.builtin.import_role" in task]


def plays() -> list[tuple[str, list[str]]]:
    """(hosts pattern, roles with their prerequisites) of each play of site.yml that applies roles
    (the pools play runs tasks only, which render no template)."""
    result = []
    for play in yaml.safe_load((ANSIBLE / "site.yml").read_text()):
        if "roles" not in play:
            continue
        roles = []
        for entry in play["roles"]:
            name = entry["role"] if isinstance(entry, dict) else entry
            roles += [*prerequisites(name), name]
        result.append((play["hosts"], roles))
    return result


class Site:
    """site.yml over one inventory folder (hosts.yml and its group_vars)."""

    def __init__(self, inventory_dir: Path):
        self.loader = DataLoader()
        # The playbook's folder: its group_vars (the rendered airflow.yml) sit beside site.yml.
        self.loader.set_basedir(str(ANSIBLE))
        self.inventory = InventoryManager(loader=self.loader, sources=[str(inventory_dir / "hosts.yml")])
        self.variables = VariableManager(loader=self.loader, inventory=self.inventory)
        HostVars(inventory=self.inventory, variable_manager=self.variables, loader=self.loader)  # registers itself

    def pool_instances(self) -> dict[str, int]:
        """common_pool_instances as common's pool_sizes.yml reads it back after site.yml: each pool's
        workers_instances summed over its hosts."""
        totals = {}
        for pool in settings.load_source()["worker_pools"]:
            hosts = self.inventory.get_hosts(f"workers_{pool}")
            totals[pool] = sum(int(self.evaluate_for(host, "{{ workers_instances }}")) for host in hosts)
        return totals

    def evaluate_for(self, host: Any, expression: str) -> Any:
        variables = {**role_vars(self.loader, "workers"), **self.variables.get_vars(host=host)}
        return Templar(loader=self.loader, variables=variables).template(trust_as_template(expression))

    def host_plays(self) -> list[HostPlay]:
        result = []
        pool_instances = self.pool_instances()
        for pattern, roles in plays():
            hosts = self.inventory.get_hosts(pattern)
            assert hosts, f"the example inventory has no host for the play on {pattern!r}"
            for host in hosts:
                host_vars = {**self.variables.get_vars(host=host), **vault_values()}
                # Role defaults and vars are visible play-wide (a dependency's defaults included).
                play_vars = {k: v for role in roles for k, v in role_vars(self.loader, role).items()}
                variables = {**play_vars, **host_vars, "ansible_managed": "managed", "playbook_dir": str(ANSIBLE),
                             "common_pool_instances": pool_instances}
                result.append(HostPlay(host.name, roles, variables))
        return result

    def evaluate(self, host_play: HostPlay, expression: str, **extra: Any) -> Any:
        templar = Templar(loader=self.loader, variables={**host_play.variables, **extra})
        return templar.template(trust_as_template(expression))

    def render(self) -> list[Rendered]:
        rendered = []
        for host_play in self.host_plays():
            for role in host_play.roles:
                for found in template_tasks(self.loader, role):
                    rendered += self.render_task(host_play, found)
        return rendered

    def render_task(self, host_play: HostPlay, found: TemplateTask) -> list[Rendered]:
        context = {**host_play.variables, **found.include_vars}
        task, module = found.task, found.task["ansible.builtin.template"]
        loop_var = task.get("loop_control", {}).get("loop_var", "item")
        items = Templar(loader=self.loader, variables=context).template(task["loop"]) if "loop" in task else [None]
        result = []
        for item in items:
            templar = Templar(loader=self.loader, variables={**context, loop_var: copy.deepcopy(item)})
            src = templar.template(module["src"])
            source = trust_as_template((ANSIBLE / "roles" / found.role / "templates" / src).read_text())
            label = item.get("name", item.get("path")) if isinstance(item, dict) else item
            result.append(Rendered(host_play.host, found.role, src, str(label), templar.template(source)))
        return result


@pytest.fixture(scope="session")
def site_of() -> type[Site]:
    """Site, for a test's own inventory folder."""
    return Site


@pytest.fixture(scope="session")
def example_inventory() -> Path:
    return EXAMPLE_INVENTORY


@pytest.fixture(scope="session")
def example_site() -> Site:
    return Site(EXAMPLE_INVENTORY)


@pytest.fixture(scope="session")
def example_renders(example_site) -> list[Rendered]:
    return example_site.render()
