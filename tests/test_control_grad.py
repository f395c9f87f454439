"""Derivatives through while_loop / fori_loop / scan / cond: reverse, forward and second order,
against float64 finite differences (interpreter and onnxruntime), closed forms, and JAX."""

import numpy as np
import pytest
from test_control_helpers import check_derivatives, x64  # noqa: F401

import graphad as ga
from graphad.interpret import evaluate

W33 = np.array([[0.5, -0.3, 0.2], [0.1, 0.4, -0.6], [-0.2, 0.3, 0.1]])


def _euler(x, w, checkpoint=None):
    """x <- x + 0.1 tanh(W x) while t < 1 (a data-dependent trip count)."""
    def body(s):
        v, t = s
        return v + 0.1 * ga.tanh(w @ v), t + 0.1

    v, _ = ga.while_loop(lambda s: s[1] < 0.95, body, (x, ga.constant(0.0, ga.float64)),
                         checkpoint=checkpoint)
    return ga.sum(v * v)


def test_while_loop_euler_wrt_init_and_captured_matrix():
    check_derivatives(_euler, [np.array([0.3, -0.2, 0.5]), W33])


def test_while_loop_trip_count_depends_on_x():
    def f(x):
        s = ga.while_loop(lambda s: s[1] < 10.0,
                          lambda s: (s[0] * x, s[1] + ga.abs(s[0])),
                          (x, ga.constant(0.0, ga.float64)))
        return s[0] + s[1]

    for x0 in (1.1, 1.3, 2.5):  # 9, 6 and 2 trips
        check_derivatives(f, [x0])


@pytest.mark.parametrize("n", [0, 1, 2, 5, 20])
def test_nx_1747_power_by_repeated_multiplication(x64, n):
    """acc = acc * x, n times from acc = 1 (a while loop on a counter): n x^(n-1)."""
    def f(x):
        _, acc = ga.while_loop(lambda s: s[0] < n, lambda s: (s[0] + 1, s[1] * x),
                               (ga.constant(0, ga.int64), ga.ones_like(x)))
        return acc

    for x0 in (0.7, 1.5):
        d1 = ga.grad(f)(x0)
        d2 = ga.grad(ga.grad(f))(x0)
        np.testing.assert_allclose(d1, n * x0 ** (n - 1) if n else 0.0, rtol=1e-12)
        np.testing.assert_allclose(d2, n * (n - 1) * x0 ** (n - 2) if n > 1 else 0.0,
                                   rtol=1e-12)
        _, t = ga.jvp(f, (x0,), (1.0,))
        np.testing.assert_allclose(t, n * x0 ** (n - 1) if n else 0.0, rtol=1e-12)


def _newton_sqrt(a):
    def body(s):
        x, _, k = s
        xn = 0.5 * (x + a / x)
        return xn, ga.abs(xn - x), k + 1

    x, _, k = ga.while_loop(lambda s: s[1] > 1e-13, body,
                            (a, ga.constant(1.0, ga.float64), ga.constant(0, ga.int64)))
    return x, k


def test_newton_iteration_to_tolerance(x64):
    trips = set()
    for a in (0.25, 2.0, 9.0, 1e4):
        with ga.Graph():
            p = ga.placeholder((), ga.float64)
            x, k = _newton_sqrt(p)
            (d,) = ga.gradients(x, [p])
            (d2,) = ga.gradients(d, [p])
            got = ga.Session().run([x, d, d2, k], {p: a})
        trips.add(int(got[3]))
        np.testing.assert_allclose(got[0], np.sqrt(a), rtol=1e-12)
        np.testing.assert_allclose(got[1], 0.5 / np.sqrt(a), rtol=1e-9)
        np.testing.assert_allclose(got[2], -0.25 * a ** -1.5, rtol=1e-7)
    assert len(trips) > 1  # the trip count changes with the input
    check_derivatives(lambda a: _newton_sqrt(a)[0], [3.0])


def test_max_iterations_gradient():
    check_derivatives(lambda x: ga.while_loop(lambda v: v < 1e9, lambda v: v * x + 0.1, x,
                                              max_iterations=4), [1.5])


