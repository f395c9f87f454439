"""The op-info table: one row per op, from which test_op_db.py generates its tests.

Each family contributes rows in tests/opinfo_<family>.py as a list named ROWS. A row says how to
build the op from Tensors (`fn`), an independent numpy oracle (`ref`), how to sample inputs, the
dtypes to try, and whether/how it is differentiable.
"""

import dataclasses
import importlib
from typing import Callable

import numpy as np


@dataclasses.dataclass
class Sample:
    """One call: `args` become placeholders (arrays) or stay Python values (non-arrays);
    `kwargs` are static keyword arguments passed to both `fn` and `ref`."""

    args: tuple
    kwargs: dict = dataclasses.field(default_factory=dict)
    # Which args are fed as placeholders (default: every np.ndarray arg).
    feed: tuple = None
    # Whether to also try the first array arg with an unknown leading dim (None).
    dynamic: bool = True

    def fed_indices(self):
        if self.feed is not None:
            return tuple(self.feed)
        return tuple(i for i, a in enumerate(self.args) if isinstance(a, np.ndarray))


@dataclasses.dataclass
class OpInfo:
    name: str  # the catalogue name (API.md), e.g. "exp" or "linalg.inv"
    fn: Callable  # builds the op from Tensors: fn(*args, **kwargs)
    ref: Callable  # numpy oracle: ref(*arrays, **kwargs) -> array or tuple of arrays
    sample: Callable  # sample(rng, dtype: np.dtype) -> list[Sample]
    dtypes: tuple = ("float32", "float64")
    differentiable: bool = True  # has VJP/JVP (False: comparisons, argmax, floor, ...)
    grad_args: tuple = None  # indices of args to differentiate (default: fed float args)
    second_order: bool = True  # smooth enough for second-order checks
    rtol: dict = None  # per-dtype name
    atol: dict = None
    xfail: dict = dataclasses.field(default_factory=dict)  # test name -> reason

    def tol(self, dtype):
        name = np.dtype(dtype).name
        rtol = {"float16": 1e-2, "float32": 1e-5, "float64": 1e-10}.get(name, 0)
        atol = {"float16": 1e-2, "float32": 1e-5, "float64": 1e-10}.get(name, 0)
        if self.rtol and name in self.rtol:
            rtol = self.rtol[name]
        if self.atol and name in self.atol:
            atol = self.atol[name]
        return rtol, atol


FAMILIES = ("elementwise", "reduce", "shape", "linalg", "nn")


def all_rows():
    rows = []
    for fam in FAMILIES:
        try:
            mod = importlib.import_module(f"opinfo_{fam}")
        except ModuleNotFoundError as e:
            if e.name != f"opinfo_{fam}":
                raise
            continue
        rows.extend(mod.ROWS)
    return rows


def uniform(rng, shape, dtype, low=-2.0, high=2.0):
    return rng.uniform(low, high, size=shape).astype(dtype)


def ints(rng, shape, dtype, low=-5, high=5):
    return rng.integers(low, high, size=shape).astype(dtype)
