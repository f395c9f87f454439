"""Focused tests for reductions, nn ops and linear algebra: error messages, dtype rules,
numerical edge cases (ties, zeros, NaN, +-1000, -inf, int64 beyond 2**53, pivoting) and export."""

import os

import numpy as np
import onnx
import pytest
import scipy.special

import graphad as ga
from graphad.interpret import evaluate
from graphad.passes.autodiff import gradients
from graphad.passes.forward import jvp

THIS_FILE = os.path.basename(__file__)


def run_both(outs, feeds):
    """Values on the reference interpreter and on onnxruntime (they must agree)."""
    single = not isinstance(outs, (list, tuple))
    outs = [outs] if single else list(outs)
    got_i = evaluate(outs, feeds)
    got_s = ga.Session(outs[0].graph).run(outs, feeds)
    for a, b in zip(got_i, got_s):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-12, equal_nan=True)
    return got_s[0] if single else got_s


# ---------------------------------------------------------------------------------------------
# Errors


def test_matmul_inner_mismatch_names_both_shapes_and_user_line():
    with ga.Graph():
        a = ga.placeholder((3, 4))
        b = ga.placeholder((5, 6))
        with pytest.raises(ga.ShapeError) as err:
            a @ b
    msg = str(err.value)
    assert "(3, 4)" in msg and "(5, 6)" in msg and "matmul" in msg
    assert THIS_FILE in msg


def test_matmul_errors_for_scalars_and_batch_mismatch():
    with ga.Graph():
        with pytest.raises(ga.ShapeError, match="at least 1-D"):
            ga.matmul(ga.placeholder(()), ga.placeholder((3,)))
        with pytest.raises(ga.ShapeError, match=r"\(2, 3, 4\).*\(5, 4, 2\)"):
            ga.matmul(ga.placeholder((2, 3, 4)), ga.placeholder((5, 4, 2)))
        with pytest.raises(ga.ShapeError, match=r"\(4,\).*\(5,\)"):
            ga.matmul(ga.placeholder((4,)), ga.placeholder((5,)))


@pytest.mark.parametrize("fn", [ga.sum, ga.mean, ga.max, ga.min, ga.prod, ga.logsumexp])
def test_reduction_axis_out_of_range(fn):
    with ga.Graph():
        x = ga.placeholder((3, 4))
        with pytest.raises(ga.ShapeError) as err:
            fn(x, axis=2)
        msg = str(err.value)
        assert "axis 2 is out of range" in msg and "(3, 4)" in msg and THIS_FILE in msg
        with pytest.raises(ga.ShapeError, match="axis -3 is out of range"):
            fn(x, axis=(0, -3))
        with pytest.raises(ga.ShapeError, match="repeated axis"):
            fn(x, axis=(1, -1))


def test_arg_and_softmax_axis_errors():
    with ga.Graph():
        x = ga.placeholder((3, 4))
        with pytest.raises(ga.ShapeError, match="argmax: axis 5 is out of range"):
            ga.argmax(x, axis=5)
        with pytest.raises(ga.ShapeError, match="not an int"):
            ga.argmin(x, axis=(0, 1))
        with pytest.raises(ga.ShapeError, match="softmax: axis -3"):
            ga.softmax(x, axis=-3)
        with pytest.raises(ga.ShapeError, match="one_hot: axis 3"):
            ga.one_hot(ga.placeholder((2, 2), ga.int32), 4, axis=3)
        with pytest.raises(ValueError, match="depth"):
            ga.one_hot(ga.placeholder((2,), ga.int32), -1)


def test_linalg_shape_errors():
    with ga.Graph():
        with pytest.raises(ga.ShapeError, match="square"):
            ga.linalg.inv(ga.placeholder((3, 4)))
        with pytest.raises(ga.ShapeError, match="square"):
            ga.linalg.det(ga.placeholder((3,)))
        a = ga.placeholder((2, 3, 3))
        # numpy 2 semantics: a 2-D b is a matrix (3 rows needed), not a batch of vectors.
        with pytest.raises(ga.ShapeError, match=r"\(2, 3, 3\).*\(2, 3\)"):
            ga.linalg.solve(a, ga.placeholder((2, 3)))


