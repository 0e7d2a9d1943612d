"""What ingestion may read: the rules a repository must pass, each refusal naming its rule.

    local folders   only under Policy.allowed_roots, after symlinks are resolved (realpath)
    symlinks        none in a repository may resolve outside it
    git             https and ssh only (scp-like `user@host:path` is ssh); git itself is told the
                    same (`protocol.allow=never` plus those two), so a submodule or a redirect
                    cannot reach ext::, file:: or git://
    clones          at most Policy.max_clone_bytes on disk and Policy.clone_timeout_s
    credentials     `user:password@` never leaves this process: redact() is what is stored,
                    logged or returned

The policy comes from airflow/config.yaml (freshpoc.ingestion) through the ingestion
service's command line.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from workers.exceptions import DataError

REMOTE_SCHEMES = ("https", "ssh")
# git's own switches: every transport off, then the two allowed ones on (submodules and
# redirects included); `file` is turned on only for a local repository that passed its roots.
GIT_PROTOCOLS = ("-c", "protocol.allow=never", "-c", "protocol.https.allow=always",
                 "-c", "protocol.ssh.allow=always")
LOCAL_GIT_PROTOCOL = ("-c", "protocol.file.allow=always")
URL_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@'\"]*@")
# git@host:org/repo.git, ssh in scp's syntax; neither part may start with `-` (an ssh option).
SCP_LIKE = re.compile(r"^[\w.][\w.-]*@[\w.][\w.-]*:")


class RepositoryRefused(DataError):
    """A repository that breaks an ingestion rule: bad input, so the job fails at once (4xx)."""


@dataclass(frozen=True)
class Policy:
    allowed_roots: tuple[Path, ...]
    max_clone_bytes: int
    clone_timeout_s: float

    def __post_init__(self) -> None:
        # Roots are compared resolved, as the repositories are.
        object.__setattr__(self, "allowed_roots", tuple(Path(os.path.realpath(r)) for r in self.allowed_roots))


def redact(repository: str) -> str:
    """The repository without credentials: https keeps no user info at all (a token may be the
    user name), ssh keeps its user name (`git@`) but never a password."""
    parts = urlsplit(repository)
    if "@" not in parts.netloc or SCP_LIKE.match(repository):
        return repository
    userinfo, host = parts.netloc.rsplit("@", 1)
    user = userinfo.split(":", 1)[0]
    netloc = f"{user}@{host}" if parts.scheme == "ssh" and user else host
    return urlunsplit(parts._replace(netloc=netloc))


def scrub(text: str) -> str:
    """Free text (an error, a traceback, git's messages) with the user info of every URL in it removed."""
    return URL_USERINFO.sub(r"\1", text)


def check_local(path: Path, policy: Policy) -> Path:
    """The folder, resolved, if it lies under an allowed root."""
    resolved = Path(os.path.realpath(path))
    if not any(resolved.is_relative_to(root) for root in policy.allowed_roots):
        roots = ", ".join(str(root) for root in policy.allowed_roots)
        raise RepositoryRefused(f"repository {path} resolves to {resolved}, outside the allowed roots "
                                f"(freshpoc.ingestion.allowed_roots: {roots})")
    return resolved


def is_remote_helper(repository: str) -> bool:
    """git's `<transport>::<address>` syntax (ext::, fd::, https::...), which runs a remote helper."""
    return "::" in repository.split("/", 1)[0]


def check_remote(repository: str) -> None:
    """Refuse any git transport but https and ssh."""
    if is_remote_helper(repository):
        scheme = repository.split("::", 1)[0] + "::"
    else:
        scheme = "ssh" if SCP_LIKE.match(repository) else urlsplit(repository).scheme
    if scheme not in REMOTE_SCHEMES:
        raise RepositoryRefused(f"repository {redact(repository)!r}: git is allowed over "
                                f"{' and '.join(REMOTE_SCHEMES)} only, not {scheme or 'this transport'!r}")


def refuse_escaping_symlinks(root: Path) -> None:
    """Refuse a repository with a symlink (to a file or a folder) that resolves outside it."""
    root = Path(os.path.realpath(root))
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(folder, name)
            if path.is_symlink() and not Path(os.path.realpath(path)).is_relative_to(root):
                raise RepositoryRefused(f"repository refused: symlink {path.relative_to(root)} leaves the "
                                        "repository (symlinks must resolve inside it)")


def tree_bytes(root: Path) -> int:
    """Bytes on disk under a folder, symlinks not followed (a clone's size while it grows)."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # git renames its temporary files as it goes
                total += os.lstat(os.path.join(folder, name)).st_size
    return total
