"""Elementwise math functions (exp, log, trig, activations, erf); integer and bool inputs are
promoted to the default float. Where onnxruntime lacks a float64 kernel (Tan, Atan, Sinh, Cosh,
Softplus, Erf), ONNX lacks the op (expm1, log1p) or its kernel is inaccurate (Sigmoid), the
lowering is a full-precision composition."""

import math
from fractions import Fraction

import numpy as np

from ..types import float32, float64
from . import compare
from . import elementwise as ew
from .elementwise_core import by_dtype, const, like, mask, simple, unary

__all__ = [
    "sqrt", "rsqrt", "exp", "expm1", "log", "log1p", "sin", "cos", "tan", "tanh", "arctan",
    "sinh", "cosh", "sigmoid", "relu", "softplus", "erf",
]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# ONNX compositions; each takes the compute dtype `dt` (never float16: the factory computes
# float16 in float32) and returns the output name.


def _c(ctx, value, dt):
    return const(ctx, value, dt)


def _where(ctx, cond, a, b):
    return ctx.emit("Where", [cond, a, b])


def _expm1_kernel(ctx, dt, x):
    # Kahan: (u - 1) * (x / log(u)) with u = exp(x) cancels exp's rounding error (a few ulp),
    # with the exact cases u == 1 -> x, u - 1 == -1 -> -1 and u == inf -> inf. (x / log(u) ~ 1
    # first: (u - 1) * x would overflow just below exp's own overflow.)
    u = ctx.emit("Exp", [x])
    d = ctx.emit("Sub", [u, _c(ctx, 1, dt)])
    r = ctx.emit("Mul", [d, ctx.emit("Div", [x, ctx.emit("Log", [u])])])
    r = _where(ctx, ctx.emit("Equal", [u, _c(ctx, 1, dt)]), x, r)
    r = _where(ctx, ctx.emit("Equal", [d, _c(ctx, -1, dt)]), _c(ctx, -1, dt), r)
    return _where(ctx, ctx.emit("IsInf", [u], detect_negative=0), u, r)


def _log1p_kernel(ctx, dt, x):
    # Goldberg: log(u) * (x / (u - 1)) with u = 1 + x corrects the rounding of 1 + x.
    u = ctx.emit("Add", [x, _c(ctx, 1, dt)])
    d = ctx.emit("Sub", [u, _c(ctx, 1, dt)])
    r = ctx.emit("Mul", [ctx.emit("Log", [u]), ctx.emit("Div", [x, d])])
    r = _where(ctx, ctx.emit("Equal", [u, _c(ctx, 1, dt)]), x, r)
    return _where(ctx, ctx.emit("IsInf", [u], detect_negative=0), u, r)


def _sigmoid_kernel(ctx, dt, x):
    # e = exp(-|x|) never overflows; 1/(1+e) for x >= 0 and e/(1+e) for x < 0 are both accurate
    # to relative precision. (onnxruntime's Sigmoid returns 0 below x ~ -17 in float32.)
    e = ctx.emit("Exp", [ctx.emit("Neg", [ctx.emit("Abs", [x])])])
    s = ctx.emit("Reciprocal", [ctx.emit("Add", [e, _c(ctx, 1, dt)])])
    nonneg = ctx.emit("GreaterOrEqual", [x, _c(ctx, 0, dt)])
    return _where(ctx, nonneg, s, ctx.emit("Mul", [e, s]))


def _softplus64(ctx, dt, x):
    # max(x, 0) + log1p(exp(-|x|)): no overflow, relative precision for large negative x.
    e = ctx.emit("Exp", [ctx.emit("Neg", [ctx.emit("Abs", [x])])])
    return ctx.emit("Add", [ctx.emit("Max", [x, _c(ctx, 0, dt)]), _log1p_kernel(ctx, dt, e)])


def _tan64(ctx, dt, x):
    return ctx.emit("Div", [ctx.emit("Sin", [x]), ctx.emit("Cos", [x])])


