from workers.freshpoc import lineage, report


def test_the_report_lists_each_node_with_its_lineage_and_escapes_text():
    graph = {"project": "shop<script>", "nodes": [
        {"id": "model.s.a", "type": "model", "name": "a", "path": "models/a.sql", "description": "<b>raw</b>"},
        {"id": "model.s.b", "type": "model", "name": "b", "path": "models/b.sql", "description": ""},
        {"id": "source.s.x.y", "type": "source", "name": "x.y", "path": "models/src.yml", "description": ""},
    ], "edges": [{"from": "model.s.a", "to": "model.s.b"}]}
    html = report.render(graph, lineage.analyse(graph), "manual__2026")
    assert "<script>" not in html and "shop&lt;script&gt;" in html and "&lt;b&gt;raw&lt;/b&gt;" in html
    row_b = html.split('<tr id="model.s.b">')[1].split("</tr>")[0]
    assert "<td>a</td>" in row_b  # b's upstream is a
    assert "x.y" in html.split("<h2>Orphans</h2>")[1]
    assert "2 models, 3 nodes, 1 edges" in html
