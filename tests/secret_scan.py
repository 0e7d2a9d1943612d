"""A scanner for secrets that must never be committed or rendered where they do not belong.

It flags private keys, cloud access keys, well-known default credentials (a password set to
a word like admin or airflow, such a user:password pair in a URL, a shell default for a
*_PASSWORD variable), and any of a stack's generated secret values.
A line that must show such a value on purpose (a test proving a default password is refused)
carries the marker `pragma: allowlist secret`, as with detect-secrets.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

ALLOW_MARKER = "pragma: allowlist secret"
DEFAULT_WORDS = r"(?:admin|airflow|password|postgres|root|secret|changeme|guest|redis|flower|123456)"
RULES = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "default password": re.compile(
        # quoted anywhere, or unquoted at the end of a line (YAML, .cfg, .env); not `password=password,`
        rf"""(?i)(?:password|passwd|pwd)[A-Z_]*["']?\s*[:=]\s*(?:(["']){DEFAULT_WORDS}\1|{DEFAULT_WORDS}\s*$)"""),
    "default credentials in a URL": re.compile(rf"(?i)//{DEFAULT_WORDS}:{DEFAULT_WORDS}@"),
    "default user:password pair": re.compile(rf"(?i)\b{DEFAULT_WORDS}:{DEFAULT_WORDS}\b(?!@)(?=[\"'\s]|$)"),
    "default value for a secret variable": re.compile(r"(?i)(?:password|secret|token|key)[A-Z_]*:-[^}\s]+\}"),
}
# Generated secrets are long random text; shorter values would match by chance.
MIN_SECRET_LENGTH = 16


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}"


def scan_text(path: str, text: str, known_secrets: dict[str, str] | None = None) -> list[Finding]:
    secrets = {name: value for name, value in (known_secrets or {}).items() if len(value) >= MIN_SECRET_LENGTH}
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if ALLOW_MARKER in line:
            continue
        found += [Finding(path, number, rule) for rule, pattern in RULES.items() if pattern.search(line)]
        found += [Finding(path, number, f"the value of secret {name}") for name, value in secrets.items()
                  if value in line]
    return found


def scan_files(paths: list[Path], root: Path, known_secrets: dict[str, str] | None = None) -> list[Finding]:
    found = []
    for path in paths:
        data = path.read_bytes()
        if b"\0" in data[:8192]:  # binary
            continue
        found += scan_text(str(path.relative_to(root)), data.decode(errors="replace"), known_secrets)
    return found


def tracked_files(repo: Path) -> list[Path]:
    """Every file git tracks or would add (untracked, not ignored): what a commit could carry."""
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode()
    return [repo / name for name in listed.split("\0") if name and (repo / name).is_file()]
