"""How each listener authenticates its callers, by port: the one table the renderers, the probes,
the operator's clients and the README read.

    WEB_CONFIG  basic auth from the exporter toolkit's --web.config.file: a bcrypt hash of the
                secret, user admin_user (Prometheus, Alertmanager, the Pushgateway; render/web_auth.py)
    BASIC       basic auth checked by the program itself, user admin_user (Flower)
    BEARER      a bearer token on the routes that change state, read from --token-file
                (services/auth.py); health and metrics routes stay open
    LOGIN       a user logs in: the Airflow UI and REST API (for a JWT), Grafana, MinIO (admin_user)
    PASSWORD    a database or broker password (per role)

A port absent here takes no credential: it binds to loopback, or serves only metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.freshpoc import services as freshpoc_services

WEB_CONFIG, BASIC, BEARER, LOGIN, PASSWORD = "web config", "basic", "bearer", "login", "password"


@dataclass(frozen=True)
class Credential:
    scheme: str
    secret: str  # the secret the listener checks ("" where each role has its own)


CREDENTIALS = {
    "api": Credential(LOGIN, "admin_password"),
    "flower": Credential(BASIC, "flower_password"),
    "prometheus": Credential(WEB_CONFIG, "prometheus_password"),
    "alertmanager": Credential(WEB_CONFIG, "alertmanager_password"),
    "pushgateway": Credential(WEB_CONFIG, "pushgateway_password"),
    "inference": Credential(BEARER, "inference_token"),
    "oncall_inbox": Credential(BEARER, "oncall_inbox_token"),
    # The FreshPoC services with job routes share one token.
    **{service.conn_id: Credential(BEARER, "freshpoc_token") for service in freshpoc_services.JOB_SERVICES},
    "postgres": Credential(PASSWORD, ""),
    "redis": Credential(PASSWORD, ""),  # a user per role: model/redis_users.py
    # Compose only: Grafana's admin; MinIO's root user, for its S3 API (signed requests) and console.
    "grafana": Credential(LOGIN, "grafana_admin_password"),
    "minio": Credential(LOGIN, "minio_root_password"),
    "minio_console": Credential(LOGIN, "minio_root_password"),
}


def secrets_of(scheme: str) -> dict[str, str]:
    """{port: secret} of the listeners that take one scheme."""
    return {port: credential.secret for port, credential in CREDENTIALS.items() if credential.scheme == scheme}


# The listeners with a basic-auth web config, and the secret each hashes (render/web_auth.py).
WEB_CONFIG_SECRETS = secrets_of(WEB_CONFIG)
# The listeners behind basic auth of either kind: what Prometheus sends when it scrapes or alerts,
# and the probes send.
BASIC_AUTH_SECRETS = {**secrets_of(BASIC), **secrets_of(WEB_CONFIG)}
# Listeners whose state-changing routes take a bearer token, and the secret each reads from --token-file.
TOKEN_SECRETS = secrets_of(BEARER)
