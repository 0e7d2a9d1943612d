"""Lineage metrics of a graph: depth, fan-in and fan-out per node, orphans and cycles.

Depth is the longest path from a root (a node without parents, depth 0). Nodes on a cycle
share one depth, computed on the graph of strongly connected components, so a cycle never
makes the depth infinite; the cycles themselves are listed.
"""

from __future__ import annotations


def _adjacency(graph: dict) -> tuple[list[str], dict[str, list[str]], dict[str, list[str]]]:
    ids = [node["id"] for node in graph["nodes"]]
    children: dict[str, list[str]] = {node_id: [] for node_id in ids}
    parents: dict[str, list[str]] = {node_id: [] for node_id in ids}
    for edge in graph["edges"]:
        children[edge["from"]].append(edge["to"])
        parents[edge["to"]].append(edge["from"])
    return ids, children, parents


def strongly_connected(ids: list[str], children: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: components come out children-first (reverse topological order)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in ids:
        if root in index:
            continue
        work = [(root, iter(children[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for child in successors:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(children[child])))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def analyse(graph: dict) -> dict:
    ids, children, parents = _adjacency(graph)
    components = strongly_connected(ids, children)
    component_of = {node: n for n, component in enumerate(components) for node in component}
    depth_of_component: dict[int, int] = {}
    for n in reversed(range(len(components))):  # parents' components before children's
        parent_depths = [
            depth_of_component[component_of[parent]] + 1
            for node in components[n] for parent in parents[node] if component_of[parent] != n
        ]
        depth_of_component[n] = max(parent_depths, default=0)
    cycles = [c for c in components if len(c) > 1 or c[0] in children[c[0]]]
    per_node = {
        node: {
            "depth": depth_of_component[component_of[node]],
            "fan_in": len(set(parents[node])),
            "fan_out": len(set(children[node])),
            "upstream": sorted(set(parents[node])),
            "downstream": sorted(set(children[node])),
        }
        for node in ids
    }
    return {
        "project": graph["project"],
        "node_count": len(ids),
        "edge_count": len(graph["edges"]),
        "max_depth": max((m["depth"] for m in per_node.values()), default=0),
        "orphans": sorted(node for node, m in per_node.items() if m["fan_in"] == m["fan_out"] == 0),
        "cycles": sorted(cycles),
        "nodes": per_node,
    }
