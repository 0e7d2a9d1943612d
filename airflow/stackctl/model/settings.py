"""Load `airflow/config.yaml` and render it for a deployment target.

A target supplies the topology (paths, hosts, ports) and how secrets appear: the native
stack substitutes their values, compose and ansible substitute references to them.
"""

from __future__ import annotations

import configparser
import io
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlencode

import yaml

from stackctl.errors import ConfigError
from stackctl.model.target import ANSIBLE, COMPOSE, TLS_CA, TLS_CERT, TLS_KEY, Target
from workers.freshpoc import services as freshpoc_services

REPO = Path(__file__).resolve().parents[3]
# CONTROLPLANE_CONFIG points at a variant of the source (the benchmark's stock settings).
CONFIG_SOURCE = Path(os.environ.get("CONTROLPLANE_CONFIG", REPO / "airflow" / "config.yaml"))


def load_source(path: Path = CONFIG_SOURCE) -> dict[str, Any]:
    with path.open() as f:
        source = yaml.safe_load(f)
    _check_invariants(source)
    source["connections"] = {**source["connections"], **_freshpoc_connections(source["connections"])}
    return source


def _freshpoc_connections(typed: dict[str, Any]) -> dict[str, dict[str, str]]:
    """One http connection per FreshPoC service, to its port (https with tls, verified against the CA in
    its extra): derived, not typed in config.yaml. A job service's carries the services' token as its
    password (HttpHook sends basic auth, which services/auth.py takes); the query service has no job
    routes and no token. A source that types one (a dumped copy, as the benchmarks write) must type
    exactly this."""
    derived = {}
    for service in freshpoc_services.SERVICES:
        name = service.conn_id
        fields = {"conn_type": "http", "host": f"{{hosts.{name}}}", "port": f"{{ports.{name}}}",
                  "schema": f"{{schemes.{name}}}", "extra": "{tls.http_extra}"}
        if service.jobs:
            fields |= {"login": "airflow", "password": "{secrets.freshpoc_token}"}
        if typed.get(name, fields) != fields:
            raise ConfigError(f"connections.{name}: derived from workers/freshpoc/services.py; remove it")
        derived[name] = fields
    return derived


def _check_invariants(source: dict[str, Any]) -> None:
    if not isinstance(source.get("tls"), bool):
        raise ConfigError(f"tls: true or false, got {source.get('tls')!r}")
    typed = {name for name in source["ports"] if name.startswith("freshpoc_")}
    services = {service.conn_id for service in freshpoc_services.SERVICES}
    if typed != services:
        raise ConfigError(f"ports: one freshpoc_<service> per service of workers/freshpoc/services.py, and no "
                          f"other; missing {sorted(services - typed)}, unknown {sorted(typed - services)}")
    for name in source["worker_pools"]:
        # Celery hostnames are <pool>-<n>@<host>; the worker-pool alerts read the pool back from them.
        if not re.fullmatch(r"[a-z0-9_]+", name):
            raise ConfigError(f"worker pool name {name!r}: use lowercase letters, digits and _ (no -)")
    for name, pool in source["airflow_pools"].items():
        if pool["slots_from_worker_pool"] not in source["worker_pools"]:
            raise ConfigError(f"airflow_pools.{name} follows unknown worker pool {pool['slots_from_worker_pool']}")
    for name, pool in source["worker_pools"].items():
        low, high = pool.get("min_processes"), pool.get("max_processes")
        if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
            raise ConfigError(f"worker_pools.{name}: need whole numbers 1 <= min_processes <= max_processes, "
                              f"got min_processes={low!r}, max_processes={high!r}")
    queues = [p["queue"] for p in source["worker_pools"].values()]
    if len(set(queues)) != len(queues):
        raise ConfigError(f"worker pools must subscribe to distinct queues, got {queues}")
    default_queue = source["airflow"]["operators"]["default_queue"]
    if default_queue not in queues:
        raise ConfigError(f"[operators] default_queue={default_queue} is served by no worker pool")


def tls_for(source: dict[str, Any], kind: str) -> bool:
    """Whether a target's connections use TLS. Ansible's hosts always do: their connections cross a
    network, and each host gets its certificate from the deployment's CA (roles/common/tasks/tls.yml).
    The native stack takes config.yaml's tls (its connections stay on loopback); compose refuses it
    until its containers get certificates."""
    if kind == ANSIBLE:
        return True
    if source["tls"] and kind == COMPOSE:
        raise ConfigError(f"tls: true is for the native stack and ansible so far; {kind} hosts get no certificates yet")
    return source["tls"]


def own_ca(source: dict[str, Any]) -> tuple[Path, Path] | None:
    """config.yaml's tls_ca: the operator's CA certificate and key, or None for the stack's own CA."""
    cert, key = source["tls_ca"]["cert"], source["tls_ca"]["key"]
    if not cert and not key:
        return None
    if not (cert and key):
        raise ConfigError("tls_ca: give both cert and key (your CA's certificate and its key), or neither")
    return REPO / Path(cert).expanduser(), REPO / Path(key).expanduser()