# ---------------------------------------------------------------------------------------------
# dtype rules (JAX)


def test_reduction_dtypes_follow_jax():
    with ga.Graph():
        b = ga.placeholder((3,), ga.bool_)
        i = ga.placeholder((3,), ga.int32)
        assert ga.sum(b).dtype == ga.int32 and ga.sum(i).dtype == ga.int32
        assert ga.prod(b).dtype == ga.int32
        assert ga.mean(i).dtype == ga.float32 and ga.mean(b).dtype == ga.float32
        assert ga.max(b).dtype == ga.bool_
        assert ga.argmax(i).dtype == ga.int32
        assert ga.one_hot(i, 3).dtype == ga.float32
        assert ga.logsumexp(i).dtype == ga.float32
        with ga.config.x64():
            assert ga.sum(b).dtype == ga.int64 and ga.sum(i).dtype == ga.int64
            assert ga.mean(i).dtype == ga.float64
            assert ga.argmax(i).dtype == ga.int64


def test_int64_sum_is_exact_and_wraps_like_numpy():
    # onnxruntime's integer ReduceSum accumulates in double; graphad's lowering must not.
    x = np.array([[2**62 + 1, 3, 5], [2**62, 2**62, 2**62]], dtype=np.int64)
    y = np.array([2**30, 2**30, 2**30, 7], dtype=np.int32)
    with ga.Graph():
        px = ga.placeholder((None, 3), ga.int64)
        py = ga.placeholder((4,), ga.int32)
        sx, sy, sall = run_both([ga.sum(px, axis=1), ga.sum(py), ga.sum(px)], {px: x, py: y})
    np.testing.assert_array_equal(sx, x.sum(axis=1))
    assert sy == y.sum(dtype=np.int32) and sall == x.sum()


def test_int_sum_over_empty_dynamic_axis():
    with ga.Graph():
        p = ga.placeholder((None, 3), ga.int32)
        out = run_both(ga.sum(p, axis=0), {p: np.zeros((0, 3), np.int32)})
    np.testing.assert_array_equal(out, np.zeros(3, np.int32))


# ---------------------------------------------------------------------------------------------
# Values at the edges


def test_stable_nn_ops_at_plus_minus_1000():
    x = np.array([[1000.0, 999.0, -1000.0], [-1000.0, -1001.0, -1000.0]], dtype=np.float32)
    with ga.Graph():
        p = ga.placeholder((None, 3))
        lse, sm, lsm = run_both([ga.logsumexp(p, axis=1), ga.softmax(p), ga.log_softmax(p)],
                                {p: x})
    x64 = x.astype(np.float64)
    for got, want in ((lse, scipy.special.logsumexp(x64, axis=1)),
                      (sm, scipy.special.softmax(x64, axis=1)),
                      (lsm, scipy.special.log_softmax(x64, axis=1))):
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_logsumexp_with_minus_inf():
    x = np.array([[-np.inf, -np.inf], [-np.inf, 0.0], [np.inf, 1.0]], dtype=np.float64)
    with ga.Graph():
        p = ga.placeholder((3, 2), ga.float64)
        y = ga.logsumexp(p, axis=1)
        (g,) = gradients([ga.sum(y[1])], [p])
        val, grad = run_both([y, g], {p: x})
    np.testing.assert_array_equal(val, [-np.inf, 0.0, np.inf])
    np.testing.assert_array_equal(grad[1], [0.0, 1.0])


def test_argmax_argmin_ties_pick_the_first():
    x = np.array([[1, 3, 3, 0], [2, 2, 2, 2], [0, -1, 5, -1]], dtype=np.float32)
    with ga.Graph():
        p = ga.placeholder((None, 4))
        amax, amin, flat = run_both([ga.argmax(p, axis=1), ga.argmin(p, axis=-1), ga.argmax(p)],
                                    {p: x})
    np.testing.assert_array_equal(amax, [1, 0, 2])
    np.testing.assert_array_equal(amin, [3, 0, 1])
    assert flat == np.argmax(x)


