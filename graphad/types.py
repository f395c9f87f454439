"""Dtypes, symbolic dims, tensor types, broadcasting and JAX-like dtype promotion."""

import contextlib
import math
import sys
import threading

import numpy as np
from onnx import TensorProto

from .errors import DTypeError, DTypeOverflowError, ShapeError, _is_internal  # noqa: F401


def api_call():
    """(name of the graphad function the user called, "file:line" of that call).

    The name is that of the outermost graphad frame below the user's code, e.g. "cast" for
    `ga.cast(x, "complex64")` or "Variable" for `ga.Variable(...)`."""
    frame = sys._getframe(1)
    api = None
    while frame is not None:
        code = frame.f_code
        if not _is_internal(code.co_filename):
            return api, f"{code.co_filename}:{frame.f_lineno}"
        api = getattr(code, "co_qualname", code.co_name)
        for suffix in (".__new__", ".__init__", ".__call__"):
            if api.endswith(suffix):
                api = api[: -len(suffix)]
        frame = frame.f_back
    return api, "<unknown>"


def _at():
    """ "ga.<api>() at file:line: " prefix for errors of input checks shared by many API calls."""
    api, loc = api_call()
    return f"{api}() at {loc}: " if api else f"at {loc}: "


class DType:
    """A tensor element type; compares equal to its numpy dtype and its name."""

    __slots__ = ("name", "np", "onnx", "kind", "bits")

    def __init__(self, name, np_type, onnx_type, kind, bits):
        self.name, self.np, self.onnx, self.kind, self.bits = (
            name,
            np.dtype(np_type),
            onnx_type,
            kind,
            bits,
        )

    def __repr__(self):
        return f"ga.{self.name}"

    def __str__(self):
        return self.name

    def __eq__(self, other):
        if isinstance(other, DType):
            return self is other
        try:
            return as_dtype(other) is self
        except (DTypeError, TypeError):
            return False

    def __hash__(self):
        return hash(self.name)

    @property
    def is_floating(self):
        return self.kind == "f"

    @property
    def is_integer(self):
        return self.kind == "i"

    @property
    def is_bool(self):
        return self.kind == "b"

    @property
    def itemsize(self):
        return self.np.itemsize


float16 = DType("float16", np.float16, TensorProto.FLOAT16, "f", 16)
float32 = DType("float32", np.float32, TensorProto.FLOAT, "f", 32)
float64 = DType("float64", np.float64, TensorProto.DOUBLE, "f", 64)
int32 = DType("int32", np.int32, TensorProto.INT32, "i", 32)
int64 = DType("int64", np.int64, TensorProto.INT64, "i", 64)
bool_ = DType("bool", np.bool_, TensorProto.BOOL, "b", 1)

ALL_DTYPES = (float16, float32, float64, int32, int64, bool_)
FLOAT_DTYPES = (float16, float32, float64)
_BY_NAME = {d.name: d for d in ALL_DTYPES}
_BY_NAME.update({"bool_": bool_, "half": float16, "float": float32, "double": float64})
_BY_NP = {d.np: d for d in ALL_DTYPES}
_BY_ONNX = {d.onnx: d for d in ALL_DTYPES}


def as_dtype(x):
    """Accept a DType, numpy dtype/type, Python type or name; return the DType."""
    if isinstance(x, DType):
        return x
    if x is float:
        return float64
    if x is int:
        return int64
    if x is bool:
        return bool_
    if isinstance(x, str) and x in _BY_NAME:
        return _BY_NAME[x]
    try:
        d = np.dtype(x)
    except TypeError:
        raise DTypeError(f"{_at()}not a dtype: {x!r}") from None
    if d not in _BY_NP:
        raise DTypeError(
            f"{_at()}dtype {d} is not supported; use one of "
            f"{', '.join(t.name for t in ALL_DTYPES)}"
        )
    return _BY_NP[d]


def from_onnx_dtype(code):
    if code not in _BY_ONNX:
        raise DTypeError(f"ONNX element type {TensorProto.DataType.Name(code)} is not supported")
    return _BY_ONNX[code]


# ---------------------------------------------------------------------------------------------
# x64 configuration (JAX semantics: without x64, Python floats and float64 constants are float32)


