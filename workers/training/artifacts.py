"""A training run's artifacts: staged between tasks, then published as an immutable version.

Tasks run on different workers, so nothing passes on local disk: each task reads its inputs
from and writes its outputs to the run's staging prefix in object storage. A published
version is complete once its manifest exists; the manifest is always written last.

The manifest and the CURRENT.json pointer are replaced atomically (storage.replace_json), so a
crash leaves the old file or the new one. Files torn by an older release, or damaged otherwise,
raise BrokenArtifact naming the file, never a bare JSON error.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np

from workers import storage
from workers.training.als import Embeddings

log = logging.getLogger(__name__)

EMBEDDING_FILES = ("user_ids", "user_factors", "item_ids", "item_factors", "popular_item_ids")
SERVED_FILES = ("index.faiss", "item_ids.npy", "item_factors.npy", "user_ids.npy", "user_factors.npy",
                "popular_item_ids.npy")


class BrokenArtifact(ValueError):
    """A pointer or manifest that exists but cannot be read."""


def run_key(dag_run_id: str) -> str:
    """A storage-safe key for a DAG run (run ids hold ':' and '+')."""
    return hashlib.sha256(dag_run_id.encode()).hexdigest()[:16]


def version_for(dag_run_id: str, tenant_id: str) -> str:
    """The same run and tenant always publish the same version: a retry never adds one."""
    return "m-" + hashlib.sha256(f"{dag_run_id}/{tenant_id}".encode()).hexdigest()[:12]


def save_embeddings(base, tenant_id: str, key: str, embeddings: Embeddings) -> None:
    folder = storage.staging_dir(base, tenant_id, key)
    for name in EMBEDDING_FILES:
        storage.write_array(folder / f"{name}.npy", getattr(embeddings, name))


def load_embeddings(base, tenant_id: str, key: str) -> Embeddings:
    folder = storage.staging_dir(base, tenant_id, key)
    return Embeddings(**{name: storage.read_array(folder / f"{name}.npy") for name in EMBEDDING_FILES})


def save_index(base, tenant_id: str, key: str, index) -> None:
    import faiss

    storage.write_bytes(storage.staging_dir(base, tenant_id, key) / "index.faiss",
                        faiss.serialize_index(index).tobytes())


def load_index(base, tenant_id: str, key: str):
    return _read_index(storage.staging_dir(base, tenant_id, key) / "index.faiss")


def _read_index(path):
    import faiss

    return faiss.deserialize_index(np.frombuffer(storage.read_bytes(path), dtype=np.uint8))


def publish(base, tenant_id: str, key: str, version: str, manifest: dict) -> bool:
    """Copy the staged artifacts to models/<version>/, manifest last. False if already published."""
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
    for name in SERVED_FILES:
        storage.write_bytes(target / name, storage.read_bytes(staging / name))
    storage.replace_json(manifest_path, manifest)
    return True


def load_version(base, tenant_id: str, version: str) -> dict:
    folder = storage.models_dir(base, tenant_id) / version
    if not (folder / "manifest.json").exists():
        raise FileNotFoundError(f"{folder} holds no published version")
    _read_json_object(folder / "manifest.json")
    return {
        "index": _read_index(folder / "index.faiss"),
        **{name: storage.read_array(folder / f"{name}.npy")
           for name in ("item_ids", "item_factors", "user_ids", "user_factors")},
    }


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
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
        raise BrokenArtifact(f"{path} is not valid JSON (a torn or damaged write?): {exc}") from exc
    if not isinstance(value, dict):
        raise BrokenArtifact(f"{path} holds {type(value).__name__}, not a JSON object")
    return value
