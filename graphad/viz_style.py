"""One colour/shape table for both picture writers (built-in SVG and DOT), and the legend."""

# kind -> (fill, stroke, legend text); every kind also becomes the CSS class `kind_<kind>`
KINDS = {
    "op": ("#e8f0fe", "#4a6fa5", "op"),
    "input": ("#d5f5d5", "#2e8b3a", "input"),
    "output": ("#d1f2eb", "#138d75", "output"),
    "variable": ("#fff3c4", "#b7950b", "variable"),
    "constant": ("#eeeeee", "#8c8c8c", "constant"),
    "operation": ("#f4f4f4", "#666666", "side effect"),
    "grad": ("#fadbd8", "#c0392b", "gradient (vjp)"),
    "tangent": ("#e8daef", "#7d3c98", "tangent (jvp)"),
    "fused": ("#fdebd0", "#d35400", "fused"),
    "loop": ("#eaf4fb", "#2e86c1", "loop"),
    "cond": ("#eef7e4", "#5b8c1a", "cond"),
    "body": ("#f2f2f2", "#7f7f7f", "subgraph"),
    "group": ("#f0f0f0", "#5d6d7e", "name scope"),
    "summary": ("#ffffff", "#999999", "hidden nodes"),
}
# cluster (a control-flow node drawn with its bodies) -> (fill, stroke, legend text)
CLUSTERS = {
    "loop": ("#eaf4fb", "#2e86c1", "loop body"),
    "cond": ("#eef7e4", "#5b8c1a", "cond branches"),
    "body": ("#f5f5f5", "#7f7f7f", "subgraph"),
}
# marks drawn on top of the kind: (stroke, stroke width, dash, opacity, legend text)
MARKS = {
    "output": (None, 2.6, None, 1.0, "returned value"),
    "removed": ("#c0392b", 2.2, "5,3", 0.45, "removed"),
    "added": ("#1e8449", 3.0, None, 1.0, "added"),
    "changed": ("#1a5276", 3.0, None, 1.0, "changed"),
}
EDGES = {"data": ("#555555", None), "control": ("#999999", "4,3"), "capture": ("#2e86c1", "2,3")}
TEXT, DETAIL = "#1b1b1b", "#444444"
SANS = "Helvetica, Arial, 'DejaVu Sans', sans-serif"
MONO = "Menlo, Consolas, 'DejaVu Sans Mono', monospace"


def cluster_kind(node):
    for kind in ("loop", "cond"):
        if kind in node.marks:
            return kind
    return "body"


def mark_of(node):
    for mark in ("removed", "added", "changed", "output"):
        if mark in node.marks:
            return mark
    return None


def legend_items(vg):
    """[(kind, category, text)] for what the picture shows: node kinds, clusters, marks, edges."""
    kinds, clusters, marks, edges = set(), set(), set(), set()
    stack = [vg]
    while stack:
        g = stack.pop()
        edges.update(kind for _, _, kind in g.edges)
        for n in g.nodes:
            if n.panels:
                clusters.add(cluster_kind(n))
                stack.extend(p for _, p in n.panels)
            else:
                kinds.add(n.kind)
            kinds.update(k for k in ("grad", "tangent", "fused") if k in n.marks)
            mark = mark_of(n)
            if mark:
                marks.add(mark)
    items = [(k, "kind", KINDS[k][2]) for k in KINDS if k in kinds]
    items += [(k, "cluster", CLUSTERS[k][2]) for k in CLUSTERS if k in clusters]
    items += [(k, "mark", MARKS[k][4]) for k in MARKS if k in marks]
    items += [(k, "edge", f"{k} edge") for k in ("control", "capture") if k in edges]
    return items
