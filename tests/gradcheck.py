"""Finite-difference helpers for derivative tests: five-point directional derivatives and a
scale-aware closeness check."""

import numpy as np

# Five-point central stencil: error O(h^4); with h = 1e-3 in float64 the truncation error
# (~1e-13 * f''''') and the rounding error (~1e-13 * |f|) are both far below test tolerances.
_STENCIL = ((-2.0, 1.0 / 12), (-1.0, -8.0 / 12), (1.0, 8.0 / 12), (2.0, -1.0 / 12))


def directional(fn, point, direction, h=1e-3):
    """d/ds fn(point + s * direction) at s = 0, by the five-point stencil.

    `fn(list_of_arrays) -> list_of_arrays`; `point` and `direction` are lists of float arrays of
    equal shapes. Returns a list with one derivative array per output of `fn`.
    """
    total = None
    for s, c in _STENCIL:
        moved = [p + (s * h) * d for p, d in zip(point, direction)]
        vals = [np.asarray(v, dtype=np.float64) for v in fn(moved)]
        if total is None:
            total = [c * v for v in vals]
        else:
            total = [t + c * v for t, v in zip(total, vals)]
    return [t / h for t in total]


def inner(a_list, b_list):
    """Sum over pairs of <a, b>; None entries count as zero."""
    total = 0.0
    for a, b in zip(a_list, b_list):
        if a is None or b is None:
            continue
        total += float(np.sum(np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64)))
    return total


def assert_close(got, want, *, rtol, atol, scale=1.0, what=""):
    """|got - want| <= atol * scale + rtol * max(|got|, |want|), elementwise, with a message
    naming `what` and the worst mismatch."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    err = np.abs(got - want)
    bound = atol * scale + rtol * np.maximum(np.abs(got), np.abs(want))
    bad = ~(err <= bound)
    if np.any(bad):
        k = int(np.argmax(np.where(bad, err - bound, -np.inf)))
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} entries differ; worst at flat index {k}: "
            f"got {got.ravel()[k]!r}, want {want.ravel()[k]!r} (|diff| {err.ravel()[k]:.3g}, "
            f"allowed {bound.ravel()[k]:.3g})"
        )
