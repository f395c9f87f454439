"""Op-info rows for linear algebra (see op_db.py): matmul/dot with 1-D operands and broadcast
batch dims (float and int), inv/solve/det on well-conditioned (batched) matrices."""

import numpy as np

import graphad as ga
from op_db import OpInfo, Sample, ints, uniform


def _mat(rng, shape, dt):
    if np.dtype(dt).kind == "i":
        return ints(rng, shape, dt, -4, 5)
    return uniform(rng, shape, dt)


def _matmul_samples(rng, dt):
    pairs = [
        ((3, 4), (4, 5)),
        ((2, 3, 4), (4, 2)),
        ((2, 1, 3, 4), (5, 4, 2)),  # batch dims broadcast
        ((4,), (4,)),
        ((4,), (2, 4, 3)),
        ((2, 3, 4), (4,)),
        ((3, 4), (1, 4, 2)),
    ]
    return [Sample((_mat(rng, a, dt), _mat(rng, b, dt))) for a, b in pairs]


def _dot_samples(rng, dt):
    pairs = [((3, 4), (4, 5)), ((4,), (4,)), ((3, 4), (4,)), ((4,), (4, 2)),
             ((2, 3, 4), (5, 4, 2)), ((2, 3, 4), (4, 2)), ((4,), (3, 4, 2))]
    out = [Sample((_mat(rng, a, dt), _mat(rng, b, dt))) for a, b in pairs]
    out.append(Sample((_mat(rng, (), dt), _mat(rng, (3,), dt)), dynamic=False))
    return out


def well_conditioned(rng, shape, dt):
    """A + n I with A uniform in [-1, 1]: diagonally dominant enough to be far from singular."""
    n = shape[-1]
    a = rng.uniform(-1, 1, size=shape) + n * np.eye(n)
    return a.astype(dt)


def _inv_samples(rng, dt):
    shapes = ((3, 3), (2, 4, 4), (1, 1), (2, 2, 3, 3))
    return [Sample((well_conditioned(rng, s, dt),)) for s in shapes]


def _det_samples(rng, dt):
    out = _inv_samples(rng, dt)
    # A permutation-like matrix needs row pivoting (zero leading entry); det = -1 * 2 * 3.
    p = np.array([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 3.0]], dtype=dt)
    out.append(Sample((p + rng.uniform(-0.1, 0.1, (3, 3)).astype(dt) * (p == 0),)))
    return out


def _solve_samples(rng, dt):
    a3, a3b = well_conditioned(rng, (3, 3), dt), well_conditioned(rng, (2, 3, 3), dt)
    return [
        Sample((a3, uniform(rng, (3,), dt))),
        Sample((a3, uniform(rng, (3, 2), dt))),
        Sample((a3b, uniform(rng, (3,), dt))),  # a batch of systems, one vector b
        Sample((a3b, uniform(rng, (2, 3, 1), dt))),
        Sample((a3, uniform(rng, (4, 3, 2), dt))),  # b's batch broadcasts against a
    ]


def _wide(fn):
    """numpy.linalg has no float16: the oracle computes in float64."""
    return lambda *arrays: fn(*(a.astype(np.float64) if a.dtype == np.float16 else a
                                for a in arrays))


_LINALG_TOL = {"float32": 1e-4}
_FLOATS = ("float16", "float32", "float64")
_NUMERIC = _FLOATS + ("int32", "int64")

ROWS = [
    OpInfo("matmul", ga.matmul, np.matmul, _matmul_samples, dtypes=_NUMERIC),
    OpInfo("dot", ga.dot, np.dot, _dot_samples, dtypes=_NUMERIC),
    OpInfo("linalg.inv", ga.linalg.inv, _wide(np.linalg.inv), _inv_samples, rtol=_LINALG_TOL,
           dtypes=_FLOATS),
    OpInfo("linalg.solve", ga.linalg.solve, _wide(np.linalg.solve), _solve_samples, rtol=_LINALG_TOL,
           dtypes=_FLOATS),
    OpInfo("linalg.det", ga.linalg.det, _wide(np.linalg.det), _det_samples, rtol=_LINALG_TOL,
           dtypes=_FLOATS),
]