def test_fori_loop_uses_index_and_tensor_bounds():
    check_derivatives(lambda x: ga.fori_loop(1, 5, lambda i, v: v * x + ga.cast(i, ga.float64)
                                             * ga.sin(v), x), [0.7])

    def f(x):
        n = ga.cast(ga.floor(x * 3.0), ga.int64)  # 4 trips at x = 1.5 (no derivative)
        return ga.fori_loop(0, n, lambda i, v: ga.sin(v) * x, x)

    check_derivatives(f, [1.5])


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_wrt_init_xs_and_captures(reverse):
    weights = np.arange(10.0).reshape(5, 2)

    def f(c0, xs, w):
        c, ys = ga.scan(lambda c, x: (ga.tanh(c * w + x), (c * x, ga.sum(c))), c0, xs,
                        reverse=reverse)
        return ga.sum(c) + ga.sum(ys[0] * ys[0] * ga.constant(weights)) + ga.sum(ys[1])

    check_derivatives(f, [np.array([0.1, 0.2]), np.arange(10.0).reshape(5, 2) * 0.1,
                          np.array([0.5, -0.3])])


def test_nested_loops_and_captures():
    def f(x, w):
        def outer(i, v):
            return ga.fori_loop(0, 3, lambda j, u: ga.sin(u * w) + x, v)

        return ga.sum(ga.fori_loop(0, 2, outer, x))

    check_derivatives(f, [np.array([0.4, 0.5]), np.array([1.1, 0.9])])

    def g(x):
        def body(s):
            i, v = s
            return i + 1, ga.while_loop(lambda u: u < 4.0, lambda u: u * x, v) / 3.0

        return ga.while_loop(lambda s: s[0] < 3, body, (ga.constant(0, ga.int64), x))[1]

    check_derivatives(g, [1.7])


def test_loop_in_cond_and_cond_in_loop():
    def f(x, w):
        return ga.cond(x > 0, lambda v: ga.fori_loop(0, 3, lambda i, u: ga.sin(u) * w, v),
                       lambda v: v * v * w, x)

    check_derivatives(f, [0.7, 1.3])
    check_derivatives(f, [-0.7, 1.3])

    def g(x, w):
        return ga.fori_loop(0, 4, lambda i, u: ga.cond(i < 2, lambda a: ga.sin(a) * w,
                                                       lambda a: a * a + w, u), x)

    check_derivatives(g, [0.7, 1.3])


def test_cond_derivatives_wrt_captures():
    def f(x, w):
        return ga.cond(ga.sum(x) > 0, lambda a: ga.sum(a * w), lambda a: ga.sum(ga.exp(a)), x)

    check_derivatives(f, [np.array([0.3, 0.4]), np.array([1.5, -2.0])])
    check_derivatives(f, [np.array([-0.3, 0.1]), np.array([1.5, -2.0])])


def test_gradient_wrt_variable_captured_by_loop():
    with ga.Graph():
        w = ga.Variable(np.float32(0.5), name="w")
        x = ga.placeholder((), name="x")
        y = ga.fori_loop(0, 3, lambda i, v: v * w + 1.0, x)
        (dw,) = ga.gradients(y, [w])
        got = ga.Session().run([y, dw], {x: 2.0})
    # y = x w^3 + w^2 + w + 1
    np.testing.assert_allclose(got, [2 * 0.125 + 0.25 + 0.5 + 1, 3 * 2 * 0.25 + 2 * 0.5 + 1],
                               rtol=1e-6)


def test_unconnected_and_integer_carries(x64):
    def f(x):
        _, v, c = ga.fori_loop(0, 3, lambda i, s: (s[0] + 1, s[1] * x, s[2] * 2.0),
                               (ga.constant(0, ga.int64), x, ga.constant(1.0, ga.float64)))
        return v + c

    np.testing.assert_allclose(ga.grad(f)(2.0), 4 * 2.0 ** 3)  # v = x^4, c = 8
    np.testing.assert_allclose(ga.grad(ga.grad(f))(2.0), 12 * 2.0 ** 2)


def test_functional_transforms_through_loops(x64):
    def f(x):
        return ga.sum(ga.fori_loop(0, 3, lambda i, v: ga.sin(v) * x + v, x))

    x0 = np.array([0.3, 0.7])
    h = ga.hessian(f)(x0)
    hv = ga.hvp(f, (x0,), (np.array([1.0, -1.0]),))
    np.testing.assert_allclose(hv, h @ np.array([1.0, -1.0]), rtol=1e-10)
    jf = ga.jacfwd(ga.grad(f))(x0)
    np.testing.assert_allclose(jf, h, rtol=1e-10)
    np.testing.assert_allclose(h, h.T, rtol=1e-10)


