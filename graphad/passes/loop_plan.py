"""Planning for loop_batch.py: which body nodes of one loop move before it (precompute), after
it (sink, accumulate), which carried values and scan outputs disappear, and the new loop."""

import numpy as np

from ..graph import Graph, ancestors
from ..types import is_static
from .loop_vmap import can_batch

__all__ = ["plan_loop", "Plan"]

MAX_STACKED_INCREMENT = 1024  # elements per step a non-contracted accumulator may stack
_PINNED = frozenset({"remat_barrier", "gather", "scatter_add"})


class _Body:
    """Facts about one (rebuilt) body graph: roles of its placeholders, kinds, consumers."""

    def __init__(self, body, nc):
        self.body, self.nc = body, nc
        self.it = body.inputs[0]
        self.carried = list(body.inputs[1:1 + nc])
        self.slices = list(body.inputs[1 + nc:])
        self.nodes = [n for n in ancestors(body.outputs) if n.op != "placeholder"]
        self.caps = {ph: o for o, ph in body.captures.items()}
        self.users = {}  # tensor -> consuming nodes
        for n in self.nodes:
            for t in n.inputs:
                self.users.setdefault(t, []).append(n)
        self.out_pos = {}  # tensor -> body output positions
        for i, t in enumerate(body.outputs):
            self.out_pos.setdefault(t, []).append(i)
        self.kind = self._kinds()

    def _kinds(self):
        """0 invariant (captures, constants), 1 reads slices, 2 reads the step or the carry."""
        kind = {ph: 0 for ph in self.caps}
        kind.update((ph, 1) for ph in self.slices)
        kind.update((ph, 2) for ph in [self.it] + self.carried)
        for n in self.nodes:
            k = max((kind.get(t, 2) for t in n.inputs), default=0)
            if not n.opdef.pure or n.control_inputs or n.op in _PINNED or any(
                    isinstance(v, Graph) for v in n.attrs.values()):
                k = 2
            for o in n.outputs:
                kind[o] = k
        return kind

    def flags(self, n):
        return [self.kind.get(t, 2) > 0 for t in n.inputs]


class Plan:
    """What to do with one loop node (see loop_batch.py for how it is emitted)."""

    def __init__(self, node, inputs, b):
        a = b.attrs
        self.node, self.attrs, self.b = node, a, b
        self.nc, nx = a["n_carried"], a["n_xs"]
        off = 1 if a["has_trip"] else 0
        self.m = inputs[0] if off else None
        self.inits = list(inputs[off:off + self.nc])
        self.xs = list(inputs[off + self.nc:off + self.nc + nx])
        self.ny = len(node.outputs) - self.nc
        self.info = _Body(a["body"], self.nc)
        self.slices = self.info.slices
        self.pre_nodes, self.pre_frontier = [], []
        self.post_nodes, self.cut, self.aligned_slices = [], [], {}
        self.sunk_ys, self.accumulators, self.outer_factors = {}, {}, {}
        self.dead, self.unused_ys = set(), set()
        self._consts = {}

    def outer_value(self, t):
        """The outer tensor an invariant body tensor stands for: captures read the outer
        value; constants and invariant nodes not hoisted yet are copied out (once)."""
        if t in self.info.caps:
            return self.info.caps[t]
        hit = self._consts.get(t)
        if hit is None:
            n = t.node
            if n.op == "placeholder" or self.info.kind.get(t, 2) != 0:
                raise AssertionError(f"{t.name} is not invariant")
            ins = [self.outer_value(i) for i in n.inputs]
            new = self.b.graph.add_node(n.opdef, ins, n.attrs, name=n.name, location=n.location,
                                        out_types=[o.type for o in n.outputs])
            for o, v in zip(n.outputs, new.outputs):
                self._consts[o] = v
            hit = self._consts[t]
        return hit

    def make_loop(self, G, new_xs, b):
        from .loop_rebody import rebuild_loop  # noqa: PLC0415

        return rebuild_loop(self, G, new_xs, b)


# ---------------------------------------------------------------------------------------------
# Planning


