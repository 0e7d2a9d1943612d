"""A deterministic generator of tenants whose interactions have real structure.

Users and items belong to latent topics: each user has a Dirichlet mixture over topics and
each item one topic, so a user's taste persists over time and a model can learn it. Item
popularity within a topic follows a Zipf law (a long tail), and a share of interactions go
to globally popular items, so popularity is a real but beatable baseline. Timestamps spread
over `days` with a daily rhythm.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from workers.schema import INTERACTION_TYPES, TRAINING_SCHEMA

TYPE_WEIGHTS = np.array([1.0, 2.0, 4.0], dtype=np.float32)  # in INTERACTION_TYPES' order
ZIPF_EXPONENT = 0.9
# Dirichlet concentration of each user's topic mixture: small, so most users have one to
# three interests, as real users do.
TASTE_CONCENTRATION = 0.03


@dataclass(frozen=True)
class TenantSpec:
    tenant_id: str
    n_users: int
    n_items: int
    n_interactions: int
    n_topics: int = 50
    days: int = 60
    popular_share: float = 0.1   # interactions that follow global popularity, not taste
    seed: int = 0


@dataclass
class TenantData:
    spec: TenantSpec
    user_id: np.ndarray
    item_id: np.ndarray
    interaction_type: np.ndarray
    weight: np.ndarray
    occurred_at_us: np.ndarray  # microseconds since the epoch, UTC
    item_topic: np.ndarray

    def to_arrow(self) -> pa.Table:
        return pa.Table.from_arrays(
            [
                pa.array(self.user_id), pa.array(self.item_id), pa.array(self.interaction_type),
                pa.array(self.weight), pa.array(self.occurred_at_us, type=pa.timestamp("us", tz="UTC")),
            ],
            schema=TRAINING_SCHEMA,
        )


def generate(spec: TenantSpec, end_us: int) -> TenantData:
    """Interactions ending at `end_us`; the same spec and end always give the same data."""
    rng = np.random.default_rng(spec.seed)
    n = spec.n_interactions
    item_topic = rng.integers(0, spec.n_topics, spec.n_items)
    zipf_rank = rng.permutation(spec.n_items) + 1
    item_weight = 1.0 / zipf_rank**ZIPF_EXPONENT  # long tail
    # Items of each topic with cumulative Zipf weights, for O(log n) sampling per draw.
    by_topic = [np.flatnonzero(item_topic == t) for t in range(spec.n_topics)]
    topic_cdf = [np.cumsum(item_weight[items]) / item_weight[items].sum() for items in by_topic]
    global_cdf = np.cumsum(item_weight) / item_weight.sum()

    user_mix = rng.dirichlet(np.full(spec.n_topics, TASTE_CONCENTRATION), spec.n_users)
    activity = rng.lognormal(0.0, 1.0, spec.n_users)
    users = rng.choice(spec.n_users, n, p=activity / activity.sum())
    topics = (rng.random(n)[:, None] > np.cumsum(user_mix[users], axis=1)).sum(axis=1)
    topics = np.minimum(topics, spec.n_topics - 1)
    items = np.empty(n, dtype=np.int64)
    draws = rng.random(n)
    for t in range(spec.n_topics):
        rows = np.flatnonzero(topics == t)
        if len(by_topic[t]) == 0:
            topics[rows] = -1
            continue
        items[rows] = by_topic[t][np.searchsorted(topic_cdf[t], draws[rows])]
    popular = (rng.random(n) < spec.popular_share) | (topics == -1)
    items[popular] = np.searchsorted(global_cdf, rng.random(popular.sum()))
    types = rng.choice(3, n, p=[0.7, 0.22, 0.08])
    day = rng.integers(0, spec.days, n)
    second_of_day = (rng.normal(14, 4, n) % 24) * 3600
    occurred = end_us - ((spec.days - day - 1) * 86400 + (86400 - second_of_day)) * 1_000_000
    order = np.argsort(occurred, kind="stable")
    return TenantData(
        spec=spec,
        user_id=users[order].astype(np.int64) + 1,
        item_id=items[order] + 1,
        interaction_type=np.array(INTERACTION_TYPES)[types[order]],
        weight=TYPE_WEIGHTS[types[order]],
        occurred_at_us=occurred[order].astype(np.int64),
        item_topic=item_topic,
    )


def to_parquet_parts(table: pa.Table, rows_per_part: int = 500_000) -> list[bytes]:
    parts = []
    for start in range(0, max(table.num_rows, 1), rows_per_part):
        buffer = io.BytesIO()
        pq.write_table(table.slice(start, rows_per_part), buffer, compression="zstd")
        parts.append(buffer.getvalue())
    return parts
