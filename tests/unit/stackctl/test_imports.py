"""stackctl's packages are layers, and imports flow one way: from what acts down to what describes.

    model    the deployment model: config.yaml, processes, targets, firewall   imports no other layer
    render   every rendered file                                               the model
    native   the native stack's runtime                                        the model, the renderers
    ops      operations on a deployment's data                                 the model, renderers, runtime
    demo     the demo                                                          all of the above
    cli      the command line                                                  everything

`errors` is every layer's. Imports inside functions count: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from stackctl.model import settings

PACKAGE = settings.REPO / "airflow" / "stackctl"
# Each layer and the layers it may import (itself always).
MAY_IMPORT = {
    "model": set(),
    "render": {"model"},
    "native": {"model", "render"},
    "ops": {"model", "render", "native"},
    "demo": {"model", "render", "native", "ops"},
    "cli": {"model", "render", "native", "ops", "demo"},
    "__main__": {"cli"},
}
SHARED = {"errors"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The stackctl modules a file imports, wherever the import statement is."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            candidates = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {candidate for candidate in candidates if candidate in known}
    return found - {name}


def import_graph() -> dict[str, set[str]]:
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: imported_modules(path, set(files)) for name, path in files.items()}


def layer(module: str) -> str:
    return module.split(".")[1] if "." in module else "stackctl"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while (member := stack.pop()) != node:
                group.append(member)
            group.append(node)
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_of_stackctl_imports_itself_back_through_others():
    assert cycles(import_graph()) == []


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for module, imports in sorted(import_graph().items()):
        own = layer(module)
        if own in SHARED or own == "stackctl":
            continue
        allowed = MAY_IMPORT[own] | {own} | SHARED | {"stackctl"}
        wrong += [f"{module} imports {target}" for target in sorted(imports) if layer(target) not in allowed]
    assert wrong == []


def test_every_module_is_in_a_layer():
    layers = {layer(module) for module in import_graph()}
    assert layers <= set(MAY_IMPORT) | SHARED | {"stackctl"}


@pytest.mark.parametrize(("graph", "expected"), [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
])
def test_a_cycle_is_found(graph, expected):
    assert cycles(graph) == expected
