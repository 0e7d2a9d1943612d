"""A training run's artifacts: staged between tasks, then published as an immutable version.

Tasks run on different workers, so nothing passes on local disk: each task reads its inputs
from and writes its outputs to the run's staging prefix in object storage. A published
version is complete once its manifest exists; the manifest is always written last.

A model (workers/training/served.ServedModel) is stored as one `<name>.npy` per array it has
(served.ARRAYS; the ones a family lacks are not written) and `model.json` ({"family", "config",
"arrays"}: which arrays were written), plus `index.faiss` for a family with item vectors.

The manifest and the CURRENT.json pointer are replaced atomically (storage.replace_json), so a
crash leaves the old file or the new one. Files torn by an older release, or damaged otherwise,
raise BrokenArtifact naming the file, never a bare JSON error.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np

from workers import storage
from workers.training import served
from workers.training.served import ServedModel

log = logging.getLogger(__name__)

MODEL_FILE = "model.json"
INDEX_FILE = "index.faiss"
# Every file a published version may hold besides its manifest.
SERVED_FILES = (INDEX_FILE, MODEL_FILE, *(f"{name}.npy" for name in served.ARRAYS))
# What a version published before models had a family holds (an ALS model without seen items).
_LEGACY_ARRAYS = ("item_ids", "item_factors", "user_ids", "user_factors", "popular_item_ids")


class BrokenArtifact(ValueError):
    """A pointer or manifest that exists but cannot be read."""


def run_key(dag_run_id: str) -> str:
    """A storage-safe key for a DAG run (run ids hold ':' and '+')."""
    return hashlib.sha256(dag_run_id.encode()).hexdigest()[:16]


def version_for(dag_run_id: str, tenant_id: str) -> str:
    """The same run and tenant always publish the same version: a retry never adds one."""
    return "m-" + hashlib.sha256(f"{dag_run_id}/{tenant_id}".encode()).hexdigest()[:12]


def save_model(base, tenant_id: str, key: str, model: ServedModel) -> None:
    """Stage the run's model. An earlier try's model.json goes first and the new one last: it lists the
    arrays written, so an earlier try's files are never read or published with this model's, and a save
    cut short leaves no model.json (load_model: BrokenArtifact). An index staged for an earlier try's
    model is removed: it would not match this one."""
    folder = storage.staging_dir(base, tenant_id, key)
    for stale in (MODEL_FILE, INDEX_FILE):
        if (folder / stale).exists():
            (folder / stale).unlink()
    written = served.arrays_of(model)
    for name, value in written.items():
        storage.write_array(folder / f"{name}.npy", np.asarray(value))
    storage.write_json(folder / MODEL_FILE, {"family": model.family, "config": model.config, "arrays": list(written)})


def load_model(base, tenant_id: str, key: str) -> ServedModel:
    return _read_model(storage.staging_dir(base, tenant_id, key))


def save_index(base, tenant_id: str, key: str, index) -> None:
    import faiss

    storage.write_bytes(storage.staging_dir(base, tenant_id, key) / INDEX_FILE,
                        faiss.serialize_index(index).tobytes())


def load_index(base, tenant_id: str, key: str):
    return _read_index(storage.staging_dir(base, tenant_id, key) / INDEX_FILE)


def _read_index(path):
    import faiss

    data = storage.read_bytes(path)
    try:
        return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    except RuntimeError as exc:  # faiss raises RuntimeError on damaged bytes
        raise BrokenArtifact(f"{path} is not a FAISS index (a torn or damaged write?): {exc}") from exc


def _read_model(folder) -> ServedModel:
    """The model stored in `folder`; BrokenArtifact naming the file when one is missing or unreadable."""
    described, arrays = _read_model_json(folder / MODEL_FILE)
    return ServedModel(family=described["family"], config=described.get("config") or {},
                       **{name: _read_array(folder / f"{name}.npy") for name in arrays})


def _read_model_json(path) -> tuple[dict, list[str]]:
    described = _read_json_object(path)
    family, arrays = described.get("family"), described.get("arrays")
    if family not in served.FAMILIES or not isinstance(arrays, list) or not set(arrays) <= set(served.ARRAYS):
        raise BrokenArtifact(f"{path} does not describe a model (family {family!r}, arrays {arrays!r})")
    return described, arrays


def _read_array(path) -> np.ndarray:
    try:
        return storage.read_array(path)
    except FileNotFoundError as exc:
        raise BrokenArtifact(f"{path} is missing") from exc
    except ValueError as exc:  # np.load of a truncated or foreign file
        raise BrokenArtifact(f"{path} is not a numpy array (a torn or damaged write?): {exc}") from exc


def _read_legacy_model(folder, manifest: dict) -> ServedModel:
    """A version published before models had a family: ALS factors, no seen items (none are excluded)."""
    arrays = {name: _read_array(folder / f"{name}.npy") for name in _LEGACY_ARRAYS}
    users = len(arrays["user_ids"])
    return ServedModel(
        family="als", config=manifest.get("params") or {}, item_ids=arrays["item_ids"],
        popular=arrays["popular_item_ids"], user_ids=arrays["user_ids"],
        seen_indptr=np.zeros(users + 1, dtype=np.int64), seen_items=np.zeros(0, dtype=np.int32),
        user_factors=arrays["user_factors"], item_factors=arrays["item_factors"])


def publish(base, tenant_id: str, key: str, version: str, manifest: dict) -> bool:
    """Copy the staged model (and its index, if one was staged) to models/<version>/, manifest last.

    False if already published; FileExistsError if published from other data (versions are immutable).
    """
    target = storage.models_dir(base, tenant_id) / version
    manifest_path = target / "manifest.json"
    if manifest_path.exists():
        try:
            existing = _read_json_object(manifest_path)
        except BrokenArtifact as exc:
            # A manifest torn mid-write: that publish never completed, so the version is not one yet.
            log.warning("republishing %s of %s: %s", version, tenant_id, exc)
        else:
            if existing.get("data_fingerprint") != manifest.get("data_fingerprint"):
                raise FileExistsError(f"version {version} of {tenant_id} exists with other data; "
                                      "versions are immutable")
            return False
    staging = storage.staging_dir(base, tenant_id, key)
    if (staging / MODEL_FILE).exists():
        names = [*(f"{name}.npy" for name in _read_model_json(staging / MODEL_FILE)[1]), MODEL_FILE]
    else:  # staged by the release before model families, published after the upgrade
        names = [f"{name}.npy" for name in _LEGACY_ARRAYS]
    if (staging / INDEX_FILE).exists():
        names.insert(0, INDEX_FILE)
    for name in names:
        storage.write_bytes(target / name, storage.read_bytes(staging / name))
    storage.replace_json(manifest_path, manifest)
    return True


def _published(base, tenant_id: str, version: str):
    """(folder, manifest) of a published version; FileNotFoundError if it is not one."""
    folder = storage.models_dir(base, tenant_id) / version
    if not (folder / "manifest.json").exists():
        raise FileNotFoundError(f"{folder} holds no published version")
    return folder, _read_json_object(folder / "manifest.json")


def _read_published_model(folder, manifest: dict) -> ServedModel:
    if not (folder / MODEL_FILE).exists() and (folder / "popular_item_ids.npy").exists():
        return _read_legacy_model(folder, manifest)
    return _read_model(folder)


def load_version(base, tenant_id: str, version: str) -> tuple[ServedModel, object | None]:
    """The version's model and its FAISS index (None for a family without item vectors).

    FileNotFoundError if the version was never published; BrokenArtifact if a file of it cannot be read.
    """
    folder, manifest = _published(base, tenant_id, version)
    model = _read_published_model(folder, manifest)
    index = None
    if (folder / INDEX_FILE).exists():
        index = _read_index(folder / INDEX_FILE)
        if index.ntotal != len(model.item_ids):
            raise BrokenArtifact(f"{folder / INDEX_FILE} holds {index.ntotal} vectors for "
                                 f"{len(model.item_ids)} items")
    return model, index


def serving_model(base, tenant_id: str) -> tuple[str, ServedModel] | None:
    """The version the tenant's pointer names (the champion) and its model; None without a pointer."""
    version = read_pointer(base, tenant_id)
    if version is None:
        return None
    folder, manifest = _published(base, tenant_id, version)
    return version, _read_published_model(folder, manifest)


def read_pointer(base, tenant_id: str) -> str | None:
    """The version the tenant's pointer names; None without a pointer; BrokenArtifact if it is unreadable."""
    pointer = storage.pointer_path(base, tenant_id)
    if not pointer.exists():
        return None
    version = _read_json_object(pointer).get("version")
    if not isinstance(version, str):
        raise BrokenArtifact(f'{pointer} names no version (expected {{"version": "m-..."}})')
    return version


def write_pointer(base, tenant_id: str, version: str | None) -> None:
    pointer = storage.pointer_path(base, tenant_id)
    if version is None:
        if pointer.exists():
            pointer.unlink()
        return
    storage.replace_json(pointer, {"version": version})


def _read_json_object(path) -> dict:
    try:
        value = storage.read_json(path)
    except FileNotFoundError as exc:
        raise BrokenArtifact(f"{path} is missing") from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
        raise BrokenArtifact(f"{path} is not valid JSON (a torn or damaged write?): {exc}") from exc
    if not isinstance(value, dict):
        raise BrokenArtifact(f"{path} holds {type(value).__name__}, not a JSON object")
    return value
