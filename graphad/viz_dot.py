"""DOT source of a picture model, styled like the built-in SVG (same colours, CSS classes through
Graphviz's `class` attribute), and running `dot -Tsvg` / `-Tpng` when Graphviz is installed."""

import shutil
import subprocess

from .viz_layout import node_shape, shape_of
from .viz_style import CLUSTERS, EDGES, KINDS, MARKS, cluster_kind, legend_items, mark_of

_SHAPES = {"ellipse": "ellipse", "hexagon": "hexagon", "group": "folder", "summary": "note"}


def q(text):
    """A DOT double-quoted string."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def h(text):
    """Text for inside a Graphviz HTML-like label."""
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _html_label(node):
    rows = [f"<b>{h(node.title)}</b>"]
    rows += [f'<font face="monospace" point-size="9" color="#444444">{h(s)}</font>'
             for s in node.lines]
    return "<" + "<br/>".join(rows) + ">"


def _node_attrs(node):
    fill, stroke, _ = KINDS.get(node.kind, KINDS["op"])
    style = ["filled"]
    shape = _SHAPES.get(node.kind, _SHAPES.get(node_shape(node), "box"))
    if shape == "box":
        style.append("rounded")
    if node.kind in ("summary", "operation"):
        style.append("dashed")
    pen = 1.2
    if "fused" in node.marks:
        stroke, pen = KINDS["fused"][1], 2.0
    mark = mark_of(node)
    if mark:
        m_stroke, pen, dash, opacity, _ = MARKS[mark]
        stroke = m_stroke or stroke
        if dash:
            style.append("dashed")
        if opacity < 1:  # faded: a translucent fill
            fill += f"{int(opacity * 255):02x}"
    classes = " ".join([f"kind_{node.kind}"] + [f"mark_{m}" for m in sorted(node.marks)])
    attrs = [f"label={_html_label(node)}", f"shape={shape}", f"style={q(','.join(style))}",
             f"fillcolor={q(fill)}", f"color={q(stroke)}", f"penwidth={pen}",
             f"class={q(classes)}", f"tooltip={q(node.tooltip)}"]
    if node.kind == "variable":
        attrs.append("peripheries=2")
    return ", ".join(attrs)


def _cluster_classes(node, ck):
    kinds = dict.fromkeys([f"kind_{ck}", f"kind_{node.kind}"])  # Graphviz adds "cluster"
    return " ".join(list(kinds) + [f"mark_{m}" for m in sorted(node.marks)])


class _Dot:
    def __init__(self):
        self.lines = []
        self.compound = {}  # compound node id -> its cluster name (for lhead / ltail)

    def add(self, text, depth):
        self.lines.append("  " * depth + text)

    def graph(self, vg, depth):
        for node in vg.nodes:
            if node.panels:
                self.cluster(node, depth)
            else:
                self.add(f"{q(node.id)} [{_node_attrs(node)}];", depth)
        for src, dst, kind in vg.edges:
            color, dash = EDGES.get(kind, EDGES["data"])
            attrs = [f"color={q(color)}", f"class={q('edge_' + kind)}"]
            if dash:
                attrs.append('style="dashed"' if kind == "control" else 'style="dotted"')
            if dst in self.compound:
                attrs.append(f"lhead={q(self.compound[dst])}")
            if src in self.compound:
                attrs.append(f"ltail={q(self.compound[src])}")
            self.add(f"{q(src)} -> {q(dst)} [{', '.join(attrs)}];", depth)

    def cluster(self, node, depth):
        ck = cluster_kind(node)
        fill, stroke, _ = CLUSTERS[ck]
        name = f"cluster_{node.id}"
        self.compound[node.id] = name
        self.add(f"subgraph {q(name)} {{", depth)
        self.add(f"label={_html_label(node)}; labeljust=l;", depth + 1)
        self.add(f'style="filled,dashed,rounded"; fillcolor={q(fill)}; color={q(stroke)}; '
                 f"penwidth=1.4; class={q(_cluster_classes(node, ck))};", depth + 1)
        # an invisible anchor inside the cluster: outer edges end on it, clipped by lhead/ltail
        anchor = (f"{q(node.id)} [label=\"\", shape=point, style=invis, width=0.01, "
                  f"class={q(f'kind_{node.kind} anchor')}, tooltip={q(node.tooltip)}];")
        self.add(anchor, depth + 1)
        for i, (label, sub) in enumerate(node.panels):
            self.add(f"subgraph {q(f'{name}_{i}')} {{", depth + 1)
            self.add(f'label={q(label)}; style="filled,rounded"; fillcolor="#ffffff"; '
                     f'color={q(stroke)}; fontname="Helvetica-Oblique"; class="panel";', depth + 2)
            self.graph(sub, depth + 2)
            self.add("}", depth + 1)
        self.add("}", depth)

    def legend(self, vg):
        items = legend_items(vg)
        if not items:
            return
        self.add('subgraph "cluster_legend" {', 1)
        self.add('label="legend"; style="rounded"; color="#bbbbbb"; class="legend";', 2)
        self.add("{ rank=same; " + " ".join(q(f"legend_{c}_{k}") for k, c, _ in items) + " }", 2)
        prev = None
        for kind, cat, text in items:
            lid = f"legend_{cat}_{kind}"
            if cat == "kind":
                fill, stroke, _ = KINDS[kind]
                shape = _SHAPES.get(kind, _SHAPES.get(shape_of(kind), "box"))
            elif cat == "cluster":
                (fill, stroke, _), shape = CLUSTERS[kind], "box"
            elif cat == "mark":
                fill, stroke, shape = "#ffffff", MARKS[kind][0] or "#333333", "box"
            else:
                fill, stroke, shape = "#ffffff", EDGES[kind][0], "plaintext"
            self.add(f"{q(lid)} [label={q(text)}, shape={shape}, style={q('filled,rounded')}, "
                     f"fillcolor={q(fill)}, color={q(stroke)}, fontsize=10];", 2)
            if prev is not None:
                self.add(f"{q(prev)} -> {q(lid)} [style=invis];", 2)
            prev = lid
        self.add("}", 1)


def to_dot(vg, title=None, legend=True):
    """DOT source text for a VGraph."""
    d = _Dot()
    title = title if title is not None else f"{vg.title} \u2014 {vg.count()} nodes"
    if vg.note:
        title += f"\\n{vg.note}"
    d.add(f"digraph {q(vg.title)} {{", 0)
    # network simplex is what makes dot take minutes on a few hundred nodes with long edges
    speed = "nslimit=4, nslimit1=4, mclimit=0.5, " if vg.count() > 80 else ""
    d.add(f"graph [rankdir=TB, compound=true, fontname=\"Helvetica\", fontsize=12, {speed}"
          f"nodesep=0.25, ranksep=0.35, labelloc=t, labeljust=l, label={q(title)}];", 1)
    d.add('node [fontname="Helvetica", fontsize=11, margin="0.12,0.04", penwidth=1.2];', 1)
    d.add('edge [color="#555555", arrowsize=0.7, penwidth=1.1];', 1)
    d.graph(vg, 1)
    if legend:
        d.legend(vg)
    d.add("}", 0)
    return "\n".join(d.lines) + "\n"


def dot_binary():
    return shutil.which("dot")


def run_dot(source, fmt="svg", timeout=30):
    """Bytes of `dot -T<fmt>` applied to `source`; RuntimeError when Graphviz fails or is absent."""
    exe = dot_binary()
    if exe is None:
        raise RuntimeError("the Graphviz `dot` program is not on PATH; use engine='builtin' "
                           "(or install Graphviz)")
    try:
        done = subprocess.run([exe, f"-T{fmt}"], input=source.encode(), capture_output=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"running Graphviz `dot -T{fmt}` failed: {e}") from e
    if done.returncode != 0 or not done.stdout:
        msg = done.stderr.decode(errors="replace").strip()[:500]
        raise RuntimeError(f"Graphviz `dot -T{fmt}` exited with {done.returncode}: {msg}")
    return done.stdout