def plan_loop(node, inputs, b):
    """A Plan for loop `node` (its rebuilt attrs and inputs in `b`), or None when no move pays."""
    plan = Plan(node, inputs, b)
    uses = b.ctx.get("uses", {})
    _find_unused(plan, node, uses)
    _find_accumulators(plan)
    gain = _plan_sink(plan)  # first: increments and scan outputs go after the loop
    if not node.tags.get("recompute"):
        # a checkpointed backward loop recomputes its steps on purpose: precomputing them over
        # all steps at once would store T residuals, the memory checkpointing exists to save
        gain += _plan_precompute(plan)
    gain += len(plan.dead) + len(plan.unused_ys) + 2 * len(plan.accumulators)
    if gain <= 0:
        return None
    return plan


def _find_unused(plan, node, uses):
    """Scan outputs nobody reads; carried values nobody reads whose update feeds only itself."""
    info, nc = plan.info, plan.nc
    for j in range(plan.ny):
        if uses and uses.get(id(node.outputs[nc + j]), 0) == 0:
            plan.unused_ys.add(j)
    cond_reads = _cond_reads(plan)
    for k in range(nc):
        if not uses or uses.get(id(node.outputs[k]), 0) or k in cond_reads:
            continue
        reach = _outputs_reached(info, info.carried[k])
        if reach <= {k}:
            plan.dead.add(k)


def _cond_reads(plan):
    cnd = plan.attrs["cond"]
    if cnd is None:
        return set()
    live = {id(n) for n in ancestors(cnd.outputs)}
    return {k for k, ph in enumerate(cnd.inputs) if id(ph.node) in live}


def _outputs_reached(info, t):
    """Body output positions that depend on tensor t (scan outputs count too)."""
    seen, stack, reached = {t}, [t], set()
    while stack:
        v = stack.pop()
        reached.update(info.out_pos.get(v, ()))
        for n in info.users.get(v, ()):
            for o in n.outputs:
                if o not in seen:
                    seen.add(o)
                    stack.append(o)
    return reached


def _find_accumulators(plan):
    """carried k updated as add(acc, d...) / add_n(acc, d...) where nothing else reads acc."""
    info, nc = plan.info, plan.nc
    cond_reads = _cond_reads(plan)
    for k in range(nc):
        if k in plan.dead or k in cond_reads:
            continue
        acc, out = info.carried[k], info.body.outputs[k]
        n = out.node
        if n.op not in ("add", "add_n") or not out.dtype.is_floating or n.graph is not info.body:
            continue
        if list(n.inputs).count(acc) != 1 or len(info.users.get(acc, ())) != 1 or \
                info.out_pos.get(acc):
            continue
        if info.users.get(out) or info.out_pos.get(out) != [k]:
            continue
        ds = [t for t in n.inputs if t is not acc]
        if all(_stackable_increment(info, d) for d in ds):
            plan.accumulators[k] = ds


def _stackable_increment(info, d):
    if info.kind.get(d, 2) == 0:
        return False  # sum_t of an invariant needs the trip count: leave it
    shape = d.shape
    return is_static(shape) and (int(np.prod(shape)) <= MAX_STACKED_INCREMENT
                                 or _outer_factors(info, d) is not None)


def _outer_factors(info, d):
    """(p, q) when d = p * q with per-step shapes (n, 1) and (m,) or (1, m): sum_t d is P^T Q."""
    n = d.node
    if n.op != "multiply" or len(d.shape) != 2 or n.graph is not info.body:
        return None
    for p, q in (n.inputs, n.inputs[::-1]):
        if (len(p.shape) == 2 and p.shape[1] == 1 and q.shape in ((d.shape[1],),
                                                                   (1, d.shape[1]))
                and info.kind.get(p, 2) > 0 and info.kind.get(q, 2) > 0):
            return p, q
    return None


def _plan_precompute(plan):
    """Slice-only nodes -> before the loop. Returns the per-step nodes saved (net)."""
    info = plan.info
    movable, sunk = set(), {n.outputs[0] for n in plan.post_nodes} | set(plan.outer_factors)
    for n in info.nodes:
        if n.outputs[0] in sunk or info.kind[n.outputs[0]] != 1 or not can_batch(
                n, info.flags(n)):
            continue
        if all(t in info.caps or t.node.op == "constant" or t in info.slices or t in movable
               for t in n.inputs):
            movable.update(n.outputs)
    if not movable:
        return 0
    frontier = [t for t in _ordered(info, movable) if _used_outside(info, t, movable)]
    dropped = sum(1 for ph in info.slices if info.users.get(ph) and not info.out_pos.get(ph)
                  and all(u.outputs[0] in movable for u in info.users[ph]))
    gain = len(movable) + dropped - len(frontier)
    if gain <= 0:
        return 0
    plan.pre_nodes = [n for n in info.nodes if n.outputs[0] in movable]
    plan.pre_frontier = frontier
    return gain


