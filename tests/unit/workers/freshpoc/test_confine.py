"""Ingestion's rules on real folders, symlinks and git repositories: what it refuses, and why."""

import os
import re
import subprocess

import pytest
from pydantic import ValidationError

from services.freshpoc.stages import StageRequest
from workers.freshpoc import confine, fetch
from workers.freshpoc.confine import Policy, RepositoryRefused
from workers.freshpoc.keys import RUN_KEY, run_key


def policy(root, max_clone_bytes=10 * 1024 * 1024) -> Policy:
    return Policy(allowed_roots=(root,), max_clone_bytes=max_clone_bytes, clone_timeout_s=60)


def make_project(folder):
    (folder / "models").mkdir(parents=True)
    (folder / "dbt_project.yml").write_text("name: p\n")
    (folder / "models" / "a.sql").write_text("select 1")


def commit_all(repo):
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)


def test_file_etc_is_outside_the_allowed_roots(tmp_path):
    with pytest.raises(RepositoryRefused, match=r"outside the allowed roots \(freshpoc.ingestion.allowed_roots"):
        fetch.fetch("file:///etc", policy(tmp_path))


def test_a_path_that_climbs_out_of_a_root_or_links_out_of_it_is_refused(tmp_path):
    root = tmp_path / "root"
    make_project(root / "p")
    (root / "etc").symlink_to("/etc")  # the link is under the root; where it leads is not
    for repository in (f"{root}/p/../../", str(root / "etc"), (root / "etc").as_uri()):
        with pytest.raises(RepositoryRefused, match="outside the allowed roots"):
            fetch.check_repository(repository, policy(root))
    assert fetch.check_repository(f"{root}/p/../p", policy(root)) == root / "p"


def test_a_symlink_leaving_a_plain_folder_refuses_the_repository(tmp_path):
    make_project(tmp_path / "p")
    (tmp_path / "p" / "models" / "passwd.yml").symlink_to("/etc/passwd")
    with pytest.raises(RepositoryRefused, match="symlink models/passwd.yml leaves the repository"):
        fetch.fetch(str(tmp_path / "p"), policy(tmp_path))


def test_a_symlinked_folder_leaving_the_repository_is_refused_and_one_inside_is_not(tmp_path):
    make_project(tmp_path / "p")
    (tmp_path / "p" / "inside").symlink_to(tmp_path / "p" / "models")
    assert sorted(fetch.fetch(str(tmp_path / "p"), policy(tmp_path))[0]) == ["dbt_project.yml", "models/a.sql"]
    (tmp_path / "p" / "seeds").symlink_to("/etc")
    with pytest.raises(RepositoryRefused, match="symlink seeds leaves the repository"):
        fetch.fetch(str(tmp_path / "p"), policy(tmp_path))


def test_a_committed_symlink_leaving_the_repository_is_refused_after_the_clone(tmp_path):
    repo = tmp_path / "repo"
    make_project(repo)
    (repo / "models" / "hosts.yml").symlink_to("/etc/hosts")
    commit_all(repo)
    (repo / "models" / "hosts.yml").unlink()  # gone from the work tree, still in the commit
    with pytest.raises(RepositoryRefused, match="symlink models/hosts.yml leaves the repository"):
        fetch.fetch(repo.as_uri(), policy(tmp_path))


def test_a_clone_over_the_size_cap_is_stopped_and_refused(tmp_path):
    repo = tmp_path / "repo"
    make_project(repo)
    (repo / "blob.bin").write_bytes(os.urandom(3 * 1024 * 1024))  # random: git cannot compress it
    commit_all(repo)
    with pytest.raises(RepositoryRefused, match=r"the clone exceeds freshpoc.ingestion.max_clone_mb \(1048576"):
        fetch.fetch(str(repo), policy(tmp_path, max_clone_bytes=1024 * 1024))
    assert sorted(fetch.fetch(str(repo), policy(tmp_path))[0]) == ["dbt_project.yml", "models/a.sql"]


def test_a_clone_over_the_time_cap_is_stopped_and_refused(tmp_path):
    repo = tmp_path / "repo"
    make_project(repo)
    commit_all(repo)
    no_time = Policy(allowed_roots=(tmp_path,), max_clone_bytes=2**20, clone_timeout_s=0)
    with pytest.raises(RepositoryRefused, match=r"took longer than freshpoc.ingestion.clone_timeout_s \(0 s\)"):
        fetch.fetch(str(repo), no_time)


@pytest.mark.parametrize(("repository", "scheme"), [
    ("ext::sh -c touch% /tmp/freshpoc-pwned", "ext::"),
    ("git://127.0.0.1:1/repo.git", "git"),
    ("http://127.0.0.1:1/repo.git", "http"),
    ("ftp://127.0.0.1:1/repo.git", "ftp"),
    ("https::127.0.0.1/repo.git", "https::"),
])
def test_git_is_https_and_ssh_only(repository, scheme):
    with pytest.raises(RepositoryRefused, match=f"git is allowed over https and ssh only, not '{scheme}'"):
        fetch.check_repository(repository, policy("/nonexistent"))


def test_https_ssh_and_scp_like_urls_pass_the_rules():
    for repository in ("https://github.com/dbt-labs/jaffle_shop.git", "ssh://git@github.com/dbt-labs/x.git",
                       "git@github.com:dbt-labs/jaffle_shop.git"):
        assert fetch.check_repository(repository, policy("/nonexistent")) is None


def test_git_itself_refuses_other_transports_even_past_the_url_check(tmp_path):
    """What a submodule or redirect would reach: git's own protocol switches refuse it."""
    marker = tmp_path / "pwned"
    for url in (f"ext::sh -c touch% {marker}", "git://127.0.0.1:1/repo.git", (tmp_path / "x").as_uri()):
        with pytest.raises(fetch.DataError, match="transport '(ext|git|file)' not allowed"):
            fetch.clone(url, tmp_path / "checkout", policy(tmp_path), local=False)
    assert not marker.exists()


def test_credentials_are_redacted_from_urls_and_free_text():
    assert confine.redact("https://user:s3cret@example.com/r.git") == "https://example.com/r.git"
    assert confine.redact("https://ghp_token@example.com/r.git") == "https://example.com/r.git"
    assert confine.redact("ssh://git:s3cret@example.com/r.git") == "ssh://git@example.com/r.git"
    assert confine.redact("git@example.com:org/r.git") == "git@example.com:org/r.git"
    text = "fatal: unable to access 'https://user:s3cret@example.com/r.git/': refused"
    assert confine.scrub(text) == "fatal: unable to access 'https://example.com/r.git/': refused"


def test_a_failed_clone_does_not_quote_the_credentials(tmp_path):
    with pytest.raises(fetch.DataError, match="git clone failed") as refused:
        fetch.fetch("https://user:s3cret@127.0.0.1:1/repo.git", policy(tmp_path))
    assert "s3cret" not in str(refused.value)


@pytest.mark.parametrize("key", ["..", ".", "a/b", "", "../etc", ".hidden", "a..b", "trailing.", "x" * 161])
def test_a_run_key_that_is_not_one_safe_path_segment_is_refused(key):
    with pytest.raises(ValidationError, match="run_key"):
        StageRequest(run_key=key)


def test_run_keys_of_any_run_id_pass_the_pattern():
    for run_id in ("manual__2026-11-24T03:00:00+00:00", "a..b/../c", "..", "", "é" * 300):
        assert re.fullmatch(RUN_KEY, run_key(run_id)), run_id
