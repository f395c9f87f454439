"""Seeing graphs: the readable text IR and the networkx view (pictures come with the viz issue)."""

import numpy as np

from .graph import Graph, Operation, Tensor, ancestors
from .types import format_shape

_SHORT = {"float16": "f16", "float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64",
          "bool": "bool"}


def type_text(t):
    dims = ",".join("?" if d is None else str(d) for d in t.shape)
    return f"{_SHORT[t.dtype.name]}[{dims}]"


def _attr_text(key, value):
    if isinstance(value, np.ndarray):
        if value.size <= 6:
            return f"{key}={np.array2string(value, separator=',', threshold=6).replace(chr(10), '')}"
        return f"{key}=<{value.dtype}{format_shape(value.shape)}>"
    if isinstance(value, Graph):
        return f"{key}=<body {value.name}: {len(value.nodes)} nodes>"
    if hasattr(value, "name") and not isinstance(value, (str, int, float, tuple)):
        return f"{key}={value.name}"
    text = repr(value)
    return f"{key}={text if len(text) <= 40 else text[:37] + '...'}"


def node_text(node):
    outs = ", ".join(f"{o.name}:{type_text(o.type)}" for o in node.outputs) or "_"
    attrs = " ".join(_attr_text(k, v) for k, v in sorted(node.attrs.items()) if k != "value"
                     or node.op != "constant")
    if node.op == "constant":
        attrs = _attr_text("value", node.attrs["value"])
    args = " ".join(t.name for t in node.inputs)
    ctrl = " ".join(f"^{c.name}" for c in node.control_inputs)
    parts = [f"{outs} = {node.op}"]
    if attrs:
        parts.append(f"[{attrs}]")
    if args:
        parts.append(args)
    if ctrl:
        parts.append(ctrl)
    line = " ".join(parts)
    origin = node.tags.get("grad_of") if node.tags else None
    if origin:
        line += f"    # {node.tags.get('mode', 'grad')} of {origin}"
    return line


def graph_text(graph, nodes=None, indent="  "):
    """One line per node: outputs with types, op, attributes, inputs; bodies indented."""
    nodes = graph.nodes if nodes is None else nodes
    lines = [f"graph {graph.name} ({len(nodes)} nodes) {{"]
    for node in nodes:
        lines.append(indent + node_text(node))
        for key, value in sorted(node.attrs.items()):
            if isinstance(value, Graph):
                body = graph_text(value, indent=indent + "  ").splitlines()
                lines.append(f"{indent}  {key}:")
                lines.extend(indent + "  " + b for b in body)
    lines.append("}")
    return "\n".join(lines)


def outputs_text(outputs, title=None):
    """Text IR of only the nodes `outputs` need, ending with the outputs."""
    leaves = [o for o in outputs if isinstance(o, (Tensor, Operation))]
    if not leaves:
        return "graph (empty)"
    graph = leaves[0].graph
    nodes = ancestors(leaves)
    text = graph_text(graph, nodes)
    names = ", ".join(o.name for o in leaves)
    head = f"{title}\n" if title else ""
    return head + text[:-1] + f"  return {names}\n}}"


def to_networkx(graph):
    """networkx.DiGraph: one node per graph node (attributes op, shape, dtype, location)."""
    import networkx as nx  # noqa: PLC0415

    g = nx.DiGraph(name=graph.name)
    for node in graph.nodes:
        out = node.outputs[0] if node.outputs else None
        g.add_node(
            node.name,
            op=node.op,
            shape=out.shape if out is not None else None,
            dtype=out.dtype.name if out is not None else None,
            location=node.location,
            grad_of=node.tags.get("grad_of") if node.tags else None,
        )
        for t in node.inputs:
            g.add_edge(t.node.name, node.name, index=t.index)
        for c in node.control_inputs:
            g.add_edge(c.name, node.name, control=True)
    return g
