"""The inference service's write routes and the on-call inbox refuse a request without their token."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from services.inference.app import create_app as inference_app
from services.inference.models import ModelRegistry
from services.oncall_inbox.app import create_app as oncall_inbox_app
from workers import storage

TOKEN = "s3cr3t-token"
NOTIFICATION = {"alerts": [{"labels": {"alertname": "Forged"}}]}


@pytest.fixture
def inference(tmp_path):
    return TestClient(inference_app(ModelRegistry(storage.root(f"file://{tmp_path}/objects")),
                                    lambda tenant_id: [], TOKEN))


@pytest.fixture
def inbox_file(tmp_path):
    return tmp_path / "inbox.jsonl"


@pytest.fixture
def inbox(inbox_file):
    return TestClient(oncall_inbox_app(inbox_file, TOKEN))


WRONG = [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Token {TOKEN}"}, {"Authorization": "Basic !!"},
         {"Authorization": "Bearer"}]


@pytest.mark.parametrize("headers", WRONG, ids=["none", "wrong token", "other scheme", "bad basic", "empty"])
@pytest.mark.parametrize("path", ["/api/v1/deploy", "/api/v1/cache/warm"])
def test_inference_writes_need_the_token(inference, path, headers):
    response = inference.post(path, json={"tenant_id": "acme", "version": "m-0123456789ab"}, headers=headers)
    assert response.status_code == 401
    assert "token" in response.json()["detail"]


def test_inference_takes_the_token_as_bearer_or_as_the_basic_password(inference):
    body = {"tenant_id": "acme", "version": "m-0123456789ab"}
    assert inference.post("/api/v1/deploy", json=body, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404
    assert inference.post("/api/v1/deploy", json=body, auth=("airflow", TOKEN)).status_code == 404  # HttpHook's way
    assert inference.get("/api/v1/recommend", params={"tenant_id": "acme", "user_id": 1}).status_code == 404  # open


@pytest.mark.parametrize("headers", WRONG, ids=["none", "wrong token", "other scheme", "bad basic", "empty"])
def test_a_forged_page_is_refused_and_not_recorded(inbox, inbox_file, headers):
    assert inbox.post("/webhook", json=NOTIFICATION, headers=headers).status_code == 401
    assert not inbox_file.exists()
    assert inbox.get("/notifications", headers=headers).status_code == 401


def test_alertmanager_s_webhook_with_the_token_is_recorded(inbox):
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert inbox.post("/webhook", json=NOTIFICATION, headers=bearer).json() == {"recorded": 1}
    assert [n["alerts"] for n in inbox.get("/notifications", headers=bearer).json()] == [NOTIFICATION["alerts"]]
