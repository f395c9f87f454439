"""User-defined derivative rules (custom_jvp, custom_vjp) and rematerialisation (checkpoint).

Each is a node whose outputs are identity copies of the function's outputs and whose derivative
rules call the user's rule (or replay the function) instead of differentiating its nodes.
"""

import functools

import numpy as np

from . import tree
from .graph import ancestors
from .registry import apply_node, defop
from .tracing import (
    Transformed,
    autodiff_engine,
    ops,
    tensor_leaves,
    zeros,
)

__all__ = ["custom_jvp", "custom_vjp", "checkpoint", "remat", "checkpoint_policies"]


# ---------------------------------------------------------------------------------------------
# The three ops. Inputs are (args..., outs..., extra...); outputs are copies of outs, so the
# value is the function's own and only the derivative rules differ.


def _in_graph(rule):
    """Run a derivative rule with the node's graph as the default (user rules make constants)."""

    @functools.wraps(rule)
    def wrapped(node, *args):
        with node.graph.as_default():
            return rule(node, *args)

    return wrapped


def _outs_infer(types, attrs):
    n, m = attrs["n_args"], attrs["n_outs"]
    return tuple(types[n:n + m])


def _outs_reference(node, *arrays):
    n, m = node.attrs["n_args"], node.attrs["n_outs"]
    return tuple(arrays[n:n + m])


def _outs_lower(ctx, node, *names):
    n, m = node.attrs["n_args"], node.attrs["n_outs"]
    return tuple(ctx.emit("Identity", [x]) for x in names[n:n + m])


def _outs_tangents(node, *tangents):
    # forward mode differentiates the function's own nodes (the tangents of its outputs)
    n, m = node.attrs["n_args"], node.attrs["n_outs"]
    return tuple(tangents[n:n + m])


@_in_graph
def _custom_jvp_vjp(node, *cts):
    """Reverse mode derived from the JVP rule: transpose the linear map tangents -> tangent_out."""
    n = node.attrs["n_args"]
    args = node.inputs[:n]
    # fresh tangent tensors standing for the inputs (zeros: only their identity matters)
    seeds = [zeros(a, a.dtype) for a in args]
    touts = _apply_jvp_rule(node, seeds)
    ys, cs = [], []
    for t, c in zip(touts, cts):
        if c is not None and t is not None:
            ys.append(t)
            cs.append(c)
    idx = [i for i, a in enumerate(args) if a.dtype.is_floating]
    grads = [None] * n
    if ys and idx:
        got = autodiff_engine().vjp(ys, [seeds[i] for i in idx], cs)
        for i, g in zip(idx, got):
            grads[i] = g
    return tuple(grads) + (None,) * (len(node.inputs) - n)


@_in_graph
def _custom_jvp_jvp(node, *tangents):
    n = node.attrs["n_args"]
    ts = [zeros(a, a.dtype) if t is None else t for a, t in zip(node.inputs[:n], tangents)]
    return tuple(_apply_jvp_rule(node, ts))


def _apply_jvp_rule(node, tangent_leaves):
    """Call the user's rule on the node's primal inputs; the tangent outputs, one per output."""
    a = node.attrs
    obj = a["fn"]
    n = a["n_args"]
    primals = tree.unflatten(a["in_tree"], list(node.inputs[:n]))
    tangents = tree.unflatten(a["in_tree"], list(tangent_leaves))
    res = obj.jvp_rule(*a["nondiff"], tuple(primals), tuple(tangents))
    if not (isinstance(res, (tuple, list)) and len(res) == 2):
        raise TypeError(f"the JVP rule of {obj.__name__} must return (primal_out, tangent_out)")
    t_leaves, t_td = tree.flatten(res[1])
    if t_td != a["out_tree"]:
        raise TypeError(f"the JVP rule of {obj.__name__} returned tangents of structure "
                        f"{t_td!r}, but the function returns {a['out_tree']!r}")
    outs = node.outputs
    return [_tangent_like(t, o) for t, o in zip(t_leaves, outs)]


def _tangent_like(t, out):
    if t is None:
        return None
    (t,), _ = tensor_leaves(t, "custom rule result")
    if t.dtype is not out.dtype and out.dtype.is_floating:
        t = ops().cast(t, out.dtype)
    return t


