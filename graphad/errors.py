"""The graphad error hierarchy and the user-location capture that every message carries."""

import os
import sys

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


class GraphadError(Exception):
    """Base of every error graphad raises on purpose."""


class ShapeError(GraphadError, ValueError):
    """Shapes that cannot work together (broadcast, matmul, reshape, ...)."""


class DTypeError(GraphadError, TypeError):
    """Dtypes that cannot work together, or an op given a dtype it does not accept."""


class DTypeOverflowError(DTypeError, OverflowError):
    """A Python scalar (or Python data) that does not fit the dtype it must take, e.g.
    `int32_tensor + 2**40`. A `ga.DTypeError` (so a TypeError) and an OverflowError, which is
    what NumPy 2 and JAX raise for the same thing."""


class FeedError(GraphadError, ValueError):
    """A bad `feed_dict`: missing, unknown, wrong rank/size/dtype."""


class GraphError(GraphadError, ValueError):
    """Misuse of graphs: tensors of two graphs mixed, unknown names, bad fetches."""


class NotDifferentiableError(GraphadError):
    """A derivative was requested only through ops that have none."""


class DeviceError(GraphadError):
    """The requested execution device cannot run."""


class ExportError(GraphadError):
    """A graph cannot be written as ONNX."""


class OnnxImportError(GraphadError):
    """An ONNX model cannot be read into a graph."""


class RunError(GraphadError, RuntimeError):
    """onnxruntime failed while running a compiled graph."""


_INTERNAL = {}


def _is_internal(filename):
    hit = _INTERNAL.get(filename)
    if hit is None:
        hit = os.path.abspath(filename).startswith(_PKG_DIR + os.sep)
        _INTERNAL[filename] = hit
    return hit


def user_location():
    """Return "file:line" of the innermost frame outside the graphad package (the user's code)."""
    frame = sys._getframe(1)
    while frame is not None:
        if not _is_internal(frame.f_code.co_filename):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"
