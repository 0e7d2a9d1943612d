"""The tasks' connections and variables, published into AWS Secrets Manager (or a service with its API)
where the amazon provider's SecretsManagerBackend reads them on each lookup.

A connection is the secret `airflow/connections/<conn_id>`, as JSON with Airflow's field names; a
variable is `airflow/variables/<key>`, its value as is (the backend's default prefixes).

`stackctl secrets publish` reads {"connections": {...}, "variables": {...}} on stdin, so no secret
is on a command line (ansible's controlplane role runs it on the controller), or with
`--from-environment` its own AIRFLOW_CONN_* and AIRFLOW_VAR_* variables (compose's secrets-publish).
Each secret is created when missing and given a new version only when its value differs: a second
run changes nothing, and two runs at once put the same values (idempotent). The api-server asks the
backend on every lookup ([secrets] use_cache stays off), so the next task gets a value put here,
without a restart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from stackctl.errors import StackError
from stackctl.model.secrets import CONNECTION_ENV_PREFIX, VARIABLE_ENV_PREFIX

CONNECTIONS_PREFIX = "airflow/connections"
VARIABLES_PREFIX = "airflow/variables"
CONNECTION_FIELDS = ("conn_type", "host", "port", "login", "password", "schema", "extra")


@dataclass
class Published:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)

    def summary(self) -> str:
        return json.dumps({"changed": self.changed, "created": self.created, "updated": self.updated,
                           "unchanged": len(self.unchanged)})


def secret_values(payload: Any) -> dict[str, str]:
    """{secret name: value} of a payload of connections and variables, or a StackError naming what is wrong."""
    if not isinstance(payload, dict) or set(payload) - {"connections", "variables"}:
        raise StackError('the payload must be {"connections": {...}, "variables": {...}}')
    values: dict[str, str] = {}
    for conn_id, fields in (payload.get("connections") or {}).items():
        if not isinstance(fields, dict) or set(fields) - set(CONNECTION_FIELDS) or "conn_type" not in fields:
            raise StackError(f"connection {conn_id!r}: a conn_type and only the fields {', '.join(CONNECTION_FIELDS)}")
        values[f"{CONNECTIONS_PREFIX}/{conn_id}"] = connection_secret(fields)
    for key, value in (payload.get("variables") or {}).items():
        if not isinstance(value, str):
            raise StackError(f"variable {key!r}: its value must be text, got {type(value).__name__}")
        values[f"{VARIABLES_PREFIX}/{key}"] = value
    return values


def connection_secret(fields: dict[str, Any]) -> str:
    """A connection as the backend reads it: JSON, its port a number, its extra a JSON text."""
    secret = {name: value for name, value in fields.items() if value not in (None, "")}
    if "port" in secret:
        secret["port"] = int(secret["port"])
    if isinstance(secret.get("extra"), dict):
        secret["extra"] = json.dumps(secret["extra"], sort_keys=True)
    return json.dumps(secret, sort_keys=True)


def payload_from_environment(environ: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The AIRFLOW_CONN_* (JSON) and AIRFLOW_VAR_* variables of an environment, as a payload; empty ones skipped."""
    payload: dict[str, dict[str, Any]] = {"connections": {}, "variables": {}}
    for name, value in environ.items():
        if name.startswith(CONNECTION_ENV_PREFIX) and value:
            try:
                payload["connections"][name.removeprefix(CONNECTION_ENV_PREFIX).lower()] = json.loads(value)
            except json.JSONDecodeError as exc:
                raise StackError(f"{name} is not a JSON connection: {exc}") from exc
        elif name.startswith(VARIABLE_ENV_PREFIX) and value:
            payload["variables"][name.removeprefix(VARIABLE_ENV_PREFIX).lower()] = value
    return payload


def publish(client: Any, values: dict[str, str]) -> Published:
    """Create or update each secret whose value differs; `client` is boto3's secretsmanager client."""
    published = Published()
    for name, value in sorted(values.items()):
        try:
            current = client.get_secret_value(SecretId=name)["SecretString"]
        except client.exceptions.ResourceNotFoundException:
            client.create_secret(Name=name, SecretString=value)
            published.created.append(name)
            continue
        if current == value:
            published.unchanged.append(name)
        else:
            client.put_secret_value(SecretId=name, SecretString=value)
            published.updated.append(name)
    return published


def client(endpoint_url: str | None, region: str, ca_bundle: str | None) -> Any:
    """boto3's Secrets Manager client, with the caller's AWS credentials (environment or profile)."""
    import boto3

    return boto3.client("secretsmanager", region_name=region, endpoint_url=endpoint_url or None,
                        verify=ca_bundle or None)


def payload_from_stdin(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise StackError(f"the payload on stdin is not JSON: {exc}") from exc


def publish_from(payload: Any, endpoint_url: str | None, region: str, ca_bundle: str | None) -> Published:
    """`stackctl secrets publish`: the payload's secrets into the service, or a StackError that says why not."""
    import botocore.exceptions

    values = secret_values(payload)
    try:
        return publish(client(endpoint_url, region, ca_bundle), values)
    except botocore.exceptions.NoCredentialsError as exc:
        raise StackError("no AWS credentials to publish with: set AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE") from exc
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        where = endpoint_url or f"Secrets Manager in {region}"
        raise StackError(f"cannot publish to {where}: {exc}") from exc
