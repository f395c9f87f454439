"""Variable values to and from .npz files (never pickle); a bad file changes nothing."""

import numpy as np

from .errors import GraphadError
from .types import format_shape


def save_variables(sess, path):
    values = sess.variable_values()
    with open(path, "wb") as f:
        np.savez(f, **values)


def restore_variables(sess, path):
    try:
        with np.load(path, allow_pickle=False) as data:
            loaded = {k: data[k] for k in data.files}
    except Exception as e:  # noqa: BLE001
        # a missing file is OSError, but a corrupt or truncated archive can raise almost
        # anything from zipfile, zlib or numpy's header parser (BadZipFile, zlib.error,
        # EOFError, tokenize.TokenError, NotImplementedError, ...): all mean "not a checkpoint"
        raise GraphadError(f"cannot read variables from {str(path)!r} (nothing was changed): "
                           f"not a readable .npz file ({type(e).__name__}: {e})") from None
    variables = sess.graph.variables
    problems = [f"unknown variable {k!r}" for k in loaded if k not in variables]
    for name, v in variables.items():
        if name not in loaded:
            problems.append(f"missing variable {name!r}")
            continue
        arr = loaded[name]
        if arr.shape != v.shape or arr.dtype != v.dtype.np:
            problems.append(
                f"variable {name!r}: file has {arr.dtype}{format_shape(arr.shape)}, graph has "
                f"{v.dtype.name}{format_shape(v.shape)}"
            )
    if problems:
        raise GraphadError(f"cannot restore {path!r} (nothing was changed): " + "; ".join(problems))
    for name, arr in loaded.items():
        sess.assign(variables[name], arr)
