"""Functional transforms (API.md section 3): jit, grad, value_and_grad, jvp, vjp, jacobians,
hessian, hvp, debug_expr, in concrete mode (numpy in, numpy out) and in graph mode."""

import numpy as np
import pytest

import graphad as ga
from graphad.numerics import check_grads, numerical_grad
from graphad.transforms import (
    ScalarOutputError,
    Traced,
    debug_expr,
    grad,
    hessian,
    hvp,
    jacfwd,
    jacrev,
    jit,
    jvp,
    value_and_grad,
    vjp,
)

# ---------------------------------------------------------------------------------------------
# Worked examples


def test_grad_of_cubic_sum():
    x = np.array([[1, 1], [2, 3], [5, 8]], np.float32)
    g = grad(lambda x: ga.sum(x**3 + x))(x)
    assert g.dtype == np.float32 and g.shape == (3, 2)
    np.testing.assert_allclose(g, [[4, 4], [13, 28], [76, 193]])


def test_value_and_grad_three_args():
    def f(x1, x2, x3):
        return 3 * (x1**2 + x2 * x3)

    value, grads = value_and_grad(f, argnums=(0, 1, 2))(2.0, 3.0, 4.0)
    assert float(value) == 48.0
    assert isinstance(grads, tuple) and len(grads) == 3
    np.testing.assert_allclose([float(g) for g in grads], [12, 12, 9])
    assert [float(g) for g in grad(f, argnums=(0, 1, 2))(2.0, 3.0, 4.0)] == [12, 12, 9]


def test_grad_tanh():
    assert float(grad(ga.tanh)(2.0)) == pytest.approx(0.0706508, rel=1e-5)


def test_polynomial_derivative():
    def f(x):
        return x**3 + 2 * x**2 - 3 * x + 1

    assert float(grad(f)(1.0)) == pytest.approx(4.0)


def test_sigmoid_value_and_derivative():
    v, d = value_and_grad(ga.sigmoid)(0.0)
    assert float(v) == pytest.approx(0.5) and float(d) == pytest.approx(0.25)


def _pair(x1, x2):
    return x1**2 + x2**2, x1 * x2


def test_jvp_vjp_of_pair_with_e1():
    x1, x2 = 3.0, 5.0
    out, tan = jvp(_pair, (x1, x2), (1.0, 0.0))
    np.testing.assert_allclose([float(o) for o in out], [34, 15])
    np.testing.assert_allclose([float(t) for t in tan], [2 * x1, x2])
    out, pullback = vjp(_pair, x1, x2)
    ct = pullback((1.0, 0.0))
    assert isinstance(ct, tuple) and len(ct) == 2
    np.testing.assert_allclose([float(c) for c in ct], [2 * x1, 2 * x2])


def test_jvp_vjp_vector_form():
    def f(x):
        return ga.stack([x[0] ** 2 + x[1] ** 2, x[0] * x[1]])

    x = np.array([3.0, 5.0], np.float32)
    e1 = np.array([1.0, 0.0], np.float32)
    _, t = jvp(f, (x,), (e1,))
    np.testing.assert_allclose(t, [6, 5])
    _, pullback = vjp(f, x)
    (c,) = pullback(e1)
    np.testing.assert_allclose(c, [6, 10])


# ---------------------------------------------------------------------------------------------
# Jacobians and Hessians agree with each other and with finite differences


