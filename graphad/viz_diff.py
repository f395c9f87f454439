"""What a pass did: match the nodes of two graphs (or output sets) by structure, then report the
nodes removed / added / changed by op type, with a side-by-side picture (removed nodes faded on
the left, new and changed nodes highlighted on the right)."""

import hashlib
import re
from collections import Counter

import numpy as np

from .graph import Graph, Operation, Tensor, ancestors
from .viz_model import _leaves, from_graph, is_traced
from .viz_summary import summarise
from .viz_svg import MARGIN, _Writer, esc
from .viz_style import DETAIL, SANS, TEXT


def _selection(x, what):
    """(graph, nodes, outputs) of a Graph, Traced, pytree of Tensors, or `(outputs, report)`."""
    if (isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], list)
            and all(isinstance(r, dict) and "pass" in r for r in x[1])):
        x = x[0]  # the (new_outputs, report) pair ga.passes.optimize returns
    if isinstance(x, Graph):
        return x, list(x.nodes), []
    outs = _leaves(x.outputs) if is_traced(x) else _leaves(x)
    if not outs:
        raise TypeError(f"ga.viz.diff: {what} must be a Graph, a Traced or a pytree of Tensors, "
                        f"got {type(x).__name__}")
    return outs[0].graph, ancestors(outs), outs


def _attr_key(value):
    if isinstance(value, np.ndarray):
        digest = hashlib.blake2b(np.ascontiguousarray(value).tobytes(), digest_size=8).hexdigest()
        return ("array", value.dtype.str, value.shape, digest)
    if isinstance(value, Graph):
        return ("graph", tuple(n.op for n in value.nodes))
    if isinstance(value, (Tensor, Operation)):
        return ("tensor", value.name)
    if isinstance(value, (list, tuple)):
        return tuple(_attr_key(v) for v in value)
    return repr(value)


def signatures(nodes):
    """{id(node): structural hash}: op, attributes and the signatures of its inputs."""
    sig = {}
    for node in sorted(nodes, key=lambda n: n.id):
        if node.op in ("placeholder", "variable"):
            name = node.outputs[0].name if node.outputs else node.name
            sig[id(node)] = hash((node.op, name, repr(node.outputs[0].type)))
            continue
        attrs = tuple((k, _attr_key(v)) for k, v in sorted(node.attrs.items()))
        ins = tuple((sig.get(id(t.node), t.node.name), t.index) for t in node.inputs)
        ctrl = tuple(sig.get(id(c), c.name) for c in node.control_inputs)
        types = tuple(repr(o.type) for o in node.outputs)
        sig[id(node)] = hash((node.op, attrs, ins, ctrl, types))
    return sig


def match(before, after):
    """(pairs unchanged, pairs changed, removed nodes, added nodes) of two node lists.

    Pairs by structure and name first, then by name and op (changed), then by structure alone.
    """
    sb, sa = signatures(before), signatures(after)
    pool, named = {}, {}
    for n in after:
        pool.setdefault(sa[id(n)], []).append(n)
        named.setdefault((n.name, n.op), n)
    used = set()
    same, changed, left = [], [], []
    for n in before:
        twin = named.get((n.name, n.op))
        if twin is not None and sa[id(twin)] == sb[id(n)]:
            used.add(id(twin))
            same.append((n, twin))
        else:
            left.append(n)
    rest, left = left, []
    for n in rest:
        twin = named.get((n.name, n.op))
        if twin is not None and id(twin) not in used:
            used.add(id(twin))
            changed.append((n, twin))
        else:
            left.append(n)
    removed = []
    for n in left:
        twin = next((m for m in pool.get(sb[id(n)], ()) if id(m) not in used), None)
        if twin is not None:
            used.add(id(twin))
            same.append((n, twin))
        else:
            removed.append(n)
    added = [n for n in after if id(n) not in used]
    return same, changed, removed, added


def _why(b, a):
    parts = []
    if tuple(t.name for t in b.inputs) != tuple(t.name for t in a.inputs):
        parts.append("inputs")
    if {k: _attr_key(v) for k, v in b.attrs.items()} != {k: _attr_key(v)
                                                          for k, v in a.attrs.items()}:
        parts.append("attributes")
    if [repr(o.type) for o in b.outputs] != [repr(o.type) for o in a.outputs]:
        parts.append("types")
    return "+".join(parts) or "upstream"


def _ops(nodes):
    return ", ".join(f"{op} \u00d7{k}" for op, k in Counter(n.op for n in nodes).most_common())


