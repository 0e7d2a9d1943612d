"""The rendered Alertmanager config passes `amtool check-config` and routes by severity."""

import subprocess

import pytest

from stackctl.render import alertmanager


@pytest.fixture(params=["local only", "with PagerDuty and Slack"])
def config_file(request, tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    if request.param != "local only":
        (secrets / "pagerduty_routing_key").write_text("routing-key")
        (secrets / "slack_webhook_url").write_text("https://hooks.slack.invalid/T0/B0/x")
    path = tmp_path / "alertmanager.yml"
    config = alertmanager.render({"url": "http://127.0.0.1:9095/webhook"}, str(secrets / "oncall_inbox_token"), secrets)
    path.write_text(alertmanager.to_yaml(config))
    return path


def amtool(*args):
    return subprocess.run(["amtool", *args], capture_output=True, text=True, timeout=30)


def test_config_is_valid(config_file):
    result = amtool("check-config", str(config_file))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("labels", "receiver"), [
    (["severity=critical", "alertname=DataQualityCheckFailed", "tenant=acme"], "critical"),
    (["severity=warning", "alertname=DataQualityCheckFailed", "tenant=acme"], "warning"),
    (["alertname=Unlabelled"], "warning"),
])
def test_routes_by_severity(config_file, labels, receiver):
    result = amtool("config", "routes", "test", f"--config.file={config_file}", f"--verify.receivers={receiver}",
                    *labels)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_expectation_fails(config_file):
    """The route test can fail: a critical alert does not go to the warning receiver."""
    result = amtool("config", "routes", "test", f"--config.file={config_file}", "--verify.receivers=warning",
                    "severity=critical")
    assert result.returncode != 0


def test_every_receiver_also_reaches_the_local_inbox(tmp_path):
    config = alertmanager.render({"url": "http://127.0.0.1:9095/webhook"}, "/secrets/oncall_inbox_token", tmp_path)
    assert all(r["webhook_configs"][0]["url"].endswith("/webhook") for r in config["receivers"])
    # The inbox refuses a notification without its token: every webhook sends it.
    assert all(r["webhook_configs"][0]["http_config"]["authorization"]
               == {"type": "Bearer", "credentials_file": "/secrets/oncall_inbox_token"} for r in config["receivers"])
    assert "pagerduty_configs" not in config["receivers"][0]  # no secret, no PagerDuty


def test_over_https_the_webhook_verifies_the_inbox_against_the_deployments_ca(tmp_path):
    from stackctl.model.target import NATIVE, Target

    tls = Target(kind=NATIVE, home=str(tmp_path), repo="", dags_folder="", hosts={}, ports={"oncall_inbox": 9095},
                 secrets={}, bind_host="127.0.0.1", tls=True)
    config = alertmanager.render(alertmanager.inbox_webhook(tls, "127.0.0.1"), "/secrets/oncall_inbox_token", None)
    webhook = config["receivers"][0]["webhook_configs"][0]
    assert webhook["url"] == "https://127.0.0.1:9095/webhook"
    assert webhook["http_config"]["tls_config"] == {"ca_file": f"{tmp_path}/tls/ca.crt"}
    path = tmp_path / "alertmanager.yml"
    path.write_text(alertmanager.to_yaml(config))
    checked = amtool("check-config", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
