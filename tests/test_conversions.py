"""Value conversions: weak Python scalars that overflow a tensor's dtype, Python data given a
dtype, and feed_dict dtype conversions (lossless accepted, lossy refused: graphad/feeds.py)."""

import sys

import numpy as np
import pytest

import graphad as ga
from graphad.types import DTypeOverflowError

HERE = "test_conversions.py"


def _next_line(below=1):
    """'test_conversions.py:N' for the line `below` lines under the caller's."""
    return f"{HERE}:{sys._getframe(1).f_lineno + below}"


@pytest.fixture
def g():
    graph = ga.Graph("t")
    with graph:
        yield graph


def _run(g, y, feeds):
    return ga.Session(g).run(y, feeds)


# ---------------------------------------------------------------------------------------------
# Weak Python scalars that do not fit the other operand's dtype (NumPy 2 / JAX: OverflowError)


def test_weak_int_out_of_int32_range_raises(g):
    i32 = ga.placeholder((2,), ga.int32, name="i32")
    where = _next_line(2)
    with pytest.raises(DTypeOverflowError) as e:
        i32 + 2**40  # noqa: B018  (used to wrap silently to [1 2])
    msg = str(e.value)
    assert "'add'" in msg and "1099511627776" in msg and "int32" in msg and "'i32'" in msg
    assert where in msg
    assert isinstance(e.value, ga.DTypeError) and isinstance(e.value, TypeError)
    assert isinstance(e.value, OverflowError) and isinstance(e.value, ga.GraphadError)
    for bad in (2**31, -(2**31) - 1):
        with pytest.raises(OverflowError, match=str(bad)):
            i32 + bad  # noqa: B018  (2**31 used to give negatives)
    with pytest.raises(ga.DTypeError, match="'subtract'"):
        2**31 - i32  # noqa: B018  reflected operator
    with pytest.raises(ga.DTypeError, match="'multiply'"):
        ga.multiply(i32, 2**35)
    # in range: exact results at the edges
    feed = {i32: np.array([0, -1], np.int32)}
    np.testing.assert_array_equal(_run(g, i32 + (2**31 - 1), feed), [2**31 - 1, 2**31 - 2])
    np.testing.assert_array_equal(_run(g, i32 + (-(2**31) + 1), feed), [-(2**31) + 1, -(2**31)])


def test_weak_int_other_ops_name_the_op(g):
    i32 = ga.placeholder((2,), ga.int32, name="i32")
    for fn, op in ((lambda: i32 < 2**40, "'less'"), (lambda: ga.maximum(i32, 2**40), "'maximum'"),
                   (lambda: ga.clip(i32, 0, 2**40), "'clip'"),
                   (lambda: ga.where(True, i32, 2**40), "'where'"),
                   (lambda: i32**2**40, "'power'")):
        with pytest.raises(DTypeOverflowError, match=op):
            fn()


def test_weak_int_int64_and_bool(g):
    i64 = ga.placeholder((), ga.int64, name="i64")
    with pytest.raises(DTypeOverflowError, match="int64"):
        i64 + 2**63  # noqa: B018
    assert _run(g, i64 + 2**62, {i64: np.int64(1)}) == 2**62 + 1
    b = ga.placeholder((), ga.bool_, name="b")
    with pytest.raises(DTypeOverflowError, match="int32"):  # bool + Python int -> default int
        b + 2**40  # noqa: B018
    with ga.config.x64():
        assert (b + 2**40).dtype == ga.int64


def test_numpy_scalars_are_strong_not_checked(g):
    i32 = ga.placeholder((2,), ga.int32, name="i32")
    y = i32 + np.int64(2**40)  # a numpy scalar promotes (JAX-like), nothing overflows
    assert y.dtype == ga.int64
    np.testing.assert_array_equal(_run(g, y, {i32: np.array([1, 2], np.int32)}),
                                  [2**40 + 1, 2**40 + 2])


def test_weak_float_overflowing_to_inf_raises(g):
    f16 = ga.placeholder((2,), ga.float16, name="h")
    where = _next_line(2)
    with pytest.raises(DTypeOverflowError) as e:
        f16 * 1e6  # noqa: B018
    msg = str(e.value)
    assert "'multiply'" in msg and "1000000.0" in msg and "float16" in msg and where in msg
    with pytest.raises(DTypeOverflowError, match="70000"):
        f16 + 70000  # noqa: B018  Python int into float16
    with pytest.raises(DTypeOverflowError):
        f16 * 10**400  # noqa: B018  beyond any float
    f32 = ga.placeholder((), ga.float32, name="f")
    with pytest.raises(DTypeOverflowError, match="float32"):
        f32 * 1e300  # noqa: B018
    i32 = ga.placeholder((), ga.int32, name="i")
    with pytest.raises(DTypeOverflowError, match="float32"):  # int * float -> default float
        i32 * 1e300  # noqa: B018
    # accepted: the largest finite value, rounding, underflow, and inf/nan themselves
    h = np.array([1, 2], np.float16)
    np.testing.assert_array_equal(_run(g, f16 * 0 + 65504.0, {f16: h}), [65504, 65504])
    np.testing.assert_array_equal(_run(g, f16 + 2049, {f16: h}), h + np.float16(2049))  # rounds
    np.testing.assert_array_equal(_run(g, f16 * 1e-10, {f16: h}), [0, 0])
    np.testing.assert_array_equal(_run(g, f16 * float("inf"), {f16: h}), [np.inf, np.inf])
    with ga.config.x64():
        f64 = ga.placeholder((), ga.float64, name="d")
        assert _run(g, f64 * 1e300, {f64: 2.0}) == 2e300
        assert (i32 * 1e300).dtype == ga.float64


