"""Keeping big pictures legible: fold control-flow bodies, group nodes by name scope, or keep the
first and last nodes and stand one "... k more" node in for the middle."""

from collections import Counter

from .viz_model import VGraph, VNode, clip, collapse


def summarise(vg, max_nodes, keep=(), shown=None):
    """`vg` itself when it has at most `max_nodes` nodes (panels included), else a summary:
    bodies folded, then one box per name scope if that fits in `max_nodes`, else about `shown`
    boxes (default max_nodes // 3: a summary is for reading); `keep` ids stay visible."""
    total = vg.count()
    if total <= max_nodes:
        return vg
    shown = max(4, shown if shown is not None else max_nodes // 3)
    collapse(vg, max_nodes)
    if len(vg.nodes) <= max_nodes:
        vg.note = f"bodies collapsed ({total} nodes in all)"
        return vg
    grouped = group_by_scope(vg, max_nodes, keep)
    if grouped is not None and len(grouped.nodes) <= max_nodes:
        grouped.note = f"grouped by name scope: {len(grouped.nodes)} boxes for {total} nodes"
        return grouped
    base = grouped if grouped is not None else vg
    out = first_and_last(base, shown, keep)
    scoped = "grouped by name scope, " if grouped is not None else ""
    out.note = f"{scoped}showing the first and last {len(out.nodes) - 1} of {total} nodes"
    return out


def _scope_parts(name):
    return [p for p in str(name).split("/") if p]


def group_by_scope(vg, max_nodes, keep=()):
    """Fold nodes whose names share a `/`-scope prefix into one box per scope (deepest level
    that fits in `max_nodes`). None when names carry no scopes."""
    parts = {n.id: _scope_parts(n.name) for n in vg.nodes}
    deepest = max((len(p) - 1 for p in parts.values()), default=0)
    if deepest < 1:
        return None
    best = None
    for depth in range(1, deepest + 1):
        keys = _keys(vg, parts, depth, keep)
        boxes = len(set(keys.values()))
        if boxes > max_nodes and best is not None:
            break
        best = keys
        if boxes > max_nodes:
            break
    if best is None or len(set(best.values())) == len(vg.nodes):
        return None
    return _merge(vg, best)


def _keys(vg, parts, depth, keep):
    keys = {}
    for n in vg.nodes:
        p = parts[n.id]
        inside = len(p) > depth and n.id not in keep and n.kind not in ("input", "output")
        keys[n.id] = ("scope", "/".join(p[:depth])) if inside else ("node", n.id)
    consumers = {}
    for src, dst, _ in vg.edges:
        consumers.setdefault(src, set()).add(dst)
    for n in reversed(vg.nodes):  # an unscoped node that only feeds one scope joins it
        if keys[n.id][0] != "node" or n.id in keep or n.kind in ("input", "output"):
            continue
        if "output" in n.marks:
            continue
        owners = {keys[c] for c in consumers.get(n.id, ())}
        if len(owners) == 1 and next(iter(owners))[0] == "scope":
            keys[n.id] = next(iter(owners))
    return keys


def _merge(vg, keys):
    """Replace each group of nodes sharing a key by one group box; edges follow their ends."""
    members = {}
    for n in vg.nodes:
        members.setdefault(keys[n.id], []).append(n)
    out = VGraph(vg.title)
    box = {}
    for key, group in members.items():
        if key[0] == "node":
            node = group[0]
        else:
            node = _group_node(f"{group[0].id}_g", key[1], group)
        out.nodes.append(node)
        for m in group:
            box[m.id] = node.id
    _rewire(vg, out, box)
    return out


def _group_node(vid, label, group, summary=False):
    ops = Counter(m.op for m in group)
    top = ", ".join(f"{k} \u00d7{v}" for k, v in ops.most_common(3))
    kinds = Counter(m.kind for m in group)
    if summary:
        title = f"\u2026 {len(group)} more nodes"
    else:
        title = f"{label}/"
    node = VNode(vid, "summary" if summary else "group", title,
                 ([] if summary else [f"{len(group)} nodes"]) + [clip(top, 40)],
                 tooltip=f"{title}\n" + ", ".join(f"{k} \u00d7{v}" for k, v in ops.most_common()),
                 name=label, op="summary" if summary else "scope")
    for kind in ("grad", "tangent", "fused"):
        if kinds.get(kind, 0) * 2 > len(group):
            node.marks.add(kind)
    return node


def _rewire(vg, out, box):
    seen = set()
    for src, dst, kind in vg.edges:
        a, b = box.get(src), box.get(dst)
        if a is None or b is None or a == b or (a, b) in seen:
            continue
        seen.add((a, b))
        out.edges.append((a, b, kind))


def first_and_last(vg, max_nodes, keep=()):
    """Keep the first and the last nodes (and `keep`, inputs and outputs while the budget lasts);
    the rest becomes one "... k more nodes" box between them."""
    budget = max(max_nodes - 1, 2)
    n = len(vg.nodes)
    forced = [i for i, v in enumerate(vg.nodes)
              if v.id in keep or v.kind in ("input", "output") or "output" in v.marks]
    forced = forced[: budget // 2]
    rest = budget - len(forced)
    head = (rest + 1) // 2  # the rest of the budget goes to the last nodes
    chosen = set(forced)
    for i in range(n):
        if len(chosen) >= len(forced) + head:
            break
        chosen.add(i)
    for i in range(n - 1, -1, -1):
        if len(chosen) >= budget:
            break
        chosen.add(i)
    hidden = [v for i, v in enumerate(vg.nodes) if i not in chosen]
    out = VGraph(vg.title)
    box = {}
    more = _group_node(f"{vg.nodes[0].id}_more", "", hidden, summary=True) if hidden else None
    placed = False
    for i, v in enumerate(vg.nodes):
        if i in chosen:
            out.nodes.append(v)
            box[v.id] = v.id
        elif more is not None:
            box[v.id] = more.id
            if not placed:
                out.nodes.append(more)
                placed = True
    _rewire(vg, out, box)
    return out
