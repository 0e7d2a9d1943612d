"""A backup's files on disk or in S3: a manifest of sha256 checksums, published last, checked first.

A backup is a folder (or an s3:// prefix) of files and MANIFEST.json, which lists every other file
with its size and sha256. The manifest is written only once every file is in place, so a backup
without it is one that did not finish, and `restore` refuses it. A local backup is also built
under a hidden temporary name beside its destination and renamed into place (atomic on one file
system): a reader never sees a partial folder under the final name. S3 has no rename; there the
manifest, written last, is what publishes the backup.

Destinations go through fsspec (s3fs for s3://), with the standard AWS credential chain:
AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, and AWS_ENDPOINT_URL for a non-AWS S3.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import fsspec

from stackctl.errors import StackError

MANIFEST = "MANIFEST.json"
FORMAT = 1
# Owner-only: a backup holds the fernet key and the admin password (see backup.DATA_SECRETS).
PRIVATE_FOLDER_MODE = 0o700


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def list_files(folder: Path) -> dict[str, dict]:
    """{relative path: {bytes, sha256}} of every file below folder, the manifest excepted."""
    return {
        path.relative_to(folder).as_posix(): {"bytes": path.stat().st_size, "sha256": sha256_of(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() != MANIFEST
    }


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_manifest(folder: Path, manifest: dict) -> None:
    path = folder / MANIFEST
    with path.open("w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def local_path(url: str) -> Path:
    return Path(url.removeprefix("file://")).absolute()


@contextlib.contextmanager
def staging_folder(destination: str) -> Iterator[Path]:
    """Where a backup is built: beside a local destination (so the final rename is atomic), else in /tmp.

    Removed afterwards unless it was published by renaming it into place.
    """
    if is_remote(destination):
        parent = None
    else:
        target = local_path(destination)
        if target.exists():
            raise StackError(f"backup destination {target} exists; give a new folder (backups are never overwritten)")
        parent = target.parent
        parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=".backup-partial-", dir=parent))  # 0700
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def publish(folder: Path, destination: str, manifest: dict) -> str:
    """Checksum every file into the manifest and publish the backup; return where it is."""
    manifest = {**manifest, "format": FORMAT, "files": list_files(folder)}
    if not is_remote(destination):
        target = local_path(destination)
        _write_manifest(folder, manifest)
        # rename refuses a non-empty target, and one created since staging_folder checked is one.
        os.rename(folder, target)
        _fsync_folder(target.parent)
        return str(target)
    fs, root = fsspec.core.url_to_fs(destination)
    root = root.rstrip("/")
    if fs.exists(f"{root}/{MANIFEST}"):
        raise StackError(f"a backup already exists at {destination}; give a new prefix")
    for name in manifest["files"]:
        fs.put_file(str(folder / name), f"{root}/{name}")
    # Last: only now is the backup complete, and restorable.
    fs.pipe_file(f"{root}/{MANIFEST}", json.dumps(manifest, indent=2, sort_keys=True).encode())
    return destination


@contextlib.contextmanager
def fetched(source: str) -> Iterator[tuple[Path, dict]]:
    """The backup as a local folder and its manifest, every file's checksum verified.

    A local backup is read in place; an S3 one is downloaded to a private temporary folder first.
    Raises StackError, naming each problem, before the caller has changed anything.
    """
    if not is_remote(source):
        folder = local_path(source)
        yield folder, verify(folder, source)
        return
    fs, root = fsspec.core.url_to_fs(source)
    root = root.rstrip("/")
    with tempfile.TemporaryDirectory(prefix="restore-") as scratch:
        folder = Path(scratch)
        try:
            manifest_bytes = fs.cat_file(f"{root}/{MANIFEST}")
        except FileNotFoundError:
            raise StackError(f"{source} has no {MANIFEST}: not a backup, or one that did not finish") from None
        (folder / MANIFEST).write_bytes(manifest_bytes)
        for name in _manifest(folder, source)["files"]:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):  # verify names it as missing
                fs.get_file(f"{root}/{name}", str(folder / name))
        yield folder, verify(folder, source)


def _manifest(folder: Path, source: str) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise StackError(f"{source} has no {MANIFEST}: not a backup, or one that did not finish")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise StackError(f"{source}/{MANIFEST} is not valid JSON: {exc}") from None
    is_manifest = isinstance(manifest, dict) and isinstance(manifest.get("files"), dict)
    if not is_manifest or manifest.get("format") != FORMAT:
        raise StackError(f"{source}/{MANIFEST}: not a backup manifest of format {FORMAT}")
    return manifest


def verify(folder: Path, source: str) -> dict:
    """The manifest, once every file it lists exists with its size and sha256; else StackError listing each fault."""
    manifest = _manifest(folder, source)
    problems = []
    for name, expected in sorted(manifest["files"].items()):
        path = folder / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif path.stat().st_size != expected["bytes"] or sha256_of(path) != expected["sha256"]:
            problems.append(f"{name}: checksum mismatch")
    if problems:
        raise StackError(f"backup {source} is damaged, nothing was changed: " + "; ".join(problems))
    return manifest


@contextlib.contextmanager
def exclusive(home: Path) -> Iterator[None]:
    """One backup or restore of a stack at a time: an flock on <home>/backup.lock, released on exit
    (by the kernel too, if the process dies), so a crashed run never leaves a stale lock."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / "backup.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StackError(f"another backup or restore of the stack in {home} is running; "
                             "try again when it ends") from None
        yield
