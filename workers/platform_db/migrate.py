"""Versioned SQL migrations for the platform database: `migrations/V<NNN>__<name>.sql`, applied in order.

Each file runs once, in its own transaction, and is recorded with its checksum; a recorded
file whose content changed afterwards is an error, never silently re-run.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from workers.platform_db.db import transaction

MIGRATIONS = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^V(\d{3})__[a-z0-9_]+\.sql$")


class MigrationError(Exception):
    pass


def migration_files(folder: Path = MIGRATIONS) -> list[tuple[int, Path]]:
    files = []
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file {path.name} is not named V<NNN>__<name>.sql")
        files.append((int(match.group(1)), path))
    return files


def apply(conn, folder: Path = MIGRATIONS) -> list[str]:
    """Apply pending migrations over a DB-API connection; return the names applied."""
    with transaction(conn) as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version int PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute("SELECT version, name, checksum FROM schema_migrations")
        applied = {version: (name, checksum) for version, name, checksum in cur.fetchall()}
    done = []
    for version, path in migration_files(folder):
        checksum = hashlib.sha256(path.read_bytes()).hexdigest()
        if version in applied:
            if applied[version][1] != checksum:
                raise MigrationError(f"{path.name} changed after it was applied; add a new migration instead")
            continue
        with transaction(conn) as cur:
            cur.execute(path.read_text())
            cur.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (version, path.name, checksum),
            )
        done.append(path.name)
    return done
