"""`verify(prog)`: the IR invariants every pass must keep (run after every pass in tests)."""

from ..errors import DTypeError, GraphError, ShapeError
from ..graph import Graph, Operation, Tensor
from .rewrite import Program, body_attrs, live_nodes

__all__ = ["verify", "VerifyError"]


class VerifyError(GraphError):
    """A graph breaks an IR invariant (a pass bug)."""


def verify(prog, infer=True):
    """Check `prog` (a Program or pytree of outputs); raise VerifyError naming the broken rule.

    Checked: outputs, operations and feeds belong to the graph; every node's inputs and control
    inputs are defined earlier in the same graph; node ids are positions; re-running `infer`
    gives the recorded output types (`infer=True`); body graphs are closed (their nodes read only
    their own tensors, inputs/outputs/captures belong to them, their parent is the node's graph,
    the node has one input per capture). Returns `prog`.
    """
    if not isinstance(prog, Program):
        prog, _ = Program.from_outputs(prog)
    g = prog.graph
    for what, items in (("output", prog.outputs), ("feed", prog.feeds)):
        for t in items:
            if not isinstance(t, Tensor) or t.node.graph is not g:
                raise VerifyError(f"{what} {t!r} is not a tensor of graph {g.name!r}")
    for o in prog.operations:
        if not isinstance(o, Operation) or o.graph is not g:
            raise VerifyError(f"operation {o!r} is not an operation of graph {g.name!r}")
    stack = [(g, live_nodes(prog))]
    while stack:
        graph, nodes = stack.pop()
        _check_ids(graph)
        for node in nodes:
            _check_node(graph, node, infer)
            for key, body in body_attrs(node):
                _check_body(node, key, body)
                stack.append((body, _body_nodes(body)))
    return prog


def _body_nodes(body):
    from ..graph import ancestors  # noqa: PLC0415

    return ancestors(list(body.outputs) + list(body.inputs))


def _check_ids(graph):
    for i, n in enumerate(graph.nodes):
        if n.id != i or n.graph is not graph:
            raise VerifyError(f"node {n.name!r} has id {n.id} at position {i} of graph "
                              f"{graph.name!r} (or belongs to another graph)")


def _check_node(graph, node, infer):
    where = f"node {node.name!r} ({node.op}) of graph {graph.name!r}"
    if node.graph is not graph:
        raise VerifyError(f"{where} belongs to graph {node.graph.name!r}")
    for i, t in enumerate(node.inputs):
        if not isinstance(t, Tensor):
            raise VerifyError(f"{where}: input {i} is {t!r}, not a Tensor")
        src = t.node
        if src.graph is not graph:
            raise VerifyError(f"{where}: input {i} {t.name!r} belongs to graph "
                              f"{src.graph.name!r}")
        if src.id >= node.id or graph.nodes[src.id] is not src:
            raise VerifyError(f"{where}: input {i} {t.name!r} is not defined before its use")
    for c in node.control_inputs:
        if c.graph is not graph or c.id >= node.id:
            raise VerifyError(f"{where}: control input {c.name!r} is not an earlier node")
    for k, o in enumerate(node.outputs):
        if o.node is not node or o.index != k:
            raise VerifyError(f"{where}: output {k} does not point back at its node")
    if infer and node.op not in ("placeholder", "variable"):
        try:
            types = tuple(node.opdef.infer(tuple(t.type for t in node.inputs), node.attrs))
        except (ShapeError, DTypeError) as e:
            raise VerifyError(f"{where}: infer fails on its inputs: {e}") from None
        got = tuple(o.type for o in node.outputs)
        if len(types) != len(got) or any(
                a.dtype is not b.dtype or not _shape_ok(a.shape, b.shape)
                for a, b in zip(types, got)):
            raise VerifyError(f"{where}: recorded types {got} but infer gives {types}")


def _shape_ok(inferred, recorded):
    """Shapes agree where both are known (either side may be more precise: None vs an int)."""
    if len(inferred) != len(recorded):
        return False
    return all(a == b or a is None or b is None for a, b in zip(inferred, recorded))


def _check_body(node, key, body):
    where = f"body {key!r} of node {node.name!r} ({node.op})"
    if not isinstance(body, Graph) or body.parent is not node.graph:
        raise VerifyError(f"{where}: its parent is not the node's graph {node.graph.name!r}")
    for t in list(body.inputs) + list(body.outputs) + list(body.captures.values()):
        if t.node.graph is not body:
            raise VerifyError(f"{where}: tensor {t.name!r} does not belong to the body")
    for t in list(body.inputs) + list(body.captures.values()):
        if t.node.op != "placeholder":
            raise VerifyError(f"{where}: input/capture {t.name!r} is not a placeholder")
    n_caps = sum(len(g.captures) for _, g in body_attrs(node))
    if n_caps > len(node.inputs):
        raise VerifyError(f"{where}: {n_caps} captures but only {len(node.inputs)} inputs")
    for outer in body.captures:
        if not node.graph.encloses(outer.node.graph):
            raise VerifyError(f"{where}: captures {outer.name!r} of a graph that does not "
                              "enclose it")
