"""The bad-input matrix: each gives a typed error naming the tensor, the conflict and the user's line."""

import numpy as np
import pytest

import graphad as ga

HERE = "test_errors.py"


@pytest.fixture
def g():
    graph = ga.Graph("t")
    with graph:
        yield graph


def _line_of(fn):
    import inspect

    src, start = inspect.getsourcelines(fn)
    return start


def test_missing_feed(g):
    x = ga.placeholder((2,), name="x")
    y = x * 2.0
    with pytest.raises(ga.FeedError) as e:
        ga.Session(g).run(y)
    msg = str(e.value)
    assert "'x'" in msg and HERE in msg and "not fed" in msg


def test_unknown_feed_key(g):
    x = ga.placeholder((2,), name="x")
    with pytest.raises(ga.FeedError, match="unknown feed key 'nope'"):
        ga.Session(g).run(x * 1.0, {"nope": [1.0, 2.0]})


def test_wrong_rank(g):
    x = ga.placeholder((None, 3), name="x")
    with pytest.raises(ga.FeedError) as e:
        ga.Session(g).run(x * 1.0, {x: np.zeros(3)})
    msg = str(e.value)
    assert "rank 2" in msg and "(3,)" in msg and HERE in msg


def test_wrong_size_known_dim(g):
    x = ga.placeholder((None, 3), name="x")
    with pytest.raises(ga.FeedError) as e:
        ga.Session(g).run(x * 1.0, {x: np.zeros((2, 4))})
    assert "(?, 3)" in str(e.value) and "(2, 4)" in str(e.value)


def test_conflicting_named_dim(g):
    a = ga.placeholder(("batch", 3), name="a")
    b = ga.placeholder(("batch",), name="b")
    with pytest.raises(ga.FeedError) as e:
        ga.Session(g).run([a * 1.0, b * 1.0], {a: np.zeros((2, 3)), b: np.zeros(5)})
    msg = str(e.value)
    assert "'batch'" in msg and "5" in msg and "2" in msg and HERE in msg


def test_lossy_dtype_cast(g):
    i = ga.placeholder((2,), dtype=ga.int32, name="i")
    with pytest.raises(ga.FeedError) as e:
        ga.Session(g).run(i * 1, {i: np.array([1.5, 2.0])})
    assert "int32" in str(e.value) and "float64" in str(e.value) and HERE in str(e.value)
    with pytest.raises(ga.FeedError):
        ga.Session(g).run(i * 1, {i: np.array([2**40, 1], np.int64)})
    f = ga.placeholder((), dtype=ga.float32, name="f")
    with pytest.raises(ga.FeedError):
        ga.Session(g).run(f * 1.0, {f: 1e300})
    # lossless or same-kind conversions are accepted
    assert ga.Session(g).run(i * 1, {i: [1, 2]}).dtype == np.int32
    assert ga.Session(g).run(f * 1.0, {f: 0.5}) == 0.5


def test_incompatible_broadcast_at_build_time(g):
    a = ga.placeholder((2, 3), name="a")
    b = ga.placeholder((4,), name="b")
    with pytest.raises(ga.ShapeError) as e:
        a + b  # noqa: B018
    msg = str(e.value)
    assert "(2, 3)" in msg and "(4,)" in msg and HERE in msg and "add" in msg
    assert isinstance(e.value, ValueError)


def test_tensors_from_two_graphs(g):
    a = ga.placeholder((2,), name="a")
    with ga.Graph("other"):
        b = ga.placeholder((2,), name="b")
    with pytest.raises(ga.GraphadError) as e:
        ga.add(a, b)
    msg = str(e.value)
    assert "'other'" in msg and "'t'" in msg and HERE in msg


def test_fetch_from_other_graph(g):
    with ga.Graph("other"):
        b = ga.placeholder((2,), name="b")
        y = b * 2.0
    with pytest.raises(ga.GraphadError, match="other"):
        ga.Session(g).run(y, {b: [1.0, 2.0]})


def test_fetch_unfed_placeholder(g):
    x = ga.placeholder((2,), name="x")
    with pytest.raises(ga.FeedError) as e:
        ga.Session(g).run(x)
    assert "'x'" in str(e.value) and HERE in str(e.value)


