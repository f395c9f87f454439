"""Shared machinery of the elementwise families: dtype rules, the unary/binary op factories, the
derivative-row adapter, float16-aware ONNX lowering helpers, and the `cast` and `stop_gradient`
ops the derivative rules use."""

import numpy as np

from ..build import as_tensor, promote
from ..errors import DTypeError
from ..registry import NOT_DIFFERENTIABLE, apply, defop
from ..types import TensorType, as_dtype, broadcast_shapes, default_float, float16, float32

__all__ = ["cast", "stop_gradient"]

_KIND_NAMES = {"f": "floating", "i": "integer", "b": "bool"}


# ---------------------------------------------------------------------------------------------
# Type inference


def check_kinds(dtype, kinds, opname):
    if dtype.kind not in kinds:
        allowed = " or ".join(_KIND_NAMES[k] for k in kinds)
        raise DTypeError(f"{opname} does not accept dtype {dtype.name} (it takes {allowed} "
                         "tensors)")


def same_dtype(types, opname):
    """The one dtype shared by all input types (builders promote; a graph built by hand may not)."""
    dts = tuple(dict.fromkeys(t.dtype for t in types))
    if len(dts) != 1:
        raise DTypeError(f"{opname}: inputs have different dtypes {', '.join(d.name for d in dts)}")
    return dts[0]


def elementwise_infer(kinds, opname, out_dtype=None):
    """infer rule: inputs of one dtype among `kinds`, numpy-broadcast shape; `out_dtype` or same."""

    def infer(types, attrs):
        dt = same_dtype(types, opname)
        check_kinds(dt, kinds, opname)
        shape = broadcast_shapes(*(t.shape for t in types))
        return (TensorType(shape, out_dtype or dt),)

    return infer


def result(node, value, index=0):
    """A reference result converted to the node's inferred output dtype."""
    return np.asarray(value).astype(node.outputs[index].dtype.np, copy=False)


def _reference(np_fn):
    """reference rule from a numpy function; float16 inputs compute in float32 and round once,
    as the lowering does (numpy's float16 loops would round each step of a composite formula)."""

    def reference(node, *arrays):
        if any(a.dtype == np.float16 for a in arrays):
            arrays = [a.astype(np.float32) if a.dtype == np.float16 else a for a in arrays]
        return (result(node, np_fn(*arrays)),)

    return reference


# ---------------------------------------------------------------------------------------------
# Derivative rows


def derivative_rules(partials):
    """VJP and JVP from one row of local partials (one entry per input).

    An entry is None (the input has no derivative) or `p(node) -> Tensor | 1 | -1 | None`; a
    partial returning None means zero for this node (e.g. d/dexponent of a constant exponent).
    Both modes read the same row, so they cannot drift apart.
    """

    def vjp(node, g):
        if g is None:
            return (None,) * len(node.inputs)
        return tuple(scale(g, p(node)) if p is not None and wanted(node, i) else None
                     for i, p in enumerate(partials))

    def jvp(node, *tangents):
        out = None
        for p, t in zip(partials, tangents):
            if p is None or t is None:
                continue
            term = scale(t, p(node))
            if term is not None:
                out = term if out is None else out + term
        return (out,)

    return vjp, jvp


def wanted(node, i):
    """Whether the reverse engine uses input i's cotangent (skips dead nodes for constants)."""
    try:
        from ..passes.autodiff import needs_gradient  # optional engine hook; lazy: no cycle
    except ImportError:
        return True
    return needs_gradient(node, i)


def scale(g, d):
    """g * d, where d may be None (zero: gives None) or the Python constant 1 or -1."""
    if d is None:
        return None
    if isinstance(d, (int, float)):
        if d == 1:
            return g
        if d == -1:
            return -g
    return g * d


def like(value, t):
    """A constant `value` with tensor `t`'s dtype, in `t`'s graph (for derivative rules)."""
    return as_tensor(value, t.dtype, graph=t.graph)


def is_constant(t):
    return t.node.op == "constant"


# ---------------------------------------------------------------------------------------------
# Lowering helpers. onnxruntime's CPU provider has float16 kernels only for the ops below (and
# Sign, whose float16 kernel maps nan to 0); for the others we compute in float32 and cast back
# (what onnxruntime would insert itself, but explicit so the exported model means the same
# everywhere).

F16_NATIVE = frozenset({"Round", "Max", "Min", "Where", "Identity", "Cast", "IsNaN", "IsInf"})


def const(ctx, value, dtype):
    return ctx.const(np.asarray(value, dtype=as_dtype(dtype).np))


def simple(op_type, **attrs):
    """A kernel emitting one ONNX node: `kernel(ctx, dtype, *names) -> name`."""

    def kernel(ctx, dt, *names):
        return ctx.emit(op_type, list(names), **attrs)

    kernel.native_f16 = op_type in F16_NATIVE
    kernel.op_type = op_type
    return kernel


def emit_float(ctx, op_type, names, dt):
    """One ONNX node over operands of float dtype `dt` (float16 computes in float32)."""
    if dt is not float16 or op_type in F16_NATIVE:
        return ctx.emit(op_type, list(names))
    out = ctx.emit(op_type, [ctx.cast(n, float32) for n in names])
    return ctx.cast(out, float16)


def by_dtype(default, **special):
    """A kernel choosing an implementation by dtype name (e.g. float64=... where onnxruntime has
    no double kernel)."""

    def kernel(ctx, dt, *names):
        return special.get(dt.name, default)(ctx, dt, *names)

    kernel.native_f16 = getattr(special.get("float16", default), "native_f16", False)
    return kernel


