"""Elementwise arithmetic, rounding, min/max and clip; re-exports the math functions
(elementwise_math.py) and `cast` / `stop_gradient` (elementwise_core.py): the whole family."""

import builtins

import numpy as np

from ..build import as_tensor, promote
from ..registry import NOT_DIFFERENTIABLE, apply, defop
from ..types import TensorType, broadcast_shapes, default_float, int64
from . import compare
from .elementwise_core import (
    binary,
    cast,
    check_kinds,
    const,
    elementwise_infer,
    emit_float,
    is_constant,
    like,
    mask,
    result,
    same_dtype,
    scale,
    simple,
    stop_gradient,
    unary,
    wanted,
)

__all__ = [
    "add", "subtract", "multiply", "divide", "power", "negative", "reciprocal", "square", "abs",
    "sign", "floor", "ceil", "round", "maximum", "minimum", "clip", "cast", "stop_gradient",
]  # fmt: skip


def _bool_or(op_bool, op_num):
    """Kernel using a logical op for bool operands (add = or, multiply = and)."""
    num = simple(op_num)

    def kernel(ctx, dt, x, y):
        return ctx.emit(op_bool, [x, y]) if dt.is_bool else num(ctx, dt, x, y)

    kernel.native_f16 = num.native_f16
    return kernel


# ---------------------------------------------------------------------------------------------
# Arithmetic

add = binary("add", np.add, _bool_or("Or", "Add"), (lambda x, y, o: 1, lambda x, y, o: 1),
             kinds="fib", doc="x + y (logical or for bools, as numpy).")
subtract = binary("subtract", np.subtract, "Sub", (lambda x, y, o: 1, lambda x, y, o: -1),
                  doc="x - y.")
multiply = binary("multiply", np.multiply, _bool_or("And", "Mul"),
                  (lambda x, y, o: y, lambda x, y, o: x), kinds="fib",
                  doc="x * y (logical and for bools, as numpy).")
_divide = binary("divide", np.true_divide, "Div",
                 # -out/y rather than -x/y**2: no overflow of y**2 for large y.
                 (lambda x, y, o: reciprocal(y), lambda x, y, o: -o / y), kinds="f")


def divide(x, y, name=None):
    """True division x / y; integer and bool operands give the default float (as jnp)."""
    x, y = promote(x, y)
    if not x.dtype.is_floating:
        x, y = cast(x, default_float()), cast(y, default_float())
    return _divide(x, y, name=name)


divide.opdef = _divide.opdef


def _int_pow_kernel(ctx, dt, x, y):
    """x**y for integers by square-and-multiply over the exponent's low bits: exact in int64
    (onnxruntime's Pow goes through double, inexact above 2**53). Negative exponents truncate
    toward zero like the real power: 1, (-1)**y, or 0."""
    nbits = 6 if dt is int64 else 5  # |x| >= 2 overflows for larger exponents anyway
    def c(v):
        return const(ctx, v, dt)

    e = ctx.emit("Clip", [y, c(0), c(2**nbits - 1)])
    acc, base = c(1), x
    for k in range(nbits):
        bit = ctx.emit("Equal", [ctx.emit("BitwiseAnd", [e, c(2**k)]), c(0)])
        acc = ctx.emit("Where", [bit, acc, ctx.emit("Mul", [acc, base])])
        if k < nbits - 1:
            base = ctx.emit("Mul", [base, base])
    acc = ctx.emit("Where", [ctx.emit("Less", [y, c(0)]), c(0), acc])
    acc = ctx.emit("Where", [ctx.emit("Equal", [x, c(1)]), c(1), acc])
    odd = ctx.emit("Mod", [y, c(2)])  # 0 or 1 (integer Mod takes the divisor's sign)
    minus_one_pow = ctx.emit("Sub", [c(1), ctx.emit("Mul", [odd, c(2)])])
    return ctx.emit("Where", [ctx.emit("Equal", [x, c(-1)]), minus_one_pow, acc])


def _np_int_power(x, y):
    nbits = 6 if x.dtype == np.int64 else 5
    r = np.power(x, np.clip(y, 0, 2**nbits - 1))
    r = np.where(y < 0, 0, r)
    r = np.where(x == 1, 1, r)
    return np.where(x == -1, 1 - 2 * (y % 2), r)


def _np_power(x, y):
    return _np_int_power(x, y) if x.dtype.kind == "i" else np.power(x, y)