def rosenbrock(x):
    return ga.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosenbrock_np(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosenbrock_hessian_np(x):
    n = len(x)
    h = np.zeros((n, n))
    for i in range(n - 1):
        h[i, i] += 1200 * x[i] ** 2 - 400 * x[i + 1] + 2
        h[i, i + 1] += -400 * x[i]
        h[i + 1, i] += -400 * x[i]
        h[i + 1, i + 1] += 200
    return h


def test_rosenbrock_hessian_all_ways():
    rng = np.random.default_rng(0)
    with ga.config.x64():
        x = rng.uniform(-1.5, 1.5, 50)
        want = rosenbrock_hessian_np(x)
        h1 = hessian(rosenbrock)(x)
        h2 = jacfwd(grad(rosenbrock))(x)
        h3 = jacrev(grad(rosenbrock))(x)
        assert h1.shape == (50, 50)
        for h in (h1, h2, h3):
            np.testing.assert_allclose(h, want, rtol=1e-10, atol=1e-8)
        v = rng.standard_normal(50)
        np.testing.assert_allclose(hvp(rosenbrock, (x,), (v,)), want @ v, rtol=1e-10, atol=1e-8)
        g = grad(rosenbrock)(x)
        num = numerical_grad(rosenbrock_np, (x,), method="five_point")[0]
        np.testing.assert_allclose(g, num, rtol=1e-7, atol=1e-6)
        # finite differences of the gradient give the Hessian too
        gf, h = grad(rosenbrock), 1e-6
        fd = np.stack([(gf(x + h * e) - gf(x - h * e)) / (2 * h) for e in np.eye(50)], axis=1)
        np.testing.assert_allclose(h1, fd, rtol=1e-6, atol=1e-4)


def _mlp_loss(w1, b1, w2, x, y):
    h = ga.tanh(x @ w1 + b1)
    return ga.mean((h @ w2 - y) ** 2)


def test_mlp_jacobians_agree():
    rng = np.random.default_rng(1)
    with ga.config.x64():
        w1, b1 = rng.standard_normal((3, 4)), rng.standard_normal(4)
        w2 = rng.standard_normal((4, 2))
        x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
        g = grad(_mlp_loss)(w1, b1, w2, x, y)
        jf = jacfwd(_mlp_loss)(w1, b1, w2, x, y)
        jr = jacrev(_mlp_loss)(w1, b1, w2, x, y)
        assert g.shape == jf.shape == jr.shape == (3, 4)
        np.testing.assert_allclose(jf, g, rtol=1e-10)
        np.testing.assert_allclose(jr, g, rtol=1e-10)
        h = hessian(_mlp_loss)(w1, b1, w2, x, y)
        assert h.shape == (3, 4, 3, 4)
        np.testing.assert_allclose(h, np.transpose(h, (2, 3, 0, 1)), atol=1e-12)
        v = rng.standard_normal((3, 4))
        hv = jvp(grad(_mlp_loss), (w1, b1, w2, x, y), (v, 0 * b1, 0 * w2, 0 * x, 0 * y))[1]
        np.testing.assert_allclose(np.tensordot(h, v, 2), hv, rtol=1e-9, atol=1e-12)
        # finite differences of the gradient
        eps = 1e-6
        num = np.zeros((3, 4))
        for idx in np.ndindex(3, 4):
            d = np.zeros((3, 4))
            d[idx] = eps
            num[idx] = (float(jit(_mlp_loss)(w1 + d, b1, w2, x, y))
                        - float(jit(_mlp_loss)(w1 - d, b1, w2, x, y))) / (2 * eps)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)
        check_grads(lambda w1: _mlp_loss(w1, b1, w2, x, y), (w1,), order=2)
        # a vector-valued layer: forward and reverse Jacobians agree
        layer = lambda x, w1: ga.tanh(x @ w1 + b1)  # noqa: E731
        np.testing.assert_allclose(jacfwd(layer, argnums=1)(x, w1),
                                   jacrev(layer, argnums=1)(x, w1), rtol=1e-10, atol=1e-14)


def test_jacobian_shapes_out_then_in():
    def f(x):
        return ga.stack([ga.sin(x), x * x])  # (2, 3)

    x = np.array([0.1, 0.2, 0.3], np.float32)
    jf, jr = jacfwd(f)(x), jacrev(f)(x)
    assert jf.shape == jr.shape == (2, 3, 3)
    want = np.stack([np.diag(np.cos(x)), np.diag(2 * x)])
    np.testing.assert_allclose(jf, want, rtol=1e-6)
    np.testing.assert_allclose(jr, want, rtol=1e-6)