CUSTOM_JVP_CALL = defop(
    "custom_jvp_call",
    infer=_outs_infer,
    reference=_outs_reference,
    lower=_outs_lower,
    vjp=_custom_jvp_vjp,
    jvp=_custom_jvp_jvp,
    doc="Outputs of a custom_jvp function: inputs (args..., outs...); derivatives from its rule.",
)


@_in_graph
def _custom_vjp_vjp(node, *cts):
    a = node.attrs
    obj, n, m = a["fn"], a["n_args"], a["n_outs"]
    ct_leaves = [zeros(o, o.dtype) if c is None else c for o, c in zip(node.outputs, cts)]
    res_tensors = iter(node.inputs[n + m:])
    res_leaves = [next(res_tensors) if s is _TENSOR else s for s in a["res_static"]]
    residuals = tree.unflatten(a["res_tree"], res_leaves)
    got = obj.bwd(*a["nondiff"], residuals, tree.unflatten(a["out_tree"], ct_leaves))
    args_td = a["in_tree"]
    if not isinstance(got, (tuple, list)) or len(got) != len(args_td.children):
        raise TypeError(f"the bwd rule of {obj.__name__} must return a tuple with one entry per "
                        f"argument ({len(args_td.children)}), got {got!r:.100}")
    grads = []
    for sub_td, g in zip(args_td.children, got):
        if g is None:
            grads.extend([None] * sub_td.num_leaves)
            continue
        leaves, td = tree.flatten(g)
        if td != sub_td:
            raise TypeError(f"the bwd rule of {obj.__name__} returned {td!r} for an argument "
                            f"of structure {sub_td!r}")
        grads.extend(None if x is None else tensor_leaves(x, "bwd result")[0][0] for x in leaves)
    return tuple(grads) + (None,) * (len(node.inputs) - n)


CUSTOM_VJP_CALL = defop(
    "custom_vjp_call",
    infer=_outs_infer,
    reference=_outs_reference,
    lower=_outs_lower,
    vjp=_custom_vjp_vjp,
    jvp=_outs_tangents,
    doc="Outputs of a custom_vjp function: inputs (args..., outs..., residuals...); reverse mode "
        "calls its bwd rule, forward mode differentiates its fwd function.",
)


@_in_graph
def _checkpoint_vjp(node, *cts):
    a = node.attrs
    n, m = a["n_args"], a["n_outs"]
    args, outs = node.inputs[:n], node.inputs[n:n + m]
    new_outs = replay(args, outs, a["policy"])
    ys, cs = [], []
    for y, c in zip(new_outs, cts):
        if c is not None:
            ys.append(y)
            cs.append(c)
    idx = [i for i, x in enumerate(args) if x.dtype.is_floating]
    grads = [None] * n
    if ys and idx:
        for i, g in zip(idx, autodiff_engine().vjp(ys, [args[i] for i in idx], cs)):
            grads[i] = g
    return tuple(grads) + (None,) * m


CHECKPOINT_CALL = defop(
    "checkpoint_call",
    infer=_outs_infer,
    reference=_outs_reference,
    lower=_outs_lower,
    vjp=_checkpoint_vjp,
    jvp=_outs_tangents,
    doc="Outputs of a checkpointed function: inputs (args..., outs...); its VJP recomputes the "
        "function's intermediates (nodes tagged recompute=True) instead of reusing them.",
)


def _barrier_lower(ctx, node, x):
    dt = node.inputs[0].dtype
    if dt.is_floating:  # x + (-0.0) == x bit for bit (signed zeros, inf and NaN included)
        return (ctx.emit("Add", [x, ctx.const(np.array(-0.0, dt.np))]),)
    return (ctx.emit("Identity", [x]),)


REMAT_BARRIER = defop(
    "remat_barrier",
    infer=lambda types, attrs: (types[0],),
    reference=lambda node, x: (np.array(x, copy=True),),
    lower=_barrier_lower,
    vjp=lambda node, g: (g,),
    jvp=lambda node, t: (t,),
    doc="Identity that recomputed (checkpointed) nodes read their inputs through, so no CSE, "
        "graphad's or onnxruntime's, merges them back into the stored forward nodes. It lowers "
        "to x + (-0.0) (onnxruntime removes Identity nodes, then CSE would merge); passes must "
        "keep it.",
)

