"""Tables rendered from the deployment model into the documentation (README.md and docs/*.md).

A rendered table sits between two markers, in whichever page holds it:

    <!-- rendered: ports -->
    | ... the table ... |
    <!-- rendered: end ports -->

`python -m stackctl render readme` rewrites every block, and tests/unit/stackctl/render/test_readme.py
fails, naming the block and this command, when one differs from a fresh render. Moving a table
to another page is moving its markers. A table has only the columns the model can fill: a fact it
lacks goes into the model first, never into a table by hand.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import groupby
from pathlib import Path
from typing import Any

from stackctl.model import firewall, processes, redis_users, settings
from stackctl.model.control_plane import API_HEALTH_COMPONENTS, TASK_CONNECTIONS
from stackctl.model.firewall import Flow
from stackctl.model.listeners import BASIC, BEARER, CREDENTIALS, LOGIN, PASSWORD, WEB_CONFIG
from stackctl.model.process import AIRFLOW_JOB, CELERY, HTTP, POSTGRES, REDIS, STORAGE, Phase, Process
from stackctl.model.secrets import deployed_secrets, private_settings, referenced_secrets
from stackctl.model.target import ANSIBLE, COMPOSE, NATIVE

README = settings.REPO / "README.md"
DOCS = settings.REPO / "docs"
RENDER_COMMAND = "PYTHONPATH=airflow .venv/bin/python -m stackctl render readme"
_OPENING = re.compile(r"<!-- rendered: (?!end )(\S+) -->")
_CLOSING = re.compile(r"<!-- rendered: end (\S+) -->")


def start_marker(name: str) -> str:
    return f"<!-- rendered: {name} -->"


def end_marker(name: str) -> str:
    return f"<!-- rendered: end {name} -->"


def _code(names: list[str] | tuple[str, ...]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def multi_host(source: dict[str, Any]) -> list[Process]:
    """Who reaches what is read off the deployment of several hosts (ansible's): natively every
    listener is on loopback, in compose on one Docker network."""
    return processes.of_kind(source, ANSIBLE, deployed_secrets(source))


def compose_only(source: dict[str, Any]) -> list[Process]:
    ansible = {p.name for p in multi_host(source)}
    return [p for p in processes.of_kind(source, COMPOSE, deployed_secrets(source)) if p.name not in ansible]


# --- the ports table ----------------------------------------------------------------------


def reached_by(port: str, model: list[Process]) -> str:
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
    parts = [firewall.OPERATORS] if port in processes.PUBLIC_PORTS else []
    parts += [f"{group}: {', '.join(sorted(names))}" for group, names in sorted(by_group.items())]
    return "; ".join(parts)


def holders(secret: str, listener: Process, source: dict[str, Any], model: list[Process]) -> str:
    """The processes that hold a listener's secret to send it: its clients.

    The listener and the others that check the secret themselves are left out (the FreshPoC
    services share one token), and the api-server, which holds the tasks' secret-bearing
    connections only to serve them to tasks, is named as such.
    """
    names = []
    for process in model:
        checks_it = any(CREDENTIALS.get(port) and CREDENTIALS[port].secret == secret for port in process.listens)
        if process is listener or checks_it or secret not in process.secrets:
            continue
        # Held for the tasks' connections alone, not for an Airflow setting of its own.
        for_tasks = (process.connections == TASK_CONNECTIONS
                     and secret not in referenced_secrets(private_settings(source, process.secrets)))
        names.append(f"{process.name} (for tasks)" if for_tasks else process.name)
    return ", ".join(sorted(names))


def authentication(port: str, source: dict[str, Any], model: list[Process]) -> str:
    """How a listener authenticates its callers (model/listeners.py)."""
    listener = next(p for p in model if port in p.listens)
    credential, user = CREDENTIALS.get(port), source["admin_user"]

    def held(secret: str) -> str:
        clients = holders(secret, listener, source, model)
        return f"; held by {clients}" if clients else ""

    if credential is None:
        return "none: loopback, own host only" if port in processes.local_ports(model) else "none: no secret guards it"
    if credential.scheme == LOGIN and port == "api":
        manager = source["airflow"]["core"]["auth_manager"].rsplit(".", 1)[-1]
        jwt = sorted(referenced_secrets(source["airflow"]["api_auth"]))
        return (f"Airflow users and roles ({manager}): `{user}` with `{credential.secret}`; tasks: a JWT per "
                f"task, signed with {_code(jwt)}")
    if credential.scheme == LOGIN:
        return f"login: `{user}` with `{credential.secret}`{held(credential.secret)}"
    if credential.scheme == WEB_CONFIG:
        return (f"basic auth: `{user}` with `{credential.secret}` (a bcrypt hash in its web config)"
                f"{held(credential.secret)}")
    if credential.scheme == BASIC:
        return f"basic auth: `{user}` with `{credential.secret}`{held(credential.secret)}"
    if credential.scheme == BEARER:
        return f"bearer token `{credential.secret}`{held(credential.secret)}"
    if credential.scheme == PASSWORD and credential.secret:
        return f"password `{credential.secret}`{held(credential.secret)}"
    return f"a password per role: {_code(sorted(listener.secrets))}"


def ports(source: dict[str, Any]) -> str:
    """Every port of config.yaml: its process, default, protocol, who reaches it, how it authenticates."""
    rows = ["| component | port | default | protocol | reached by | authentication |", "|---|---|---|---|---|---|"]
    model = multi_host(source)
    for process in model:
        for port in process.listens:
            protocol = "udp" if port in firewall.UDP_PORTS else "tcp"
            rows.append(f"| {process.name} | `{port}` | {source['ports'][port]} | {protocol} "
                        f"| {reached_by(port, model)} | {authentication(port, source, model)} |")
    # Compose's own services: one Docker network, where their ports are not published (PUBLIC_PORTS
    # are, on the host's loopback).
    everything = processes.of_kind(source, COMPOSE, deployed_secrets(source))
    listed = {port for p in model for port in p.listens}
    for process in compose_only(source):
        for port in (port for port in process.listens if port not in listed):
            # The processes that use storage reach the object store's API (their storage connection).
            api = process.group == STORAGE and port not in processes.PUBLIC_PORTS
            clients = sorted(p.name for p in everything if port in p.reaches or (api and p.uses_storage))
            reach = "; ".join([*([firewall.OPERATORS] if port in processes.PUBLIC_PORTS else []),
                               *([", ".join(clients)] if clients else [])]) or "nothing"
            auth = authentication(port, source, everything) if port in CREDENTIALS else "none: compose's network only"
            auth += ", and the processes that use storage (their storage connection)" if api else ""
            rows.append(f"| {process.name} | `{port}` | {source['ports'][port]} | tcp | compose only: {reach} "
                        f"| {auth} |")
    return "\n".join(rows) + "\n"


# --- the processes table: where each runs, when it starts, when it is ready -----------------


def ready_when(process: Process) -> str:
    probe = process.probe
    if process.one_shot:
        return "done: it exits 0"
    if probe is None:
        return "it runs"
    return {
        HTTP: f"`GET {probe.path}` on `{probe.port}` answers 200",
        POSTGRES: f"accepts connections on `{probe.port}`",
        REDIS: f"answers PING on `{probe.port}`",
        CELERY: "each of its workers answers a Celery ping",
        AIRFLOW_JOB: f"the api-server's health document shows `{API_HEALTH_COMPONENTS.get(probe.job, probe.job)}` "
                     "healthy (compose: `airflow jobs check`)",
    }[probe.kind]


def process_table(source: dict[str, Any]) -> str:
    """Every process of every target: its host group, where it runs, its start phase and its probe."""
    secrets = deployed_secrets(source)
    kinds = {kind: {p.name for p in processes.of_kind(source, kind, secrets)} for kind in (NATIVE, COMPOSE, ANSIBLE)}
    found = {p.name: p for kind in (ANSIBLE, NATIVE, COMPOSE) for p in processes.of_kind(source, kind, secrets)}
    rows = ["| process | host group | runs on | starts in phase | ready when |", "|---|---|---|---|---|"]
    for process in sorted(found.values(), key=lambda p: (p.phase, p.name)):
        runs_on = ", ".join(kind for kind in (NATIVE, COMPOSE, ANSIBLE) if process.name in kinds[kind])
        rows.append(f"| {process.name} | {process.group} | {runs_on} | {Phase(process.phase).name.lower()} "
                    f"| {ready_when(process)} |")
    return "\n".join(rows) + "\n"


# --- the firewall table -------------------------------------------------------------------


def firewall_table(source: dict[str, Any]) -> str:
    ports_of = source["ports"]

    def spelled(flow: Flow) -> str:
        if flow.port not in ports_of:
            return "443 (S3)"
        return f"{flow.port} {ports_of[flow.port]}" + ("/udp" if flow.protocol == "udp" else "")

    rows = ["| from | to | ports |", "|---|---|---|"]
    for (src, dst), same in groupby(firewall.flows(source), key=lambda f: (f.source, f.destination)):
        rows.append(f"| {src} | {dst} | {', '.join(spelled(flow) for flow in same)} |")
    return "\n".join(rows) + "\n"


# --- Redis's users --------------------------------------------------------------------------


def redis_users_table(source: dict[str, Any]) -> str:
    """Each Redis user: its ACL rules as Redis's config spells them (the password left out), and who holds it."""
    model = multi_host(source)
    rows = ["| user | ACL rules | password | held by |", "|---|---|---|---|"]
    for user in redis_users.users(source):
        rules = user.acl_line().replace(f" >{{{user.secret}}}", "").removeprefix(f"user {user.name} ")
        rules = rules.replace("|", "\\|")  # a table cell's |, even in code
        held = ", ".join(sorted(p.name for p in model if user.secret in p.secrets and p.name != "redis"))
        rows.append(f"| `{user.name}` | `{rules}` | `{user.secret}` | {held} |")
    return "\n".join(rows) + "\n"


# Every rendered table: its name in the markers, and what renders it.
TABLES: dict[str, Callable[[dict[str, Any]], str]] = {
    "ports": ports,
    "processes": process_table,
    "firewall": firewall_table,
    "redis_users": redis_users_table,
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


def render_pages(source: dict[str, Any]) -> dict[Path, str]:
    """Every page that holds a rendered block, with each of its blocks rendered afresh."""
    return {page: render_text(source, page.read_text()) for page in sorted(set(placements().values()))}
