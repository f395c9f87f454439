"""Derivative rules of the control-flow ops (kept apart from control.py only for length).

Forward mode carries tangents beside the primal values through a new loop / new branches.
Reverse mode through a loop (also a while loop with a data-dependent trip count): a forward loop
records the carry at the start of every step as a scan output (the tape); a backward loop walks
the tape in reverse, recomputes each step's body from its taped carry and applies the body's VJP.
Cost for T trips: about 3x the forward loop's time (forward, taped forward, backward with
recompute) and O(T * carry size) memory for the tape. Captured tensors' cotangents are summed in
accumulators carried by the backward loop. Both loops are ordinary loop nodes, so the rules
apply again to them: higher-order derivatives and nested loops need nothing more.
"""

from ..build import PLACEHOLDER
from ..graph import Graph, Tensor, inline
from ..registry import apply
from .control import IF, LOOP, INT64_SCALAR, _make_loop, dim_size, split_loop_inputs


def _engines():
    from ..passes.autodiff import needs_gradient, vjp  # noqa: PLC0415  (passes import ops)
    from ..passes.forward import jvp  # noqa: PLC0415

    return vjp, jvp, needs_gradient


def _body(outer, name, types):
    """A new body graph of `outer` with one placeholder per type; returns (graph, placeholders)."""
    body = Graph(name=outer.unique_name(name), parent=outer)
    with body:
        phs = [apply(PLACEHOLDER, (), {"shape": t.shape, "dtype": t.dtype}, name=f"arg{i}")
               for i, t in enumerate(types)]
    body.inputs = phs
    return body, phs


def _replay(graph, mapping, body):
    """Inline `graph`'s outputs into `body`; results that are outer tensors become captures."""
    outs = inline(graph, mapping, graph.outputs, target=body)
    return [o if o.node.graph is body else body.capture(o) for o in outs]


def _zeros(t):
    from . import zeros_like  # noqa: PLC0415

    return zeros_like(t)


def _finish(body, outs):
    with body:
        body.outputs = [o if o.node.graph is body else body.capture(o) for o in outs]
    return body


def _uses(graph, t):
    return any(t in n.inputs for n in graph.nodes)


# ---------------------------------------------------------------------------------------------
# loop


def _loop_vjp(node, *cts):
    from . import subtract  # noqa: PLC0415

    engine_vjp, _, needs = _engines()
    a, body, outer = node.attrs, node.attrs["body"], node.graph
    nc, off = a["n_carried"], (1 if a["has_trip"] else 0)
    m, inits, xs, bcaps, ccaps = split_loop_inputs(node, node.inputs)
    ny = len(node.outputs) - nc
    need = [needs(node, i) for i in range(len(node.inputs))]
    fc = [k for k in range(nc) if inits[k].dtype.is_floating]
    fx = [j for j, x in enumerate(xs) if x.dtype.is_floating and need[off + nc + j]]
    fcap = [k for k, c in enumerate(bcaps) if c.dtype.is_floating and need[off + nc + len(xs) + k]]
    fy = [j for j in range(ny) if node.outputs[nc + j].dtype.is_floating]
    result = [None] * len(node.inputs)
    if not fc and not fx and not fcap:
        return tuple(result)

    # 1. the same loop, also emitting each step's incoming carry (the tape)
    tbody, phs = _body(outer, f"{body.name}_tape", [t.type for t in body.inputs])
    outs = _replay(body, dict(zip(body.inputs, phs)), tbody)
    _finish(tbody, outs + phs[1:1 + nc])
    tnode = _make_loop(outer, m, inits, xs, tbody, a["cond"], length=a["length"],
                       reverse=a["reverse"], name=f"{node.name}/tape")
    tape = list(tnode.outputs[nc + ny:])
    trips = dim_size(tape[0], 0) if nc else m

    # 2. the backward loop over the tape, last step first
    types = [INT64_SCALAR] + [inits[k].type for k in fc] + [bcaps[k].type for k in fcap]
    types += [body.inputs[1 + k].type for k in range(nc)]
    types += [body.outputs[nc + j].type for j in fy] + [t.type for t in body.inputs[1 + nc:]]
    bbody, bph = _body(outer, f"{body.name}_vjp", types)
    it, ct_v = bph[0], bph[1:1 + len(fc)]
    acc = bph[1 + len(fc):1 + len(fc) + len(fcap)]
    rest = bph[1 + len(fc) + len(fcap):]
    carried, ct_y, xsl = rest[:nc], rest[nc:nc + len(fy)], rest[nc + len(fy):]
    with bbody:
        mapping = dict(zip(body.inputs[1:], carried + xsl))
        if _uses(body, body.inputs[0]):  # forward step number of backward step `it`
            mapping[body.inputs[0]] = subtract(subtract(trips, 1), it)
        outs = _replay(body, mapping, bbody)
        cap_ph = [bbody.capture(bcaps[k]) for k in fcap]
        wrt = [carried[k] for k in fc] + [xsl[j] for j in fx] + cap_ph
        res = engine_vjp([outs[k] for k in fc] + [outs[nc + j] for j in fy], wrt,
                         list(ct_v) + list(ct_y))
        r_c, r_x, r_cap = res[:len(fc)], res[len(fc):len(fc) + len(fx)], res[len(fc) + len(fx):]
        new_ct = [r if r is not None else _zeros(carried[k]) for r, k in zip(r_c, fc)]
        new_acc = [s if r is None else s + r for s, r in zip(acc, r_cap)]
        ct_xs = [r if r is not None else _zeros(xsl[j]) for r, j in zip(r_x, fx)]
    _finish(bbody, new_ct + new_acc + ct_xs)
    init_ct = [cts[k] if cts[k] is not None else _zeros(node.outputs[k]) for k in fc]
    init_acc = [_zeros(bcaps[k]) for k in fcap]
    ys_ct = [cts[nc + j] if cts[nc + j] is not None else _zeros(node.outputs[nc + j]) for j in fy]
    bnode = _make_loop(outer, trips, init_ct + init_acc, tape + ys_ct + list(xs), bbody, None,
                       length=a["length"], reverse=not a["reverse"], name=f"{node.name}/vjp")
    bo = bnode.outputs
    for i, k in enumerate(fc):
        result[off + k] = bo[i]
    for i, k in enumerate(fcap):
        result[off + nc + len(xs) + k] = bo[len(fc) + i]
    for i, j in enumerate(fx):
        result[off + nc + j] = bo[len(fc) + len(fcap) + i]
    return tuple(result)


