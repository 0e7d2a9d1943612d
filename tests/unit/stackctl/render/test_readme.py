"""The tables rendered into README.md and docs/: each is in one page, and each is the fresh render."""

from __future__ import annotations

import pytest

from stackctl.model import firewall, processes, settings
from stackctl.model.listeners import BASIC_AUTH_SECRETS, TOKEN_SECRETS
from stackctl.render import readme


def test_every_rendered_block_is_the_fresh_render():
    stale = readme.drifted(settings.load_source())
    assert not stale, "\n".join(
        f"{page.relative_to(settings.REPO)}: the rendered block `{name}` differs from the deployment model; "
        f"run `{readme.RENDER_COMMAND}`" for name, page in stale)


def test_every_table_is_in_exactly_one_page():
    assert set(readme.placements()) == set(readme.TABLES)


def page(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def block(name, table):
    return f"{readme.start_marker(name)}\n{table}{readme.end_marker(name)}\n"


def test_a_drifted_block_is_found_in_its_page_and_rewritten(tmp_path):
    source = settings.load_source()
    fresh = (block("ports", readme.ports(source)) + block("processes", readme.process_table(source))
             + block("redis_users", readme.redis_users_table(source)))
    stale = block("firewall", "| from | to | ports |\n|---|---|---|\n| a | b | c |\n")
    pages = [page(tmp_path, "a.md", f"# A\n\n{fresh}\nafter\n"), page(tmp_path, "b.md", f"# B\n\n{stale}")]
    assert readme.drifted(source, pages) == [("firewall", pages[1])]
    rewritten = readme.render_text(source, pages[1].read_text())
    assert rewritten == f"# B\n\n{block('firewall', readme.firewall_table(source))}"
    assert readme.render_text(source, pages[0].read_text()) == pages[0].read_text()


@pytest.mark.parametrize("text, problem", [
    ("<!-- rendered: ports -->\n| x |\n", "opened"),
    ("<!-- rendered: nothing -->\n<!-- rendered: end nothing -->\n", "unknown rendered blocks"),
])
def test_an_unpaired_marker_or_an_unknown_table_is_refused(text, problem):
    with pytest.raises(ValueError, match=problem):
        readme.block_names(text)


def test_a_table_missing_or_in_two_pages_is_refused(tmp_path):
    source = settings.load_source()
    both = (block("ports", readme.ports(source)) + block("firewall", readme.firewall_table(source))
            + block("processes", readme.process_table(source)))
    with pytest.raises(ValueError, match="firewall is in 0 places"):
        readme.placements([page(tmp_path, "a.md", block("ports", readme.ports(source)))])
    with pytest.raises(ValueError, match="ports is in 2 places"):
        readme.placements([page(tmp_path, "b.md", both), page(tmp_path, "c.md", block("ports", "|x|\n"))])


def rows(source):
    """The ports table as {port: {column: cell}}."""
    lines = readme.ports(source).splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    table = [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
             for line in lines[2:]]
    return {row["port"].strip("`"): row for row in table}


def test_the_ports_table_has_every_port_of_config_yaml_with_its_default_and_protocol():
    source = settings.load_source()
    table = rows(source)
    assert set(table) == set(source["ports"])
    for port, row in table.items():
        assert row["default"] == str(source["ports"][port])
        assert row["protocol"] == ("udp" if port == "statsd" else "tcp")


def test_the_ports_table_says_who_reaches_each_port_from_the_model():
    source = settings.load_source()
    model = readme.multi_host(source)
    table = rows(source)
    for port in processes.PUBLIC_PORTS:
        assert firewall.OPERATORS in table[port]["reached by"], port
    for port in processes.local_ports(model):
        assert table[port]["reached by"].startswith("own host only"), port
        assert table[port]["authentication"] == "none: loopback, own host only", port
    assert "workers: worker-heavy, worker-light" in table["api"]["reached by"]  # the execution API


def test_the_ports_table_names_the_credential_of_every_guarded_listener():
    table = rows(settings.load_source())
    for port, secret in {**BASIC_AUTH_SECRETS, **TOKEN_SECRETS, "redis": "redis_celery_password",
                         "api": "jwt_secret"}.items():
        assert f"`{secret}`" in table[port]["authentication"], port
    assert table["inference"]["authentication"] == "bearer token `inference_token`; held by api-server (for tasks)"
    assert table["freshpoc_query"]["authentication"].startswith("none")
