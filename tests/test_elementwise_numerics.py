"""Elementwise numerics: accuracy of the lowerings (the float64 compositions, expm1/log1p,
stable sigmoid/softplus), special values, and the derivative rules at kinks and edge cases
(checked on the rules themselves, so no gradient engine is needed)."""

import math

import numpy as np
import pytest

import graphad as ga
from graphad.interpret import evaluate
from graphad.registry import NOT_DIFFERENTIABLE


def both(fn, *arrays):
    """fn applied to placeholders fed `arrays`: (interpreter values, onnxruntime values)."""
    with ga.Graph() as g:
        ps = [ga.placeholder(a.shape, dtype=a.dtype) for a in arrays]
        out = fn(*ps)
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
    feeds = dict(zip(ps, arrays))
    return evaluate(outs, feeds), ga.Session(g).run(outs, feeds)


def ulps(got, want, dtype):
    """Error in units of the last place of `dtype` (relative, floored at the smallest normal)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    info = np.finfo(dtype)
    err = np.abs(got - want) / np.maximum(np.abs(want), float(info.tiny))
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    return np.where(same, 0.0, err / float(info.eps))


def _grid():
    mags = np.concatenate([np.logspace(-300, -1, 60), np.linspace(0.01, 8, 400),
                           np.logspace(1, 2.85, 80)])
    return np.concatenate([-mags[::-1], [0.0], mags])


_vec = np.vectorize


def _exact(f):
    """A float64 reference from the math module (or numpy where math overflows)."""
    return _vec(lambda v: f(v) if abs(v) < 700 else np.nan, otypes=[np.float64])


TRUTH = {
    "arctan": (ga.arctan, _vec(math.atan), 3),
    "erf": (ga.erf, _vec(math.erf), 4),
    "sinh": (ga.sinh, _exact(math.sinh), 4),
    "cosh": (ga.cosh, _exact(math.cosh), 4),
    "tan": (ga.tan, _vec(math.tan), 4),
    "expm1": (ga.expm1, _exact(math.expm1), 4),
    "log1p": (ga.log1p, _vec(lambda v: math.log1p(v) if v > -1 else np.nan), 4),
    "softplus": (ga.softplus, _exact(lambda v: max(v, 0) + math.log1p(math.exp(-abs(v)))), 4),
    "sigmoid": (ga.sigmoid, _exact(lambda v: 0.5 * (1 + math.tanh(v / 2))
                                   if v > -1 else math.exp(v) / (1 + math.exp(v))), 4),
}


@pytest.mark.parametrize("name", sorted(TRUTH))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_accuracy_over_wide_ranges(name, dtype):
    """The compositions (float64 Tan/Atan/Sinh/Cosh/Softplus/Erf, expm1, log1p, sigmoid) keep
    full precision: a few ulps from the math module's double results, on both backends."""
    fn, truth, max_ulps = TRUTH[name]
    x64 = _grid()
    x = x64.astype(dtype)
    want = truth(x.astype(np.float64))
    ok = np.isfinite(want) & (np.abs(want) < float(np.finfo(dtype).max))
    if name == "tan":  # onnxruntime's float64 Sin/Cos are accurate to ~1e-16 absolute, not
        ok &= np.abs(x) < 1.5  # relative: near k*pi (k != 0) tan loses relative precision
    got_i, got_s = both(fn, x)
    for label, got in (("interpreter", got_i[0]), ("onnxruntime", got_s[0])):
        err = ulps(got[ok], want[ok], dtype)
        k = int(np.argmax(err))
        assert err[k] <= max_ulps, (name, dtype, label, x[ok][k], got[ok][k], want[ok][k], err[k])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_expm1_log1p_tiny_arguments(dtype):
    x = np.array([1e-30, -1e-30, 1e-12, -1e-12, 1e-7, 3e-5, -3e-5], dtype)
    got_i, got_s = both(lambda t: [ga.expm1(t), ga.log1p(t)], x)
    for got in (got_i, got_s):
        assert np.all(ulps(got[0], _vec(math.expm1)(x.astype(np.float64)), dtype) <= 2)
        assert np.all(ulps(got[1], _vec(math.log1p)(x.astype(np.float64)), dtype) <= 2)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_sigmoid_softplus_stable_at_large_magnitudes(dtype):
    x = np.array([-1000, -100, -80, -30, 30, 80, 100, 1000], dtype)
    x64 = x.astype(np.float64)
    e = np.exp(-np.abs(x64))
    sig_want = np.where(x64 >= 0, 1 / (1 + e), e / (1 + e))
    sp_want = np.logaddexp(0, x64)
    got_i, got_s = both(lambda t: [ga.sigmoid(t), ga.softplus(t)], x)
    for sig, sp in (got_i, got_s):
        assert np.all(np.isfinite(sig)) and np.all(np.isfinite(sp))
        tiny = float(np.finfo(dtype).tiny)  # subnormal results lose relative precision
        np.testing.assert_allclose(sig, sig_want, rtol=4 * float(np.finfo(dtype).eps), atol=tiny)
        np.testing.assert_allclose(sp, sp_want, rtol=4 * float(np.finfo(dtype).eps), atol=tiny)
    if dtype != "float16":
        assert got_s[0][2] > 0 and got_s[0][3] > 0  # sigmoid(-80), sigmoid(-30): not 0


SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30, 1e30, -1e30, 0.5, -1.0,
                    -2.0, 700.0, 710.0, -745.0])
UNARY = [ga.negative, ga.reciprocal, ga.square, ga.sqrt, ga.rsqrt, ga.exp, ga.expm1, ga.log,
         ga.log1p, ga.sin, ga.cos, ga.tan, ga.tanh, ga.arctan, ga.sinh, ga.cosh, ga.sigmoid,
         ga.relu, ga.softplus, ga.erf, ga.abs, ga.sign, ga.floor, ga.ceil, ga.round]


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("fn", UNARY, ids=[f.__name__ for f in UNARY])
def test_special_values_agree(fn, dtype):
    """nan, +-inf, +-0, tiny and huge inputs: onnxruntime gives what numpy gives."""
    with np.errstate(all="ignore"):
        x = SPECIAL.astype(dtype)  # 1e30 overflows float16 to inf
        got_i, got_s = both(fn, x)
    a, b = got_i[0].astype(np.float64), got_s[0].astype(np.float64)
    if fn in (ga.sin, ga.cos, ga.tan):  # argument reduction of 1e30 differs between libms
        a, b = a[np.abs(x) < 1e4], b[np.abs(x) < 1e4]
    np.testing.assert_allclose(b, a, rtol=4 * float(np.finfo(dtype).eps), equal_nan=True)


# ---------------------------------------------------------------------------------------------
# Derivative rules, read straight from the OpDefs


def partials(fn, *arrays):
    """d out / d input_i for each input (JVP with a unit tangent on that input alone), on both
    backends; elementwise, so the result is the local derivative at every point."""
    with ga.Graph() as g:
        ps = [ga.placeholder(a.shape, dtype=a.dtype) for a in arrays]
        out = fn(*ps)
        node = out.node
        derivs = []
        for i in range(len(node.inputs)):
            ts = [None] * len(node.inputs)
            if node.inputs[i] in ps:
                ts[i] = ga.constant(np.ones(node.inputs[i].shape), dtype=node.inputs[i].dtype)
            (d,) = node.opdef.jvp(node, *ts)
            derivs.append(d if d is not None else ga.constant(0.0, dtype=out.dtype))
    feeds = dict(zip(ps, arrays))
    return evaluate(derivs, feeds), ga.Session(g).run(derivs, feeds)


