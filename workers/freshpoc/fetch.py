"""Read a dbt project's text files from a repository: a local folder, a file:// URL or any git URL.

A local folder that is a git work tree's root, and every remote URL, is cloned with `git clone
--depth 1`, so the files are those of the commit (recorded as the revision); any other local
folder is read as it is. Only a dbt project's text files are read, within size limits.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from workers.exceptions import DataError

SUFFIXES = (".sql", ".yml", ".yaml", ".csv", ".md")
SKIPPED_DIRS = {".git", "target", "dbt_packages", "logs", "node_modules"}
MAX_FILES = 5000
MAX_BYTES = 50 * 1024 * 1024
CLONE_TIMEOUT_S = 300
_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")  # git@host:org/repo.git


def local_path(repository: str) -> Path | None:
    """The folder a local repository names, or None for a remote git URL."""
    if repository.startswith("file://"):
        return Path(unquote(urlparse(repository).path))
    if repository.startswith("/"):
        return Path(repository)
    if "://" in repository or _SCP_LIKE.match(repository):
        return None
    raise DataError(f"repository {repository!r} is neither an absolute path, a file:// URL nor a git URL")


def check_repository(repository: str) -> None:
    """Refuse a local repository that does not exist before any work starts."""
    path = local_path(repository)
    if path is not None and not path.is_dir():
        raise DataError(f"repository {repository!r}: {path} is not a folder")


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


def _git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=CLONE_TIMEOUT_S)
    if done.returncode != 0:
        raise DataError(f"git {args[0]} failed: {done.stderr.strip()[-500:]}")
    return done.stdout.strip()


def fetch(repository: str) -> tuple[dict[str, str], str | None]:
    """The repository's text files by relative path, and the commit they come from (None if not git)."""
    path = local_path(repository)
    if path is not None:
        check_repository(repository)
        if not (path / ".git").exists():
            return read_files(path), None
        url = path.as_uri()
    else:
        url = repository
    with tempfile.TemporaryDirectory(prefix="freshpoc-clone-") as tmp:
        checkout = Path(tmp) / "repo"
        _git("clone", "--quiet", "--depth", "1", "--no-tags", "--", url, str(checkout))
        return read_files(checkout), _git("rev-parse", "HEAD", cwd=checkout)
