"""custom_jvp (with reverse mode derived from the JVP rule), custom_vjp and checkpoint."""

import numpy as np
import pytest

import graphad as ga
from graphad.custom import checkpoint, checkpoint_policies, custom_jvp, custom_vjp
from graphad.numerics import check_grads
from graphad.passes.autodiff import gradients
from graphad.transforms import grad, hessian, jacfwd, jacrev, jit, jvp, value_and_grad, vjp


@custom_jvp
def sin_times(x, y):
    return ga.sin(x) * y


@sin_times.defjvp
def _sin_times_jvp(primals, tangents):
    x, y = primals
    x_dot, y_dot = tangents
    return sin_times(x, y), ga.cos(x) * x_dot * y + ga.sin(x) * y_dot


def test_custom_jvp_worked_example():
    out, t = jvp(sin_times, (2.0, 3.0), (1.0, 0.0))
    assert float(out) == pytest.approx(2.7278922, rel=1e-6)
    assert float(t) == pytest.approx(-1.2484405, rel=1e-6)


def test_custom_jvp_reverse_mode_is_derived():
    gx, gy = grad(sin_times, argnums=(0, 1))(2.0, 3.0)
    assert float(gx) == pytest.approx(3 * np.cos(2.0), rel=1e-6)
    assert float(gy) == pytest.approx(np.sin(2.0), rel=1e-6)
    x = np.array([0.5, 1.0, 2.0], np.float32)
    (cx, cy) = vjp(sin_times, x, np.float32(3.0))[1](np.ones(3, np.float32))
    np.testing.assert_allclose(cx, 3 * np.cos(x), rtol=1e-6)
    assert float(cy) == pytest.approx(np.sum(np.sin(x)), rel=1e-6)


def test_custom_jvp_rule_is_used_not_the_function():
    @custom_jvp
    def f(x):
        return ga.sin(x)

    @f.defjvp
    def f_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return f(x), 10.0 * t  # deliberately not cos(x): proves the rule is what runs

    assert float(jvp(f, (1.0,), (1.0,))[1]) == pytest.approx(10.0)
    assert float(grad(f)(1.0)) == pytest.approx(10.0)
    assert float(jit(f)(1.0)) == pytest.approx(np.sin(1.0))


def test_custom_jvp_stable_log1pexp_second_order():
    @custom_jvp
    def log1pexp(x):
        return ga.log(1.0 + ga.exp(x))

    @log1pexp.defjvp
    def _rule(primals, tangents):
        (x,), (t,) = primals, tangents
        return log1pexp(x), t * ga.sigmoid(x)

    with ga.config.x64():
        assert float(grad(log1pexp)(100.0)) == pytest.approx(1.0)
        assert float(grad(grad(log1pexp))(0.0)) == pytest.approx(0.25)
        assert float(jacfwd(grad(log1pexp))(0.0)) == pytest.approx(0.25)
        check_grads(log1pexp, (0.3,), order=2)


def test_custom_jvp_nondiff_argnums_and_defjvps():
    def scaled(n, x):
        return x * n

    f = custom_jvp(scaled, nondiff_argnums=(0,))
    f.defjvp(lambda n, primals, tangents: (f(n, *primals), tangents[0] * n))
    assert float(grad(f, argnums=1)(3.0, 2.0)) == pytest.approx(3.0)

    g = custom_jvp(lambda x, y: x * y)
    g.defjvps(lambda t, out, x, y: t * y, lambda t, out, x, y: t * x)
    gx, gy = grad(g, argnums=(0, 1))(2.0, 5.0)
    assert (float(gx), float(gy)) == (5.0, 2.0)