def _dpow_dx(x, y, out):
    # y * x**(y-1), with the exponent replaced where y == 0 so 0**-1 never appears (no nan at
    # x == 0, y == 0, nor in the second derivative).
    return y * power(x, compare.where(compare.equal(y, 0), like(1, y), y - 1))


def _dpow_dy(x, y, out):
    # out * log(x), with log's argument 1 where x == 0: 0**y has slope 0 in y (for y > 0), and
    # no inf/nan leaks into higher derivatives. Negative x gives nan, as in JAX.
    if is_constant(y):
        return None
    return out * log(compare.where(compare.equal(x, 0), like(1, x), x))


def _pow_kernel(ctx, dt, x, y):
    return _int_pow_kernel(ctx, dt, x, y) if dt.is_integer else ctx.emit("Pow", [x, y])


power = binary(
    "power", _np_power, _pow_kernel, (_dpow_dx, _dpow_dy),
    doc="x ** y. Integers: exact (square-and-multiply); negative exponents truncate toward "
        "zero; overflowing results are unspecified. d/dy uses log(x) with x == 0 mapped to 1.",
)

negative = unary("negative", np.negative, "Neg", lambda x, y: -1, kinds="fi", doc="-x.")
reciprocal = unary("reciprocal", np.reciprocal, "Reciprocal", lambda x, y: -(y * y),
                   doc="1 / x (integers give the default float, as jnp).")
square = unary("square", np.square,
               lambda ctx, dt, x: ctx.emit("Mul", [x, x]), lambda x, y: 2 * x, kinds="fi",
               doc="x * x.")
abs = unary(  # the API name shadows the builtin inside this module only
    "abs", np.abs, "Abs",
    lambda x, y: stop_gradient(sign(x)),  # subgradient 0 at x == 0 (sign(0)), as JAX
    kinds="fi", doc="|x|; the derivative at 0 is 0.",
)
sign = unary("sign", np.sign, "Sign", NOT_DIFFERENTIABLE, kinds="fi",
             doc="-1, 0 or 1 (nan for nan). Not differentiable (its derivative is 0 a.e.).")


# ---------------------------------------------------------------------------------------------
# Rounding: identity on integers (numpy 2 / array API), not differentiable.


def _rounding(name, np_fn, op_type, doc):
    op = unary(name, np_fn, op_type, NOT_DIFFERENTIABLE, doc=doc)

    def fn(x, name=None):
        x = as_tensor(x)
        return x if not x.dtype.is_floating else op(x, name=name)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    fn.opdef = op.opdef
    return fn


floor = _rounding("floor", np.floor, "Floor", "Largest integer <= x (integers unchanged).")
ceil = _rounding("ceil", np.ceil, "Ceil", "Smallest integer >= x (integers unchanged).")


def _round_reference(node, x):
    return (result(node, np.round(x, node.attrs["decimals"])),)


def _round_lower(ctx, node, x):
    # numpy's algorithm: scale by 10**decimals in x's dtype, round half to even, unscale.
    d = node.attrs["decimals"]
    if d == 0:
        return (ctx.emit("Round", [x]),)
    dt = node.inputs[0].dtype
    f = const(ctx, 10.0 ** builtins.abs(d), dt)
    y = emit_float(ctx, "Mul" if d > 0 else "Div", [x, f], dt)
    return (emit_float(ctx, "Div" if d > 0 else "Mul", [ctx.emit("Round", [y]), f], dt),)


ROUND = defop(
    "round",
    infer=elementwise_infer("f", "round"),
    reference=_round_reference,
    lower=_round_lower,
    vjp=NOT_DIFFERENTIABLE,
    jvp=NOT_DIFFERENTIABLE,
    doc="Round half to even to `decimals` places (numpy's algorithm). Not differentiable.",
)


def round(x, decimals=0, name=None):
    """x rounded half to even (numpy/ONNX Round); integers are returned unchanged."""
    if not isinstance(decimals, (int, np.integer)) or isinstance(decimals, bool):
        raise TypeError(f"round: decimals must be an int, got {decimals!r}")
    x = as_tensor(x)
    if not x.dtype.is_floating:
        return x
    return apply(ROUND, (x,), {"decimals": int(decimals)}, name=name)


round.opdef = ROUND


# ---------------------------------------------------------------------------------------------
# maximum / minimum: at ties the gradient is split 0.5 / 0.5 (JAX's choice: it is the average of
# the one-sided derivatives, and central finite differences agree with it).


