"""Op-info rows for the elementwise and comparison families (see op_db.py).

Samples stay off kinks and poles (log on 0.1..4, |x| >= 0.1 for abs/relu, no ties for
maximum/minimum, x away from clip bounds), so finite differences are meaningful."""

import math

import numpy as np

import graphad as ga
from op_db import OpInfo, Sample, uniform

FLOATS = ("float32", "float64")
FLOATS16 = ("float16", "float32", "float64")
NUMERIC = ("float32", "float64", "int32", "int64")
NUMERIC16 = ("float16",) + NUMERIC
F16_TOL = {"float16": 2e-3}  # one float16 rounding of the result (numpy and onnxruntime agree)


def arr(rng, shape, dt, low=-2.0, high=2.0):
    """Random array of dtype `dt`: uniform floats, integers in [low, high], random bools."""
    dt = np.dtype(dt)
    if dt.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dt.kind == "i":
        return rng.integers(math.floor(low), math.floor(high) + 1, size=shape).astype(dt)
    return uniform(rng, shape, dt, low, high)


def away_from_zero(a, gap=0.1):
    """Push floats at least `gap` away from 0 (off the kink of abs/relu/sign, poles of 1/x)."""
    if a.dtype.kind != "f":
        return np.where(a == 0, 1, a).astype(a.dtype)
    return (a + np.where(a >= 0, gap, -gap)).astype(a.dtype)


def unary_samples(low=-2.0, high=2.0, nonzero=False):
    def gen(rng, dt):
        xs = [arr(rng, (3, 4), dt, low, high), arr(rng, (), dt, low, high)]
        if nonzero:
            xs = [away_from_zero(x) for x in xs]
        return [Sample((xs[0],)), Sample((xs[1],), dynamic=False)]

    return gen


def binary_samples(low=-2.0, high=2.0, y_low=None, y_high=None, y_nonzero=False, no_ties=False):
    y_low = low if y_low is None else y_low
    y_high = high if y_high is None else y_high

    def gen(rng, dt):
        pairs = [((3, 4), (3, 4)), ((2, 1, 4), (3, 1)), ((4,), ())]
        out = []
        for sx, sy in pairs:
            x, y = arr(rng, sx, dt, low, high), arr(rng, sy, dt, y_low, y_high)
            if y_nonzero:
                y = away_from_zero(y, 0.5)
            if no_ties and np.dtype(dt).kind == "f":
                y = np.where(np.abs(x - y) < 0.05, y + 0.2, y).astype(y.dtype)
            out.append(Sample((x, y)))
        return out

    return gen


def _pos_base_samples(rng, dt):
    return [Sample((uniform(rng, (3, 4), dt, 0.5, 2.0), uniform(rng, (3, 4), dt, -2.0, 2.0))),
            Sample((uniform(rng, (2, 1, 3), dt, 0.5, 2.0), uniform(rng, (3,), dt, -1.5, 1.5)))]


def _int_pow_samples(rng, dt):
    x = arr(rng, (4, 5), dt, -4, 4)
    y = arr(rng, (4, 5), dt, -2, 7)
    return [Sample((x, y)), Sample((np.array([-1, -1, 1, 0, 0, 2], dt),
                                    np.array([-3, 4, -7, 0, 3, -1], dt)), dynamic=False)]


def _np_int_power(x, y):
    """Integer power as graphad defines it: exact; negative exponents truncate toward zero."""
    xb, yb = np.broadcast_arrays(x, y)
    out = [int(a) ** int(b) if b >= 0 else math.trunc(_real_pow(a, b))
           for a, b in zip(xb.ravel(), yb.ravel())]
    return np.array(out, dtype=x.dtype).reshape(xb.shape)


def _real_pow(a, b):
    return 0.0 if a == 0 else float(a) ** int(b)


def _power_ref(x, y):
    return _np_int_power(x, y) if x.dtype.kind == "i" else np.power(x, y)


def _round_samples(rng, dt):
    halves = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, -3.5], dt)
    return [Sample((arr(rng, (3, 4), dt, -5, 5),)), Sample((halves,))]


def _round2_samples(rng, dt):
    return [Sample((arr(rng, (3, 4), dt, -5, 5),), {"decimals": 2}),
            Sample((arr(rng, (5,), dt, -500, 500),), {"decimals": -1})]


