"""`stackctl backup` / `restore` without a stack: the archive (manifest last, checksums checked first),
the lock, the objects a backup takes, and pg_dump / pg_restore against a real PostgreSQL.

A whole stack's round trip is tests/resilience/test_backup_restore.py; an s3:// destination is
tests/integration/test_backup_s3.py.
"""

import json
import os
from pathlib import Path

import numpy as np
import psycopg2
import pytest

from stackctl import cli
from stackctl.errors import StackError
from stackctl.native.stack import PG_BIN_CANDIDATES
from stackctl.ops import backup, backup_archive
from workers import storage
from workers.training import artifacts

PG_BIN = Path(PG_BIN_CANDIDATES[0])


# --- the archive -----------------------------------------------------------------------------

def build(destination: str, files: dict[str, bytes], **manifest) -> str:
    with backup_archive.staging_folder(destination) as folder:
        for name, data in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        return backup_archive.publish(folder, destination, manifest)


def fetch(source: str) -> None:
    with backup_archive.fetched(source):
        pass


def test_a_published_backup_lists_every_file_with_its_checksum_and_leaves_no_partial_folder(tmp_path):
    where = build(str(tmp_path / "b1"), {"databases/a.dump": b"A", "objects/x/y": b"yy"}, tenants={"t": None})
    manifest = json.loads((Path(where) / "MANIFEST.json").read_text())
    assert manifest["files"] == {
        "databases/a.dump": {"bytes": 1, "sha256": "559aead08264d5795d3909718cdd05abd49572e84fe55590eef31a88a08fdffd"},
        "objects/x/y": {"bytes": 2, "sha256": backup_archive.sha256_of(Path(where) / "objects/x/y")},
    }
    assert manifest["tenants"] == {"t": None} and manifest["format"] == backup_archive.FORMAT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b1"]  # the staging folder was renamed, none left
    assert Path(where).stat().st_mode & 0o777 == 0o700
    with backup_archive.fetched(where) as (folder, fetched_manifest):
        assert folder == Path(where) and fetched_manifest == manifest


def test_a_backup_never_overwrites_one(tmp_path):
    build(str(tmp_path / "b1"), {"a": b"1"})
    with pytest.raises(StackError, match="exists; give a new folder"):
        build(str(tmp_path / "b1"), {"a": b"2"})
    assert (tmp_path / "b1" / "a").read_bytes() == b"1"


def test_a_failed_backup_leaves_nothing_under_the_destination(tmp_path):
    with pytest.raises(RuntimeError), backup_archive.staging_folder(str(tmp_path / "b1")) as folder:
        (folder / "half").write_bytes(b"x")
        raise RuntimeError("pg_dump died")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_without_its_manifest_is_not_restorable(tmp_path):
    (tmp_path / "b1" / "databases").mkdir(parents=True)
    with pytest.raises(StackError, match="has no MANIFEST.json: not a backup, or one that did not finish"):
        fetch(str(tmp_path / "b1"))


def test_a_damaged_backup_is_refused_naming_every_bad_file(tmp_path):
    where = Path(build(str(tmp_path / "b1"), {"a": b"1", "b": b"2", "c": b"3"}))
    (where / "a").write_bytes(b"9")  # same size, other content
    (where / "b").unlink()
    with pytest.raises(StackError, match=r"damaged, nothing was changed: a: checksum mismatch; b: missing$"):
        fetch(str(where))


def test_one_backup_or_restore_of_a_stack_at_a_time(tmp_path):
    def take():
        with backup_archive.exclusive(tmp_path):
            pass

    with backup_archive.exclusive(tmp_path), pytest.raises(StackError, match="another backup or restore .* running"):
        take()
    take()  # released on exit


# --- objects ---------------------------------------------------------------------------------

def publish_version(base, tenant: str, version: str, payload: bytes) -> None:
    folder = storage.models_dir(base, tenant) / version
    for name in artifacts.SERVED_FILES:
        storage.write_bytes(folder / name, payload + name.encode())
    storage.replace_json(folder / "manifest.json", {"version": version})


@pytest.fixture
def source(tmp_path):
    base = storage.root(f"file://{tmp_path / 'source'}")
    storage.write_array(storage.training_dir(base, "acme") / "part-00000.parquet", np.arange(3))
    storage.write_bytes(storage.staging_dir(base, "acme", "run1") / "index.faiss", b"staged")
    publish_version(base, "acme", "m-old", b"old")
    publish_version(base, "acme", "m-new", b"new")
    artifacts.write_pointer(base, "acme", "m-new")
    storage.write_array(storage.training_dir(base, "initech") / "part-00000.parquet", np.arange(5))
    return base


