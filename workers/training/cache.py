"""The per-tenant popular-items list in Redis: what the inference service serves to unknown users."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

TOP_N = 1000
TTL_S = 7 * 24 * 3600
# Every cache key starts with it: Redis's cache users may touch only these keys, and Celery's none of them
# (airflow/stackctl/model/redis_users.py).
KEY_PREFIX = "reco:"


def key(tenant_id: str) -> str:
    return f"{KEY_PREFIX}{tenant_id}:popular"


def write_popular(client: redis.Redis, tenant_id: str, item_ids: list[int], ttl_s: int = TTL_S) -> int:
    """Replace the list atomically: build it under a temporary key, then RENAME over the old one."""
    items = [int(i) for i in item_ids[:TOP_N]]
    if not items:
        return 0
    temporary = f"{key(tenant_id)}:building"
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(temporary)
        pipe.rpush(temporary, *items)
        pipe.expire(temporary, ttl_s)
        pipe.rename(temporary, key(tenant_id))
        pipe.execute()
    return len(items)


def read_popular(client: redis.Redis, tenant_id: str) -> list[int]:
    return [int(i) for i in client.lrange(key(tenant_id), 0, TOP_N - 1)]
