"""The new loop node of a loop_batch plan: a copy of the body without the moved nodes, without
removed carried values and unused scan inputs/outputs, with the new scanned inputs (precomputed
values) and the new scan outputs (values the work moved after the loop reads)."""

from ..graph import Graph, ancestors
from .rewrite import body_attrs

__all__ = ["rebuild_loop"]


class NewLoop:
    __slots__ = ("node", "stacked_cut", "kept_outputs")


def _placeholder(g, t, name):
    from ..build import PLACEHOLDER  # noqa: PLC0415

    return g.add_node(PLACEHOLDER, (), {"shape": t.shape, "dtype": t.dtype}, name=name,
                      location=t.node.location, out_types=[t.type]).outputs[0]


def _copy_nodes(old_graph, new_graph, env, roots, caps):
    """Copy the nodes of `old_graph` that `roots` need into `new_graph` (env pre-mapped;
    `caps`: capture placeholder of old_graph -> the value it reads from new_graph's side)."""
    for n in ancestors(roots, stop=env.__contains__):
        if n.outputs and all(o in env for o in n.outputs):
            continue
        if n.op == "placeholder":
            t = n.outputs[0]
            env[t] = new_graph.capture(caps[t])
            continue
        new = _copy_node(n, new_graph, [env[t] for t in n.inputs])
        env.update(zip(n.outputs, new.outputs))
    return [env[r] for r in roots]


def _copy_node(n, graph, ins):
    """A copy of node n over inputs `ins`; bodies of control-flow nodes are cloned under
    `graph` and the node's capture inputs recomputed from the clones."""
    bodies = body_attrs(n)
    attrs = n.attrs
    if bodies:
        n_caps = sum(len(g.captures) for _, g in bodies)
        cut = len(ins) - n_caps
        prefix, cap_vals, tail, attrs = list(ins[:cut]), ins[cut:], [], dict(n.attrs)
        for key, body in bodies:
            k = len(body.captures)
            clone = _clone_graph(body, graph, cap_vals[:k])
            cap_vals = cap_vals[k:]
            attrs[key] = clone
            tail.extend(clone.captures)
        ins = prefix + tail
    return graph.add_node(n.opdef, ins, attrs, name=n.name, tags=dict(n.tags),
                          location=n.location, out_types=[o.type for o in n.outputs])


def _clone_graph(body, parent, cap_vals):
    g = Graph(name=body.name, parent=parent)
    with g.as_default():
        phs = [_placeholder(g, t, t.node.name) for t in body.inputs]
        env = dict(zip(body.inputs, phs))
        caps = dict(zip(body.captures.values(), cap_vals))
        outs = _copy_nodes(body, g, env, list(body.outputs), caps)
    g.inputs, g.outputs = phs, outs
    return g


def _kept_carried(plan):
    return [k for k in range(plan.nc) if k not in plan.dead and k not in plan.accumulators]


def _new_body(plan, G, kept_c, kept_ys, scan_out):
    info = plan.info
    body = info.body
    nb = Graph(name=body.name, parent=G)
    env = {}
    with nb.as_default():
        env[info.it] = _placeholder(nb, info.it, "iter")
        for k in kept_c:
            env[info.carried[k]] = _placeholder(nb, info.carried[k], f"carried{k}")
        pre = set(plan.pre_frontier)
        roots = [body.outputs[k] for k in kept_c] + [body.outputs[plan.nc + j] for j in kept_ys]
        roots += scan_out
        needed = {id(n) for n in ancestors(roots, stop=lambda t: t in pre)}
        kept_slices = [j for j, ph in enumerate(info.slices) if id(ph.node) in needed]
        for j in kept_slices:
            env[info.slices[j]] = _placeholder(nb, info.slices[j], f"x{j}")
        for i, t in enumerate(plan.pre_frontier):
            env[t] = _placeholder(nb, t, f"pre{i}")
        outs = _copy_nodes(body, nb, env, roots, info.caps)
    nb.inputs = [env[info.it]] + [env[info.carried[k]] for k in kept_c]
    nb.inputs += [env[info.slices[j]] for j in kept_slices] + [env[t] for t in plan.pre_frontier]
    nb.outputs = outs
    return nb, kept_slices


def _new_cond(plan, G, kept_c):
    cnd = plan.attrs["cond"]
    if cnd is None or len(kept_c) == plan.nc:
        return cnd
    nc_ = Graph(name=cnd.name, parent=G)
    caps = {ph: o for o, ph in cnd.captures.items()}
    env = {}
    with nc_.as_default():
        for k in kept_c:
            env[cnd.inputs[k]] = _placeholder(nc_, cnd.inputs[k], f"carried{k}")
        outs = _copy_nodes(cnd, nc_, env, list(cnd.outputs), caps)
    nc_.inputs = [env[cnd.inputs[k]] for k in kept_c]
    nc_.outputs = outs
    return nc_


def rebuild_loop(plan, G, new_xs, b):
    """Emit the new loop node into G; returns a NewLoop (outputs aligned with the old node's,
    None where the plan computes the value outside)."""
    from ..ops.control import LOOP  # noqa: PLC0415

    node, a, nc = plan.node, plan.attrs, plan.nc
    kept_c = _kept_carried(plan)
    kept_ys = [j for j in range(plan.ny) if j not in plan.sunk_ys and j not in plan.unused_ys]
    ys_pos = {plan.info.body.outputs[nc + j]: i for i, j in enumerate(kept_ys)}
    scan_out = [t for t in plan.cut if t not in ys_pos]
    nb, kept_slices = _new_body(plan, G, kept_c, kept_ys, scan_out)
    cnd = _new_cond(plan, G, kept_c)
    inputs = ([plan.m] if plan.m is not None else []) + [plan.inits[k] for k in kept_c]
    xs = [plan.xs[j] for j in kept_slices] + list(new_xs)
    inputs += xs + list(nb.captures) + (list(cnd.captures) if cnd is not None else [])
    attrs = dict(a, body=nb, cond=cnd, n_carried=len(kept_c), n_xs=len(xs))
    new = G.add_node(LOOP, inputs, attrs, name=node.name, tags=dict(node.tags),
                     location=node.location)
    outs = new.outputs
    res = NewLoop()
    res.node = new
    kept = [None] * len(node.outputs)
    for i, k in enumerate(kept_c):
        kept[k] = outs[i]
    for k in plan.dead:
        kept[k] = plan.inits[k]  # nobody reads it (the plan checked)
    base = len(kept_c)
    for i, j in enumerate(kept_ys):
        kept[nc + j] = outs[base + i]
    for j in plan.unused_ys:
        if kept[nc + j] is None and j not in plan.sunk_ys:
            kept[nc + j] = outs[0] if outs else plan.inits[0]  # unused: any tensor will do
    extra = {t: outs[base + len(kept_ys) + i] for i, t in enumerate(scan_out)}
    res.stacked_cut = [extra[t] if t in extra else outs[base + ys_pos[t]] for t in plan.cut]
    res.kept_outputs = kept
    return res
