"""Linear algebra: matmul and dot (numpy semantics), and inv / solve / det (ga.linalg.*)
for square (batched) float matrices."""

import numpy as np
from onnx import TensorProto, helper

from ..build import as_tensor, promote
from ..errors import DTypeError, ShapeError
from ..registry import apply, defop
from ..types import (
    TensorType,
    broadcast_shapes,
    default_float,
    dims_compatible,
    float16,
    float32,
    float64,
    format_shape,
)

__all__ = ["matmul", "dot"]


def _ops():
    from .. import ops  # noqa: PLC0415  (rules use other families; late import avoids cycles)

    return ops


def _mT(x):
    """Transpose of the last two axes."""
    r = len(x.shape)
    return _ops().transpose(x, tuple(range(r - 2)) + (r - 1, r - 2))


def _mv(a, v):
    """Batched matrix-vector product: (..., n, k) x (..., k) -> (..., n)."""
    ops = _ops()
    return ops.squeeze(matmul(a, ops.expand_dims(v, -1)), -1)


def _batch(a_batch, b_batch, opname, sa, sb):
    try:
        return broadcast_shapes(a_batch, b_batch)
    except ShapeError:
        raise ShapeError(f"{opname}: batch dimensions of shapes {format_shape(sa)} and "
                         f"{format_shape(sb)} cannot be broadcast together") from None


# ---------------------------------------------------------------------------------------------
# matmul


def _matmul_infer(types, attrs):
    a, b = types
    sa, sb = a.shape, b.shape
    if not sa or not sb:
        raise ShapeError(f"matmul: operands must be at least 1-D, got shapes {format_shape(sa)} "
                         f"and {format_shape(sb)}")
    if a.dtype is not b.dtype or a.dtype.is_bool:
        raise DTypeError(f"matmul: operands must share a numeric dtype, got {a.dtype.name} and "
                         f"{b.dtype.name}")
    ma = sa if len(sa) > 1 else (1,) + sa
    mb = sb if len(sb) > 1 else sb + (1,)
    if not dims_compatible(ma[-1], mb[-2]):
        raise ShapeError(f"matmul: shapes {format_shape(sa)} and {format_shape(sb)} do not "
                         f"match: inner dimensions {ma[-1]} and {mb[-2]} differ")
    out = _batch(ma[:-2], mb[:-2], "matmul", sa, sb)
    out += (ma[-2],) if len(sa) > 1 else ()
    out += (mb[-1],) if len(sb) > 1 else ()
    return (TensorType(out, a.dtype),)


def _matmul_vjp(node, g):
    a, b = node.inputs
    if g is None or not a.dtype.is_floating:
        return (None, None)
    ops = _ops()
    ra, rb = len(a.shape), len(b.shape)
    if ra == 1 and rb == 1:  # inner product
        return (g * b, g * a)
    if ra == 1:  # (k) @ (..., k, m) -> (..., m); the engine sums batch dims away
        return (_mv(b, g), ops.expand_dims(a, -1) * ops.expand_dims(g, -2))
    if rb == 1:  # (..., n, k) @ (k) -> (..., n)
        return (ops.expand_dims(g, -1) * b, _mv(_mT(a), g))
    return (matmul(g, _mT(b)), matmul(_mT(a), g))


def _matmul_jvp(node, ta, tb):
    a, b = node.inputs
    terms = [matmul(ta, b) if ta is not None else None, matmul(a, tb) if tb is not None else None]
    terms = [t for t in terms if t is not None]
    if not terms:
        return (None,)
    return (terms[0] if len(terms) == 1 else terms[0] + terms[1],)


def _matmul_lower(ctx, node, a, b):
    """MatMul; a 1-D right operand goes in as a (k, 1) column and comes out squeezed, because
    onnxruntime's matrix-vector path is 4-27x slower than its matrix-matrix one (PROFILE.md)."""
    ra, rb = len(node.inputs[0].shape), len(node.inputs[1].shape)
    if rb != 1 or ra < 2:
        return (ctx.emit("MatMul", [a, b]),)
    col = ctx.emit("Unsqueeze", [b, ctx.i64([1])])
    return (ctx.emit("Squeeze", [ctx.emit("MatMul", [a, col]), ctx.i64([-1])]),)


MATMUL = defop(
    "matmul",
    infer=_matmul_infer,
    reference=lambda node, a, b: (np.matmul(a, b).astype(node.outputs[0].dtype.np),),
    lower=_matmul_lower,
    vjp=_matmul_vjp,
    jvp=_matmul_jvp,
    doc="numpy matmul: 1-D operands are promoted to matrices (the added dim removed again), "
    "leading dims broadcast. VJP: g @ b^T and a^T @ g (transposes of the last two axes).",
)