def test_nan_propagates_through_max_min_and_argmax():
    x = np.array([[1.0, np.nan, 2.0], [np.nan, 1.0, 2.0], [0.0, 4.0, 1.0]], dtype=np.float32)
    with ga.Graph():
        p = ga.placeholder((3, 3))
        mx, mn, am, an = run_both([ga.max(p, axis=1), ga.min(p, axis=1),
                                   ga.argmax(p, axis=1), ga.argmin(p, axis=1)], {p: x})
    np.testing.assert_array_equal(mx, np.max(x, axis=1))
    np.testing.assert_array_equal(mn, np.min(x, axis=1))
    np.testing.assert_array_equal(am, np.argmax(x, axis=1))
    np.testing.assert_array_equal(an, np.argmin(x, axis=1))


def test_det_float64_pivoting_singular_and_batches():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 4, 4))
    a[0] = np.eye(4)[[1, 0, 3, 2]]  # needs row swaps: det = +1
    a[1] = 0.0
    a[2, :, 0] = 0.0  # a zero column: det = 0 exactly
    a[3, 1] = 2 * a[3, 0]  # rank-deficient
    a[4, 0, 0] = 0.0  # zero leading entry
    with ga.Graph():
        p = ga.placeholder((None, 2, 4, 4), ga.float64)
        d = run_both(ga.linalg.det(p), {p: a.reshape(3, 2, 4, 4)})
    np.testing.assert_allclose(d.ravel(), np.linalg.det(a), rtol=1e-12, atol=1e-12)
    assert d.ravel()[0] == 1.0 and d.ravel()[1] == 0.0 and d.ravel()[2] == 0.0


def test_solve_vector_and_matrix_rhs_match_numpy():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2, 5, 5)) + 5 * np.eye(5)
    b1, b2 = rng.standard_normal(5), rng.standard_normal((2, 5, 3))
    with ga.Graph():
        pa = ga.placeholder((None, 5, 5), ga.float64)
        x1, x2 = run_both([ga.linalg.solve(pa, b1), ga.linalg.solve(pa, b2)], {pa: a})
    np.testing.assert_allclose(x1, np.linalg.solve(a, b1[None, :, None])[..., 0], rtol=1e-12)
    np.testing.assert_allclose(x2, np.linalg.solve(a, b2), rtol=1e-12)


def test_dot_nd_follows_numpy():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4, 6))
    with ga.Graph():
        pa = ga.placeholder((None, 3, 4), ga.float64)
        out = run_both(ga.dot(pa, b), {pa: a})
    np.testing.assert_allclose(out, np.dot(a, b), rtol=1e-12)


def test_matmul_named_dims():
    with ga.Graph():
        a = ga.placeholder(("batch", 3, 4))
        b = ga.placeholder((4, "k"))
        assert (a @ b).shape == ("batch", 3, "k")
        assert ga.matmul(ga.placeholder((None,)), b).shape == ("k",)


# ---------------------------------------------------------------------------------------------
# Derivatives at the edges


def _prod_grad_exact(x):
    """d prod(x) / d x_i = product of the other entries, by brute force."""
    return np.array([np.prod(np.delete(x, i)) for i in range(x.size)])


@pytest.mark.parametrize("leading", [4, None])  # static scan path / dynamic-length path
def test_prod_gradient_with_zeros(leading):
    cases = [np.array([2.0, 0.0, 3.0, -1.5]), np.array([0.0, 2.0, 0.0, 5.0]),
             np.array([1.5, -2.0, 0.5, 4.0])]
    for x in cases:
        with ga.Graph():
            p = ga.placeholder((leading,), ga.float64)
            (g,) = gradients([ga.prod(p)], [p])
            (t,) = jvp([ga.prod(p)], [p], [ga.constant(np.arange(1.0, 5.0), dtype=ga.float64)])
            grad, tang = run_both([g, t], {p: x})
        want = _prod_grad_exact(x)
        np.testing.assert_allclose(grad, want, rtol=1e-12, atol=0)
        np.testing.assert_allclose(tang, want @ np.arange(1.0, 5.0), rtol=1e-12)