def _tie_partials(cmp):
    def dx(x, y, out):
        return mask(cmp(x, y), out) + 0.5 * mask(compare.equal(x, y), out)

    def dy(x, y, out):
        return mask(cmp(y, x), out) + 0.5 * mask(compare.equal(x, y), out)

    return dx, dy


maximum = binary("maximum", np.maximum, _bool_or("Or", "Max"),
                 _tie_partials(lambda a, b: compare.greater(a, b)), kinds="fib",
                 doc="Elementwise max (nan propagates); ties split the gradient 0.5/0.5.")
minimum = binary("minimum", np.minimum, _bool_or("And", "Min"),
                 _tie_partials(lambda a, b: compare.less(a, b)), kinds="fib",
                 doc="Elementwise min (nan propagates); ties split the gradient 0.5/0.5.")


# ---------------------------------------------------------------------------------------------
# clip(x, a_min, a_max) = minimum(maximum(x, a_min), a_max); either bound may be None (absent).


def _clip_split(inputs, attrs):
    """(x, lo or None, hi or None) from the node's inputs (x, [lo], [hi])."""
    lo = inputs[1] if attrs["has_min"] else None
    hi = inputs[-1] if attrs["has_max"] else None
    return inputs[0], lo, hi


def _clip_infer(types, attrs):
    dt = same_dtype(types, "clip")
    check_kinds(dt, "fi", "clip")
    return (TensorType(broadcast_shapes(*(t.shape for t in types)), dt),)


def _clip_reference(node, *arrays):
    x, lo, hi = _clip_split(arrays, node.attrs)
    out = x if lo is None else np.maximum(x, lo)
    out = out if hi is None else np.minimum(out, hi)
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    return (result(node, np.broadcast_to(out, shape)),)


def _clip_lower(ctx, node, *names):
    x, lo, hi = _clip_split(names, node.attrs)
    out = x if lo is None else ctx.emit("Max", [x, lo])
    return (out if hi is None else ctx.emit("Min", [out, hi]),)


def _clip_partials(node):
    """d out / d (x, lo, hi) for the inputs present. At x == bound the gradient goes to x (as
    TensorFlow's clip_by_value), not split: clip passes x through on its closed interval."""
    x, lo, hi = _clip_split(node.inputs, node.attrs)
    out = node.outputs[0]
    below = None if lo is None else compare.less(x, lo)
    above = None if hi is None else compare.greater(x if lo is None else maximum(x, lo), hi)
    parts = []
    if below is None and above is None:
        parts.append(1)
    elif below is None or above is None:
        parts.append(mask(compare.logical_not(above if below is None else below), out))
    else:
        parts.append(mask(compare.logical_not(compare.logical_or(below, above)), out))
    if lo is not None:
        parts.append(mask(below if above is None else
                           compare.logical_and(below, compare.logical_not(above)), out))
    if hi is not None:
        parts.append(mask(above, out))
    return parts


def _clip_vjp(node, g):
    if g is None:
        return (None,) * len(node.inputs)
    return tuple(scale(g, d) if wanted(node, i) else None
                 for i, d in enumerate(_clip_partials(node)))


def _clip_jvp(node, *tangents):
    terms = [scale(t, d) for t, d in zip(tangents, _clip_partials(node)) if t is not None]
    return (sum(terms[1:], terms[0]) if terms else None,)


CLIP = defop(
    "clip",
    infer=_clip_infer,
    reference=_clip_reference,
    lower=_clip_lower,
    vjp=_clip_vjp,
    jvp=_clip_jvp,
    doc="minimum(maximum(x, a_min), a_max) with absent bounds skipped (a_min > a_max gives "
        "a_max, as numpy). At x == a bound the derivative goes to x.",
)


def clip(x, a_min=None, a_max=None, name=None):
    """x limited to [a_min, a_max] (numpy broadcasting; a None bound is not applied)."""
    bounds = [b for b in (a_min, a_max) if b is not None]
    if not bounds:
        return as_tensor(x)
    x, *bounds = promote(x, *bounds)
    attrs = {"has_min": a_min is not None, "has_max": a_max is not None}
    return apply(CLIP, (x, *bounds), attrs, name=name)


# The math ops (their rules use the arithmetic above, hence the import at the end).
from .elementwise_math import *  # noqa: E402, F403
from .elementwise_math import __all__ as _math_all  # noqa: E402

__all__.extend(_math_all)
