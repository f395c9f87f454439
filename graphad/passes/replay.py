"""The replay engine behind `rewrite.rebuild`: a Builder per node, the replayer (placeholders,
variables, control inputs, tags, body graphs with lazily made captures) and the probe that
runs a rewrite over the old graph without building anything."""

import itertools

from ..errors import GraphError
from ..graph import Graph, Node, Operation, Tensor, ancestors
from .program import Program, body_attrs, live_nodes

__all__ = ["Builder", "Replayer", "would_change", "INHERITED_TAGS"]

INHERITED_TAGS = ("grad_of", "mode", "recompute")


# ---------------------------------------------------------------------------------------------
# Builder: what a rewrite function sees


class Builder:
    """Context of one node's rewrite: the new graph, the node's new attrs, helpers."""

    __slots__ = ("graph", "node", "attrs", "inputs", "declines", "fires", "nodes", "plain",
                 "env", "ctx", "_replayer")

    def __init__(self, replayer):
        self._replayer = replayer
        self.declines = replayer.declines
        self.fires = replayer.fires
        self.graph = self.node = self.attrs = self.inputs = self.nodes = self.plain = None
        self.env = None
        self.ctx = replayer.ctx  # pass-specific state (one dict per rebuild)

    def copy(self, inputs=None, attrs=None, opdef=None):
        """Outputs of a copy of the node (optionally with other inputs / attrs / op). Returning
        the outputs of a plain copy (no arguments) from a rewrite is not a change."""
        node = self.node
        new = self._replayer.copy_node(self.graph, node, self.inputs if inputs is None else
                                       inputs, self.attrs if attrs is None else attrs,
                                       self.nodes, opdef)
        if inputs is None and attrs is None and opdef is None:
            self.plain = new
        return new.outputs

    def add(self, op, inputs, attrs=None, name=None):
        """Add a node of `op` (name or OpDef) to the new graph; returns the Node."""
        from ..registry import lookup  # noqa: PLC0415

        opdef = lookup(op) if isinstance(op, str) else op
        return self.graph.add_node(opdef, list(inputs), attrs or {}, name=name or opdef.name,
                                   location=self.node.location)

    def const(self, value, dtype=None):
        """A constant tensor in the new graph."""
        from ..build import as_tensor  # noqa: PLC0415

        return as_tensor(value, dtype=dtype, graph=self.graph) if dtype is not None else \
            _raw_constant(self.graph, value)

    def get(self, old):
        """The new tensor standing for tensor `old` of the graph being replayed (already
        replayed: an input of the current node or anything scheduled before it)."""
        return _force(self.env, old)

    def decline(self, rule, reason):
        if self.declines is not None:
            self.declines.append({"rule": rule, "node": self.node.name, "op": self.node.op,
                                  "reason": str(reason)})

    def fired(self, rule):
        if self.fires is not None:
            self.fires[rule] = self.fires.get(rule, 0) + 1


def _raw_constant(graph, value):
    """A constant holding exactly `value` (no default-dtype conversion)."""
    import numpy as np  # noqa: PLC0415

    from ..build import CONSTANT  # noqa: PLC0415

    arr = np.array(value, copy=True)
    arr.flags.writeable = False
    return graph.add_node(CONSTANT, (), {"value": arr}, name="const").outputs[0]


