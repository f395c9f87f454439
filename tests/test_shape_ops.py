"""Focused tests of the shape, indexing and creation ops: error messages (naming this file and the
shapes), unknown and named dims at build time and on onnxruntime, gradients with unknown batch
dims, numpy placement of array indices, default dtypes."""

import numpy as np
import pytest

import graphad as ga
from graphad.interpret import evaluate
from graphad.passes.autodiff import gradients

HERE = "test_shape_ops.py"


@pytest.fixture
def g():
    graph = ga.Graph()
    with graph:
        yield graph


def _raises(exc, fn, *fragments):
    with pytest.raises(exc) as err:
        fn()
    msg = str(err.value)
    for frag in (HERE,) + fragments:
        assert frag in msg, f"{frag!r} not in error message:\n{msg}"
    return msg


# ---------------------------------------------------------------------------------------------
# Errors: ShapeError naming the user's line and the shapes


def test_reshape_bad_size(g):
    x = ga.placeholder((2, 3))
    _raises(ga.ShapeError, lambda: ga.reshape(x, (4, 2)), "(2, 3)", "(4, 2)")
    _raises(ga.ShapeError, lambda: ga.reshape(x, (4, -1)), "(2, 3)", "(4, -1)")
    _raises(ga.ShapeError, lambda: ga.reshape(x, (-1, -1)), "(2, 3)")
    y = ga.placeholder((None, 3))
    _raises(ga.ShapeError, lambda: ga.reshape(y, (5, 2)), "(?, 3)", "(5, 2)")
    _raises(ga.ShapeError, lambda: ga.reshape(y, (None, 3)), "reshape_like")


def test_concat_rank_and_dim_mismatch(g):
    a, b, c = ga.placeholder((2, 3)), ga.placeholder((2, 3, 1)), ga.placeholder((4, 3))
    _raises(ga.ShapeError, lambda: ga.concat([a, b], 0), "(2, 3)", "(2, 3, 1)")
    _raises(ga.ShapeError, lambda: ga.concat([a, c], 1), "(2, 3)", "(4, 3)", "axis 0")
    _raises(ga.ShapeError, lambda: ga.stack([a, c]), "(2, 3)", "(4, 3)")
    _raises(ga.ShapeError, lambda: ga.concat([a], 2), "axis 2", "(2, 3)")


def test_transpose_bad_perm(g):
    x = ga.placeholder((2, 3))
    _raises(ga.ShapeError, lambda: ga.transpose(x, (0, 0)), "(0, 0)", "(2, 3)")
    _raises(ga.ShapeError, lambda: ga.transpose(x, (0, 1, 2)), "(0, 1, 2)", "(2, 3)")
    _raises(ga.ShapeError, lambda: ga.transpose(x, (0, 2)), "(2, 3)")


def test_index_out_of_range(g):
    x = ga.placeholder((2, 3))
    _raises(ga.ShapeError, lambda: x[5], "index 5", "(2, 3)")
    _raises(ga.ShapeError, lambda: x[:, -4], "index -4", "axis 1", "(2, 3)")
    _raises(ga.ShapeError, lambda: x[:, [0, 3]], "index 3", "(2, 3)")
    _raises(ga.ShapeError, lambda: ga.gather(x, [-3], axis=0), "index -3", "(2, 3)")
    _raises(ga.ShapeError, lambda: x[0, 0, 0], "too many indices", "(2, 3)")
    _raises(ga.ShapeError, lambda: x[[0], [1]], "one integer-array")
    _raises(ga.ShapeError, lambda: x[..., ...], "ellipsis")
    _raises(ga.DTypeError, lambda: x[np.array([True, False])], "boolean")
    _raises(ga.DTypeError, lambda: x[1.5], "1.5")
    _raises(ga.ShapeError, lambda: x[::0], "step")


