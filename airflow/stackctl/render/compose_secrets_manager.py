"""compose/secrets-manager.yml: compose's switch to Secrets Manager for the tasks' connections and variables.

One setting in compose/.env turns it on, as common_secrets_backend does for ansible:

    COMPOSE_FILE=docker-compose.yml:secrets-manager.yml

with SECRETS_MANAGER_ENDPOINT_URL, SECRETS_MANAGER_REGION and the keys (.env.example). Compose then
merges this file over docker-compose.yml:
- `secrets-publish`, a one-shot, puts the connections and variables the api-server and the triggerer
  would hold into Secrets Manager (`stackctl secrets publish --from-environment`: create what is
  missing, update what differs), and those two start after it;
- they read them there (the amazon provider's SecretsManagerBackend), and their task connections'
  variables are empty, which Airflow's environment backend takes as absent.
The shared connections and variables without a secret stay in every service's environment, as in
docker-compose.yml.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from stackctl.model import processes
from stackctl.model.control_plane import LOOKS_UP_FOR_TASKS
from stackctl.model.secrets import CONNECTION_ENV_PREFIX, SECRETS_MANAGER_BACKEND, VARIABLE_ENV_PREFIX
from stackctl.render import compose

OVERLAY_FILE = compose.COMPOSE_DIR / "secrets-manager.yml"
PUBLISHER = "secrets-publish"
# compose/.env's settings of the switch, each required once it is on.
SETTINGS = {
    "SECRETS_MANAGER_ENDPOINT_URL": "its endpoint, https://secretsmanager.<region>.amazonaws.com for AWS",
    "SECRETS_MANAGER_REGION": "its region",
    "SECRETS_MANAGER_ACCESS_KEY_ID": "the key that reads and writes airflow/*",
    "SECRETS_MANAGER_SECRET_ACCESS_KEY": "the secret access key of that key",
}
HEADER = (
    "# Rendered by `python -m stackctl render compose` (airflow/stackctl/render/compose_secrets_manager.py).\n"
    "# Do not edit.\n"
    "# The tasks' connections and variables from AWS Secrets Manager: in compose/.env, set\n"
    "#   COMPOSE_FILE=docker-compose.yml:secrets-manager.yml\n"
    "# and the SECRETS_MANAGER_* values (.env.example). secrets-publish puts them there on every `up`;\n"
    "# the api-server and the triggerer read them there, and hold none of them.\n"
)


def ref(name: str) -> str:
    return f"${{{name}:?set {name} in compose/.env: {SETTINGS[name]}}}"


def task_connections(source: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Each process that looks connections up for tasks, and its AIRFLOW_CONN_* variables (secret references)."""
    own = compose.target(source)
    by_name = {p.name: p for p in compose.model(source)}
    return {name: {key: value for key, value in processes.secret_environment(source, own, by_name[name]).items()
                   if key.startswith(CONNECTION_ENV_PREFIX)} for name in LOOKS_UP_FOR_TASKS}


def overlay(source: dict[str, Any]) -> dict[str, Any]:
    held = task_connections(source)
    shared = {key: value for key, value in compose.shared_environment(source).items()
              if key.startswith((CONNECTION_ENV_PREFIX, VARIABLE_ENV_PREFIX))}
    keys = {"AWS_ACCESS_KEY_ID": ref("SECRETS_MANAGER_ACCESS_KEY_ID"),
            "AWS_SECRET_ACCESS_KEY": ref("SECRETS_MANAGER_SECRET_ACCESS_KEY")}
    backend = {
        "AIRFLOW__SECRETS__BACKEND": SECRETS_MANAGER_BACKEND,
        "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({"region_name": ref("SECRETS_MANAGER_REGION"),
                                                       "endpoint_url": ref("SECRETS_MANAGER_ENDPOINT_URL")}),
        # Per-key kwargs, which Airflow masks.
        **{f"AIRFLOW__SECRETS__BACKEND_KWARG__{name}": value for name, value in keys.items()},
    }
    publisher = {
        "image": compose.AIRFLOW_IMAGE,
        "entrypoint": ["/usr/bin/dumb-init", "--"],
        "command": ["python", "-m", "stackctl", "secrets", "publish", "--from-environment",
                    "--endpoint-url", ref("SECRETS_MANAGER_ENDPOINT_URL"), "--region", ref("SECRETS_MANAGER_REGION")],
        "environment": {**shared, **{key: value for env in held.values() for key, value in env.items()}, **keys},
        "restart": "no",
    }
    readers = {name: {"environment": {**backend, **dict.fromkeys(env, "")},
                      "depends_on": {PUBLISHER: {"condition": "service_completed_successfully"}}}
               for name, env in held.items()}
    return {"services": {PUBLISHER: publisher, **readers}}


def render(source: dict[str, Any]) -> str:
    return HEADER + yaml.dump(overlay(source), Dumper=compose.Dumper, sort_keys=False, width=10_000)


def env_example() -> str:
    """The switch's lines of compose/.env.example, commented out."""
    return ("# Optional: the tasks' connections and variables from AWS Secrets Manager (secrets-manager.yml):\n"
            "# COMPOSE_FILE=docker-compose.yml:secrets-manager.yml\n"
            + "".join(f"# {name}=    ({why})\n" for name, why in SETTINGS.items()))


def render_all(source: dict[str, Any]) -> dict[Path, str]:
    """Every file `python -m stackctl render compose` writes, by path: docker-compose.yml's, and this
    overlay with its lines in .env.example."""
    files = compose.render_all(source)
    files[compose.ENV_EXAMPLE] += env_example()
    return {**files, OVERLAY_FILE: render(source)}