class _Config(threading.local):
    def __init__(self):
        self.x64 = False


_CONFIG = _Config()


def x64_enabled():
    return _CONFIG.x64


def enable_x64(flag=True):
    _CONFIG.x64 = bool(flag)


@contextlib.contextmanager
def x64(flag=True):
    old = _CONFIG.x64
    _CONFIG.x64 = bool(flag)
    try:
        yield
    finally:
        _CONFIG.x64 = old


def default_float():
    return float64 if _CONFIG.x64 else float32


def default_int():
    return int64 if _CONFIG.x64 else int32


def canonicalize(dtype):
    """The dtype a constant of numpy dtype `dtype` gets: float64 -> float32 unless x64."""
    dtype = as_dtype(dtype)
    if dtype is float64 and not _CONFIG.x64:
        return float32
    return dtype


# ---------------------------------------------------------------------------------------------
# Dims and shapes. A dim is an int (known), None (unknown) or a str (named symbolic dim).


def check_dim(d):
    if d is None or isinstance(d, str):
        return d
    if isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0:
        return int(d)
    raise ShapeError(f"{_at()}invalid dimension {d!r}: use a non-negative int, None or a name")


def as_shape(shape):
    if shape is None:
        raise ShapeError(f"{_at()}a shape is required (use () for a scalar)")
    if isinstance(shape, (int, np.integer, str)):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise ShapeError(f"{_at()}shape {shape!r} is not a tuple of dims (ints, None or "
                         "names)") from None
    out = []
    for d in dims:
        try:
            out.append(check_dim(d))
        except ShapeError:
            raise ShapeError(f"{_at()}invalid dimension {d!r} in shape {shape!r}: use a "
                             "non-negative int, None or a name") from None
    return tuple(out)


def is_static(shape):
    return all(isinstance(d, int) for d in shape)


def num_elements(shape):
    """Product of dims, or None if any is not known."""
    n = 1
    for d in shape:
        if not isinstance(d, int):
            return None
        n *= d
    return n


def format_shape(shape):
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def merge_dims(a, b):
    """Two dims that must be equal: the more informative one, or None if they conflict."""
    if a == b:
        return a
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, int) and isinstance(b, int):
        return None
    return a if isinstance(a, int) else b


def dims_compatible(a, b):
    return not (isinstance(a, int) and isinstance(b, int) and a != b)


def broadcast_shapes(*shapes):
    """Numpy broadcasting over symbolic dims; raises ShapeError naming the shapes."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(rank):
        dims = [s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0]
        result = 1
        for d in dims:
            if d == 1:
                continue
            if result == 1:
                result = d
            elif isinstance(result, int) and isinstance(d, int):
                if result != d:
                    raise ShapeError(
                        "shapes "
                        + " and ".join(format_shape(s) for s in shapes)
                        + f" cannot be broadcast together (axis {axis - rank}: {result} vs {d})"
                    )
            elif result != d:
                # int vs symbol: the int wins (the symbol must equal it or be 1).
                if isinstance(d, int):
                    result = d
                elif not isinstance(result, int):
                    result = None
        out.append(result)
    return tuple(out)


class TensorType:
    """(shape, dtype) of a value; shape entries are int, None or a named dim."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape = as_shape(shape)
        self.dtype = as_dtype(dtype)

    @property
    def rank(self):
        return len(self.shape)

    def __eq__(self, other):
        return (
            isinstance(other, TensorType) and self.shape == other.shape and self.dtype is other.dtype
        )

    def __hash__(self):
        return hash((self.shape, self.dtype))

    def __repr__(self):
        return f"{self.dtype.name}{format_shape(self.shape)}"


# ---------------------------------------------------------------------------------------------
# Promotion (a simplified JAX lattice: bool < int32 < int64 < float16 < float32 < float64)

_RANK = {bool_: 0, int32: 1, int64: 2, float16: 3, float32: 4, float64: 5}


def promote_types(*dtypes):
    """Join of strong dtypes."""
    dtypes = [as_dtype(d) for d in dtypes]
    if not dtypes:
        raise DTypeError("promote_types needs at least one dtype")
    return max(dtypes, key=_RANK.__getitem__)