def _clip_samples(rng, dt):
    def x_off(shape, lo, hi):
        x = arr(rng, shape, dt, -3, 3)
        if np.dtype(dt).kind == "f":
            for b in (lo, hi):  # stay 0.05 away from the bounds
                x = np.where(np.abs(x - b) < 0.05, x + 0.1, x).astype(x.dtype)
        return x

    lo_t, hi_t = np.array([-1.0, 0.0, -2.0], dt), np.array([1.0, 2.0, 0.0], dt)
    return [
        Sample((x_off((3, 4), -1, 1.5), -1, 1.5)),
        Sample((x_off((2, 3), -1, 1), lo_t, hi_t)),
        Sample((x_off((4,), 0, 0), None, 0)),
        Sample((x_off((4,), 0.5, 0.5), 0.5, None)),
    ]


def _where_samples(rng, dt):
    c = rng.integers(0, 2, size=(3, 4)).astype(bool)
    return [
        Sample((c, arr(rng, (3, 4), dt), arr(rng, (3, 4), dt))),
        Sample((c[:, :1], arr(rng, (2, 3, 4), dt), arr(rng, (4,), dt))),
        Sample((c[0], arr(rng, (3, 4), dt), arr(rng, (), dt))),
    ]


def _compare_samples(rng, dt):
    """Pairs with many exact ties (integers stored in any dtype), broadcast too."""
    def ints(shape):
        return arr(rng, shape, "int32", -2, 2).astype(dt)

    return [Sample((ints((3, 4)), ints((3, 4)))), Sample((ints((2, 1, 4)), ints((3, 1))))]


def _logical_samples(rng, dt):
    return [Sample((arr(rng, (3, 4), "bool"), arr(rng, (3, 4), "bool"))),
            Sample((arr(rng, (2, 1, 4), "bool"), arr(rng, (3, 1), "bool")))]


def _cast_to(dtype):
    return lambda x: ga.cast(x, dtype)


def _np_cast_to(dtype):
    return lambda x: x.astype(dtype)


def _row(name, ref, sample, **kw):
    return OpInfo(name, getattr(ga, name), ref, sample, **kw)


NOT_DIFF = {"differentiable": False, "second_order": False}

