"""The IR: append-only Graphs of immutable Nodes whose outputs are Tensors.

Nodes are created in topological order (inputs must exist first), so a graph's node list is
always a valid schedule; every traversal here is iterative, never recursive.
"""

import contextlib
import itertools
import re
import threading

from .errors import DTypeError, GraphError, GraphadError, ShapeError, user_location
from .types import TensorType, format_shape

_GRAPH_IDS = itertools.count()


def _ops():
    from . import ops  # noqa: PLC0415  (late import: ops build on this module)

    return ops


class Tensor:
    """A symbolic value: output `index` of `node`. Hashable by identity (usable as a dict key)."""

    __slots__ = ("node", "index", "type", "__weakref__")
    __array_priority__ = 1000  # numpy defers to our operators

    def __init__(self, node, index, type_):
        self.node, self.index, self.type = node, index, type_

    # -- metadata ------------------------------------------------------------------------------
    @property
    def op(self):
        return self.node

    @property
    def graph(self):
        return self.node.graph

    @property
    def shape(self):
        return self.type.shape

    @property
    def dtype(self):
        return self.type.dtype

    @property
    def ndim(self):
        return len(self.type.shape)

    @property
    def name(self):
        n = self.node
        return n.name if len(n.outputs) == 1 else f"{n.name}:{self.index}"

    def __repr__(self):
        return f"<Tensor {self.name!r} {self.type!r} from {self.node.op}>"

    def __len__(self):
        if not self.shape:
            raise TypeError(f"len() of a scalar tensor {self.name!r}")
        d = self.shape[0]
        if not isinstance(d, int):
            raise TypeError(f"len() of tensor {self.name!r}: leading dim {d!r} is not known")
        return d

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __bool__(self):
        raise TypeError(
            f"the truth value of symbolic tensor {self.name!r} is not known while building the "
            "graph; use ga.cond / ga.where for data-dependent choices"
        )

    __hash__ = object.__hash__

    def __eq__(self, other):  # identity, as documented in API.md
        return self is other

    def __ne__(self, other):
        return self is not other

    # -- operators (delegate to the op catalogue) -----------------------------------------------
    def __add__(self, o):
        return _ops().add(self, o)

    def __radd__(self, o):
        return _ops().add(o, self)

    def __sub__(self, o):
        return _ops().subtract(self, o)

    def __rsub__(self, o):
        return _ops().subtract(o, self)

    def __mul__(self, o):
        return _ops().multiply(self, o)

    def __rmul__(self, o):
        return _ops().multiply(o, self)

    def __truediv__(self, o):
        return _ops().divide(self, o)

    def __rtruediv__(self, o):
        return _ops().divide(o, self)

    def __pow__(self, o):
        return _ops().power(self, o)

    def __rpow__(self, o):
        return _ops().power(o, self)

    def __matmul__(self, o):
        return _ops().matmul(self, o)

    def __rmatmul__(self, o):
        return _ops().matmul(o, self)

    def __neg__(self):
        return _ops().negative(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _ops().abs(self)

    def __lt__(self, o):
        return _ops().less(self, o)

    def __le__(self, o):
        return _ops().less_equal(self, o)

    def __gt__(self, o):
        return _ops().greater(self, o)

    def __ge__(self, o):
        return _ops().greater_equal(self, o)

    def __and__(self, o):
        return _ops().logical_and(self, o)

    def __or__(self, o):
        return _ops().logical_or(self, o)

    def __invert__(self):
        return _ops().logical_not(self)

    def __getitem__(self, idx):
        return _ops().getitem(self, idx)

    @property
    def T(self):
        return _ops().transpose(self)

    def astype(self, dtype):
        return _ops().cast(self, dtype)

    def sum(self, axis=None, keepdims=False):
        return _ops().sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return _ops().mean(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        return _ops().reshape(self, shape)


class Operation:
    """A node with no outputs (assignments, groups, training steps); fetching it runs it."""

    __slots__ = ("node",)

    def __init__(self, node):
        self.node = node

    @property
    def name(self):
        return self.node.name

    @property
    def graph(self):
        return self.node.graph

    @property
    def op(self):
        return self.node

    def __repr__(self):
        return f"<Operation {self.node.name!r} ({self.node.op})>"


class Node:
    """One op application. Immutable once built: op, inputs, attrs, outputs never change."""

    __slots__ = (
        "graph",
        "id",
        "op",
        "opdef",
        "inputs",
        "attrs",
        "outputs",
        "name",
        "location",
        "control_inputs",
        "tags",
        "__weakref__",
    )

    def __repr__(self):
        return f"<Node {self.name!r} {self.op}>"

    @property
    def is_operation(self):
        return not self.outputs


_NAME_RE = re.compile(r"[^A-Za-z0-9_.\-/]")


class Graph:
    """A container of nodes. `with g:` makes it the default graph for the block."""

    def __init__(self, name=None, parent=None):
        self.name = name or f"graph{next(_GRAPH_IDS)}"
        self.nodes = []
        self.variables = {}  # name -> Variable
        self.parent = parent  # enclosing graph of a control-flow body, else None
        self.captures = {}  # outer Tensor -> placeholder of this graph standing for it
        self.inputs = []  # formal inputs of a body graph (placeholders)
        self.outputs = []  # results of a body graph
        self._names = {}
        self._used = set()

    # -- nesting -------------------------------------------------------------------------------
    def encloses(self, other):
        """True when `other` is this graph or one of its ancestors (an enclosing graph)."""
        g = self
        while g is not None:
            if g is other:
                return True
            g = g.parent
        return False

    def capture(self, t):
        """The placeholder of this body graph that stands for outer tensor `t` (made once)."""
        if t.node.graph is self:
            return t
        ph = self.captures.get(t)
        if ph is None:
            from .registry import lookup  # noqa: PLC0415

            node = self.add_node(lookup("placeholder"), (),
                                 {"shape": t.shape, "dtype": t.dtype, "captured": True},
                                 name=f"capture/{t.name}", location=t.node.location)
            ph = node.outputs[0]
            self.captures[t] = ph
        return ph

    # -- naming --------------------------------------------------------------------------------
    def unique_name(self, base):
        base = _NAME_RE.sub("_", str(base)) or "node"
        if base not in self._used:
            self._used.add(base)
            self._names.setdefault(base, 0)
            return base
        n = self._names.get(base, 0)
        while True:
            n += 1
            cand = f"{base}_{n}"
            if cand not in self._used:
                self._names[base] = n
                self._used.add(cand)
                return cand

    # -- construction --------------------------------------------------------------------------
    def add_node(self, opdef, inputs, attrs=None, name=None, control_inputs=(), tags=None,
                 location=None, out_types=None, name_reserved=False):
        """Type-check and append a node; returns it. Errors name the op, inputs and user line."""
        attrs = dict(attrs or {})
        location = location or user_location()
        if self.parent is not None:  # a body graph: outer tensors become explicit captures
            inputs = [self.capture(t) if isinstance(t, Tensor) and t.node.graph is not self
                      and self.encloses(t.node.graph) else t for t in inputs]
        for t in inputs:
            if not isinstance(t, Tensor):
                raise GraphError(f"op {opdef.name!r} at {location}: input {t!r} is not a Tensor")
            if t.node.graph is not self:
                raise GraphError(
                    f"op {opdef.name!r} at {location}: tensor {t.name!r} belongs to graph "
                    f"{t.node.graph.name!r}, but the op is being added to graph {self.name!r}; "
                    "tensors of two graphs cannot be mixed"
                )
        for c in control_inputs:
            if c.graph is not self:
                raise GraphError(
                    f"op {opdef.name!r} at {location}: control input {c.name!r} belongs to graph "
                    f"{c.graph.name!r}, not {self.name!r}"
                )
        if out_types is None:
            try:
                out_types = opdef.infer(tuple(t.type for t in inputs), attrs)
            except (ShapeError, DTypeError) as e:
                desc = ", ".join(f"{t.name}: {t.type!r}" for t in inputs)
                raise type(e)(f"{e}\n  in op {opdef.name!r} ({desc}) created at {location}") from None
        node = Node()
        node.graph = self
        node.id = len(self.nodes)
        node.op = opdef.name
        node.opdef = opdef
        node.inputs = tuple(inputs)
        node.attrs = attrs
        node.name = name if name_reserved else self.unique_name(name or opdef.name)
        node.location = location
        node.control_inputs = tuple(c.node if isinstance(c, (Operation, Tensor)) else c
                                    for c in control_inputs)
        node.tags = tags or {}
        node.outputs = tuple(Tensor(node, i, t) for i, t in enumerate(out_types))
        self.nodes.append(node)
        return node

    # -- queries -------------------------------------------------------------------------------
    def __len__(self):
        return len(self.nodes)

    def by_name(self, name):
        for n in self.nodes:
            if n.name == name:
                return n
        raise GraphError(f"graph {self.name!r} has no node named {name!r}")

    def placeholders(self):
        return [n.outputs[0] for n in self.nodes if n.op == "placeholder"]

    def __repr__(self):
        return f"<Graph {self.name!r}: {len(self.nodes)} nodes>"

    def __str__(self):
        return self.text()

    def text(self):
        from .viz import graph_text  # noqa: PLC0415

        return graph_text(self)

    def _repr_svg_(self):
        from . import viz  # noqa: PLC0415

        return viz.draw(self).svg

    def to_networkx(self):
        from .viz import to_networkx  # noqa: PLC0415

        return to_networkx(self)

    # -- default-graph context -----------------------------------------------------------------
    @contextlib.contextmanager
    def as_default(self):
        _STACK.stack.append(self)
        try:
            yield self
        finally:
            _STACK.stack.pop()

    def __enter__(self):
        _STACK.stack.append(self)
        return self

    def __exit__(self, *exc):
        _STACK.stack.pop()
        return False


class _Stack(threading.local):
    def __init__(self):
        self.stack = []


_STACK = _Stack()
_GLOBAL = Graph("default")


def get_default_graph():
    return _STACK.stack[-1] if _STACK.stack else _GLOBAL


def reset_default_graph():
    """Replace the global default graph by a fresh one (outside any `with graph:` block)."""
    global _GLOBAL
    if _STACK.stack:
        raise GraphadError("reset_default_graph() inside a `with graph:` block")
    _GLOBAL = Graph("default")
    return _GLOBAL


def ancestors(roots, stop=None):
    """Nodes reachable backwards from `roots` (Tensors, Operations or Nodes), in schedule order.

    `stop(tensor) -> bool` cuts the walk at a tensor (e.g. a fed value). Iterative.
    """
    seen = {}
    stack = []
    for r in roots:
        node = r.node if isinstance(r, (Tensor, Operation)) else r
        stack.append(node)
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        for t in node.inputs:
            if stop is not None and stop(t):
                continue
            if id(t.node) not in seen:
                stack.append(t.node)
        for c in node.control_inputs:
            if id(c) not in seen:
                stack.append(c)
    return sorted(seen.values(), key=lambda n: n.id)


def inline(graph, mapping, outputs, target=None, tags=None):
    """Replay the nodes of `graph` that `outputs` need into `target` (default: the graph of the
    mapped tensors), substituting `mapping` {tensor of graph: tensor of target}. Iterative.

    Placeholders must be mapped, except captures, which map to the outer tensor they stand for
    (re-captured automatically when `target` is itself a body). Returns the new outputs.
    """
    env = dict(mapping)
    if target is None:
        target = next((t.node.graph for t in env.values()), None) or get_default_graph()
    for node in ancestors(outputs, stop=lambda t: t in env):
        if node.outputs and all(o in env for o in node.outputs):
            continue
        if node.op == "placeholder":
            outer = next((o for o, ph in graph.captures.items() if ph is node.outputs[0]), None)
            if outer is None:
                raise GraphError(f"inline: placeholder {node.name!r} of graph {graph.name!r} "
                                 "is not mapped")
            env[node.outputs[0]] = outer
            continue
        if node.op == "variable":
            env[node.outputs[0]] = node.outputs[0]
            continue
        new = target.add_node(node.opdef, [env[t] for t in node.inputs], node.attrs,
                              name=node.name, location=node.location,
                              tags=dict(node.tags, **(tags or {})))
        for o, n in zip(node.outputs, new.outputs):
            env[o] = n
    return [env[o] for o in outputs]


def describe(t):
    return f"{t.name!r} {format_shape(t.shape)} {t.dtype.name}"


def as_type(shape, dtype):
    return TensorType(shape, dtype)
