"""Scalar factors regrouped inside loop bodies so that per-step work can leave the loop:
`(c * k) * s` with `c` read from the carry, `k` a loop-invariant scalar and `s` computed from
scanned slices only becomes `c * (k * s)`, whose `k * s` loop_batch then computes once over all
steps (a backward loop's `(ct * h) * (1 - tanh^2)`: one node less per step in W3).

Only the rounding of the product changes (one multiplication is regrouped), as with the fused
ops the pipeline emits; inf and NaN propagate the same way.
"""

from ..graph import Graph
from ..registry import lookup
from .loop_plan import _Body
from .loop_rebody import _copy_nodes, _placeholder

__all__ = ["regroup_scalar_factors"]


def _scalar_invariant(info, t):
    return info.kind.get(t, 2) == 0 and t.shape == ()


def _candidates(info):
    """[(n, c, k, s)] for body nodes n = (c * k) * s as described in the module docstring."""
    found = []
    for n in info.nodes:
        if n.op != "multiply":
            continue
        for u, s in (n.inputs, n.inputs[::-1]):
            if info.kind.get(s, 2) != 1 or u.node.op != "multiply" or u.node.graph is not \
                    info.body or info.out_pos.get(u) or len(info.users.get(u, ())) != 1:
                continue
            for c, k in (u.node.inputs, u.node.inputs[::-1]):
                if (info.kind.get(c, 2) == 2 and _scalar_invariant(info, k)
                        and c.dtype is k.dtype is s.dtype):
                    found.append((n, c, k, s))
                    break
            else:
                continue
            break
    return found


def regroup_scalar_factors(body, n_carried):
    """A copy of loop body `body` with every `(c * k) * s` regrouped, or None if there is none."""
    info = _Body(body, n_carried)
    todo = _candidates(info)
    if not todo:
        return None
    nb = Graph(name=body.name, parent=body.parent)
    mul = lookup("multiply")
    caps = info.caps
    with nb.as_default():
        env = {ph: _placeholder(nb, ph, ph.node.name) for ph in body.inputs}
        for outer in body.captures:  # the same captures, in the same order
            env[body.captures[outer]] = nb.capture(outer)
        for n, c, k, s in sorted(todo, key=lambda item: item[0].id):
            c2, k2, s2 = _copy_nodes(body, nb, env, [c, k, s], caps)
            tags = dict(n.tags, regrouped=True)
            ks = nb.add_node(mul, [k2, s2], {}, name=f"{n.name}/factor", tags=tags,
                             location=n.location).outputs[0]
            # same type as n: k is a scalar and u = c * k has c's shape and dtype
            env[n.outputs[0]] = nb.add_node(mul, [c2, ks], {}, name=n.name, tags=tags,
                                            location=n.location).outputs[0]
        outs = _copy_nodes(body, nb, env, list(body.outputs), caps)
    nb.inputs = [env[ph] for ph in body.inputs]
    nb.outputs = outs
    return nb
