"""Transactions that behave the same on psycopg2 and psycopg 3 connections.

`with conn:` commits on psycopg2 but closes the connection on psycopg 3 (which the postgres
provider's hook may return), so code here commits explicitly.
"""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def transaction(conn):
    """A cursor whose work is committed on success and rolled back on any error."""
    try:
        with conn.cursor() as cur:
            yield cur
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
