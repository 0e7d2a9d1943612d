import multiprocessing
import resource
import signal

import numpy as np
import pytest

from tests.unit.workers.training.versions import stage_run
from workers import storage
from workers.training import artifacts

RUN = "scheduled__2026-11-24T02:00:00+00:00"
KEY = artifacts.run_key(RUN)


def staged(base):
    return stage_run(base, "acme", RUN)


def test_a_version_is_deterministic_per_run_and_tenant():
    assert artifacts.version_for("run-1", "acme") == artifacts.version_for("run-1", "acme")
    assert artifacts.version_for("run-1", "acme") != artifacts.version_for("run-2", "acme")
    assert artifacts.version_for("run-1", "acme") != artifacts.version_for("run-1", "globex")


def test_publishing_twice_is_idempotent(base):
    staged(base)
    manifest = {"data_fingerprint": "abc"}
    assert artifacts.publish(base, "acme", KEY, "m-000000000001", manifest) is True
    files = sorted(p.name for p in (storage.models_dir(base, "acme") / "m-000000000001").iterdir())
    assert artifacts.publish(base, "acme", KEY, "m-000000000001", manifest) is False
    assert sorted(p.name for p in (storage.models_dir(base, "acme") / "m-000000000001").iterdir()) == files
    assert "manifest.json" in files


def test_a_published_version_is_immutable(base):
    staged(base)
    artifacts.publish(base, "acme", KEY, "m-000000000001", {"data_fingerprint": "abc"})
    with pytest.raises(FileExistsError, match="versions are immutable"):
        artifacts.publish(base, "acme", KEY, "m-000000000001", {"data_fingerprint": "other"})


def test_a_published_version_loads_for_serving(base):
    embeddings = staged(base)
    artifacts.publish(base, "acme", KEY, "m-000000000001", {"data_fingerprint": "abc"})
    loaded = artifacts.load_version(base, "acme", "m-000000000001")
    assert loaded["index"].ntotal == 100
    assert np.array_equal(loaded["user_factors"], embeddings.user_factors)


def test_the_pointer_flips_and_rolls_back(base):
    assert artifacts.read_pointer(base, "acme") is None
    artifacts.write_pointer(base, "acme", "m-000000000001")
    assert artifacts.read_pointer(base, "acme") == "m-000000000001"
    artifacts.write_pointer(base, "acme", None)
    assert artifacts.read_pointer(base, "acme") is None


def test_a_crash_in_the_middle_of_replacing_the_pointer_leaves_the_old_one_whole(base):
    """A real crash mid-write: the child may write 8 bytes to a file, so the kernel kills it (SIGXFSZ)
    in the middle of writing the new pointer."""
    artifacts.write_pointer(base, "acme", "m-000000000001")

    def child():
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it, which would turn the kill into an error
        resource.setrlimit(resource.RLIMIT_FSIZE, (8, 8))
        artifacts.write_pointer(base, "acme", "m-000000000002")

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(60)

    assert process.exitcode == -signal.SIGXFSZ
    assert artifacts.read_pointer(base, "acme") == "m-000000000001"
    artifacts.write_pointer(base, "acme", "m-000000000002")  # the next write is not in the way of the leftover
    assert artifacts.read_pointer(base, "acme") == "m-000000000002"


def test_the_pointer_is_replaced_with_the_permissions_of_a_plain_write(base):
    artifacts.write_pointer(base, "acme", "m-000000000001")
    storage.write_bytes(storage.models_dir(base, "acme") / "plain", b"x")
    folder = storage.models_dir(base, "acme")
    assert (folder / "CURRENT.json").stat()["mode"] & 0o777 == (folder / "plain").stat()["mode"] & 0o777
    assert sorted(p.name for p in folder.iterdir()) == ["CURRENT.json", "plain"]  # no temporary file left


@pytest.mark.parametrize(("content", "problem"), [
    (b'{"vers', "is not valid JSON"),
    (b'["m-000000000001"]', "holds list, not a JSON object"),
    (b'{"version": 1}', "names no version"),
])
def test_an_unreadable_pointer_is_a_clear_error_naming_the_file(base, content, problem):
    storage.write_bytes(storage.pointer_path(base, "acme"), content)
    with pytest.raises(artifacts.BrokenArtifact, match=f"CURRENT.json.*{problem}"):
        artifacts.read_pointer(base, "acme")


def test_a_version_whose_manifest_was_torn_is_published_again(base):
    staged(base)
    version_dir = storage.models_dir(base, "acme") / "m-000000000001"
    storage.write_bytes(version_dir / "manifest.json", b'{"data_fin')  # a publish torn by a crash
    with pytest.raises(artifacts.BrokenArtifact, match="manifest.json is not valid JSON"):
        artifacts.load_version(base, "acme", "m-000000000001")

    assert artifacts.publish(base, "acme", KEY, "m-000000000001", {"data_fingerprint": "abc"}) is True

    assert storage.read_json(version_dir / "manifest.json") == {"data_fingerprint": "abc"}
    assert artifacts.load_version(base, "acme", "m-000000000001")["index"].ntotal == 100