def test_custom_jvp_graph_mode():
    with ga.Graph() as gr:
        x = ga.placeholder((), ga.float32, name="x")
        y = ga.placeholder((), ga.float32, name="y")
        out = sin_times(x, y)
        (gx,) = gradients(out, [x])
        ops = [n.op for n in gr.nodes]
        assert "custom_jvp_call" in ops
    with ga.Session(gr) as sess:
        o, g = sess.run([out, gx], {x: 2.0, y: 3.0})
    assert float(o) == pytest.approx(3 * np.sin(2.0), rel=1e-6)
    assert float(g) == pytest.approx(3 * np.cos(2.0), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# custom_vjp


@custom_vjp
def clip_gradient(x):
    return x * 1.0


def _clip_fwd(x):
    return x * 1.0, None


def _clip_bwd(res, g):
    return (ga.clip(g, -1.0, 1.0),)


clip_gradient.defvjp(_clip_fwd, _clip_bwd)


def test_custom_vjp_uses_bwd():
    g = grad(lambda x: ga.sum(clip_gradient(x) * 5.0))(np.array([1.0, 2.0], np.float32))
    np.testing.assert_allclose(g, [1.0, 1.0])
    # forward mode differentiates fwd's own computation
    assert float(jvp(clip_gradient, (2.0,), (3.0,))[1]) == 3.0


def test_custom_vjp_residuals_and_pytrees():
    @custom_vjp
    def f(params, x):
        return ga.sin(params["w"] * x)

    def fwd(params, x):
        wx = params["w"] * x
        return ga.sin(wx), (ga.cos(wx), params["w"], x, "static tag")

    def bwd(res, g):
        c, w, x, tag = res
        assert tag == "static tag"
        return {"w": ga.sum(g * c * x)}, g * c * w

    f.defvjp(fwd, bwd)
    params = {"w": np.float32(0.7)}
    x = np.array([0.1, 0.5, 1.0], np.float32)
    gp, gx = grad(lambda p, x: ga.sum(f(p, x)), argnums=(0, 1))(params, x)
    np.testing.assert_allclose(gx, 0.7 * np.cos(0.7 * x), rtol=1e-6)
    assert float(gp["w"]) == pytest.approx(np.sum(x * np.cos(0.7 * x)), rel=1e-6)


def test_custom_vjp_wrong_bwd_fails_check_grads():
    @custom_vjp
    def f(x):
        return ga.sin(x)

    f.defvjp(lambda x: (ga.sin(x), x), lambda x, g: (g * ga.sin(x),))  # wrong: should be cos
    check_grads(f, (np.array([0.3, 0.8]),), modes=("fwd",))  # fwd differentiates fwd: right
    with pytest.raises(AssertionError, match="mismatch"):
        check_grads(f, (np.array([0.3, 0.8]),), modes=("rev",))


def test_custom_vjp_bad_bwd_arity():
    @custom_vjp
    def f(x, y):
        return x * y

    f.defvjp(lambda x, y: (x * y, (x, y)), lambda res, g: (g * res[1],))
    with pytest.raises(TypeError, match="one entry per argument"):
        grad(f)(1.0, 2.0)


# ---------------------------------------------------------------------------------------------
# checkpoint


def _block(w, x):
    h = ga.tanh(x @ w)
    return ga.tanh(h @ w)


def _loss(f, w, x):
    return ga.sum(f(w, x) ** 2)


def test_checkpoint_same_values_and_gradients():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 4)).astype(np.float32) * 0.5
    x = rng.standard_normal((3, 4)).astype(np.float32)
    ck = checkpoint(_block)
    np.testing.assert_allclose(jit(ck)(w, x), jit(_block)(w, x),
                               rtol=1e-6)
    g_plain = grad(lambda w, x: _loss(_block, w, x))(w, x)
    g_ck = grad(lambda w, x: _loss(ck, w, x))(w, x)
    np.testing.assert_allclose(g_ck, g_plain, rtol=1e-5, atol=1e-6)
    _, pull = vjp(ck, w, x)
    np.testing.assert_allclose(pull(np.ones((3, 4), np.float32))[0],
                               vjp(_block, w, x)[1](np.ones((3, 4), np.float32))[0], rtol=1e-5)


def test_checkpoint_really_recomputes():
    def count(f):
        with ga.Graph():
            w = ga.placeholder((4, 4), ga.float32, name="w")
            x = ga.placeholder((3, 4), ga.float32, name="x")
            loss = _loss(f, w, x)
            (gw,) = gradients(loss, [w])
            g = w.graph
            recomputed = [n for n in g.nodes if n.tags.get("recompute")]
            return len(g.nodes), recomputed

    n_plain, rec_plain = count(_block)
    n_ck, rec_ck = count(checkpoint(_block))
    assert not rec_plain
    assert n_ck > n_plain
    ops = sorted(n.op for n in rec_ck)
    assert ops == ["matmul", "matmul", "remat_barrier", "remat_barrier", "tanh", "tanh"]


def test_checkpoint_recomputes_in_onnxruntime_too(tmp_path):
    """onnxruntime's own CSE must not merge the recomputed nodes back (the barrier's job)."""
    import onnx
    import onnxruntime as ort

    ck = checkpoint(_block)
    tr = grad(lambda w, x: _loss(ck, w, x)).trace(np.zeros((4, 4), np.float32),
                                                   np.zeros((3, 4), np.float32))
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(tr.to_onnx().SerializeToString(), so,
                         providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "opt.onnx"))
    assert sum(n.op_type == "Tanh" for n in optimized.graph.node) == 4


def test_checkpoint_policy_saves_dots():
    with ga.Graph() as g:
        w = ga.placeholder((4, 4), ga.float32, name="w")
        x = ga.placeholder((3, 4), ga.float32, name="x")
        loss = _loss(checkpoint(_block, policy=checkpoint_policies.dots_saveable), w, x)
        gradients(loss, [w])
        rec = sorted(n.op for n in g.nodes if n.tags.get("recompute"))
    # both products saved; the tanh nodes are recomputed, reading them through barriers
    assert rec == ["remat_barrier", "remat_barrier", "tanh", "tanh"]


def test_checkpoint_second_order_and_forward():
    ck = checkpoint(lambda x: ga.sin(x) * x)
    assert float(grad(grad(ck))(1.0)) == pytest.approx(2 * np.cos(1.0) - np.sin(1.0), rel=1e-5)
    assert float(jvp(ck, (1.0,), (1.0,))[1]) == pytest.approx(np.cos(1.0) + np.sin(1.0),
                                                               rel=1e-6)
    x = np.array([0.2, 0.4], np.float32)
    np.testing.assert_allclose(jacrev(ck)(x), jacfwd(ck)(x), rtol=1e-6)
    v, g = value_and_grad(lambda x: ga.sum(ck(x)))(x)
    np.testing.assert_allclose(g, np.cos(x) * x + np.sin(x), rtol=1e-6)
    np.testing.assert_allclose(hessian(lambda x: ga.sum(ck(x)))(x),
                               np.diag(2 * np.cos(x) - x * np.sin(x)), rtol=1e-5)


def test_custom_vjp_nondiff_argnums():
    def power(n, x):
        return x**n

    f = custom_vjp(power, nondiff_argnums=(0,))
    f.defvjp(lambda n, x: (x**n, x), lambda n, x, g: (g * n * x ** (n - 1),))
    assert float(grad(f, argnums=1)(3, 2.0)) == pytest.approx(12.0)
    assert float(jit(f, static_argnums=0)(3, 2.0)) == pytest.approx(8.0)
