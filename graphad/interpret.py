"""numpy reference interpreter: evaluates any graph with the ops' `reference` rules."""

import numpy as np

from .errors import FeedError, GraphadError, GraphError, RunError
from .graph import Operation, Tensor, ancestors


def evaluate(fetches, feeds=None, variables=None):
    """Values of `fetches` (Tensors) given `feeds` {Tensor: array} and variable values by name.

    Variables not in `variables` read their initial value. Returns a list of numpy arrays.
    """
    feeds = feeds or {}
    variables = variables or {}
    env = {}
    for t, v in feeds.items():
        env[t] = np.asarray(v)
    roots = [f for f in fetches if isinstance(f, (Tensor, Operation))]
    for node in ancestors(roots, stop=lambda t: t in env):
        if all(o in env for o in node.outputs) and node.outputs:
            continue
        if node.op == "placeholder":
            t = node.outputs[0]
            raise FeedError(
                f"placeholder {t.name!r} (created at {node.location}) has no value: feed it"
            )
        if node.op == "variable":
            v = node.outputs[0]
            env[v] = np.asarray(variables.get(v.name, v.initial_value))
            continue
        args = [env[t] for t in node.inputs]
        try:
            with np.errstate(all="ignore"):
                outs = node.opdef.reference(node, *args)
        except GraphadError:
            raise
        except (FloatingPointError, ZeroDivisionError) as e:
            raise GraphError(f"op {node.op!r} ({node.name}) at {node.location}: {e}") from None
        except (IndexError, ValueError) as e:  # bad run-time values: out-of-range indices, ...
            raise RunError(f"op {node.op!r} (node {node.name!r}, created at {node.location}) "
                           f"failed: {type(e).__name__}: {e}") from None
        for o, val in zip(node.outputs, outs):
            env[o] = np.asarray(val)
    return [env[f] if isinstance(f, Tensor) else None for f in fetches]


def run_node(node, *args):
    """Evaluate one node's reference rule (used by constant folding)."""
    return tuple(np.asarray(v) for v in node.opdef.reference(node, *args))
