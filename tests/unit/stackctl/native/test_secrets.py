import os

import pytest
from cryptography.fernet import Fernet

from stackctl.errors import PreflightError
from stackctl.native.secrets import ensure_secrets, write_private


def test_secrets_are_generated_private_and_kept(tmp_path):
    first = ensure_secrets(tmp_path / "s", {"fernet_key": "fernet", "jwt_secret": "token"})
    assert oct((tmp_path / "s").stat().st_mode & 0o777) == "0o700"
    for name in first:
        assert (tmp_path / "s" / name).stat().st_mode & 0o777 == 0o600
    Fernet(first["fernet_key"].encode())  # a valid key
    assert len(first["jwt_secret"]) >= 40
    assert ensure_secrets(tmp_path / "s", {"fernet_key": "fernet", "jwt_secret": "token"}) == first


def test_each_generation_is_random(tmp_path):
    a = ensure_secrets(tmp_path / "a", {"x": "token"})
    b = ensure_secrets(tmp_path / "b", {"x": "token"})
    assert a != b


def test_a_world_readable_secret_is_refused(tmp_path):
    ensure_secrets(tmp_path, {"x": "token"})
    os.chmod(tmp_path / "x", 0o644)
    with pytest.raises(PreflightError, match="has mode 644; it must be 600"):
        ensure_secrets(tmp_path, {"x": "token"})


def test_write_private_never_exposes_the_file(tmp_path):
    path = tmp_path / "airflow.cfg"
    write_private(path, "secret")
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == "secret"
