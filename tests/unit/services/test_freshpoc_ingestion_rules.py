"""The ingestion service over HTTP: each forbidden repository or run key is a 4xx naming its rule,
credentials are in nothing it stores or answers, and the stage fails at once on a refusal."""

import json

import pytest
from fastapi.testclient import TestClient

from services.freshpoc.app import create_app
from services.freshpoc.faults import Faults
from services.freshpoc.stages import Context
from tests.local_server import serving
from tests.polling import finished_job
from workers import storage
from workers.freshpoc.confine import Policy
from workers.freshpoc.outcome import ServiceRejected
from workers.freshpoc.stage import SAMPLE_PROJECT, ServiceJobOperator

SECRET = "s3cret-pw"
JOB_TIMEOUT_S = 15  # a local clone or a refused one: seconds at most


@pytest.fixture
def objects(tmp_path):
    return tmp_path / "objects"


@pytest.fixture
def ingestion(tmp_path, objects):
    rules = Policy(allowed_roots=(SAMPLE_PROJECT.parent, tmp_path / "allowed"), max_clone_bytes=2**20,
                   clone_timeout_s=30)
    ctx = Context(base=storage.root(objects.as_uri()), connect_db=None, ingestion=rules)
    with TestClient(create_app("ingestion", ctx, Faults(), None, "job-token"),
                    headers={"Authorization": "Bearer job-token"}) as client:
        yield client


def submit(client, repository: str, run_key: str = "r1", key: str = "run-1"):
    return client.post("/api/v1/jobs", json={"run_key": run_key, "repository": repository},
                       headers={"Idempotency-Key": key})


@pytest.mark.parametrize(("repository", "rule"), [
    ("file:///etc", "outside the allowed roots (freshpoc.ingestion.allowed_roots"),
    ("/etc", "outside the allowed roots"),
    (f"{SAMPLE_PROJECT}{'/..' * 20}/etc", "outside the allowed roots"),  # climbs to / and down
    ("ext::sh -c touch% /tmp/freshpoc-pwned", "git is allowed over https and ssh only, not 'ext::'"),
    ("git://127.0.0.1:1/repo.git", "git is allowed over https and ssh only, not 'git'"),
])
def test_a_forbidden_repository_is_a_422_naming_the_rule_and_starts_no_job(ingestion, objects, repository, rule):
    response = submit(ingestion, repository)
    assert response.status_code == 422 and rule in response.json()["detail"]
    assert not (objects / "freshpoc" / "jobs").exists()


@pytest.mark.parametrize("run_key", ["..", "../etc", "a/b", "", ".hidden", "x" * 161])
def test_a_run_key_that_could_leave_its_folder_is_a_422(ingestion, run_key):
    response = submit(ingestion, str(SAMPLE_PROJECT), run_key=run_key)
    assert response.status_code == 422 and "body.run_key" in response.json()["detail"]


def test_a_symlink_leaving_the_repository_fails_the_job_with_422_and_stores_nothing(ingestion, tmp_path, objects):
    project = tmp_path / "allowed" / "p"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text("name: p\n")
    (project / "models" / "passwd.yml").symlink_to("/etc/passwd")
    job = finished_job(ingestion, submit(ingestion, str(project)).json()["job_id"], JOB_TIMEOUT_S)
    assert job["status"] == "failed" and job["error"]["status"] == 422
    assert "symlink models/passwd.yml leaves the repository" in job["error"]["message"]
    assert not (objects / "freshpoc" / "runs").exists()


def test_credentials_are_in_no_manifest_job_record_or_answer(ingestion, objects):
    repository = f"file://user:{SECRET}@localhost{SAMPLE_PROJECT}"
    started = submit(ingestion, repository)
    job = finished_job(ingestion, started.json()["job_id"], JOB_TIMEOUT_S)
    assert job["status"] == "succeeded" and job["result"]["repository"] == f"file://localhost{SAMPLE_PROJECT}"
    manifest = json.loads((objects / "freshpoc" / "runs" / "r1" / "source" / "MANIFEST.json").read_text())
    assert manifest["repository"] == f"file://localhost{SAMPLE_PROJECT}"
    stored = [path.read_text() for path in (objects / "freshpoc").rglob("*.json")]
    assert stored and not any(SECRET in text for text in [started.text, json.dumps(job), *stored])
    # The same key and repository (password and all) is the same job, not a conflict.
    assert submit(ingestion, repository).status_code == 200


def test_a_failed_clone_with_credentials_quotes_none(ingestion, objects):
    started = submit(ingestion, f"https://user:{SECRET}@127.0.0.1:1/repo.git")
    job = finished_job(ingestion, started.json()["job_id"], JOB_TIMEOUT_S)
    assert job["status"] == "failed" and job["error"]["status"] == 422
    assert "git clone failed" in job["error"]["message"]
    stored = [path.read_text() for path in (objects / "freshpoc").rglob("*.json")]
    assert not any(SECRET in text for text in [json.dumps(job), *stored])


def test_the_stage_fails_on_its_first_try_with_the_rule(monkeypatch, tmp_path):
    """The Airflow side: a refusal is ServiceRejected (AirflowFailException), never retried."""
    rules = Policy(allowed_roots=(SAMPLE_PROJECT.parent,), max_clone_bytes=2**20, clone_timeout_s=30)
    ctx = Context(base=storage.root((tmp_path / "objects").as_uri()), connect_db=None, ingestion=rules)
    with serving(create_app("ingestion", ctx, Faults(), None, "job-token")) as client:
        monkeypatch.setenv("AIRFLOW_CONN_FRESHPOC_INGESTION", json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": client.base_url.port, "schema": "http",
             "login": "airflow", "password": "job-token"}))
        stage = ServiceJobOperator(task_id="ingestion_trigger", http_conn_id="freshpoc_ingestion",
                                   payload={"repository": "file:///etc"})
        with pytest.raises(ServiceRejected, match="answered 422: .*outside the allowed roots"):
            stage.execute({"run_id": "manual__hostile"})
