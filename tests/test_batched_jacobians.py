"""Dense Jacobians with every basis direction pushed through one batched JVP/VJP
(graphad/batched.py): same values as finite differences and as each other, one graph of about
the size of one JVP, and a correct fallback where an op has no batching rule."""

import numpy as np
import pytest

import graphad as ga
from graphad.numerics import numerical_grad

RNG = np.random.default_rng(7)


def _fd_jacobian(f, x):
    """Central-difference Jacobian in float64, shape out.shape + x.shape."""
    out = np.asarray(f(x))
    jac = np.zeros(out.shape + x.shape)
    eps = 1e-6
    for k in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[k] = eps
        jac[(Ellipsis,) + k] = (np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * eps)
    return jac


# one function per batching rule the derivatives of common programs need
CASES = {
    "slice_pad": lambda x: (x[1:] - x[:-1] ** 2) ** 2,
    "reshape_transpose": lambda x: ga.transpose(ga.reshape(ga.sin(x), (2, 3))) * 2.0,
    "broadcast_sum_mean": lambda x: ga.broadcast_to(ga.mean(x ** 2), (4,)) + ga.sum(ga.exp(x)),
    "concat_stack": lambda x: ga.concat([ga.stack([x, x ** 2], 0), ga.tanh(x)[None, :]], 0),
    "tile_gather": lambda x: ga.gather(ga.tile(x * x, (2,)), ga.constant(np.array([0, 7, 3]))),
    "softmax_family": lambda x: ga.softmax(x) + ga.log_softmax(x * 2.0) + ga.logsumexp(x),
    "matmul_matvec": lambda x: ga.constant(np.arange(12.0).reshape(2, 6)) @ ga.sin(x),
    "outer": lambda x: ga.reshape(ga.expand_dims(x, 1) @ ga.expand_dims(ga.cos(x), 0), (-1,)),
    "pad_where": lambda x: ga.where(x > 0.1, ga.pad(x, [(1, 2)])[1:7], -x),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_batched_jacobians_match_finite_differences(name):
    f = CASES[name]
    x = RNG.uniform(-1.0, 1.0, 6)
    with ga.config.x64():
        want = _fd_jacobian(ga.jit(f), x)
        fwd = ga.jacfwd(f)(x)
        rev = ga.jacrev(f)(x)
    np.testing.assert_allclose(fwd, want, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(rev, want, atol=1e-6, rtol=1e-6)
    for transform in (ga.jacfwd, ga.jacrev):  # the batched path was taken, not the fallback
        model = ga.jit(transform(f)).trace(x.astype(np.float32)).to_onnx()
        assert len(model.graph.node) < 60, (transform.__name__, len(model.graph.node))


def test_mlp_hessian_batched_matches_finite_differences():
    w2 = RNG.normal(size=(4, 3))
    xb = RNG.normal(size=(5, 3))

    def loss(w1):
        h = ga.tanh(xb @ w1)
        return ga.mean(ga.log_softmax(h @ w2, axis=1) ** 2)

    w1 = RNG.normal(size=(3, 4))
    with ga.config.x64():
        hess = ga.hessian(loss)(w1)
        want = _fd_jacobian(ga.jit(ga.grad(loss)), w1)
        (g_fd,) = numerical_grad(loss, (w1,))
        np.testing.assert_allclose(ga.grad(loss)(w1), g_fd, atol=1e-7)
    assert hess.shape == (3, 4, 3, 4)
    np.testing.assert_allclose(hess, want, atol=1e-6)
    np.testing.assert_allclose(hess, np.swapaxes(np.swapaxes(hess, 0, 2), 1, 3), atol=1e-10)


def test_hessian_graph_is_one_batched_jvp():
    """n = 100 directions: without batching the Hessian graph has ~100 JVP copies (1,300 ONNX
    nodes); batched it stays the size of one HVP."""
    def rosen(x):
        return ga.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    model = ga.jit(ga.hessian(rosen)).trace(np.ones(100, np.float32)).to_onnx()
    assert len(model.graph.node) < 80, len(model.graph.node)


def test_batched_copies_are_tagged_for_pictures():
    g = ga.Graph()
    with g:
        x = ga.placeholder((4,), ga.float32)
        jac = ga.jacfwd(lambda v: ga.sin(v) * v)(x)
    assert jac.shape == (4, 4)
    assert any(n.tags.get("batched") for n in g.nodes)


def test_fallback_through_a_loop_is_still_correct():
    """A while_loop on the seed's path has no batching rule: one JVP per direction instead."""
    def f(x):
        return ga.fori_loop(0, 3, lambda i, v: ga.sin(v) * x, x)

    x = RNG.uniform(-1.0, 1.0, 4)
    with ga.config.x64():
        want = _fd_jacobian(ga.jit(f), x)
        np.testing.assert_allclose(ga.jacfwd(f)(x), want, atol=1e-6)
        np.testing.assert_allclose(ga.jacrev(f)(x), want, atol=1e-6)


def test_pytree_and_argnums_blocks():
    def f(a, b):
        return {"p": ga.sin(a) * b[0], "q": ga.sum(a) * b}

    a = RNG.uniform(size=3)
    b = RNG.uniform(size=2)
    with ga.config.x64():
        jf = ga.jacfwd(f, argnums=(0, 1))(a, b)
        jr = ga.jacrev(f, argnums=(0, 1))(a, b)
    for k in ("p", "q"):
        for i in range(2):
            np.testing.assert_allclose(jf[k][i], jr[k][i], atol=1e-12)
    assert jf["p"][0].shape == (3, 3) and jf["q"][1].shape == (2, 2)
    np.testing.assert_allclose(jf["q"][1], np.eye(2) * a.sum(), atol=1e-12)
