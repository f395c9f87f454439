"""Batched derivatives: one JVP/VJP traced with a symbolic seed, then the nodes that depend on the
seed replayed over every basis direction at once (stacked on a new leading axis, as JAX's
vmap(jvp) does). A dense Jacobian of an n-element input then costs one graph of about the size
of one JVP instead of n copies of it."""

import numpy as np

from .build import constant
from .passes.loop_vmap import batch_node, batch_split, can_batch
from .registry import lookup
from .types import num_elements

__all__ = ["push_batched", "push_directions", "basis_directions"]


def basis_directions(t):
    """Every standard basis tensor of t's static shape, stacked: eye(n) as (n,) + t.shape (an
    `eye` op: made at run time, not stored in the model, when n is large)."""
    from . import ops  # noqa: PLC0415

    n = num_elements(t.shape)
    with t.graph.as_default():
        return ops.reshape(ops.eye(n, dtype=t.dtype), (n,) + tuple(t.shape))


def _emitter(graph):
    def emit_for(node):
        def emit(spec):
            op, inputs, attrs = spec
            opdef = lookup(op) if isinstance(op, str) else op
            tags = dict(node.tags, batched=True)
            return graph.add_node(opdef, list(inputs), attrs, name=opdef.name,
                                  location=node.location, tags=tags).outputs[0]

        return emit

    return emit_for


def _stack_unbatched(t, n, emit):
    lead = emit(("expand_dims", [t], {"axes": (0,)}))
    return emit(("broadcast_to", [lead], {"shape": (n,) + tuple(t.shape)}))


def push_batched(like, engine_call):
    """Run `engine_call(seed) -> [Tensor | None]` once with a seed shaped like `like`, then replay
    the nodes that depend on the seed over all n basis directions of `like`.

    Returns one entry per result: None, or a Tensor of shape (n,) + result.shape whose k-th row
    is the result for the k-th basis direction. Returns None as a whole when some node on the
    seed's path has no batching rule (control flow, multi-output ops, run-time shapes): the
    caller then makes one call per direction. The unbatched copy is left dead for DCE.
    """
    return push_directions([like], [basis_directions(like)],
                           lambda seeds: engine_call(seeds[0]))


def push_directions(likes, directions, engine_call):
    """`push_batched` for several seeds at once with given directions: `directions[i]` has shape
    (n,) + likes[i].shape (row k of every one of them forms the k-th joint direction, e.g. the
    k-th color of a coloring); `engine_call(seeds)` gets one seed per like."""
    graph = likes[0].graph
    n = directions[0].shape[0]
    with graph.as_default():
        seeds = [constant(np.zeros(t.shape, t.dtype.np), dtype=t.dtype) for t in likes]
        mark = len(graph.nodes)
        results = engine_call(seeds)
        traced = graph.nodes[mark:]  # a snapshot: the batched copies are appended after it
        env = dict(zip(seeds, directions))
        emit_for = _emitter(graph)
        for node in traced:
            flags = [t in env for t in node.inputs]
            if not any(flags):
                continue  # primal work the rules need: shared by every direction
            ins = [env.get(t, t) for t in node.inputs]
            if len(node.outputs) > 1:
                parts = batch_split(node, ins, flags, emit_for(node), size=n)
                if parts is None:
                    return None
                env.update(zip(node.outputs, parts))
                continue
            if not can_batch(node, flags, size=n):
                return None
            env[node.outputs[0]] = batch_node(node, ins, flags, emit_for(node), size=n)
        out = []
        for r in results:
            if r is None or r in env:
                out.append(None if r is None else env[r])
            else:  # the same for every direction
                out.append(_stack_unbatched(r, n, emit_for(r.node)))
    return out
