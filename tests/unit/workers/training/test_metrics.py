"""Training outcomes on a real Pushgateway behind basic auth: a failed run must not erase the last success."""

import json
import socket
import subprocess
import time
from datetime import UTC, datetime

import httpx
import pytest

from stackctl.render import web_auth
from workers import hooks
from workers.training import metrics

AUTH = ("admin", "pushgateway-password")

DEPLOYED = {"training": {"ndcg_lift": 0.8, "train_seconds": 3.5}, "data": {"interactions": 1200},
            "index": {"items": 300, "nlist": 0}, "validation": {"recall_at_10": 1.0}}


@pytest.fixture
def pushgateway(tmp_path, monkeypatch):
    """A Pushgateway with the stack's web config; the tasks' connection to it (the hooks module reads it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    web_config = tmp_path / "web.yml"
    web_config.write_text(web_auth.to_yaml(web_auth.render(AUTH[0], web_auth.password_hash(AUTH[1]))))
    monkeypatch.setenv("AIRFLOW_CONN_PUSHGATEWAY", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": port,
                                                               "login": AUTH[0], "password": AUTH[1]}))
    # In memory only: Debian's default persistence file is shared by every pushgateway on the machine.
    process = subprocess.Popen(["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{port}",
                                "--persistence.file=", f"--web.config.file={web_config}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{url}/-/ready", auth=AUTH, timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "pushgateway did not start"
        time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(10)


def scrape(gateway: str) -> dict[str, float]:
    samples = {}
    for line in httpx.get(f"{gateway}/metrics", auth=AUTH).text.splitlines():
        if line.startswith("training_") and 'tenant="acme"' in line:
            name, _, value = line.rpartition(" ")
            samples[name.split("{")[0]] = float(value)
    return samples


def test_a_failed_run_keeps_the_last_success(pushgateway):
    first = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
    gateway, handler = hooks.pushgateway()
    metrics.push_outcome(gateway, "acme", metrics.outcome_registry(True, first, DEPLOYED), handler)
    later = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
    failed = metrics.outcome_registry(False, later, {"data": {"interactions": 5}})
    metrics.push_outcome(gateway, "acme", failed, handler)

    found = scrape(pushgateway)
    assert found["training_last_run_success"] == 0
    assert found["training_last_run_timestamp_seconds"] == later.timestamp()
    assert found["training_last_success_timestamp_seconds"] == first.timestamp()
    assert found["training_index_recall_at_10"] == 1.0
    assert found["training_interactions"] == 1200  # the deployed model's, not the failed run's


def test_quality_figures_missing_from_a_run_are_left_out():
    registry = metrics.outcome_registry(True, datetime.now(UTC), {"training": {"ndcg_lift": None}})
    names = {m.name for m in registry.collect()}
    assert "training_ndcg_lift_ratio" not in names
    assert "training_last_success_timestamp_seconds" in names


def test_a_push_without_the_password_is_refused(pushgateway):
    """A fake training outcome from any local process: the Pushgateway answers 401 and stores nothing."""
    with pytest.raises(OSError, match="401"):
        metrics.push_outcome(pushgateway, "acme", metrics.outcome_registry(True, datetime.now(UTC), DEPLOYED))
    assert scrape(pushgateway) == {}
    assert httpx.get(f"{pushgateway}/metrics").status_code == 401


def test_a_kept_champion_is_no_failure_but_no_deploy():
    """The run did not fail (no TenantTrainingFailed), but production's model did not change: the last deploy's
    time and quality figures are not pushed, so they stay those of the serving model."""
    registry = metrics.outcome_registry(True, datetime.now(UTC), DEPLOYED, deployed=False)
    values = {m.name: m.samples[0].value for m in registry.collect()}
    assert values["training_last_run_success"] == 1
    assert set(values) == {"training_last_run_success", "training_last_run_timestamp_seconds"}
