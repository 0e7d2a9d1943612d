"""Data-quality checks at 10M interactions across 20 tenants: a steady-state (incremental) run, a full
re-check, and pulling the same rows into pandas; and the steady-state run again over 40M interactions.

It uses the native stack's PostgreSQL (`make up` first; `make bench` does), or any PostgreSQL given
with --dsn, with databases of its own, migrated like the platform database and filled once by SQL:

    dq_bench      20 tenants, 500k interactions each over 60 days (10M), 20k users and 5k items each
    dq_bench_40m  the same tenants at the same rate over 240 days (40M): four times the history

Then, in the same run, on each database:

- full: data_quality_check with full_recheck, every summary recounted from all history, then the checks;
- steady state: a 6-hour batch of new interactions arrives (about 41.7k, the data's rate), and a run
  brings the summaries forward from the watermarks and runs every check (update_summaries and the
  three check tasks of data_quality_check). The median of three batches, after a first one warmed
  the same path (the machine may be shared: a single figure can be another process's);
- pull (10M only): the rows the checks read (interactions, users, items) copied into pandas
  DataFrames, the first step of checking them in Python.

Goals: steady state at least 10x faster than the pull, and at most 1.5x slower at 40M than at 10M.
The batches are deleted at the end (the next run starts with a full recount anyway).

    .venv/bin/python bench/dq_bench.py [--dsn 'host=... user=... dbname=postgres']
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "airflow")]

import pandas as pd  # noqa: E402
import psycopg2  # noqa: E402
from psycopg2 import sql  # noqa: E402

from stackctl.cli import DEFAULT_HOME  # noqa: E402
from stackctl.native import postgres  # noqa: E402
from stackctl.native.stack import NativeStack  # noqa: E402
from workers.dq import checks, summaries  # noqa: E402
from workers.platform_db import migrate  # noqa: E402
from workers.platform_db.db import transaction  # noqa: E402

TENANTS = [f"bench-{n:02d}" for n in range(20)]
PER_DAY = 500_000 / 60  # per tenant: 10M over 60 days across 20 tenants
HISTORIES = {"dq_bench": 60, "dq_bench_40m": 240}  # database -> days of history
END = datetime(2026, 11, 1, tzinfo=UTC)
BATCH = timedelta(hours=6)


def connections(dsn: str | None):
    """A function that opens a connection to a bench database, creating it if need be."""
    if dsn:
        admin = psycopg2.connect(dsn)

        def connect(database):
            return psycopg2.connect(dsn, dbname=database)
    else:
        stack = NativeStack.load(DEFAULT_HOME)
        admin = postgres.connect(stack, stack.read_secret("postgres_superuser_password"))

        def connect(database):
            return postgres.connect(stack, stack.read_secret("platform_db_password"), user="platform", dbname=database)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT current_user")
        owner = "platform" if not dsn else cur.fetchone()[0]
        for database in HISTORIES:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if not cur.fetchone():
                cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database),
                                                                       sql.Identifier(owner)))
    admin.close()

    def migrated(database):
        conn = connect(database)
        migrate.apply(conn)
        return conn
    return migrated


def fill(conn, days: int) -> float | None:
    """Seconds the load took, or None when the database was filled before."""
    per_tenant = round(PER_DAY * days)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM user_interactions WHERE occurred_at <= %s", (END,))
        if cur.fetchone()[0] == len(TENANTS) * per_tenant:
            return None
    print(f"filling with {len(TENANTS) * per_tenant:,} interactions over {days} days (once)...", file=sys.stderr)
    started = time.perf_counter()
    with transaction(conn) as cur:
        cur.execute("TRUNCATE user_interactions, users, items, model_training_runs, tenants CASCADE")
        # Built once after the load: maintaining it row by row is most of an indexed load's time.
        cur.execute("DROP INDEX IF EXISTS user_interactions_tenant_time")
    for tenant in TENANTS:
        with transaction(conn) as cur:
            cur.execute("INSERT INTO tenants (tenant_id, name) VALUES (%s, %s)", (tenant, tenant))
            cur.execute("INSERT INTO users SELECT %s, g, %s FROM generate_series(1, 20000) g", (tenant, END))
            cur.execute("INSERT INTO items SELECT %s, g, 'item', 'topic', %s, %s - g * interval '1 minute'"
                        " FROM generate_series(1, 5000) g", (tenant, END, END))
            cur.execute(
                "INSERT INTO user_interactions (tenant_id, user_id, item_id, interaction_type, weight, occurred_at)"
                " SELECT %s, 1 + floor(random() * 20000)::bigint, 1 + floor(power(random(), 3) * 5000)::bigint,"
                " (ARRAY['view', 'click', 'purchase'])[1 + floor(random() * 3)::int], 1.0,"
                " %s - random() * make_interval(days => %s) FROM generate_series(1, %s)",
                (tenant, END, days, per_tenant),
            )
            cur.execute("INSERT INTO model_training_runs (dag_run_id, tenant_id, status, started_at)"
                        " VALUES ('bench', %s, 'success', %s)", (tenant, END - timedelta(hours=2)))
    with transaction(conn) as cur:
        cur.execute("SET maintenance_work_mem = '512MB'")
        cur.execute("CREATE INDEX user_interactions_tenant_time ON user_interactions (tenant_id, occurred_at)")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    conn.autocommit = False
    return time.perf_counter() - started


def arrive(conn, start: datetime) -> int:
    """One batch of new interactions: BATCH of events at the data's rate, one ingestion transaction."""
    per_tenant = round(PER_DAY * BATCH / timedelta(days=1))
    with transaction(conn) as cur:
        cur.execute(
            "INSERT INTO user_interactions (tenant_id, user_id, item_id, interaction_type, weight, occurred_at)"
            " SELECT t, 1 + floor(random() * 20000)::bigint, 1 + floor(power(random(), 3) * 5000)::bigint,"
            " (ARRAY['view', 'click', 'purchase'])[1 + floor(random() * 3)::int], 1.0,"
            " %s + random() * %s FROM unnest(%s::text[]) AS t, generate_series(1, %s)",
            (start, BATCH, TENANTS, per_tenant))
    return per_tenant * len(TENANTS)