def test_other_static_argument_errors(g):
    x = ga.placeholder((2, 3))
    _raises(ga.ShapeError, lambda: ga.squeeze(x, 1), "axis 1", "(2, 3)")
    _raises(ga.ShapeError, lambda: ga.expand_dims(x, 3), "axis 3", "(2, 3)")
    _raises(ga.ShapeError, lambda: ga.broadcast_to(x, (4, 3, 2)), "(2, 3)", "(4, 3, 2)")
    _raises(ga.ShapeError, lambda: ga.broadcast_to(x, (3,)), "(2, 3)", "(3,)")
    _raises(ga.ShapeError, lambda: ga.split(x, 2, axis=1), "(2, 3)", "2 equal sections")
    _raises(ga.ShapeError, lambda: ga.pad(x, ((1, 2), (3, 4), (5, 6))), "(2, 3)")
    _raises(ga.ShapeError, lambda: ga.pad(x, -1), "negative")
    _raises(ga.ShapeError, lambda: ga.pad(x, 2, mode="reflect"), "(2, 3)", "reflect")
    _raises(ValueError, lambda: ga.pad(x, 1, mode="symmetric"), "symmetric")
    _raises(ga.ShapeError, lambda: ga.tile(x, (-1,)), "(2, 3)")
    _raises(ga.ShapeError, lambda: ga.zeros((None, 3)), "zeros_like")
    _raises(ga.ShapeError, lambda: ga.eye(-1), "eye")
    y = ga.placeholder((None, 3))
    _raises(ga.ShapeError, lambda: ga.split(y, [2, 1]), "unknown size")
    _raises(ga.ShapeError, lambda: ga.broadcast_to(x[:, :1], (2, None)), "broadcast_to_like")


# ---------------------------------------------------------------------------------------------
# Unknown and named dims


def test_inferred_shapes_with_unknown_and_named_dims(g):
    x = ga.placeholder(("batch", 3, 4))
    assert ga.reshape(x, (-1, 12)).shape == ("batch", 12)
    assert ga.reshape(x, (-1,)).shape == (None,)
    assert ga.reshape(ga.reshape(x, (-1, 12)), (-1, 3, 4)).shape == ("batch", 3, 4)
    assert ga.reshape(x, (2, 6, -1)).shape == (2, 6, "batch")
    assert ga.reshape(x, (2, -1)).shape == (2, None)
    assert x.T.shape == (4, 3, "batch")
    assert x[:, 1].shape == ("batch", 4)
    assert x[::-1].shape == ("batch", 3, 4)
    assert x[1:].shape == (None, 3, 4)
    assert x[..., None, ::2].shape == ("batch", 3, 1, 2)
    assert x[:, [0, 2, 2]].shape == ("batch", 3, 4)
    assert ga.concat([x, x], axis=0).shape == (None, 3, 4)
    assert ga.concat([x, x], axis=-1).shape == ("batch", 3, 8)
    assert ga.stack([x, x], axis=1).shape == ("batch", 2, 3, 4)
    assert ga.broadcast_to(x[:, :1], ("batch", 3, 4)).shape == ("batch", 3, 4)
    assert ga.zeros_like(x).shape == ("batch", 3, 4)
    assert ga.tile(x, (1, 2, 1)).shape == ("batch", 6, 4)
    assert ga.tile(x, 2).shape == ("batch", 3, 8)
    assert ga.pad(x, ((0, 0), (1, 1), (0, 0))).shape == ("batch", 5, 4)
    assert ga.pad(x, 1).shape == (None, 5, 6)
    assert [t.shape for t in ga.split(x, 3, axis=1)] == [("batch", 1, 4)] * 3
    assert [t.shape for t in ga.split(x, 2)] == [(None, 3, 4)] * 2
    assert ga.squeeze(ga.expand_dims(x, (0, -1))).shape == ("batch", 3, 4)


def _run(outs, feeds):
    got = ga.Session(outs[0].graph).run(outs, feeds)
    ref = evaluate(outs, feeds)
    return got, ref


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_unknown_batch_runs_on_onnxruntime(batch):
    g = ga.Graph()
    with g:
        x = ga.placeholder((None, 3, 4), dtype=ga.float64, name="x")
        i = ga.placeholder((None,), dtype=ga.int64, name="i")
        outs = [ga.reshape(x, (-1, 4)), ga.reshape(x, (-1,)), x.T, ga.transpose(x, (1, 0, 2)),
                x[::-1, 1:, ::2], x[:, [2, 0, 0], -1], x[-1], x[i], x[:, 1, i],
                ga.zeros_like(x), ga.ones_like(x[:, 0], dtype=ga.int32),
                ga.broadcast_to(x[:, :1], (None, 3, 4)), ga.broadcast_to_like(x[:1], x),
                ga.reshape_like(ga.reshape(x, (-1,)), x), ga.concat([x, x[:1]], axis=0),
                ga.pad(x, ((1, 0), (0, 0), (1, 1)), mode="edge"), ga.tile(x, (2, 1, 1))]
    xv = np.random.default_rng(batch).standard_normal((batch, 3, 4))
    iv = np.array([0, min(batch, 4) - 1, -1, 0], np.int64)
    want = [xv.reshape(-1, 4), xv.reshape(-1), xv.T, xv.transpose(1, 0, 2), xv[::-1, 1:, ::2],
            xv[:, [2, 0, 0], -1], xv[-1], xv[iv], xv[:, 1, iv], np.zeros_like(xv),
            np.ones((batch, 4), np.int32), np.broadcast_to(xv[:, :1], xv.shape),
            np.broadcast_to(xv[:1], xv.shape), xv, np.concatenate([xv, xv[:1]]),
            np.pad(xv, ((1, 0), (0, 0), (1, 1)), mode="edge"), np.tile(xv, (2, 1, 1))]
    got, ref = _run(outs, {x: xv, i: iv})
    for t, w, a, b in zip(outs, want, got, ref):
        assert a.dtype == t.dtype.np and a.shape == w.shape, (t, a.shape, w.shape)
        np.testing.assert_array_equal(a, w)
        np.testing.assert_array_equal(b, w)


