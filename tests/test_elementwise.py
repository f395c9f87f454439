"""Elementwise and comparison ops: dtype promotion, broadcasting errors, clip / where / round /
integer semantics, Tensor operators, and the exported models' validity."""

import os

import numpy as np
import onnx
import pytest

import graphad as ga
from graphad.export.onnx import lower
from graphad.interpret import evaluate

HERE = os.path.basename(__file__)


def run_both(outs, feeds=None):
    """Values of `outs` on the reference interpreter and on onnxruntime (they must agree)."""
    outs = list(outs)
    g = outs[0].graph
    feeds = feeds or {}
    got_i = evaluate(outs, feeds)
    got_s = ga.Session(g).run(outs, feeds)
    for t, a, b in zip(outs, got_i, got_s):
        assert a.dtype == t.dtype.np and b.dtype == t.dtype.np, (t, a.dtype, b.dtype)
        assert a.shape == b.shape, (t, a.shape, b.shape)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b)) if a.dtype.kind == "f" else None
        np.testing.assert_allclose(b, a, rtol=1e-6 if a.dtype.kind == "f" else 0)
    return got_s


# ---------------------------------------------------------------------------------------------
# dtype promotion


def _ph(dtype, shape=(2,)):
    return ga.placeholder(shape, dtype=dtype)


@pytest.mark.parametrize("a,b,want", [
    ("int32", "float32", "float32"),
    ("float32", "int32", "float32"),
    ("int32", "int64", "int64"),
    ("bool", "int32", "int32"),
    ("bool", "bool", "bool"),
    ("float16", "float32", "float32"),
    ("int64", "float16", "float16"),
    ("float32", "float64", "float64"),
])
def test_promotion_of_two_tensors(a, b, want):
    with ga.Graph():
        assert ga.add(_ph(a), _ph(b)).dtype == want
        assert ga.multiply(_ph(a), _ph(b)).dtype == want
        assert ga.maximum(_ph(a), _ph(b)).dtype == want


@pytest.mark.parametrize("x64", [False, True])
def test_weak_python_scalars(x64):
    default_float = "float64" if x64 else "float32"
    default_int = "int64" if x64 else "int32"
    with ga.config.x64(x64), ga.Graph():
        assert (_ph("float16") * 2.0).dtype == "float16"
        assert (2.0 * _ph("float16")).dtype == "float16"
        assert (_ph("float16") + 3).dtype == "float16"
        assert (_ph("float32") * 2.0).dtype == "float32"  # even with x64
        assert (_ph("int32") * 2).dtype == "int32"
        assert (_ph("int64") * 2).dtype == "int64"
        assert (_ph("int32") * 2.5).dtype == default_float
        assert (_ph("bool") + 1).dtype == default_int
        assert (_ph("bool") + True).dtype == "bool"
        assert ga.add(1.0, 2.0).dtype == default_float
        assert ga.add(1, 2).dtype == default_int
        assert ga.exp(_ph("int32")).dtype == default_float
        assert ga.sqrt(_ph("bool")).dtype == default_float
        assert ga.divide(_ph("int32"), _ph("int32")).dtype == default_float
        assert ga.divide(_ph("int64"), 2).dtype == default_float
        assert (_ph("float16") / 2).dtype == "float16"
        assert ga.reciprocal(_ph("int32")).dtype == default_float
        assert ga.where(_ph("bool"), _ph("float16"), 0.5).dtype == "float16"
        assert ga.clip(_ph("int32"), 0, 3).dtype == "int32"
        assert ga.clip(_ph("int32"), 0.5, 3).dtype == default_float
        assert ga.clip(_ph("float16"), 0.5, 3).dtype == "float16"
        assert ga.less(_ph("int32"), 2.5).dtype == "bool"


def test_float16_stays_float16_in_values():
    with ga.Graph():
        x = ga.placeholder((3,), dtype="float16")
        outs = [x * 2.0, x + 1, -x, ga.exp(x), ga.sqrt(x), ga.maximum(x, 1.5), ga.sigmoid(x)]
        vals = run_both(outs, {x: np.array([0.5, 1.0, 2.0], np.float16)})
    for v in vals:
        assert v.dtype == np.float16
    np.testing.assert_array_equal(vals[0], np.array([1.0, 2.0, 4.0], np.float16))


