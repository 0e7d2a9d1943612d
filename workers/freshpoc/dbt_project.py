"""Parse a dbt project's files into a lineage graph: models, seeds and sources, and ref()/source() edges.

Input is the project's text files by relative path. Output is JSON-ready:

    {"project": name,
     "nodes": [{"id": "model.<project>.<name>", "type": "model|seed|source", "name", "path",
                "description", "columns": [...]}],
     "edges": [{"from": parent_id, "to": child_id}],     # data flows from -> to
     "warnings": [...]}

Like dbt, refs are read from the Jinja blocks of each model's SQL (Jinja comments ignored).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import yaml

from workers.exceptions import DataError

_JINJA_COMMENT = re.compile(r"\{#.*?#\}", re.DOTALL)
_JINJA_EXPR = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.DOTALL)
_CALL = re.compile(r"\b(ref|source)\s*\(([^()]*)\)")
_STRING = re.compile(r"""(['"])([^'"]+)\1""")


def _project_config(files: dict[str, str]) -> dict:
    if "dbt_project.yml" not in files:
        raise DataError("not a dbt project: dbt_project.yml is missing at the repository root")
    try:
        config = yaml.safe_load(files["dbt_project.yml"]) or {}
    except yaml.YAMLError as exc:
        raise DataError(f"dbt_project.yml is not valid YAML: {exc}") from None
    if not isinstance(config, dict) or not isinstance(config.get("name"), str):
        raise DataError("dbt_project.yml has no project name")
    return config


def _under(path: str, roots: list[str]) -> bool:
    return any(PurePosixPath(path).is_relative_to(root) for root in roots)


def references(sql: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The ref() and source() calls of one model's SQL: (ref names, (source, table) pairs)."""
    refs, sources = [], []
    for match in _JINJA_EXPR.finditer(_JINJA_COMMENT.sub("", sql)):
        for call, args in _CALL.findall(match.group(1) or match.group(2)):
            literals = [value for _, value in _STRING.findall(args)]
            if call == "ref" and literals:
                refs.append(literals[-1])  # ref('package', 'model') names the model last
            elif call == "source" and len(literals) >= 2:
                sources.append((literals[0], literals[1]))
    return refs, sources


def _yaml_documents(files: dict[str, str], roots: list[str]) -> list[tuple[str, dict]]:
    documents = []
    for path in sorted(files):
        if path.endswith((".yml", ".yaml")) and _under(path, roots):
            try:
                doc = yaml.safe_load(files[path])
            except yaml.YAMLError as exc:
                raise DataError(f"{path} is not valid YAML: {exc}") from None
            if isinstance(doc, dict):
                documents.append((path, doc))
    return documents


def parse_project(files: dict[str, str]) -> dict:
    config = _project_config(files)
    project = config["name"]
    model_roots = list(config.get("model-paths") or ["models"])
    seed_roots = list(config.get("seed-paths") or ["seeds"])
    nodes: dict[str, dict] = {}
    by_name: dict[str, str] = {}
    warnings: list[str] = []

    def add(node_type: str, name: str, path: str, description: str = "", columns=()) -> str:
        node_id = f"{node_type}.{project}.{name}"
        if node_type != "source" and name in by_name:
            raise DataError(f"two nodes are named {name!r}: {nodes[by_name[name]]['path']} and {path}")
        nodes[node_id] = {"id": node_id, "type": node_type, "name": name, "path": path,
                          "description": description, "columns": list(columns)}
        if node_type != "source":
            by_name[name] = node_id
        return node_id

    models = {path: files[path] for path in sorted(files) if path.endswith(".sql") and _under(path, model_roots)}
    for path in models:
        add("model", PurePosixPath(path).stem, path)
    for path in sorted(files):
        if path.endswith(".csv") and _under(path, seed_roots):
            add("seed", PurePosixPath(path).stem, path)

    documents = _yaml_documents(files, model_roots + seed_roots)
    for path, doc in documents:
        for source in doc.get("sources") or []:
            for table in source.get("tables") or []:
                add("source", f"{source['name']}.{table['name']}", path, table.get("description", ""))
    for path, doc in documents:
        for entry in (doc.get("models") or []) + (doc.get("seeds") or []):
            node_id = by_name.get(entry.get("name"))
            if node_id is None:
                warnings.append(f"{path} describes {entry.get('name')!r}, which is not in the project")
                continue
            nodes[node_id]["description"] = entry.get("description", "")
            nodes[node_id]["columns"] = [c["name"] for c in entry.get("columns") or [] if "name" in c]

    edges = set()
    for path, sql in models.items():
        child = by_name[PurePosixPath(path).stem]
        refs, sources = references(sql)
        for name in refs:
            if name not in by_name:
                raise DataError(f"{path} refers to {name!r}, which is no model or seed of the project")
            edges.add((by_name[name], child))
        for source_name, table in sources:
            source_id = f"source.{project}.{source_name}.{table}"
            if source_id not in nodes:
                raise DataError(f"{path} reads source('{source_name}', '{table}'), which no sources file declares")
            edges.add((source_id, child))
    return {
        "project": project,
        "nodes": [nodes[node_id] for node_id in sorted(nodes)],
        "edges": [{"from": parent, "to": child} for parent, child in sorted(edges)],
        "warnings": warnings,
    }
