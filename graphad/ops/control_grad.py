"""Derivative rules of the loop and cond nodes (kept apart from control.py for length).

Forward mode carries tangents beside the primal values through a new loop / new branches.
Reverse mode through a loop (also a while loop with a data-dependent trip count T): a forward
"tape" loop records each step's residuals as scan outputs, a backward loop walks the tape in
reverse (control_tape.py): time ~2x the forward loop, memory O(T * residual size). With
`checkpoint=1` the tape holds the carries and the backward loop recomputes each step (O(T *
carry size), ~3x); `checkpoint=k` (control_ckpt.py) stores every k-th carry. All loops built
here are ordinary loop nodes, so the rules apply to them again: higher-order derivatives and
nested loops need nothing more.
"""

from ..build import PLACEHOLDER
from ..errors import NotDifferentiableError
from ..graph import Graph, inline
from ..registry import apply
from .control import INT64_SCALAR, LOOP, make_loop, split_loop_inputs
from .control_cond import IF, make_if, split_if_inputs


def engines():
    from ..passes import autodiff, forward  # noqa: PLC0415  (the passes import the ops)

    return autodiff, forward


def new_body(outer, name, types):
    """A new body graph of `outer` with one placeholder per type; returns (graph, placeholders)."""
    body = Graph(name=outer.unique_name(name), parent=outer)
    with body:
        phs = [apply(PLACEHOLDER, (), {"shape": t.shape, "dtype": t.dtype}, name=f"arg{i}")
               for i, t in enumerate(types)]
    body.inputs = phs
    return body, phs


def inside(g, t):
    """`t` as seen from graph `g`: itself, or the capture placeholder standing for it."""
    return t if t.node.graph is g else g.capture(t)


def replay(body, target, args, caps):
    """Inline `body`'s outputs into `target`: its inputs become `args`, its captures `caps` (the
    capture inputs of the node holding it, which may differ from the tensors `body` captured
    when it was traced: the node may itself have been replayed elsewhere)."""
    mapping = dict(zip(body.inputs, args))
    mapping.update((ph, inside(target, c)) for ph, c in zip(body.captures.values(), caps))
    return [inside(target, o) for o in inline(body, mapping, body.outputs, target=target)]


def finish(body, outs):
    with body:
        body.outputs = [inside(body, o) for o in outs]
    return body


def zeros(g, like):
    """Zeros shaped like `like` in graph `g`: a broadcast constant when the shape is static."""
    with g.as_default():
        return engines()[0].zeros_like(inside(g, like))


def copy_cond(node, ccaps):
    """A fresh copy of a loop's cond graph (its captures taken from the node's inputs)."""
    cnd = node.attrs["cond"]
    if cnd is None:
        return None
    g, ph = new_body(node.graph, f"{cnd.name}_copy", [t.type for t in cnd.inputs])
    return finish(g, replay(cnd, g, ph, ccaps))


def safe_vjp(ys, xs, cts):
    """The engine's VJP, except that an x reaching the ys only through ops without a derivative
    gets None (zero) instead of an error: inside a loop step the user did not ask for it."""
    autodiff = engines()[0]
    try:
        return autodiff.vjp(ys, xs, cts)
    except NotDifferentiableError:
        live = [x for x in xs if _differentiable(autodiff, ys, x)]
        res = dict(zip(live, autodiff.vjp(ys, live, cts))) if live else {}
        return [res.get(x) for x in xs]


def _differentiable(autodiff, ys, x):
    try:
        autodiff.Plan(ys, [x]).check_differentiable("vjp")
        return True
    except NotDifferentiableError:
        return False


# ---------------------------------------------------------------------------------------------
# loop VJP


