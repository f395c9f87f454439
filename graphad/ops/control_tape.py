"""Reverse mode of a loop by taping: the VJP of one step, split, then a tape loop + a backward loop.

The VJP of one step is built once as a scratch graph and split three ways: what depends on no
per-step value is hoisted out of the backward loop (computed once); the per-step primal values
the cotangent part reads (the residuals) are emitted by a forward "tape" loop as scan outputs;
the backward loop walks the tape in reverse and runs only the cotangent part. Two rewrites keep
per-step work small (each loop-body node costs ~0.5 us per trip in onnxruntime, whatever it
computes): a residual that is an elementwise function of one forward value is computed once over
the whole tape after the loop, and a captured matrix whose per-step cotangent is an outer
product u v^T gets one U^T V matrix product after the loop instead of an accumulator.
"""

from ..graph import ancestors, inline
from .control import INT64_SCALAR, dim_size, make_loop, split_loop_inputs
from .control_grad import copy_cond, finish, new_body, replay, safe_vjp, zeros

# ops that act elementwise with numpy broadcasting (safe to apply to a stacked tape)
ELEMENTWISE = frozenset({
    "abs", "add", "arctan", "cos", "cosh", "divide", "erf", "exp", "expm1", "log", "log1p",
    "maximum", "minimum", "multiply", "negative", "power", "reciprocal", "rsqrt", "sigmoid",
    "sin", "sinh", "softplus", "sqrt", "square", "subtract", "tan", "tanh", "cast", "sign",
    "greater", "greater_equal", "less", "less_equal", "where", "stop_gradient", "relu",
})  # fmt: skip


def _ops():
    from .. import ops  # noqa: PLC0415

    return ops


class StepVJP:
    """The VJP of one step of loop `node` as a scratch body graph `g` (a child of the loop's
    graph): inputs `step_in` (iteration, carried, x slices) and `ct_in` (cotangents of the new
    carried `fc` and of the y slices `fy`); results `ct_carried`, `ct_xs` (for `fx`),
    `ct_caps` (for the body captures `fcap`), None meaning zero; `primal` the body's outputs."""

    def __init__(self, node, fc, fx, fcap, fy):
        a, body = node.attrs, node.attrs["body"]
        nc = a["n_carried"]
        _, _, _, bcaps, _ = split_loop_inputs(node, node.inputs)
        types = [t.type for t in body.inputs] + [body.inputs[1 + k].type for k in fc]
        types += [body.outputs[nc + j].type for j in fy]
        g, ph = new_body(node.graph, f"{body.name}_step", types)
        self.g, self.step_in, self.ct_in = g, ph[:len(body.inputs)], ph[len(body.inputs):]
        self.xsl = self.step_in[1 + nc:]
        carried = self.step_in[1:1 + nc]
        with g:
            outs = replay(body, g, self.step_in, bcaps)
            wrt = [carried[k] for k in fc] + [self.xsl[j] for j in fx]
            wrt += [g.capture(bcaps[k]) for k in fcap]
            res = safe_vjp([outs[k] for k in fc] + [outs[nc + j] for j in fy], wrt, self.ct_in)
        self.primal = outs
        self.ct_carried = list(res[:len(fc)])
        self.ct_xs = list(res[len(fc):len(fc) + len(fx)])
        self.ct_caps = list(res[len(fc) + len(fx):])
        self.classify()

    def classify(self):
        """`step`: tensors depending on a per-step input but on no cotangent; `ct`: tensors
        depending on a cotangent; everything else is loop-invariant."""
        step, ct = set(self.step_in), set(self.ct_in)
        for n in self.g.nodes:
            if any(t in ct for t in n.inputs):
                ct.update(n.outputs)
            elif any(t in step for t in n.inputs):
                step.update(n.outputs)
        self.step, self.ct = step, ct

    def invariant(self, t):
        return t not in self.step and t not in self.ct

    def residuals(self, roots):
        """Per-step primal tensors the cotangent part of `roots` reads (or `roots` that are
        per-step primal themselves), in a fixed order."""
        found = {}
        for n in ancestors([t for t in roots if t in self.ct], stop=lambda t: t not in self.ct):
            for t in n.inputs:
                if t in self.step and t not in self.ct:
                    found.setdefault(t, None)
        for t in roots:
            if t in self.step and t not in self.ct:
                found.setdefault(t, None)
        return list(found)

    def recompute_inputs(self, roots):
        """The per-step inputs `roots` need when the backward loop recomputes the step."""
        nodes = ancestors(roots, stop=self.invariant)
        used = {id(n) for n in nodes} | {id(t.node) for t in roots}
        return [p for p in self.step_in if id(p.node) in used]

    def hoist(self, roots, cut):
        """{invariant tensor: its copy in the loop's graph} for the invariant frontier of what
        `roots` need given the tensors in `cut` (computed once, outside every loop)."""
        inv = [t for t in roots if self.invariant(t)]
        walk = [t for t in roots if t not in cut and not self.invariant(t)]
        for n in ancestors(walk, stop=lambda t: t in cut or self.invariant(t)):
            inv += [t for t in n.inputs if self.invariant(t)]
        inv = [t for t in dict.fromkeys(inv) if t.node.op != "placeholder"]
        if not inv:
            return {}
        return dict(zip(inv, inline(self.g, {}, inv, target=self.g.parent)))

    def outer_tensor(self, t, hoisted):
        """The loop-graph tensor an invariant `t` of the step graph stands for."""
        if t in hoisted:
            return hoisted[t]
        for outer, ph in self.g.captures.items():
            if ph is t:
                return outer
        return self.hoist([t], set())[t]


