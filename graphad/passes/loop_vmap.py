"""Batching rules: one node applied to a stack of inputs along a new leading axis (JAX's vmap at
axis 0). The loop passes use them to move per-step work out of loop bodies (a run-time number of
steps); the dense Jacobians use them, with a static batch `size`, to push every basis direction
through one JVP/VJP at once. `can_batch` says whether a node has a rule; `batch_node` emits it."""

import numpy as np

from .fuse_elementwise import ELEMENTWISE_OPS

__all__ = ["can_batch", "batch_node", "batch_split", "BATCHED_REDUCTIONS"]

# ops whose batched form only shifts their axes attribute by one
_AXES_OPS = frozenset({"expand_dims", "squeeze", "sum", "mean", "max", "min", "prod"})
BATCHED_REDUCTIONS = frozenset({"sum", "mean", "max", "min", "prod"})
_NOT_BATCHED = frozenset({"fused_gated_add"})  # GatedAdd's gate shape is tied to x's shape


def can_batch(node, flags, size=None):
    """Whether `node` has a batching rule when its inputs are batched as `flags` (bools).

    With an int `size` (a static batch), the rules of `_SIZED` are available too: they write
    the batch size into a static shape or need every input stacked."""
    op = node.op
    if not any(flags) or not node.opdef.pure or len(node.outputs) != 1 or node.control_inputs:
        return False
    if op in ELEMENTWISE_OPS and op not in _NOT_BATCHED:
        return True
    if op in ("transpose", "cast") or op in _AXES_OPS:
        return True
    if op in ("matmul", "fused_matmul"):
        return _matmul_case(node, flags) is not None
    if size is not None and op in _SIZED:
        return _SIZED[op][0](node, flags)
    return False


def _matmul_case(node, flags):
    a, b = node.inputs
    ra, rb = len(a.shape), len(b.shape)
    fa, fb = flags
    if fa and fb:
        return "both" if node.op == "matmul" and ra >= 2 and ra == rb else None
    if fa:  # per-step a with one shared b: b may not bring batch axes of its own
        return "a" if rb in (1, 2) and (node.op == "matmul" or rb == 2) else None
    if node.op == "fused_matmul":
        return "b" if ra == 2 else None
    if ra == 2 and rb == 1:
        return "matvec"
    return "b" if ra == 2 and rb >= 2 else None


def _lift_rank(b, x, have, want):
    """Batched x whose per-step rank is `have`, given per-step rank `want` >= have (new axes
    after the batch axis, so broadcasting against unbatched operands stays aligned)."""
    if have >= want:
        return x
    return b(("expand_dims", [x], {"axes": tuple(range(1, 1 + want - have))}))


def batch_node(node, ins, flags, emit, size=None):
    """The batched output of `node` over batched/unbatched inputs `ins` (flags say which).

    `emit((op, inputs, attrs)) -> Tensor` adds one node to the target graph; `size` is the
    static batch size when there is one (see `can_batch`).
    """
    op, attrs = node.op, node.attrs
    if size is not None and op in _SIZED and op not in ELEMENTWISE_OPS and op not in _AXES_OPS:
        return _SIZED[op][1](node, ins, flags, emit, size)
    if op in ELEMENTWISE_OPS:
        r = len(node.outputs[0].shape)
        xs = [_lift_rank(emit, x, len(t.shape), r) if f else x
              for x, t, f in zip(ins, node.inputs, flags)]
        return emit((node.opdef, xs, attrs))
    if op == "cast":
        return emit((node.opdef, ins, attrs))
    if op == "transpose":
        perm = (0,) + tuple(p + 1 for p in attrs["perm"])
        return emit((node.opdef, ins, dict(attrs, perm=perm)))
    if op in _AXES_OPS:
        return emit((node.opdef, ins, dict(attrs, axes=tuple(a + 1 for a in attrs["axes"]))))
    return _batch_matmul(node, ins, flags, emit)


def _batch_matmul(node, ins, flags, emit):
    case = _matmul_case(node, flags)
    a, b = ins
    if case == "matvec":  # (n, k) @ x_t for every t: X @ A^T, one GEMM
        from .fuse_ops import FUSED_MATMUL  # noqa: PLC0415

        if a.dtype.is_floating:
            return emit((FUSED_MATMUL, [b, a], {"trans_a": False, "trans_b": True,
                                                 "alpha": 1.0}))
        at = emit(("transpose", [a], {"perm": (1, 0)}))
        return emit(("matmul", [b, at], {}))
    return emit((node.opdef, [a, b], node.attrs))


# ---------------------------------------------------------------------------------------------
# Rules that need a static batch size (dense Jacobians): name -> (applies?, emit)

_FULL = (None, None, 1)


def _first_only(node, flags):
    return flags[0] and not any(flags[1:])


def _static_like(node, flags):
    like = node.inputs[1].shape
    return _first_only(node, flags) and all(isinstance(d, int) for d in like)


def _stacked(x, flag, emit, size):
    """x as a batch: itself when batched, else repeated `size` times on a new leading axis."""
    if flag:
        return x
    lead = emit(("expand_dims", [x], {"axes": (0,)}))
    return emit(("broadcast_to", [lead], {"shape": (size,) + tuple(x.shape)}))


