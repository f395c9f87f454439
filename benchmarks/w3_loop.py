"""W3 loop_grad: Euler integration x <- x + h*tanh(W x) while t < 1.0 (a data-dependent loop of
1000 steps), loss sum(x**2), gradient w.r.t. W (64x64); one gradient evaluation, plus memory.
"""

import numpy as np

from .harness import Case

ID, TITLE = "W3", "loop_grad"
MEMORY = True


def config(mode):
    if mode == "tiny":
        return {"state": 8, "h": 0.05, "t_end": 1.0}
    return {"state": 64, "h": 1e-3, "t_end": 1.0}


def make_data(cfg, seed=0):
    rng = np.random.default_rng(seed)
    n = cfg["state"]
    w = (rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32)
    x0 = rng.standard_normal(n).astype(np.float32)
    return w, x0


def trip_count(cfg):
    """Steps the float32 loop `while t < t_end: t += h` takes (the static count of the peers)."""
    t, h, end, k = np.float32(0), np.float32(cfg["h"]), np.float32(cfg["t_end"]), 0
    while t < end:
        t = np.float32(t + h)
        k += 1
    return k


def graphad(cfg):
    import graphad as ga  # noqa: PLC0415

    h, end = float(cfg["h"]), float(cfg["t_end"])

    def loss(w, x0):
        def body(s):
            t, x = s
            return t + h, x + h * ga.tanh(w @ x)

        t0 = ga.constant(np.float32(0.0))
        _, x = ga.while_loop(lambda s: s[0] < end, body, (t0, x0))
        return ga.sum(x**2)

    vg = ga.jit(ga.value_and_grad(loss))
    value = ga.jit(loss)
    w, x0 = make_data(cfg)
    return Case(step=lambda: vg(w, x0), value=lambda: value(w, x0), grad=lambda: vg(w, x0),
                check=lambda: _flat(vg(w, x0)))


def _flat(value_grad):
    value, grad = value_grad
    return [np.asarray(value), np.asarray(grad)]


def numpy(cfg):
    w, x0 = make_data(cfg)
    h, steps = np.float32(cfg["h"]), trip_count(cfg)

    def forward(w, tape=None):
        x = x0
        for k in range(steps):
            a = np.tanh(w @ x)
            if tape is not None:
                tape[0][k], tape[1][k] = x, a
            x = x + h * a
        return x

    def value_and_grad(w):
        xs = np.empty((steps, x0.size), np.float32)
        acts = np.empty_like(xs)
        x = forward(w, (xs, acts))
        g = 2 * x
        us = np.empty_like(xs)
        for k in range(steps - 1, -1, -1):
            u = g * (1 - acts[k] ** 2)  # d tanh = 1 - tanh²
            us[k] = u
            g = g + h * (w.T @ u)
        return np.sum(x**2), h * (us.T @ xs)  # dW as one GEMM over the whole tape

    return Case(step=lambda: value_and_grad(w), value=lambda: np.sum(forward(w) ** 2),
                grad=lambda: value_and_grad(w), check=lambda: _flat(value_and_grad(w)))


def jax(cfg):
    import jax as jx  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    h, steps = float(cfg["h"]), trip_count(cfg)

    def loss(w, x0):
        # JAX cannot reverse a while loop: a fori_loop with the static trip count
        x = jx.lax.fori_loop(0, steps, lambda i, x: x + h * jnp.tanh(w @ x), x0)
        return jnp.sum(x**2)

    vg = jx.jit(jx.value_and_grad(loss))
    value = jx.jit(loss)
    w, x0 = make_data(cfg)
    return Case(step=lambda: jx.block_until_ready(vg(w, x0)),
                value=lambda: value(w, x0).block_until_ready(),
                grad=lambda: jx.block_until_ready(vg(w, x0)),
                check=lambda: _flat(jx.device_get(vg(w, x0))))


def torch(cfg):
    import torch as th  # noqa: PLC0415

    w_np, x0_np = make_data(cfg)
    w = th.tensor(w_np, requires_grad=True)
    x0 = th.from_numpy(x0_np)
    h, end = np.float32(cfg["h"]), np.float32(cfg["t_end"])

    def loss():
        t, x = np.float32(0), x0
        while t < end:  # the data-dependent loop, in Python
            x = x + float(h) * th.tanh(w @ x)
            t = np.float32(t + h)
        return th.sum(x**2)

    def vg():
        value = loss()
        return value, th.autograd.grad(value, w)[0]

    def value():
        with th.no_grad():
            return loss().item()

    return Case(step=vg, value=value, grad=vg,
                check=lambda: [a.detach().numpy() for a in vg()])


IMPLS = {"graphad": graphad, "jax": jax, "torch": torch, "numpy": numpy}