def _loop_jvp(node, *tangents):
    _, engine_jvp, _ = _engines()
    a, body, cnd, outer = node.attrs, node.attrs["body"], node.attrs["cond"], node.graph
    nc = a["n_carried"]
    m, inits, xs, bcaps, ccaps = split_loop_inputs(node, node.inputs)
    _, t_in, t_xs, t_caps, _ = split_loop_inputs(node, tangents)
    ny = len(node.outputs) - nc
    fc = [k for k in range(nc) if inits[k].dtype.is_floating]
    fx = [j for j, t in enumerate(t_xs) if t is not None and xs[j].dtype.is_floating]
    fcap = [k for k, t in enumerate(t_caps) if t is not None and bcaps[k].dtype.is_floating]
    fy = [j for j in range(ny) if node.outputs[nc + j].dtype.is_floating]
    if not any(t_in[k] is not None for k in fc) and not fx and not fcap:
        return (None,) * len(node.outputs)
    xtypes = [t.type for t in body.inputs[1 + nc:]]
    types = ([INT64_SCALAR] + [t.type for t in body.inputs[1:1 + nc]]
             + [body.inputs[1 + k].type for k in fc] + xtypes + [xtypes[j] for j in fx])
    jbody, ph = _body(outer, f"{body.name}_jvp", types)
    carried, tc = ph[1:1 + nc], ph[1 + nc:1 + nc + len(fc)]
    xsl, txs = ph[1 + nc + len(fc):1 + nc + len(fc) + len(xtypes)], ph[1 + nc + len(fc) + len(xtypes):]
    with jbody:
        outs = _replay(body, dict(zip(body.inputs, [ph[0]] + carried + xsl)), jbody)
        cap_ph = [jbody.capture(bcaps[k]) for k in fcap]
        wrt = [carried[k] for k in fc] + [xsl[j] for j in fx] + cap_ph
        tans = engine_jvp([outs[k] for k in fc] + [outs[nc + j] for j in fy], wrt,
                          list(tc) + list(txs) + [t_caps[k] for k in fcap])
        t_c = [t if t is not None else _zeros(outs[k]) for t, k in zip(tans[:len(fc)], fc)]
        t_y = [t if t is not None else _zeros(outs[nc + j]) for t, j in zip(tans[len(fc):], fy)]
    _finish(jbody, outs[:nc] + t_c + outs[nc:] + t_y)
    jcond = None
    if cnd is not None:
        jcond, cph = _body(outer, f"{cnd.name}_jvp", [t.type for t in cnd.inputs]
                           + [cnd.inputs[k].type for k in fc])
        _finish(jcond, _replay(cnd, dict(zip(cnd.inputs, cph)), jcond))
    t0 = [t_in[k] if t_in[k] is not None else _zeros(inits[k]) for k in fc]
    jnode = _make_loop(outer, m, list(inits) + t0, list(xs) + [t_xs[j] for j in fx], jbody, jcond,
                       length=a["length"], reverse=a["reverse"], name=f"{node.name}/jvp")
    jo = jnode.outputs
    result = [None] * len(node.outputs)
    for i, k in enumerate(fc):
        result[k] = jo[nc + i]
    base = nc + len(fc) + ny
    for i, j in enumerate(fy):
        result[nc + j] = jo[base + i]
    return tuple(result)


