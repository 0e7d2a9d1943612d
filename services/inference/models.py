"""Loading a tenant's deployed model version from object storage into memory."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from workers import storage
from workers.training import artifacts

log = logging.getLogger(__name__)


class UnknownModel(LookupError):
    pass


class BrokenModel(ValueError):
    """The version exists but its files cannot be read."""


@dataclass
class LoadedModel:
    tenant_id: str
    version: str
    index: object
    item_ids: np.ndarray
    item_factors: np.ndarray
    user_ids: np.ndarray
    user_factors: np.ndarray
    popular: list[int]

    def recommend_vector(self, vector: np.ndarray, k: int, exclude: int | None = None) -> list[dict]:
        scores, rows = self.index.search(vector.reshape(1, -1).astype(np.float32), k + 1)
        results = [
            {"item_id": int(self.item_ids[row]), "score": float(score)}
            for score, row in zip(scores[0], rows[0], strict=True)
            if row >= 0 and int(self.item_ids[row]) != exclude
        ]
        return results[:k]

    def for_user(self, user_id: int, k: int) -> list[dict] | None:
        row = np.searchsorted(self.user_ids, user_id)
        if row >= len(self.user_ids) or self.user_ids[row] != user_id:
            return None
        return self.recommend_vector(self.user_factors[row], k)

    def for_item(self, item_id: int, k: int) -> list[dict] | None:
        row = np.searchsorted(self.item_ids, item_id)
        if row >= len(self.item_ids) or self.item_ids[row] != item_id:
            return None
        return self.recommend_vector(self.item_factors[row], k, exclude=item_id)


class ModelRegistry:
    """The versions in memory, swapped whole per tenant so a request never sees half a model.

    Tenants load apart: one whose pointer or model cannot be loaded at start is kept in `errors()`
    (for /health) while the others are served, until a deploy loads a version for it.
    """

    def __init__(self, base):
        self.base = base
        self._models: dict[str, LoadedModel] = {}
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()

    def load(self, tenant_id: str, version: str) -> LoadedModel:
        try:
            loaded = artifacts.load_version(self.base, tenant_id, version)
        except FileNotFoundError as exc:
            raise UnknownModel(f"tenant {tenant_id} has no model version {version}") from exc
        except artifacts.BrokenArtifact as exc:
            raise BrokenModel(f"tenant {tenant_id}: model version {version} cannot be loaded: {exc}") from exc
        model = LoadedModel(tenant_id=tenant_id, version=version, popular=[], **loaded)
        with self._lock:
            previous = self._models.get(tenant_id)
            if previous is not None:
                model.popular = previous.popular
            self._models[tenant_id] = model
            self._errors.pop(tenant_id, None)
        return model

    def load_current(self) -> None:
        """At start: every tenant whose pointer names a version, each on its own."""
        for tenant_id in storage.root_tenants(self.base):
            try:
                version = artifacts.read_pointer(self.base, tenant_id)
                if version is not None:
                    self.load(tenant_id, version)
            except Exception as exc:  # noqa: BLE001 (whatever broke one tenant must not stop the others)
                log.error("tenant %s not served: %s", tenant_id, exc)
                with self._lock:
                    self._errors[tenant_id] = str(exc)

    def get(self, tenant_id: str) -> LoadedModel:
        model = self._models.get(tenant_id)
        if model is None:
            raise UnknownModel(f"unknown tenant {tenant_id}: no model deployed")
        return model

    def versions(self) -> dict[str, str]:
        return {tenant: model.version for tenant, model in sorted(self._models.items())}

    def errors(self) -> dict[str, str]:
        """Tenants that failed to load at start, with the reason, until a deploy loads them."""
        with self._lock:
            return dict(sorted(self._errors.items()))
