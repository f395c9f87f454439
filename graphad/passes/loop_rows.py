"""Vector loop carries as (1, n) rows when the body multiplies them by matrices.

onnxruntime multiplies a 1-D vector by a matrix through MatMul or FusedMatMul, which it does
not fuse with what follows; a (1, n) row goes through Gemm, which it fuses with the following
activation (FusedGemm: Gemm + Tanh in one node) and with the Add of a residual (Gemm's C). In
W3's Euler loop that is one node less per step forward and one less backward (~25% of the
gradient's time, hand-measured 4.0 -> 3.0 ms). The carry is lifted once before the loop
(expand_dims), its final value and the rows it leaves as scan outputs are squeezed once after.

A carry is lifted when every body node reading a lifted value is elementwise (its other inputs
of rank <= 1, its result of the carry's rank), a matrix product of the lifted row by a matrix,
or a gated add of two lifted values; the condition must not read it, and at least one matrix
product must profit. Otherwise the loop is left alone.
"""

from ..build import PLACEHOLDER
from ..graph import Graph, ancestors
from ..registry import lookup
from ..types import TensorType
from .fuse_elementwise import ELEMENTWISE_OPS
from .loop_rebody import _copy_nodes, _placeholder
from .rewrite import graph_pass, has_op, rebuild

__all__ = ["carry_rows"]

_ELEMENTWISE = ELEMENTWISE_OPS - {"fused_gated_add"}


def _reads(graph, ph):
    return any(ph in n.inputs for n in ancestors(graph.outputs))


def _lifted_set(body, nc, cond):
    """(lifted carry indices, lifted body tensors) or None when no lifting pays."""
    cands = [k for k in range(nc) if len(body.inputs[1 + k].shape) == 1
             and body.inputs[1 + k].dtype.is_floating
             and (cond is None or not _reads(cond, cond.inputs[k]))]
    if not cands:
        return None
    lifted = {body.inputs[1 + k] for k in cands}
    products = 0
    for n in ancestors(body.outputs):
        hit = [t in lifted for t in n.inputs]
        if not any(hit):
            continue
        if not _lifts(n, hit):
            return None
        products += n.op in ("matmul", "fused_matmul")
        lifted.update(n.outputs)
    for k in range(nc):
        if (body.outputs[k] in lifted) != (k in cands):
            return None  # a lifted carry must come back lifted, and only lifted carries do
    return (cands, lifted) if products else None


def _lifts(n, hit):
    """Whether node n keeps working (its result becoming a row too) when the inputs marked in
    `hit` are (1, n) rows instead of vectors."""
    out = n.outputs[0]
    if n.op in _ELEMENTWISE:
        return len(out.shape) == 1 and all(h or len(t.shape) <= 1 for t, h in
                                           zip(n.inputs, hit))
    if n.op == "fused_gated_add":
        return hit[0] and hit[1] and not hit[2]
    if n.op in ("matmul", "fused_matmul"):
        a, b = n.inputs
        return (hit[0] and not hit[1] and len(a.shape) == 1 and len(b.shape) == 2
                and not n.attrs.get("trans_a"))
    return False


def _lift_body(body, nc, cands, lifted, parent):
    """The body with the lifted carries as (1, n) placeholders and every lifted node re-made
    over rows (their results are rows too)."""
    nb = Graph(name=body.name, parent=parent)
    caps = {ph: o for o, ph in body.captures.items()}
    env = {}
    expand = lookup("expand_dims")
    with nb.as_default():
        for i, ph in enumerate(body.inputs):
            if i >= 1 and i - 1 in cands:
                env[ph] = _row_placeholder(nb, ph)
            else:
                env[ph] = _placeholder(nb, ph, ph.node.name)
        for outer in body.captures:  # the same captures, in the same order
            env[body.captures[outer]] = nb.capture(outer)
        for n in ancestors(body.outputs):
            if n.op == "placeholder" or not any(t in lifted for t in n.inputs):
                continue
            _copy_nodes(body, nb, env, [t for t in n.inputs if t not in env], caps)
            args = [env[t] for t in n.inputs]
            if n.op == "fused_gated_add":
                gate = args[2]
                while len(gate.shape) < 2:
                    gate = nb.add_node(expand, [gate], {"axes": (0,)}, name="gate_row",
                                       location=n.location).outputs[0]
                args[2] = gate
            new = nb.add_node(n.opdef, args, n.attrs, name=n.name, tags=dict(n.tags, row=True),
                              location=n.location)
            env[n.outputs[0]] = new.outputs[0]
        outs = _copy_nodes(body, nb, env, list(body.outputs), caps)
    nb.inputs = [env[ph] for ph in body.inputs]
    nb.outputs = outs
    return nb