def _slice(node, ins, flags, emit, size):
    return emit((node.opdef, ins, {"spec": (_FULL,) + tuple(node.attrs["spec"])}))


def _scatter_slice_ok(node, flags):
    return _static_like(node, flags) and all(s == 1 for _, _, s in node.attrs["spec"])


def _scatter_slice(node, ins, flags, emit, size):
    """zeros with g written at a unit-step slice of a static shape is a zero Pad of g."""
    pads = [(0, 0)]
    for d, (a, b, _) in zip(node.inputs[1].shape, node.attrs["spec"]):
        start, stop, _ = slice(a, b).indices(d)
        pads.append((start, d - start - max(0, stop - start)))
    return emit(("pad", [ins[0]], {"pads": tuple(pads), "mode": "constant", "value": 0}))


def _unreduce(node, ins, flags, emit, size):
    """broadcast g back over the reduced axes of a static shape (divided by the count for mean)."""
    axes, like = node.attrs["axes"], tuple(node.inputs[1].shape)
    g = ins[0]
    if not node.attrs["keepdims"] and axes:
        g = emit(("expand_dims", [g], {"axes": tuple(a + 1 for a in axes)}))
    out = emit(("broadcast_to", [g], {"shape": (size,) + like}))
    if node.attrs["mean"]:
        count = int(np.prod([like[a] for a in axes]))
        value = np.array(count, node.outputs[0].dtype.np)
        value.flags.writeable = False  # constants hold frozen arrays (build.constant)
        c = emit(("constant", [], {"value": value}))
        out = emit(("divide", [out, c], {}))
    return out


def _pad(node, ins, flags, emit, size):
    return emit((node.opdef, ins, dict(node.attrs, pads=((0, 0),) + tuple(node.attrs["pads"]))))


def _reshape(node, ins, flags, emit, size):
    return emit((node.opdef, ins, dict(node.attrs, shape=(size,) + tuple(node.attrs["shape"]))))


def _broadcast_to(node, ins, flags, emit, size):
    shape = tuple(node.attrs["shape"])
    x = _lift_rank(emit, ins[0], len(node.inputs[0].shape), len(shape))
    return emit((node.opdef, [x], {"shape": (size,) + shape}))


def _join(node, ins, flags, emit, size):
    xs = [_stacked(x, f, emit, size) for x, f in zip(ins, flags)]
    return emit((node.opdef, xs, dict(node.attrs, axis=node.attrs["axis"] + 1)))


def _reps_ok(node, flags):
    return _first_only(node, flags) and len(node.attrs["reps"]) == len(node.inputs[0].shape)


def _tile(node, ins, flags, emit, size):
    return emit((node.opdef, ins, dict(node.attrs, reps=(1,) + tuple(node.attrs["reps"]))))


def _gather(node, ins, flags, emit, size):
    return emit((node.opdef, ins, dict(node.attrs, axis=node.attrs["axis"] + 1)))


def _axes(node, ins, flags, emit, size):
    return emit((node.opdef, ins, dict(node.attrs, axes=tuple(a + 1 for a in node.attrs["axes"]))))


def _any(node, flags):
    return True


def _scatter_add_ok(node, flags):
    return flags[0] and not flags[1] and not flags[2] and all(
        isinstance(d, int) for d in node.inputs[2].shape)


def _scatter_add(node, ins, flags, emit, size):
    g, idx, like = ins
    return emit((node.opdef, [g, idx, _stacked(like, False, emit, size)],
                 dict(node.attrs, axis=node.attrs["axis"] + 1)))


def batch_split(node, ins, flags, emit, size):
    """Batched outputs of a multi-output split (`split`, `split_like`) of a batched first input
    into pieces of static lengths: one slice per piece. None when there is no such rule."""
    if node.op not in ("split", "split_like") or not _first_only(node, flags):
        return None
    axis = node.attrs["axis"]
    lengths = [o.shape[axis] for o in node.outputs]
    if not all(isinstance(d, int) for d in lengths):
        return None
    outs, start = [], 0
    rank = len(node.inputs[0].shape)
    for d in lengths:
        spec = tuple((start, start + d, 1) if i == axis + 1 else _FULL for i in range(rank + 1))
        outs.append(emit(("slice", [ins[0]], {"spec": spec})))
        start += d
    return outs


_SIZED = {
    "slice": (_first_only, _slice),
    "scatter_slice": (_scatter_slice_ok, _scatter_slice),
    "unreduce": (_static_like, _unreduce),
    "pad": (_first_only, _pad),
    "reshape": (_first_only, _reshape),
    "broadcast_to": (_first_only, _broadcast_to),
    "concat": (_any, _join),
    "stack": (_any, _join),
    "tile": (_reps_ok, _tile),
    "tile_sum": (_reps_ok, _tile),
    "gather": (_first_only, _gather),
    "scatter_add": (_scatter_add_ok, _scatter_add),
    "softmax": (_first_only, _axes),
    "log_softmax": (_first_only, _axes),
    "logsumexp": (_first_only, _axes),
}
