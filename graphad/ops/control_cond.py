"""cond: a two-branch conditional node over branch graphs, lowered to ONNX If.

inputs: [pred] + operands + true-branch captures + false-branch captures; both branches take the
operands. Derivative rules live in control_grad.py.
"""

import numpy as np

from .. import tree
from ..build import as_tensor
from ..errors import DTypeError, ShapeError, user_location
from ..export.lowering import LowerCtx, lower_nodes
from ..graph import Tensor
from ..interpret import evaluate
from ..registry import defop, graph_of
from ..types import TensorType, merge_dims
from .control import StructureError, _label, check_pred, subgraph, trace_body

__all__ = ["cond"]


def split_if_inputs(node, seq):
    """(pred, operands, true captures, false captures) of an if node's inputs (or of a sequence
    aligned with them)."""
    a = node.attrs
    seq = list(seq)
    n, nt = a["n_operands"], len(a["true"].captures)
    return seq[0], seq[1:1 + n], seq[1 + n:1 + n + nt], seq[1 + n + nt:]


def _if_infer(types, a):
    outs = []
    for t, f in zip(a["true"].outputs, a["false"].outputs):
        shape = tuple(merge_dims(x, y) for x, y in zip(t.shape, f.shape))
        outs.append(TensorType(shape, t.dtype))
    return tuple(outs)


def _if_reference(node, *args):
    pred, ops, tc, fc = split_if_inputs(node, args)
    br = node.attrs["true"] if bool(pred) else node.attrs["false"]
    caps = tc if bool(pred) else fc
    feed = dict(zip(br.inputs, ops))
    feed.update(zip(br.captures.values(), caps))
    outs = evaluate(br.outputs, feed)
    return tuple(np.asarray(o, dtype=t.dtype.np) for o, t in zip(outs, node.outputs))


def _if_lower(ctx, node, *names):
    pred, ops, tc, fc = split_if_inputs(node, names)
    graphs = []
    for key, caps in (("true", tc), ("false", fc)):
        br = node.attrs[key]
        child = LowerCtx(opset=ctx.opset, parent=ctx)
        env = dict(zip(br.inputs, ops))
        env.update(zip(br.captures.values(), caps))
        vis = []
        lower_nodes(child, br.outputs, env, vis)
        graphs.append(subgraph(ctx, child, f"{node.name}_{key}", [],
                               [env[o] for o in br.outputs], [t.type for t in node.outputs], vis))
    res = ctx.emit("If", [pred], outputs=len(node.outputs), then_branch=graphs[0],
                   else_branch=graphs[1])
    return (res,) if isinstance(res, str) else tuple(res)


IF = defop(
    "cond",
    infer=_if_infer,
    reference=_if_reference,
    lower=_if_lower,
    doc="Two-branch conditional over branch graphs; lowers to ONNX If.",
)


def make_if(outer, pred, operands, true_g, false_g, name, location, tags=None):
    inputs = [pred] + list(operands) + list(true_g.captures) + list(false_g.captures)
    return outer.add_node(IF, inputs, {"true": true_g, "false": false_g,
                                       "n_operands": len(operands)},
                          name=name, location=location, tags=tags)


def cond(pred, true_fn, false_fn, *operands, name=None):
    """`true_fn(*operands)` if pred else `false_fn(*operands)`; both return the same structure
    (pytrees of tensors with equal dtypes and ranks; a dim that differs becomes unknown)."""
    location = user_location()
    label = _label("cond", name, location)
    leaves, td = tree.flatten(tuple(operands))
    tensors = [x for x in leaves if isinstance(x, Tensor)]
    outer = graph_of(tensors + ([pred] if isinstance(pred, Tensor) else []))
    ops = [x if isinstance(x, Tensor) else as_tensor(x, graph=outer) for x in leaves]
    p = pred if isinstance(pred, Tensor) else as_tensor(bool(pred), graph=outer)
    check_pred(f"{label}: pred", p)
    types = [t.type for t in ops]
    branches = []
    for fn, tag in ((true_fn, "cond_true"), (false_fn, "cond_false")):
        branches.append(trace_body(fn, types, outer, tag,
                                   call=lambda phs, fn=fn: fn(*tree.unflatten(td, phs))))
    (tg, ttd), (fg, ftd) = branches
    if ttd != ftd:
        raise StructureError(f"{label}: true_fn returns {ttd} but false_fn returns {ftd}")
    for k, (a, b) in enumerate(zip(tg.outputs, fg.outputs)):
        if a.dtype is not b.dtype:
            raise DTypeError(f"{label}: output leaf {k} is {a.type!r} in true_fn but "
                             f"{b.type!r} in false_fn")
        if len(a.shape) != len(b.shape):
            raise ShapeError(f"{label}: output leaf {k} is {a.type!r} in true_fn but "
                             f"{b.type!r} in false_fn (ranks differ)")
    node = make_if(outer, p, ops, tg, fg, name or "cond", location)
    return tree.unflatten(ttd, node.outputs)

