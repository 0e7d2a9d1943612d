"""The PostgreSQL exporter's custom query, run by the real exporter as the model starts it, against a
throwaway airflow database: queued and running task instances per queue, read by the `monitoring`
role through its column grant (stackctl.native.postgres.grant_monitoring) and nothing else of Airflow's data.

Needs Debian's prometheus-postgres-exporter (`make setup`) and the session's PostgreSQL (conftest).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import psycopg2
import pytest
import yaml
from port_for import get_port
from prometheus_client.parser import text_string_to_metric_families
from psycopg2 import errors, sql

from stackctl.model import debian, monitoring, processes, settings
from stackctl.model.process import Process
from stackctl.model.target import NATIVE, Target
from stackctl.native import postgres
from stackctl.render import prometheus

# The columns of Airflow's task_instance the query reads, and a few it must not.
TASK_INSTANCE = """
CREATE TABLE task_instance (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    dag_id varchar(250) NOT NULL, task_id varchar(250) NOT NULL, run_id varchar(250) NOT NULL,
    map_index integer NOT NULL DEFAULT -1, queue varchar(256), state varchar(20), pool varchar(256)
);
CREATE INDEX ti_state ON task_instance (state);
"""
ROWS = {("light", "queued"): 5, ("light", "running"): 3, ("light", "success"): 40, ("heavy", "running"): 1,
        ("heavy", "deferred"): 2, ("heavy", "scheduled"): 4}


@pytest.fixture
def airflow_db(platform_pg, new_platform_db):
    """An `airflow` database with a task_instance table, and the cluster's `monitoring` role (pg_monitor)."""
    admin = psycopg2.connect(host=platform_pg.host, port=platform_pg.port, user=platform_pg.user, dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (postgres.MONITORING_ROLE,))
        if not cur.fetchone():
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(postgres.MONITORING_ROLE)))
        cur.execute(sql.SQL("GRANT pg_monitor TO {}").format(sql.Identifier(postgres.MONITORING_ROLE)))
    admin.close()
    with new_platform_db("airflow") as conn:  # the platform's tables come along: no matter
        with conn.cursor() as cur:
            cur.execute(TASK_INSTANCE)
            for (queue, state), count in ROWS.items():
                cur.executemany(
                    "INSERT INTO task_instance (dag_id, task_id, run_id, queue, state) VALUES ('d', %s, 'r', %s, %s)",
                    [(f"t{i}", queue, state) for i in range(count)])
        conn.commit()
        try:
            yield conn
        finally:
            with conn.cursor() as cur:  # the role outlives the database: leave it nothing
                cur.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(postgres.MONITORING_ROLE)))
            conn.commit()


def as_monitoring(platform_pg):
    return psycopg2.connect(host=platform_pg.host, port=platform_pg.port, user=postgres.MONITORING_ROLE,
                            dbname="airflow")


def test_the_monitoring_role_reads_queue_and_state_only(platform_pg, airflow_db):
    reader = as_monitoring(platform_pg)
    try:
        with reader.cursor() as cur, pytest.raises(errors.InsufficientPrivilege):
            cur.execute("SELECT queue, state FROM task_instance")
        reader.rollback()
        postgres.grant_monitoring(airflow_db)
        postgres.grant_monitoring(airflow_db)  # again after the next migration: harmless
        with reader.cursor() as cur:
            cur.execute("SELECT count(*) FROM task_instance WHERE state = 'queued'")
            assert cur.fetchone() == (ROWS["light", "queued"],)
            with pytest.raises(errors.InsufficientPrivilege):
                cur.execute("SELECT dag_id FROM task_instance")
        reader.rollback()
        with reader.cursor() as cur, pytest.raises(errors.InsufficientPrivilege):
            cur.execute("UPDATE task_instance SET state = 'failed'")
    finally:
        reader.close()