def test_jacobian_argnums_tuple_and_pytree_output():
    def f(a, b):
        return {"s": a * b, "t": a + 2 * b}

    a = np.array([1.0, 2.0], np.float32)
    b = np.array([3.0, 4.0], np.float32)
    for jac in (jacfwd(f, argnums=(0, 1)), jacrev(f, argnums=(0, 1))):
        j = jac(a, b)
        np.testing.assert_allclose(j["s"][0], np.diag(b))
        np.testing.assert_allclose(j["s"][1], np.diag(a))
        np.testing.assert_allclose(j["t"][1], 2 * np.eye(2))


# ---------------------------------------------------------------------------------------------
# Composition, options, pytrees


def test_grad_of_grad_and_jacfwd_of_grad():
    def f(x):
        return x**4

    assert float(grad(grad(f))(2.0)) == pytest.approx(48.0)
    assert float(grad(grad(grad(f)))(2.0)) == pytest.approx(48.0)
    assert float(jacfwd(grad(f))(2.0)) == pytest.approx(48.0)
    x = np.array([1.0, 2.0], np.float32)
    np.testing.assert_allclose(jacfwd(grad(lambda v: ga.sum(v**3)))(x), np.diag(6 * x))


def test_has_aux():
    def f(x):
        return ga.sum(x**2), {"mean": ga.mean(x)}

    x = np.array([1.0, 2.0, 3.0], np.float32)
    g, aux = grad(f, has_aux=True)(x)
    np.testing.assert_allclose(g, 2 * x)
    assert float(aux["mean"]) == pytest.approx(2.0)
    (value, aux), g = value_and_grad(f, has_aux=True)(x)
    assert float(value) == pytest.approx(14.0)
    np.testing.assert_allclose(g, 2 * x)


def test_value_and_grad_transform():
    def f(x):
        return ga.sum(x**2)

    x = np.array([1.0, 2.0], np.float32)
    value, g = value_and_grad(f, transform=ga.sqrt)(x)
    assert float(value) == pytest.approx(5.0)  # untransformed
    np.testing.assert_allclose(g, x / np.sqrt(5.0), rtol=1e-6)


def test_pytree_arguments():
    def loss(params, batch):
        w, b = params["w"], params["b"]
        x, (y,) = batch[0], batch[1]
        return ga.sum((x * w + b[0] - y) ** 2)

    params = {"w": np.array([1.0, 2.0], np.float32), "b": [np.float32(0.5)]}
    batch = (np.array([1.0, -1.0], np.float32), [np.array([0.0, 1.0], np.float32)])
    g = grad(loss)(params, batch)
    assert set(g) == {"w", "b"} and isinstance(g["b"], list)
    r = np.array([1.0, -1.0]) * params["w"] + 0.5 - np.array([0.0, 1.0])
    np.testing.assert_allclose(g["w"], 2 * r * np.array([1.0, -1.0]), rtol=1e-6)
    np.testing.assert_allclose(g["b"][0], np.sum(2 * r), rtol=1e-6)
    g_all = grad(loss, argnums=(0, 1))(params, batch)
    assert isinstance(g_all, tuple) and isinstance(g_all[1], tuple)
    np.testing.assert_allclose(g_all[1][0], 2 * r * params["w"], rtol=1e-6)


def test_integer_inputs_give_float_gradients():
    g = grad(lambda x: x * x * 1.5)(3)
    assert g.dtype == np.float32 and float(g) == pytest.approx(9.0)
    gi = grad(lambda x: ga.sum(x**2))(np.array([1, 2, 3], np.int32))
    assert gi.dtype == np.float32
    np.testing.assert_allclose(gi, [2, 4, 6])


def test_unconnected_argument_gets_zeros():
    g = grad(lambda x, y: ga.sum(x * 2.0), argnums=(0, 1))(np.ones(2, np.float32),
                                                             np.ones(3, np.float32))
    np.testing.assert_allclose(g[1], np.zeros(3))
    assert g[1].dtype == np.float32


def test_stop_gradient_is_respected():
    def f(x):
        return x * ga.stop_gradient(x)

    assert float(grad(f)(3.0)) == pytest.approx(3.0)
    _, t = jvp(f, (3.0,), (1.0,))
    assert float(t) == pytest.approx(3.0)


