"""Base URLs of the HTTP services the DAGs call, from their Airflow connections."""

from __future__ import annotations


def http_base_url(conn_id: str) -> str:
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    return f"{conn.schema or 'http'}://{conn.host}:{conn.port}"
