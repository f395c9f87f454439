"""fixed_point and root: solutions, implicit-function-theorem derivatives (both modes, second
order) against closed forms and finite differences, the dense and iterative adjoints, errors."""

import numpy as np
import pytest
from test_control_helpers import check_derivatives, x64  # noqa: F401

import graphad as ga
from graphad.interpret import evaluate
from graphad.ops import implicit

A3 = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]])
M2 = np.array([[0.3, 0.1], [0.05, 0.2]])


@pytest.mark.parametrize("a", [0.5, 2.0, 100.0])
def test_sqrt_by_newton(x64, a):
    def f(a):
        return ga.root(lambda x, a: x * x - a, 1.0, a, tol=1e-12)

    np.testing.assert_allclose(ga.jit(f)(a), np.sqrt(a), rtol=1e-12)
    np.testing.assert_allclose(ga.grad(f)(a), 0.5 / np.sqrt(a), rtol=1e-10)
    np.testing.assert_allclose(ga.grad(ga.grad(f))(a), -0.25 * a ** -1.5, rtol=1e-8)
    np.testing.assert_allclose(ga.jvp(f, (a,), (1.0,))[1], 0.5 / np.sqrt(a), rtol=1e-10)
    check_derivatives(f, [a])


def test_sqrt_by_bisection(x64):
    def f(a):
        return ga.root(lambda x, a: x * x - a, 1.0, a, method="bisection", bracket=(0.0, 20.0),
                       tol=1e-13)

    np.testing.assert_allclose(ga.jit(f)(2.0), np.sqrt(2.0), rtol=1e-12)
    np.testing.assert_allclose(ga.grad(f)(2.0), 0.5 / np.sqrt(2.0), rtol=1e-9)
    check_derivatives(f, [3.0])


def test_fixed_point_of_cos(x64):
    def f(a):
        return ga.fixed_point(lambda x, a: ga.cos(a * x), 0.5, a, tol=1e-14)

    x = float(ga.jit(f)(1.0))
    np.testing.assert_allclose(x, np.cos(x), rtol=1e-13)
    # x = cos(a x): dx/da = -x sin(x) / (1 + a sin(a x)) at a = 1
    np.testing.assert_allclose(ga.grad(f)(1.0), -x * np.sin(x) / (1 + np.sin(x)), rtol=1e-10)
    check_derivatives(f, [1.0])


def test_vector_linear_root(x64):
    def f(b):
        x = ga.root(lambda x, b: ga.constant(A3) @ x - b, ga.zeros((3,), ga.float64), b,
                    tol=1e-13)
        return ga.sum(ga.sin(x))

    b0 = np.array([1.0, 2.0, 3.0])
    x = np.linalg.solve(A3, b0)
    np.testing.assert_allclose(ga.grad(f)(b0), np.linalg.solve(A3.T, np.cos(x)), rtol=1e-10)
    check_derivatives(f, [b0])


def test_vector_fixed_point_wrt_matrix_and_vector(x64):
    def f(b, m):
        x = ga.fixed_point(lambda x, b, m: m @ x + b, ga.zeros((2,), ga.float64), b, m,
                           tol=1e-15)
        return ga.sum(x ** 2)

    check_derivatives(f, [np.array([1.0, 2.0]), M2])
    b0 = np.array([1.0, 2.0])
    x = np.linalg.solve(np.eye(2) - M2, b0)
    u = np.linalg.solve((np.eye(2) - M2).T, 2 * x)
    gb, gm = ga.grad(f, argnums=(0, 1))(b0, M2)
    np.testing.assert_allclose(gb, u, rtol=1e-10)
    np.testing.assert_allclose(gm, np.outer(u, x), rtol=1e-10)


def test_iterative_adjoint_for_large_x(x64, monkeypatch):
    monkeypatch.setattr(implicit, "DENSE_MAX", 0)

    def f(b, m):
        x = ga.fixed_point(lambda x, b, m: m @ x + b, ga.zeros((2,), ga.float64), b, m,
                           tol=1e-15)
        return ga.sum(x ** 2)

    check_derivatives(f, [np.array([1.0, 2.0]), M2])


def test_captured_tensors_and_pytree_params(x64):
    def f(c, p):
        x = ga.fixed_point(lambda x, p: 0.5 * ga.tanh(x * p["w"]) + p["b"] * c, 0.0, p,
                           tol=1e-15)
        return x * x

    check_derivatives(lambda c, w, b: f(c, {"w": w, "b": b}), [0.7, 0.9, 0.3])


def test_implicit_derivative_is_not_unrolled(x64):
    with ga.Graph() as g:
        a = ga.placeholder((), ga.float64)
        x = ga.root(lambda x, a: x * x - a, 1.0, a, tol=1e-12)
        (d,) = ga.gradients(x, [a])
        grad_loops = [n for n in g.nodes if n.op == "loop" and n.tags.get("mode")]
        assert not grad_loops  # the derivative reverses no loop: one small linear solve
        np.testing.assert_allclose(evaluate([d], {a: np.float64(4.0)})[0], 0.25)