def test_x64_dtypes():
    with ga.config.x64():
        g = grad(lambda x: x**3)(2.0)
        assert g.dtype == np.float64
    g = grad(lambda x: x**3)(np.float64(2.0))
    assert g.dtype == np.float32  # without x64 float64 inputs become float32 (as in JAX)


def test_non_scalar_output_error_names_shape():
    with pytest.raises(ScalarOutputError, match=r"\(3,\)"):
        grad(lambda x: x * 2.0)(np.ones(3, np.float32))
    with pytest.raises(TypeError):
        grad(lambda x: x * 2.0)(np.ones(3, np.float32))
    with pytest.raises(ValueError):
        grad(lambda x: x * 2.0)(np.ones(3, np.float32))


def test_argnums_out_of_range():
    with pytest.raises(ValueError, match="argnums"):
        grad(lambda x: x, argnums=2)(1.0)


# ---------------------------------------------------------------------------------------------
# jit, compile cache, Traced


def test_jit_cache_hits_and_retraces_per_signature():
    calls = []

    def f(x, y):
        calls.append(1)
        return x * y + 1.0

    jf = jit(f)
    a = np.arange(3, dtype=np.float32)
    np.testing.assert_allclose(jf(a, a), a * a + 1)
    np.testing.assert_allclose(jf(a + 1, a), (a + 1) * a + 1)
    assert len(calls) == 1
    jf(np.arange(4, dtype=np.float32), np.float32(2))
    assert len(calls) == 2
    jf(a, 2.0)  # Python float: a float32 scalar, a new signature
    jf(a, 3.0)
    assert len(calls) == 3


def test_grad_cache_hit_counts_traces():
    calls = []

    def f(x):
        calls.append(1)
        return ga.sum(ga.sin(x))

    gf = grad(f)
    x = np.linspace(0, 1, 4).astype(np.float32)
    gf(x)
    gf(x + 1)
    assert len(calls) == 1
    grad(f)(x)  # the same transform of the same function shares the cache
    assert len(calls) == 1


def test_jit_static_leaves_and_outputs():
    def f(x, mode, scale=2.0):
        return {"y": x * scale if mode == "mul" else x + scale, "x": x, "c": 1.0}

    x = np.array([1.0, 2.0], np.float32)
    out = jit(f)(x, "mul")
    np.testing.assert_allclose(out["y"], [2, 4])
    np.testing.assert_allclose(out["x"], x)  # an input returned as is
    np.testing.assert_allclose(jit(f)(x, "add")["y"], [3, 4])


def test_jit_static_argnums():
    def f(x, n):
        out = x
        for _ in range(n):
            out = out * x
        return out

    jf = jit(f, static_argnums=1)
    assert float(jf(2.0, 3)) == 16.0
    assert float(jf(2.0, 1)) == 4.0


def test_traced_object(tmp_path):
    def f(x, y):
        return ga.sin(x) * y

    tr = jit(f).trace(np.zeros(3, np.float32), ga.TensorType((None,), "float32"))
    assert isinstance(tr, Traced)
    assert [t.shape for t in tr.inputs] == [(3,), (None,)]
    assert [t.name for t in tr.inputs] == ["x", "y"]
    assert isinstance(tr.outputs, ga.Tensor) and tr.outputs.graph is tr.graph
    text = tr.text()
    assert "sin" in text and "return" in text
    model = tr.to_onnx(path=tmp_path / "f.onnx")
    assert (tmp_path / "f.onnx").exists()
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    xv = np.array([0.1, 0.2, 0.3], np.float32)
    (out,) = sess.run(None, {"x": xv, "y": np.full(3, 2.0, np.float32)})
    np.testing.assert_allclose(out, 2 * np.sin(xv), rtol=1e-6)


def test_debug_expr():
    text = debug_expr(lambda x: ga.exp(x) * 2.0)(np.ones(2, np.float32))
    assert isinstance(text, str) and "exp" in text and "multiply" in text
    assert repr(text) == str(text)


# ---------------------------------------------------------------------------------------------
# Graph mode: Tensors in, Tensors out


