"""The readable text IR: one line per node (outputs with types, op, attributes, inputs),
control-flow bodies indented beneath their node, gradient / fused / recomputed nodes marked."""

import numpy as np

from .graph import Graph, Operation, Tensor, ancestors

_SHORT = {"float16": "f16", "float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64",
          "bool": "bool"}
# attributes already visible in the output type, so repeating them is noise
_REDUNDANT = {"placeholder": ("shape", "dtype"), "variable": ("shape", "dtype")}
COMMENT_COLUMN = 64
ATTR_CHARS = 48


def type_text(t):
    """`f32[?,3]`: short dtype, `?` for unknown dims, named dims by their name."""
    dims = ",".join("?" if d is None else str(d) for d in t.shape)
    return f"{_SHORT.get(t.dtype.name, t.dtype.name)}[{dims}]"


def value_text(value, limit=6):
    """A constant's value: the numbers when small, `<f32[3,4]>` otherwise."""
    arr = np.asarray(value)
    if arr.size <= limit and arr.ndim <= 2:
        return _numbers(arr)
    dims = ",".join(str(d) for d in arr.shape)
    return f"<{_SHORT.get(arr.dtype.name, arr.dtype.name)}[{dims}]>"


def _numbers(arr):
    if arr.ndim == 0:  # str of a numpy scalar keeps its precision: 1.01 in f32, not 1.00999999
        return str(arr[()])
    return "[" + ",".join(_numbers(a) for a in arr) + "]"


def body_graphs(node):
    """(attribute key, Graph, outputs or None) for every subgraph a node holds in its attrs.

    Accepts a Graph, a list/tuple of Graphs, or any object with a `.graph` Graph (and optionally
    `.outputs`), so control-flow designs that wrap bodies keep working.
    """
    found = []
    for key, value in node.attrs.items():
        items = value if isinstance(value, (list, tuple)) else (value,)
        for i, item in enumerate(items):
            label = key if len(items) == 1 else f"{key}[{i}]"
            if isinstance(item, Graph):
                found.append((label, item, _outputs_for(node, key, item)))
            elif isinstance(getattr(item, "graph", None), Graph) and not isinstance(item, Tensor):
                found.append((label, item.graph, _leaf_tensors(getattr(item, "outputs", None))))
    return found


def _outputs_for(node, key, body):
    """The results of a body graph: its `.outputs`, else an attribute like `<key>_outputs`."""
    own = _leaf_tensors(list(getattr(body, "outputs", None) or ()))
    if own:
        return own
    for cand in (f"{key}_outputs", f"{key}_out", "outputs"):
        leaves = _leaf_tensors(node.attrs.get(cand))
        if leaves and all(t.graph is body for t in leaves):
            return leaves
    return None


def _leaf_tensors(value):
    if value is None:
        return None
    if isinstance(value, (Tensor, Operation)):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        leaves = []
        for v in value:
            sub = _leaf_tensors(v)
            if sub is None:
                return None
            leaves.extend(sub)
        return leaves
    return None


def attr_text(key, value, limit=ATTR_CHARS):
    if isinstance(value, np.ndarray):
        return f"{key}={value_text(value)}"
    if isinstance(value, Graph):
        return f"{key}=<graph {value.name}: {len(value.nodes)} nodes>"
    if isinstance(value, (Tensor, Operation)):
        return f"{key}=%{value.name}"
    if hasattr(value, "name") and not isinstance(value, (str, int, float, tuple, list)):
        return f"{key}={value.name}"
    text = repr(value)
    return f"{key}={text if len(text) <= limit else text[:limit - 3] + '...'}"


def node_attrs(node):
    """(key, text) pairs of the attributes worth showing (bodies and redundant ones left out)."""
    skip = set(_REDUNDANT.get(node.op, ()))
    if node.op == "variable" and node.outputs and node.attrs.get("name") == node.outputs[0].name:
        skip.add("name")
    bodies = {k.split("[")[0] for k, _, _ in body_graphs(node)}
    shown = []
    for key, value in sorted(node.attrs.items()):
        if key in skip or key in bodies or (node.op == "constant" and key == "value"):
            continue
        if bodies and key.endswith(("_outputs", "_out")):
            continue
        shown.append((key, attr_text(key, value)))
    return shown


def tag_text(node):
    """The comment that marks a gradient, fused or recomputed node ('' for plain nodes)."""
    tags = node.tags or {}
    marks = []
    if tags.get("grad_of"):
        marks.append(f"{tags.get('mode', 'grad')} of {tags['grad_of']}")
    if tags.get("fused") or node.op.startswith("fused"):
        fused = tags.get("fused")
        marks.append(f"fused {fused}" if isinstance(fused, (str, list, tuple)) else "fused")
    if tags.get("recompute"):
        marks.append("recompute")
    return "; ".join(str(m) for m in marks)


def node_text(node, location=False):
    """`out:f32[?,3] = op[attr=..] in1 in2 ^ctrl    # vjp of sin` for one node."""
    outs = ", ".join(f"{o.name}:{type_text(o.type)}" for o in node.outputs) or "_"
    parts = [f"{outs} = {node.op}"]
    if node.op == "constant" and "value" in node.attrs:
        parts.append(value_text(node.attrs["value"]))
    attrs = node_attrs(node)
    if attrs:
        parts.append("[" + " ".join(text for _, text in attrs) + "]")
    parts.extend(t.name for t in node.inputs)
    parts.extend(f"^{c.name}" for c in node.control_inputs)
    line = " ".join(parts)
    comment = tag_text(node)
    if location and node.location:
        comment = f"{comment}  @ {node.location}" if comment else f"@ {node.location}"
    if comment:
        line = line.ljust(COMMENT_COLUMN - 1) + f" # {comment}"
    return line


def _lines(graph, nodes, indent, depth, max_depth, location, returns=None):
    out = [f"graph {graph.name} ({len(nodes)} nodes) {{"]
    for node in nodes:
        out.append(indent + node_text(node, location))
        for key, body, outputs in body_graphs(node):
            if depth >= max_depth:
                out.append(f"{indent}    {key}: <graph {body.name}: {len(body.nodes)} nodes>")
                continue
            inner = _lines(body, body.nodes, indent, depth + 1, max_depth, location, outputs)
            out.append(f"{indent}    {key} = {inner[0]}")
            out.extend(indent + "    " + line for line in inner[1:])
    if returns:
        out.append(f"{indent}return " + ", ".join(t.name for t in returns))
    out.append("}")
    return out


def graph_text(graph, nodes=None, indent="  ", max_depth=8, location=False):
    """One line per node: outputs with types, op, attributes, inputs; bodies indented."""
    nodes = graph.nodes if nodes is None else nodes
    return "\n".join(_lines(graph, nodes, indent, 0, max_depth, location))


def outputs_text(outputs, title=None, location=False):
    """Text IR of only the nodes `outputs` need, ending with the outputs."""
    leaves = [o for o in outputs if isinstance(o, (Tensor, Operation))]
    if not leaves:
        return "graph (empty)"
    graph = leaves[0].graph
    nodes = ancestors(leaves)
    lines = _lines(graph, nodes, "  ", 0, 8, location, returns=leaves)
    head = f"{title}\n" if title else ""
    return head + "\n".join(lines)
