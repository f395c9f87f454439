"""W5 hvp: Hessian-vector product of the Rosenbrock function at n = 1000 (forward-over-reverse);
one call. The full Hessian at n = 100 is `w5_hessian.py`.
"""

import numpy as np

from .harness import Case

ID, TITLE = "W5", "hvp"


def config(mode):
    return {"n": 16 if mode == "tiny" else 1000}


def make_data(cfg, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.5, 1.5, cfg["n"]).astype(np.float32)
    v = rng.standard_normal(cfg["n"]).astype(np.float32)
    return x, v


def rosen_graphad(ga):
    def rosen(x):
        return ga.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    return rosen


def rosen_hessian_parts(x):
    """(diagonal, off-diagonal) of the tridiagonal Rosenbrock Hessian, by hand."""
    d = np.zeros_like(x)
    d[:-1] += 1200 * x[:-1] ** 2 - 400 * x[1:] + 2
    d[1:] += 200
    return d, -400 * x[:-1]


def graphad(cfg):
    import graphad as ga  # noqa: PLC0415

    rosen = rosen_graphad(ga)
    hvp = ga.jit(lambda x, v: ga.hvp(rosen, (x,), (v,)))
    x, v = make_data(cfg)
    return Case(step=lambda: hvp(x, v), check=lambda: [hvp(x, v)])


def numpy(cfg):
    x, v = make_data(cfg)

    def hvp(x, v):
        d, o = rosen_hessian_parts(x)
        out = d * v
        out[:-1] += o * v[1:]
        out[1:] += o * v[:-1]
        return out

    return Case(step=lambda: hvp(x, v), check=lambda: [hvp(x, v)])


def jax(cfg):
    import jax as jx  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    def rosen(x):
        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    hvp = jx.jit(lambda x, v: jx.jvp(jx.grad(rosen), (x,), (v,))[1])
    x, v = make_data(cfg)
    return Case(step=lambda: hvp(x, v).block_until_ready(),
                check=lambda: [np.asarray(hvp(x, v))])


def torch(cfg):
    import torch as th  # noqa: PLC0415
    from torch.autograd.functional import hvp as th_hvp  # noqa: PLC0415

    def rosen(x):
        return th.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    x_np, v_np = make_data(cfg)
    x, v = th.from_numpy(x_np), th.from_numpy(v_np)
    return Case(step=lambda: th_hvp(rosen, x, v)[1],
                check=lambda: [th_hvp(rosen, x, v)[1].numpy()])


IMPLS = {"graphad": graphad, "jax": jax, "torch": torch, "numpy": numpy}
