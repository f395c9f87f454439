"""feed_dict validation: keys resolved, shapes/named dims/dtypes checked, errors name the line.

Dtype conversion of a fed value (API.md section 2: "lossy dtype casts raise FeedError"). A
value of the placeholder's dtype is used as it is; otherwise it is converted when no value is
lost, and refused with a FeedError naming the placeholder, its creation line, the expected and
received dtype and shape, and the first offending value:

- to an integer dtype: bools; integers in range; floats that are integral, finite and in range
  (3.0 -> 3 is fine; 3.5, nan, inf and 2.0**40 for int32 are refused).
- to a floating dtype: bools; integers exactly representable in it (2**24 + 1 is refused for
  float32, 2049 for float16; anything up to 2**24 / 2**11 in magnitude is exact); floats of any
  precision, *rounded to nearest* (float64 -> float32 is what every numpy user feeds: rounding is
  not loss). Underflow of a tiny nonzero value to 0 or a subnormal (1e-50 -> 0.0 in float32) is
  rounding too and is accepted; a finite value that overflows to inf is refused; nan/inf stay.
- to bool: only bools (0/1 ints are refused: use `x != 0`).
- complex, string and object data (including Python ints beyond int64) are refused.

The Session fast path (session.py `_Plan.feeds_ready`) only skips this module for plain ndarrays
whose dtype already equals the placeholder's, so every conversion goes through here.
"""

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


def _lossy(t, arr, why, index=None):
    at = f" at index {index}" if index is not None and arr.ndim else ""
    return FeedError(
        f"feed for {_where(t)}: expected {t.dtype.name} shape {format_shape(t.shape)}, got "
        f"{arr.dtype} shape {format_shape(arr.shape)} which cannot be converted without losing "
        f"values: {why}{at}"
    )


def _first(mask):
    """Index (tuple) of the first True of a boolean array."""
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _float_to_int(t, arr, want):
    """Refuse float values that are not integers in `want`'s range (nan, inf, 3.5, 2**40)."""
    lo = float(np.iinfo(want).min)  # -2**(bits-1): exact in every float dtype it can be
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(arr) & (np.trunc(arr) == arr) & (arr >= lo) & (arr < -lo))
    if bad.any():
        i = _first(bad)
        v = arr[i].item()
        why = ("value {!r} is not finite" if not np.isfinite(v)
               else "value {!r} is not an integer" if v != int(v)
               else "value {!r} is outside the range of " + t.dtype.name
               + f" [{np.iinfo(want).min}, {np.iinfo(want).max}]")
        raise _lossy(t, arr, why.format(v), i)


def _int_to_float(t, arr, want):
    """Refuse ints that `want` cannot represent exactly (2**24 + 1 in float32, 70000 in
    float16). Ints up to 2**(mantissa bits + 1) in magnitude are exact and skip the check."""
    exact = 2 ** (np.finfo(want).nmant + 1)
    big = arr > exact
    if arr.dtype.kind == "i":
        big |= arr < -exact
    if not big.any():
        return
    wide = np.uint64 if arr.dtype.kind == "u" else np.int64
    lo, hi = (0.0, 2.0**64) if wide is np.uint64 else (-(2.0**63), 2.0**63)
    with np.errstate(over="ignore", invalid="ignore"):
        conv = arr.astype(want).astype(np.float64)  # exact: every float16/32 is a float64
        inr = np.isfinite(conv) & (conv >= lo) & (conv < hi)
        back = np.zeros(arr.shape, wide)
        back[inr] = conv[inr].astype(wide)
    bad = big & (~inr | (back != arr.astype(wide)))
    if bad.any():
        i = _first(bad)
        v, c = arr[i].item(), conv[i].item()
        got = "overflows to inf" if not np.isfinite(c) else f"would become {c:.17g}"
        raise _lossy(t, arr, f"integer {v} is not exactly representable in {t.dtype.name} "
                             f"({got})", i)


def convert_value(t, value):
    """value as a numpy array of t's dtype, refusing lossy casts (rules in the module docstring)."""
    want = t.dtype.np
    try:
        arr = np.asarray(value)
    except Exception as e:
        raise FeedError(f"feed for {_where(t)}: cannot convert {type(value).__name__} to an "
                        f"array (expected {t.dtype.name} shape {format_shape(t.shape)}): "
                        f"{e}") from None
    src = arr.dtype
    if src == want:
        return np.asarray(arr, order="C")
    if src.kind not in "biuf":
        what = ("a Python int too large for any integer dtype" if src == object and any(
            isinstance(v, int) for v in arr.reshape(-1).tolist()) else f"dtype {src}")
        raise FeedError(
            f"feed for {_where(t)}: expected {t.dtype.name} shape {format_shape(t.shape)}, got "
            f"{what} (shape {format_shape(arr.shape)}), which cannot be converted to "
            f"{t.dtype.name}"
        )
    if arr.size:
        if want.kind == "b":
            if src.kind != "b":
                raise _lossy(t, arr, "only bool values can be fed to a bool placeholder")
        elif want.kind == "i":
            if src.kind == "f":
                _float_to_int(t, arr, want)
            elif src.kind in "iu":
                info = np.iinfo(want)
                bad = (arr < info.min) | (arr > info.max)
                if bad.any():
                    i = _first(bad)
                    raise _lossy(t, arr, f"value {arr[i].item()} is outside the range of "
                                         f"{t.dtype.name} [{info.min}, {info.max}]", i)
        elif want.kind == "f":
            if src.kind in "iu":
                _int_to_float(t, arr, want)
            elif src.kind == "f":
                with np.errstate(over="ignore"):
                    conv = arr.astype(want)
                bad = np.isinf(conv) & np.isfinite(arr)
                if bad.any():
                    i = _first(bad)
                    raise _lossy(t, arr, f"value {arr[i].item()!r} overflows to inf in "
                                         f"{t.dtype.name}", i)
                return np.asarray(conv, order="C")
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