def test_x64_changes_scalar_operands_not_placeholders():
    with ga.config.x64(), ga.Graph():
        x = ga.placeholder((2,), dtype="float32")
        assert (x * 1.5).dtype == "float32"
        assert ga.constant(1.5).dtype == "float64"
        assert (ga.constant(np.float64(1.5)) * 2).dtype == "float64"
    with ga.Graph():
        assert ga.constant(np.array([1.5])).dtype == "float32"


def test_int_divide_is_true_division():
    with ga.Graph():
        x = ga.constant(np.array([7, -7, 1], np.int32))
        y = ga.constant(np.array([2, 2, 3], np.int32))
        (v,) = run_both([x / y])
    np.testing.assert_allclose(v, np.array([3.5, -3.5, 1 / 3], np.float32))


# ---------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("op", [ga.add, ga.multiply, ga.power, ga.maximum, ga.less, ga.equal,
                                ga.logical_and])
def test_broadcast_error_names_shapes_and_user_line(op):
    with ga.Graph():
        a = ga.placeholder((2, 3), dtype="bool" if op is ga.logical_and else "float32")
        b = ga.placeholder((4,), dtype=a.dtype)
        with pytest.raises(ga.ShapeError) as err:
            op(a, b)
    msg = str(err.value)
    assert "(2, 3)" in msg and "(4,)" in msg, msg
    assert HERE in msg, msg
    assert op.__name__ in msg, msg


def test_broadcast_error_of_where_and_clip():
    with ga.Graph():
        c = ga.placeholder((5,), dtype="bool")
        x = ga.placeholder((2, 3))
        with pytest.raises(ga.ShapeError, match=r"\(5,\)") as err:
            ga.where(c, x, 0.0)
        assert HERE in str(err.value)
        with pytest.raises(ga.ShapeError, match=r"\(2, 3\)"):
            ga.clip(x, ga.placeholder((4,)), None)


def test_symbolic_dims_broadcast():
    with ga.Graph():
        a = ga.placeholder(("batch", 3))
        b = ga.placeholder((None, 1))
        assert (a + ga.placeholder((3,))).shape == ("batch", 3)
        assert (b * ga.placeholder((1, 4))).shape == (None, 4)
        assert ga.where(ga.placeholder(("batch", 1), "bool"), a, 0.0).shape == ("batch", 3)


@pytest.mark.parametrize("fn", [
    lambda b: b - b, lambda b: -b, lambda b: ga.abs(b), lambda b: ga.sign(b),
    lambda b: ga.power(b, b), lambda b: ga.square(b), lambda b: ga.clip(b, True, None),
])
def test_bool_arithmetic_is_a_dtype_error(fn):
    with ga.Graph(), pytest.raises(ga.DTypeError, match="bool"):
        fn(ga.placeholder((2,), "bool"))


def test_mixed_dtypes_in_a_hand_built_node_are_rejected():
    from graphad.registry import apply, lookup

    with ga.Graph(), pytest.raises(ga.DTypeError, match="float32, int32"):
        apply(lookup("add"), (ga.placeholder((2,)), ga.placeholder((2,), "int32")))


# ---------------------------------------------------------------------------------------------
# clip, where, rounding, integer ops


def test_clip_bounds():
    x_val = np.array([[-3.0, -0.5, 0.0, 0.5, 3.0]], np.float32)
    with ga.Graph():
        x = ga.placeholder((None, 5))
        lo = ga.placeholder((5,))
        lo_val = np.array([-1, 0, 0, 1, 5], np.float32)
        outs = [ga.clip(x, None, 1.0), ga.clip(x, -1.0, None), ga.clip(x, -1, 1),
                ga.clip(x, lo, 2.0), ga.clip(x, 1.0, -1.0)]
        assert ga.clip(x) is x and ga.clip(x, None, None) is x
        vals = run_both(outs, {x: x_val, lo: lo_val})
    np.testing.assert_array_equal(vals[0], np.clip(x_val, None, 1.0))
    np.testing.assert_array_equal(vals[1], np.clip(x_val, -1.0, None))
    np.testing.assert_array_equal(vals[2], np.clip(x_val, -1, 1))
    np.testing.assert_array_equal(vals[3], np.clip(x_val, lo_val, 2.0))
    np.testing.assert_array_equal(vals[4], np.full_like(x_val, -1.0))  # a_min > a_max: a_max