class GraphDiff:
    """Nodes removed / added / changed between two graphs; `str()` is the text summary, and it
    shows as a side-by-side picture (`.svg`, `_repr_svg_`, `.save(path)`)."""

    def __init__(self, before, after, engine="builtin", max_nodes=200, title="pass"):
        gb, nb, ob = _selection(before, "before")
        ga_, na, oa = _selection(after, "after")
        same, changed, removed, added = match(nb, na)
        self.title = title
        self.nodes_before, self.nodes_after = len(nb), len(na)
        self.unchanged = len(same)
        self.removed = [(n.name, n.op) for n in removed]
        self.added = [(n.name, n.op) for n in added]
        self.changed = [(a.name, a.op, _why(b, a)) for b, a in changed]
        self.by_op = {}
        for key, items in (("removed", self.removed), ("added", self.added),
                           ("changed", self.changed)):
            for item in items:
                self.by_op.setdefault(item[1], Counter())[key] += 1
        marks_b = {id(n): "removed" for n in removed} | {id(b): "changed" for b, _ in changed}
        marks_a = {id(n): "added" for n in added} | {id(a): "changed" for _, a in changed}
        sides = [(gb, nb, ob, marks_b, f"before \u2014 {len(nb)} nodes"),
                 (ga_, na, oa, marks_a, f"after \u2014 {len(na)} nodes")]
        self.dot, self.svg = _pictures(sides, engine, max_nodes, self.summary().splitlines())
        self.engine = engine

    def summary(self):
        lines = [f"{self.title}: {self.nodes_before} -> {self.nodes_after} nodes: "
                 f"{len(self.removed)} removed, {len(self.added)} added, "
                 f"{len(self.changed)} changed, {self.unchanged} unchanged"]
        for key, items in (("removed", self.removed), ("added", self.added),
                           ("changed", self.changed)):
            if items:
                ops = Counter(item[1] for item in items).most_common()
                lines.append(f"  {key:8} " + ", ".join(f"{op} \u00d7{k}" for op, k in ops))
        return "\n".join(lines)

    __str__ = summary

    def __repr__(self):
        return self.summary()

    def _repr_svg_(self):
        return self.svg

    def save(self, path):
        from .viz import Drawing  # noqa: PLC0415

        return Drawing(self.svg, self.dot, self.engine, self.title).save(path)


def _side_graph(graph, nodes, outs, marks, title, max_nodes):
    vg = from_graph(graph, nodes, outputs=outs, marks=marks)
    keep = {vn.id for vn in vg.nodes if vn.marks & {"removed", "added", "changed"}}
    vg = summarise(vg, max_nodes, keep=keep)
    vg.title = title
    return vg


def _pictures(sides, engine, max_nodes, summary_lines):
    """(DOT of both sides, one SVG with both pictures side by side under the summary)."""
    from .viz import render  # noqa: PLC0415

    parts, dots = [], []
    for graph, nodes, outs, marks, title in sides:
        vg = _side_graph(graph, nodes, outs, marks, title, max_nodes)
        drawing = render(vg, engine, title=title)
        dots.append(drawing.dot)
        parts.append(_nestable(drawing.svg))
    return "\n".join(dots), compose(parts, summary_lines)


_SIZE = re.compile(r'<svg\b[^>]*?\bwidth="([\d.]+)(pt|px)?"[^>]*?\bheight="([\d.]+)(pt|px)?"')


def _nestable(svg):
    """(svg element text without prolog, width px, height px)."""
    start = svg.find("<svg")
    body = svg[start:]
    m = _SIZE.search(body)
    w, h = (float(m.group(1)), float(m.group(3))) if m else (400.0, 300.0)
    if m and m.group(2) == "pt":
        w, h = w * 4 / 3, h * 4 / 3
    return body, w, h


def compose(parts, lines, gap=24):
    """One SVG: text lines on top, then the given SVG pictures side by side."""
    head_h = MARGIN + 20 * len(lines) + 8
    width = MARGIN * 2 + sum(w for _, w, _ in parts) + gap * (len(parts) - 1)
    height = head_h + max(h for _, _, h in parts) + MARGIN
    out = _Writer("diff")
    out.emit(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.1f}" '
             f'height="{height:.1f}" viewBox="0 0 {width:.1f} {height:.1f}" class="graphad-diff">')
    out.emit(f'<rect x="0" y="0" width="{width:.1f}" height="{height:.1f}" fill="#ffffff"/>')
    for i, line in enumerate(lines):
        weight = ' font-weight="bold"' if i == 0 else ""
        out.emit(f'<text x="{MARGIN}" y="{MARGIN + 14 + 20 * i}" font-family="{SANS}" '
                 f'font-size="{14 if i == 0 else 12.5}"{weight} fill="{TEXT if i == 0 else DETAIL}"'
                 f' xml:space="preserve">{esc(line)}</text>')
    x = MARGIN
    for body, w, h in parts:
        out.emit(f'<svg x="{x:.1f}" y="{head_h:.1f}" width="{w:.1f}" height="{h:.1f}"'
                 + body[len("<svg"):].split(">", 1)[0].replace(' width="', ' data-w="')
                 .replace(' height="', ' data-h="') + ">" + body.split(">", 1)[1])
        x += w + gap
    out.emit("</svg>")
    return "\n".join(out.out)


def diff(before, after, engine="builtin", max_nodes=200, title="pass"):
    """Compare two graphs / output sets (e.g. outputs before and after ga.passes.optimize)."""
    return GraphDiff(before, after, engine=engine, max_nodes=max_nodes, title=title)