def matmul(a, b, name=None):
    """Matrix product with numpy semantics (`a @ b`)."""
    a, b = promote(a, b)
    return apply(MATMUL, (a, b), name=name)


def dot(a, b, name=None):
    """numpy.dot: scalars multiply, 1-D/2-D as matmul; for N-D `b`, contracts a's last axis
    with b's second-to-last, giving a.shape[:-1] + b.shape[:-2] + b.shape[-1:] (as jnp.dot)."""
    a, b = promote(a, b)
    if not a.shape or not b.shape:
        return _ops().multiply(a, b, name=name)
    if len(b.shape) <= 2 or len(a.shape) == 1:
        return matmul(a, b, name=name)
    ops = _ops()
    lead = len(a.shape) - 1  # a: A + (k,) -> A + (1,) * len(B) + (1, k), B = b.shape[:-2]
    a = ops.expand_dims(a, tuple(range(lead, lead + len(b.shape) - 1)))
    return ops.squeeze(matmul(a, b), -2)


# ---------------------------------------------------------------------------------------------
# Square-matrix helpers


def _square(t, opname):
    if len(t.shape) < 2:
        raise ShapeError(f"{opname}: needs a (batch of) square matrices, got shape "
                         f"{format_shape(t.shape)}")
    if not dims_compatible(t.shape[-1], t.shape[-2]):
        raise ShapeError(f"{opname}: matrices must be square, got shape {format_shape(t.shape)}")
    if not t.dtype.is_floating:
        raise DTypeError(f"{opname}: needs a float dtype, got {t.dtype.name}")


def _float_matrix(x):
    x = as_tensor(x)
    if not x.dtype.is_floating:
        x = _ops().cast(x, default_float())
    return x


def _np32(a):
    """numpy.linalg has no float16: the reference computes in float32, as the lowering does."""
    return a.astype(np.float32) if a.dtype == np.float16 else a


def _in_f32(ctx, node, names, fn):
    """Float16 linear algebra runs in float32 and rounds once (no float16 accuracy to spare)."""
    if node.outputs[0].dtype is not float16:
        return fn(*names)
    out = fn(*(ctx.cast(n, float32) for n in names))
    return ctx.cast(out, float16)


# ---------------------------------------------------------------------------------------------
# inv


def _inv_infer(types, attrs):
    (a,) = types
    _square(a, "inv")
    return (TensorType(a.shape, a.dtype),)


def _inv_lower(ctx, node, a):
    # com.microsoft Inverse (onnxruntime CPU: float16/32/64, batched); ONNX has no inverse.
    def fn(x):
        return ctx.emit("Inverse", [x], domain="com.microsoft")

    return (_in_f32(ctx, node, [a], fn),)


def _inv_vjp(node, g):
    # d(A^-1) = -C dA C with C = A^-1, so the VJP is -C^T G C^T.
    if g is None:
        return (None,)
    ct = _mT(node.outputs[0])
    return (-matmul(matmul(ct, g), ct),)


def _inv_jvp(node, t):
    if t is None:
        return (None,)
    c = node.outputs[0]
    return (-matmul(matmul(c, t), c),)


INV = defop(
    "inv",
    infer=_inv_infer,
    reference=lambda node, a: (np.linalg.inv(_np32(a)).astype(node.outputs[0].dtype.np),),
    lower=_inv_lower,
    vjp=_inv_vjp,
    jvp=_inv_jvp,
    doc="Inverse of square (batched) matrices (com.microsoft Inverse in ONNX).",
)


def inv(a, name=None):
    """Inverse of a square matrix or a batch of them (numpy.linalg.inv)."""
    return apply(INV, (_float_matrix(a),), name=name)


# ---------------------------------------------------------------------------------------------
# solve


def _solve_infer(types, attrs):
    a, b = types
    _square(a, "solve")
    if a.dtype is not b.dtype:
        raise DTypeError(f"solve: a and b must share a dtype, got {a.dtype.name} and "
                         f"{b.dtype.name}")
    n = a.shape[-1]
    if attrs["vector"]:  # b: (..., n)
        if not b.shape or not dims_compatible(b.shape[-1], n):
            raise ShapeError(f"solve: a of shape {format_shape(a.shape)} and b of shape "
                             f"{format_shape(b.shape)} do not match (b needs {n} rows)")
        return (TensorType(_batch(a.shape[:-2], b.shape[:-1], "solve", a.shape, b.shape)
                           + (a.shape[-2],), a.dtype),)
    if len(b.shape) < 2 or not dims_compatible(b.shape[-2], n):
        raise ShapeError(f"solve: a of shape {format_shape(a.shape)} and b of shape "
                         f"{format_shape(b.shape)} do not match (b needs {n} rows)")
    batch = _batch(a.shape[:-2], b.shape[:-2], "solve", a.shape, b.shape)
    return (TensorType(batch + (a.shape[-2], b.shape[-1]), a.dtype),)


