"""Creation ops: zeros/ones/full (ConstantOfShape), zeros_like/ones_like/full_like (also for
run-time shapes), eye (EyeLike) and arange (a constant). None of them has a derivative input."""

import numbers

import numpy as np
from onnx import numpy_helper

from ..build import as_tensor, constant
from ..errors import DTypeError, ShapeError, user_location
from ..graph import Tensor
from ..registry import apply, defop
from ..types import (
    DTypeOverflowError,
    TensorType,
    array_overflow,
    as_dtype,
    as_shape,
    canonicalize,
    default_float,
    default_int,
    float32,
    float64,
    format_shape,
    int32,
    int64,
    is_static,
    scalar_overflow,
)

__all__ = ["zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "eye", "arange"]


def emit_fill(ctx, shape_name, value, dtype):
    """ONNX ConstantOfShape: a tensor of run-time shape `shape_name` filled with `value`."""
    tensor = numpy_helper.from_array(np.array([value], dtype=as_dtype(dtype).np))
    return ctx.emit("ConstantOfShape", [shape_name], value=tensor)


def _static_shape(shape, opname):
    shape = as_shape(shape)
    if not is_static(shape):
        raise ShapeError(f"{opname}: shape {format_shape(shape)} has unknown dims; use "
                         f"ga.{opname}_like(x) for a run-time shape\n  at {user_location()}")
    return shape


def _fill_value(value, dtype, opname):
    """`value` converted to `dtype` as a Python scalar (numpy casting; no NaN into ints). A
    Python number that overflows `dtype` (2**40 for int32, 1e6 for float16) raises
    DTypeOverflowError, as constants do (NumPy 2 / JAX refuse such Python ints too)."""
    if isinstance(value, (int, float)) and not isinstance(value, (bool, np.generic)):
        reason = scalar_overflow(value, dtype)
        if reason is not None:
            raise DTypeOverflowError(
                f"{opname}: fill value (Python {type(value).__name__}) {value!r} {reason} "
                f"(at {user_location()}); give a wider dtype")
    arr = np.asarray(value)
    if arr.dtype.kind == "f" and dtype.kind in "ib" and not np.isfinite(arr):
        raise DTypeError(f"{opname}: fill value {value!r} cannot become {dtype.name}\n"
                         f"  at {user_location()}")
    return arr.astype(dtype.np).item()


def _scalar_dtype(value):
    """The dtype jnp gives a scalar fill value: weak Python scalars take the defaults."""
    if isinstance(value, (bool, np.bool_)):
        return as_dtype("bool")
    if isinstance(value, numbers.Integral) and not isinstance(value, np.integer):
        return default_int()
    if isinstance(value, numbers.Real) and not isinstance(value, np.floating):
        return default_float()
    return canonicalize(np.asarray(value).dtype)


# Source ops have no inputs: the VJP returns no entries and the tangent of the output is zero.
def _no_vjp(node, g):
    return ()


def _no_jvp(node):
    return (None,)


# ---------------------------------------------------------------------------------------------
# full / zeros / ones


FULL = defop(
    "full",
    infer=lambda types, attrs: (TensorType(attrs["shape"], attrs["dtype"]),),
    reference=lambda node, *_: (np.full(node.attrs["shape"], node.attrs["value"],
                                        dtype=node.attrs["dtype"].np),),
    lower=lambda ctx, node: (emit_fill(ctx, ctx.i64(list(node.attrs["shape"])),
                                       node.attrs["value"], node.attrs["dtype"]),),
    vjp=_no_vjp,
    jvp=_no_jvp,
    doc="A tensor of a static shape filled with one value (ONNX ConstantOfShape).",
)


def full(shape, fill_value, dtype=None, name=None, _opname="full"):
    """A tensor of `shape` filled with `fill_value` (a scalar, or anything broadcastable)."""
    shape = _static_shape(shape, _opname)
    if isinstance(fill_value, Tensor) or np.ndim(fill_value) != 0:
        from .shape import broadcast_to  # noqa: PLC0415

        return broadcast_to(as_tensor(fill_value, dtype), shape, name=name)
    dtype = _scalar_dtype(fill_value) if dtype is None else as_dtype(dtype)
    attrs = {"shape": shape, "value": _fill_value(fill_value, dtype, _opname), "dtype": dtype}
    return apply(FULL, (), attrs, name=name)


def zeros(shape, dtype=None, name=None):
    """A tensor of zeros; the default dtype is the default float (float32, float64 with x64)."""
    return full(shape, 0, default_float() if dtype is None else dtype, name, "zeros")


def ones(shape, dtype=None, name=None):
    """A tensor of ones; the default dtype is the default float (float32, float64 with x64)."""
    return full(shape, 1, default_float() if dtype is None else dtype, name, "ones")


# ---------------------------------------------------------------------------------------------
# full_like / zeros_like / ones_like


def _full_like_lower(ctx, node, x):
    shape = node.inputs[0].shape
    shape_name = ctx.i64(list(shape)) if is_static(shape) else ctx.emit("Shape", [x])
    return (emit_fill(ctx, shape_name, node.attrs["value"], node.attrs["dtype"]),)


FULL_LIKE = defop(
    "full_like",
    shape_only=(0,),  # inputs whose values are not read
    infer=lambda types, attrs: (TensorType(types[0].shape, attrs["dtype"]),),
    reference=lambda node, x: (np.full(x.shape, node.attrs["value"],
                                       dtype=node.attrs["dtype"].np),),
    lower=_full_like_lower,
    # The output does not depend on x's values at all: its derivative is zero, not undefined.
    vjp=lambda node, g: (None,),
    jvp=lambda node, t: (None,),
    doc="A tensor of x's (run-time) shape filled with one value (ConstantOfShape(Shape(x))).",
)


def full_like(x, fill_value, dtype=None, name=None):
    """A tensor shaped like x (run-time shape) filled with `fill_value`; dtype defaults to x's."""
    x = as_tensor(x)
    dtype = x.dtype if dtype is None else as_dtype(dtype)
    if isinstance(fill_value, Tensor) or np.ndim(fill_value) != 0:
        from .shape import broadcast_to_like  # noqa: PLC0415

        return broadcast_to_like(as_tensor(fill_value, dtype), x, name=name)
    attrs = {"value": _fill_value(fill_value, dtype, "full_like"), "dtype": dtype}
    return apply(FULL_LIKE, (x,), attrs, name=name)


def zeros_like(x, dtype=None, name=None):
    """Zeros shaped like x (works for unknown dims); dtype defaults to x's."""
    return full_like(x, 0, dtype, name=name)


def ones_like(x, dtype=None, name=None):
    """Ones shaped like x (works for unknown dims); dtype defaults to x's."""
    return full_like(x, 1, dtype, name=name)


# ---------------------------------------------------------------------------------------------
# eye and arange


def _eye_lower(ctx, node):
    n, m, k, dtype = (node.attrs[a] for a in ("n", "m", "k", "dtype"))
    # onnxruntime's EyeLike has float/double/int32/int64 kernels: other dtypes are cast after.
    base = dtype if dtype in (float32, float64, int32, int64) else float32
    zeros_name = emit_fill(ctx, ctx.i64([n, m]), 0, base)
    out = ctx.emit("EyeLike", [zeros_name], k=k, dtype=base.onnx)
    return (out if base is dtype else ctx.cast(out, dtype),)


EYE = defop(
    "eye",
    infer=lambda types, attrs: (TensorType((attrs["n"], attrs["m"]), attrs["dtype"]),),
    reference=lambda node: (np.eye(node.attrs["n"], node.attrs["m"], node.attrs["k"],
                                   dtype=node.attrs["dtype"].np),),
    lower=_eye_lower,
    vjp=_no_vjp,
    jvp=_no_jvp,
    doc="An n x m matrix with ones on diagonal k (numpy.eye).",
)


def _size_arg(v, what):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
        raise ShapeError(f"eye: {what} must be a non-negative int, got {v!r}\n"
                         f"  at {user_location()}")
    return int(v)


def eye(n, m=None, k=0, dtype=None, name=None):
    """numpy.eye: n x m (m defaults to n) with ones on the k-th diagonal; default float dtype."""
    n = _size_arg(n, "n")
    m = n if m is None else _size_arg(m, "m")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
        raise ShapeError(f"eye: k must be an int, got {k!r}\n  at {user_location()}")
    dtype = default_float() if dtype is None else as_dtype(dtype)
    return apply(EYE, (), {"n": n, "m": m, "k": int(k), "dtype": dtype}, name=name)


def arange(start, stop=None, step=1, dtype=None, name=None):
    """numpy.arange of static Python numbers, as a constant. Without `dtype`: the default int
    for int arguments, the default float if any argument is a float (as jnp)."""
    args = (start, stop, step)
    for v in args:
        if isinstance(v, Tensor) or (v is not None and not isinstance(v, numbers.Real)):
            raise DTypeError(f"arange takes static Python numbers, got {v!r}\n"
                             f"  at {user_location()}")
    if step == 0:
        raise ValueError(f"arange: step cannot be zero\n  at {user_location()}")
    if stop is None:
        start, stop = 0, start
    if dtype is None:
        floats = any(isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral)
                     for v in args)
        dtype = default_float() if floats else default_int()
    dtype = as_dtype(dtype)
    wide = np.float64 if dtype.is_floating else np.int64
    try:
        values = np.arange(start, stop, step, dtype=wide)  # computed wide, then narrowed once
    except (OverflowError, ValueError) as e:
        raise DTypeOverflowError(f"arange({start!r}, {stop!r}, {step!r}): {e} (at "
                                 f"{user_location()})") from None
    hit = array_overflow(values, dtype)
    if hit is not None:
        index, v, reason = hit
        raise DTypeOverflowError(f"arange({start!r}, {stop!r}, {step!r}): value {v!r} at index "
                                 f"{index} {reason} (at {user_location()}); give a wider dtype")
    return constant(values.astype(dtype.np), dtype=dtype, name=name)
