"""The lineage graph in PostgreSQL (tables of migration V005): upsert a project's graph, query lineage.

A project's stored graph is the one of its latest write: nodes and edges are upserted, and
those the new graph no longer has are deleted, in one transaction.
"""

from __future__ import annotations

import json

from workers.platform_db.db import transaction


def upsert_graph(conn, graph: dict, run_id: str) -> dict:
    project = graph["project"]
    with transaction(conn) as cur:
        for node in graph["nodes"]:
            cur.execute(
                "INSERT INTO freshpoc_nodes (project, node_id, node_type, name, path, description, columns, run_id)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (project, node_id) DO UPDATE SET node_type = EXCLUDED.node_type,"
                " name = EXCLUDED.name, path = EXCLUDED.path, description = EXCLUDED.description,"
                " columns = EXCLUDED.columns, run_id = EXCLUDED.run_id, updated_at = now()",
                (project, node["id"], node["type"], node["name"], node["path"], node.get("description") or "",
                 json.dumps(node.get("columns") or []), run_id),
            )
        for edge in graph["edges"]:
            cur.execute(
                "INSERT INTO freshpoc_edges (project, parent_id, child_id, run_id) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (project, parent_id, child_id) DO UPDATE SET run_id = EXCLUDED.run_id",
                (project, edge["from"], edge["to"], run_id),
            )
        cur.execute("DELETE FROM freshpoc_edges WHERE project = %s AND run_id <> %s", (project, run_id))
        removed_edges = cur.rowcount
        cur.execute("DELETE FROM freshpoc_nodes WHERE project = %s AND run_id <> %s", (project, run_id))
        removed_nodes = cur.rowcount
    return {"project": project, "nodes": len(graph["nodes"]), "edges": len(graph["edges"]),
            "removed_nodes": removed_nodes, "removed_edges": removed_edges}


def load_graph(conn, project: str) -> dict | None:
    with transaction(conn) as cur:
        cur.execute(
            "SELECT node_id, node_type, name, path, description, columns FROM freshpoc_nodes"
            " WHERE project = %s ORDER BY node_id", (project,),
        )
        nodes = [
            {"id": i, "type": t, "name": n, "path": p, "description": d, "columns": c}
            for i, t, n, p, d, c in cur.fetchall()
        ]
        cur.execute("SELECT parent_id, child_id FROM freshpoc_edges WHERE project = %s ORDER BY 1, 2", (project,))
        edges = [{"from": parent, "to": child} for parent, child in cur.fetchall()]
    return {"project": project, "nodes": nodes, "edges": edges} if nodes else None


def node_exists(conn, project: str, node_id: str) -> bool:
    with transaction(conn) as cur:
        cur.execute("SELECT 1 FROM freshpoc_nodes WHERE project = %s AND node_id = %s", (project, node_id))
        return cur.fetchone() is not None


_WALK = {
    # Follow edges against (upstream) or along (downstream) the data flow.
    "upstream": ("child_id", "parent_id"),
    "downstream": ("parent_id", "child_id"),
}


def lineage(conn, project: str, node_id: str, direction: str, max_depth: int) -> list[dict]:
    """Nodes reachable from node_id in one direction, each at its shortest distance (1..max_depth)."""
    start, step = _WALK[direction]
    query = f"""
        WITH RECURSIVE walk (node_id, distance) AS (
            SELECT e.{step}, 1 FROM freshpoc_edges e WHERE e.project = %(project)s AND e.{start} = %(node)s
            UNION
            SELECT e.{step}, w.distance + 1 FROM walk w
            JOIN freshpoc_edges e ON e.project = %(project)s AND e.{start} = w.node_id
            WHERE w.distance < %(depth)s
        )
        SELECT w.node_id, n.node_type, n.name, min(w.distance) FROM walk w
        JOIN freshpoc_nodes n ON n.project = %(project)s AND n.node_id = w.node_id
        WHERE w.node_id <> %(node)s
        GROUP BY w.node_id, n.node_type, n.name ORDER BY 4, 1
    """
    with transaction(conn) as cur:
        cur.execute(query, {"project": project, "node": node_id, "depth": max_depth})
        return [{"id": i, "type": t, "name": n, "distance": d} for i, t, n, d in cur.fetchall()]