def _linear_cases(x):
    """Linear functions of x (None, 3, 4); grad of sum(f(x)**2)/2 is J^T f(x)."""
    return {
        "reshape": lambda: ga.reshape(x, (-1, 4)),
        "reshape_flat": lambda: ga.reshape(x, (-1,)),
        "transpose": lambda: ga.transpose(x, (2, 0, 1)),
        "getitem_steps": lambda: x[::-1, 1:, ::2],
        "getitem_int": lambda: x[:, -1],
        "getitem_array": lambda: x[[0, -1, 0]],
        "gather_axis1": lambda: ga.gather(x, [2, 2, 0], axis=1),
        "concat": lambda: ga.concat([x, 2.0 * x], axis=0),
        "stack": lambda: ga.stack([x, x], axis=0),
        "split": lambda: ga.split(x, [1], axis=0)[1],
        "pad_reflect": lambda: ga.pad(x, ((2, 1), (1, 0), (0, 0)), mode="reflect"),
        "pad_const": lambda: ga.pad(x, ((1, 2), (0, 1), (0, 0)), constant_values=3.0),
        "tile": lambda: ga.tile(x, (2, 1, 3)),
        "broadcast": lambda: ga.broadcast_to(x[:, :1], (None, 3, 4)),
        "squeeze": lambda: ga.squeeze(ga.expand_dims(x, 1), 1),
    }


@pytest.mark.parametrize("case", sorted(_linear_cases(None)))
def test_gradients_with_unknown_batch(case):
    """The VJP rules build graphs that run with an unknown batch dim and match numpy."""
    xv = np.random.default_rng(0).standard_normal((3, 3, 4))
    results = []
    for shape in ((3, 3, 4), (None, 3, 4)):
        g = ga.Graph()
        with g:
            x = ga.placeholder(shape, dtype=ga.float64, name="x")
            y = _linear_cases(x)[case]()
            loss = ga.sum(y * y) * 0.5
            (dx,) = gradients([loss], [x])
            assert dx.shape[1:] == (3, 4)
        got, ref = _run([dx, y], {x: xv})
        np.testing.assert_allclose(got[0], ref[0], rtol=1e-12, atol=1e-12)
        results.append(got[0])
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12, atol=1e-12)
    # and against J^T f(x) with J read column by column off the forward function (f is affine)
    with ga.Graph():
        x = ga.placeholder((3, 3, 4), dtype=ga.float64)
        y = _linear_cases(x)[case]()
        f0 = evaluate([y], {x: np.zeros_like(xv)})[0].ravel()
        cols = [evaluate([y], {x: e.reshape(xv.shape)})[0].ravel() - f0 for e in np.eye(xv.size)]
        want = np.stack(cols, axis=1).T @ evaluate([y], {x: xv})[0].ravel()
    np.testing.assert_allclose(results[1].ravel(), want, rtol=1e-10, atol=1e-10)


def test_gather_repeated_indices_accumulate(g):
    x = ga.placeholder((4,), dtype=ga.float64)
    i = ga.placeholder((3,), dtype=ga.int32)
    (dx,) = gradients([ga.sum(ga.gather(x, i))], [x])
    got, ref = _run([dx], {x: np.arange(4.0), i: np.array([0, 0, -1], np.int32)})
    np.testing.assert_array_equal(got[0], [2, 0, 0, 1])
    np.testing.assert_array_equal(ref[0], [2, 0, 0, 1])