def _arctan64(ctx, dt, x):
    # float32 seed y0 = atan(x), then one exact correction: atan(x) = y0 + atan(d) with
    # d = tan(atan(x) - y0) = (x cos y0 - sin y0) / (cos y0 + x sin y0), |d| < 1e-7, so
    # atan(d) = d to double precision (measured max error 2 ulp).
    y0 = ctx.cast(ctx.emit("Atan", [ctx.cast(x, float32)]), float64)
    c, s = ctx.emit("Cos", [y0]), ctx.emit("Sin", [y0])
    num = ctx.emit("Sub", [ctx.emit("Mul", [x, c]), s])
    den = ctx.emit("Add", [c, ctx.emit("Mul", [x, s])])
    y = ctx.emit("Add", [y0, ctx.emit("Div", [num, den])])
    half_pi = ctx.emit("Mul", [ctx.emit("Sign", [x]), _c(ctx, math.pi / 2, dt)])
    return _where(ctx, ctx.emit("IsInf", [x]), half_pi, y)


def _sinh64(ctx, dt, x):
    # t = expm1(|x|): sinh = (t + t/(t+1)) / 2 has no cancellation (accurate near 0); beyond
    # 700, exp(|x|) would overflow before sinh does, so use (exp(|x|/2) / 2) * exp(|x|/2).
    a = ctx.emit("Abs", [x])
    t = _expm1_kernel(ctx, dt, a)
    small = ctx.emit("Add", [t, ctx.emit("Div", [t, ctx.emit("Add", [t, _c(ctx, 1, dt)])])])
    r = _where(ctx, ctx.emit("Greater", [a, _c(ctx, 700, dt)]), _half_exp_sq(ctx, dt, a),
               ctx.emit("Mul", [small, _c(ctx, 0.5, dt)]))
    return _where(ctx, ctx.emit("Less", [x, _c(ctx, 0, dt)]), ctx.emit("Neg", [r]), r)


def _half_exp_sq(ctx, dt, a):
    w = ctx.emit("Exp", [ctx.emit("Mul", [a, _c(ctx, 0.5, dt)])])
    return ctx.emit("Mul", [ctx.emit("Mul", [w, _c(ctx, 0.5, dt)]), w])


def _cosh64(ctx, dt, x):
    a = ctx.emit("Abs", [x])
    e = ctx.emit("Exp", [a])
    half = _c(ctx, 0.5, dt)
    normal = ctx.emit("Add", [ctx.emit("Mul", [e, half]), ctx.emit("Div", [half, e])])
    return _where(ctx, ctx.emit("Greater", [a, _c(ctx, 700, dt)]), _half_exp_sq(ctx, dt, a),
                  normal)


# erf in float64: piecewise Taylor series around centers k/4, k = 0..24, 16 terms each
# (|h| <= 1/8, truncation < 5e-19; measured max error 3 ulp). erf(x) = 1 in double for x > 6.

_ERF_STEP, _ERF_CENTERS, _ERF_TERMS = Fraction(1, 4), 25, 16


def _erf_table():
    """table[k, n] = erf^(n)(c_k) / n!, from exact Hermite polynomials:
    erf^(n)(c) = 2/sqrt(pi) (-1)^(n-1) H_{n-1}(c) exp(-c^2)."""
    table = np.zeros((_ERF_CENTERS, _ERF_TERMS))
    for k in range(_ERF_CENTERS):
        c = k * _ERF_STEP
        herm = [Fraction(1), 2 * c]
        for n in range(1, _ERF_TERMS):
            herm.append(2 * c * herm[n] - 2 * n * herm[n - 1])
        scale = 2 / math.sqrt(math.pi) * math.exp(-float(c * c))
        table[k, 0] = math.erf(float(c))
        for n in range(1, _ERF_TERMS):
            table[k, n] = float((-1) ** (n - 1) * herm[n - 1] / math.factorial(n)) * scale
    return table


_ERF_TABLE = None


def _erf64(ctx, dt, x):
    global _ERF_TABLE
    if _ERF_TABLE is None:
        _ERF_TABLE = _erf_table()
    step, last = float(_ERF_STEP), (_ERF_CENTERS - 1) * float(_ERF_STEP)
    a = ctx.emit("Abs", [x])
    # nan and values past the table index row 0; the final Where gives them their value.
    inside = ctx.emit("Less", [a, _c(ctx, last + step / 2, dt)])
    a_idx = _where(ctx, inside, a, _c(ctx, 0, dt))
    k = ctx.emit("Round", [ctx.emit("Div", [a_idx, _c(ctx, step, dt)])])
    h = ctx.emit("Sub", [a, ctx.emit("Mul", [k, _c(ctx, step, dt)])])
    coef = ctx.emit("Gather", [ctx.const(_ERF_TABLE), ctx.cast(k, "int64")], axis=0)
    powers = ctx.emit("Pow", [ctx.emit("Unsqueeze", [h, ctx.i64([-1])]),
                              ctx.const(np.arange(_ERF_TERMS, dtype=np.float64))])
    r = ctx.emit("ReduceSum", [ctx.emit("Mul", [coef, powers]), ctx.i64([-1])], keepdims=0)
    r = _where(ctx, ctx.emit("Greater", [a, _c(ctx, last, dt)]), _c(ctx, 1, dt), r)
    return _where(ctx, ctx.emit("Less", [x, _c(ctx, 0, dt)]), ctx.emit("Neg", [r]), r)


