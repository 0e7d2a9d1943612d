"""Every listener of the running stack refuses a request without its credentials (issue: closed holes).

What an unauthenticated local process could do before: make the inference service serve another
version, silence an alert, push a fake training outcome or delete DQ results, forge a page, read
the metrics. Each is tried without credentials (refused, nothing changed), then with them.
"""

from __future__ import annotations

import httpx
import pytest

from stackctl.native import health

from .conftest import wait_for

NOTIFICATION = {"alerts": [{"status": "firing", "labels": {"alertname": "ForgedPage"}, "annotations": {}}]}


@pytest.fixture
def client(running_stack):
    with httpx.Client(timeout=10, verify=running_stack.stack.verify) as client:
        yield client


def test_an_unauthenticated_deploy_is_refused(running_stack, client):
    stack = running_stack.stack
    url = f"{stack.url('inference')}/api/v1/deploy"
    body = {"tenant_id": "acme", "version": "m-0123456789ab"}
    assert client.post(url, json=body).status_code == 401
    assert client.post(f"{stack.url('inference')}/api/v1/cache/warm", json={"tenant_id": "acme"}).status_code == 401
    # With the token the request reaches the service, which has no such version.
    assert client.post(url, json=body, auth=health.listener_auth(stack, "inference")).status_code == 404


def test_an_unauthenticated_silence_is_refused(running_stack, client):
    stack = running_stack.stack
    silence = {"matchers": [{"name": "alertname", "value": "AirflowSchedulerDown", "isRegex": False}],
               "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z", "createdBy": "test",
               "comment": "an unauthenticated silence"}
    url = f"{stack.url('alertmanager')}/api/v2/silences"
    assert client.post(url, json=silence).status_code == 401
    auth = health.listener_auth(stack, "alertmanager")
    assert [s for s in client.get(url, auth=auth).json() if s["comment"] == silence["comment"]] == []
    created = client.post(url, json={**silence, "comment": "an operator's silence"}, auth=auth)
    assert created.status_code == 200, created.text
    assert client.delete(f"{stack.url('alertmanager')}/api/v2/silence/{created.json()['silenceID']}",
                         auth=auth).status_code == 200


def test_an_unauthenticated_push_or_delete_is_refused(running_stack, client):
    stack = running_stack.stack
    url = f"{stack.url('pushgateway')}/metrics/job/tenant_model_training/tenant/forged"
    assert client.put(url, content=b"training_last_run_success 1\n").status_code == 401
    assert client.delete(f"{stack.url('pushgateway')}/metrics/job/data_quality_check").status_code == 401
    auth = health.listener_auth(stack, "pushgateway")
    assert 'tenant="forged"' not in client.get(f"{stack.url('pushgateway')}/metrics", auth=auth).text


def test_a_forged_page_is_refused(running_stack, client):
    stack = running_stack.stack
    auth = health.listener_auth(stack, "oncall_inbox")
    assert client.post(f"{stack.url('oncall_inbox')}/webhook", json=NOTIFICATION).status_code == 401
    assert client.get(f"{stack.url('oncall_inbox')}/notifications").status_code == 401
    pages = client.get(f"{stack.url('oncall_inbox')}/notifications", auth=auth).json()
    assert not [a for page in pages for a in page["alerts"] if a["labels"]["alertname"] == "ForgedPage"]


def test_prometheus_needs_its_password(running_stack, client):
    stack = running_stack.stack
    url = f"{stack.url('prometheus')}/api/v1/query"
    assert client.get(url, params={"query": "up"}).status_code == 401

    def up() -> dict[str, str]:
        answer = client.get(url, params={"query": "up"}, auth=health.listener_auth(stack, "prometheus")).json()
        return {series["metric"]["job"]: series["value"][1] for series in answer["data"]["result"]}

    # Prometheus scrapes itself, Alertmanager and the Pushgateway with their passwords.
    wait_for(lambda: {"alertmanager", "pushgateway", "prometheus"} <= set(up()), 60, "the first scrapes")
    assert up()["alertmanager"] == up()["pushgateway"] == up()["prometheus"] == "1"