def test_root_inside_a_loop(x64):
    def f(a):
        return ga.fori_loop(0, 3, lambda i, v: ga.root(lambda x, v: x * x * x - v, 1.0, v,
                                                       tol=1e-13), a)

    np.testing.assert_allclose(ga.jit(f)(2.0), 2.0 ** (1 / 27), rtol=1e-12)
    np.testing.assert_allclose(ga.grad(f)(2.0), 2.0 ** (1 / 27 - 1) / 27, rtol=1e-9)


def test_errors():
    with ga.Graph():
        with pytest.raises(ValueError, match="no sign change"):
            ga.root(lambda x: x * x - 2.0, 1.0, method="bisection", bracket=(2.0, 3.0))
        with pytest.raises(ValueError, match="bracket"):
            ga.root(lambda x: x, 1.0, method="bisection")
        with pytest.raises(ValueError, match="method"):
            ga.root(lambda x: x, 1.0, method="secant")
        with pytest.raises(ga.ShapeError, match="returns"):
            ga.fixed_point(lambda x: ga.stack([x, x]), 1.0)
        with pytest.raises(TypeError, match="one tensor"):
            ga.fixed_point(lambda x: (x, x), 1.0)
        with pytest.raises(ga.DTypeError, match="floating"):
            ga.fixed_point(lambda x: x, 1)


def test_bisection_without_sign_change_at_run_time_gives_nan(x64):
    with ga.Graph():
        a = ga.placeholder((), ga.float64)
        x = ga.root(lambda x, a: x * x - a, 1.0, a, method="bisection", bracket=(0.0, 1.0))
        sess = ga.Session()
        assert np.isnan(sess.run(x, {a: 4.0}))
        np.testing.assert_allclose(sess.run(x, {a: 0.25}), 0.5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# on_fail: a solver that does not converge (or a bracket without a sign change) can fail the run


def _run_both(out, feeds):
    """The value from the numpy interpreter and from a Session (each may raise RunError)."""
    results = []
    for run in (lambda: evaluate([out], feeds)[0], lambda: ga.Session().run(out, feeds)):
        try:
            results.append(run())
        except ga.RunError as e:
            results.append(e)
    return results


def test_on_fail_error_reports_non_convergence(x64):
    x = ga.placeholder((), ga.float64, name="x")
    diverging = ga.fixed_point(lambda z: z * 2.0 + 1.0, x, max_iterations=10, on_fail="error")
    for got in _run_both(diverging, {x: 1.0}):
        assert isinstance(got, ga.RunError) and "fixed_point" in str(got)
        assert "test_implicit.py" in str(got)
    quiet = ga.fixed_point(lambda z: z * 2.0 + 1.0, x, max_iterations=10)
    assert [float(v) for v in _run_both(quiet, {x: 1.0})] == [2047.0, 2047.0]
    converging = ga.fixed_point(lambda z: 0.5 * z + 1.0, x, tol=1e-12, on_fail="error")
    np.testing.assert_allclose([float(v) for v in _run_both(converging, {x: 0.0})], 2.0)


def test_a_nan_iteration_is_not_taken_for_converged(x64):
    """Newton on z^2 + 1 (no real root) produces NaN steps: the loop must not stop there as if
    max|step| <= tol held; with on_fail="error" it reports, by default it returns NaN."""
    x = ga.placeholder((), ga.float64, name="x")
    strict = ga.root(lambda z: z * z + 1.0, x, max_iterations=20, on_fail="error")
    assert all(isinstance(v, ga.RunError) for v in _run_both(strict, {x: 1.0}))
    lax = ga.root(lambda z: z * z + 1.0, x, max_iterations=20)
    assert all(np.isnan(v) for v in _run_both(lax, {x: 1.0}))


def test_bisection_bracket_checked_at_run_time(x64):
    x = ga.placeholder((), ga.float64, name="x")
    p = ga.placeholder((), ga.float64, name="p")
    r = ga.root(lambda z, a: z * z - a, x, p, method="bisection", bracket=(0.0, 2.0),
                on_fail="error", tol=1e-12)
    for got in _run_both(r, {x: 1.0, p: -1.0}):  # z^2 + 1 has no sign change on [0, 2]
        assert isinstance(got, ga.RunError) and "no sign change" in str(got)
    np.testing.assert_allclose([float(v) for v in _run_both(r, {x: 1.0, p: 2.0})], np.sqrt(2.0))
    (dp,) = ga.gradients(r, [p])
    np.testing.assert_allclose(ga.Session().run(dp, {x: 1.0, p: 2.0}), 0.5 / np.sqrt(2.0))


def test_on_fail_must_be_known():
    with pytest.raises(ValueError, match="on_fail"):
        ga.fixed_point(lambda z: z, 1.0, on_fail="raise")