# ---------------------------------------------------------------------------------------------
# Python data that must take a dtype: constants, fills, arange, variables


def test_python_data_overflow_in_constants(g):
    where = _next_line(2)
    with pytest.raises(DTypeOverflowError) as e:
        ga.constant(2**40)  # int32 without x64, as jnp.array
    assert where in str(e.value) and "x64" in str(e.value)
    with pytest.raises(DTypeOverflowError, match=r"index \(1,\)"):
        ga.constant([1, 2**40])  # used to wrap silently
    with pytest.raises(DTypeOverflowError, match="int32"):
        ga.constant([1, 2**40], dtype=ga.int32)
    with pytest.raises(DTypeOverflowError, match=r"index \(1, 1\)"):
        ga.constant([[1, 2], [3, 2**70]], dtype=ga.int64)
    with pytest.raises(DTypeOverflowError, match="float16"):
        ga.constant(1e6, dtype=ga.float16)
    with pytest.raises(DTypeOverflowError, match="float32"):
        ga.constant(1e300)
    assert ga.constant([1, 2**40], dtype=ga.int64).dtype == ga.int64
    with ga.config.x64():
        assert ga.constant(2**40).dtype == ga.int64
    # numpy arrays given a dtype are cast like astype (numpy does not check them either)
    assert ga.constant(np.array([2**40]), dtype=ga.int64).dtype == ga.int64


def test_python_data_overflow_in_fills_arange_variables(g):
    with pytest.raises(DTypeOverflowError, match="full"):
        ga.full((2,), 2**40, ga.int32)
    with pytest.raises(DTypeOverflowError, match="full"):
        ga.full((2,), 1e6, ga.float16)
    with pytest.raises(DTypeOverflowError, match="full_like"):
        ga.full_like(ga.placeholder((2,), ga.int32), 2**40)
    with pytest.raises(DTypeOverflowError, match="arange"):
        ga.arange(2**31 - 2, 2**31 + 2, dtype=ga.int32)
    with pytest.raises(DTypeOverflowError, match="Variable"):
        ga.Variable(2**40, dtype=ga.int32)
    v = ga.Variable(np.int32(1), name="v")
    with pytest.raises(DTypeOverflowError, match="int32"):
        v.assign(2**40)
    assert ga.full((2,), float("inf"), ga.float16).dtype == ga.float16


# ---------------------------------------------------------------------------------------------
# feed_dict conversions


def test_feed_int_not_exact_in_float_is_refused(g):
    where = _next_line()
    f = ga.placeholder((), ga.float32, name="f")
    for value in (2**24 + 1, np.int64(2**24 + 1), np.array(2**24 + 1)):
        with pytest.raises(ga.FeedError) as e:
            _run(g, f * 1.0, {f: value})  # used to become 16777216.0 silently
        msg = str(e.value)
        assert "'f'" in msg and "float32" in msg and "int64" in msg and "16777217" in msg
        assert where in msg and "shape ()" in msg
    assert _run(g, f * 1.0, {f: 2**24}) == 2**24
    assert _run(g, f * 1.0, {f: -(2**24)}) == -(2**24)
    h = ga.placeholder((3,), ga.float16, name="h")
    with pytest.raises(ga.FeedError, match=r"2049.*index \(2,\)"):
        _run(g, h * 1.0, {h: [1, 2048, 2049]})
    with pytest.raises(ga.FeedError, match="inf"):
        _run(g, h * 1.0, {h: [1, 2, 70000]})
    np.testing.assert_array_equal(_run(g, h * 1.0, {h: [1, 2048, 65504]}), [1, 2048, 65504])
    d = ga.placeholder((), ga.float64, name="d")
    with pytest.raises(ga.FeedError):
        _run(g, d * 1.0, {d: 2**53 + 1})
    assert _run(g, d * 1.0, {d: 2**62}) == 2.0**62
    v = ga.placeholder((2,), ga.float32, name="v")
    for arr in (np.array([2**63 - 1, 0], np.int64), np.array([2**64 - 1, 0], np.uint64)):
        with pytest.raises(ga.FeedError):  # rounds up to 2**63 / 2**64: no crash, no wrap
            _run(g, v * 1.0, {v: arr})
    np.testing.assert_array_equal(_run(g, v * 1.0, {v: np.array([3, 4], np.uint8)}), [3, 4])
    np.testing.assert_array_equal(_run(g, v * 1.0, {v: [True, False]}), [1, 0])


