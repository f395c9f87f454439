"""W6 gpu_mlp: W1 with batch 4096 and hidden 2048 on the CUDA provider, state resident; one step.
Runs only where `ga.Session(device="cuda")` really runs (else skipped with the reason), against
JAX on the same GPU when a CUDA jaxlib is installed.
"""

import sys

from . import w1_mlp
from .harness import Case

ID, TITLE = "W6", "gpu_mlp"


def config(mode):
    if mode == "tiny":
        return {"batch": 64, "sizes": (784, 128, 128, 10)}
    return {"batch": 4096, "sizes": (784, 2048, 2048, 10)}


def graphad(cfg):
    import graphad as ga  # noqa: PLC0415

    x_np, y_np, p_np = w1_mlp.make_data(cfg)
    g = ga.Graph("w6_mlp")
    with g:
        x = ga.placeholder(x_np.shape, name="x")
        y = ga.placeholder(y_np.shape, name="y")
        params = [ga.Variable(p, name=f"p{i}") for i, p in enumerate(p_np)]
        h = x
        for i in range(0, len(params), 2):
            h = h @ params[i] + params[i + 1]
            if i + 2 < len(params):
                h = ga.relu(h)
        loss = -ga.mean(ga.sum(y * ga.log_softmax(h, axis=-1), axis=-1))
        train = ga.optimizers.SGD(w1_mlp.LR).minimize(loss)
    sess = ga.Session(g, device="cuda")
    feeds = {x: x_np, y: y_np}
    return Case(step=lambda: sess.run(train, feeds))


def jax_gpu(cfg):
    import jax  # noqa: PLC0415

    if not any(d.platform == "gpu" for d in jax.devices()):
        raise RuntimeError("JAX has no GPU device here (CPU-only jaxlib)")
    return w1_mlp.jax(cfg)


IMPLS = {"graphad": graphad, "jax": jax_gpu}


def run(mode, budget, peers):
    from .run import run_generic  # noqa: PLC0415

    try:
        from graphad.devices import cuda_problem  # noqa: PLC0415

        problem = cuda_problem()
    except Exception as e:  # no graphad or a broken onnxruntime: say so
        problem = f"{type(e).__name__}: {e}"
    if problem:
        return {"id": ID, "title": TITLE, "config": config(mode), "rows": [],
                "note": f"skipped: no usable CUDA provider here ({problem})"}
    return run_generic(sys.modules[__name__], mode, budget, peers)