def run(conn, as_of: datetime, full: bool) -> tuple[float, int, dict]:
    """One data_quality_check run's database work: update_summaries, then the three check tasks."""
    started = time.perf_counter()
    done = summaries.refresh(conn, TENANTS, full=full)
    found = (checks.completeness(conn, TENANTS) + checks.freshness(conn, TENANTS, as_of)
             + checks.anomalies(conn, TENANTS, as_of))
    conn.commit()
    return time.perf_counter() - started, len(found), done


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


def measure(conn, days: int, with_pull: bool) -> dict:
    figures = {"load_s": fill(conn, days)}
    with transaction(conn) as cur:  # batches a previous run left (flags a recount, which comes next anyway)
        cur.execute("DELETE FROM user_interactions WHERE occurred_at > %s", (END,))
        cur.execute("SELECT count(*) FROM user_interactions")
        figures["rows"] = cur.fetchone()[0]
    figures["full_s"], figures["results"], _ = run(conn, END, full=True)
    arrive(conn, END)
    run(conn, END + BATCH, full=False)  # the first batch: warms the incremental path
    steady = []
    for n in range(1, 4):
        figures["batch"] = arrive(conn, END + n * BATCH)
        seconds, _, done = run(conn, END + (n + 1) * BATCH, full=False)
        assert done["full"] == [] and len(done["incremental"]) == len(TENANTS), done
        steady.append(seconds)
    figures["steady_s"] = statistics.median(steady)
    if with_pull:
        figures["pull_s"], figures["pulled"] = pull(conn)
    with transaction(conn) as cur:
        cur.execute("DELETE FROM user_interactions WHERE occurred_at > %s", (END,))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="a PostgreSQL to use instead of the native stack's (a superuser's DSN)")
    args = parser.parse_args()
    try:
        connect = connections(args.dsn)
    except psycopg2.OperationalError as exc:
        raise SystemExit(f"dq_bench needs the native stack (`make up` first) or --dsn ({exc})") from None
    found = {}
    for database, days in HISTORIES.items():
        conn = connect(database)
        try:
            found[database] = measure(conn, days, with_pull=database == "dq_bench")
        finally:
            conn.close()
    small, large = found["dq_bench"], found["dq_bench_40m"]
    print(f"\ndata-quality benchmark: {len(TENANTS)} tenants; steady state = a run after a 6-hour batch of "
          f"{small['batch']:,} new interactions\n")
    print(f"  {'':44}{small['rows'] / 1e6:>8.0f}M{large['rows'] / 1e6:>9.0f}M  history")
    print(f"  {'steady state (incremental run, all checks)':44}{small['steady_s']:8.2f} s{large['steady_s']:7.2f} s"
          f"   40M / 10M {large['steady_s'] / small['steady_s']:.2f}x (goal <= 1.5x: "
          f"{'met' if large['steady_s'] <= 1.5 * small['steady_s'] else 'MISSED'})")
    print(f"  {'full re-check (recount + all checks)':44}{small['full_s']:8.2f} s{large['full_s']:7.2f} s"
          f"   {small['results']} results a run")
    print(f"  {'the same rows pulled into pandas':44}{small['pull_s']:8.2f} s{'':9}   {small['pulled']:,} rows,"
          " before any check")
    ratio = small["pull_s"] / small["steady_s"]
    print(f"  {'pull / steady state':44}{ratio:8.1f}x{'':9}   goal >= 10x: {'met' if ratio >= 10 else 'MISSED'}")
    print(f"  {'pull / full re-check':44}{small['pull_s'] / small['full_s']:8.1f}x")
    for database, figures in found.items():
        if figures["load_s"] is not None:
            print(f"  loading {database} took {figures['load_s']:.0f} s (INSERT ... SELECT in the server,"
                  " the time index built after)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