def _solve_reference(node, a, b):
    a, b = _np32(a), _np32(b)
    if node.attrs["vector"]:
        x = np.linalg.solve(a, b[..., None])[..., 0]
    else:
        x = np.linalg.solve(a, b)
    return (x.astype(node.outputs[0].dtype.np),)


def _solve_lower(ctx, node, a, b):
    # x0 = inv(a) @ b, then one step of iterative refinement x = x0 + inv(a) @ (b - a @ x0):
    # two extra matrix products bring the residual down to what an LU solve achieves.
    def fn(a, b):
        if node.attrs["vector"]:
            b = ctx.emit("Unsqueeze", [b, ctx.i64([-1])])
        c = ctx.emit("Inverse", [a], domain="com.microsoft")
        x0 = ctx.emit("MatMul", [c, b])
        r = ctx.emit("Sub", [b, ctx.emit("MatMul", [a, x0])])
        x = ctx.emit("Add", [x0, ctx.emit("MatMul", [c, r])])
        return ctx.emit("Squeeze", [x, ctx.i64([-1])]) if node.attrs["vector"] else x

    return (_in_f32(ctx, node, [a, b], fn),)


def _solve_vjp(node, g):
    # x = A^-1 b: gb = A^-T g, gA = -gb x^T (an outer product for a vector right-hand side).
    if g is None:
        return (None, None)
    a = node.inputs[0]
    x = node.outputs[0]
    vector = node.attrs["vector"]
    gb = apply(SOLVE, (_mT(a), g), {"vector": vector})
    if vector:
        ops = _ops()
        ga = -(ops.expand_dims(gb, -1) * ops.expand_dims(x, -2))
    else:
        ga = -matmul(gb, _mT(x))
    return (ga, gb)


def _solve_jvp(node, ta, tb):
    # A x = b  =>  A dx = db - dA x.
    a, x = node.inputs[0], node.outputs[0]
    vector = node.attrs["vector"]
    rhs = tb
    if ta is not None:
        dax = _mv(ta, x) if vector else matmul(ta, x)
        rhs = -dax if rhs is None else rhs - dax
    if rhs is None:
        return (None,)
    return (apply(SOLVE, (a, rhs), {"vector": vector}),)


SOLVE = defop(
    "solve",
    infer=_solve_infer,
    reference=_solve_reference,
    lower=_solve_lower,
    vjp=_solve_vjp,
    jvp=_solve_jvp,
    doc="x with a @ x = b; `vector`: b is a (batch of) vector(s) (..., n), else matrices "
    "(..., n, k). Lowered as inv(a) @ b plus one refinement step.",
)


def solve(a, b, name=None):
    """Solve a @ x = b (numpy.linalg.solve semantics: b is a vector only when b.ndim == 1)."""
    a, b = promote(_float_matrix(a), b)
    return apply(SOLVE, (a, b), {"vector": len(b.shape) == 1}, name=name)


# ---------------------------------------------------------------------------------------------
# det


def _det_infer(types, attrs):
    (a,) = types
    _square(a, "det")
    return (TensorType(a.shape[:-2], a.dtype),)


def _det_lower(ctx, node, a):
    if node.outputs[0].dtype is float64:  # onnxruntime has no float64 Det kernel
        return (_det_lu(ctx, node, a),)
    return (_in_f32(ctx, node, [a], lambda x: ctx.emit("Det", [x])),)


def _det_vjp(node, g):
    # d det = det * tr(A^-1 dA), so the VJP is g * det * A^-T (needs A invertible).
    if g is None:
        return (None,)
    ops = _ops()
    s = ops.expand_dims(ops.expand_dims(g * node.outputs[0], -1), -1)
    return (s * _mT(inv(node.inputs[0])),)


def _det_jvp(node, t):
    if t is None:
        return (None,)
    from .reduce import sum as _sum  # noqa: PLC0415

    return (node.outputs[0] * _sum(_mT(inv(node.inputs[0])) * t, axis=(-2, -1)),)


DET = defop(
    "det",
    infer=_det_infer,
    reference=lambda node, a: (np.asarray(np.linalg.det(_np32(a))).astype(
        node.outputs[0].dtype.np),),
    lower=_det_lower,
    vjp=_det_vjp,
    jvp=_det_jvp,
    doc="Determinant of square (batched) matrices. ONNX Det for float16/32; float64 (which "
    "onnxruntime's Det lacks) by LU with partial pivoting in an ONNX Loop.",
)


