"""The picture model every drawing is made from: VGraph (nodes, edges) and VNode (kind, label,
panels for control-flow bodies), built from a graphad Graph / Tensors / Traced; ONNX models are
in viz_onnx.py and summarising large pictures in viz_summary.py."""

from .graph import Graph, Operation, Tensor, ancestors
from .viz_text import body_graphs, tag_text, type_text, value_text

MAX_LABEL = 32
_LOOP_WORDS = ("loop", "while", "scan", "fori", "fixed_point", "root", "map")
_COND_WORDS = ("cond", "if", "switch", "case", "select_branch")


class VNode:
    """One box of the picture. `panels` (label, VGraph) makes it a cluster holding bodies."""

    __slots__ = ("id", "kind", "title", "lines", "tooltip", "panels", "marks", "name", "op",
                 "collapsed", "copy")

    def __init__(self, id_, kind, title, lines=(), tooltip="", name=None, op=None):
        self.id, self.kind, self.title = id_, kind, clip(title)
        self.lines = [clip(s) for s in lines if s]
        self.tooltip = tooltip or title
        self.panels = []
        self.marks = set()
        self.name = name if name is not None else title
        self.op = op if op is not None else title
        self.collapsed = 0
        self.copy = False  # a duplicate drawn beside one more consumer (see split_constants)

    def __repr__(self):
        return f"<VNode {self.id} {self.kind} {self.title!r}>"


class VGraph:
    """Nodes in schedule order and edges (src id, dst id, kind) with kind data/control/capture."""

    def __init__(self, title, nodes=(), edges=()):
        self.title = title
        self.nodes = list(nodes)
        self.edges = list(edges)
        self.note = ""

    def count(self):
        """Nodes including those inside panels, recursively (iterative walk)."""
        total, stack = 0, [self]
        while stack:
            vg = stack.pop()
            total += sum(1 for n in vg.nodes if not n.copy)
            for n in vg.nodes:
                stack.extend(p for _, p in n.panels)
        return total

    def walk(self):
        """Every VNode, panels included."""
        stack = [self]
        while stack:
            vg = stack.pop()
            for n in vg.nodes:
                yield n
                stack.extend(p for _, p in n.panels)


def clip(text, limit=MAX_LABEL):
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def collapsed_line(n_bodies, n_nodes):
    bodies = "1 body" if n_bodies == 1 else f"{n_bodies} bodies"
    return clip(f"{bodies}, {n_nodes} nodes (collapsed)")


def control_kind(op):
    low = op.lower()
    if any(w == low or low.startswith(w + "_") or low.endswith("_" + w) for w in _COND_WORDS):
        return "cond"
    if any(w in low for w in _LOOP_WORDS):
        return "loop"
    return "body"


def _node_kind(node):
    tags = node.tags or {}
    if tags.get("grad_of"):
        return "tangent" if tags.get("mode") == "jvp" else "grad"
    if node.op == "placeholder":
        return "input"
    if node.op == "variable":
        return "variable"
    if node.op == "constant":
        return "constant"
    if not node.outputs:
        return "operation"
    return "fused" if is_fused(node) else "op"


def is_fused(node):
    return bool((node.tags or {}).get("fused")) or node.op.startswith("fused")


def _node_lines(node):
    outs = node.outputs
    if node.op in ("placeholder", "variable"):
        return [type_text(outs[0].type)] if outs else []
    if node.op == "constant":
        return [type_text(outs[0].type)]
    if not outs:
        return [node.name] if node.name != node.op else []
    types = ", ".join(type_text(o.type) for o in outs[:2]) + (", \u2026" if len(outs) > 2 else "")
    name = node.name if node.name != node.op else ""
    return [f"{name} : {types}" if name else types]


def _tooltip(node):
    outs = ", ".join(f"{o.name}: {type_text(o.type)}" for o in node.outputs) or "(no outputs)"
    parts = [f"{node.name} = {node.op}", outs]
    tag = tag_text(node)
    if tag:
        parts.append(tag)
    if node.location:
        parts.append(f"at {node.location}")
    return "\n".join(parts)


def _title(node):
    if node.op == "constant" and "value" in node.attrs:
        return value_text(node.attrs["value"], limit=3)
    if node.op in ("placeholder", "variable") and node.outputs:
        return node.outputs[0].name
    return node.op


def from_graph(graph, nodes=None, outputs=(), extra_inputs=(), max_depth=3, prefix="n",
               depth=0, marks=None):
    """VGraph of `nodes` of `graph` (all by default); `outputs` are marked, and so is every node
    in `marks` ({id(node): mark}); bodies become panels."""
    nodes = list(graph.nodes if nodes is None else nodes)
    have = {id(n) for n in nodes}
    for t in extra_inputs:  # e.g. a Traced's unused placeholders
        if id(t.node) not in have:
            nodes.append(t.node)
            have.add(id(t.node))
    nodes.sort(key=lambda n: n.id)
    out_nodes = {id(o.node) for o in outputs}
    vg = VGraph(graph.name)
    ids = {}
    for node in nodes:
        vid = f"{prefix}{node.id}"
        ids[id(node)] = vid
        vn = VNode(vid, _node_kind(node), _title(node), _node_lines(node), _tooltip(node),
                   name=node.name, op=node.op)
        if id(node) in out_nodes:
            vn.marks.add("output")
        if is_fused(node):
            vn.marks.add("fused")
        if marks and id(node) in marks:
            vn.marks.add(marks[id(node)])
        _add_bodies(vn, node, max_depth, vid, depth)
        vg.nodes.append(vn)
    seen = set()
    for node in nodes:
        dst = ids[id(node)]
        for t in node.inputs:
            key = (ids.get(id(t.node)), dst)
            if key[0] is not None and key not in seen:
                seen.add(key)
                vg.edges.append((key[0], dst, "data"))
        for c in node.control_inputs:
            src = ids.get(id(c))
            if src is not None and (src, dst) not in seen:
                seen.add((src, dst))
                vg.edges.append((src, dst, "control"))
    return split_constants(vg)