def test_prod_gradient_with_zeros_unknown_batch():
    # Static reduced axis inside a tensor of unknown shape (the scan fills gaps via ones_like).
    x = np.array([[2.0, 0.0, 3.0, -1.5], [0.0, 2.0, 0.0, 5.0], [1.5, -2.0, 0.5, 4.0]])
    with ga.Graph():
        p = ga.placeholder((None, 4), ga.float64)
        (g,) = gradients([ga.sum(ga.prod(p, axis=1))], [p])
        grad = run_both(g, {p: x})
    np.testing.assert_allclose(grad, [_prod_grad_exact(r) for r in x], rtol=1e-12, atol=0)


def test_prod_hessian_at_a_zero_is_exact():
    # Static path: the gradient is built from products only, so its derivative is exact too.
    x = np.array([[2.0, 0.0, 3.0], [1.0, -2.0, 0.5]])
    v = np.array([[0.3, -1.0, 2.0], [1.0, 0.5, -0.25]])
    with ga.Graph():
        p = ga.placeholder((2, 3), ga.float64)
        (g,) = gradients([ga.sum(ga.prod(p, axis=(0, 1)))], [p])
        (hv,) = gradients([ga.sum(g * ga.constant(v, dtype=ga.float64))], [p])
        got = run_both(hv, {p: x})
    flat = x.ravel()
    hess = np.array([[0.0 if i == j else np.prod(np.delete(flat, [i, j]))
                      for j in range(6)] for i in range(6)])
    np.testing.assert_allclose(got.ravel(), hess @ v.ravel(), rtol=1e-12, atol=1e-14)


def test_max_gradient_splits_ties_equally():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]])
    with ga.Graph():
        p = ga.placeholder((2, 3), ga.float64)
        y = ga.max(p, axis=1)
        (g,) = gradients([ga.sum(y)], [p])
        (t,) = jvp([y], [p], [ga.constant(np.array([[5.0, 1.0, 3.0], [1.0, 1.0, 1.0]]))])
        grad, tang = run_both([g, t], {p: x})
    np.testing.assert_array_equal(grad, [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(tang, [2.0, 1.0])


def test_mean_gradient_with_unknown_dims():
    with ga.Graph():
        p = ga.placeholder((None, 4), ga.float64)
        (g,) = gradients([ga.mean(p, axis=0)], [p])
        grad = run_both(g, {p: np.ones((5, 4))})
    np.testing.assert_allclose(grad, np.full((5, 4), 0.2))


def test_matmul_vector_gradients():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(4), rng.standard_normal((2, 4, 3))
    with ga.Graph():
        pa = ga.placeholder((4,), ga.float64)
        pb = ga.placeholder((2, 4, 3), ga.float64)
        ga_, gb_ = gradients([ga.sum(pa @ pb)], [pa, pb])
        da, db = run_both([ga_, gb_], {pa: a, pb: b})
    np.testing.assert_allclose(da, b.sum(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(db, np.broadcast_to(a[None, :, None], (2, 4, 3)), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Export


def test_exported_linalg_model_passes_full_check():
    with ga.Graph():
        a = ga.placeholder((None, 3, 3), ga.float64)
        b = ga.placeholder((3,), ga.float64)
        outs = {"inv": ga.linalg.inv(a), "solve": ga.linalg.solve(a, b),
                "det": ga.linalg.det(a), "det32": ga.linalg.det(ga.cast(a, ga.float32))}
        model = ga.export.to_onnx(outs)
    onnx.checker.check_model(model, full_check=True)
    assert any(n.op_type == "Inverse" and n.domain == "com.microsoft" for n in model.graph.node)
    assert any(o.domain == "com.microsoft" for o in model.opset_import)
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.eye(3)[None] * 2.0
    got = dict(zip([o.name for o in sess.get_outputs()],
                   sess.run(None, {sess.get_inputs()[0].name: x,
                                   sess.get_inputs()[1].name: np.ones(3)})))
    np.testing.assert_allclose(got["det"], [8.0])
    np.testing.assert_allclose(got["solve"], [[0.5, 0.5, 0.5]])
