"""The ops the fusion pass creates: `fused_matmul` (com.microsoft FusedMatMul: transposes and a
scale absorbed) and `fused_gated_add` (com.microsoft GatedAdd: x + y * gate). Both keep exact
derivative rules, so an optimised graph can still be differentiated."""

import numpy as np

from ..errors import DTypeError, ShapeError
from ..export.lowering import MS_DOMAIN
from ..registry import apply, defop
from ..types import TensorType, float32, format_shape

__all__ = ["fused_matmul", "fused_gated_add", "FUSED_MATMUL", "FUSED_GATED_ADD"]


def _ops():
    from .. import ops  # noqa: PLC0415  (late import: the op catalogue imports the passes)

    return ops


# ---------------------------------------------------------------------------------------------
# fused_matmul: alpha * op(a) @ op(b), op = transpose of the last two axes when the flag is set


def _swap(shape, flag, what):
    if not flag:
        return tuple(shape)
    if len(shape) < 2:
        raise ShapeError(f"fused_matmul: transposed operand {what} needs rank >= 2, got shape "
                         f"{format_shape(shape)}")
    return tuple(shape[:-2]) + (shape[-1], shape[-2])


def _fmm_infer(types, attrs):
    from ..ops.linalg_ops import MATMUL  # noqa: PLC0415

    a, b = types
    if not a.dtype.is_floating:
        raise DTypeError(f"fused_matmul: operands must be floating, got {a.dtype.name}")
    if len(b.shape) < 2:
        raise ShapeError(f"fused_matmul: the second operand needs rank >= 2, got shape "
                         f"{format_shape(b.shape)}")
    sa = _swap(a.shape, attrs["trans_a"], "a")
    sb = _swap(b.shape, attrs["trans_b"], "b")
    return MATMUL.infer((TensorType(sa, a.dtype), TensorType(sb, b.dtype)), {})


def _fmm_reference(node, a, b):
    at = node.attrs
    dt = node.outputs[0].dtype.np
    if at["trans_a"]:
        a = np.swapaxes(a, -1, -2)
    if at["trans_b"]:
        b = np.swapaxes(b, -1, -2)
    out = np.matmul(a, b)
    if at["alpha"] != 1.0:
        out = out * np.asarray(at["alpha"], dtype=dt)
    return (np.asarray(out).astype(dt, copy=False),)


def _fmm_lower(ctx, node, a, b):
    at = node.attrs
    if len(node.inputs[0].shape) == 2 and len(node.inputs[1].shape) == 2 and \
            node.outputs[0].dtype.name in ("float32", "float64"):
        # plain 2-D: ONNX Gemm, which onnxruntime fuses with a following activation or Add
        # (FusedGemm); FusedMatMul would stop those fusions
        return (ctx.emit("Gemm", [a, b], transA=int(at["trans_a"]), transB=int(at["trans_b"]),
                         alpha=float(at["alpha"])),)
    kw = {}
    if at["trans_a"]:
        kw["transA"] = 1
    if at["trans_b"]:
        kw["transB"] = 1
    if at["alpha"] != 1.0:
        kw["alpha"] = float(at["alpha"])
    return (ctx.emit("FusedMatMul", [a, b], domain=MS_DOMAIN, **kw),)


def _fmm_vjp(node, g):
    a, b = node.inputs
    if g is None:
        return (None, None)
    ta, tb, al = node.attrs["trans_a"], node.attrs["trans_b"], node.attrs["alpha"]
    ops = _ops()
    if len(a.shape) == 1:  # out = al * a @ op(b): a vector times a (batched) matrix
        if len(b.shape) == 2:
            da = fused_matmul(g, b, trans_b=not tb, alpha=al)
        else:  # the engine sums the batch axes of this entry away
            da = ops.squeeze(fused_matmul(ops.expand_dims(g, -2), b, trans_b=not tb, alpha=al),
                             -2)
        outer = ops.expand_dims(g, -1) * a if tb else ops.expand_dims(a, -1) * \
            ops.expand_dims(g, -2)
        return (da, outer if al == 1.0 else outer * al)
    # d op(a) = al * g @ op(b)^T and d op(b) = al * op(a)^T @ g, transposed back when flagged.
    da = (fused_matmul(b, g, trans_a=tb, trans_b=True, alpha=al) if ta
          else fused_matmul(g, b, trans_b=not tb, alpha=al))
    db = (fused_matmul(g, a, trans_a=True, trans_b=ta, alpha=al) if tb
          else fused_matmul(a, g, trans_a=not ta, alpha=al))
    return (da, db)


