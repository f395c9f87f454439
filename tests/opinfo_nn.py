"""Op-info rows for nn ops (see op_db.py): logsumexp / softmax / log_softmax over several axes
(including large-magnitude inputs) and one_hot with negative and out-of-range indices."""

import numpy as np
import scipy.special

import graphad as ga
from op_db import OpInfo, Sample, uniform


def _lse_samples(rng, dt):
    x = uniform(rng, (3, 4, 5), dt)
    big = (uniform(rng, (3, 4), dt) * 500).astype(dt)
    return [
        Sample((x,), {}),
        Sample((x,), {"axis": 1}),
        Sample((x,), {"axis": -1, "keepdims": True}),
        Sample((x,), {"axis": (0, 2)}),
        Sample((big,), {"axis": -1}),
        Sample((uniform(rng, (), dt),), {}, dynamic=False),
    ]


def _softmax_samples(rng, dt):
    x = uniform(rng, (3, 4, 5), dt)
    return [
        Sample((x,), {}),
        Sample((x,), {"axis": 0}),
        Sample((x,), {"axis": (1, 2)}),
        Sample((x,), {"axis": None}),
        Sample(((uniform(rng, (3, 4), dt) * 500).astype(dt),), {"axis": -1}),
    ]


def _lse_ref(x, axis=None, keepdims=False):
    return scipy.special.logsumexp(x.astype(np.float64), axis=axis, keepdims=keepdims)


def _softmax_ref(x, axis=-1):
    return scipy.special.softmax(x.astype(np.float64), axis=axis)


def _log_softmax_ref(x, axis=-1):
    if axis is None or isinstance(axis, tuple):
        return np.log(_softmax_ref(x, axis))
    return scipy.special.log_softmax(x.astype(np.float64), axis=axis)


def _one_hot_samples(rng, dt):
    idx = rng.integers(-2, 7, size=(3, 4)).astype(dt)  # includes -2, -1 and 5, 6: all-zero rows
    return [
        Sample((idx,), {"depth": 5}),
        Sample((idx,), {"depth": 5, "axis": 0}),
        Sample((idx,), {"depth": 3, "axis": 1, "dtype": "int32"}),
        Sample((idx[0],), {"depth": 4, "dtype": "float64"}),
        Sample((np.asarray(2, dtype=dt),), {"depth": 4}, dynamic=False),
    ]


def _one_hot_ref(idx, depth, axis=-1, dtype=None):
    hot = np.expand_dims(idx, axis) == np.arange(depth).reshape(
        (depth,) + (1,) * (idx.ndim - (axis % (idx.ndim + 1))))
    return hot.astype(np.float32 if dtype is None else dtype)


F16_32_64 = ("float16", "float32", "float64")

ROWS = [
    OpInfo("logsumexp", ga.logsumexp, _lse_ref, _lse_samples, dtypes=F16_32_64),
    OpInfo("softmax", ga.softmax, _softmax_ref, _softmax_samples, dtypes=F16_32_64),
    OpInfo("log_softmax", ga.log_softmax, _log_softmax_ref, _softmax_samples,
           dtypes=F16_32_64),
    OpInfo("one_hot", ga.one_hot, _one_hot_ref, _one_hot_samples,
           dtypes=("int32", "int64", "float16", "float32"), differentiable=False),
]
