"""A backup to an s3:// prefix (moto's S3 server): published by its manifest, written last; checked
file by file before a restore uses it. Credentials and endpoint come the standard AWS way."""

import boto3
import pytest

from stackctl.errors import StackError
from stackctl.ops import backup, backup_archive
from workers import storage
from workers.training import artifacts

from .conftest import BUCKET

FILES = {"databases/airflow.dump": b"dump-a", "objects/tenants/acme/models/CURRENT.json": b'{"version": "m-1"}'}


@pytest.fixture
def s3(s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def publish(destination: str) -> str:
    with backup_archive.staging_folder(destination) as folder:
        for name, data in FILES.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        return backup_archive.publish(folder, destination, {"tenants": {"acme": "m-1"}})


def fetch(source: str) -> None:
    with backup_archive.fetched(source):
        pass


def keys(s3, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def test_an_s3_backup_round_trips_with_every_file_checked(s3):
    destination = f"s3://{BUCKET}/backups/round-trip"
    assert publish(destination) == destination
    assert keys(s3, "backups/round-trip/") == sorted(
        ["backups/round-trip/MANIFEST.json", *(f"backups/round-trip/{name}" for name in FILES)])
    with backup_archive.fetched(destination) as (folder, manifest):
        assert manifest["tenants"] == {"acme": "m-1"}
        assert {name: (folder / name).read_bytes() for name in FILES} == FILES
    with pytest.raises(StackError, match="a backup already exists at"):
        publish(destination)


def test_an_s3_backup_without_its_manifest_or_with_a_changed_file_is_refused(s3):
    destination = f"s3://{BUCKET}/backups/damaged"
    publish(destination)
    s3.put_object(Bucket=BUCKET, Key="backups/damaged/databases/airflow.dump", Body=b"dump-b")
    with pytest.raises(StackError, match="damaged, nothing was changed: databases/airflow.dump: checksum mismatch"):
        fetch(destination)
    s3.delete_object(Bucket=BUCKET, Key="backups/damaged/MANIFEST.json")  # as a backup that died before it
    with pytest.raises(StackError, match="has no MANIFEST.json: not a backup, or one that did not finish"):
        fetch(destination)


def test_served_objects_round_trip_through_an_s3_storage_root(s3_base, tmp_path):
    """The stack's own storage on S3 (compose, production): backup.copy_objects and restore_objects."""
    version = "m-s3backup01"
    folder = storage.models_dir(s3_base, "acme") / version
    for name in artifacts.SERVED_FILES:
        storage.write_bytes(folder / name, name.encode())
    storage.replace_json(folder / "manifest.json", {"version": version})
    artifacts.write_pointer(s3_base, "acme", version)
    storage.write_bytes(storage.training_dir(s3_base, "acme") / "part-00000.parquet", b"rows")
    assert backup.copy_objects(s3_base, tmp_path / "objects") == {"acme": version}
    target = s3_base / "restored"
    backup.restore_objects(tmp_path / "objects", target)
    assert artifacts.read_pointer(target, "acme") == version
    assert storage.read_bytes(storage.models_dir(target, "acme") / version / "index.faiss") == b"index.faiss"
    assert storage.read_bytes(storage.training_dir(target, "acme") / "part-00000.parquet") == b"rows"