def result_type(strong, weak_kinds):
    """Result dtype of strong dtypes combined with weak Python scalars of the given kinds.

    A Python scalar never changes a tensor's dtype unless its kind is higher: a Python float with
    an int tensor gives the default float; a Python int with a bool tensor gives the default int.
    """
    if strong:
        dt = promote_types(*strong)
    elif "f" in weak_kinds:
        return default_float()
    elif "i" in weak_kinds:
        return default_int()
    else:
        return bool_
    if "f" in weak_kinds and not dt.is_floating:
        return default_float()
    if "i" in weak_kinds and dt.is_bool:
        return default_int()
    return dt


# ---------------------------------------------------------------------------------------------
# Python scalars that must take a dtype (weak scalars, Python data given an explicit dtype)
#
# Rule (NumPy 2 / JAX for ints; stricter than both for floats): a Python int outside the integer
# dtype's range, and a finite Python int or float that would become +-inf in the floating dtype,
# raise DTypeOverflowError instead of wrapping or saturating silently. Rounding (2**24 + 1 in
# float32, 0.1 in float16) and underflow to zero (1e-50 in float32) are ordinary conversions and
# are accepted; inf and nan stay inf and nan.


def dtype_range(dtype):
    """Human-readable finite range of `dtype`."""
    dtype = as_dtype(dtype)
    if dtype.is_integer:
        info = np.iinfo(dtype.np)
        return f"[{info.min}, {info.max}]"
    if dtype.is_floating:
        m = float(np.finfo(dtype.np).max)
        return f"[-{m:.6g}, {m:.6g}]"
    return "{False, True}"


_INT_BOUNDS = {d: (int(np.iinfo(d.np).min), int(np.iinfo(d.np).max)) for d in (int32, int64)}
_FLOAT_MAX = {d: float(np.finfo(d.np).max) for d in FLOAT_DTYPES}


def scalar_overflow(value, dtype):
    """None if Python scalar `value` converts to `dtype` without overflowing, else the reason."""
    if not isinstance(dtype, DType):
        dtype = as_dtype(dtype)
    if isinstance(value, bool) or dtype.is_bool:
        return None
    bounds = _INT_BOUNDS.get(dtype)
    if bounds is not None:
        if isinstance(value, int):
            if not bounds[0] <= value <= bounds[1]:
                return f"is outside the range of {dtype.name} {dtype_range(dtype)}"
        elif math.isfinite(value) and not bounds[0] <= value < -bounds[0]:
            return f"is outside the range of {dtype.name} {dtype_range(dtype)}"
        return None
    try:
        v = float(value)
    except OverflowError:
        return f"is too large for any float (range of {dtype.name} {dtype_range(dtype)})"
    if abs(v) > _FLOAT_MAX[dtype] and math.isfinite(v):
        # beyond max: does it round to max or overflow to inf?
        with np.errstate(over="ignore"):
            if np.isinf(np.asarray(v, dtype=dtype.np)):
                return f"would overflow to inf in {dtype.name} (range {dtype_range(dtype)})"
    return None


def array_overflow(arr, dtype):
    """(index, value, reason) of the first element of numeric array `arr` (built from Python
    data) that overflows `dtype` by the rule above, or None."""
    dtype = as_dtype(dtype)
    arr = np.asarray(arr)
    if not arr.size or dtype.is_bool or arr.dtype.kind not in "iuf":
        return None
    if dtype.is_integer:
        info = np.iinfo(dtype.np)
        if arr.dtype.kind == "f":  # truncation is fine (as numpy); non-finite: the caller's
            bad = np.isfinite(arr) & ((arr < float(info.min)) | (arr >= -float(info.min)))
        else:
            bad = (arr < info.min) | (arr > info.max)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            bad = np.isinf(arr.astype(dtype.np)) & ~np.isinf(arr) if arr.dtype.kind == "f" \
                else np.isinf(arr.astype(dtype.np))
    if not bad.any():
        return None
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    v = arr[idx].item()
    return idx, v, scalar_overflow(v, dtype) or f"does not fit {dtype.name} {dtype_range(dtype)}"