_TENSOR = object()  # marks a residual leaf that is a node input (others are stored statically)


# ---------------------------------------------------------------------------------------------
# Replay: recompute the nodes between args and outs


def replay(args, outs, policy=None):
    """Copies of the nodes between `args` and `outs` (tagged recompute=True); the new outs.

    `policy(node) -> True` keeps (saves) a node's original outputs instead of recomputing it.
    Nodes that do not depend on `args` (constants, captured tensors) are shared, not copied.
    """
    argset = set(args)
    mapping = {}
    dependent = set(args)
    graph = outs[0].graph if outs else None

    stored = set(args)  # dependent values read as they are: args and saved nodes' outputs

    def source(t):
        if t in stored and t not in mapping:  # read through a barrier (see REMAT_BARRIER)
            mapping[t] = apply_node(REMAT_BARRIER, [t], name=f"{t.node.name}/remat",
                                    tags={"recompute": True}).outputs[0]
        return mapping.get(t, t)

    for node in ancestors(outs, stop=lambda t: t in argset):
        if not any(t in dependent for t in node.inputs):
            continue
        dependent.update(node.outputs)
        if not node.opdef.pure or (policy is not None and policy(node)):
            stored.update(node.outputs)
            continue
        tags = dict(node.tags or {})
        tags["recompute"] = True
        new = graph.add_node(node.opdef, [source(t) for t in node.inputs], node.attrs,
                             name=f"{node.name}/recompute", tags=tags, location=node.location,
                             out_types=[o.type for o in node.outputs],
                             control_inputs=node.control_inputs)
        mapping.update(zip(node.outputs, new.outputs))
    return [o if o in stored else mapping.get(o, o) for o in outs]


class checkpoint_policies:
    """Policies for `checkpoint(f, policy=...)`: `policy(node) -> True` saves that node's value."""

    @staticmethod
    def nothing_saveable(node):
        return False

    @staticmethod
    def everything_saveable(node):
        return True

    @staticmethod
    def dots_saveable(node):
        return node.op in ("matmul", "dot", "einsum")

    @staticmethod
    def save_only_these_ops(*op_names):
        names = frozenset(op_names)
        return lambda node: node.op in names


# ---------------------------------------------------------------------------------------------
# User-facing wrappers


def _split_nondiff(args, nondiff_argnums):
    nondiff = tuple(args[i] for i in nondiff_argnums)
    diff = tuple(a for i, a in enumerate(args) if i not in nondiff_argnums)
    return nondiff, diff


def _merge(nondiff, diff, nondiff_argnums):
    out, it_n, it_d = [], iter(nondiff), iter(diff)
    for i in range(len(nondiff) + len(diff)):
        out.append(next(it_n) if i in nondiff_argnums else next(it_d))
    return out


class _CustomBase:
    def __init__(self, fun, nondiff_argnums=()):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.nondiff_argnums = tuple(nondiff_argnums)
        self._dual = Transformed(self._call_symbolic, name=getattr(fun, "__name__", "f"),
                                 static_argnums=self.nondiff_argnums, wrapped=fun)

    def __call__(self, *args):
        return self._dual(*args)

    @property
    def name(self):  # shown by the text IR for the node attribute holding this object
        return self.__name__

    def __get__(self, obj, objtype=None):
        return self if obj is None else functools.partial(self, obj)

    def _leaves(self, args):
        nondiff, diff = _split_nondiff(args, self.nondiff_argnums)
        leaves, td = tensor_leaves(diff, f"{self.__name__}: arguments")
        return nondiff, leaves, td

    def _node(self, op, nondiff, leaves, td, out, extra=(), **attrs):
        o_leaves, o_td = tensor_leaves(out, f"{self.__name__}: outputs")
        node = apply_node(op, list(leaves) + o_leaves + list(extra),
                          dict(fn=self, n_args=len(leaves), n_outs=len(o_leaves), in_tree=td,
                               out_tree=o_td, nondiff=nondiff, name=self.__name__, **attrs),
                          name=self.__name__)
        return tree.unflatten(o_td, list(node.outputs))


