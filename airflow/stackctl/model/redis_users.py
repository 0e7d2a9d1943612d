"""Redis users, one per role (Redis ACLs): each process authenticates as its role's user and holds only
that user's password.

With one password for all of Redis, a worker host (it holds the broker's) could overwrite the popular
items the inference service serves, and the inference service could inject Celery messages. ACL key
patterns hold in every Redis database (a user cannot be limited to a database number), so the roles
are told apart by key names: Celery's (its queues, kombu's bindings, the pidbox and event queues, the
task results) and the cache's (workers/training/cache.KEY_PREFIX), which no Celery pattern matches.

    celery        the broker and result backend: the scheduler, the workers, Flower
    cache-writer  the cache's keys, read and write: the tasks that warm the cache (platform_redis)
    cache-reader  the cache's keys, read only: the inference service (platform_redis_reader)
    exporter      INFO and the length of each Celery queue: redis_exporter, and the probes

The `default` user is off: a connection without a user name is refused.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any

from stackctl.errors import ConfigError
from stackctl.model.secrets import SecretFile
from workers.training import cache

CELERY, CACHE_WRITER, CACHE_READER, EXPORTER = "celery", "cache-writer", "cache-reader", "exporter"
# Where Redis reads its users from: a config file it --include's, so no password is on a command line.
USERS_FILE = "redis-users.conf"
# Commands no role needs: KEYS, FLUSHALL, CONFIG SET, DEBUG, MONITOR, ACL and the other @dangerous ones.
# Kombu's binding scripts (EVALSHA, then SCRIPT LOAD; in a pipeline, SCRIPT EXISTS first) run as the
# caller and call TIME; their keys are checked against the caller's patterns too.
CELERY_COMMANDS = ("-@all +@read +@write +@pubsub +@transaction +@connection +@blocking -@dangerous "
                   "+eval +evalsha +script|load +script|exists +time")
CACHE_WRITER_COMMANDS = "-@all +@read +@write +@transaction +@connection -@dangerous"
CACHE_READER_COMMANDS = "-@all +@read +@connection -@dangerous"
# What redis_exporter asks: INFO, CONFIG GET, the slow log and latency, and TYPE and LLEN of each queue
# (--check-single-keys).
EXPORTER_COMMANDS = ("-@all +@connection -@dangerous +info +config|get +slowlog|get +slowlog|len "
                     "+latency|latest +type +llen +strlen")


def password_secret(user: str) -> str:
    """The secret of a user's password (config.yaml's secrets): redis_<user>_password."""
    return f"redis_{user.replace('-', '_')}_password"


@dataclass(frozen=True)
class RedisUser:
    name: str
    keys: tuple[str, ...]  # ACL key patterns; %R~ reads only
    pubsub: bool  # all channels (Celery's events and broadcasts), else none
    commands: str

    @property
    def secret(self) -> str:
        return password_secret(self.name)

    def acl_line(self) -> str:
        """Its `user` line in Redis's config, its password a {secret} reference."""
        channels = "&*" if self.pubsub else ""
        return " ".join(filter(None, ("user", self.name, "on", f">{{{self.secret}}}", "resetkeys", *self.keys,
                                      "resetchannels", channels, self.commands)))


def celery_queues(source: dict[str, Any]) -> list[str]:
    """The worker pools' queues, checked to be plain names whose key pattern misses the cache's keys."""
    queues = [pool["queue"] for pool in source["worker_pools"].values()]
    for queue in queues:
        if not re.fullmatch(r"[A-Za-z0-9_]+", queue):
            raise ConfigError(f"worker queue {queue!r}: use letters, digits and _ (its Redis key pattern is {queue}*)")
        if fnmatch.fnmatchcase(cache.KEY_PREFIX, f"{queue}*"):
            raise ConfigError(f"worker queue {queue!r}: Celery's Redis user would reach the cache's keys "
                              f"({cache.KEY_PREFIX}*); rename the queue")
    return queues


def users(source: dict[str, Any]) -> tuple[RedisUser, ...]:
    queues = celery_queues(source)
    # A queue's list, with kombu's priority suffixes; the pidbox and event queues (Flower's inspect
    # and events); kombu's binding tables; unacked messages; task results.
    celery_keys = (*(f"~{queue}*" for queue in queues), "~*.pidbox*", "~celeryev*", "~_kombu.*", "~unacked*",
                   "~celery-task-meta-*")
    return (
        RedisUser(CELERY, celery_keys, True, CELERY_COMMANDS),
        RedisUser(CACHE_WRITER, (f"~{cache.KEY_PREFIX}*",), False, CACHE_WRITER_COMMANDS),
        RedisUser(CACHE_READER, (f"%R~{cache.KEY_PREFIX}*",), False, CACHE_READER_COMMANDS),
        RedisUser(EXPORTER, tuple(f"%R~{queue}" for queue in queues), False, EXPORTER_COMMANDS),
    )


def users_file(source: dict[str, Any]) -> SecretFile:
    """Redis's users: the default one off, then one line per role."""
    lines = ["user default off", *(user.acl_line() for user in users(source))]
    return SecretFile(USERS_FILE, "\n".join(lines) + "\n")