LOOP.vjp, LOOP.jvp = _loop_vjp, _loop_jvp


# ---------------------------------------------------------------------------------------------
# cond


def _if_split(node, seq):
    n, nt = node.attrs["n_operands"], len(node.attrs["true"].captures)
    seq = list(seq)
    return seq[0], seq[1:1 + n], seq[1 + n:1 + n + nt], seq[1 + n + nt:]


def _if_vjp(node, *cts):
    engine_vjp, _, needs = _engines()
    pred, ops, tcaps, fcaps = _if_split(node, node.inputs)
    n, outer = len(ops), node.graph
    need = [needs(node, i) for i in range(len(node.inputs))]
    fo = [k for k in range(n) if ops[k].dtype.is_floating and need[1 + k]]
    ft = [k for k, c in enumerate(tcaps) if c.dtype.is_floating and need[1 + n + k]]
    ff = [k for k, c in enumerate(fcaps) if c.dtype.is_floating and need[1 + n + len(tcaps) + k]]
    fy = [k for k, o in enumerate(node.outputs) if o.dtype.is_floating]
    result = [None] * len(node.inputs)
    if not (fo or ft or ff) or not fy:
        return tuple(result)
    ct = [cts[k] if cts[k] is not None else _zeros(node.outputs[k]) for k in fy]
    branches = []
    for key, own, mine in (("true", tcaps, ft), ("false", fcaps, ff)):
        br = node.attrs[key]
        g, ph = _body(outer, f"{br.name}_vjp", [o.type for o in ops] + [c.type for c in ct])
        with g:
            outs = _replay(br, dict(zip(br.inputs, ph[:n])), g)
            cap_ph = [g.capture(own[k]) for k in mine]
            res = engine_vjp([outs[k] for k in fy], [ph[k] for k in fo] + cap_ph, ph[n:])
            grads = [r if r is not None else _zeros(ph[k]) for r, k in zip(res[:len(fo)], fo)]
            gcap = [r if r is not None else _zeros(c) for r, c in zip(res[len(fo):], cap_ph)]
            zt = [_zeros(g.capture(tcaps[k])) for k in ft]
            zf = [_zeros(g.capture(fcaps[k])) for k in ff]
            outs = grads + (gcap + zf if key == "true" else zt + gcap)
        branches.append(_finish(g, outs))
    tb, fb = branches
    inputs = [pred] + list(ops) + ct + list(tb.captures) + list(fb.captures)
    new = outer.add_node(IF, inputs, {"true": tb, "false": fb, "n_operands": n + len(ct)},
                         name=f"{node.name}/vjp", location=node.location)
    o = new.outputs
    for i, k in enumerate(fo):
        result[1 + k] = o[i]
    for i, k in enumerate(ft):
        result[1 + n + k] = o[len(fo) + i]
    for i, k in enumerate(ff):
        result[1 + n + len(tcaps) + k] = o[len(fo) + len(ft) + i]
    return tuple(result)


def _if_jvp(node, *tangents):
    _, engine_jvp, _ = _engines()
    pred, ops, tcaps, fcaps = _if_split(node, node.inputs)
    _, t_ops, t_tc, t_fc = _if_split(node, tangents)
    n, outer = len(ops), node.graph
    fo = [k for k in range(n) if t_ops[k] is not None and ops[k].dtype.is_floating]
    fy = [k for k, o in enumerate(node.outputs) if o.dtype.is_floating]
    if not fy or not (fo or any(t is not None for t in t_tc + t_fc)):
        return (None,) * len(node.outputs)
    branches = []
    for key, own, town in (("true", tcaps, t_tc), ("false", fcaps, t_fc)):
        br = node.attrs[key]
        g, ph = _body(outer, f"{br.name}_jvp", [o.type for o in ops] + [ops[k].type for k in fo])
        with g:
            outs = _replay(br, dict(zip(br.inputs, ph[:n])), g)
            live = [(g.capture(c), t) for c, t in zip(own, town)
                    if t is not None and c.dtype.is_floating]
            tans = engine_jvp([outs[k] for k in fy], [ph[k] for k in fo] + [c for c, _ in live],
                              list(ph[n:]) + [t for _, t in live])
            res = [t if t is not None else _zeros(outs[k]) for t, k in zip(tans, fy)]
        branches.append(_finish(g, res))
    tb, fb = branches
    inputs = [pred] + list(ops) + [t_ops[k] for k in fo] + list(tb.captures) + list(fb.captures)
    new = outer.add_node(IF, inputs, {"true": tb, "false": fb, "n_operands": n + len(fo)},
                         name=f"{node.name}/jvp", location=node.location)
    result = [None] * len(node.outputs)
    for i, k in enumerate(fy):
        result[k] = new.outputs[i]
    return tuple(result)


IF.vjp, IF.jvp = _if_vjp, _if_jvp
_ = Tensor  # re-exported type for readers of the rules above
