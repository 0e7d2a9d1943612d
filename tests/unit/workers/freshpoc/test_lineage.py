from workers.freshpoc import lineage


def graph(edges: list[tuple[str, str]], extra_nodes=()) -> dict:
    ids = sorted({n for edge in edges for n in edge} | set(extra_nodes))
    return {"project": "p", "nodes": [{"id": i} for i in ids], "edges": [{"from": a, "to": b} for a, b in edges]}


def test_depth_is_the_longest_path_from_a_root_and_fans_count_neighbours():
    metrics = lineage.analyse(graph([("a", "b"), ("b", "c"), ("a", "c"), ("c", "d")]))
    nodes = metrics["nodes"]
    assert {n: m["depth"] for n, m in nodes.items()} == {"a": 0, "b": 1, "c": 2, "d": 3}
    assert (nodes["c"]["fan_in"], nodes["c"]["fan_out"]) == (2, 1)
    assert nodes["c"]["upstream"] == ["a", "b"] and nodes["a"]["downstream"] == ["b", "c"]
    assert metrics["max_depth"] == 3 and metrics["cycles"] == [] and metrics["orphans"] == []


def test_orphans_have_no_edges_at_all():
    metrics = lineage.analyse(graph([("a", "b")], extra_nodes=["lonely", "alone"]))
    assert metrics["orphans"] == ["alone", "lonely"]


def test_cycles_are_listed_and_their_nodes_share_a_finite_depth():
    metrics = lineage.analyse(graph([("root", "x"), ("x", "y"), ("y", "z"), ("z", "x"), ("z", "out"),
                                     ("self", "self")]))
    assert metrics["cycles"] == [["self"], ["x", "y", "z"]]
    depths = {n: m["depth"] for n, m in metrics["nodes"].items()}
    assert depths["x"] == depths["y"] == depths["z"] == 1
    assert depths["out"] == 2 and depths["self"] == 0


def test_a_long_chain_does_not_hit_the_recursion_limit():
    edges = [(f"n{i:05d}", f"n{i + 1:05d}") for i in range(5000)]
    assert lineage.analyse(graph(edges))["max_depth"] == 5000