def static_enough(t):
    """Whether every step gives `t` the same shape (needed to stack it as a scan output)."""
    return all(isinstance(d, (int, str)) for d in t.shape)


# ---------------------------------------------------------------------------------------------
# outer-product cotangents of captured matrices, and tape-only elementwise chains


def outer_products(st):
    """{i: (u, v)} for captures whose per-step cotangent is the outer product u v^T of two
    per-step vectors (e.g. dW of W @ x): summed after the loop as U^T V, one GEMM."""
    ops, found = _ops(), {}
    for i, r in enumerate(st.ct_caps):
        if r is None or r.node.op != "multiply" or len(r.shape) != 2 or not all(
                isinstance(d, int) for d in r.shape):
            continue
        n, m = r.shape
        p, q = r.node.inputs
        if p.shape != (n, 1):
            p, q = q, p
        if p.shape != (n, 1) or q.shape not in ((m,), (1, m)):
            continue
        src = p.node.inputs[0] if p.node.op == "expand_dims" else None
        with st.g:
            u = src if src is not None and src.shape == (n,) else ops.reshape(p, (n,))
            v = q if q.shape == (m,) else ops.reshape(q, (m,))
        found[i] = (u, v)
    st.classify()
    for i, (u, v) in list(found.items()):
        if st.invariant(u) or st.invariant(v) or not (u in st.ct or v in st.ct):
            del found[i]
    return found


def chain_base(st, t, primal_ids):
    """The one per-step tensor `t` is an elementwise function of, when the tape loop would
    compute `t` only for the tape (then it is computed over the stacked tape instead)."""
    base = None
    while t in st.step and id(t.node) not in primal_ids and t.node.op in ELEMENTWISE:
        steps = list(dict.fromkeys(u for u in t.node.inputs if not st.invariant(u)))
        if len(steps) != 1:
            return None
        base = t = steps[0]
    return base


def batched(st, t, base, stack, hoisted):
    """`t` computed over the stacked tape: its elementwise chain from `base` replayed on
    `stack` (leading axis = steps) in the loop's graph."""
    ops, env = _ops(), {base: stack}
    for n in ancestors([t], stop=lambda u: u is base or st.invariant(u)):
        args = []
        for u in n.inputs:
            if u in env:
                v = env[u]
                while len(v.shape) - 1 < len(n.outputs[0].shape):
                    v = ops.expand_dims(v, 1)  # align a lower-rank stacked input to the right
                args.append(v)
            else:
                args.append(st.outer_tensor(u, hoisted))
        new = st.g.parent.add_node(n.opdef, args, n.attrs, name=n.name, location=n.location)
        env[n.outputs[0]] = new.outputs[0]
    return env[t]


# ---------------------------------------------------------------------------------------------
# tape loop + backward loop


