"""The pass infrastructure: `Program` (an immutable view of what to compute), `rebuild` (replay
a program into a new graph through a per-node rewriting function) and rewrite rules as data.

The contract every pass follows
-------------------------------
A pass is a pure function `Program -> Program` that returns the SAME object when it changes
nothing. A `Program` is an immutable view: `graph` (a `Graph`), `outputs` (tuple of Tensors),
`operations` (tuple of Operations: assignments, groups, training steps) and `feeds` (tuple of
tensors fed from outside, in a fixed order; usually placeholders).

Passes never mutate their input graph (graphs are append-only, nodes immutable): they build a
NEW graph with `rebuild(prog, rewrite_node)`, which replays, in schedule order and iteratively,
the nodes the outputs/operations need (so every rebuild also eliminates dead code):

    rewrite_node(node, inputs, b) -> None | sequence of Tensors (one per output of `node`)

`node` is the old node, `inputs` its inputs already mapped into the new graph, `b` a `Builder`:
`b.graph` the new graph (also the default graph during the call, so graphad's op functions
build there), `b.attrs` the node's attrs with rebuilt bodies, `b.copy()` the default copy (its
outputs may be returned: not a change), `b.add(op, inputs, attrs)` a new node, `b.const(value)`,
`b.get(old_tensor)` the new tensor of anything replayed earlier, `b.nodes` {id(old node): new
node}, `b.ctx` a dict of pass state (one per rebuild), `b.decline(rule, reason)`,
`b.fired(rule)`. Returning None copies the node unchanged; returning tensors replaces its
outputs (a change). Nodes made during the call inherit the old node's location and its tags
`grad_of`, `mode`, `recompute`. A rewrite must keep each output's dtype and shape.

Probing: before replaying, `rebuild` runs the rewrite over the OLD graph with a builder that
builds nothing (`b.add`/`b.const`/a non-plain `b.copy` raise internally, meaning "fires"); if
nothing fires, the input program is returned without a copy. So a rewrite must build only
through `b` (never `b.graph.add_node` directly, nor graphad op functions before it has decided
to fire), and keep its state in `b.ctx` (the probe gets its own copy).

`rebuild` takes care of: feeds (new placeholders with the same names, shapes, dtypes and
locations, in the same order; a fed intermediate tensor becomes a placeholder), placeholders,
variables (same `attrs["name"]`, shape, dtype, `initial_value`, `trainable`), assignments,
groups and control inputs, node tags, and nodes holding body graphs in attrs (`loop`: body/cond,
`cond`: true/false, or any Graph-valued attr). Bodies are rebuilt first (with the same
`rewrite_node` when `into_bodies`), as new graphs whose parent is the new outer graph; their
captures are re-made from the node's mapped inputs (unused captures are dropped, captures that
became the same tensor are merged) and the node's capture inputs are recomputed from them, so
a rewrite inside a body may also read, or create nodes in, an enclosing graph (`b.graph.parent`).

Rewrite rules are data: `Rule("mul(x, 1) -> x", ops, match)` with `match(node, inputs, b)`
returning replacement tensors, None (does not apply) or a `Decline("reason")` (the pattern
matched but the guard said no: onnxscript's MatchResult.fail); `apply_rules` tries them by op.
Declines are collected by `rebuild(..., declines=list)` for reports and debugging (that run
skips the probe, so every guard is asked).

Files: program.py (Program, live nodes, graph_pass), replay.py (Builder, the replayer, the
probe), this module (the contract, rules, `rebuild`; it re-exports the others).
"""


from ..graph import Tensor
from .program import (  # noqa: F401  (re-exported: the one import place for pass authors)
    Program,
    body_attrs,
    count_nodes,
    count_uses,
    graph_pass,
    graph_size,
    has_op,
    live_nodes,
)
from .replay import INHERITED_TAGS, Builder, Replayer, would_change  # noqa: F401

__all__ = [
    "Program",
    "Builder",
    "Rule",
    "Decline",
    "apply_rules",
    "index_rules",
    "rebuild",
    "would_change",
    "graph_pass",
    "body_attrs",
    "count_nodes",
    "count_uses",
    "graph_size",
    "has_op",
    "live_nodes",
]


# ---------------------------------------------------------------------------------------------
# Rules


class Decline(str):
    """A guard's refusal: the reason (a str) a matched rule does not apply."""

    __slots__ = ()


class Rule:
    """A named rewrite `before -> after`; `match(node, inputs, b)` returns replacement tensors,
    None (pattern does not match) or a Decline(reason)."""

    __slots__ = ("name", "ops", "match")

    def __init__(self, name, ops, match):
        self.name, self.ops, self.match = name, tuple(ops), match

    def __repr__(self):
        return f"<Rule {self.name}>"


def apply_rules(rules_by_op, node, inputs, b):
    """Try the rules registered for `node.op` in order; the first replacement wins."""
    for rule in rules_by_op.get(node.op, ()):
        res = rule.match(node, inputs, b)
        if res is None:
            continue
        if isinstance(res, Decline):
            b.decline(rule.name, res)
            continue
        if isinstance(res, Tensor):
            res = (res,)
        b.fired(rule.name)
        return tuple(res)
    return None


def index_rules(rules):
    by_op = {}
    for r in rules:
        for op in r.ops:
            by_op.setdefault(op, []).append(r)
    return by_op


# ---------------------------------------------------------------------------------------------
# rebuild


def rebuild(prog, rewrite_node=None, *, into_bodies=True, declines=None, fires=None,
            force=False, ctx=None, probe=True):
    """Replay `prog` into a new graph through `rewrite_node` (see the module docstring).

    Returns `prog` itself when nothing changed (no rewrite fired, no dead node dropped, no
    body changed) unless `force`. `declines`: a list collecting guard refusals; `fires`: a
    dict counting fired rules; `ctx`: a dict the rewrite function reads as `b.ctx`.
    With `probe` (and a rewrite function), the rewrite first runs over the old graph with a
    builder that builds nothing; if no rewrite fires, `prog` is returned without replaying
    (so a pass that finds nothing to do costs a scan, not a copy; dead code stays: that is
    eliminate_dead_code's job). Nodes a rewrite leaves unused in the new graph stay there
    too, until the next rebuild or eliminate_dead_code.
    """
    ctx = {} if ctx is None else ctx
    probe = probe and declines is None  # collecting declines needs the real run
    if probe and rewrite_node is not None and not force and not would_change(
            prog, rewrite_node, into_bodies, dict(ctx)):  # own ctx: no state leaks
        return prog
    r = Replayer(rewrite_node, into_bodies, declines, fires, ctx)
    new = r.run(prog)
    if not r.changed and not force:
        return prog
    return new