class Replayer:
    """One rebuild: replays a program's live nodes into a new graph through `rewrite_node`;
    `changed` says whether the result differs (a rewrite fired, dead code or captures went)."""

    def __init__(self, rewrite_node, into_bodies, declines, fires, ctx):
        self.ctx = ctx
        self.rewrite_node = rewrite_node
        self.into_bodies = into_bodies
        self.declines = declines
        self.fires = fires
        self.changed = False
        self.builder = Builder(self)

    # -- top level -----------------------------------------------------------------------------
    def run(self, prog):
        old = prog.graph
        new = Graph(name=old.name)
        env, nodes = {}, {}
        feeds = []
        for t in prog.feeds:
            if t in env:
                raise GraphError(f"tensor {t.name!r} is fed twice")
            ph = self.copy_placeholder(new, t)
            if t.node.op != "placeholder":
                self.changed = True  # a fed intermediate is cut: its producers may die
            env[t] = ph
            feeds.append(ph)
        walked = self.replay(old, new, env, nodes, prog.roots)
        kept = {id(n) for n in walked}
        kept.update(id(t.node) for t in prog.feeds if t.node.op == "placeholder")
        if len(kept) != len(old.nodes):
            self.changed = True  # dead nodes dropped
        outputs = tuple(env[t] for t in prog.outputs)
        ops = tuple(Operation(nodes[id(o.node)]) for o in prog.operations)
        return Program(new, outputs, ops, feeds)

    def replay(self, old, new, env, nodes, roots):
        """Replay the nodes `roots` need from graph `old` into `new`; returns the nodes walked."""
        walked = ancestors(roots, stop=env.__contains__)
        with new.as_default():
            for node in walked:
                if node.outputs and all(o in env for o in node.outputs):
                    continue
                self.replay_node(node, new, env, nodes)
        return walked

    # -- one node ------------------------------------------------------------------------------
    def replay_node(self, node, new, env, nodes):
        op = node.op
        if op == "placeholder":
            t = node.outputs[0]
            env[t] = self.copy_placeholder(new, t)
            nodes[id(node)] = env[t].node
            return
        if op == "variable":
            v = self.copy_variable(new, node)
            env[node.outputs[0]] = v
            nodes[id(node)] = v.node
            return
        inputs = [env[t] for t in node.inputs]
        attrs = node.attrs
        if self.into_bodies and body_attrs(node):
            attrs, inputs = self.rebuild_bodies(node, new, inputs)
        b = self.builder
        b.graph, b.node, b.attrs, b.inputs, b.nodes = new, node, attrs, inputs, nodes
        b.plain, b.env = None, env
        mark = len(new.nodes)
        res = self.rewrite_node(node, inputs, b) if self.rewrite_node is not None else None
        if res is None:
            out = self.copy_node(new, node, inputs, attrs, nodes).outputs
            nodes[id(node)] = new.nodes[-1]
        else:
            out = tuple(res)
            if len(out) != len(node.outputs):
                raise GraphError(f"rewrite of {node.op!r} ({node.name}) returned {len(out)} "
                                 f"tensors for {len(node.outputs)} outputs")
            plain = b.plain is not None and all(t.node is b.plain for t in out)
            if not plain:
                self.changed = True
            if out:
                nodes[id(node)] = out[0].node
        for o, n in zip(node.outputs, out):
            env[o] = n
        if len(new.nodes) - mark > 1 or (res is not None and b.plain is None):
            self.inherit(new, mark, node)

    @staticmethod
    def inherit(new, mark, node):
        """Nodes made while rewriting `node` take its location and inherited tags."""
        nn = new.nodes
        tags = {k: node.tags[k] for k in INHERITED_TAGS if k in node.tags}
        for n in nn[mark:]:
            n.location = node.location
            for k, v in tags.items():
                n.tags.setdefault(k, v)

    @staticmethod
    def copy_node(graph, node, inputs, attrs, nodes, opdef=None):
        ctrl = tuple(_mapped_node(nodes, c) for c in node.control_inputs) \
            if node.control_inputs else ()
        same = opdef is None and attrs is node.attrs
        if same:
            for a, b in zip(inputs, node.inputs):
                if a.type is not b.type and a.type != b.type:
                    same = False
                    break
        if same and _FAST_COPY and all(t.node.graph is graph for t in inputs):
            return _append_copy(graph, node, inputs, ctrl)
        return graph.add_node(opdef or node.opdef, inputs, attrs, name=node.name,
                              control_inputs=ctrl, tags=dict(node.tags), location=node.location,
                              out_types=[o.type for o in node.outputs] if same else None)

    # -- sources -------------------------------------------------------------------------------
    @staticmethod
    def copy_placeholder(graph, t):
        from ..build import PLACEHOLDER  # noqa: PLC0415

        if t.node.op == "placeholder":
            name, attrs = t.node.name, dict(t.node.attrs)
            attrs.pop("captured", None)
        else:
            name, attrs = t.name, {"shape": t.shape, "dtype": t.dtype}
        return graph.add_node(PLACEHOLDER, (), attrs, name=name, location=t.node.location,
                              tags=dict(t.node.tags), out_types=[t.type]).outputs[0]

    @staticmethod
    def copy_variable(graph, node):
        from ..build import VARIABLE, Variable  # noqa: PLC0415

        old = node.outputs[0]
        vname = node.attrs["name"]
        new = graph.add_node(VARIABLE, (), dict(node.attrs), name=node.name,
                             location=node.location, tags=dict(node.tags), out_types=[old.type])
        v = object.__new__(Variable)
        Tensor.__init__(v, new, 0, old.type)
        v.initial_value = getattr(old, "initial_value", None)
        v.trainable = getattr(old, "trainable", True)
        new.outputs = (v,)
        graph.variables[vname] = v
        return v

    # -- bodies --------------------------------------------------------------------------------
    def rebuild_bodies(self, node, new, inputs):
        """New attrs with rebuilt bodies, and the node's inputs with recomputed captures."""
        bodies = body_attrs(node)
        n_caps = sum(len(g.captures) for _, g in bodies)
        prefix = list(inputs[:len(inputs) - n_caps])
        cap_inputs = inputs[len(inputs) - n_caps:]
        attrs = dict(node.attrs)
        tail, pos = [], 0
        for key, body in bodies:
            k = len(body.captures)
            nb = self.rebuild_body(body, new, cap_inputs[pos:pos + k])
            pos += k
            attrs[key] = nb
            tail.extend(nb.captures)
        return attrs, prefix + tail

    def rebuild_body(self, body, new_parent, cap_values):
        nb = Graph(name=body.name, parent=new_parent)
        env, nodes = {}, {}
        for ph, outer in zip(body.captures.values(), cap_values):
            env[ph] = _Lazy(nb, outer)
        phs = [self.copy_placeholder(nb, t) for t in body.inputs]
        env.update(zip(body.inputs, phs))
        walked = self._replay_body(body, nb, env, nodes)
        outs = []
        for o in body.outputs:
            t = _force(env, o)
            if t.node.graph is not nb:
                t = nb.capture(t)
            outs.append(t)
        nb.inputs, nb.outputs = phs, outs
        kept = {id(n) for n in walked}
        kept.update(id(t.node) for t in body.inputs)
        if len(kept) != len(body.nodes):
            self.changed = True  # dead nodes or unused captures dropped
        return nb

    def _replay_body(self, body, nb, env, nodes):
        lazy = {t for t, v in env.items() if isinstance(v, _Lazy)}
        walked = ancestors(body.outputs, stop=lambda t: t in env and t not in lazy)
        with nb.as_default():
            for node in walked:
                if node.op == "placeholder" and node.outputs[0] in lazy:
                    continue  # captures are made on first use (see _Lazy)
                if node.outputs and all(o in env for o in node.outputs):
                    continue
                _force_inputs(env, node)
                self.replay_node(node, nb, env, nodes)
        return walked