def test_a_backup_takes_pointers_the_versions_they_name_and_training_data_only(source, tmp_path):
    served = backup.copy_objects(source, tmp_path / "objects")
    assert served == {"acme": "m-new", "initech": None}
    taken = sorted(p.relative_to(tmp_path / "objects").as_posix() for p in (tmp_path / "objects").rglob("*")
                   if p.is_file())
    assert taken == sorted([
        "tenants/acme/models/CURRENT.json", "tenants/acme/models/m-new/manifest.json",
        *(f"tenants/acme/models/m-new/{name}" for name in artifacts.SERVED_FILES),
        "tenants/acme/training/interactions/part-00000.parquet",
        "tenants/initech/training/interactions/part-00000.parquet",
    ])


def test_restored_objects_serve_the_same_version_with_the_same_bytes(source, tmp_path):
    backup.copy_objects(source, tmp_path / "objects")
    target = storage.root(f"file://{tmp_path / 'target'}")
    backup.restore_objects(tmp_path / "objects", target)
    assert artifacts.read_pointer(target, "acme") == "m-new"
    for name in artifacts.SERVED_FILES:
        relative = f"tenants/acme/models/m-new/{name}"
        assert storage.read_bytes(target / relative) == storage.read_bytes(source / relative)
    assert (storage.read_array(storage.training_dir(target, "initech") / "part-00000.parquet") == np.arange(5)).all()


def test_a_pointer_to_an_unpublished_version_fails_the_backup_naming_it(source, tmp_path):
    artifacts.write_pointer(source, "acme", "m-gone")
    with pytest.raises(StackError, match="names m-gone, which has no manifest.json"):
        backup.copy_objects(source, tmp_path / "objects")


# --- databases -------------------------------------------------------------------------------

def database(server, name: str) -> backup.Database:
    return backup.Database(name, server.host, server.port, server.user, "")


def test_pg_dump_and_restore_round_trip_a_database(platform_pg, new_platform_db):
    with new_platform_db("bk_source") as conn:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO tenants (tenant_id, name) VALUES ('acme', 'Acme'), ('initech', 'Initech')")
        conn.commit()
        dump = Path(os.environ["AIRFLOW_HOME"]) / "bk_source.dump"
        backup.dump(PG_BIN, database(platform_pg, "bk_source"), dump)
    target = database(platform_pg, "bk_target")
    backup.restore_database(PG_BIN, database(platform_pg, "postgres"), target, dump)
    backup.restore_database(PG_BIN, database(platform_pg, "postgres"), target, dump)  # replaces, not appends
    conn = backup.postgres_connect(target)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT tenant_id FROM tenants ORDER BY tenant_id")
            assert cur.fetchall() == [("acme",), ("initech",)]
    finally:
        conn.close()


def test_a_failed_restore_leaves_the_database_empty_and_says_why(platform_pg, tmp_path):
    broken = tmp_path / "broken.dump"
    broken.write_bytes(b"PGDMP not really")
    target = database(platform_pg, "bk_broken")
    with pytest.raises(StackError, match="pg_restore of database bk_broken failed: .+"):
        backup.restore_database(PG_BIN, database(platform_pg, "postgres"), target, broken)
    conn = backup.postgres_connect(target)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            assert cur.fetchone() == (0,)
    finally:
        conn.close()


def test_pg_dump_of_a_missing_database_names_it(platform_pg, tmp_path):
    with pytest.raises(StackError, match="pg_dump of database bk_missing failed: .*bk_missing"):
        backup.dump(PG_BIN, database(platform_pg, "bk_missing"), tmp_path / "x.dump")
    with pytest.raises(psycopg2.OperationalError):
        backup.postgres_connect(database(platform_pg, "bk_missing"))


# --- the command -----------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["backup", "/tmp/nowhere"], ["restore", "/tmp/nowhere"]])
def test_the_commands_refuse_a_stack_that_is_not_running(tmp_path, capsys, command):
    assert cli.main(["--home", str(tmp_path), *command]) == 2
    assert f"the stack in {tmp_path} is not running; start it with" in capsys.readouterr().err