def test_kink_subgradients():
    x = np.array([-1.0, 0.0, 2.0])
    for vals in partials(ga.relu, x):
        np.testing.assert_array_equal(vals[0], [0, 0, 1])  # relu'(0) = 0
    for vals in partials(ga.abs, x):
        np.testing.assert_array_equal(vals[0], [-1, 0, 1])  # abs'(0) = sign(0) = 0
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])
    for vals in partials(ga.maximum, a, b):  # ties split 0.5 / 0.5
        np.testing.assert_array_equal(vals[0], [0.5, 0, 1])
        np.testing.assert_array_equal(vals[1], [0.5, 1, 0])
    for vals in partials(ga.minimum, a, b):
        np.testing.assert_array_equal(vals[0], [0.5, 1, 0])
        np.testing.assert_array_equal(vals[1], [0.5, 0, 1])


def test_clip_derivatives():
    x = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    lo, hi = np.array([-1.0] * 5), np.array([1.0] * 5)
    for dx, dlo, dhi in partials(ga.clip, x, lo, hi):  # at a bound, the gradient goes to x
        np.testing.assert_array_equal(dx, [0, 1, 1, 1, 0])
        np.testing.assert_array_equal(dlo, [1, 0, 0, 0, 0])
        np.testing.assert_array_equal(dhi, [0, 0, 0, 0, 1])
    for dx, dhi in partials(lambda t, h: ga.clip(t, None, h), x, hi):
        np.testing.assert_array_equal(dx, [1, 1, 1, 1, 0])
        np.testing.assert_array_equal(dhi, [0, 0, 0, 0, 1])
    for dx, dlo, dhi in partials(ga.clip, x, hi, lo):  # a_min > a_max: the result is a_max
        np.testing.assert_array_equal(dx, [0] * 5)
        np.testing.assert_array_equal(dlo, [0] * 5)
        np.testing.assert_array_equal(dhi, [1] * 5)


def test_power_derivatives_at_zero_base():
    x = np.array([0.0, 0.0, 0.0, 2.0, -2.0])
    y = np.array([0.0, 2.0, 0.5, 3.0, 3.0])
    for dx, dy in partials(ga.power, x, y):
        np.testing.assert_array_equal(dx[:2], [0, 0])  # no nan at 0**0
        assert dx[2] == np.inf  # 0.5 * 0**-0.5, as JAX
        np.testing.assert_allclose(dx[3:], [12, 12])
        np.testing.assert_array_equal(dy[:3], [0, 0, 0])  # log(0) guarded: slope 0
        np.testing.assert_allclose(dy[3], 8 * math.log(2))
        assert np.isnan(dy[4])  # d/dy of (-2)**y: log of a negative base, as JAX


def test_sqrt_derivative_at_zero_is_inf():
    for (d,) in partials(ga.sqrt, np.array([0.0, 4.0])):
        np.testing.assert_array_equal(d, [np.inf, 0.25])


def test_sigmoid_derivative_keeps_relative_precision():
    x = np.array([-100.0, -20.0, 20.0, 40.0], np.float32)
    want = np.exp(-np.abs(x.astype(np.float64))) / (1 + np.exp(-np.abs(x.astype(np.float64)))) ** 2
    for (d,) in partials(ga.sigmoid, x):
        np.testing.assert_allclose(d, want, rtol=1e-5, atol=1e-44)
        assert np.all(d[1:] > 0)  # not the 0 that y * (1 - y) gives for large x


@pytest.mark.parametrize("name", ["exp", "expm1", "log", "log1p", "sin", "cos", "tan", "tanh",
                                  "arctan", "sinh", "cosh", "sigmoid", "softplus", "erf", "sqrt",
                                  "rsqrt", "reciprocal", "square", "negative"])
def test_smooth_unary_derivatives_match_finite_differences(name):
    fn = getattr(ga, name)
    x = np.linspace(0.15, 1.35, 9)
    if name not in ("log", "sqrt", "rsqrt"):
        x = x * np.tile([1, -0.6], 5)[:9]  # log1p needs x > -1
    h = 1e-6
    fd = (both(fn, x + h)[0][0] - both(fn, x - h)[0][0]) / (2 * h)
    for (d,) in partials(fn, x):
        np.testing.assert_allclose(d, fd, rtol=1e-7, atol=1e-8, err_msg=name)


