"""No secret in the repository, and the scanner that proves it finds every kind it claims to."""

from __future__ import annotations

import subprocess

import pytest

from stackctl.model import settings
from tests.secret_scan import ALLOW_MARKER, scan_files, scan_text, tracked_files

PLANTED = {
    "private key": "-----BEGIN OPENSSH PRIVATE KEY-----",  # pragma: allowlist secret
    "AWS access key id": "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",  # pragma: allowlist secret
    "default password": "    password: admin",  # pragma: allowlist secret
    "default credentials in a URL": "conn = postgresql://airflow:airflow@pg/airflow",  # pragma: allowlist secret
    "default user:password pair": 'flower_basic_auth = "admin:admin"',  # pragma: allowlist secret
    "default value for a secret variable": "ADMIN_PASSWORD: ${ADMIN_PASSWORD:-airflow}",  # pragma: allowlist secret
}


def test_the_repository_holds_no_secret():
    findings = scan_files(tracked_files(settings.REPO), settings.REPO)
    assert findings == [], "\n".join(map(str, findings))


@pytest.mark.parametrize("rule", sorted(PLANTED))
def test_each_planted_kind_is_found(rule):
    assert [f.rule for f in scan_text("planted.yml", f"ok: 1\n{PLANTED[rule]}\n")] == [rule]


def test_a_generated_secret_value_is_found_by_name():
    value = "Zq8v3Jm1xK0pT6wNe2RbLc"
    (finding,) = scan_text("notes.md", f"the key is {value}\n", {"redis_password": value})
    assert (finding.line, finding.rule) == (1, "the value of secret redis_password")


def test_placeholders_and_secret_file_references_are_not_findings():
    text = ('    password: "{secrets.platform_db_password}"\n'
            "password_file: /run/secrets/admin_password\n"
            'flower_basic_auth: "{admin_user}:{secrets.flower_password}"\n')
    assert scan_text("config.yaml", text, {"short": "admin"}) == []


def test_a_line_marked_as_deliberate_is_skipped():
    assert scan_text("test.py", f'json={{"password": "admin"}}  # {ALLOW_MARKER}\n') == []  # pragma: allowlist secret


def test_a_secret_planted_in_a_repository_fails_the_repository_scan(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "clean.py").write_text("print('hello')\n")
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "compose.yaml").write_text("environment:\n  REDIS_PASSWORD: redis\n")
    (tmp_path / "ignored.key").write_text(PLANTED["private key"] + "\n")
    (tmp_path / ".gitignore").write_text("ignored.key\n")
    findings = scan_files(tracked_files(tmp_path), tmp_path)
    assert [(f.path, f.line, f.rule) for f in findings] == [("deploy/compose.yaml", 2, "default password")]
