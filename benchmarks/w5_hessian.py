"""W5 hessian: the full Hessian of the Rosenbrock function at n = 100; one call."""

import numpy as np

from .harness import Case
from .w5_hvp import make_data, rosen_graphad, rosen_hessian_parts

ID, TITLE = "W5-hess", "hessian"


def config(mode):
    return {"n": 8 if mode == "tiny" else 100}


def graphad(cfg):
    import graphad as ga  # noqa: PLC0415

    hess = ga.jit(ga.hessian(rosen_graphad(ga)))
    x, _ = make_data(cfg)
    return Case(step=lambda: hess(x), check=lambda: [hess(x)])


def numpy(cfg):
    x, _ = make_data(cfg)

    def hess(x):
        d, o = rosen_hessian_parts(x)
        return np.diag(d) + np.diag(o, 1) + np.diag(o, -1)

    return Case(step=lambda: hess(x), check=lambda: [hess(x)])


def jax(cfg):
    import jax as jx  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    def rosen(x):
        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    hess = jx.jit(jx.hessian(rosen))
    x, _ = make_data(cfg)
    return Case(step=lambda: hess(x).block_until_ready(), check=lambda: [np.asarray(hess(x))])


def torch(cfg):
    import torch as th  # noqa: PLC0415
    from torch.autograd.functional import hessian as th_hessian  # noqa: PLC0415

    def rosen(x):
        return th.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    x = th.from_numpy(make_data(cfg)[0])
    return Case(step=lambda: th_hessian(rosen, x), check=lambda: [th_hessian(rosen, x).numpy()])


IMPLS = {"graphad": graphad, "jax": jax, "torch": torch, "numpy": numpy}
