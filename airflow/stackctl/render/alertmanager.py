"""Alertmanager's configuration: routing by severity, receivers from secrets when present.

Every alert also reaches the local on-call inbox (services/oncall_inbox) by webhook, so a
user sees a page arrive without a PagerDuty or Slack account. Critical alerts go to
PagerDuty when `<secrets>/pagerduty_routing_key` exists, warnings to Slack when
`<secrets>/slack_webhook_url` exists; Alertmanager reads both from their files. Compose and
ansible render without a secrets folder, so every notification goes to the inbox alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stackctl.model.target import TLS_CA, Target

# How long a group waits for more alerts before its first notification, and how often an
# alert that keeps firing is notified again (the DQ DAG re-sends every 6 hours).
GROUP_WAIT = "10s"
GROUP_INTERVAL = "1m"
REPEAT_INTERVAL = "12h"


def inbox_webhook(target: Target, host: str) -> dict[str, Any]:
    """The on-call inbox's webhook, which every receiver notifies: its URL, and over HTTPS the CA its
    certificate is verified against."""
    scheme = target.scheme("oncall_inbox")
    webhook: dict[str, Any] = {"url": f"{scheme}://{host}:{target.port('oncall_inbox')}/webhook"}
    if scheme == "https":
        webhook["tls_config"] = {"ca_file": target.tls_file(TLS_CA)}
    return webhook


def render(inbox_webhook: dict[str, Any], inbox_token_file: str, secrets_dir: Path | None) -> dict:
    """inbox_webhook: inbox_webhook()'s. inbox_token_file: the on-call inbox's bearer token, which the
    webhook sends (the inbox refuses a notification without it). secrets_dir: where the optional
    PagerDuty and Slack secrets are."""
    def secret_file(name: str) -> Path | None:
        return secrets_dir / name if secrets_dir and (secrets_dir / name).exists() else None

    tls = {"tls_config": inbox_webhook["tls_config"]} if "tls_config" in inbox_webhook else {}
    inbox = {"url": inbox_webhook["url"], "send_resolved": True,
             "http_config": {"authorization": {"type": "Bearer", "credentials_file": inbox_token_file}, **tls}}
    critical: dict = {"name": "critical", "webhook_configs": [inbox]}
    warning: dict = {"name": "warning", "webhook_configs": [inbox]}
    pagerduty, slack = secret_file("pagerduty_routing_key"), secret_file("slack_webhook_url")
    if pagerduty:
        critical["pagerduty_configs"] = [{"routing_key_file": str(pagerduty), "send_resolved": True}]
    if slack:
        warning["slack_configs"] = [
            {"api_url_file": str(slack), "send_resolved": True,
             "title": '{{ .CommonLabels.alertname }} {{ .CommonLabels.tenant }}',
             "text": '{{ range .Alerts }}{{ .Annotations.description }}\n{{ end }}'}
        ]
    return {
        "route": {
            "receiver": "warning",
            "group_by": ["alertname", "tenant", "table", "check"],
            "group_wait": GROUP_WAIT,
            "group_interval": GROUP_INTERVAL,
            "repeat_interval": REPEAT_INTERVAL,
            "routes": [
                {"receiver": "critical", "matchers": ['severity="critical"']},
                {"receiver": "warning", "matchers": ['severity="warning"']},
            ],
        },
        # A stopped scheduler explains every other Airflow symptom: page for the cause only.
        "inhibit_rules": [
            {
                "source_matchers": ['alertname="AirflowSchedulerDown"'],
                "target_matchers": ['component="airflow"', 'alertname!="AirflowSchedulerDown"'],
            }
        ],
        "receivers": [critical, warning],
    }


def to_yaml(config: dict) -> str:
    return "# Rendered by stackctl (airflow/stackctl/render/alertmanager.py). Do not edit.\n" + yaml.safe_dump(
        config, sort_keys=False
    )