def test_graph_mode_transforms():
    with ga.Graph() as g:
        x = ga.placeholder((3,), ga.float32, name="x")
        y = ga.placeholder((), ga.float32, name="y")

        def f(x, y):
            return ga.sum(ga.sin(x) * y)

        gx = grad(f)(x, y)
        gxy = grad(f, argnums=(0, 1))(x, y)
        v, gv = value_and_grad(f)(x, y)
        _, t = jvp(f, (x, y), (ga.ones_like(x), 0.0))
        out, pullback = vjp(lambda x: ga.sin(x), x)
        (ct,) = pullback(np.ones(3, np.float32))
        jf = jacfwd(lambda x: ga.sin(x))(x)
        jr = jacrev(lambda x: ga.sin(x))(x)
        h = hessian(f)(x, y)
        jitted = jit(f)(x, y)
        for t_ in (gx, gxy[0], gxy[1], v, gv, t, ct, jf, jr, h, jitted):
            assert isinstance(t_, ga.Tensor) and t_.graph is g
    xv, yv = np.array([0.1, 0.2, 0.3], np.float32), np.float32(2.0)
    with ga.Session(g) as sess:
        r = sess.run({"gx": gx, "gy": gxy[1], "t": t, "ct": ct, "jf": jf, "jr": jr, "h": h},
                     {x: xv, y: yv})
    np.testing.assert_allclose(r["gx"], 2 * np.cos(xv), rtol=1e-6)
    assert float(r["gy"]) == pytest.approx(np.sum(np.sin(xv)), rel=1e-6)
    assert float(r["t"]) == pytest.approx(2 * np.sum(np.cos(xv)), rel=1e-6)
    np.testing.assert_allclose(r["ct"], np.cos(xv), rtol=1e-6)
    np.testing.assert_allclose(r["jf"], np.diag(np.cos(xv)), rtol=1e-6)
    np.testing.assert_allclose(r["jr"], np.diag(np.cos(xv)), rtol=1e-6)
    np.testing.assert_allclose(r["h"], np.diag(-2 * np.sin(xv)), rtol=1e-6)


def test_graph_mode_unknown_batch_dim():
    with ga.Graph() as g:
        x = ga.placeholder((None, 2), ga.float32, name="x")
        gx = grad(lambda x: ga.sum(x**2))(x)
        assert gx.shape == (None, 2)
    xv = np.arange(6, dtype=np.float32).reshape(3, 2)
    with ga.Session(g) as sess:
        np.testing.assert_allclose(sess.run(gx, {x: xv}), 2 * xv)


def test_vjp_fn_concrete_then_graph_cotangent():
    out, pullback = vjp(lambda x: x * 3.0, np.float32(2.0))
    assert float(out) == 6.0
    assert float(pullback(np.float32(1.0))[0]) == 3.0
    with ga.Graph() as g:
        c = ga.placeholder((), ga.float32, name="c")
        (gc,) = pullback(c)
        assert isinstance(gc, ga.Tensor)
    with ga.Session(g) as sess:
        assert float(sess.run(gc, {c: 2.0})) == 6.0


def test_jacobian_needs_static_shapes_and_sparsity_none():
    with ga.Graph():
        x = ga.placeholder((None,), ga.float32, name="x")
        with pytest.raises(ga.ShapeError, match=r"\(\?,\)"):
            jacfwd(ga.sin)(x)
        with pytest.raises(ga.ShapeError, match="static"):
            jacrev(ga.sin)(x)
    x = np.array([0.5, 1.0], np.float32)
    np.testing.assert_allclose(jacfwd(ga.sin, sparsity=None)(x), np.diag(np.cos(x)), rtol=1e-6)
    np.testing.assert_allclose(jacrev(ga.sin, sparsity=None)(x), np.diag(np.cos(x)), rtol=1e-6)
    h = hessian(lambda x: ga.sum(ga.sin(x)), sparsity=None)(x)
    np.testing.assert_allclose(h, np.diag(-np.sin(x)), rtol=1e-6)


def test_python_scalar_outputs_get_default_dtypes():
    out = jit(lambda x: (x, 3.0, 2, True))(1.0)
    assert [o.dtype for o in out] == [np.float32, np.float32, np.int32, np.bool_]
    assert float(grad(lambda x: 3.0)(1.0)) == 0.0