def det(a, name=None):
    """Determinant of a square matrix or a batch of them (numpy.linalg.det)."""
    return apply(DET, (_float_matrix(a),), name=name)


# ---------------------------------------------------------------------------------------------
# float64 determinant: Gaussian elimination with partial pivoting, one Loop step per column


def _f64(ctx, v):
    return ctx.const(np.asarray(v, dtype=np.float64))


def _det_lu(ctx, node, a):
    """det of (..., n, n) float64 as an ONNX Loop over the n columns (the LAPACK getrf
    algorithm, so accuracy matches numpy). Matrices are flattened to a (B, n, n) batch."""
    shape = ctx.emit("Shape", [a])
    n1 = ctx.emit("Slice", [shape, ctx.i64([-1]), ctx.i64([np.iinfo(np.int64).max])])
    batch = ctx.emit("Slice", [shape, ctx.i64([0]), ctx.i64([-2])])
    m0 = ctx.emit("Reshape", [a, ctx.emit("Concat", [ctx.i64([-1]), n1, n1], axis=0)])
    bsz = ctx.emit("Slice", [ctx.emit("Shape", [m0]), ctx.i64([0]), ctx.i64([1])])
    one = helper.make_tensor("value", TensorProto.DOUBLE, [1], [1.0])
    det0 = ctx.emit("ConstantOfShape", [bsz], value=one)
    n = ctx.emit("Squeeze", [n1, ctx.i64([0])])
    iota = ctx.emit("Range", [ctx.const(np.asarray(0, np.int64)), n,
                              ctx.const(np.asarray(1, np.int64))])
    body = _det_body(ctx, node, iota)
    true = ctx.const(np.asarray(True))
    _, det_b = ctx.emit("Loop", [n, true, m0, det0], outputs=2, body=body)
    return ctx.emit("Reshape", [det_b, batch])


def _det_body(ctx, node, iota):
    from ..export.lowering import LowerCtx  # noqa: PLC0415

    sub = LowerCtx(opset=ctx.opset, parent=ctx)
    sub.set_prefix(f"{node.name}/lu")
    i, cond, m, det = (ctx.fresh(f"{node.name}/lu/{s}") for s in ("i", "cond", "m", "det"))
    e = sub.emit
    col = e("Gather", [m, i], axis=2)  # (B, n): column i
    cand = e("Where", [e("GreaterOrEqual", [iota, i]), e("Abs", [col]), _f64(sub, -1.0)])
    p = e("ArgMax", [cand], axis=1, keepdims=1)  # (B, 1): pivot row
    row_p = e("GatherND", [m, p], batch_dims=1)  # (B, n)
    row_i = e("Gather", [m, i], axis=1)
    is_i = e("Unsqueeze", [e("Equal", [iota, i]), sub.i64([0, 2])])  # (1, n, 1)
    is_p = e("Unsqueeze", [e("Equal", [iota, p]), sub.i64([2])])  # (B, n, 1)
    m1 = e("Where", [is_i, e("Unsqueeze", [row_p, sub.i64([1])]),
                     e("Where", [is_p, e("Unsqueeze", [row_i, sub.i64([1])]), m])])
    pivot = e("Gather", [row_p, i], axis=1)  # (B,)
    swapped = e("Not", [e("Equal", [e("Squeeze", [p, sub.i64([1])]), i])])
    sign = e("Where", [swapped, _f64(sub, -1.0), _f64(sub, 1.0)])
    det1 = e("Mul", [e("Mul", [det, sign]), pivot])
    safe = e("Where", [e("Equal", [pivot, _f64(sub, 0.0)]), _f64(sub, 1.0), pivot])
    ratio = e("Div", [e("Gather", [m1, i], axis=2), e("Unsqueeze", [safe, sub.i64([1])])])
    f = e("Where", [e("Greater", [iota, i]), ratio, _f64(sub, 0.0)])  # (B, n) multipliers
    upd = e("Mul", [e("Unsqueeze", [f, sub.i64([2])]), e("Unsqueeze", [row_p, sub.i64([1])])])
    m2 = e("Sub", [m1, upd])
    cond_out = e("Identity", [cond])
    vi = helper.make_tensor_value_info
    inputs = [vi(i, TensorProto.INT64, []), vi(cond, TensorProto.BOOL, []),
              vi(m, TensorProto.DOUBLE, [None] * 3), vi(det, TensorProto.DOUBLE, [None])]
    outputs = [vi(cond_out, TensorProto.BOOL, []), vi(m2, TensorProto.DOUBLE, [None] * 3),
               vi(det1, TensorProto.DOUBLE, [None])]
    return helper.make_graph(sub.nodes, f"{node.name}_lu_body", inputs, outputs)