def _fmm_jvp(node, ta_, tb_):
    a, b = node.inputs
    at = node.attrs
    kw = {"trans_a": at["trans_a"], "trans_b": at["trans_b"], "alpha": at["alpha"]}
    terms = []
    if ta_ is not None:
        terms.append(fused_matmul(ta_, b, **kw))
    if tb_ is not None:
        terms.append(fused_matmul(a, tb_, **kw))
    if not terms:
        return (None,)
    return (terms[0] if len(terms) == 1 else terms[0] + terms[1],)


FUSED_MATMUL = defop(
    "fused_matmul",
    infer=_fmm_infer,
    reference=_fmm_reference,
    lower=_fmm_lower,
    vjp=_fmm_vjp,
    jvp=_fmm_jvp,
    doc="alpha * op(a) @ op(b) (op: swap of the last two axes when trans_a / trans_b), made by "
    "the fusion pass; one com.microsoft FusedMatMul. Also the fast form of matrix @ vector: "
    "onnxruntime's MatMul with a 1-D right operand is 4-40x slower than v @ A^T.",
)


def fused_matmul(a, b, trans_a=False, trans_b=False, alpha=1.0, name=None):
    """alpha * op(a) @ op(b) with numpy matmul semantics (b at least 2-D; a 1-D `a` is a row
    vector and cannot be transposed)."""
    attrs = {"trans_a": bool(trans_a), "trans_b": bool(trans_b), "alpha": float(alpha)}
    return apply(FUSED_MATMUL, (a, b), attrs, name=name)


# ---------------------------------------------------------------------------------------------
# fused_gated_add: x + y * gate (GatedAdd: float32; y shaped as x; gate = x.shape[:-1] + (1,))


def gate_shape(shape):
    return tuple(shape[:-1]) + (1,)


def _gated_infer(types, attrs):
    x, y, gate = types
    if not (x.dtype is float32 and y.dtype is float32 and gate.dtype is float32):
        raise DTypeError(f"fused_gated_add: onnxruntime's GatedAdd is float32 only, got "
                         f"{x.dtype.name}, {y.dtype.name}, {gate.dtype.name}")
    if not x.shape or tuple(x.shape) != tuple(y.shape) or any(
            not isinstance(d, int) for d in x.shape):
        raise ShapeError(f"fused_gated_add: x and y need one static shape of rank >= 1, got "
                         f"{format_shape(x.shape)} and {format_shape(y.shape)}")
    if tuple(gate.shape) != gate_shape(x.shape):
        want = format_shape(gate_shape(x.shape))
        raise ShapeError(f"fused_gated_add: gate must have shape {want}, got "
                         f"{format_shape(gate.shape)}")
    return (TensorType(x.shape, x.dtype),)


def _gated_vjp(node, g):
    x, y, gate = node.inputs
    if g is None:
        return (None, None, None)
    return (g, g * gate, _ops().sum(g * y, axis=-1, keepdims=True))


def _gated_jvp(node, tx, ty, tg):
    x, y, gate = node.inputs
    terms = [t for t in (tx, None if ty is None else ty * gate, None if tg is None else y * tg)
             if t is not None]
    if not terms:
        return (None,)
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return (out,)


FUSED_GATED_ADD = defop(
    "fused_gated_add",
    infer=_gated_infer,
    reference=lambda node, x, y, gate: ((x + y * gate).astype(np.float32, copy=False),),
    lower=lambda ctx, node, x, y, gate: (ctx.emit("GatedAdd", [x, y, gate], domain=MS_DOMAIN),),
    vjp=_gated_vjp,
    jvp=_gated_jvp,
    doc="x + y * gate in one com.microsoft GatedAdd node (float32; y has x's static shape, the "
    "gate x.shape[:-1] + (1,)). Made by the fusion pass for Euler-style updates x + h * f.",
)


def fused_gated_add(x, y, gate, name=None):
    return apply(FUSED_GATED_ADD, (x, y, gate), name=name)
