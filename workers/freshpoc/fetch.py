"""Read a dbt project's text files from a repository: a local folder, a file:// URL or a git URL.

A local folder that is a git work tree's root, and every remote URL, is cloned with `git clone
--depth 1`, so the files are those of the commit (recorded as the revision); any other local
folder is read as it is. Only a dbt project's text files are read, within size limits, and
only what the ingestion rules allow (workers/freshpoc/confine.py).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from workers.exceptions import DataError
from workers.freshpoc import confine
from workers.freshpoc.confine import Policy, RepositoryRefused

SUFFIXES = (".sql", ".yml", ".yaml", ".csv", ".md")
SKIPPED_DIRS = {".git", "target", "dbt_packages", "logs", "node_modules"}
MAX_FILES = 5000
MAX_BYTES = 50 * 1024 * 1024
GIT_TIMEOUT_S = 60      # a local git command (rev-parse)
SIZE_POLL_S = 0.2       # how often a running clone's size is measured
# A service has nobody to answer a password or host-key prompt: git and ssh fail at once instead.
NO_PROMPTS = {**os.environ, "GIT_TERMINAL_PROMPT": "0",
              "GIT_SSH_COMMAND": os.environ.get("GIT_SSH_COMMAND", "ssh") + " -o BatchMode=yes"}


def local_path(repository: str) -> Path | None:
    """The folder a local repository names, or None for a remote git URL."""
    if repository.startswith("file://"):
        return Path(unquote(urlparse(repository).path))
    if repository.startswith("/"):
        return Path(repository)
    if "://" in repository or confine.SCP_LIKE.match(repository) or confine.is_remote_helper(repository):
        return None
    raise DataError(f"repository {confine.redact(repository)!r} is neither an absolute path, a file:// URL "
                    "nor a git URL")


def check_repository(repository: str, policy: Policy) -> Path | None:
    """Refuse a repository the rules forbid, or a local one that does not exist, before any work
    starts; the local folder, resolved, or None for a remote one."""
    path = local_path(repository)
    if path is None:
        confine.check_remote(repository)
        return None
    resolved = confine.check_local(path, policy)
    if not resolved.is_dir():
        raise DataError(f"repository {repository!r}: {path} is not a folder")
    return resolved


def read_files(folder: Path) -> dict[str, str]:
    files, total = {}, 0
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part in SKIPPED_DIRS for part in relative.parts[:-1]) or not path.is_file():
            continue
        if path.suffix not in SUFFIXES:
            continue
        total += path.stat().st_size
        if len(files) >= MAX_FILES or total > MAX_BYTES:
            raise DataError(f"repository is too large: more than {MAX_FILES} files or {MAX_BYTES} bytes of text")
        try:
            files[relative.as_posix()] = path.read_text()
        except UnicodeDecodeError:
            raise DataError(f"{relative} is not UTF-8 text") from None
    return files


def clone(url: str, checkout: Path, policy: Policy, local: bool) -> None:
    """`git clone --depth 1`, stopped and refused once it takes more than the policy's bytes or time.

    The size is measured on disk while git works (its pack grows in the checkout's .git), so a
    huge repository is stopped near the cap instead of filling the disk first.
    """
    protocols = (*confine.GIT_PROTOCOLS, *(confine.LOCAL_GIT_PROTOCOL if local else ()))
    shown = confine.redact(url)
    # git's messages go to a file: a pipe nobody reads while polling could fill and stall git.
    with (checkout.parent / "git-clone.err").open("w+") as errors:
        git = subprocess.Popen(["git", *protocols, "clone", "--quiet", "--depth", "1", "--no-tags", "--", url,
                                str(checkout)], stdout=subprocess.DEVNULL, stderr=errors, env=NO_PROMPTS)
        _watch(git, checkout, policy, shown)
        errors.seek(0)
        stderr = errors.read()
    if git.returncode != 0:
        raise DataError(f"git clone failed: {confine.scrub(stderr).strip()[-500:]}")
    if confine.tree_bytes(checkout) > policy.max_clone_bytes:  # a clone faster than one measurement
        raise _too_large(shown, policy)


def _too_large(shown: str, policy: Policy) -> RepositoryRefused:
    return RepositoryRefused(f"repository {shown!r} refused: the clone exceeds freshpoc.ingestion.max_clone_mb "
                             f"({policy.max_clone_bytes} bytes)")


def _watch(git: subprocess.Popen, checkout: Path, policy: Policy, shown: str) -> None:
    """Wait for the clone; kill it and refuse the repository once it is over the size or time cap."""
    deadline = time.monotonic() + policy.clone_timeout_s
    try:
        while git.poll() is None:
            if confine.tree_bytes(checkout) > policy.max_clone_bytes:
                raise _too_large(shown, policy)
            if time.monotonic() > deadline:
                raise RepositoryRefused(f"repository {shown!r} refused: the clone took longer than "
                                        f"freshpoc.ingestion.clone_timeout_s ({policy.clone_timeout_s:g} s)")
            time.sleep(SIZE_POLL_S)
    finally:
        if git.poll() is None:
            git.kill()
        git.wait()


def revision(checkout: Path) -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True,
                          timeout=GIT_TIMEOUT_S)
    if done.returncode != 0:
        raise DataError(f"git rev-parse failed: {done.stderr.strip()[-500:]}")
    return done.stdout.strip()


def fetch(repository: str, policy: Policy) -> tuple[dict[str, str], str | None]:
    """The repository's text files by relative path, and the commit they come from (None if not git)."""
    folder = check_repository(repository, policy)
    if folder is not None:
        # Before git or this reads it: a .git, or a file, linked outside the repository is refused.
        confine.refuse_escaping_symlinks(folder)
        if not (folder / ".git").is_dir():
            return read_files(folder), None
    with tempfile.TemporaryDirectory(prefix="freshpoc-clone-") as tmp:
        checkout = Path(tmp) / "repo"
        clone(folder.as_uri() if folder else repository, checkout, policy, local=folder is not None)
        confine.refuse_escaping_symlinks(checkout)  # a committed symlink is checked out as one
        return read_files(checkout), revision(checkout)
