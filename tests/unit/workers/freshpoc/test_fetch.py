import subprocess

import pytest

from workers.exceptions import DataError
from workers.freshpoc import fetch
from workers.freshpoc.confine import Policy


def policy(root) -> Policy:
    return Policy(allowed_roots=(root,), max_clone_bytes=10 * 1024 * 1024, clone_timeout_s=60)


def make_project(folder):
    (folder / "models").mkdir(parents=True)
    (folder / "dbt_project.yml").write_text("name: p\n")
    (folder / "models" / "a.sql").write_text("select 1")
    (folder / "target").mkdir()
    (folder / "target" / "compiled.sql").write_text("select 1")
    (folder / "logo.png").write_bytes(b"\x89PNG")


def test_a_plain_folder_is_read_without_build_output_or_binaries(tmp_path):
    make_project(tmp_path)
    files, revision = fetch.fetch(str(tmp_path), policy(tmp_path))
    assert sorted(files) == ["dbt_project.yml", "models/a.sql"] and revision is None
    assert fetch.fetch(tmp_path.as_uri(), policy(tmp_path))[0] == files


def test_a_git_repository_is_cloned_at_its_commit(tmp_path):
    repo = tmp_path / "repo"
    make_project(repo)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "dbt_project.yml", "models"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    (repo / "models" / "uncommitted.sql").write_text("select 2")
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    files, revision = fetch.fetch(repo.as_uri(), policy(tmp_path))
    assert sorted(files) == ["dbt_project.yml", "models/a.sql"]  # the commit, not the work tree
    assert revision == head


@pytest.mark.parametrize(("repository", "message"), [
    ("relative/path", "neither an absolute path"),
    ("/no/such/folder", "is not a folder"),
])
def test_a_bad_repository_is_refused(repository, message):
    with pytest.raises(DataError, match=message):
        fetch.check_repository(repository, policy("/"))


def test_a_remote_that_cannot_be_cloned_is_a_data_error():
    with pytest.raises(DataError, match="git clone failed"):
        fetch.fetch("ssh://nobody@127.0.0.1:1/missing.git", policy("/"))  # nothing listens on port 1


def test_remote_git_urls_are_not_local(tmp_path):
    assert fetch.local_path("https://github.com/dbt-labs/jaffle_shop.git") is None
    assert fetch.local_path("git@github.com:dbt-labs/jaffle_shop.git") is None