# The plain copy of a node whose inputs have the same types is the hot path of every rebuild:
# it appends the Node directly (what Graph.add_node does once checks and inference are known to
# pass). Used only while Node has exactly the slots below; otherwise add_node does it all.
_NODE_SLOTS = ("graph", "id", "op", "opdef", "inputs", "attrs", "outputs", "name", "location",
               "control_inputs", "tags", "__weakref__")
_FAST_COPY = tuple(getattr(Node, "__slots__", ())) == _NODE_SLOTS


def _append_copy(graph, node, inputs, ctrl):
    n = Node()
    n.graph = graph
    n.id = len(graph.nodes)
    n.op = node.op
    n.opdef = node.opdef
    n.inputs = tuple(inputs)
    n.attrs = node.attrs  # shared: attrs are immutable once a node is built
    n.name = graph.unique_name(node.name)
    n.location = node.location
    n.control_inputs = ctrl
    n.tags = dict(node.tags)
    n.outputs = tuple(Tensor(n, i, o.type) for i, o in enumerate(node.outputs))
    graph.nodes.append(n)
    return n


def _mapped_node(nodes, c):
    m = nodes.get(id(c))
    if m is None:
        raise GraphError(f"control input {c.name!r} was not replayed")
    return m


class _Lazy:
    """A capture not made yet: made in the new body on first use (unused ones disappear)."""

    __slots__ = ("body", "outer")

    def __init__(self, body, outer):
        self.body, self.outer = body, outer


