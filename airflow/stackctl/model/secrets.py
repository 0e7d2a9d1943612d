"""Secrets follow the processes: which secrets a deployment has, and how each reaches the processes
that hold it.

An Airflow setting that references a secret ({secrets.<name>} in config.yaml) reaches only the
processes that hold every secret it references, and a connection with a secret only the processes
that name it; both travel in that process's environment, never in the shared airflow.cfg or
connection file. A program that reads a secret from a file gets a SecretFile: its name under the
target's secrets folder and its content, written by each target (natively by stackctl, by the
role, by a compose service's entrypoint from .env).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from stackctl.model import settings
from stackctl.model.target import Target

SECRET_REFERENCE = re.compile(r"\{secrets\.(\w+)\}")
# Secrets only the native stack generates: the FreshPoC services' fault-injection token is for
# tests, and a deployment without it has fault injection off.
NATIVE_ONLY_SECRETS = {"freshpoc_admin_token"}
# The vault's keys of S3 object storage, needed only where the inventory sets an s3://
# common_storage_uri (a deployment of several hosts), and only by processes that use storage.
STORAGE_SECRETS = ("storage_access_key_id", "storage_secret_access_key")
# How Airflow's environment backend names a connection and a variable.
CONNECTION_ENV_PREFIX, VARIABLE_ENV_PREFIX = "AIRFLOW_CONN_", "AIRFLOW_VAR_"
# The backend Airflow's processes read the tasks' connections from with Secrets Manager (ansible's
# common_secrets_backend; stackctl/ops/secrets_manager.py publishes them).
SECRETS_MANAGER_BACKEND = "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend"


@dataclass(frozen=True)
class SecretFile:
    """A file a program reads secrets from: its name under the secrets folder, and its content as a
    template of {secret} references (most files hold one secret as it is)."""

    name: str
    template: str

    @classmethod
    def of(cls, secret: str) -> SecretFile:
        return cls(secret, f"{{{secret}}}")

    @property
    def secrets(self) -> list[str]:
        return re.findall(r"(?<!\{)\{(\w+)\}(?!\})", self.template)

    def render(self, values: dict[str, str]) -> str:
        """The file's content, from each secret's value or its target's reference to it."""
        return self.template.format(**{name: values[name] for name in self.secrets})


def deployed_secrets(source: dict[str, Any]) -> list[str]:
    """The secrets a compose or ansible deployment must provide."""
    return [name for name in source["secrets"] if name not in NATIVE_ONLY_SECRETS]


def env_name(secret: str) -> str:
    """A secret's environment variable: compose/.env's name, and where an entrypoint reads it."""
    return secret.upper()


def referenced_secrets(value: Any) -> set[str]:
    return set(SECRET_REFERENCE.findall(json.dumps(value)))


def split_by_secrets(items: dict[str, Any]) -> tuple[dict[str, Any], dict[str, set[str]]]:
    """Items without a secret reference (shared by every process), and the secrets of the others."""
    shared = {key: value for key, value in items.items() if not referenced_secrets(value)}
    private = {key: referenced_secrets(value) for key, value in items.items() if referenced_secrets(value)}
    return shared, private


def connection_secrets(source: dict[str, Any], conn_ids: tuple[str, ...]) -> tuple[str, ...]:
    """The secrets the given connections reference, each once."""
    per_connection = split_by_secrets(source["connections"])[1]
    return tuple(sorted({secret for conn_id in conn_ids for secret in per_connection.get(conn_id, ())}))


def shared_source(source: dict[str, Any]) -> dict[str, Any]:
    """config.yaml with every secret-bearing setting and connection removed: airflow.cfg's content."""
    airflow = {section: split_by_secrets(options)[0] for section, options in source["airflow"].items()}
    return {**source, "airflow": {s: o for s, o in airflow.items() if o},
            "connections": split_by_secrets(source["connections"])[0]}


def private_settings(source: dict[str, Any], held: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """The secret-bearing Airflow settings a process holding these secrets may have: {section: {key: template}}."""
    chosen: dict[str, dict[str, str]] = {}
    for section, options in source["airflow"].items():
        for key, secrets in split_by_secrets(options)[1].items():
            if secrets <= set(held):
                chosen.setdefault(section, {})[key] = options[key]
    return chosen


def airflow_environment(source: dict[str, Any], target: Target, held: tuple[str, ...],
                        connections: tuple[str, ...]) -> dict[str, str]:
    """AIRFLOW__S__K and AIRFLOW_CONN_* variables of the secret-bearing settings and connections a process holds."""
    own = {**source, "airflow": private_settings(source, held),
           "connections": {conn_id: source["connections"][conn_id] for conn_id in connections}}
    env = settings.to_env(settings.render_settings(own, target))
    for conn_id, fields in settings.render_connections(own, target).items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(fields, separators=(",", ":"))
    return env
