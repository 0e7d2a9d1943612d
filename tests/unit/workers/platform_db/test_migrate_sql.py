"""The platform database's migrations against a real PostgreSQL: order, bookkeeping, idempotence."""

import hashlib

import pytest

from workers.platform_db import migrate

PLATFORM_TABLES = {"tenants", "users", "items", "user_interactions", "model_training_runs", "dq_results",
                   "alert_outbox", "freshpoc_nodes", "freshpoc_edges", "schema_migrations",
                   "dq_watermarks", "dq_hourly", "dq_totals", "dq_orphans", "dq_tenant_config"}


def tables(conn) -> set[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {name for (name,) in cur.fetchall()}


def recorded(conn) -> list[tuple[int, str, str]]:
    with conn.cursor() as cur:
        cur.execute("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
        return cur.fetchall()


def test_every_migration_applies_to_an_empty_database_in_order_and_is_recorded(empty_db):
    files = migrate.migration_files()
    assert [version for version, _ in files] == sorted(version for version, _ in files)
    assert tables(empty_db) == set()

    applied = migrate.apply(empty_db)

    assert applied == [path.name for _, path in files]
    assert tables(empty_db) == PLATFORM_TABLES
    assert recorded(empty_db) == [(version, path.name, hashlib.sha256(path.read_bytes()).hexdigest())
                                  for version, path in files]


def test_a_second_run_applies_nothing_and_keeps_the_data(empty_db):
    migrate.apply(empty_db)
    with empty_db.cursor() as cur:
        cur.execute("INSERT INTO tenants (tenant_id, name) VALUES ('acme', 'Acme')")
    empty_db.commit()

    assert migrate.apply(empty_db) == []

    assert len(recorded(empty_db)) == len(migrate.migration_files())
    with empty_db.cursor() as cur:
        cur.execute("SELECT tenant_id FROM tenants")
        assert cur.fetchall() == [("acme",)]


def test_only_the_new_migration_is_applied_on_top_of_the_recorded_ones(empty_db, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    for _, path in migrate.migration_files():
        (folder / path.name).write_bytes(path.read_bytes())
    migrate.apply(empty_db, folder)
    (folder / "V900__tenant_notes.sql").write_text("ALTER TABLE tenants ADD COLUMN notes text;")

    assert migrate.apply(empty_db, folder) == ["V900__tenant_notes.sql"]
    assert recorded(empty_db)[-1][:2] == (900, "V900__tenant_notes.sql")


def test_an_applied_migration_that_changed_is_refused(empty_db, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "V001__one.sql").write_text("CREATE TABLE one (id int);")
    migrate.apply(empty_db, folder)
    (folder / "V001__one.sql").write_text("CREATE TABLE one (id bigint);")

    with pytest.raises(migrate.MigrationError, match="changed after it was applied"):
        migrate.apply(empty_db, folder)


def test_a_failing_migration_leaves_nothing_behind_and_the_earlier_ones_stay(empty_db, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "V001__one.sql").write_text("CREATE TABLE one (id int);")
    (folder / "V002__broken.sql").write_text("CREATE TABLE two (id int); SELECT * FROM no_such_table;")

    with pytest.raises(Exception, match="no_such_table"):
        migrate.apply(empty_db, folder)

    assert tables(empty_db) == {"schema_migrations", "one"}
    assert [row[:2] for row in recorded(empty_db)] == [(1, "V001__one.sql")]


def test_the_session_template_holds_every_migration(platform_db):
    assert tables(platform_db) == PLATFORM_TABLES
    assert migrate.apply(platform_db) == []