def _force(env, t):
    v = env[t]
    if isinstance(v, _Lazy):
        v = v.body.capture(v.outer)
        env[t] = v
    return v


def _force_inputs(env, node):
    for t in node.inputs:
        if isinstance(env.get(t), _Lazy):
            _force(env, t)


# ---------------------------------------------------------------------------------------------
# Probing: would a rewrite fire anywhere? (no graph is built)


class _WouldFire(Exception):
    pass


class _ProbeBuilder:
    """A Builder look-alike over the OLD graph: plain copies are the node itself, building
    anything else means the rewrite fires."""

    __slots__ = ("graph", "node", "attrs", "inputs", "nodes", "plain", "env", "ctx")
    declines = fires = None

    def __init__(self, ctx):
        self.ctx = ctx
        self.nodes = {}
        self.env = None

    def copy(self, inputs=None, attrs=None, opdef=None):
        if inputs is None and attrs is None and opdef is None:
            self.plain = self.node
            return self.node.outputs
        raise _WouldFire

    def add(self, *a, **k):
        raise _WouldFire

    def const(self, *a, **k):
        raise _WouldFire

    def get(self, old):
        return old

    def decline(self, rule, reason):
        pass

    def fired(self, rule):
        pass


def would_change(prog, rewrite_node, into_bodies=True, ctx=None):
    """Whether `rewrite_node` fires on some live node of `prog` (or of its bodies). Nodes are
    visited in the order a rebuild replays them (a node's bodies right before the node)."""
    b = _ProbeBuilder({} if ctx is None else ctx)
    seen = b.nodes
    stack = [(prog.graph, iter(live_nodes(prog)))]
    while stack:
        graph, it = stack[-1]
        node = next(it, None)
        if node is None:
            stack.pop()
            continue
        if node.op in _SOURCES:
            seen[id(node)] = node
            continue
        if into_bodies and node.attrs and id(node) not in seen:
            bodies = body_attrs(node)
            if bodies:  # bodies first (as rebuild does), then this node again
                seen[id(node)] = None
                stack[-1] = (graph, itertools.chain((node,), it))
                stack.extend((g, iter(ancestors(g.outputs))) for _, g in reversed(bodies))
                continue
        seen[id(node)] = node
        b.graph, b.node, b.attrs, b.inputs, b.plain = graph, node, node.attrs, node.inputs, None
        size = len(graph.nodes)
        try:
            res = rewrite_node(node, node.inputs, b)
        except _WouldFire:
            return True
        if len(graph.nodes) != size:
            return True  # a rewrite built without `b` (a bug, but do not miss the change)
        if res is not None and not (b.plain is not None and all(t.node is b.plain for t in res)):
            return True
    return False


_SOURCES = frozenset({"placeholder", "variable"})
