"""W2 tiny_grad: the JAX tutorial's logistic regression, gradient w.r.t. W (3,) and b (); one call
of the compiled gradient function from Python, where dispatch overhead dominates.
"""

import numpy as np

from .harness import Case

ID, TITLE = "W2", "tiny_grad"


def config(mode):
    return {"n": 4, "d": 3}


def make_data(cfg, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cfg["n"], cfg["d"])).astype(np.float32)
    t = np.array([1, 1, 0, 1] * cfg["n"], np.float32)[: cfg["n"]]
    w = rng.standard_normal(cfg["d"]).astype(np.float32)
    b = np.float32(0.1)
    return w, b, x, t


def graphad(cfg):
    import graphad as ga  # noqa: PLC0415

    def sigmoid(z):
        return 0.5 * (ga.tanh(z / 2) + 1)

    def loss(w, b, x, t):
        p = sigmoid(x @ w + b)
        return -ga.sum(ga.log(p * t + (1 - p) * (1 - t)))

    grad = ga.jit(ga.grad(loss, argnums=(0, 1)))
    value = ga.jit(loss)
    w, b, x, t = make_data(cfg)
    return Case(step=lambda: grad(w, b, x, t), value=lambda: value(w, b, x, t),
                check=lambda: list(grad(w, b, x, t)))


def numpy(cfg):
    w, b, x, t = make_data(cfg)

    def grad(w, b, x, t):
        z = x @ w + b
        p = 0.5 * (np.tanh(z / 2) + 1)
        q = p * t + (1 - p) * (1 - t)
        dz = -(2 * t - 1) / q * p * (1 - p)  # dq/dp = 2t - 1, dp/dz = p(1 - p)
        return x.T @ dz, np.sum(dz)

    return Case(step=lambda: grad(w, b, x, t), check=lambda: list(grad(w, b, x, t)))


def jax(cfg):
    import jax as jx  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    def loss(w, b, x, t):
        p = 0.5 * (jnp.tanh((x @ w + b) / 2) + 1)
        return -jnp.sum(jnp.log(p * t + (1 - p) * (1 - t)))

    grad = jx.jit(jx.grad(loss, argnums=(0, 1)))
    value = jx.jit(loss)
    w, b, x, t = make_data(cfg)
    return Case(step=lambda: jx.block_until_ready(grad(w, b, x, t)),
                value=lambda: value(w, b, x, t).block_until_ready(),
                check=lambda: [np.asarray(a) for a in grad(w, b, x, t)])


def torch(cfg):
    import torch as th  # noqa: PLC0415

    w_np, b_np, x_np, t_np = make_data(cfg)
    w = th.tensor(w_np, requires_grad=True)
    b = th.tensor(b_np, requires_grad=True)
    x, t = th.from_numpy(x_np), th.from_numpy(t_np)

    def grad():
        p = 0.5 * (th.tanh((x @ w + b) / 2) + 1)
        loss = -th.sum(th.log(p * t + (1 - p) * (1 - t)))
        return th.autograd.grad(loss, (w, b))

    return Case(step=grad, check=lambda: [a.numpy() for a in grad()])


IMPLS = {"graphad": graphad, "jax": jax, "torch": torch, "numpy": numpy}