def test_zeros_like_has_zero_derivative(g):
    x = ga.placeholder((None, 2), dtype=ga.float64)
    y = ga.sum(ga.zeros_like(x) + ga.ones_like(x) * 0.0 + x)
    (dx,) = gradients([y], [x])
    got, _ = _run([dx], {x: np.ones((3, 2))})
    np.testing.assert_array_equal(got[0], np.ones((3, 2)))


# ---------------------------------------------------------------------------------------------
# Semantics details


def test_bool_tensors_move_like_numpy(g):
    b = ga.placeholder((None, 3), dtype=ga.bool_)
    outs = [b.T, ga.reshape(b, (-1,)), b[::-1, [0, 0]], ga.concat([b, b], 1), ga.pad(b, 1),
            ga.tile(b, 2), ga.zeros_like(b), ga.eye(3, dtype=ga.bool_)]
    bv = np.array([[True, False, True], [False, False, True]])
    want = [bv.T, bv.reshape(-1), bv[::-1, [0, 0]], np.concatenate([bv, bv], 1), np.pad(bv, 1),
            np.tile(bv, 2), np.zeros_like(bv), np.eye(3, dtype=bool)]
    got, ref = _run(outs, {b: bv})
    for a, r, w in zip(got, ref, want):
        assert a.dtype == np.bool_
        np.testing.assert_array_equal(a, w)
        np.testing.assert_array_equal(r, w)


def test_tensor_protocol(g):
    x = ga.placeholder((3, 2))
    assert len(x) == 3
    rows = list(x)
    assert len(rows) == 3 and rows[0].shape == (2,)
    assert x.T.op.op == "transpose" and x.T.shape == (2, 3)
    assert x.reshape(6).shape == (6,) and x.reshape(2, 3).shape == (2, 3)
    assert x[...] is x and x[:] is x
    assert x[np.int64(1)].shape == (2,)


def test_default_dtypes():
    with ga.Graph():
        assert ga.zeros((2,)).dtype == ga.float32
        assert ga.ones((2,), dtype="int64").dtype == ga.int64
        assert ga.eye(2).dtype == ga.float32
        assert ga.full((2,), 3).dtype == ga.int32
        assert ga.full((2,), 3.0).dtype == ga.float32
        assert ga.full((2,), True).dtype == ga.bool_
        assert ga.full((2,), np.float64(1.0)).dtype == ga.float32
        assert ga.arange(5).dtype == ga.int32
        assert ga.arange(0, 1, 0.25).dtype == ga.float32
        with ga.config.x64():
            assert ga.zeros((2,)).dtype == ga.float64
            assert ga.arange(5).dtype == ga.int64
            assert ga.full((2,), 1.5).dtype == ga.float64
            assert ga.full((2,), np.float64(1.0)).dtype == ga.float64


def test_full_with_tensor_fill_and_values():
    with ga.Graph() as g:
        v = ga.placeholder((3,), dtype=ga.float64)
        outs = [ga.full((2, 3), v), ga.full_like(ga.zeros((2, 3)), 7, dtype=ga.int64),
                ga.arange(1.0, 2.0, 0.25), ga.eye(2, 3, k=-1, dtype=ga.int32), ga.arange(3, 0, -1)]
        got = ga.Session(g).run(outs, {v: [1.0, 2.0, 3.0]})
    np.testing.assert_array_equal(got[0], np.tile([1.0, 2.0, 3.0], (2, 1)))
    np.testing.assert_array_equal(got[1], np.full((2, 3), 7))
    np.testing.assert_array_equal(got[2], [1.0, 1.25, 1.5, 1.75])
    np.testing.assert_array_equal(got[3], np.eye(2, 3, -1, dtype=np.int32))
    np.testing.assert_array_equal(got[4], [3, 2, 1])


def test_array_index_placement_matches_numpy(g):
    x = ga.placeholder((3, 4, 5, 2))
    xv = np.random.default_rng(0).standard_normal((3, 4, 5, 2)).astype(np.float32)
    idxs = [(0, slice(None), [1, 2]), (slice(None), 0, [1, 2]),
            (slice(None), [1, 2], slice(None), 0),
            (0, [1, 2]), ([[0, 1]], None), (None, [0, 1]), (0, None, [1, 2]),
            (Ellipsis, [1, 0], 1), (0, Ellipsis, [1, 0]), (slice(None, None, -1), 1, [0, 3], 1)]
    outs = [x[i] for i in idxs]
    got, _ = _run(outs, {x: xv})
    for i, t, a in zip(idxs, outs, got):
        want = xv[i]
        assert t.shape == want.shape, (i, t.shape, want.shape)
        np.testing.assert_array_equal(a, want)