def split_constants(vg):
    """Draw a constant once beside each of its consumers (as TensorBoard does): a scalar shared
    by a forward and a gradient node would otherwise pull a long edge across the picture."""
    users = {}
    for i, (src, _, kind) in enumerate(vg.edges):
        users.setdefault(src, []).append(i)
    nodes = []
    for vn in vg.nodes:
        uses = users.get(vn.id, ())
        if vn.kind != "constant" and not (vn.op == "constant" and not vn.panels):
            nodes.append(vn)
            continue
        if len(uses) <= 1:
            nodes.append(vn)
            continue
        for k, i in enumerate(uses):
            twin = vn if k == 0 else _copy(vn, f"{vn.id}_c{k}")
            src, dst, kind = vg.edges[i]
            vg.edges[i] = (twin.id, dst, kind)
            nodes.append(twin)
    vg.nodes = nodes
    return vg


def _copy(vn, vid):
    twin = VNode(vid, vn.kind, vn.title, vn.lines, vn.tooltip, name=vn.name, op=vn.op)
    twin.marks = set(vn.marks) | {"copy"}
    twin.copy = True
    return twin


def _add_bodies(vn, node, max_depth, vid, depth):
    bodies = body_graphs(node)
    if not bodies:
        return
    if vn.kind == "op":
        vn.kind = control_kind(node.op)
    vn.marks.add("control")
    vn.marks.add(control_kind(node.op))
    if depth >= max_depth:
        vn.collapsed = sum(len(g.nodes) for _, g, _ in bodies)
        vn.lines.append(collapsed_line(len(bodies), vn.collapsed))
        return
    for key, body, outs in bodies:
        sub = from_graph(body, outputs=outs or (), max_depth=max_depth,
                         prefix=f"{vid}_{len(vn.panels)}_", depth=depth + 1)
        vn.panels.append((key, sub))


def collapse(vg, max_nodes):
    """Fold panels (deepest first) until the whole picture has at most `max_nodes` nodes."""
    depth_of = {}
    stack = [(vg, 0)]
    holders = []
    while stack:
        g, d = stack.pop()
        for n in g.nodes:
            if n.panels:
                holders.append((d, n))
                depth_of[n.id] = d
                stack.extend((p, d + 1) for _, p in n.panels)
    holders.sort(key=lambda dn: -dn[0])
    total = vg.count()
    for _, n in holders:
        if total <= max_nodes:
            break
        if not n.panels:
            continue
        inner = sum(p.count() for _, p in n.panels)
        n.lines.append(collapsed_line(len(n.panels), inner))
        n.collapsed, n.panels = inner, []
        total -= inner
    return vg


def _leaves(x):
    from . import tree  # noqa: PLC0415

    return [t for t in tree.leaves(x) if isinstance(t, (Tensor, Operation))]


def is_traced(x):
    return (not isinstance(x, (Graph, Tensor, Operation)) and hasattr(x, "outputs")
            and isinstance(getattr(x, "graph", None), Graph))


def is_onnx(x):
    return type(x).__name__ in ("ModelProto", "GraphProto") and hasattr(x, "SerializeToString")


def build(x, max_depth=3):
    """VGraph of whatever `draw` accepts (Graph, Tensor pytree, Traced, ONNX model or path)."""
    if isinstance(x, Graph):
        return from_graph(x, max_depth=max_depth)
    if is_onnx(x) or (isinstance(x, str) and x.endswith(".onnx")) or _is_onnx_path(x):
        from .viz_onnx import from_onnx  # noqa: PLC0415

        return from_onnx(x, max_depth=max_depth)
    if is_traced(x):
        outs = _leaves(x.outputs)
        ins = [t for t in _leaves(getattr(x, "inputs", ())) if isinstance(t, Tensor)]
        vg = from_graph(x.graph, ancestors(outs) if outs else [], outputs=outs,
                        extra_inputs=ins, max_depth=max_depth)
        vg.title = getattr(x, "name", None) or x.graph.name
        return vg
    leaves = _leaves(x)
    if not leaves:
        raise TypeError(
            f"ga.viz cannot draw {type(x).__name__}: expected a Graph, a Tensor or pytree of "
            "Tensors, a Traced (an object with .graph and .outputs) or an onnx.ModelProto"
        )
    graph = leaves[0].graph
    if any(t.graph is not graph for t in leaves):
        raise ValueError("ga.viz: the tensors to draw belong to different graphs")
    return from_graph(graph, ancestors(leaves), outputs=leaves, max_depth=max_depth)


def _is_onnx_path(x):
    import os  # noqa: PLC0415

    return isinstance(x, os.PathLike) and os.fspath(x).endswith(".onnx")
