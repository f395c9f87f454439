"""Batching rules for moving per-step loop work out of a loop: one node applied to every step at
once, the steps stacked on a new leading axis (JAX's vmap at axis 0, for the few ops loop
bodies are made of). `can_batch` says whether a node has a rule; `batch_node` emits it."""

from .fuse_elementwise import ELEMENTWISE_OPS

__all__ = ["can_batch", "batch_node", "BATCHED_REDUCTIONS"]

# ops whose batched form only shifts their axes attribute by one
_AXES_OPS = frozenset({"expand_dims", "squeeze", "sum", "mean", "max", "min", "prod"})
BATCHED_REDUCTIONS = frozenset({"sum", "mean", "max", "min", "prod"})
_NOT_BATCHED = frozenset({"fused_gated_add"})  # GatedAdd's gate shape is tied to x's shape


def can_batch(node, flags):
    """Whether `node` has a batching rule when its inputs are batched as `flags` (bools)."""
    op = node.op
    if not any(flags) or not node.opdef.pure or len(node.outputs) != 1 or node.control_inputs:
        return False
    if op in ELEMENTWISE_OPS and op not in _NOT_BATCHED:
        return True
    if op in ("transpose", "cast") or op in _AXES_OPS:
        return True
    if op in ("matmul", "fused_matmul"):
        return _matmul_case(node, flags) is not None
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


def batch_node(node, ins, flags, emit):
    """The batched output of `node` over batched/unbatched inputs `ins` (flags say which).

    `emit((op, inputs, attrs)) -> Tensor` adds one node to the target graph.
    """
    op, attrs = node.op, node.attrs
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
