"""The queries a generated dashboard runs, with Grafana's variables replaced by concrete values.

Tests use this to check every panel against Prometheus (syntax offline with promtool, data on the
live stack) and every log panel against the labels Alloy attaches.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# What Grafana substitutes for its built-in and our template variables when "All" is selected.
SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__auto": "1m",
    "$__range": "1h",
    "$search": "",
}
TEMPLATE_VARIABLE = re.compile(r"\$(\w+)")


def substitute(expr: str, variables: dict[str, str]) -> str:
    for name, value in SUBSTITUTIONS.items():
        expr = expr.replace(name, value)
    return TEMPLATE_VARIABLE.sub(lambda m: variables.get(m.group(1), m.group(0)), expr)


def panel_queries(dashboard: dict, datasource_type: str) -> Iterator[tuple[str, str]]:
    """(panel title, query) for each target on the given kind of data source, variables at "All"."""
    variables = {v["name"]: v.get("allValue", "") for v in dashboard.get("templating", {}).get("list", [])}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            if target["datasource"]["type"] == datasource_type:
                yield panel["title"], substitute(target["expr"], variables)


def variable_queries(dashboard: dict, datasource_type: str) -> Iterator[tuple[str, str]]:
    """(variable name, metric or selector, label) of each label_values() variable."""
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query" and variable["datasource"]["type"] == datasource_type:
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"])
            yield variable["name"], match.group(1), match.group(2)
