"""Loading a tenant's deployed model version from object storage into memory, and serving it.

A version is a workers/training/served.ServedModel (any family) and, for a family with item vectors,
its FAISS index. Recommendations by user never hold an item the user already interacted with: the
version carries each user's seen items (a CSR structure) and ServedModel.recommend leaves them out.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import numpy as np

from workers import storage
from workers.training import artifacts
from workers.training.served import ServedModel

log = logging.getLogger(__name__)


class UnknownModel(LookupError):
    pass


class BrokenModel(ValueError):
    """The version exists but its files cannot be read."""


@dataclass
class LoadedModel:
    tenant_id: str
    version: str
    model: ServedModel
    index: object | None  # FAISS index over the model's item vectors; None for a family without them
    popular: list[int] = field(default_factory=list)  # the Redis-warmed popular items; [] until warmed

    @property
    def item_ids(self) -> np.ndarray:
        return self.model.item_ids

    @property
    def has_item_similarity(self) -> bool:
        return self.model.item_factors is not None or self.model.neighbour_indptr is not None

    def for_user(self, user_id: int, k: int) -> tuple[list[dict], str]:
        """(items, source): "model", or "popular" for a user the model cannot score (never seen, not fitted).

        Popular items come from the Redis-warmed list when the cache was warmed, else from the version's
        own list; either way without the user's seen items.
        """
        items, source = self.model.recommend(user_id, k, self.index)
        if source == "popular" and self.popular:
            seen = set(self.model.seen_item_ids(user_id).tolist())
            items = [{"item_id": i, "score": None} for i in self.popular if i not in seen][:k]
        return items, source

    def for_item(self, item_id: int, k: int) -> list[dict] | None:
        """Items similar to item_id; None when the item is unknown or the family has no item similarity."""
        return self.model.similar_items(item_id, k, self.index)


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
            model, index = artifacts.load_version(self.base, tenant_id, version)
        except FileNotFoundError as exc:
            raise UnknownModel(f"tenant {tenant_id} has no model version {version}") from exc
        except artifacts.BrokenArtifact as exc:
            raise BrokenModel(f"tenant {tenant_id}: model version {version} cannot be loaded: {exc}") from exc
        loaded = LoadedModel(tenant_id=tenant_id, version=version, model=model, index=index)
        with self._lock:
            previous = self._models.get(tenant_id)
            if previous is not None:
                loaded.popular = previous.popular
            self._models[tenant_id] = loaded
            self._errors.pop(tenant_id, None)
        return loaded

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