class custom_jvp(_CustomBase):
    """A function with a user JVP rule: `@f.defjvp def rule(primals, tangents): -> (out, t_out)`.

    Reverse mode is derived from the rule by transposing its (linear) tangent map, so the rule
    must be linear in the tangents. `nondiff_argnums` args are passed first to the rule.
    """

    def __init__(self, fun, nondiff_argnums=()):
        super().__init__(fun, nondiff_argnums)
        self.jvp_rule = None

    def defjvp(self, rule):
        self.jvp_rule = rule
        return rule

    def defjvps(self, *tangent_fns):
        """One `fn(tangent, primal_out, *primals) -> contribution` per argument (None: zero)."""

        def rule(primals, tangents):
            out = self.fun(*primals)
            t_out = None
            for fn, t in zip(tangent_fns, tangents):
                if fn is not None:
                    term = fn(t, out, *primals)
                    t_out = term if t_out is None else t_out + term
            return out, tree.tree_map(lambda o: zeros(o, o.dtype), out) if t_out is None else t_out

        self.jvp_rule = rule
        return rule

    def _call_symbolic(self, *args):
        nondiff, leaves, td = self._leaves(args)
        out = self.fun(*_merge(nondiff, tree.unflatten(td, leaves), self.nondiff_argnums))
        if self.jvp_rule is None:
            return out
        return self._node(CUSTOM_JVP_CALL, nondiff, leaves, td, out)


class custom_vjp(_CustomBase):
    """A function with a user VJP: `f.defvjp(fwd, bwd)`; `fwd(*args) -> (out, residuals)`,
    `bwd(residuals, cotangent) -> tuple` (one entry per argument, None = zero).

    Forward mode (jvp, jacfwd) differentiates `fwd`'s own computation of the output.
    """

    def __init__(self, fun, nondiff_argnums=()):
        super().__init__(fun, nondiff_argnums)
        self.fwd = self.bwd = None

    def defvjp(self, fwd, bwd):
        self.fwd, self.bwd = fwd, bwd
        return self

    def _call_symbolic(self, *args):
        nondiff, leaves, td = self._leaves(args)
        call_args = _merge(nondiff, tree.unflatten(td, leaves), self.nondiff_argnums)
        if self.fwd is None:
            return self.fun(*call_args)
        res = self.fwd(*call_args)
        if not (isinstance(res, (tuple, list)) and len(res) == 2):
            raise TypeError(f"the fwd rule of {self.__name__} must return (out, residuals)")
        out, residuals = res
        r_leaves, r_td = tree.flatten(residuals)
        extra = [r for r in r_leaves if _is_tensor(r)]
        static = tuple(_TENSOR if _is_tensor(r) else r for r in r_leaves)
        return self._node(CUSTOM_VJP_CALL, nondiff, leaves, td, out, extra=extra,
                          res_tree=r_td, res_static=static)


def _is_tensor(x):
    from .graph import Tensor  # noqa: PLC0415

    return isinstance(x, Tensor)


def checkpoint(f, policy=None, static_argnums=()):
    """`f` with the same values whose reverse pass recomputes f's intermediates from its inputs.

    The recomputed nodes carry `tags["recompute"] = True` and read their inputs through
    `remat_barrier` nodes, so neither a CSE pass nor onnxruntime merges them back into the
    stored forward nodes. `policy(node) -> True` saves that node's value instead (see
    `checkpoint_policies`). Cost: f's nodes run twice; only f's outputs stay alive between the
    forward and the backward pass.
    """
    if isinstance(static_argnums, int):
        static_argnums = (static_argnums,)
    static_argnums = tuple(static_argnums)

    def call(*args):
        nondiff, diff = _split_nondiff(args, static_argnums)
        leaves, td = tensor_leaves(diff, f"checkpoint({getattr(f, '__name__', 'f')})")
        out = f(*_merge(nondiff, tree.unflatten(td, leaves), static_argnums))
        o_leaves, o_td = tensor_leaves(out, "checkpoint: outputs")
        node = apply_node(CHECKPOINT_CALL, list(leaves) + o_leaves,
                          dict(n_args=len(leaves), n_outs=len(o_leaves), policy=policy,
                               name=getattr(f, "__name__", "f")),
                          name="checkpoint")
        return tree.unflatten(o_td, list(node.outputs))

    return Transformed(call, name=f"checkpoint({getattr(f, '__name__', 'f')})",
                       static_argnums=static_argnums, wrapped=f)


remat = checkpoint
