"""Grouping of elementwise chains into convex fusion groups, recorded as `node.tags["fused"]`
(the group's name) for the viewers. Convex by construction (PyTensor's criterion): a node joins a
group only if no path from the group reaches it through a node outside the group, so the
diamond a -> (b, c) -> d with c not elementwise never puts a and d together."""

from .rewrite import body_attrs, graph_pass, live_nodes, rebuild

__all__ = ["ELEMENTWISE_OPS", "elementwise_groups", "tag_elementwise_groups"]

ELEMENTWISE_OPS = frozenset({
    "abs", "add", "arctan", "ceil", "clip", "cos", "cosh", "divide", "equal", "erf", "exp",
    "expm1", "floor", "greater", "greater_equal", "less", "less_equal", "log", "log1p",
    "logical_and", "logical_not", "logical_or", "maximum", "minimum", "multiply", "negative",
    "not_equal", "power", "reciprocal", "relu", "round", "rsqrt", "sigmoid", "sign", "sin",
    "sinh", "softplus", "sqrt", "square", "subtract", "tan", "tanh", "where", "cast",
    "stop_gradient", "add_n", "fused_gated_add",
})  # fmt: skip

MIN_GROUP = 2  # a single node is not a fusion


def elementwise_groups(nodes):
    """{id(node): group leader Node} for the elementwise nodes of one graph's schedule.

    Each group is convex. `up[n]` is a bitset of the groups with a member that is an ancestor
    of n (or n itself); n may join the group G of a producer p only if every other producer q
    of n is in G or has no ancestor in G (else the path G -> q -> n leaves G).
    """
    group, up, leaders = {}, {}, []
    for n in nodes:
        mask = 0
        for t in n.inputs:
            mask |= up.get(id(t.node), 0)
        gid = None
        if n.op in ELEMENTWISE_OPS and n.outputs:
            gid = _joinable(n, group, up)
            if gid is None:
                gid = len(leaders)
                leaders.append(n)
            group[id(n)] = gid
            mask |= 1 << gid
        up[id(n)] = mask
    sizes = {}
    for gid in group.values():
        sizes[gid] = sizes.get(gid, 0) + 1
    return {k: leaders[g] for k, g in group.items() if sizes[g] >= MIN_GROUP}


def _joinable(n, group, up):
    """A producer's group n can join keeping it convex, else None."""
    producers = [t.node for t in n.inputs]
    for p in producers:
        gid = group.get(id(p))
        if gid is None:
            continue
        bit = 1 << gid
        if all(group.get(id(q)) == gid or not (up.get(id(q), 0) & bit) for q in producers):
            return gid
    return None


def _plan(prog):
    """{id(old node): tag} for every live node of the program, bodies included."""
    tags = {}
    stack = [live_nodes(prog)]
    while stack:
        nodes = stack.pop()
        for k, leader in elementwise_groups(nodes).items():
            tags[k] = f"{leader.name}"
        for n in nodes:
            for _, body in body_attrs(n):
                from ..graph import ancestors  # noqa: PLC0415

                stack.append(ancestors(body.outputs))
    return tags


def _stale(prog, plan):
    """Live elementwise nodes whose tag differs from the plan."""
    from ..graph import ancestors  # noqa: PLC0415

    out = []
    stack = [live_nodes(prog)]
    while stack:
        for n in stack.pop():
            if n.op in ELEMENTWISE_OPS and n.tags.get("fused") != plan.get(id(n)):
                out.append(n)
            stack.extend(ancestors(body.outputs) for _, body in body_attrs(n))
    return out


@graph_pass
def tag_elementwise_groups(prog, in_place=False):
    """Tag each convex elementwise group's nodes with `tags["fused"] = <leader's name>`; the
    same program when every tag is already right. `in_place=True` retags the nodes of `prog`
    itself (only for a program a pass has just built, never for a pass's input)."""
    plan = _plan(prog)
    stale = _stale(prog, plan)
    if not stale:
        return prog
    if in_place:
        for n in stale:
            if plan.get(id(n)) is None:
                n.tags.pop("fused", None)
            else:
                n.tags["fused"] = plan[id(n)]
        return prog

    def rewrite(node, inputs, b):
        want = plan.get(id(node))
        if node.op not in ELEMENTWISE_OPS or node.tags.get("fused") == want:
            return None
        outs = b.copy()  # a plain copy (no re-inference); force=True keeps the new program
        if want is None:
            outs[0].node.tags.pop("fused", None)
        else:
            outs[0].node.tags["fused"] = want
        return outs

    return rebuild(prog, rewrite, force=True)
