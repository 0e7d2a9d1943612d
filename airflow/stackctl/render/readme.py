"""The README's rendered tables: the firewall between hosts (model/firewall.py).

`python -m stackctl render readme` rewrites each between its markers; a unit test fails when one drifts.
"""

from __future__ import annotations

import re
from itertools import groupby
from pathlib import Path
from typing import Any

from stackctl.model import settings
from stackctl.model.firewall import Flow, flows

README = settings.REPO / "README.md"
TABLE_START, TABLE_END = "<!-- firewall table: start -->", "<!-- firewall table: end -->"


def firewall_markdown(source: dict[str, Any]) -> str:
    ports = source["ports"]

    def spelled(flow: Flow) -> str:
        if flow.port not in ports:
            return "443 (S3)"
        return f"{flow.port} {ports[flow.port]}" + ("/udp" if flow.protocol == "udp" else "")

    rows = ["| from | to | ports |", "|---|---|---|"]
    for (src, dst), same in groupby(flows(source), key=lambda f: (f.source, f.destination)):
        rows.append(f"| {src} | {dst} | {', '.join(spelled(flow) for flow in same)} |")
    return "\n".join(rows) + "\n"


def render_readme(source: dict[str, Any], text: str) -> str:
    pattern = re.compile(re.escape(TABLE_START) + r"\n.*?" + re.escape(TABLE_END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"README.md has no {TABLE_START} ... {TABLE_END} block")
    return pattern.sub(lambda _: f"{TABLE_START}\n{firewall_markdown(source)}{TABLE_END}", text)


def write() -> list[Path]:
    README.write_text(render_readme(settings.load_source(), README.read_text()))
    return [README]