def test_clip_integers_and_nan():
    with ga.Graph():
        i = ga.constant(np.array([-9, 0, 9], np.int64))
        f = ga.constant(np.array([np.nan, 5.0], np.float32))
        vi, vf = run_both([ga.clip(i, -2, 3), ga.clip(f, 0.0, 1.0)])
    np.testing.assert_array_equal(vi, [-2, 0, 3])
    assert vi.dtype == np.int64
    assert np.isnan(vf[0]) and vf[1] == 1.0


def test_where_broadcasting_and_types():
    cond = np.array([[True], [False], [True]])
    xv = np.arange(4, dtype=np.float32)
    with ga.Graph():
        c = ga.placeholder((3, 1), "bool")
        x = ga.placeholder((4,))
        outs = [ga.where(c, x, -1.0), ga.where(c, 2, x), ga.where(x, 1, 0),
                ga.where(c, True, ga.constant(np.array([False, True, True, False]))),
                ga.where(c, ga.cast(x, "int64"), 7)]
        assert outs[0].shape == (3, 4) and outs[2].shape == (4,)
        vals = run_both(outs, {c: cond, x: xv})
    np.testing.assert_array_equal(vals[0], np.where(cond, xv, -1.0))
    np.testing.assert_array_equal(vals[1], np.where(cond, 2, xv))
    np.testing.assert_array_equal(vals[2], np.where(xv != 0, 1, 0))
    np.testing.assert_array_equal(vals[3], np.where(cond, True, [False, True, True, False]))
    assert vals[4].dtype == np.int64


def test_round_half_to_even_and_decimals():
    halves = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5], np.float32)
    with ga.Graph():
        outs = []
        for dt in ("float16", "float32", "float64"):
            outs.append(ga.round(ga.constant(halves, dtype=dt)))
        outs.append(ga.round(ga.constant(np.array([1.2345, -2.675, 1234.5])), decimals=2))
        outs.append(ga.round(ga.constant(np.array([1234.5, -1250.0])), decimals=-2))
        vals = run_both(outs)
    for v in vals[:3]:
        np.testing.assert_array_equal(v, [-2, -2, -0, 0, 2, 2, 4])
    np.testing.assert_array_equal(vals[3], np.round(np.array([1.2345, -2.675, 1234.5],
                                                             np.float32), 2))
    np.testing.assert_array_equal(vals[4], [1200, -1200])


def test_rounding_integers_is_identity():
    with ga.Graph():
        i = ga.placeholder((2,), "int32")
        assert ga.floor(i) is i and ga.ceil(i) is i and ga.round(i) is i


def test_integer_ops_are_exact():
    with ga.Graph():
        b = ga.constant(np.array([3, -3, 2, 7, -1, -1, 1, 0, 0, 2, 5], np.int64))
        e = ga.constant(np.array([39, 37, 62, 22, 7, 10, -3, 0, 4, -1, 0], np.int64))
        b32, e32 = ga.cast(b, "int32"), ga.cast(ga.minimum(e, 10), "int32")
        outs = [b ** e, b32 ** e32, -b, ga.abs(b), ga.sign(b), ga.square(b32), ga.relu(b),
                ga.maximum(b, e), b - e * 2]
        vals = run_both(outs)
    bl = [3, -3, 2, 7, -1, -1, 1, 0, 0, 2, 5]
    el = [39, 37, 62, 22, 7, 10, -3, 0, 4, -1, 0]
    want = [int(x) ** y if y >= 0 else (x if abs(x) == 1 else 0) for x, y in zip(bl, el)]
    assert vals[0].tolist() == want  # 3**39 > 2**53: exact, unlike a double pow
    want32 = [x ** min(y, 10) if y >= 0 else (x if abs(x) == 1 else 0) for x, y in zip(bl, el)]
    assert vals[1].tolist() == want32 and vals[1].dtype == np.int32
    assert vals[6].tolist() == [max(x, 0) for x in bl]
    assert vals[7].dtype == np.int64


def test_bool_arithmetic_is_logical():
    a_val, b_val = np.array([True, True, False, False]), np.array([True, False, True, False])
    with ga.Graph():
        a, b = ga.constant(a_val), ga.constant(b_val)
        outs = [a + b, a * b, ga.maximum(a, b), ga.minimum(a, b), a < b, a >= b,
                ga.equal(a, b), ga.not_equal(a, b), a & b, a | b, ~a]
        vals = run_both(outs)
    want = [a_val | b_val, a_val & b_val, a_val | b_val, a_val & b_val, a_val < b_val,
            a_val >= b_val, a_val == b_val, a_val != b_val, a_val & b_val, a_val | b_val, ~a_val]
    for v, w in zip(vals, want):
        np.testing.assert_array_equal(v, w)