def test_the_queries_file_declares_the_metric_the_rules_read():
    queries = yaml.safe_load((settings.REPO / monitoring.POSTGRES_EXPORTER_QUERIES).read_text())
    columns = {name: spec["usage"] for metric in queries["airflow_queue"]["metrics"] for name, spec in metric.items()}
    assert columns == {"queue": "LABEL", "state": "LABEL", "task_instances": "GAUGE"}
    rules = prometheus.expected_workers_rules(settings.load_source())["groups"][0]["rules"]
    assert any("airflow_queue_task_instances{" in rule["expr"] for rule in rules)


def exporter_process(tmp_path: Path, pg_port: int, port: int) -> Process:
    """The native model's postgres-exporter, pointed at the test server."""
    source = settings.load_source()
    ports = {**source["ports"], "postgres": pg_port, "postgres_exporter": port}
    target = Target(kind=NATIVE, home=str(tmp_path), dags_folder="", repo=str(settings.REPO),
                    hosts=dict.fromkeys(ports, "127.0.0.1"), ports=ports, secrets={}, bind_host="127.0.0.1")
    model = processes.model(source, target)
    return next(p for p in model if p.name == "postgres-exporter")


def scrape(url: str, deadline: float) -> dict[str, list]:
    while True:
        try:
            text = httpx.get(url, timeout=5).text
            families = {f.name: f.samples for f in text_string_to_metric_families(text)}
            if "airflow_queue_task_instances" in families or time.monotonic() > deadline:
                return families
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.3)


def test_the_exporter_counts_queued_and_running_task_instances_per_queue(platform_pg, airflow_db, tmp_path):
    process = exporter_process(tmp_path, platform_pg.port, get_port(None))
    assert process.env["DATA_SOURCE_URI"].split("/")[1].startswith("airflow?")
    binary = shutil.which(debian.executable(process.argv[0]))
    assert binary, "prometheus-postgres-exporter is not installed: run `make setup`"
    postgres.grant_monitoring(airflow_db)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "monitoring_db_password").write_text("unused-trust-auth")  # the test server trusts loopback
    exporter = subprocess.Popen([binary, *process.argv[1:]], env=process.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    try:
        address = next(a for a in process.argv if a.startswith("--web.listen-address=")).split("=", 1)[1]
        families = scrape(f"http://{address}/metrics", time.monotonic() + 20)
    finally:
        exporter.terminate()
        _, stderr = exporter.communicate(timeout=10)
    counts = {(s.labels["queue"], s.labels["state"]): s.value for s in families.get("airflow_queue_task_instances", [])}
    assert counts == {("light", "queued"): 5, ("light", "running"): 3, ("heavy", "running"): 1}, stderr[-2000:]
    values = {name: samples[0].value for name, samples in families.items() if len(samples) == 1}
    assert values["pg_up"] == 1 and values["pg_exporter_last_scrape_error"] == 0, stderr[-2000:]
    # The built-in metric the Celery dashboard reads still covers every database of the cluster.
    assert {"airflow", "postgres"} <= {s.labels["datname"] for s in families["pg_stat_activity_count"]}


def test_compose_runs_the_same_queries_on_the_airflow_database():
    from stackctl.render import compose

    source = settings.load_source()
    process = next(p for p in compose.model(source) if p.name == "postgres-exporter")
    service = compose.service(source, compose.model(source), process)
    mounted = dict(volume.removesuffix(":ro").split(":") for volume in service["volumes"])
    path = next(arg for arg in service["command"] if arg.startswith("--extend.query-path=")).split("=", 1)[1]
    assert mounted == {f"../{monitoring.POSTGRES_EXPORTER_QUERIES}": path}
    assert (compose.COMPOSE_FILE.parent / f"../{monitoring.POSTGRES_EXPORTER_QUERIES}").resolve().is_file()
    assert service["environment"]["DATA_SOURCE_URI"].split("/")[1].startswith("airflow?")
