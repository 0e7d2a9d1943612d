"""The reference services, on the control plane's hosts: the inference service and the FreshPoC services."""

from __future__ import annotations

from typing import Any

from stackctl.model.control_plane import python, service_ports
from stackctl.model.listeners import TOKEN_SECRETS
from stackctl.model.process import AIRFLOW, CONTROLPLANE, HTTP, Phase, Probe, Process, Scrape
from stackctl.model.redis_users import CACHE_READER, password_secret
from stackctl.model.secrets import SecretFile
from stackctl.model.target import TLS_CERT, TLS_KEY, Target
from workers.freshpoc import services as freshpoc_services
from workers.hooks import CACHE_READER_CONN_ID

# The FreshPoC services turn their fault-injection routes on only when given this token's file;
# a target without the secret (every deployment but a test's native stack) has them off.
FAULT_INJECTION_SECRET = "freshpoc_admin_token"


def token_args(target: Target, port: str) -> tuple[list[str], tuple[SecretFile, ...]]:
    """`--token-file <file>` and the file, for a service whose port takes a bearer token, else nothing."""
    if port not in TOKEN_SECRETS:
        return [], ()
    return ["--token-file", target.secret_file(TOKEN_SECRETS[port])], (SecretFile.of(TOKEN_SECRETS[port]),)


def https_args(target: Target, port: str) -> list[str]:
    """uvicorn's `--ssl-certfile` and `--ssl-keyfile`, the host's, for a service that serves HTTPS."""
    if target.scheme(port) != "https":
        return []
    return ["--ssl-certfile", target.tls_file(TLS_CERT), "--ssl-keyfile", target.tls_file(TLS_KEY)]


def processes(source: dict[str, Any], target: Target) -> list[Process]:
    args, files = token_args(target, "inference")
    found = [python(
        target, "inference", CONTROLPLANE, AIRFLOW,
        ["-m", "services.inference", "--host", target.bind("inference"), "--port", target.port("inference"), *args,
         *https_args(target, "inference")],
        Phase.SERVICES, listens=("inference",), reaches=("redis",), probe=Probe(HTTP, "inference", "/health"),
        scrape=(Scrape("inference", "inference"),),
        # The cache, read only: it serves the popular items the tasks write.
        secrets=(password_secret(CACHE_READER), TOKEN_SECRETS["inference"]), secret_files=files,
        connections=(CACHE_READER_CONN_ID,), uses_storage=True,
    )]
    for port in service_ports(source):
        service = port.removeprefix("freshpoc_")
        uses_db = freshpoc_services.BY_NAME[service].uses_db
        env, connections = {}, ("platform_db",) if uses_db else ()
        secrets: tuple[str, ...] = ("platform_db_password",) if uses_db else ()
        # A job service takes the bearer token of its job routes from a file (services/auth.py).
        args, files = token_args(target, port)
        secrets = (*secrets, *(file.name for file in files))
        if FAULT_INJECTION_SECRET in target.secrets:
            env["FRESHPOC_ADMIN_TOKEN_FILE"] = target.secret_file(FAULT_INJECTION_SECRET)
            secrets, files = (*secrets, FAULT_INJECTION_SECRET), (*files, SecretFile.of(FAULT_INJECTION_SECRET))
        found.append(python(
            target, f"freshpoc-{service}", CONTROLPLANE, AIRFLOW,
            ["-m", "services.freshpoc", service, "--host", target.bind(port), "--port", target.port(port), *args,
             *(ingestion_args(source, target) if service == "ingestion" else []), *https_args(target, port)],
            Phase.SERVICES, env=env, listens=(port,), reaches=("postgres",) if uses_db else (),
            probe=Probe(HTTP, port, "/health"), scrape=(Scrape("freshpoc", port, {"service": service}),),
            secrets=secrets, secret_files=files, connections=connections, uses_storage=True,
        ))
    return found


def ingestion_args(source: dict[str, Any], target: Target) -> list[str]:
    """What the FreshPoC ingestion service may read (config.yaml freshpoc.ingestion)."""
    rules = source["freshpoc"]["ingestion"]
    args = [arg for root in rules["allowed_roots"] for arg in ("--allowed-root", root.format(repo=target.repo))]
    return [*args, "--max-clone-mb", str(rules["max_clone_mb"]), "--clone-timeout-s", str(rules["clone_timeout_s"])]
