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

    g, feeds, _, _, train = w1_mlp.graphad_model(cfg, name="w6_mlp")
    sess = ga.Session(g, device="cuda")
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