def loop_cotangents(node, cts, fc, fx, fcap, fy, policy="node"):
    """(ct of inits for fc, ct of xs for fx, ct of captures for fcap) by the node's policy."""
    from .control_tape import StepVJP, taped_vjp  # noqa: PLC0415

    a = node.attrs
    k = a.get("checkpoint") if policy == "node" else policy
    if k not in (None, 1) and not (a["n_xs"] and a["cond"] is not None):
        from .control_ckpt import segmented_vjp  # noqa: PLC0415

        return segmented_vjp(node, cts, fc, fx, fcap, fy)
    st = StepVJP(node, fc, fx, fcap, fy)
    got = taped_vjp(node, st, k == 1, cts, fc, fx, fcap, fy)
    if got is None:  # a residual whose shape may change per step (a nested while loop's tape)
        st = StepVJP(node, fc, fx, fcap, fy)
        got = taped_vjp(node, st, True, cts, fc, fx, fcap, fy)
    return got


def _loop_vjp(node, *cts):
    autodiff = engines()[0]
    a = node.attrs
    nc, off = a["n_carried"], (1 if a["has_trip"] else 0)
    _, inits, xs, bcaps, _ = split_loop_inputs(node, node.inputs)
    ny = len(node.outputs) - nc
    need = [autodiff.needs_gradient(node, i) for i in range(len(node.inputs))]
    fc = [k for k in range(nc) if inits[k].dtype.is_floating]
    fx = [j for j, x in enumerate(xs) if x.dtype.is_floating and need[off + nc + j]]
    fcap = [k for k, c in enumerate(bcaps) if c.dtype.is_floating and need[off + nc + len(xs) + k]]
    fy = [j for j in range(ny)
          if node.outputs[nc + j].dtype.is_floating and cts[nc + j] is not None]
    result = [None] * len(node.inputs)
    if not any(need[off + k] for k in fc) and not fx and not fcap:
        return tuple(result)
    ct_inits, ct_xs, ct_caps = loop_cotangents(node, cts, fc, fx, fcap, fy)
    for i, k in enumerate(fc):
        result[off + k] = ct_inits[i]
    for i, j in enumerate(fx):
        result[off + nc + j] = ct_xs[i]
    for i, k in enumerate(fcap):
        result[off + nc + len(xs) + k] = ct_caps[i]
    return tuple(result)


# ---------------------------------------------------------------------------------------------
# loop JVP


def _loop_jvp(node, *tangents):
    forward = engines()[1]
    a, body, outer = node.attrs, node.attrs["body"], node.graph
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
    jb, ph = new_body(outer, f"{body.name}_jvp", types)
    carried, tc = ph[1:1 + nc], ph[1 + nc:1 + nc + len(fc)]
    start = 1 + nc + len(fc)
    xsl, txs = ph[start:start + len(xtypes)], ph[start + len(xtypes):]
    with jb:
        outs = replay(body, jb, [ph[0]] + carried + xsl, bcaps)
        wrt = [carried[k] for k in fc] + [xsl[j] for j in fx] + [jb.capture(bcaps[k]) for k in fcap]
        seeds = list(tc) + list(txs) + [inside(jb, t_caps[k]) for k in fcap]
        tans = forward.jvp([outs[k] for k in fc] + [outs[nc + j] for j in fy], wrt, seeds)
        t_c = [t if t is not None else zeros(jb, outs[k]) for t, k in zip(tans[:len(fc)], fc)]
        t_y = [t if t is not None else zeros(jb, outs[nc + j]) for t, j in zip(tans[len(fc):], fy)]
    finish(jb, outs[:nc] + t_c + outs[nc:] + t_y)
    jcond = None
    if a["cond"] is not None:
        cnd = a["cond"]
        jcond, cph = new_body(outer, f"{cnd.name}_jvp", [t.type for t in cnd.inputs]
                              + [cnd.inputs[k].type for k in fc])
        finish(jcond, replay(cnd, jcond, cph[:nc], ccaps))
    t0 = [t_in[k] if t_in[k] is not None else zeros(outer, inits[k]) for k in fc]
    jnode = make_loop(outer, m, list(inits) + t0, list(xs) + [t_xs[j] for j in fx], jb, jcond,
                      length=a["length"], reverse=a["reverse"], name=f"{node.name}/jvp",
                      location=node.location, checkpoint=a.get("checkpoint"),
                      on_max=a.get("on_max", "stop"), label=a.get("label"))
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
# cond: the VJP / JVP is another If whose branches differentiate the original branches