def test_binary_derivatives_match_finite_differences():
    x = np.array([0.7, 1.3, 2.1, 0.4])
    y = np.array([1.7, -0.6, 0.9, -1.3])
    h = 1e-6
    for fn in (ga.add, ga.subtract, ga.multiply, ga.divide, ga.power):
        fdx = (both(fn, x + h, y)[0][0] - both(fn, x - h, y)[0][0]) / (2 * h)
        fdy = (both(fn, x, y + h)[0][0] - both(fn, x, y - h)[0][0]) / (2 * h)
        for dx, dy in partials(fn, x, y):
            np.testing.assert_allclose(dx, fdx, rtol=1e-7, atol=1e-8, err_msg=fn.__name__)
            np.testing.assert_allclose(dy, fdy, rtol=1e-7, atol=1e-8, err_msg=fn.__name__)


def test_where_rules():
    with ga.Graph():
        c = ga.placeholder((3,), "bool")
        x, y = ga.placeholder((3,)), ga.placeholder(())
        out = ga.where(c, x, y)
        g = ga.constant(np.array([1.0, 2.0, 3.0], np.float32))
        vjp = out.node.opdef.vjp(out.node, g)
        (jvp,) = out.node.opdef.jvp(out.node, None, None, ga.constant(np.float32(5)))
        feeds = {c: np.array([True, False, True])}
        vals = evaluate([vjp[1], vjp[2], jvp], feeds)
    assert vjp[0] is None
    np.testing.assert_array_equal(vals[0], [1, 0, 3])
    np.testing.assert_array_equal(vals[1], [0, 2, 0])  # broadcast-shaped; the engine sums it
    np.testing.assert_array_equal(vals[2], [0, 5, 0])


def test_stop_gradient_and_cast_rules():
    with ga.Graph():
        x = ga.placeholder((2,), "float16")
        s = ga.stop_gradient(x)
        g = ga.constant(np.ones(2, np.float32))
        assert s.node.opdef.vjp(s.node, g) == (None,)  # zero, not an error
        assert s.node.opdef.jvp(s.node, g) == (None,)
        c = ga.cast(x, "float32")
        (back,) = c.node.opdef.vjp(c.node, g)
        assert back.dtype == "float16"  # cotangents come back in the input's dtype
        i = ga.placeholder((2,), "int32")
        f = ga.cast(i, "float32")
        assert f.node.opdef.vjp(f.node, g) == (None,)  # integer inputs get no gradient


@pytest.mark.parametrize("name", ["sign", "floor", "ceil", "round", "equal", "not_equal", "less",
                                  "less_equal", "greater", "greater_equal", "logical_and",
                                  "logical_or", "logical_not"])
def test_not_differentiable_ops(name):
    op = getattr(ga, name).opdef
    assert op.vjp is NOT_DIFFERENTIABLE and op.jvp is NOT_DIFFERENTIABLE


def test_second_derivatives_of_power_at_zero_base():
    """With the gradient engine (skipped without it): the second derivatives of power at 0**0
    are finite (the where-guarded rules leak no inf/nan into higher orders)."""
    autodiff = pytest.importorskip("graphad.passes.autodiff")
    with ga.Graph():
        x = ga.placeholder((3,), "float64")
        y = ga.placeholder((3,), "float64")
        (gx,) = autodiff.gradients([ga.power(x, y)], [x])
        (gxx,) = autodiff.gradients([gx], [x])
        (gxy,) = autodiff.gradients([gx], [y])
        feeds = {x: np.array([0.0, 0.0, 2.0]), y: np.array([0.0, 2.0, 3.0])}
        vals = evaluate([gx, gxx, gxy], feeds)
    assert np.all(np.isfinite(np.concatenate(vals))), vals
    np.testing.assert_allclose(vals[1], [0, 2, 12])
    np.testing.assert_allclose(vals[2], [0, 0, 4 + 12 * math.log(2)])
