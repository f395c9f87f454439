"""Op-info rows for elementwise ops (see op_db.py)."""

import numpy as np

import graphad as ga
from op_db import OpInfo, Sample, uniform


def _unary_samples(low=-2.0, high=2.0):
    def gen(rng, dt):
        return [Sample((uniform(rng, (3, 4), dt, low, high),)),
                Sample((uniform(rng, (), dt, low, high),), dynamic=False)]
    return gen


def _binary_samples(rng, dt):
    return [Sample((uniform(rng, (3, 4), dt), uniform(rng, (3, 4), dt))),
            Sample((uniform(rng, (2, 1, 4), dt), uniform(rng, (3, 1), dt)))]


ROWS = [
    OpInfo("exp", ga.exp, np.exp, _unary_samples()),
    OpInfo("sin", ga.sin, np.sin, _unary_samples()),
    OpInfo("add", ga.add, np.add, _binary_samples),
    OpInfo("multiply", ga.multiply, np.multiply, _binary_samples),
]