def _if_vjp(node, *cts):
    autodiff = engines()[0]
    pred, ops, tcaps, fcaps = split_if_inputs(node, node.inputs)
    n, outer = len(ops), node.graph
    need = [autodiff.needs_gradient(node, i) for i in range(len(node.inputs))]
    fo = [k for k in range(n) if ops[k].dtype.is_floating and need[1 + k]]
    ft = [k for k, c in enumerate(tcaps) if c.dtype.is_floating and need[1 + n + k]]
    ff = [k for k, c in enumerate(fcaps) if c.dtype.is_floating and need[1 + n + len(tcaps) + k]]
    fy = [k for k, o in enumerate(node.outputs) if o.dtype.is_floating and cts[k] is not None]
    result = [None] * len(node.inputs)
    if not (fo or ft or ff) or not fy:
        return tuple(result)
    ct = [cts[k] for k in fy]
    branches = []
    for key, own, mine in (("true", tcaps, ft), ("false", fcaps, ff)):
        br = node.attrs[key]
        g, ph = new_body(outer, f"{br.name}_vjp", [o.type for o in ops] + [c.type for c in ct])
        with g:
            outs = replay(br, g, ph[:n], own)
            cap_ph = [g.capture(own[k]) for k in mine]
            res = safe_vjp([outs[k] for k in fy], [ph[k] for k in fo] + cap_ph, ph[n:])
            grads = [r if r is not None else zeros(g, ph[k]) for r, k in zip(res[:len(fo)], fo)]
            gcap = [r if r is not None else zeros(g, c) for r, c in zip(res[len(fo):], cap_ph)]
            zt = [zeros(g, tcaps[k]) for k in ft]
            zf = [zeros(g, fcaps[k]) for k in ff]
        branches.append(finish(g, grads + (gcap + zf if key == "true" else zt + gcap)))
    new = make_if(outer, pred, list(ops) + ct, *branches, f"{node.name}/vjp", node.location)
    o = new.outputs
    for i, k in enumerate(fo):
        result[1 + k] = o[i]
    for i, k in enumerate(ft):
        result[1 + n + k] = o[len(fo) + i]
    for i, k in enumerate(ff):
        result[1 + n + len(tcaps) + k] = o[len(fo) + len(ft) + i]
    return tuple(result)


def _if_jvp(node, *tangents):
    forward = engines()[1]
    pred, ops, tcaps, fcaps = split_if_inputs(node, node.inputs)
    _, t_ops, t_tc, t_fc = split_if_inputs(node, tangents)
    n, outer = len(ops), node.graph
    fo = [k for k in range(n) if t_ops[k] is not None and ops[k].dtype.is_floating]
    fy = [k for k, o in enumerate(node.outputs) if o.dtype.is_floating]
    if not fy or not (fo or any(t is not None for t in t_tc + t_fc)):
        return (None,) * len(node.outputs)
    branches = []
    for key, own, town in (("true", tcaps, t_tc), ("false", fcaps, t_fc)):
        br = node.attrs[key]
        g, ph = new_body(outer, f"{br.name}_jvp", [o.type for o in ops] + [ops[k].type for k in fo])
        with g:
            outs = replay(br, g, ph[:n], own)
            live = [(g.capture(c), inside(g, t)) for c, t in zip(own, town)
                    if t is not None and c.dtype.is_floating]
            tans = forward.jvp([outs[k] for k in fy], [ph[k] for k in fo] + [c for c, _ in live],
                               list(ph[n:]) + [t for _, t in live])
            res = [t if t is not None else zeros(g, outs[k]) for t, k in zip(tans, fy)]
        branches.append(finish(g, res))
    new = make_if(outer, pred, list(ops) + [t_ops[k] for k in fo], *branches,
                  f"{node.name}/jvp", node.location)
    result = [None] * len(node.outputs)
    for i, k in enumerate(fy):
        result[k] = new.outputs[i]
    return tuple(result)


IF.vjp, IF.jvp = _if_vjp, _if_jvp
