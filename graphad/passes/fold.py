"""Constant folding: a pure node whose inputs are all constants becomes a constant, computed by
the op's `reference` rule (graphad/interpret.py `run_node`), within a size cap."""

import numpy as np

from ..types import num_elements
from .rewrite import Decline, body_attrs, graph_pass, rebuild

__all__ = ["fold_constants", "fold_node", "MAX_ELEMENTS", "NEVER_FOLD"]

# Results larger than this are not materialised (an initializer of 1e5 floats is 400 kB).
MAX_ELEMENTS = 100_000
# An expansion (output larger than all inputs together, e.g. broadcast_to of a scalar, full)
# is folded only up to this size: a ConstantOfShape/Expand is cheaper than a big initializer.
MAX_EXPANSION = 64
# Ops that are pure but must stay: checkpointing reads recomputed values through barriers.
NEVER_FOLD = frozenset({"constant", "remat_barrier"})


def foldable(node, inputs):
    """None when `node` (with new `inputs`) may be folded, else a Decline with the reason."""
    if not node.opdef.pure or node.op in NEVER_FOLD or not node.outputs:
        return Decline(f"op {node.op!r} is impure or pinned")
    if node.tags.get("recompute"):
        return Decline("recomputed (checkpoint) nodes are kept")
    if any(t.node.op != "constant" for t in inputs):
        return Decline("an input is not constant")
    if body_attrs(node):
        return Decline("holds a body graph (not folded: a loop may run long)")
    size_in = sum(t.node.attrs["value"].size for t in inputs)
    for o in node.outputs:
        n = num_elements(o.shape)
        if n is None:
            return Decline("output shape not static")
        if n > MAX_ELEMENTS:
            return Decline(f"result of {n} elements exceeds the cap {MAX_ELEMENTS}")
        if n > max(2 * size_in, MAX_EXPANSION):  # a pad may grow a little; a broadcast may not
            return Decline(f"expansion to {n} elements from {size_in} kept symbolic")
    return None


def fold_node(node, inputs, b):
    """Constants replacing `node`'s outputs, or None / a Decline."""
    from ..interpret import run_node  # noqa: PLC0415

    why = foldable(node, inputs)
    if why is not None:
        return why if inputs and all(t.node.op == "constant" for t in inputs) else None
    args = [t.node.attrs["value"] for t in inputs]
    try:
        with np.errstate(all="ignore"):
            vals = run_node(node, *args)
    except Exception as e:  # a reference rule refusing these values: leave it to run time
        return Decline(f"reference failed: {type(e).__name__}: {e}")
    outs = []
    for o, v in zip(node.outputs, vals):
        v = np.asarray(v)
        if v.shape != tuple(o.shape) or v.dtype != o.dtype.np:
            if v.shape != tuple(o.shape):
                return Decline(f"reference gave shape {v.shape}, inferred {o.shape}")
            v = v.astype(o.dtype.np)
        outs.append(v)
    return tuple(_constant(b, node, v) for v in outs)


def _constant(b, node, value):
    from ..build import CONSTANT  # noqa: PLC0415

    arr = np.array(value, copy=True)
    arr.flags.writeable = False
    return b.add(CONSTANT, (), {"value": arr}, name=node.name).outputs[0]


def _rewrite(node, inputs, b):
    if node.op == "constant" or not node.opdef.pure:
        return None
    for t in inputs:  # the fast path: most nodes have a non-constant input
        if t.node.op != "constant":
            return None
    res = fold_node(node, inputs, b)
    if isinstance(res, Decline):
        b.decline("fold", res)
        return None
    if res is not None:
        b.fired("fold")
    return res


@graph_pass
def fold_constants(prog, declines=None):
    """Fold every pure node whose inputs are constants (results up to MAX_ELEMENTS elements;
    never impure ops, `recompute`-tagged nodes, `remat_barrier`, or nodes holding bodies)."""
    return rebuild(prog, _rewrite, declines=declines)
