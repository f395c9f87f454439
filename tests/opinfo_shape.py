"""Op-info rows for the shape, indexing and creation families (see op_db.py).

These ops move or copy values, so every sample is exact; samples cover negative axes, -1 in
reshape, steps / negative steps / None / ... / integer-array indices, repeated gather indices,
and every pad mode. Rows named `getitem.<what>` are variants of the `getitem` row."""

import numpy as np

import graphad as ga
from graphad.ops import shape
from graphad.types import default_float, default_int
from op_db import OpInfo, Sample, uniform

FLOATS = ("float32", "float64")
NUMERIC = ("float32", "float64", "int32", "int64")
ALL = ("float16",) + NUMERIC


def arr(rng, shape_, dt):
    dt = np.dtype(dt)
    if dt.kind == "i":
        return rng.integers(-5, 6, size=shape_).astype(dt)
    return uniform(rng, shape_, dt)


def idx(values):
    return np.asarray(values, dtype=np.int64)


def S(*shapes, dynamic=True, **kwargs):
    """One sample: random arrays of `shapes` (fed) and static keyword arguments."""
    return shapes, kwargs, dynamic


def samples(*specs):
    """A sample generator from S(...) specs."""

    def gen(rng, dt):
        return [Sample(tuple(arr(rng, s, dt) for s in shapes), dict(kwargs), dynamic=dynamic)
                for shapes, kwargs, dynamic in specs]

    return gen


# ---------------------------------------------------------------------------------------------
# numpy oracles that need a few lines


def np_broadcast_to(x, shape):
    lead = len(shape) - x.ndim
    full = tuple(t if t is not None else x.shape[i - lead] for i, t in enumerate(shape))
    return np.broadcast_to(x, full)


