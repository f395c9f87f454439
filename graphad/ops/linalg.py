"""ga.linalg: inv, solve, det."""

from .linalg_ops import det, inv, solve  # noqa: F401
