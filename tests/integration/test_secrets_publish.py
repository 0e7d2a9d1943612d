"""`stackctl secrets publish` against moto's server (Secrets Manager's API): what it puts is what the
amazon provider's SecretsManagerBackend, as the api-server configures it, reads back; a second run
changes nothing; a changed value gets a new version; bad input and a service that is down get an
error that names them."""

import json
import os
import subprocess
import sys

import pytest
from airflow.providers.amazon.aws.secrets.secrets_manager import SecretsManagerBackend

from stackctl.model import settings

CONNECTION = {"conn_type": "redis", "host": "198.18.0.2", "port": "6379", "login": "cache-writer",
              "password": "s3cret:/@", "extra": '{"db": 1, "ssl": true}'}
PAYLOAD = {"connections": {"platform_redis": CONNECTION},
           "variables": {"platform_storage_uri": "s3://platform"}}


@pytest.fixture
def aws_env(monkeypatch):
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def publish(endpoint: str, payload) -> subprocess.CompletedProcess:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return subprocess.run([sys.executable, "-m", "stackctl", "secrets", "publish", "--endpoint-url", endpoint],
                          input=text, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": f"{settings.REPO}:{settings.REPO}/airflow"})


def test_published_connections_and_variables_are_what_the_backend_reads(s3_server, aws_env):
    first = publish(s3_server, PAYLOAD)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"changed": True, "created": ["airflow/connections/platform_redis",
                                                    "airflow/variables/platform_storage_uri"],
                                        "updated": [], "unchanged": 0}
    backend = SecretsManagerBackend(endpoint_url=s3_server, region_name="us-east-1")
    connection = backend.get_connection("platform_redis")
    assert (connection.conn_type, connection.host, connection.port, connection.login, connection.password) == (
        "redis", "198.18.0.2", 6379, "cache-writer", "s3cret:/@")
    assert connection.extra_dejson == {"db": 1, "ssl": True}
    assert backend.get_variable("platform_storage_uri") == "s3://platform"

    again = publish(s3_server, PAYLOAD)
    assert json.loads(again.stdout) == {"changed": False, "created": [], "updated": [], "unchanged": 2}

    rotated = {**PAYLOAD, "connections": {"platform_redis": {**CONNECTION, "password": "rotated"}}}
    assert json.loads(publish(s3_server, rotated).stdout)["updated"] == ["airflow/connections/platform_redis"]
    assert backend.get_connection("platform_redis").password == "rotated"  # no cache: the next lookup sees it


@pytest.mark.parametrize(("payload", "message"), [
    ("not json", "the payload on stdin is not JSON"),
    ({"connections": {"x": {"host": "h"}}}, "connection 'x': a conn_type"),
    ({"variables": {"n": 3}}, "variable 'n': its value must be text"),
    ({"secrets": {}}, "the payload must be"),
])
def test_a_malformed_payload_is_refused_before_anything_is_put(s3_server, aws_env, payload, message):
    refused = publish(s3_server, payload)
    assert refused.returncode == 2
    assert message in refused.stderr


def test_a_service_that_is_down_is_named(aws_env):
    refused = publish("http://127.0.0.1:9", PAYLOAD)
    assert refused.returncode == 2
    assert "cannot publish to http://127.0.0.1:9" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_compose_s_publisher_publishes_its_own_connection_and_variable_environment(s3_server, aws_env):
    env = {**os.environ, "PYTHONPATH": f"{settings.REPO}:{settings.REPO}/airflow",
           "AIRFLOW_CONN_COMPOSE_REDIS": json.dumps(CONNECTION), "AIRFLOW_VAR_COMPOSE_STORAGE_URI": "s3://other",
           "AIRFLOW_CONN_EMPTIED": ""}
    published = subprocess.run([sys.executable, "-m", "stackctl", "secrets", "publish", "--from-environment",
                                "--endpoint-url", s3_server], capture_output=True, text=True, timeout=120, env=env)
    assert published.returncode == 0, published.stderr
    backend = SecretsManagerBackend(endpoint_url=s3_server, region_name="us-east-1")
    assert backend.get_connection("compose_redis").login == "cache-writer"
    assert backend.get_variable("compose_storage_uri") == "s3://other"
    assert backend.get_connection("emptied") is None