def np_tile_sum(g, reps):
    split = [v for d, r in zip(g.shape, reps) for v in (r, d // r)]
    return np.reshape(g, split).sum(axis=tuple(range(0, 2 * len(reps), 2))).astype(g.dtype)


def np_scatter_add(g, i, like, axis):
    out = np.zeros(like.shape, g.dtype)
    np.add.at(out, (slice(None),) * axis + (i,), g)
    return out


def np_scatter_slice(like, g, spec):
    out = np.zeros(like.shape, g.dtype)
    out[tuple(slice(*s) for s in spec)] = g
    return out


def np_pad(x, pad_width, mode="constant", constant_values=0):
    kw = {"constant_values": constant_values} if mode == "constant" else {}
    return np.pad(x, pad_width, mode=mode, **kw)


def np_arange(start, stop=None, step=1, dtype=None):
    args = (start, stop, step)
    if dtype is None:
        isfloat = any(isinstance(v, float) for v in args)
        dtype = (default_float() if isfloat else default_int()).np
    wide = np.float64 if np.dtype(dtype).kind == "f" else np.int64
    if stop is None:
        start, stop = 0, start
    return np.arange(start, stop, step, dtype=wide).astype(dtype)


def getitem_fn(x, index, i=None):
    """x[index] where the string "I" in `index` stands for the fed index tensor `i`."""
    if i is not None:
        index = tuple(i if isinstance(e, str) else e for e in index)
    return x[index]


def getitem_ref(x, index, i=None):
    return getitem_fn(x, index, i)


def creation_samples(rng, dt):
    dt = np.dtype(dt).name
    return [Sample(((2, 3),), {"dtype": dt}), Sample(((),), {"dtype": dt})]


def like_samples(rng, dt):
    x = arr(rng, (3, 4), dt)
    return [Sample((x,), {}), Sample((x,), {"dtype": "int64"}), Sample((x,), {"dtype": "float32"})]


def full_samples(rng, dt):
    dt = np.dtype(dt).name
    return [Sample(((2, 3), 2.5), {"dtype": dt}), Sample(((4,), -3), {"dtype": dt}),
            Sample(((2, 1, 2), 7), {})]


def full_like_samples(rng, dt):
    x = arr(rng, (2, 3), dt)
    return [Sample((x, 2.5), {}), Sample((x, -1), {"dtype": "float64"})]


def eye_samples(rng, dt):
    dt = np.dtype(dt).name
    return [Sample((3,), {"dtype": dt}), Sample((2, 4, 1), {"dtype": dt}),
            Sample((4, 3, -2), {"dtype": dt}), Sample((3, 3, 5), {"dtype": dt})]


def arange_samples(rng, dt):
    dt = np.dtype(dt).name
    return [Sample((5,), {"dtype": dt}), Sample((1, 10, 3), {"dtype": dt}),
            Sample((7, 1, -2), {"dtype": dt}), Sample((4,), {}), Sample((0.0, 1.0, 0.25), {})]


def gather_samples(rng, dt):
    return [
        Sample((arr(rng, (5, 3), dt), idx([0, 4, -1, 0, 2])), {"axis": 0}),
        Sample((arr(rng, (2, 4, 3), dt), idx([[1, 1], [-4, 3]])), {"axis": 1}),
        Sample((arr(rng, (2, 4, 3), dt), idx(2)), {"axis": -1}),
        Sample((arr(rng, (2, 4), dt), idx([], )), {"axis": 1}),
    ]


def gather_static_samples(rng, dt):
    return [
        Sample((arr(rng, (5, 3), dt),), {"indices": [0, 4, -1, 0, 2], "axis": 0}),
        Sample((arr(rng, (2, 4, 3), dt),), {"indices": [[1, 1], [-4, 3]], "axis": -2}),
    ]


def scatter_add_samples(rng, dt):
    return [
        Sample((arr(rng, (5, 3), dt), idx([0, 4, -1, 0, 2]), arr(rng, (5, 3), dt)), {"axis": 0}),
        Sample((arr(rng, (2, 2, 2, 3), dt), idx([[1, 1], [-4, 3]]), arr(rng, (2, 4, 3), dt)),
               {"axis": 1}),
        Sample((arr(rng, (2, 4), dt), idx(1), arr(rng, (2, 4, 3), dt)), {"axis": 2}),
    ]


def scatter_slice_samples(rng, dt):
    like = arr(rng, (4, 5), dt)
    return [
        Sample((like, arr(rng, (2, 3), dt)), {"spec": ((1, 3, 1), (None, -2, 1))}),
        Sample((like, arr(rng, (2, 2), dt)), {"spec": ((None, None, -2), (3, 0, -2))}),
        Sample((like, arr(rng, (0, 5), dt)), {"spec": ((3, 1, 1), (None, None, 1))}),
    ]


def split_like_samples(rng, dt):
    return [
        Sample((arr(rng, (2, 3), dt), arr(rng, (5, 3), dt), arr(rng, (3, 1), dt)), {"axis": 0}),
        Sample((arr(rng, (2, 1), dt), arr(rng, (2, 4), dt), arr(rng, (2, 3), dt)), {"axis": -1}),
    ]


def getitem_tensor_samples(rng, dt):
    return [
        Sample((arr(rng, (5, 3), dt), idx([0, 4, -1, 0])), {"index": ("I",)}),
        Sample((arr(rng, (3, 5, 2), dt), idx([[1, 1], [-2, 0]])), {"index": (slice(None), "I", 1)}),
        Sample((arr(rng, (3, 5, 2), dt), idx(3)), {"index": (1, "I")}),
        Sample((arr(rng, (3, 5, 2), dt), idx([1, 0])), {"index": (0, slice(None), "I")}),
    ]


def np_full(shape_, v, dtype=None):
    if dtype is None:
        dtype = (default_float() if isinstance(v, float) else default_int()).np
    return np.full(shape_, v, dtype)


def concat_fn(*xs, axis=0):
    return ga.concat(list(xs), axis)


def stack_fn(*xs, axis=0):
    return ga.stack(list(xs), axis)


def np_concat(*xs, axis=0):
    return np.concatenate(xs, axis)


def np_stack(*xs, axis=0):
    return np.stack(xs, axis)


# ---------------------------------------------------------------------------------------------

ROWS = [
    OpInfo("transpose", ga.transpose, lambda x, perm=None: np.transpose(x, perm), samples(
        S((3, 4)), S((2, 3, 4), perm=(1, -1, 0)), S((2, 3, 4, 2), perm=(0, 2, 3, 1)), S((5,)),
        S((), dynamic=False),
    ), dtypes=ALL),
    OpInfo("reshape", ga.reshape, np.reshape, samples(
        S((3, 4), shape=(-1,)), S((2, 3, 4), shape=(4, -1)), S((2, 3, 4), shape=(6, 4)),
        S((2, 6), shape=(2, 3, 2)), S((1,), shape=(), dynamic=False),
        S((), shape=(1, 1), dynamic=False), S((0, 3), shape=(3, 0)),
    ), dtypes=ALL),
    OpInfo("reshape_like", ga.reshape_like, lambda x, y: np.reshape(x, y.shape),
           samples(S((2, 6), (3, 4)), S((4,), (2, 2))), dtypes=NUMERIC, grad_args=(0,)),
    OpInfo("squeeze", ga.squeeze, np.squeeze, samples(
        S((3, 1, 4), axis=1), S((1, 3, 1), dynamic=False), S((1, 3, 1), axis=(0, -1)),
        S((2, 1), axis=-1),
    ), dtypes=ALL),
    OpInfo("expand_dims", ga.expand_dims, np.expand_dims, samples(
        S((3, 4), axis=0), S((3, 4), axis=-1), S((3, 4), axis=(0, 2)),
        S((), axis=(-1, 0), dynamic=False),
    ), dtypes=ALL),
    OpInfo("broadcast_to", ga.broadcast_to, np_broadcast_to, samples(
        S((3, 1), shape=(2, 3, 4)), S((4,), shape=(3, 4)), S((), shape=(2, 3), dynamic=False),
        S((3, 1), shape=(None, 4)), S((2, 1, 3), shape=(2, 5, 3)),
    ), dtypes=ALL),
    OpInfo("broadcast_to_like", ga.broadcast_to_like,
           lambda x, y: np.broadcast_to(x, np.broadcast_shapes(x.shape, y.shape)),
           samples(S((3, 1), (2, 3, 4)), S((1, 4), (3, 1))), dtypes=NUMERIC, grad_args=(0,)),
    OpInfo("tile", ga.tile, np.tile, samples(
        S((2, 3), reps=2), S((2, 3), reps=(2, 1, 3)), S((3,), reps=(2, 2)), S((2, 3), reps=(1, 0)),
        S((), reps=3, dynamic=False),
    ), dtypes=ALL),
    OpInfo("tile_sum", shape.tile_sum, np_tile_sum, samples(
        S((4, 6), reps=(2, 3)), S((3, 2, 4), reps=(1, 2, 1)),
    ), dtypes=NUMERIC),
    OpInfo("concat", concat_fn, np_concat, samples(
        S((2, 3), (2, 4), axis=1), S((2, 3), (3, 3), (1, 3), axis=0),
        S((2, 1, 3), (2, 1, 2), axis=-1), S((4,)),
    ), dtypes=ALL),
    OpInfo("stack", stack_fn, np_stack, samples(
        S((2, 3), (2, 3), (2, 3)), S((2, 3), (2, 3), axis=-1), S((2, 3), (2, 3), axis=1),
        S((), (), dynamic=False),
    ), dtypes=ALL),
    OpInfo("split", ga.split, np.split, samples(
        S((6, 4), indices_or_sections=3), S((5, 4), indices_or_sections=[1, 3]),
        S((4, 6), indices_or_sections=[2, -2], axis=1),
        S((5, 2), indices_or_sections=[3, 1], dynamic=False),
        S((5, 2), indices_or_sections=[1, 9], dynamic=False),
        S((3, 4), indices_or_sections=1, axis=-1),
    ), dtypes=ALL),
    OpInfo("split_like", lambda a, g, b, axis: ga.split_like(g, [a, b], axis),
           lambda a, g, b, axis: np.split(g, [a.shape[axis]], axis), split_like_samples,
           dtypes=NUMERIC, grad_args=(1,)),
    OpInfo("pad", ga.pad, np_pad, samples(
        S((3, 4), pad_width=1), S((3, 4), pad_width=((1, 2), (0, 1)), constant_values=1.5),
        S((2, 3, 2), pad_width=(2, 1)), S((4,), pad_width=0),
    ), dtypes=ALL),
    OpInfo("pad.reflect", ga.pad, np_pad, samples(
        S((4, 5), pad_width=((1, 2), (2, 1)), mode="reflect"),
        S((3, 4), pad_width=((0, 0), (3, 3)), mode="reflect"),
        S((4,), pad_width=(3, 0), mode="reflect"),
    ), dtypes=ALL),
    OpInfo("pad.edge", ga.pad, np_pad, samples(
        S((3, 4), pad_width=((2, 1), (1, 3)), mode="edge"), S((1, 3), pad_width=2, mode="edge"),
    ), dtypes=ALL),
    OpInfo("pad.wrap", ga.pad, np_pad, samples(
        S((3, 4), pad_width=((1, 2), (2, 1)), mode="wrap"),
        S((3, 4), pad_width=((3, 3), (4, 0)), mode="wrap"),
    ), dtypes=ALL),
    OpInfo("getitem", getitem_fn, getitem_ref, samples(
        S((4, 5), index=(1,)), S((4, 5), index=(-1, 2)), S((4, 5), index=(slice(1, 3),)),
        S((4, 5, 3), index=(0, slice(None), -2)), S((4, 5), index=(slice(None), slice(-3, None))),
    ), dtypes=ALL),
    OpInfo("getitem.steps", getitem_fn, getitem_ref, samples(
        S((6, 5), index=(slice(None, None, 2),)),
        S((6, 5), index=(slice(None, None, -1), slice(4, 0, -2))),
        S((6, 5), index=(slice(-2, None, -3), slice(1, None, 3))),
        S((6, 5), index=(slice(10, -10, -1), slice(7, 2))),
    ), dtypes=ALL),
    OpInfo("getitem.newaxis", getitem_fn, getitem_ref, samples(
        S((3, 4), index=(None,)), S((3, 4), index=(Ellipsis, None)),
        S((3, 4, 2), index=(Ellipsis, 1)), S((3, 4, 2), index=(1, None, Ellipsis, None)),
        S((3, 4, 2), index=(slice(None), None, 2, slice(None, None, -1))),
        S((), index=(None, Ellipsis), dynamic=False),
    ), dtypes=ALL),
    OpInfo("getitem.array", getitem_fn, getitem_ref, samples(
        S((5, 3), index=([0, 4, -1, 0],)),
        S((3, 5, 2), index=(slice(None), [[1, 1], [-2, 0]])),
        S((3, 5, 2), index=(0, slice(None), [1, 0, 1])),
        S((3, 5, 2), index=(slice(1, None), [4, 0], 1)),
        S((3, 5, 2), index=(None, Ellipsis, [1, 1])),
        S((3, 5, 4), index=(1, None, [2, 3])),
        S((3, 5, 4), index=(slice(None, None, -1), 2, [3, 0, 0])),
    ), dtypes=ALL),
    OpInfo("getitem.tensor", lambda x, i, index: getitem_fn(x, index, i),
           lambda x, i, index: getitem_ref(x, index, i), getitem_tensor_samples, dtypes=ALL,
           grad_args=(0,)),
    OpInfo("gather", ga.gather, np.take, gather_samples, dtypes=ALL, grad_args=(0,)),
    OpInfo("gather.static", ga.gather, np.take, gather_static_samples, dtypes=ALL),
    OpInfo("scatter_add", ga.scatter_add, np_scatter_add, scatter_add_samples, dtypes=NUMERIC,
           grad_args=(0,)),
    OpInfo("scatter_slice", lambda like, g, spec: ga.scatter_slice(g, like, spec),
           np_scatter_slice, scatter_slice_samples, dtypes=NUMERIC, grad_args=(1,)),
    OpInfo("zeros", ga.zeros, lambda shape, dtype: np.zeros(shape, dtype), creation_samples,
           dtypes=ALL),
    OpInfo("ones", ga.ones, lambda shape, dtype: np.ones(shape, dtype), creation_samples,
           dtypes=ALL),
    OpInfo("full", ga.full, np_full, full_samples, dtypes=ALL),
    OpInfo("zeros_like", ga.zeros_like, lambda x, dtype=None: np.zeros_like(x, dtype),
           like_samples, dtypes=ALL),
    OpInfo("ones_like", ga.ones_like, lambda x, dtype=None: np.ones_like(x, dtype),
           like_samples, dtypes=ALL),
    OpInfo("full_like", ga.full_like, lambda x, v, dtype=None: np.full_like(x, v, dtype),
           full_like_samples, dtypes=ALL),
    OpInfo("eye", ga.eye, lambda n, m=None, k=0, dtype=None: np.eye(n, m, k, dtype),
           eye_samples, dtypes=ALL),
    OpInfo("arange", ga.arange, np_arange, arange_samples, dtypes=NUMERIC),
]
