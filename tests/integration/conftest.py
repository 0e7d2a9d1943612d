"""Integration tests: real server processes the tests start themselves, but no Airflow stack."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import httpx
import pytest

AIRFLOW_HOME = os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow-integration-")
os.environ.pop("AIRFLOW_CONFIG", None)


def pytest_unconfigure(config):
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)  # the throwaway home goes with the session

from workers import storage  # noqa: E402 (after AIRFLOW_HOME: importing Airflow reads it)

BUCKET = "platform"


@pytest.fixture(scope="session")
def s3_server():
    """One S3-API server for the session: Airflow caches each connection's filesystem, endpoint
    included, so a second server on another port would not be reached."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                server.kill()
                pytest.fail("moto_server did not start")
            time.sleep(0.2)
    yield url
    server.terminate()
    server.wait(10)


@pytest.fixture
def s3_bucket() -> str:
    return BUCKET


@pytest.fixture
def s3_base(s3_server, monkeypatch):
    """An Airflow AWS connection to the S3 server, given the way a deployment gives it."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    extra = {"endpoint_url": s3_server, "region_name": "us-east-1"}
    monkeypatch.setenv("AIRFLOW_CONN_PLATFORM_S3", json.dumps({"conn_type": "aws", "extra": extra}))
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    return storage.root(f"s3://{BUCKET}/demo", conn_id="platform_s3")