def test_logical_ops_on_numbers_mean_nonzero():
    with ga.Graph():
        x = ga.constant(np.array([0.0, 2.0, -1.0, 0.0]))
        y = ga.constant(np.array([0, 0, 3, 4], np.int32))
        vals = run_both([ga.logical_and(x, y), ga.logical_or(x, y), ga.logical_not(y)])
    np.testing.assert_array_equal(vals[0], [False, False, True, False])
    np.testing.assert_array_equal(vals[1], [False, True, True, True])
    np.testing.assert_array_equal(vals[2], [True, True, False, False])


def test_comparisons_with_nan_and_float16():
    xv = np.array([np.nan, 1.0, 2.0, -np.inf], np.float16)
    with ga.Graph():
        x = ga.placeholder((4,), "float16")
        outs = [x < 1.5, x <= 1.0, x > 1.0, x >= 2.0, ga.equal(x, x), ga.not_equal(x, x)]
        vals = run_both(outs, {x: xv})
    with np.errstate(invalid="ignore"):
        want = [xv < 1.5, xv <= 1.0, xv > 1.0, xv >= 2.0, ~np.isnan(xv), np.isnan(xv)]
    for v, w in zip(vals, want):
        np.testing.assert_array_equal(v, w)


def test_tensor_operators_build_the_ops():
    with ga.Graph():
        x = ga.placeholder((2,))
        cases = {"add": 1 + x, "subtract": 1 - x, "multiply": x * 2, "divide": 2 / x,
                 "power": 2 ** x, "negative": -x, "abs": abs(x), "less": x < 1,
                 "greater_equal": x >= 1}
        for op, t in cases.items():
            assert t.op.op == op, (op, t.op.op)


# ---------------------------------------------------------------------------------------------
# export and registry


def _all_ops(x):
    y = x * 0.5 + 0.25
    return [x + y, x - y, x * y, x / y, x ** y, -x, ga.reciprocal(y), ga.square(x), ga.sqrt(y),
            ga.rsqrt(y), ga.exp(x), ga.expm1(x), ga.log(y), ga.log1p(x), ga.sin(x), ga.cos(x),
            ga.tan(x), ga.tanh(x), ga.arctan(x), ga.sinh(x), ga.cosh(x), ga.sigmoid(x),
            ga.relu(x), ga.softplus(x), ga.erf(x), ga.abs(x), ga.sign(x), ga.floor(x), ga.ceil(x),
            ga.round(x), ga.maximum(x, y), ga.minimum(x, y), ga.clip(x, -0.5, y),
            ga.cast(x, "int32"), ga.stop_gradient(x), ga.where(x > y, x, y), ga.equal(x, y),
            ga.not_equal(x, y), ga.less(x, y), ga.less_equal(x, y), ga.greater(x, y),
            ga.greater_equal(x, y), ga.logical_and(x > 0, y > 0), ga.logical_or(x > 0, y > 0),
            ga.logical_not(x > 0), ga.round(x, decimals=1)]


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_every_op_exports_a_valid_model(dtype):
    with ga.Graph():
        x = ga.placeholder(("n", 3), dtype=dtype)
        outs = _all_ops(x)
        low = lower(outs, inputs=[x])
        onnx.checker.check_model(low.model, full_check=True)
        xv = np.linspace(-0.9, 0.9, 6).reshape(2, 3).astype(dtype)
        run_both(outs, {x: xv})


def test_ops_are_registered_with_all_rules():
    from graphad.registry import NOT_DIFFERENTIABLE, lookup

    not_diff = {"sign", "floor", "ceil", "round", "equal", "not_equal", "less", "less_equal",
                "greater", "greater_equal", "logical_and", "logical_or", "logical_not"}
    names = [n for n in ga.ops.elementwise.__all__ + ga.ops.compare.__all__]
    assert len(names) == len(set(names)) == 45
    for name in names:
        op = lookup(name)
        assert op.infer and op.reference and op.lower, name
        for rule in (op.vjp, op.jvp):
            if name in not_diff:
                assert rule is NOT_DIFFERENTIABLE, name
            else:
                assert callable(rule), name
