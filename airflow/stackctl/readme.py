"""Tables rendered from the deployment model into the documentation (README.md and docs/*.md).

A rendered table sits between two markers, in whichever page holds it:

    <!-- rendered: ports -->
    | ... the table ... |
    <!-- rendered: end ports -->

`python -m stackctl render readme` rewrites every block, and tests/unit/stackctl/test_readme.py
fails, naming the block and this command, when one differs from a fresh render. Moving a table
to another page is moving its markers. A table has only the columns the model can fill: a fact it
lacks (a health probe, say) goes into the model first, never into a table by hand.

Self-contained: it reads settings, processes, firewall, web_auth and targets, and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import firewall, processes, settings, targets, web_auth

README = settings.REPO / "README.md"
DOCS = settings.REPO / "docs"
RENDER_COMMAND = "PYTHONPATH=airflow .venv/bin/python -m stackctl render readme"
_OPENING = re.compile(r"<!-- rendered: (?!end )(\S+) -->")
_CLOSING = re.compile(r"<!-- rendered: end (\S+) -->")

# Where a listener's Airflow setting names the basic auth it takes (Flower, config.yaml).
FLOWER_AUTH_SETTING = ("celery", "flower_basic_auth")


def start_marker(name: str) -> str:
    return f"<!-- rendered: {name} -->"


def end_marker(name: str) -> str:
    return f"<!-- rendered: end {name} -->"


# --- the ports table ----------------------------------------------------------------------


def _code(names: list[str] | tuple[str, ...]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def reached_by(port: str, model: list[processes.Process]) -> str:
    """Who reaches a port: operators, processes of other host groups, or its own host only."""
    serving = processes.port_groups(model)
    own = firewall.group(serving[port])
    by_group: dict[str, list[str]] = {}
    for process in model:
        if port in process.reaches:
            group = firewall.group(process.group)
            by_group.setdefault("own host" if group == own else group, []).append(process.name)
    if port in processes.local_ports(model):
        clients = by_group.get("own host", [])
        return "own host only" + (f": {', '.join(sorted(clients))}" if clients else "")
    parts = [firewall.OPERATORS] if port in processes.OPERATOR_PORTS else []
    parts += [f"{group}: {', '.join(sorted(names))}" for group, names in sorted(by_group.items())]
    return "; ".join(parts)


def holders(secret: str, listener: processes.Process, source: dict[str, Any], model: list[processes.Process]) -> str:
    """The processes that hold a listener's secret to send it: its clients.

    The listener and the others that check the secret themselves are left out (the FreshPoC
    services share one token),
    and the api-server, which holds the tasks' secret-bearing connections only to serve them to
    tasks, is named as such.
    """
    guarded = {**web_auth.LISTENER_PASSWORDS, **processes.TOKEN_SECRETS}
    names = []
    for process in model:
        checks_it = any(guarded.get(port) == secret for port in process.listens)
        if process is listener or checks_it or secret not in process.secrets:
            continue
        # Held for the tasks' connections alone, not for an Airflow setting of its own.
        for_tasks = (process.connections == processes.TASK_CONNECTIONS
                     and secret not in processes.referenced_secrets(processes.private_settings(source, process)))
        names.append(f"{process.name} (for tasks)" if for_tasks else process.name)
    return ", ".join(sorted(names))


def authentication(port: str, source: dict[str, Any], model: list[processes.Process]) -> str:
    """How a listener authenticates its callers, from the model and config.yaml."""
    listener = next(p for p in model if port in p.listens)
    user = source["admin_user"]

    def held(secret: str) -> str:
        clients = holders(secret, listener, source, model)
        return f"; held by {clients}" if clients else ""

    section, key = FLOWER_AUTH_SETTING
    flower_secrets = sorted(processes.referenced_secrets(source["airflow"][section].get(key, "")))
    if port == "api":
        manager = source["airflow"]["core"]["auth_manager"].rsplit(".", 1)[-1]
        jwt = sorted(processes.referenced_secrets(source["airflow"]["api_auth"]))
        return (f"Airflow users and roles ({manager}): `{user}` with `admin_password`; tasks: a JWT per task, "
                f"signed with {_code(jwt)}")
    if port in web_auth.LISTENER_PASSWORDS:
        secret = web_auth.LISTENER_PASSWORDS[port]
        return f"basic auth: `{user}` with `{secret}` (a bcrypt hash in its web config){held(secret)}"
    if port == "flower" and flower_secrets:
        return f"basic auth: `{user}` with {_code(flower_secrets)} (`[{section}] {key}`){held(flower_secrets[0])}"
    if port in processes.TOKEN_SECRETS:
        secret = processes.TOKEN_SECRETS[port]
        return f"bearer token `{secret}`{held(secret)}"
    if listener.group in (processes.DATABASE, processes.BROKER) and listener.secrets:
        if len(listener.secrets) == 1:
            return f"password `{listener.secrets[0]}`{held(listener.secrets[0])}"
        return f"a password per role: {_code(sorted(listener.secrets))}"
    if port in processes.local_ports(model):
        return "none: loopback, own host only"
    return "none: no secret guards it"


def ports(source: dict[str, Any]) -> str:
    """Every port of config.yaml: its process, default, protocol, who reaches it, how it authenticates.

    Who reaches a port is the multi-host model (ansible's): natively every listener is on loopback.
    """
    model = processes.model(source, targets.ansible_layout(source))
    rows = ["| component | port | default | protocol | reached by | authentication |", "|---|---|---|---|---|---|"]
    for process in model:
        for port in process.listens:
            protocol = "udp" if port in firewall.UDP_PORTS else "tcp"
            rows.append(f"| {process.name} | `{port}` | {source['ports'][port]} | {protocol} "
                        f"| {reached_by(port, model)} | {authentication(port, source, model)} |")
    return "\n".join(rows) + "\n"


# Every rendered table: its name in the markers, and what renders it.
TABLES: dict[str, Callable[[dict[str, Any]], str]] = {
    "ports": ports,
    "firewall": firewall.markdown,
}


# --- the blocks in the pages --------------------------------------------------------------


def documents() -> list[Path]:
    """The pages that may hold rendered blocks."""
    return [README, *sorted(DOCS.glob("*.md"))]


def block_names(text: str) -> list[str]:
    """The names of the blocks in a page; ValueError on an unknown name or a marker without its pair."""
    opened, closed = _OPENING.findall(text), _CLOSING.findall(text)
    if opened != closed:
        raise ValueError(f"rendered blocks opened {opened} but closed {closed}")
    unknown = sorted(set(opened) - set(TABLES))
    if unknown:
        raise ValueError(f"unknown rendered blocks {unknown}; known: {sorted(TABLES)}")
    return opened


def _block(name: str) -> re.Pattern[str]:
    return re.compile(re.escape(start_marker(name)) + r"\n.*?" + re.escape(end_marker(name)), re.DOTALL)


def current(text: str, name: str) -> str:
    """A block's table as the page holds it."""
    match = _block(name).search(text)
    if not match:
        raise ValueError(f"no rendered block {name}")
    return match.group(0)[len(start_marker(name)) + 1:-len(end_marker(name))]


def render_text(source: dict[str, Any], text: str) -> str:
    """The page with every block it holds rendered afresh."""
    for name in block_names(text):
        table = TABLES[name](source)
        text = _block(name).sub(lambda _, name=name, table=table: f"{start_marker(name)}\n{table}{end_marker(name)}",
                                text)
    return text


def placements(pages: list[Path] | None = None) -> dict[str, Path]:
    """Which page holds each table; ValueError unless every table is in exactly one page, once."""
    found: dict[str, list[Path]] = {}
    for page in pages if pages is not None else documents():
        for name in block_names(page.read_text()):
            found.setdefault(name, []).append(page)
    problems = [f"{name} is in {len(found.get(name, []))} places: {[str(p) for p in found.get(name, [])]}"
                for name in TABLES if len(found.get(name, [])) != 1]
    if problems:
        raise ValueError("each rendered table must be in exactly one page: " + "; ".join(problems))
    return {name: pages[0] for name, pages in found.items()}


def drifted(source: dict[str, Any], pages: list[Path] | None = None) -> list[tuple[str, Path]]:
    """The blocks whose table differs from a fresh render, with the page that holds each."""
    stale = []
    for name, page in placements(pages).items():
        if current(page.read_text(), name) != TABLES[name](source):
            stale.append((name, page))
    return stale


def write() -> list[Path]:
    """Render every block into the page that holds it; the pages that hold blocks."""
    source = settings.load_source()
    pages = sorted(set(placements().values()))
    for page in pages:
        text = page.read_text()
        fresh = render_text(source, text)
        if fresh != text:
            page.write_text(fresh)
    return pages