# ---------------------------------------------------------------------------------------------
# JAX as an oracle (same programs with a static trip count)


@pytest.fixture
def jax64():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    return jax


def test_fori_loop_against_jax(jax64, x64):
    jnp = jax64.numpy

    def body_np(ops):
        return lambda i, v: v + 0.1 * ops.tanh(v @ w_of(ops)) * ops.cos(v)

    w = W33

    def w_of(ops):
        return w if ops is jnp else ga.constant(w)

    def f_ga(x):
        return ga.sum(ga.fori_loop(0, 25, body_np(ga), x) ** 2)

    def f_jax(x):
        return jnp.sum(jax64.lax.fori_loop(0, 25, body_np(jnp), x) ** 2)

    x0 = np.array([0.3, -0.2, 0.5])
    np.testing.assert_allclose(ga.grad(f_ga)(x0), jax64.grad(f_jax)(x0), rtol=1e-10)
    np.testing.assert_allclose(ga.hessian(f_ga)(x0), jax64.hessian(f_jax)(x0), rtol=1e-9)
    t = np.array([1.0, 0.5, -0.25])
    np.testing.assert_allclose(ga.jvp(f_ga, (x0,), (t,))[1], jax64.jvp(f_jax, (x0,), (t,))[1],
                               rtol=1e-10)


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_against_jax(jax64, x64, reverse):
    jnp = jax64.numpy

    def step(ops):
        def f(c, x):
            h = ops.tanh(c * x[0] + x[1])
            return h, h * c
        return f

    def f_ga(c0, xs):
        c, ys = ga.scan(step(ga), c0, xs, reverse=reverse)
        return ga.sum(c) + ga.sum(ys ** 2)

    def f_jax(c0, xs):
        c, ys = jax64.lax.scan(step(jnp), c0, xs, reverse=reverse)
        return jnp.sum(c) + jnp.sum(ys ** 2)

    c0 = np.array([0.1, -0.4])
    xs = np.random.default_rng(1).normal(size=(7, 2, 2))
    got = ga.grad(f_ga, argnums=(0, 1))(c0, xs)
    want = jax64.grad(f_jax, argnums=(0, 1))(c0, xs)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    hv = ga.hvp(lambda c: f_ga(c, xs), (c0,), (np.array([1.0, 2.0]),))
    hj = jax64.jvp(jax64.grad(lambda c: f_jax(c, xs)), (c0,), (np.array([1.0, 2.0]),))[1]
    np.testing.assert_allclose(hv, hj, rtol=1e-9)


def test_while_loop_against_jax_fori(jax64, x64):
    """graphad reverses the data-dependent while loop; JAX needs the static count."""
    jnp = jax64.numpy
    x0 = np.array([0.3, -0.2, 0.5])
    got = ga.grad(_euler, argnums=(0, 1))(x0, W33)

    def f_jax(x, w):
        v = jax64.lax.fori_loop(0, 10, lambda i, v: v + 0.1 * jnp.tanh(w @ v), x)
        return jnp.sum(v * v)

    want = jax64.grad(f_jax, argnums=(0, 1))(x0, W33)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10)


# ---------------------------------------------------------------------------------------------
# what the reverse pass builds


def test_reverse_pass_is_linear_in_trip_count(x64):
    """The tape has one row per trip and the backward loop runs once per trip (O(T))."""
    sizes = []
    for steps in (10, 40):
        with ga.Graph() as g:
            x = ga.placeholder((3,), ga.float64)
            v = ga.fori_loop(0, steps, lambda i, v: v + 0.1 * ga.tanh(ga.constant(W33) @ v), x)
            (gx,) = ga.gradients(ga.sum(v), [x])
            tapes = [t for n in g.nodes if n.op == "loop" and "tape_of" in n.attrs
                     for t in n.outputs[n.attrs["n_carried"]:]]
            vals = evaluate(tapes + [gx], {x: np.ones(3)})
        sizes.append(sum(a.size for a in vals[:-1]))
    assert sizes[1] == 4 * sizes[0]
