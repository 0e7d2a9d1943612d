import multiprocessing
import resource
import signal

import faiss
import numpy as np
import pytest

from tests.unit.services.served_versions import factor_model, neighbour_model, popularity_model, stage
from workers import storage
from workers.training import artifacts, served
from workers.training.index import build_index

RUN = "scheduled__2026-11-24T02:00:00+00:00"
KEY = artifacts.run_key(RUN)


def staged(base, model=None):
    model = model or factor_model(seen={7: [1, 2, 3]})
    stage(base, "acme", RUN, model)
    return model


def assert_same_model(got, expected):
    assert (got.family, got.config) == (expected.family, expected.config)
    for name in served.ARRAYS:
        if getattr(expected, name) is None:
            assert getattr(got, name) is None, name
        else:
            assert np.array_equal(getattr(got, name), getattr(expected, name)), name
            assert getattr(got, name).dtype == getattr(expected, name).dtype, name


@pytest.mark.parametrize("make", [factor_model, neighbour_model, popularity_model])
def test_a_staged_model_of_each_family_loads_back_the_same_and_only_its_arrays_are_written(base, make):
    model = make(seen={7: [1, 2, 3]})
    artifacts.save_model(base, "acme", KEY, model)

    assert_same_model(artifacts.load_model(base, "acme", KEY), model)
    written = sorted(p.name for p in storage.staging_dir(base, "acme", KEY).iterdir())
    assert written == sorted(["model.json", *(f"{name}.npy" for name in served.ARRAYS
                                               if getattr(model, name) is not None)])


def test_a_version_holds_the_model_and_its_index_and_loads_for_serving(base):
    model = staged(base)
    artifacts.publish(base, "acme", KEY, "m-000000000001", {"data_fingerprint": "abc"})

    folder = storage.models_dir(base, "acme") / "m-000000000001"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["index.faiss", "manifest.json", "model.json", *(f"{name}.npy" for name in served.ARRAYS
                                                          if getattr(model, name) is not None)])
    loaded, index = artifacts.load_version(base, "acme", "m-000000000001")
    assert_same_model(loaded, model)
    assert index.ntotal == 100


def test_a_version_of_a_family_without_item_vectors_has_no_index(base):
    staged(base, neighbour_model())
    artifacts.publish(base, "acme", KEY, "m-000000000001", {"data_fingerprint": "abc"})

    loaded, index = artifacts.load_version(base, "acme", "m-000000000001")

    assert index is None and loaded.family == "item_knn"
    assert not (storage.models_dir(base, "acme") / "m-000000000001" / "index.faiss").exists()


def test_a_retry_that_stages_another_family_publishes_neither_the_earlier_arrays_nor_its_index(base):
    staged(base)  # the first try: ALS with an index
    staged(base, popularity_model())  # the retry chose popularity

    artifacts.publish(base, "acme", KEY, "m-000000000001", {"data_fingerprint": "abc"})

    loaded, index = artifacts.load_version(base, "acme", "m-000000000001")
    assert (loaded.family, loaded.item_factors, index) == ("popularity", None, None)
    assert "user_factors.npy" not in [p.name for p in (storage.models_dir(base, "acme") / "m-000000000001").iterdir()]


def test_the_serving_model_is_the_one_the_pointer_names(base):
    assert artifacts.serving_model(base, "acme") is None
    model = staged(base)
    artifacts.publish(base, "acme", KEY, "m-000000000001", {"data_fingerprint": "abc"})
    artifacts.write_pointer(base, "acme", "m-000000000001")

    version, champion = artifacts.serving_model(base, "acme")

    assert version == "m-000000000001"
    assert_same_model(champion, model)


@pytest.mark.parametrize(("damage", "problem"), [
    ("model.json", "model.json is not valid JSON"),
    ("seen_items.npy", "seen_items.npy is not a numpy array"),
    ("index.faiss", "index.faiss is not a FAISS index"),
    ("missing:user_ids.npy", "user_ids.npy is missing"),
])
def test_a_damaged_file_of_a_version_is_a_clear_error_naming_it(base, damage, problem):
    staged(base)
    artifacts.publish(base, "acme", KEY, "m-000000000001", {"data_fingerprint": "abc"})
    folder = storage.models_dir(base, "acme") / "m-000000000001"
    if damage.startswith("missing:"):
        (folder / damage.removeprefix("missing:")).unlink()
    else:
        storage.write_bytes(folder / damage, storage.read_bytes(folder / damage)[:20])

    with pytest.raises(artifacts.BrokenArtifact, match=problem):
        artifacts.load_version(base, "acme", "m-000000000001")


def test_a_version_published_before_model_families_still_loads(base):
    """A tenant's serving version from the previous release (ALS arrays, popular_item_ids, no model.json)
    keeps being served after the upgrade, excluding nothing, until its next run replaces it."""
    model = factor_model()
    folder = storage.models_dir(base, "acme") / "m-000000000001"
    for name in ("item_ids", "item_factors", "user_ids", "user_factors"):
        storage.write_array(folder / f"{name}.npy", getattr(model, name))
    storage.write_array(folder / "popular_item_ids.npy", model.popular)
    storage.write_bytes(folder / "index.faiss", faiss.serialize_index(build_index(model.item_factors,
                                                                                 model.user_factors)[0]).tobytes())
    storage.replace_json(folder / "manifest.json", {"data_fingerprint": "abc", "params": {"factors": 8}})

    loaded, index = artifacts.load_version(base, "acme", "m-000000000001")

    assert (loaded.family, loaded.config, index.ntotal) == ("als", {"factors": 8}, 100)
    assert np.array_equal(loaded.user_factors, model.user_factors) and len(loaded.seen_items) == 0
    assert loaded.recommend(7, 3)[1] == "model"


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
    assert artifacts.load_version(base, "acme", "m-000000000001")[1].ntotal == 100


def test_a_run_staged_before_model_families_is_published_after_the_upgrade_and_loads(base):
    """A run of the previous release that staged ALS arrays (no model.json) and deploys after the upgrade."""
    model = factor_model()
    folder = storage.staging_dir(base, "acme", KEY)
    for name in ("item_ids", "item_factors", "user_ids", "user_factors"):
        storage.write_array(folder / f"{name}.npy", getattr(model, name))
    storage.write_array(folder / "popular_item_ids.npy", model.popular)
    artifacts.save_index(base, "acme", KEY, build_index(model.item_factors, model.user_factors)[0])

    assert artifacts.publish(base, "acme", KEY, "m-000000000001", {"data_fingerprint": "abc"}) is True

    loaded, index = artifacts.load_version(base, "acme", "m-000000000001")
    assert (loaded.family, index.ntotal) == ("als", 100)
    assert np.array_equal(loaded.popular, model.popular)