def lowering(kernel):
    """`lower` rule from a kernel over the inputs' dtype; float16 computes in float32 unless the
    kernel is native in float16."""

    def lower(ctx, node, *names):
        dt = node.inputs[-1].dtype
        if dt is float16 and not getattr(kernel, "native_f16", False):
            names = [ctx.cast(n, float32) if t.dtype is float16 else n
                     for n, t in zip(names, node.inputs)]
            out = kernel(ctx, float32, *names)
            if node.outputs[0].dtype is float16:
                out = ctx.cast(out, float16)
            return (out,)
        return (kernel(ctx, dt, *names),)

    return lower


# ---------------------------------------------------------------------------------------------
# Factories


def _rules(partials):
    if partials is NOT_DIFFERENTIABLE:
        return NOT_DIFFERENTIABLE, NOT_DIFFERENTIABLE
    return derivative_rules(partials)


def float_input(x):
    """Float-only ops promote integer/bool inputs to the default float (as jnp does)."""
    x = as_tensor(x)
    if not x.dtype.is_floating:
        x = cast(x, default_float())
    return x


def unary(name, np_fn, kernel, dydx, kinds="f", doc=""):
    """Register a unary elementwise op and return its builder.

    `kernel`: an ONNX op type or a kernel (see `simple`). `dydx(x, y)`: local derivative from
    input and output Tensors, or NOT_DIFFERENTIABLE. With kinds "f", integer and bool inputs are
    promoted to the default float.
    """
    kernel = simple(kernel) if isinstance(kernel, str) else kernel
    partials = dydx if dydx is NOT_DIFFERENTIABLE else [lambda n: dydx(n.inputs[0], n.outputs[0])]
    vjp, jvp = _rules(partials)
    opdef = defop(
        name,
        infer=elementwise_infer(kinds, name),
        reference=_reference(np_fn),
        lower=lowering(kernel),
        vjp=vjp,
        jvp=jvp,
        doc=doc,
    )

    def fn(x, name=None):
        x = float_input(x) if kinds == "f" else as_tensor(x)
        return apply(opdef, (x,), name=name)

    return _finish(fn, name, opdef, doc or f"Elementwise {name}.")


def binary(name, np_fn, kernel, partials, kinds="fi", out_dtype=None, doc=""):
    """Register a binary broadcasting op and return its builder (operands promoted JAX-style).

    `partials`: (d/dx(x, y, out), d/dy(x, y, out)) Tensors (or 1/-1/None), or NOT_DIFFERENTIABLE.
    """
    kernel = simple(kernel) if isinstance(kernel, str) else kernel
    if partials is not NOT_DIFFERENTIABLE:
        partials = [
            None if p is None else (lambda n, p=p: p(n.inputs[0], n.inputs[1], n.outputs[0]))
            for p in partials
        ]
    vjp, jvp = _rules(partials)
    opdef = defop(
        name,
        infer=elementwise_infer(kinds, name, out_dtype),
        reference=_reference(np_fn),
        lower=lowering(kernel),
        vjp=vjp,
        jvp=jvp,
        doc=doc,
    )

    def fn(x, y, name=None):
        x, y = promote(x, y)
        return apply(opdef, (x, y), name=name)

    return _finish(fn, name, opdef, doc or f"Elementwise {name} with numpy broadcasting.")


def _finish(fn, name, opdef, doc):
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    fn.opdef = opdef
    return fn


# ---------------------------------------------------------------------------------------------
# cast


def _cast_infer(types, attrs):
    return (TensorType(types[0].shape, attrs["dtype"]),)


def _cast_vjp(node, g):
    # The cotangent goes back in the input's dtype; integer/bool inputs get no gradient.
    x = node.inputs[0]
    if g is None or not x.dtype.is_floating:
        return (None,)
    return (cast(g, x.dtype),)


def _cast_jvp(node, t):
    if t is None or not node.outputs[0].dtype.is_floating:
        return (None,)
    return (cast(t, node.outputs[0].dtype),)


CAST = defop(
    "cast",
    infer=_cast_infer,
    reference=lambda node, x: (x.astype(node.attrs["dtype"].np),),
    lower=lambda ctx, node, x: (ctx.emit("Cast", [x], to=node.attrs["dtype"].onnx),),
    vjp=_cast_vjp,
    jvp=_cast_jvp,
    doc="Convert to another dtype. Float -> int truncates toward zero, like numpy.",
)


def cast(x, dtype, name=None):
    """x converted to `dtype` (a no-op when it already has it)."""
    x = as_tensor(x)
    dtype = as_dtype(dtype)
    if x.dtype is dtype:
        return x
    return apply(CAST, (x,), {"dtype": dtype}, name=name)


# ---------------------------------------------------------------------------------------------
# stop_gradient


STOP_GRADIENT = defop(
    "stop_gradient",
    infer=lambda types, attrs: (types[0],),
    reference=lambda node, x: (x,),
    lower=lambda ctx, node, x: (ctx.emit("Identity", [x]),),
    vjp=lambda node, g: (None,),  # zero, not NOT_DIFFERENTIABLE: asking for it is no error
    jvp=lambda node, t: (None,),
    doc="Identity whose derivative is zero.",
)


def stop_gradient(x, name=None):
    """x, treated as a constant by differentiation (its derivative is zero)."""
    return apply(STOP_GRADIENT, (as_tensor(x),), name=name)


def mask(cond, like_t):
    """A 0/1 tensor of `like_t`'s dtype from bool `cond`, with derivative zero (not 'not
    differentiable'): derivative rules of kinked ops use it, so that gradients of gradients
    through relu/abs/maximum/clip are zeros, as in JAX."""
    return stop_gradient(cast(cond, like_t.dtype))
