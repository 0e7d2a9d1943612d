"""Render a project's lineage report as one self-contained HTML page."""

from __future__ import annotations

from html import escape

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.type { color: #666; font-size: .85em; }
"""


def _names(ids: list[str], names: dict[str, str]) -> str:
    return ", ".join(escape(names.get(node_id, node_id)) for node_id in ids) or "&ndash;"


def render(graph: dict, metrics: dict, run_id: str) -> str:
    """`graph` as stored (nodes, edges), `metrics` from lineage.analyse."""
    names = {node["id"]: node["name"] for node in graph["nodes"]}
    rows = []
    order = sorted(graph["nodes"], key=lambda n: (metrics["nodes"][n["id"]]["depth"], n["type"], n["name"]))
    for node in order:
        m = metrics["nodes"][node["id"]]
        rows.append(
            f"<tr id=\"{escape(node['id'])}\"><td>{escape(node['name'])} <span class=\"type\">{node['type']}</span>"
            f"<br><span class=\"type\">{escape(node['path'])}</span></td>"
            f"<td>{escape(node.get('description') or '')}</td><td>{m['depth']}</td>"
            f"<td>{m['fan_in']}</td><td>{m['fan_out']}</td>"
            f"<td>{_names(m['upstream'], names)}</td><td>{_names(m['downstream'], names)}</td></tr>"
        )
    cycles = "".join(f"<li>{_names(cycle, names)}</li>" for cycle in metrics["cycles"]) or "<li>none</li>"
    models = sum(1 for node in graph["nodes"] if node["type"] == "model")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Lineage report: {escape(graph['project'])}</title><style>{_STYLE}</style></head>
<body>
<h1>Lineage report: {escape(graph['project'])}</h1>
<p>Run <code>{escape(run_id)}</code>: {models} models, {metrics['node_count']} nodes, {metrics['edge_count']} edges,
maximum depth {metrics['max_depth']}.</p>
<h2>Nodes and their lineage</h2>
<table>
<tr><th>node</th><th>description</th><th>depth</th><th>fan-in</th><th>fan-out</th><th>upstream</th>
<th>downstream</th></tr>
{chr(10).join(rows)}
</table>
<h2>Orphans</h2>
<p>{_names(metrics['orphans'], names)}</p>
<h2>Cycles</h2>
<ul>{cycles}</ul>
</body></html>
"""
