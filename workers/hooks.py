"""The only code that reads Airflow connections and variables, as a provider's hook is.

Everything else asks this module for a client (the platform database, Redis, an HTTP
service's base URL, the storage root). The values are Airflow's, read through its secrets
backend, so no URL or secret is on a command line, and a unit test supplies them as
AIRFLOW_CONN_*/AIRFLOW_VAR_* environment variables.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import redis

DB_CONN_ID = "platform_db"
REDIS_CONN_ID = "platform_redis"  # the cache, as its writer
CACHE_READER_CONN_ID = "platform_redis_reader"  # the cache, read only
INFERENCE_CONN_ID = "inference_api"
PUSHGATEWAY_CONN_ID = "pushgateway"
ALERTMANAGER_CONN_ID = "alertmanager"
STORAGE_URI_VAR = "platform_storage_uri"
# An Airflow AWS connection for an s3:// root; empty for file://.
STORAGE_CONN_ID_VAR = "platform_storage_conn_id"


def platform_db():
    """A connection to the platform database for a task, through the Postgres provider's hook."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=DB_CONN_ID).get_conn()


def platform_db_for_service():
    """A connection to the platform database for a service's request: psycopg2 with a 5 s connect timeout."""
    import psycopg2
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(DB_CONN_ID)
    # The extra's libpq parameters (with tls, sslmode and sslrootcert), as the provider's hook passes them.
    return psycopg2.connect(host=conn.host, port=conn.port, user=conn.login, password=conn.password,
                            dbname=conn.schema, connect_timeout=5, **conn.extra_dejson)


def platform_storage_root():
    """The root of platform data and model artifacts (see workers/storage.py)."""
    from airflow.sdk import Variable

    from workers import storage  # numpy and Airflow's object storage: not for stackctl's model, which reads the ids

    return storage.root(Variable.get(STORAGE_URI_VAR), Variable.get(STORAGE_CONN_ID_VAR, default=""))


class HttpService(NamedTuple):
    """An HTTP service the tasks call: its base URL, its connection's basic auth (None without a password),
    and how httpx verifies it (an SSL context trusting the connection's CA, or True)."""

    url: str
    auth: tuple[str, str] | None
    verify: ssl.SSLContext | bool


def http_service(conn_id: str) -> HttpService:
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    return _http_service(conn, conn.extra_dejson)


async def ahttp_service(conn_id: str) -> HttpService:
    """http_service for a trigger, on the triggerer's event loop: the extra's secrets are masked
    asynchronously (the synchronous extra_dejson would block the loop on the supervisor)."""
    from airflow.sdk import BaseHook

    conn = await BaseHook.aget_connection(conn_id)
    return _http_service(conn, await conn.aextra_dejson())


def _http_service(conn, extra: dict) -> HttpService:
    """A service guarded by a bearer token takes it as the basic password too (services/auth.py), so a
    connection holding a token alone sends it with the login `airflow`. An https service is verified
    against the CA file in the extra's `verify`, the key HttpHook reads too."""
    auth = (conn.login or "airflow", conn.password) if conn.password else None
    verify = extra.get("verify", True)
    if isinstance(verify, str):
        verify = ssl.create_default_context(cafile=verify)
    return HttpService(f"{conn.schema or 'http'}://{conn.host}:{conn.port}", auth, verify)


def pushgateway() -> tuple[str, Callable]:
    """The Pushgateway's URL, and a prometheus_client push handler that sends with httpx, with its
    connection's basic auth and TLS verification (prometheus_client's own handlers take no CA of ours)."""
    import httpx

    service = http_service(PUSHGATEWAY_CONN_ID)

    def handler(url: str, method: str, timeout: float | None, headers: list, data: bytes) -> Callable:
        def send() -> None:
            try:
                response = httpx.request(method, url, headers=dict(headers), content=data, auth=service.auth,
                                         verify=service.verify, timeout=timeout)
            except httpx.HTTPError as exc:  # push_to_gateway's callers handle the OSError its handlers raise
                raise OSError(f"error talking to the Pushgateway at {url}: {exc}") from exc
            if response.status_code >= 400:
                raise OSError(f"error talking to the Pushgateway: {response.status_code} {response.text[:300]}")

        return send

    return service.url, handler


def redis_client(conn_id: str) -> redis.Redis:
    """A Redis client on the connection's host, user, password and database (its extra's `db`, else 0);
    over TLS, verifying the server against `ssl_ca_certs`, where its extra's `ssl` is true."""
    import redis
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    extra = json.loads(conn.extra or "{}")
    tls = {"ssl": True, "ssl_ca_certs": extra.get("ssl_ca_certs")} if extra.get("ssl") else {}
    return redis.Redis(host=conn.host, port=conn.port, username=conn.login or None, password=conn.password,
                       db=int(extra.get("db", 0)), socket_timeout=10, **tls)
