"""Pytrees: nested tuples, lists, dicts (and None) flattened to leaves and rebuilt."""

_LEAF = object()


class TreeDef:
    """The structure of a pytree; rebuild with `unflatten`."""

    __slots__ = ("kind", "meta", "children", "num_leaves")

    def __init__(self, kind, meta, children):
        self.kind, self.meta, self.children = kind, meta, tuple(children)
        self.num_leaves = 1 if kind == "leaf" else sum(c.num_leaves for c in self.children)

    def __eq__(self, other):
        return (isinstance(other, TreeDef) and self.kind == other.kind and self.meta == other.meta
                and self.children == other.children)

    def __hash__(self):
        return hash((self.kind, self.meta, self.children))

    def __repr__(self):
        if self.kind == "leaf":
            return "*"
        if self.kind == "none":
            return "None"
        if self.kind == "dict":  # keys shown: two dicts differ by their keys more often than not
            return "{" + ", ".join(f"{k!r}: {c!r}" for k, c in zip(self.meta, self.children)) + "}"
        inner = ", ".join(repr(c) for c in self.children)
        if self.kind == "namedtuple":
            return f"{self.meta.__name__}({inner})"
        return {"tuple": f"({inner})", "list": f"[{inner}]"}.get(self.kind, f"{self.kind}({inner})")


LEAF = TreeDef("leaf", None, ())
NONE = TreeDef("none", None, ())


def flatten(tree, is_leaf=None):
    """(leaves, treedef). Tuples, lists, dicts (sorted keys), namedtuples and None are nodes."""
    leaves = []

    def go(x):
        if is_leaf is not None and is_leaf(x):
            leaves.append(x)
            return LEAF
        if x is None:
            return NONE
        if isinstance(x, tuple) and hasattr(x, "_fields"):
            return TreeDef("namedtuple", type(x), [go(c) for c in x])
        if isinstance(x, tuple):
            return TreeDef("tuple", None, [go(c) for c in x])
        if isinstance(x, list):
            return TreeDef("list", None, [go(c) for c in x])
        if isinstance(x, dict):
            keys = tuple(sorted(x, key=_key_order))
            return TreeDef("dict", keys, [go(x[k]) for k in keys])
        leaves.append(x)
        return LEAF

    return leaves, go(tree)


def _key_order(k):
    return (type(k).__name__, str(k))


def unflatten(treedef, leaves):
    it = iter(leaves)

    def go(td):
        if td.kind == "leaf":
            return next(it)
        if td.kind == "none":
            return None
        kids = [go(c) for c in td.children]
        if td.kind == "tuple":
            return tuple(kids)
        if td.kind == "list":
            return kids
        if td.kind == "dict":
            return dict(zip(td.meta, kids))
        return td.meta(*kids)

    return go(treedef)


def tree_map(fn, tree, *rest):
    leaves, td = flatten(tree)
    others = [flatten(r)[0] for r in rest]
    return unflatten(td, [fn(x, *ys) for x, *ys in zip(leaves, *others)])


def leaves(tree):
    return flatten(tree)[0]