def _row_placeholder(g, ph):
    row_type = TensorType((1,) + tuple(ph.shape), ph.dtype)
    return g.add_node(PLACEHOLDER, (), {"shape": row_type.shape, "dtype": row_type.dtype},
                      name=ph.node.name, location=ph.node.location,
                      out_types=[row_type]).outputs[0]


def _lift_cond(cond, cands, parent):
    if cond is None:
        return None
    nc_ = Graph(name=cond.name, parent=parent)
    caps = {ph: o for o, ph in cond.captures.items()}
    env = {}
    with nc_.as_default():
        for k, ph in enumerate(cond.inputs):
            if k in cands:
                env[ph] = _row_placeholder(nc_, ph)
            else:
                env[ph] = _placeholder(nc_, ph, ph.node.name)
        for outer in cond.captures:
            env[cond.captures[outer]] = nc_.capture(outer)
        outs = _copy_nodes(cond, nc_, env, list(cond.outputs), caps)
    nc_.inputs = [env[ph] for ph in cond.inputs]
    nc_.outputs = outs
    return nc_


@graph_pass
def carry_rows(prog, fires=None, declines=None):
    """Lift vector carries that meet matrices in their loop body to (1, n) rows (module doc)."""
    def rewrite(node, inputs, b):
        if node.op != "loop":
            return None
        a = b.attrs
        nc = a["n_carried"]
        found = _lifted_set(a["body"], nc, a["cond"])
        if found is None:
            return None
        cands, lifted = found
        from .licm import fire_probe  # noqa: PLC0415  (licm imports the loop passes)

        fire_probe(b)  # a probe builds nothing: it only learns that this rewrite fires
        b.fired("vector carries as rows")
        return _emit(node, inputs, b, cands, lifted)

    if not has_op(prog, "loop"):
        return prog  # no loop at all: nothing to rebuild (W4's 300,000 nodes)
    return rebuild(prog, rewrite, fires=fires, declines=declines)


def _emit(node, inputs, b, cands, lifted):
    from ..ops.control import LOOP  # noqa: PLC0415

    a, G = b.attrs, b.graph
    nc, nx = a["n_carried"], a["n_xs"]
    off = 1 if a["has_trip"] else 0
    expand, squeeze = lookup("expand_dims"), lookup("squeeze")
    body = _lift_body(a["body"], nc, cands, lifted, G)
    cond = _lift_cond(a["cond"], cands, G)
    ins = list(inputs[:off])
    for k, t in enumerate(inputs[off:off + nc]):
        ins.append(G.add_node(expand, [t], {"axes": (0,)}, name=f"{node.name}/row",
                              location=node.location).outputs[0] if k in cands else t)
    ins += list(inputs[off + nc:off + nc + nx]) + list(body.captures)
    ins += list(cond.captures) if cond is not None else []
    new = G.add_node(LOOP, ins, dict(a, body=body, cond=cond), name=node.name,
                     tags=dict(node.tags), location=node.location)
    outs = []
    for j, (o, old) in enumerate(zip(new.outputs, node.outputs)):
        if o.type == old.type:
            outs.append(o)
            continue
        axis = 0 if j < nc else 1  # a final carry (1, n), or stacked rows (T, 1, n)
        outs.append(G.add_node(squeeze, [o], {"axes": (axis,)}, name=f"{node.name}/unrow",
                               location=node.location).outputs[0])
    return outs