def _ordered(info, tensors):
    return [n.outputs[0] for n in info.nodes if n.outputs[0] in tensors]


def _used_outside(info, t, group):
    return bool(info.out_pos.get(t)) or any(u.outputs[0] not in group
                                            for u in info.users.get(t, ()))


def _plan_sink(plan):
    """Nodes whose values only leave as scan outputs (or accumulated increments) -> after the
    loop. Returns the per-step nodes saved (net)."""
    info, nc = plan.info, plan.nc
    virtual = {d for ds in plan.accumulators.values() for d in ds}
    acc_nodes = {info.body.outputs[k].node for k in plan.accumulators}
    sink = set()
    for n in reversed(info.nodes):
        o = n.outputs[0]
        if n in acc_nodes or info.kind[o] == 0 or len(n.outputs) != 1:
            continue
        if info.it in n.inputs or not can_batch(n, info.flags(n)):
            continue
        if any(info.kind.get(t, 2) and not is_static(t.shape) for t in n.inputs):
            continue  # a stacked input needs one static shape at every step
        pos = info.out_pos.get(o, ())
        if any(p < nc for p in pos) or (not pos and not info.users.get(o) and o not in virtual):
            continue
        if all(u in acc_nodes or u.outputs[0] in sink for u in info.users.get(o, ())):
            sink.add(o)
    return _settle_sink(plan, sink, virtual)


def _settle_sink(plan, sink, virtual):
    info, nc = plan.info, plan.nc
    aligned = _trips_aligned(plan)
    for d in list(virtual):
        f = _outer_factors(info, d)
        if f is not None and d in sink and all(u.op in ("add", "add_n") for u in
                                                info.users.get(d, ())):
            plan.outer_factors[d] = f
    post = [n for n in info.nodes if n.outputs[0] in sink
            and n.outputs[0] not in plan.outer_factors]
    cut, seen = [], set()
    needs = [t for n in post for t in n.inputs] + [t for f in plan.outer_factors.values()
                                                   for t in f]
    needs += [d for d in virtual if d not in sink]
    for t in needs:
        if t in sink or t in seen or info.kind.get(t, 2) == 0:
            continue
        seen.add(t)
        if t in info.slices and aligned is not None:
            plan.aligned_slices[t] = plan.xs[info.slices.index(t)]
        else:
            cut.append(t)
    sunk = {j: info.body.outputs[nc + j] for j in range(plan.ny)
            if info.body.outputs[nc + j] in sink and j not in plan.unused_ys}
    gain = len(sink) + len(sunk) - sum(1 for t in cut if not _is_kept_ys(plan, t, sunk))
    if gain <= 0 and not plan.accumulators:
        return 0
    plan.post_nodes, plan.cut, plan.sunk_ys = post, cut, sunk
    return gain


def _is_kept_ys(plan, t, sunk):
    info = plan.info
    return any(p >= plan.nc and (p - plan.nc) not in sunk for p in info.out_pos.get(t, ()))


def _trips_aligned(plan):
    """True-ish when the loop runs exactly len(xs) steps (a scan), so scanned inputs line up
    with stacked scan outputs; None otherwise."""
    a, m = plan.attrs, plan.m
    if a["cond"] is not None or m is None or not plan.xs:
        return None
    lead = {x.shape[0] for x in plan.xs}
    if m.node.op == "constant" and len(lead) == 1:
        (d,) = lead
        return True if isinstance(d, int) and int(m.node.attrs["value"]) == d else None
    if m.node.op == "dim_size" and m.node.attrs.get("axis", 0) == 0:
        src = m.node.inputs[0]
        if src in plan.xs and _same_length(src, plan.xs):
            return True
    return None


def _same_length(src, xs):
    """Every x has src's leading length: equal static dims, or scan outputs of one loop."""
    for x in xs:
        a, b = x.shape[0], src.shape[0]
        if isinstance(a, int) and a == b:
            continue
        if x.node is src.node and x.node.op == "loop" and x.index >= x.node.attrs["n_carried"]:
            continue
        return False
    return True

