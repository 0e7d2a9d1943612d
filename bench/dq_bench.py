"""All data-quality checks over 10M interactions across 20 tenants, against pulling the same rows into pandas.

It uses the native stack's PostgreSQL (`make up` first; `make bench` does) with a database of
its own, `dq_bench`, migrated like the platform database and filled once by SQL (20 tenants,
500k interactions each over 60 days, 20k users and 5k items each). Then, in the same run:

- pushdown: every check of data_quality_check (completeness, freshness, anomalies with the
  volume z-score and bot detection) as the DAG runs them: SQL that returns aggregates only;
- pull: the rows those checks read (interactions, users, items) copied into pandas
  DataFrames, the first step of checking them in Python. Target: pushdown under 30 s.

    .venv/bin/python bench/dq_bench.py
"""

from __future__ import annotations

import io
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "airflow")]

import pandas as pd  # noqa: E402
import psycopg2  # noqa: E402
from psycopg2 import sql  # noqa: E402

from stackctl import postgres  # noqa: E402
from stackctl.cli import DEFAULT_HOME  # noqa: E402
from stackctl.layout import NativeStack  # noqa: E402
from workers.dq import checks  # noqa: E402
from workers.platform_db import migrate  # noqa: E402
from workers.platform_db.db import transaction  # noqa: E402

DATABASE = "dq_bench"
TENANTS = [f"bench-{n:02d}" for n in range(20)]
PER_TENANT = 500_000
END = datetime(2026, 11, 1, tzinfo=UTC)


def bench_connection(stack: NativeStack):
    admin = postgres.connect(stack, stack.read_secret("postgres_superuser_password"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if not cur.fetchone():
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER platform").format(sql.Identifier(DATABASE)))
    admin.close()
    conn = postgres.connect(stack, stack.read_secret("platform_db_password"), user="platform", dbname=DATABASE)
    migrate.apply(conn)
    return conn


def fill(conn) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM user_interactions")
        if cur.fetchone()[0] == len(TENANTS) * PER_TENANT:
            return
    print(f"filling {DATABASE} with {len(TENANTS) * PER_TENANT:,} interactions (once)...", file=sys.stderr)
    with transaction(conn) as cur:
        cur.execute("TRUNCATE user_interactions, users, items, model_training_runs, tenants CASCADE")
        for tenant in TENANTS:
            cur.execute("INSERT INTO tenants (tenant_id, name) VALUES (%s, %s)", (tenant, tenant))
            cur.execute("INSERT INTO users SELECT %s, g, %s FROM generate_series(1, 20000) g", (tenant, END))
            cur.execute("INSERT INTO items SELECT %s, g, 'item', 'topic', %s, %s - g * interval '1 minute'"
                        " FROM generate_series(1, 5000) g", (tenant, END, END))
            cur.execute(
                "INSERT INTO user_interactions (tenant_id, user_id, item_id, interaction_type, weight, occurred_at)"
                " SELECT %s, 1 + floor(random() * 20000)::bigint, 1 + floor(power(random(), 3) * 5000)::bigint,"
                " (ARRAY['view', 'click', 'purchase'])[1 + floor(random() * 3)::int], 1.0,"
                " %s - random() * interval '60 days' FROM generate_series(1, %s)",
                (tenant, END, PER_TENANT),
            )
            cur.execute("INSERT INTO model_training_runs (dag_run_id, tenant_id, status, started_at)"
                        " VALUES ('bench', %s, 'success', %s)", (tenant, END - timedelta(hours=2)))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    conn.autocommit = False


def pushdown(conn) -> tuple[float, int]:
    started = time.perf_counter()
    found = (checks.completeness(conn, TENANTS) + checks.freshness(conn, TENANTS, END)
             + checks.anomalies(conn, TENANTS, END))
    return time.perf_counter() - started, len(found)


def pull(conn) -> tuple[float, int]:
    started = time.perf_counter()
    frames = {}
    for table in ("user_interactions", "users", "items"):
        buffer = io.StringIO()
        with conn.cursor() as cur:
            cur.copy_expert(f"COPY {table} TO STDOUT WITH (FORMAT csv, HEADER)", buffer)
        buffer.seek(0)
        frames[table] = pd.read_csv(buffer)
    return time.perf_counter() - started, sum(len(f) for f in frames.values())


def main() -> int:
    stack = NativeStack.load(DEFAULT_HOME)
    try:
        conn = bench_connection(stack)
    except psycopg2.OperationalError as exc:
        raise SystemExit(f"dq_bench needs the native stack: run `make up` first ({exc})") from None
    fill(conn)
    pushdown(conn)  # warm the buffer cache for both sides
    push_s, results = pushdown(conn)
    pull_s, rows = pull(conn)
    conn.close()
    print(f"\ndata-quality benchmark: {len(TENANTS)} tenants, {len(TENANTS) * PER_TENANT:,} interactions\n")
    print(f"  all checks pushed down to PostgreSQL   {push_s:7.1f} s   {results} results "
          f"(target < 30 s: {'met' if push_s < 30 else 'MISSED'})")
    print(f"  the same rows pulled into pandas       {pull_s:7.1f} s   {rows:,} rows, before any check")
    print(f"  pull / pushdown                        {pull_s / push_s:7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