def taped_vjp(node, st, recompute, cts, fc, fx, fcap, fy):
    """(ct of inits for fc, ct of xs for fx, ct of captures for fcap) of loop `node`. The tape
    holds the residuals, or with `recompute` the per-step inputs the backward loop recomputes
    the step from. Returns None when a residual's shape may change between steps (then the
    caller recomputes instead)."""
    a, outer = node.attrs, node.graph
    m, inits, xs, _, ccaps = split_loop_inputs(node, node.inputs)
    gemm = {} if recompute else outer_products(st)
    accs = [i for i in range(len(fcap)) if i not in gemm]
    roots = [t for t in st.ct_carried + st.ct_xs if t is not None]
    roots += [st.ct_caps[i] for i in accs if st.ct_caps[i] is not None]
    factors = [v for i in sorted(gemm) for v in gemm[i]]
    back_ys = [v for v in factors if recompute or v in st.ct]
    if recompute:
        res = st.recompute_inputs(roots + back_ys)
    else:
        res = st.residuals(roots + back_ys)
        if not all(static_enough(r) for r in res):
            return None
    stacks_for = list(dict.fromkeys(res + [v for v in factors if v not in back_ys]))
    primal_ids = {id(n) for n in ancestors(st.primal, stop=st.invariant)}
    bases = {t: None if recompute else chain_base(st, t, primal_ids) for t in stacks_for}
    xsl = {p: x for p, x in zip(st.xsl, xs)}
    taped = [b if b is not None else t for t, b in bases.items() if t not in xsl]
    taped = [t for t in dict.fromkeys(taped) if t not in xsl]
    if not taped and a["cond"] is not None:
        taped = [st.step_in[0]]  # the trip count is the tape's length: tape the iteration
    hoisted = st.hoist(roots + back_ys, set(st.ct_in) | set(res))
    tape_node = _tape_loop(node, st, taped, m, inits, xs, ccaps)
    tape = dict(zip(taped, tape_node.outputs[len(st.primal):]))
    stack = {}
    with outer.as_default():
        for t, b in bases.items():
            if t in xsl:
                stack[t] = xsl[t]
            elif b is None:
                stack[t] = tape[t]
            else:
                stack[t] = batched(st, t, b, xsl[b] if b in xsl else tape[b], hoisted)
    trips = m if a["cond"] is None else dim_size(tape_node.outputs[-1], 0)
    bnode, n_acc = _backward_loop(node, st, res, stack, hoisted, back_ys, accs, trips, cts,
                                  fc, fcap, fy)
    if recompute:  # passes keep its per-step recomputation inside it (loop_plan, licm, cse)
        bnode.tags["recompute"] = True
    bo = list(bnode.outputs)
    ct_caps = [None] * len(fcap)
    for i, acc in zip(accs, bo[len(fc):len(fc) + n_acc]):
        ct_caps[i] = acc
    per_y = dict(zip(back_ys, bo[len(fc) + n_acc:len(fc) + n_acc + len(back_ys)]))
    ops = _ops()
    with outer.as_default():
        for i, (u, v) in gemm.items():
            us, vs = (per_y[w] if w in per_y else stack[w] for w in (u, v))
            ct_caps[i] = ops.matmul(ops.transpose(us), vs)  # sum_t u_t v_t^T as one GEMM
    it = iter(bo[len(fc) + n_acc + len(back_ys):])
    ct_xs = [next(it) if t is not None else zeros(outer, xs[j]) for t, j in zip(st.ct_xs, fx)]
    return bo[:len(fc)], ct_xs, ct_caps


def _tape_loop(node, st, taped, m, inits, xs, ccaps):
    """The loop again, also emitting `taped` of each step as scan outputs. Its inputs are the
    original loop's (nothing hoisted), so a pass can let it replace the original loop."""
    a, outer = node.attrs, node.graph
    tb, tph = new_body(outer, f"{a['body'].name}_tape", [t.type for t in st.step_in])
    finish(tb, inline(st.g, dict(zip(st.step_in, tph)), st.primal + taped, target=tb))
    return make_loop(outer, m, inits, xs, tb, copy_cond(node, ccaps), length=a["length"],
                     reverse=a["reverse"], name=f"{node.name}/tape", location=node.location,
                     on_max=a.get("on_max", "stop"), label=a.get("label"),
                     tape_of=(a.get("uid"), len(node.outputs), len(st.primal) + len(taped)))


def _backward_loop(node, st, res, stack, hoisted, back_ys, accs, trips, cts, fc, fcap, fy):
    """The loop over the tape, last step first: carried cotangents and capture accumulators;
    the residual stacks and the ys' cotangents as its xs; per-step outputs `back_ys` and the
    xs' cotangents as its ys."""
    a, outer = node.attrs, node.graph
    _, inits, _, bcaps, _ = split_loop_inputs(node, node.inputs)
    acc_caps = [bcaps[fcap[i]] for i in accs]
    types = [INT64_SCALAR] + [inits[k].type for k in fc] + [c.type for c in acc_caps]
    types += [r.type for r in res] + [t.type for t in st.ct_in[len(fc):]]
    bb, ph = new_body(outer, f"{a['body'].name}_vjp", types)
    nf, na, nr = len(fc), len(acc_caps), len(res)
    ct_c, acc = ph[1:1 + nf], ph[1 + nf:1 + nf + na]
    r_ph, cty = ph[1 + nf + na:1 + nf + na + nr], ph[1 + nf + na + nr:]
    mapping = dict(zip(st.ct_in, list(ct_c) + list(cty)))
    mapping.update(zip(res, r_ph))
    mapping.update(hoisted)
    want = [t for t in st.ct_carried + [st.ct_caps[i] for i in accs] + back_ys + st.ct_xs
            if t is not None]
    vals = dict(zip(want, inline(st.g, mapping, want, target=bb)))
    with bb:
        new_ct = [vals[t] if t is not None else zeros(bb, c) for t, c in zip(st.ct_carried, ct_c)]
        new_acc = [s if st.ct_caps[i] is None else s + vals[st.ct_caps[i]]
                   for s, i in zip(acc, accs)]
    outs = new_ct + new_acc + [vals[t] for t in back_ys]
    outs += [vals[t] for t in st.ct_xs if t is not None]
    finish(bb, outs)
    nc = a["n_carried"]
    init_ct = [cts[k] if cts[k] is not None else zeros(outer, inits[k]) for k in fc]
    init_acc = [zeros(outer, c) for c in acc_caps]
    bnode = make_loop(outer, trips, init_ct + init_acc, [stack[r] for r in res]
                      + [cts[nc + j] for j in fy], bb, None, length=a["length"],
                      reverse=not a["reverse"], name=f"{node.name}/vjp", location=node.location,
                      as_scan=True)
    return bnode, na
