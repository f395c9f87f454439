"""feed_dict validation: keys resolved, shapes/named dims/dtypes checked, errors name the line."""

import numpy as np

from .errors import FeedError
from .graph import Tensor
from .types import format_shape


def _resolve_key(graph, key):
    if isinstance(key, Tensor):
        if key.graph is not graph:
            raise FeedError(f"feed key {key.name!r} belongs to graph {key.graph.name!r}, "
                            f"not to the session's graph {graph.name!r}")
        return key
    if isinstance(key, str):
        for n in graph.nodes:
            if n.op == "placeholder" and n.name == key:
                return n.outputs[0]
        names = sorted(n.name for n in graph.nodes if n.op == "placeholder")
        raise FeedError(f"unknown feed key {key!r}: graph {graph.name!r} has no placeholder of "
                        f"that name (placeholders: {', '.join(names) or 'none'})")
    raise FeedError(f"feed key {key!r} is not a placeholder, a Tensor or a placeholder name")


def _where(t):
    return f"placeholder {t.name!r} (created at {t.node.location})" if t.node.op == "placeholder" \
        else f"tensor {t.name!r} (created at {t.node.location})"


def convert_value(t, value):
    """value as a numpy array of t's dtype, refusing lossy casts."""
    want = t.dtype.np
    try:
        arr = np.asarray(value)
    except Exception as e:
        raise FeedError(f"feed for {_where(t)}: cannot convert {type(value).__name__}: {e}") from None
    src = arr.dtype
    if src == want:
        return np.asarray(arr, order="C")
    bad = src.kind not in "biuf"
    if not bad:
        if want.kind == "b":
            bad = src.kind != "b"
        elif want.kind == "i":
            if src.kind == "f":
                bad = True
            elif src.kind in "iu" and arr.size:
                info = np.iinfo(want)
                bad = bool(arr.min() < info.min or arr.max() > info.max)
        elif want.kind == "f" and src.kind == "f" and arr.size:
            with np.errstate(over="ignore"):
                conv = arr.astype(want)
            bad = bool(np.any(np.isinf(conv) & np.isfinite(arr)))
    if bad:
        raise FeedError(
            f"feed for {_where(t)}: expected dtype {t.dtype.name}, got {src} which cannot be "
            f"converted without losing values (shape {format_shape(arr.shape)})"
        )
    return np.asarray(arr.astype(want), order="C")


def validate_feeds(graph, feed_dict, allow_variables=False):
    """{Tensor: contiguous array of its dtype}; raises FeedError on any mismatch."""
    feeds = {}
    named = {}
    for key, value in (feed_dict or {}).items():
        t = _resolve_key(graph, key)
        if t.node.op == "variable" and not allow_variables:
            raise FeedError(f"variable {t.name!r} cannot be fed; use sess.assign(var, value)")
        if t in feeds:
            raise FeedError(f"{_where(t)} is fed twice")
        arr = convert_value(t, value)
        if arr.ndim != len(t.shape):
            raise FeedError(
                f"feed for {_where(t)}: expected rank {len(t.shape)} shape {format_shape(t.shape)}"
                f" {t.dtype.name}, got rank {arr.ndim} shape {format_shape(arr.shape)}"
            )
        for axis, (d, n) in enumerate(zip(t.shape, arr.shape)):
            if isinstance(d, int) and d != n:
                raise FeedError(
                    f"feed for {_where(t)}: expected shape {format_shape(t.shape)} "
                    f"{t.dtype.name}, got shape {format_shape(arr.shape)} (axis {axis}: {n} != {d})"
                )
            if isinstance(d, str):
                if d in named and named[d][0] != n:
                    other, size = named[d][1], named[d][0]
                    raise FeedError(
                        f"feed for {_where(t)}: dim {d!r} is {n} (shape {format_shape(arr.shape)})"
                        f" but {_where(other)} was fed with {d!r} = {size}"
                    )
                named[d] = (n, t)
        feeds[t] = arr
    return feeds