def test_feed_integral_float_to_int_is_accepted(g):
    i = ga.placeholder((), ga.int32, name="i")
    out = _run(g, i * 1, {i: 3.0})  # used to be refused although lossless
    assert out == 3 and out.dtype == np.int32
    v = ga.placeholder((3,), ga.int32, name="v")
    np.testing.assert_array_equal(
        _run(g, v * 1, {v: np.array([-0.0, -(2.0**31), 2.0**31 - 1], np.float64)}),
        [0, -(2**31), 2**31 - 1])
    np.testing.assert_array_equal(_run(g, v * 1, {v: np.float32([1, 2, 3])}), [1, 2, 3])
    w = ga.placeholder((), ga.int64, name="w")
    assert _run(g, w * 1, {w: -(2.0**63)}) == -(2**63)


@pytest.mark.parametrize("bad, why", [(3.5, "not an integer"), (float("nan"), "not finite"),
                                      (float("inf"), "not finite"), (-float("inf"), "not finite"),
                                      (2.0**31, "outside the range of int32")])
def test_feed_nonintegral_float_to_int_is_refused(g, bad, why):
    where = _next_line()
    v = ga.placeholder((2,), ga.int32, name="v")
    with pytest.raises(ga.FeedError) as e:
        _run(g, v * 1, {v: [1.0, bad]})
    msg = str(e.value)
    assert "'v'" in msg and where in msg and why in msg and repr(bad) in msg
    assert "int32" in msg and "float64" in msg and "(2,)" in msg and "index (1,)" in msg
    w = ga.placeholder((), ga.int64, name="w")
    if bad == 2.0**31:
        assert _run(g, w * 1, {w: bad}) == 2**31
        with pytest.raises(ga.FeedError, match="int64"):
            _run(g, w * 1, {w: 2.0**63})


def test_feed_float_rounding_and_underflow_accepted_overflow_refused(g):
    f = ga.placeholder((4,), ga.float32, name="f")
    x = np.array([0.1, 1e-50, -1e-45, 1e38])  # float64, as numpy users have it
    out = _run(g, f * 1.0, {f: x})
    np.testing.assert_array_equal(out, x.astype(np.float32))  # round to nearest; 1e-50 -> 0
    np.testing.assert_array_equal(_run(g, f * 1.0, {f: [np.nan, np.inf, -np.inf, 0]}),
                                  np.float32([np.nan, np.inf, -np.inf, 0]))
    with pytest.raises(ga.FeedError, match=r"1e\+39 overflows to inf in float32.*index \(2,\)"):
        _run(g, f * 1.0, {f: [0.0, 1.0, 1e39, 2.0]})
    h = ga.placeholder((), ga.float16, name="h")
    with pytest.raises(ga.FeedError, match="float16"):
        _run(g, h * 1.0, {h: 65520.0})
    assert _run(g, h * 1.0, {h: 65519.0}) == 65504  # rounds to the largest finite float16


def test_feed_bool_and_unconvertible(g):
    b = ga.placeholder((2,), ga.bool_, name="b")
    with pytest.raises(ga.FeedError, match="bool"):
        _run(g, ga.logical_not(b), {b: [1, 0]})
    i = ga.placeholder((2,), ga.int64, name="i")
    np.testing.assert_array_equal(_run(g, i * 1, {i: [True, False]}), [1, 0])
    for value in ([2**70, 1], [1 + 0j, 1], ["a", "b"]):
        with pytest.raises(ga.FeedError, match="'i'"):
            _run(g, i * 1, {i: value})


def test_fast_path_still_validates_conversions(g):
    """After a fast (exact-dtype) run, a value that needs converting is validated again."""
    f = ga.placeholder((2,), ga.float32, name="f")
    y = f * 2.0
    sess = ga.Session(g)
    for _ in range(3):
        sess.run(y, {f: np.float32([1, 2])})
    with pytest.raises(ga.FeedError, match="16777217"):
        sess.run(y, {f: np.array([2**24 + 1, 1], np.int64)})
    np.testing.assert_array_equal(sess.run(y, {f: np.array([1.5, 2.0])}), [3, 4])


def test_assign_uses_feed_rules_and_keeps_state(g):
    v = ga.Variable(np.float32(1.0), name="v")
    k = ga.Variable(np.int32(1), name="k")
    sess = ga.Session(g)
    sess.assign(k, 7.0)
    assert sess.run(k) == 7
    with pytest.raises(ga.FeedError, match="'k'"):
        sess.assign(k, 7.5)
    with pytest.raises(ga.FeedError, match="'v'"):
        sess.assign(v, 2**24 + 1)
    assert sess.run(k) == 7 and sess.run(v) == 1.0


def test_jit_python_int_argument_overflow_is_a_graphad_error():
    f = ga.jit(lambda a: a + 1)
    assert int(f(3)) == 4
    for _ in range(2):  # the first call traces, the second takes the cached fast path
        with pytest.raises(ga.DTypeOverflowError, match="1099511627776"):
            f(2**40)


def test_vjp_errors_name_the_users_argument():
    def f(a):
        return ga.sign(a)

    x = np.ones(3, np.float32)
    with pytest.raises(ga.NotDifferentiableError, match="with respect to 'a'"):
        ga.vjp(f, x)[1](x)
