"""FreshPoC's lineage graph store against a real PostgreSQL: latest write wins, lineage walks."""

import psycopg2
import pytest

from workers.freshpoc import graph_store

P = "jaffle_shop"


def node(name, node_type="model", **extra):
    return {"id": f"{node_type}.{P}.{name}", "type": node_type, "name": name, "path": f"models/{name}.sql", **extra}


def nid(name, node_type="model"):
    return f"{node_type}.{P}.{name}"


def graph(nodes, edges, project=P):
    """edges: (parent name, child name) of model nodes unless given as full ids."""
    full = [(a if "." in a else nid(a), b if "." in b else nid(b)) for a, b in edges]
    return {"project": project, "nodes": nodes, "edges": [{"from": a, "to": b} for a, b in full]}


# raw_orders (seed) -> stg_orders -> orders -> customers <- stg_customers; legacy is an orphan
JAFFLE = graph(
    [node("raw_orders", "seed", description="seeded orders", columns=["id", "amount"]), node("stg_orders"),
     node("orders"), node("stg_customers"), node("customers"), node("legacy")],
    [("seed.jaffle_shop.raw_orders", "stg_orders"), ("stg_orders", "orders"), ("orders", "customers"),
     ("stg_customers", "customers")],
)


def test_a_written_graph_reads_back_as_it_was_written(platform_db):
    assert graph_store.upsert_graph(platform_db, JAFFLE, "run-1") == {
        "project": P, "nodes": 6, "edges": 4, "removed_nodes": 0, "removed_edges": 0}
    stored = graph_store.load_graph(platform_db, P)
    assert stored["project"] == P
    assert stored["nodes"] == sorted(
        ({"description": "", "columns": [], **n} for n in JAFFLE["nodes"]), key=lambda n: n["id"])
    assert stored["edges"] == sorted(JAFFLE["edges"], key=lambda e: (e["from"], e["to"]))
    assert graph_store.node_exists(platform_db, P, nid("orders"))
    assert not graph_store.node_exists(platform_db, P, nid("nope"))
    assert graph_store.load_graph(platform_db, "other_project") is None


def test_the_latest_write_replaces_the_graph_and_reports_what_it_removed(platform_db):
    graph_store.upsert_graph(platform_db, JAFFLE, "run-1")
    smaller = graph([node("stg_orders", description="now documented"), node("orders")], [("stg_orders", "orders")])

    assert graph_store.upsert_graph(platform_db, smaller, "run-2") == {
        "project": P, "nodes": 2, "edges": 1, "removed_nodes": 4, "removed_edges": 3}

    stored = graph_store.load_graph(platform_db, P)
    assert [(n["name"], n["description"]) for n in stored["nodes"]] == [("orders", ""),
                                                                        ("stg_orders", "now documented")]
    assert stored["edges"] == smaller["edges"]
    with platform_db.cursor() as cur:
        cur.execute("SELECT DISTINCT run_id FROM freshpoc_nodes UNION SELECT DISTINCT run_id FROM freshpoc_edges")
        assert cur.fetchall() == [("run-2",)]


def test_writing_the_same_graph_again_changes_nothing_but_the_run(platform_db):
    graph_store.upsert_graph(platform_db, JAFFLE, "run-1")
    first = graph_store.load_graph(platform_db, P)
    assert graph_store.upsert_graph(platform_db, JAFFLE, "run-2")["removed_nodes"] == 0
    assert graph_store.upsert_graph(platform_db, JAFFLE, "run-2")["removed_edges"] == 0  # a retried write
    assert graph_store.load_graph(platform_db, P) == first


def test_projects_are_kept_apart(platform_db):
    graph_store.upsert_graph(platform_db, JAFFLE, "run-1")
    other = graph([node("orders")], [], project="other")
    graph_store.upsert_graph(platform_db, other, "run-9")
    assert len(graph_store.load_graph(platform_db, P)["nodes"]) == 6
    assert graph_store.lineage(platform_db, "other", nid("orders"), "upstream", 10) == []


def test_an_edge_to_an_unknown_node_fails_the_write_and_keeps_the_previous_graph(platform_db):
    graph_store.upsert_graph(platform_db, JAFFLE, "run-1")
    broken = graph([node("orders")], [("never_seen", "orders")])
    with pytest.raises(psycopg2.errors.ForeignKeyViolation):
        graph_store.upsert_graph(platform_db, broken, "run-2")
    assert len(graph_store.load_graph(platform_db, P)["nodes"]) == 6


def test_a_node_of_an_unknown_type_is_refused(platform_db):
    with pytest.raises(psycopg2.errors.CheckViolation):
        graph_store.upsert_graph(platform_db, graph([node("x", "snapshot")], []), "run-1")
    assert graph_store.load_graph(platform_db, P) is None


def walk(conn, start, direction, depth=10):
    return [(n["name"], n["distance"]) for n in graph_store.lineage(conn, P, nid(start), direction, depth)]


def test_lineage_walks_upstream_and_downstream_by_shortest_distance(platform_db):
    graph_store.upsert_graph(platform_db, JAFFLE, "run-1")
    assert walk(platform_db, "customers", "upstream") == [
        ("orders", 1), ("stg_customers", 1), ("stg_orders", 2), ("raw_orders", 3)]
    assert walk(platform_db, "stg_orders", "downstream") == [("orders", 1), ("customers", 2)]
    assert walk(platform_db, "customers", "downstream") == []
    assert walk(platform_db, "legacy", "upstream") == []
    [raw] = graph_store.lineage(platform_db, P, nid("orders"), "upstream", 10)[1:]
    assert raw == {"id": "seed.jaffle_shop.raw_orders", "type": "seed", "name": "raw_orders", "distance": 2}


def test_lineage_stops_at_the_depth_limit(platform_db):
    graph_store.upsert_graph(platform_db, JAFFLE, "run-1")
    assert walk(platform_db, "customers", "upstream", depth=1) == [("orders", 1), ("stg_customers", 1)]
    assert walk(platform_db, "customers", "upstream", depth=2) == [
        ("orders", 1), ("stg_customers", 1), ("stg_orders", 2)]


def test_a_shortcut_gives_the_shorter_distance_and_a_cycle_ends(platform_db):
    names = ["a", "b", "c", "d"]
    diamond = graph([node(n) for n in names], [("a", "b"), ("b", "c"), ("c", "d"), ("a", "d"), ("d", "a")])
    graph_store.upsert_graph(platform_db, diamond, "run-1")
    assert walk(platform_db, "a", "downstream") == [("b", 1), ("d", 1), ("c", 2)]  # a itself is left out
    assert walk(platform_db, "d", "upstream", depth=100) == [("a", 1), ("c", 1), ("b", 2)]
