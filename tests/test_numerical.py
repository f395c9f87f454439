"""numerical_grad stencils and check_grads (finite differences against autodiff)."""

import numpy as np
import pytest

import graphad as ga
from graphad.custom import custom_vjp
from graphad.numerics import check_grads, numerical_grad
from graphad.transforms import grad


def _f(x, y):
    return ga.sum(ga.sin(x) * y) + ga.sum(x**2)


def test_numerical_grad_methods_agree_with_autodiff():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(4), rng.standard_normal(4)
    with ga.config.x64():
        want = grad(_f, argnums=(0, 1))(x, y)
    tol = {"forward": 1e-6, "central": 1e-9, "five_point": 1e-11}
    for method, t in tol.items():
        got = numerical_grad(_f, (x, y), method=method)
        assert isinstance(got, tuple) and len(got) == 2
        assert got[0].dtype == np.float64 and got[0].shape == (4,)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=t, atol=t)


def test_numerical_grad_plain_numpy_function_and_explicit_eps():
    def f(a, b):
        return np.sum(a**3) * b

    a = np.array([1.0, 2.0])
    ga_, gb = numerical_grad(f, (a, 3.0), eps=1e-5)
    np.testing.assert_allclose(ga_, 9 * a**2, rtol=1e-8)
    assert float(gb) == pytest.approx(9.0, rel=1e-8)


def test_numerical_grad_pytree_and_int_argument():
    def f(p, n):
        return ga.sum(p["w"] ** 2) * n

    (gp, gn) = numerical_grad(f, ({"w": np.array([1.0, -2.0])}, 3))
    np.testing.assert_allclose(gp["w"], [6.0, -12.0], rtol=1e-8)
    assert float(gn) == pytest.approx(5.0, rel=1e-8)


def test_numerical_grad_bad_method():
    with pytest.raises(ValueError, match="method"):
        numerical_grad(_f, (1.0, 1.0), method="backward")


def test_check_grads_passes_on_correct_functions():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(3), rng.standard_normal(3)
    check_grads(_f, (x, y), order=1)
    check_grads(_f, (x, y), order=2)
    check_grads(lambda x: ga.tanh(x) * ga.exp(x), (x,), order=2, modes=("rev",))
    check_grads(lambda a, b: (a @ b, ga.sum(a)), (rng.standard_normal((2, 3)),
                                                  rng.standard_normal((3, 2))), order=2)
    check_grads(lambda x: ga.sum(x**2), (np.float32(0.5),))  # float32 args are checked in f64


def test_check_grads_raises_on_wrong_custom_vjp():
    @custom_vjp
    def square(x):
        return x * x

    square.defvjp(lambda x: (x * x, x), lambda x, g: (g * x,))  # wrong: 2x
    with pytest.raises(AssertionError, match="worst mismatch"):
        check_grads(square, (np.array([1.0, 2.0]),), modes=("rev",))
    with pytest.raises(AssertionError):
        check_grads(lambda x: ga.sum(square(x)), (np.array([1.0, 2.0]),), order=2)


def test_check_grads_tolerance_arguments_and_modes():
    x = np.array([0.3, 0.9])
    check_grads(ga.sin, (x,), modes="fwd", atol=1e-8, rtol=1e-8)
    with pytest.raises(ValueError, match="mode"):
        check_grads(ga.sin, (x,), modes=("sideways",))
    with pytest.raises(ValueError, match="order"):
        check_grads(ga.sin, (x,), order=0)
