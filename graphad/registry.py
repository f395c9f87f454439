"""The OpDef contract: one object per op holding all its rules, and the registry of them.

Rule signatures (every rule receives the node, so attrs and input/output types are at hand):

    infer(in_types: tuple[TensorType], attrs: dict) -> tuple[TensorType, ...]
        No numpy; raise ShapeError / DTypeError with a plain message (the graph adds the op
        name, the inputs and the user's file:line).
    reference(node, *arrays: np.ndarray) -> tuple[np.ndarray, ...]
        numpy ground truth for tests and constant folding; results have the inferred dtypes.
    lower(ctx, node, *names: str) -> tuple[str, ...]
        emits ONNX only through `ctx.emit(...)` (validated against onnx.defs).
    vjp(node, *cotangents: Tensor | None) -> tuple[Tensor | None, ...]   (one per input)
        built with graphad ops; None means zero; entries may stay broadcast-shaped (the engine
        reduces them to the input's shape).
    jvp(node, *tangents: Tensor | None) -> tuple[Tensor | None, ...]     (one per output)

`vjp`/`jvp` may be NOT_DIFFERENTIABLE (an op with no derivative: comparisons, argmax, ...);
None means "not written yet" and fails the registry-completeness test.
For elementwise ops use `elementwise_rules(partials)`; for linear ops `linear_jvp`.
"""

from .errors import GraphadError
from .graph import get_default_graph


class _NotDifferentiable:
    def __repr__(self):
        return "NOT_DIFFERENTIABLE"


NOT_DIFFERENTIABLE = _NotDifferentiable()

_REGISTRY = {}


class OpDef:
    """All the rules of one op. See the module docstring for the rule signatures."""

    __slots__ = ("name", "infer", "reference", "lower", "vjp", "jvp", "pure", "doc", "extra")

    def __init__(self, name, *, infer, reference, lower, vjp=None, jvp=None, pure=True, doc="",
                 **extra):
        self.name = name
        self.infer, self.reference, self.lower = infer, reference, lower
        self.vjp, self.jvp = vjp, jvp
        self.pure = pure
        self.doc = doc
        self.extra = extra  # op-specific data (e.g. elementwise partials, sparsity rule)

    @property
    def differentiable(self):
        return self.vjp is not NOT_DIFFERENTIABLE

    def __repr__(self):
        return f"<OpDef {self.name}>"


def shape_only_inputs(node):
    """Indices of `node`'s inputs whose values it never reads (only their run-time shapes): no
    derivative flows through them, not even a zero one (OpDef extra `shape_only`)."""
    spec = node.opdef.extra.get("shape_only", ())
    return range(1, len(node.inputs)) if spec == "rest" else spec


def register(opdef):
    if opdef.name in _REGISTRY:
        raise GraphadError(f"op {opdef.name!r} registered twice")
    _REGISTRY[opdef.name] = opdef
    return opdef


def defop(name, **rules):
    """Create and register an OpDef."""
    return register(OpDef(name, **rules))


def lookup(name):
    try:
        return _REGISTRY[name]
    except KeyError:
        raise GraphadError(f"unknown op {name!r}") from None


def all_ops():
    return dict(_REGISTRY)


def graph_of(inputs):
    """The graph new nodes over `inputs` go to.

    While a control-flow body is being traced (it is the default graph), nodes over tensors of
    the body or of its enclosing graphs go to the body (outer tensors become captures).
    Otherwise: the graph of the first Tensor, else the default graph.
    """
    default = get_default_graph()
    graphs = [t.node.graph for t in inputs if getattr(t, "node", None) is not None
              and hasattr(t.node, "graph")]
    if not graphs:
        return default
    if default.parent is not None and all(default.encloses(g) for g in graphs):
        return default
    return graphs[0]


def apply(opdef, inputs, attrs=None, name=None, **kw):
    """Add a node for `opdef` over Tensor `inputs`; return its outputs (one Tensor or a tuple)."""
    node = graph_of(inputs).add_node(opdef, inputs, attrs, name=name, **kw)
    outs = node.outputs
    return outs[0] if len(outs) == 1 else outs


def apply_node(opdef, inputs, attrs=None, name=None, **kw):
    return graph_of(inputs).add_node(opdef, inputs, attrs, name=name, **kw)


# ---------------------------------------------------------------------------------------------
# Rule builders shared by op families


def elementwise_rules(partials):
    """VJP and JVP from local partial derivatives (autograd's one-row-per-op table).

    `partials[i](node) -> Tensor` is d out / d input_i (broadcast-shaped), or None if that input
    is not differentiable (e.g. an integer exponent). Both modes use the same row, so they
    cannot drift apart.
    """

    def vjp(node, g):
        if g is None:
            return (None,) * len(node.inputs)
        return tuple(None if p is None else _scale(g, p(node)) for p in partials)

    def jvp(node, *tangents):
        out = None
        for p, t in zip(partials, tangents):
            if p is None or t is None:
                continue
            term = _scale(t, p(node))
            out = term if out is None else out + term
        return (out,)

    return vjp, jvp


def _scale(g, d):
    """g * d, skipping the multiply when a partial is the Python constant 1 or -1."""
    if isinstance(d, (int, float)):
        if d == 1:
            return g
        if d == -1:
            return -g
    return g * d


def linear_jvp(node, *tangents):
    """JVP of an op linear in its first input: the same op applied to the tangent."""
    if tangents[0] is None:
        return (None,) * len(node.outputs)
    outs = apply_node(node.opdef, (tangents[0],) + node.inputs[1:], node.attrs).outputs
    return outs
