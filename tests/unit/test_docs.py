"""The documentation's links resolve (README.md, docs/*.md, the runbooks), every page of docs/
is reachable from the README, and the README's architecture picture names what the deployment
model runs.

Links are checked as GitHub renders them: a relative link resolves from its page's folder to a
file or folder of the repository, and `#anchor` to a heading of the page it names (GitHub's
slug: lower case, punctuation dropped, spaces to hyphens, -1, -2 for repeats). Links in code
(fenced blocks and `inline code`) are text, not links.
"""

from __future__ import annotations

import re
import sys
from functools import cache
from pathlib import Path

from stackctl.model import processes, settings
from stackctl.model.secrets import deployed_secrets
from stackctl.model.target import ANSIBLE

REPO = settings.REPO
README = REPO / "README.md"
DOCS = REPO / "docs"
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"(`+).+?\1", re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
HTML_ID = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def pages() -> list[Path]:
    """README.md, docs/ and the runbooks, which link to the README."""
    return [README, *sorted(DOCS.glob("*.md")), REPO / "monitoring" / "runbooks.md"]


def prose(text: str) -> str:
    """The text without its code: fenced blocks and inline code spans."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def links(text: str) -> list[str]:
    return LINK.findall(prose(text))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: markup and punctuation dropped, lower case, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    text = page.read_text()
    seen: dict[str, int] = {}
    found = set(HTML_ID.findall(text))
    for heading in HEADING.findall(FENCE.sub("", text)):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def broken_links(page: Path) -> list[str]:
    """Every relative link of a page that does not resolve, as `target: why`."""
    broken = []
    for target in links(page.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # https:, mailto:: not a file of the repository
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.is_relative_to(REPO):
            broken.append(f"{target}: outside the repository")
        elif not resolved.exists():
            broken.append(f"{target}: no file or folder {resolved.relative_to(REPO)}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with the anchor #{anchor} in {resolved.relative_to(REPO)}")
    return broken


def test_every_relative_link_resolves_to_a_file_and_heading():
    problems = [f"{page.relative_to(REPO)}: {problem}" for page in pages() for problem in broken_links(page)]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_link_check_finds_a_missing_file_and_a_missing_anchor(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# A title\n\n## Pool's size: `heavy`\n")
    page.write_text("# Page\n\n[ok](there.md#pools-size-heavy) [self](#page) [web](https://example.org)\n"
                    "[gone](missing.md) [bad anchor](there.md#nowhere) `[code](not-a-link.md)`\n"
                    "```\n[fenced](not-a-link-either.md)\n```\n")
    assert broken_links(page) == ["missing.md: no file or folder missing.md",
                                  "there.md#nowhere: no heading with the anchor #nowhere in there.md"]


# The repository's top-level folders: inline code that starts with one names a path of the repository.
TOP_LEVEL = ("airflow/", "ansible/", "bench/", "compose/", "dags/", "docs/", "monitoring/", "plugins/", "services/",
             "tests/", "workers/")
CODE_SPAN = re.compile(r"`([^`\s]+)`")


def missing_paths(page: Path) -> list[str]:
    """Repository paths a page names in inline code (a file, a folder, or a test as file::test) that do not
    exist; a path with a placeholder or a wildcard, or a file the user creates (compose/.env), is not one."""
    missing = []
    for span in CODE_SPAN.findall(FENCE.sub("", page.read_text())):
        path = span.split("::", 1)[0].rstrip(",.:;")
        placeholder = set("<>*{}$") & set(path) or path == "compose/.env"
        if path.startswith(TOP_LEVEL) and not placeholder and not (REPO / path).exists():
            missing.append(path)
    return missing


def test_every_repository_path_a_page_names_exists():
    """A moved module or test leaves no stale path in the documentation."""
    stale = {str(page.relative_to(REPO)): missing for page in pages() if (missing := missing_paths(page))}
    assert stale == {}


def test_the_path_check_finds_a_stale_path(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("See `airflow/stackctl/processes.py` and `tests/unit/test_docs.py::test_x` and `compose/.env`.\n")
    assert missing_paths(page) == ["airflow/stackctl/processes.py"]


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in links(README.read_text())}
    unlinked = [page.relative_to(REPO) for page in sorted(DOCS.glob("*.md")) if page.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link to: {unlinked}"


def architecture_picture() -> str:
    """The fenced block under the README's `## Architecture` heading."""
    section = README.read_text().split("\n## Architecture\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"^```text\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert match, "README.md's Architecture section has no ```text block"
    return match.group(1)


def test_the_architecture_picture_names_every_process_and_host_group_with_its_ports():
    source = settings.load_source()
    model = processes.of_kind(source, ANSIBLE, deployed_secrets(source))
    picture = architecture_picture()
    words = set(re.findall(r"[\w-]+", picture))
    missing = sorted({p.name for p in model} - words) + sorted({p.group for p in model} - words)
    assert not missing, f"the README's architecture picture lacks {missing}: draw them (airflow/stackctl/model/)"
    default_ports = {p.name: {source["ports"][port] for port in p.listens} for p in model}
    for name, port in re.findall(r"([\w-]+) :(\d+)", picture):
        assert int(port) in default_ports.get(name, set()), (
            f"the README's architecture picture gives {name} port {port}; the model: {default_ports.get(name)}")
