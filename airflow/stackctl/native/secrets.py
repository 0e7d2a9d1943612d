"""Secrets generated on first start, one file each, readable only by their owner."""

from __future__ import annotations

import os
import secrets as _random
from pathlib import Path

from cryptography.fernet import Fernet

from stackctl.errors import PreflightError

GENERATORS = {
    "fernet": lambda: Fernet.generate_key().decode(),
    # URL-safe, so a secret can sit inside a broker or database URL unquoted.
    "token": lambda: _random.token_urlsafe(32),
}


def ensure_secrets(directory: Path, kinds: dict[str, str]) -> dict[str, str]:
    """Create missing secrets, keep existing ones, and return every value by name."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    values = {}
    for name, kind in kinds.items():
        path = directory / name
        if not path.exists():
            write_private(path, GENERATORS[kind]())
        mode = path.stat().st_mode & 0o777
        if mode != 0o600:
            raise PreflightError(f"secret file {path} has mode {mode:o}; it must be 600 (chmod 600 {path})")
        values[name] = path.read_text().strip()
        if not values[name]:
            raise PreflightError(f"secret file {path} is empty; delete it to have a new one generated")
    return values


def write_private(path: Path, text: str, owner: tuple[int, int] | None = None) -> None:
    """Write a file that holds secrets (rendered configs too) with mode 0600 from the start, atomically
    and on disk before it replaces the old one (a crash leaves the old file or the new, whole); owned by
    `owner` (uid, gid) before it appears, where another account reads it."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    if owner:
        os.chown(tmp, *owner)
    os.replace(tmp, path)

