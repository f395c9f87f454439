"""Op-info rows for reductions (see op_db.py): axis None / int / negative / tuple, keepdims,
scalar inputs, and integer and bool dtypes where the op takes them."""

import numpy as np

import graphad as ga
from graphad.ops.accumulate import cumsum
from graphad.ops.reduce import unreduce
from op_db import OpInfo, Sample, ints, uniform

_AXES = [
    {},
    {"axis": 1},
    {"axis": -1, "keepdims": True},
    {"axis": (0, 2)},
    {"axis": (-1, 0), "keepdims": True},
    {"axis": None, "keepdims": True},
]


def _data(rng, shape, dt, low=-2.0, high=2.0):
    dt = np.dtype(dt)
    if dt.kind == "b":
        return rng.random(shape) > 0.5
    if dt.kind == "i":
        return ints(rng, shape, dt, int(low), int(high) + 1)
    return uniform(rng, shape, dt, low, high)


def _samples(shape=(3, 4, 5), low=-2.0, high=2.0):
    def gen(rng, dt):
        out = [Sample((_data(rng, shape, dt, low, high),), kw) for kw in _AXES]
        out.append(Sample((_data(rng, (), dt, low, high),), {}, dynamic=False))
        out.append(Sample((_data(rng, (6,), dt, low, high),), {"axis": 0}))
        return out

    return gen


def _prod_samples(rng, dt):
    out = _samples((2, 3, 4), -2.0, 2.0)(rng, dt)
    if np.dtype(dt).kind == "f":
        x = uniform(rng, (3, 4), dt, 0.5, 1.5) * np.sign(uniform(rng, (3, 4), dt))
        x[0, 1] = 0  # one zero in row 0 / column 1
        x[2, 2] = x[2, 3] = 0  # two zeros in row 2
        out += [Sample((x,), {"axis": 1}), Sample((x,), {"axis": 0}), Sample((x,), {})]
    return out


def _arg_samples(rng, dt):
    kws = [{}, {"axis": 1}, {"axis": -1, "keepdims": True}, {"keepdims": True}, {"axis": 0}]
    out = [Sample((_data(rng, (3, 4, 5), dt),), kw) for kw in kws]
    out.append(Sample((_data(rng, (), dt),), {}, dynamic=False))
    return out


def _unreduce_samples(rng, dt):
    like = uniform(rng, (3, 4, 5), dt)
    return [
        Sample((uniform(rng, (3, 5), dt), like), {"axes": (1,)}),
        Sample((uniform(rng, (1, 4, 1), dt), like), {"axes": (0, 2), "keepdims": True}),
        Sample((uniform(rng, (4,), dt), like), {"axes": (0, 2), "mean": True}),
        Sample((uniform(rng, (), dt), like), {"axes": (0, 1, 2), "mean": True}, dynamic=False),
    ]


def _unreduce_ref(g, like, axes, keepdims=False, mean=False):
    g = g if keepdims else np.expand_dims(g, axes)
    count = np.prod([like.shape[a] for a in axes]) if mean else 1
    return np.broadcast_to(g, like.shape) / count


def _cumsum_samples(rng, dt):
    return [
        Sample((uniform(rng, (7,), dt),), {"axis": 0}),
        Sample((uniform(rng, (3, 4), dt),), {"axis": 1}),
        Sample((uniform(rng, (3, 4, 2), dt),), {"axis": -2}),
    ]


def _cumsum_ref(x, axis=0):
    return np.cumsum(x, axis=axis, dtype=x.dtype)


def _sum_ref(x, axis=None, keepdims=False):
    return np.sum(x, axis=axis, keepdims=keepdims)


ALL = ("float16", "float32", "float64", "int32", "int64", "bool")

ROWS = [
    OpInfo("sum", ga.sum, _sum_ref, _samples(), dtypes=ALL),
    OpInfo("mean", ga.mean, np.mean, _samples(),
           dtypes=("float16", "float32", "float64", "int32", "bool")),
    OpInfo("max", ga.max, np.max, _samples(), dtypes=ALL, second_order=False),
    OpInfo("min", ga.min, np.min, _samples(), dtypes=ALL, second_order=False),
    OpInfo("prod", ga.prod, np.prod, _prod_samples, dtypes=ALL),
    # Internal: the transpose of sum/mean, used by reduction VJPs (like gets no gradient).
    OpInfo("unreduce", unreduce, _unreduce_ref, _unreduce_samples),
    OpInfo("cumsum", cumsum, _cumsum_ref, _cumsum_samples, dtypes=("float32", "float64", "int32",
                                                                   "int64")),
    OpInfo("argmax", ga.argmax, np.argmax, _arg_samples, dtypes=ALL, differentiable=False),
    OpInfo("argmin", ga.argmin, np.argmin, _arg_samples, dtypes=ALL, differentiable=False),
]