def test_variable_assign_mismatch(g):
    v = ga.Variable(np.zeros(3, np.float32), name="v")
    with pytest.raises(ga.ShapeError, match=HERE):
        v.assign(np.zeros(4, np.float32))
    w = ga.placeholder((3,), dtype=ga.float64, name="w")
    with pytest.raises(ga.DTypeError, match="float64"):
        v.assign(w)


def test_error_hierarchy():
    assert issubclass(ga.ShapeError, ValueError) and issubclass(ga.ShapeError, ga.GraphadError)
    assert issubclass(ga.DTypeError, TypeError) and issubclass(ga.FeedError, ValueError)
    for cls in (ga.NotDifferentiableError, ga.DeviceError, ga.ExportError, ga.OnnxImportError):
        assert issubclass(cls, ga.GraphadError)


def _line_below(n=1):
    import sys

    return f"{HERE}:{sys._getframe(1).f_lineno + n}"


def test_ragged_constant_is_a_shape_error_with_line(g):
    where = _line_below(2)
    with pytest.raises(ga.ShapeError) as e:
        ga.constant([[1, 2], [3]])
    msg = str(e.value)
    assert "ragged" in msg and "constant" in msg and where in msg
    assert isinstance(e.value, ValueError)  # what numpy raises, still
    with pytest.raises(ga.ShapeError, match="Variable"):
        ga.Variable([[1.0], [1.0, 2.0]])
    x = ga.placeholder((2,), name="x")
    with pytest.raises(ga.ShapeError, match=HERE):
        x + [[1.0], [1.0, 2.0]]  # noqa: B018
    with pytest.raises(ga.DTypeError, match=HERE):
        ga.constant(["a", "b"])


def test_unsupported_dtype_and_bad_dim_name_the_line(g):
    f = ga.placeholder((2,), name="f")
    where = _line_below(2)
    with pytest.raises(ga.DTypeError) as e:
        ga.cast(f, "complex64")
    assert "complex64" in str(e.value) and "cast" in str(e.value) and where in str(e.value)
    where = _line_below(2)
    with pytest.raises(ga.ShapeError) as e:
        ga.placeholder((2, -1))
    msg = str(e.value)
    assert "-1" in msg and "(2, -1)" in msg and "placeholder" in msg and where in msg
    with pytest.raises(ga.DTypeError, match=HERE):
        ga.placeholder((2,), dtype="complex64")
    with pytest.raises(ga.DTypeError, match=HERE):
        ga.Variable(np.zeros(2), dtype="not-a-dtype")
    with pytest.raises(ga.ShapeError, match=HERE):
        ga.zeros((2, -3))


def test_jvp_not_differentiable_names_the_argument():
    x = np.array([1.0, -2.0], np.float32)
    with pytest.raises(ga.NotDifferentiableError) as e:
        ga.jvp(lambda a: ga.sign(a), (x,), (x,))
    msg = str(e.value)
    assert "'sign'" in msg and "'a'" in msg and "primals" not in msg and HERE in msg

    def f(weights, inputs):
        return ga.floor(weights) + ga.floor(inputs)

    with pytest.raises(ga.NotDifferentiableError, match="'weights'"):
        ga.jvp(f, (x, x), (x, x))
    with pytest.raises(ga.NotDifferentiableError, match="'arg0'"):
        ga.jvp(lambda *a: ga.sign(a[0]), (x,), (x,))


def test_float_conditions_and_indices_follow_numpy_jax(g):
    """Left as they are on purpose: jnp.where / np.logical_and take any dtype by truthiness,
    jax.nn.one_hot compares float indices with arange (1.5 matches no class)."""
    f = ga.placeholder((3,), name="f")
    sess = ga.Session(g)
    feed = {f: np.float32([0.0, 0.5, np.nan])}
    np.testing.assert_array_equal(sess.run(ga.where(f, 1.0, 2.0), feed), [2, 1, 1])
    np.testing.assert_array_equal(sess.run(ga.logical_and(f, f), feed), [False, True, True])
    idx = ga.placeholder((2,), name="idx")
    np.testing.assert_array_equal(sess.run(ga.one_hot(idx, 3), {idx: np.float32([1.0, 1.5])}),
                                  [[0, 1, 0], [0, 0, 0]])