def visibility_timeout_s(source: dict[str, Any]) -> int:
    """The broker's redelivery timeout: twice the longest allowed task."""
    return 2 * int(source["max_task_timeout_s"])


def airflow_pool_slots(source: dict[str, Any]) -> dict[str, int]:
    slots = {}
    for name, pool in source["airflow_pools"].items():
        workers = source["worker_pools"][pool["slots_from_worker_pool"]]
        slots[name] = int(workers["instances"]) * int(workers["max_processes"])
    return slots


_JINJA = re.compile(r"(\{\{.*?\}\})")


def _quote(value: str, *_: Any) -> str:
    """A value quoted for a URL's query, but for the Jinja references in it (ansible's paths), which the
    host resolves to a path first."""
    return "".join(part if part.startswith("{{") else quote(part) for part in _JINJA.split(value))


def _context(source: dict[str, Any], target: Target) -> dict[str, Any]:
    return {
        "home": target.home,
        "dags_folder": target.dags_folder,
        "repo": target.repo,
        "bind_host": target.bind_host,
        "admin_user": source["admin_user"],
        "max_task_timeout_s": source["max_task_timeout_s"],
        "visibility_timeout_s": visibility_timeout_s(source),
        "hosts": SimpleNamespace(**target.hosts),
        "ports": SimpleNamespace(**target.ports),
        "secrets": SimpleNamespace(**target.secrets),
        # How each HTTP listener is reached: https where it serves TLS (model/target.HTTPS_PORTS).
        "schemes": SimpleNamespace(**{port: target.scheme(port) for port in target.ports}),
        "tls": SimpleNamespace(
            redis_scheme="rediss" if target.tls else "redis",
            # Kombu and Celery's result backend read these from a rediss:// URL (ssl_cert_reqs is required).
            redis_query=f"?ssl_cert_reqs=required&ssl_ca_certs={_quote(target.tls_file(TLS_CA))}" if target.tls else "",
            # A Redis connection's extra (workers/hooks.redis_client): TLS, verifying Redis against the CA.
            redis_extra=f', "ssl": true, "ssl_ca_certs": "{target.tls_file(TLS_CA)}"' if target.tls else "",
            # libpq's parameters (model/target.Target.postgres_tls): in a URL's query, and as a
            # Postgres connection's extra, which the provider's hook passes to libpq.
            postgres_query=f"?{urlencode(target.postgres_tls, quote_via=_quote)}" if target.tls else "",
            postgres_extra=json.dumps(target.postgres_tls),
            # An http connection's extra (workers/hooks.http_service, and HttpHook's own `verify`): the CA
            # an https service is verified against.
            http_extra=json.dumps({"verify": target.tls_file(TLS_CA)} if target.tls else {}),
            # The api-server's: the files it serves HTTPS with, and the CA the task SDK's client verifies it
            # against ("" without tls: Airflow serves plain HTTP).
            cert_file=target.tls_file(TLS_CERT) if target.tls else "",
            key_file=target.tls_file(TLS_KEY) if target.tls else "",
            ca_file=target.tls_file(TLS_CA) if target.tls else "",
        ),
    }


def _resolve(value: Any, context: dict[str, Any], where: str) -> str:
    try:
        return str(value).format(**context)
    except (KeyError, AttributeError) as exc:
        raise ConfigError(f"{where}: unknown placeholder {exc}") from exc


def render_settings(source: dict[str, Any], target: Target) -> dict[str, dict[str, str]]:
    """Airflow settings as {section: {key: value}} with every placeholder resolved."""
    context = _context(source, target)
    return {
        section: {key: _resolve(value, context, f"[{section}] {key}") for key, value in options.items()}
        for section, options in source["airflow"].items()
    }


def render_connections(source: dict[str, Any], target: Target) -> dict[str, dict[str, Any]]:
    """Airflow connections by id, each a dict of Connection fields."""
    context = _context(source, target)
    rendered = {}
    for conn_id, fields in source["connections"].items():
        rendered[conn_id] = {
            field: _resolve(value, context, f"connections.{conn_id}.{field}") for field, value in fields.items()
        }
        if rendered[conn_id].get("port", "").isdigit():  # ansible's ports stay Jinja references
            rendered[conn_id]["port"] = int(rendered[conn_id]["port"])
    return rendered


def render_variables(source: dict[str, Any], target: Target) -> dict[str, str]:
    context = _context(source, target)
    return {key: _resolve(value, context, f"variables.{key}") for key, value in source["variables"].items()}


def to_airflow_cfg(settings: dict[str, dict[str, str]]) -> str:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep keys as written
    parser.read_dict(settings)
    out = io.StringIO()
    out.write("# Rendered by stackctl from airflow/config.yaml. Do not edit: edit the source.\n")
    parser.write(out)
    return out.getvalue()


def to_env(settings: dict[str, dict[str, str]]) -> dict[str, str]:
    """The same settings as AIRFLOW__SECTION__KEY variables (compose, systemd units)."""
    return {
        f"AIRFLOW__{section.upper()}__{key.upper()}": value
        for section, options in settings.items()
        for key, value in options.items()
    }