def _relu_kernel(ctx, dt, x):
    # onnxruntime has no int64 Relu; Max(x, 0) is the same for integers.
    if dt.is_integer:
        return ctx.emit("Max", [x, _c(ctx, 0, dt)])
    return ctx.emit("Relu", [x])


# ---------------------------------------------------------------------------------------------
# numpy references (the factory computes float16 inputs in float32, like the lowering).

_np_erf = np.frompyfunc(math.erf, 1, 1)


def _ref_erf(x):
    return np.asarray(_np_erf(x.astype(np.float64)), dtype=np.float64)


def _ref_sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _ref_softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


# ---------------------------------------------------------------------------------------------
# The ops. `dydx(x, y)` gets the input and output Tensors.

_TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)

sqrt = unary("sqrt", np.sqrt, "Sqrt", lambda x, y: 0.5 / y,  # inf at 0, as JAX
             doc="Square root (nan below 0); the derivative at 0 is inf.")
rsqrt = unary("rsqrt", lambda x: 1 / np.sqrt(x),
              lambda ctx, dt, x: ctx.emit("Reciprocal", [ctx.emit("Sqrt", [x])]),
              lambda x, y: -0.5 * y / x, doc="1 / sqrt(x).")
exp = unary("exp", np.exp, "Exp", lambda x, y: y)
expm1 = unary("expm1", np.expm1, _expm1_kernel, lambda x, y: y + 1,
              doc="exp(x) - 1, accurate near 0.")
log = unary("log", np.log, "Log", lambda x, y: ew.reciprocal(x), doc="Natural logarithm.")
log1p = unary("log1p", np.log1p, _log1p_kernel, lambda x, y: ew.reciprocal(1 + x),
              doc="log(1 + x), accurate near 0.")
sin = unary("sin", np.sin, "Sin", lambda x, y: cos(x))
cos = unary("cos", np.cos, "Cos", lambda x, y: -sin(x))
tan = unary("tan", np.tan, by_dtype(simple("Tan"), float64=_tan64), lambda x, y: 1 + y * y)
tanh = unary("tanh", np.tanh, "Tanh", lambda x, y: 1 - y * y)
arctan = unary("arctan", np.arctan, by_dtype(simple("Atan"), float64=_arctan64),
               lambda x, y: ew.reciprocal(1 + x * x))
sinh = unary("sinh", np.sinh, by_dtype(simple("Sinh"), float64=_sinh64), lambda x, y: cosh(x))
cosh = unary("cosh", np.cosh, by_dtype(simple("Cosh"), float64=_cosh64), lambda x, y: sinh(x))
sigmoid = unary(
    "sigmoid", _ref_sigmoid, _sigmoid_kernel,
    # sigmoid(x) * sigmoid(-x) rather than y * (1 - y): 1 - y rounds to 0 for large x.
    lambda x, y: y * sigmoid(-x),
    doc="1 / (1 + exp(-x)), accurate to relative precision for large negative x.",
)
relu = unary(
    "relu", lambda x: np.maximum(x, 0).astype(x.dtype), _relu_kernel,
    lambda x, y: mask(compare.greater(x, like(0, x)), y),  # derivative 0 at x == 0, as JAX
    kinds="fi", doc="max(x, 0); the derivative at 0 is 0.",
)
softplus = unary("softplus", _ref_softplus, by_dtype(simple("Softplus"), float64=_softplus64),
                 lambda x, y: sigmoid(x), doc="log(1 + exp(x)), without overflow.")
erf = unary("erf", _ref_erf, by_dtype(simple("Erf"), float64=_erf64),
            lambda x, y: _TWO_OVER_SQRT_PI * exp(-(x * x)), doc="The error function.")
