"""What Airflow's async engine passes asyncpg: config.yaml's [database] sql_alchemy_connect_args_async.

Airflow imports ASYNC_CONNECT_ARGS (conf.getimport), in each of its processes. asyncpg takes TLS as
an SSL context, not as libpq's sslmode and sslrootcert, so the context is built from the sync URL's
(one setting says how Airflow reaches its database): verify-full is a context that checks the
server's certificate against the CA and that it names the host dialled.
"""

from __future__ import annotations

import ssl
from typing import Any

from sqlalchemy.engine import make_url


def connect_args(sync_url: str) -> dict[str, Any]:
    query = make_url(sync_url).query
    if query.get("sslmode") != "verify-full":
        return {}
    return {"ssl": ssl.create_default_context(cafile=query["sslrootcert"])}


def _from_airflow_config() -> dict[str, Any]:
    from airflow.configuration import conf

    return connect_args(conf.get("database", "sql_alchemy_conn"))


ASYNC_CONNECT_ARGS = _from_airflow_config()