ROWS = [
    # arithmetic
    _row("add", np.add, binary_samples(), dtypes=NUMERIC16 + ("bool",), rtol=F16_TOL),
    _row("subtract", np.subtract, binary_samples(), dtypes=NUMERIC16, rtol=F16_TOL),
    _row("multiply", np.multiply, binary_samples(), dtypes=NUMERIC16 + ("bool",), rtol=F16_TOL),
    _row("divide", np.true_divide, binary_samples(y_nonzero=True), dtypes=NUMERIC16,
         rtol=F16_TOL),
    _row("power", _power_ref, _pos_base_samples, dtypes=FLOATS16, rtol={"float16": 5e-3}),
    OpInfo("power.int_exponent", lambda x: ga.power(x, 3), lambda x: np.power(x, 3),
           unary_samples(),
           dtypes=FLOATS16, rtol=F16_TOL),
    OpInfo("power.integers", ga.power, _power_ref, _int_pow_samples, dtypes=("int32", "int64"),
           **NOT_DIFF),
    _row("negative", np.negative, unary_samples(), dtypes=NUMERIC16),
    _row("reciprocal", np.reciprocal, unary_samples(nonzero=True), dtypes=FLOATS16,
         rtol=F16_TOL),
    _row("square", np.square, unary_samples(), dtypes=NUMERIC16, rtol=F16_TOL),
    _row("sqrt", np.sqrt, unary_samples(0.1, 4.0), dtypes=FLOATS16, rtol=F16_TOL),
    _row("rsqrt", lambda x: 1 / np.sqrt(x), unary_samples(0.1, 4.0), dtypes=FLOATS16,
         rtol=F16_TOL),
    # math
    _row("exp", np.exp, unary_samples(), dtypes=FLOATS16, rtol=F16_TOL),
    _row("expm1", np.expm1, unary_samples(), dtypes=FLOATS16, rtol=F16_TOL),
    _row("log", np.log, unary_samples(0.1, 4.0), dtypes=FLOATS16, rtol=F16_TOL),
    _row("log1p", np.log1p, unary_samples(-0.9, 4.0), dtypes=FLOATS16, rtol=F16_TOL),
    _row("sin", np.sin, unary_samples(), dtypes=FLOATS16, rtol=F16_TOL),
    _row("cos", np.cos, unary_samples(), dtypes=FLOATS16, rtol=F16_TOL),
    _row("tan", np.tan, unary_samples(-1.2, 1.2), dtypes=FLOATS16, rtol=F16_TOL),
    _row("tanh", np.tanh, unary_samples(), dtypes=FLOATS16, rtol=F16_TOL),
    _row("arctan", np.arctan, unary_samples(-4.0, 4.0), dtypes=FLOATS16, rtol=F16_TOL),
    _row("sinh", np.sinh, unary_samples(-3.0, 3.0), dtypes=FLOATS16, rtol=F16_TOL),
    _row("cosh", np.cosh, unary_samples(-3.0, 3.0), dtypes=FLOATS16, rtol=F16_TOL),
    _row("sigmoid", lambda x: 1 / (1 + np.exp(-x)), unary_samples(-4.0, 4.0), dtypes=FLOATS16,
         rtol=F16_TOL),
    _row("relu", lambda x: np.maximum(x, 0), unary_samples(nonzero=True), dtypes=NUMERIC16,
         second_order=True),
    _row("softplus", lambda x: np.logaddexp(0, x), unary_samples(-4.0, 4.0), dtypes=FLOATS16,
         rtol=F16_TOL),
    _row("erf", np.vectorize(math.erf), unary_samples(-3.0, 3.0), dtypes=FLOATS16,
         rtol=F16_TOL),
    # kinks and rounding
    _row("abs", np.abs, unary_samples(nonzero=True), dtypes=NUMERIC16, second_order=True),
    _row("sign", np.sign, unary_samples(nonzero=True), dtypes=NUMERIC16, **NOT_DIFF),
    _row("floor", np.floor, unary_samples(-5.0, 5.0), dtypes=FLOATS16, **NOT_DIFF),
    _row("ceil", np.ceil, unary_samples(-5.0, 5.0), dtypes=FLOATS16, **NOT_DIFF),
    _row("round", np.round, _round_samples, dtypes=FLOATS16, **NOT_DIFF),
    OpInfo("round.decimals", ga.round, np.round, _round2_samples, dtypes=FLOATS, **NOT_DIFF),
    _row("maximum", np.maximum, binary_samples(no_ties=True), dtypes=NUMERIC16 + ("bool",),
         second_order=True),
    _row("minimum", np.minimum, binary_samples(no_ties=True), dtypes=NUMERIC16 + ("bool",),
         second_order=True),
    _row("clip", np.clip, _clip_samples, dtypes=NUMERIC16, second_order=True),
    # Conversions and stop_gradient have derivatives (identity-like, or zero) that finite
    # differences in float64 cannot check (rounding to a narrower type; zero by definition):
    # their rows list no float64 input, which keeps them out of test_op_grads.py; the rules are
    # checked in test_elementwise.py.
    OpInfo("cast", _cast_to("float64"), _np_cast_to("float64"), unary_samples(),
           dtypes=("float16", "float32", "int32", "int64", "bool")),
    OpInfo("cast.float16", _cast_to("float16"), _np_cast_to("float16"), unary_samples(),
           dtypes=("float32", "int32"), rtol={"float16": 1e-3}),
    OpInfo("cast.int32", _cast_to("int32"), _np_cast_to("int32"), unary_samples(-100.0, 100.0),
           dtypes=("float16", "float32", "int64", "bool")),
    _row("stop_gradient", lambda x: x, unary_samples(), dtypes=("float16", "float32", "int32",
                                                                 "int64", "bool")),
    # comparisons and logic
    _row("where", np.where, _where_samples, dtypes=NUMERIC16 + ("bool",), grad_args=(1, 2)),
    _row("equal", np.equal, _compare_samples, dtypes=NUMERIC16 + ("bool",), **NOT_DIFF),
    _row("not_equal", np.not_equal, _compare_samples, dtypes=NUMERIC16 + ("bool",), **NOT_DIFF),
    _row("less", np.less, _compare_samples, dtypes=NUMERIC16 + ("bool",), **NOT_DIFF),
    _row("less_equal", np.less_equal, _compare_samples, dtypes=NUMERIC16 + ("bool",), **NOT_DIFF),
    _row("greater", np.greater, _compare_samples, dtypes=NUMERIC16 + ("bool",), **NOT_DIFF),
    _row("greater_equal", np.greater_equal, _compare_samples, dtypes=NUMERIC16 + ("bool",),
         **NOT_DIFF),
    _row("logical_and", np.logical_and, _logical_samples, dtypes=("bool",), **NOT_DIFF),
    _row("logical_or", np.logical_or, _logical_samples, dtypes=("bool",), **NOT_DIFF),
    _row("logical_not", np.logical_not, unary_samples(), dtypes=("bool",), **NOT_DIFF),
]
