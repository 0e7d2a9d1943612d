"""The services' HTTP contract: input validation, idempotent job routes, gated fault injection."""


import pytest

from services.freshpoc.app import create_app
from services.freshpoc.faults import Faults
from services.freshpoc.stages import Context
from tests.local_server import serving
from tests.polling import finished_job
from workers import storage
from workers.freshpoc.confine import Policy
from workers.freshpoc.stage import SAMPLE_PROJECT

TOKEN = "s3cret-token-for-tests"
JOB_TOKEN = "job-token-for-tests"


@pytest.fixture
def ingestion(tmp_path):
    samples = Policy(allowed_roots=(SAMPLE_PROJECT.parent,), max_clone_bytes=2**20, clone_timeout_s=30)
    ctx = Context(base=storage.root(f"file://{tmp_path}/objects"), connect_db=None, ingestion=samples)
    with serving(create_app("ingestion", ctx, Faults(), TOKEN, JOB_TOKEN)) as client:
        client.headers["Authorization"] = f"Bearer {JOB_TOKEN}"  # the job routes' token, as the stages send it
        yield client


def test_a_job_is_started_once_per_idempotency_key(ingestion):
    body = {"run_key": "r1", "repository": str(SAMPLE_PROJECT)}
    first = ingestion.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "run-1"})
    assert first.status_code == 201
    job = finished_job(ingestion, first.json()["job_id"], timeout=10)
    assert job["status"] == "succeeded" and job["result"]["files"] == 11
    second = ingestion.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "run-1"})
    assert second.status_code == 200 and second.json()["runs"] == 1


@pytest.mark.parametrize(("body", "headers", "message"), [
    ({"run_key": "r1", "repository": "/x"}, {}, "header.idempotency-key: Field required"),
    ({"run_key": "../etc", "repository": "/x"}, {"Idempotency-Key": "k"}, "body.run_key: String should match"),
    ({"run_key": "r1"}, {"Idempotency-Key": "k"}, "body.repository: Field required"),
    ({"run_key": "r1", "repository": "/x", "extra": 1}, {"Idempotency-Key": "k"}, "body.extra: Extra inputs"),
    ({"run_key": "r1", "repository": "/no/such/dir"}, {"Idempotency-Key": "k"}, "outside the allowed roots"),
    ({"run_key": "r1", "repository": "relative"}, {"Idempotency-Key": "k"}, "neither an absolute path"),
])
def test_bad_input_is_a_422_with_a_message(ingestion, body, headers, message):
    response = ingestion.post("/api/v1/jobs", json=body, headers=headers)
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_an_unknown_job_is_404(ingestion):
    assert ingestion.get("/api/v1/jobs/ingestion-0000").status_code == 404
    assert ingestion.get("/api/v1/jobs/miner-0000").status_code == 404


def test_fault_injection_needs_the_admin_token(ingestion):
    assert ingestion.put("/admin/faults", json={"reject_400": "x"}).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert ingestion.put("/admin/faults", json={"reject_400": "x"}, headers=wrong).status_code == 401
    assert ingestion.get("/health").json()["faults"] is None


def test_injected_faults_show_in_health_and_answer_job_requests(ingestion):
    admin = {"Authorization": f"Bearer {TOKEN}"}
    assert ingestion.put("/admin/faults", json={"fail_503_times": 1, "ttl_s": 60}, headers=admin).status_code == 200
    assert ingestion.get("/health").json()["faults"]["fail_503_left"] == 1
    body = {"run_key": "r1", "repository": str(SAMPLE_PROJECT)}
    assert ingestion.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "k"}).status_code == 503
    assert ingestion.put("/admin/faults", json={"reject_400": "refused for the test"}, headers=admin).status_code == 200
    refused = ingestion.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "k"})
    assert (refused.status_code, refused.json()["detail"]) == (400, "refused for the test")
    assert ingestion.get("/health").status_code == 200  # readiness is never faulted
    assert ingestion.put("/admin/faults", json={"ttl_s": 99999}, headers=admin).status_code == 422
    assert ingestion.delete("/admin/faults", headers=admin).json() == {"faults": None}


def test_without_a_token_fault_injection_is_off(tmp_path):
    ctx = Context(base=storage.root(f"file://{tmp_path}/objects"), connect_db=None)
    with serving(create_app("miner", ctx, Faults(), None, JOB_TOKEN)) as client:
        response = client.put("/admin/faults", json={"reject_400": "x"}, headers={"Authorization": "Bearer x"})
        assert response.status_code == 404 and "fault injection is disabled" in response.json()["detail"]


def test_a_start_that_may_wait_answers_with_the_ended_job(ingestion):
    body = {"run_key": "r1", "repository": str(SAMPLE_PROJECT)}
    started = ingestion.post("/api/v1/jobs", params={"wait_s": 5}, json=body, headers={"Idempotency-Key": "run-1"})
    assert started.status_code == 201
    assert started.json()["status"] == "succeeded" and started.json()["result"]["files"] == 11
    again = ingestion.post("/api/v1/jobs", params={"wait_s": 1}, json=body, headers={"Idempotency-Key": "run-1"})
    assert again.status_code == 200 and again.json()["runs"] == 1


@pytest.mark.parametrize("wait_s", ["-1", "5.5", "nan", "soon"])
def test_a_start_wait_out_of_range_is_a_422(ingestion, wait_s):
    body = {"run_key": "r1", "repository": str(SAMPLE_PROJECT)}
    response = ingestion.post("/api/v1/jobs", params={"wait_s": wait_s}, json=body, headers={"Idempotency-Key": "k"})
    assert response.status_code == 422 and "query.wait_s" in response.json()["detail"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}], ids=["none", "wrong token"])
def test_the_job_routes_need_the_token(ingestion, headers):
    """A local process without the token can neither start a job nor read one (its result names the files)."""
    del ingestion.headers["Authorization"]
    body = {"run_key": "r1", "repository": str(SAMPLE_PROJECT)}
    assert ingestion.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "run-1", **headers}).status_code == 401
    assert ingestion.get("/api/v1/jobs/ingestion-x", headers=headers).status_code == 401
    assert ingestion.get("/health").status_code == 200
