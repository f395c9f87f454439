"""Elementwise ops: one table row per op with its numpy reference, ONNX lowering and partials."""

import numpy as np

from ..build import as_tensor, promote
from ..errors import DTypeError
from ..registry import NOT_DIFFERENTIABLE, apply, defop, elementwise_rules
from ..types import TensorType, as_dtype, broadcast_shapes, default_float

__all__ = ["add", "multiply", "exp", "sin", "cos", "cast"]


def _float_input(x, opname):
    """Float-only ops promote integer/bool inputs to the default float (as jnp does)."""
    x = as_tensor(x)
    if not x.dtype.is_floating:
        x = cast(x, default_float())
    return x


def _same_dtype_infer(kinds, opname):
    def infer(types, attrs):
        dts = {t.dtype for t in types}
        if len(dts) != 1:
            raise DTypeError(f"{opname}: inputs have different dtypes {sorted(d.name for d in dts)}")
        (dt,) = dts
        if dt.kind not in kinds:
            raise DTypeError(f"{opname}: dtype {dt.name} is not supported")
        return (TensorType(broadcast_shapes(*(t.shape for t in types)), dt),)

    return infer


def _result(node, value):
    return (np.asarray(value).astype(node.outputs[0].dtype.np, copy=False),)


def unary(name, np_fn, onnx_op, dydx, kinds="f", doc=""):
    """Register a unary elementwise op; `dydx(x, y)` is its local derivative (None: none)."""
    vjp, jvp = (
        elementwise_rules([lambda n: dydx(n.inputs[0], n.outputs[0])])
        if dydx is not None
        else (NOT_DIFFERENTIABLE, NOT_DIFFERENTIABLE)
    )
    opdef = defop(
        name,
        infer=_same_dtype_infer(kinds, name),
        reference=lambda node, x: _result(node, np_fn(x)),
        lower=lambda ctx, node, x: (ctx.emit(onnx_op, [x]),),
        vjp=vjp,
        jvp=jvp,
        doc=doc,
    )

    def fn(x, name=None):
        x = _float_input(x, opdef.name) if kinds == "f" else as_tensor(x)
        return apply(opdef, (x,), name=name)

    fn.__name__ = name
    fn.__doc__ = doc or f"Elementwise {name}."
    fn.opdef = opdef
    return fn


def binary(name, np_fn, onnx_op, partials, kinds="fi", doc=""):
    """Register a binary broadcasting op; `partials` = (d/dx(x, y, out), d/dy(x, y, out))."""
    if partials is None:
        vjp = jvp = NOT_DIFFERENTIABLE
    else:
        vjp, jvp = elementwise_rules(
            [
                None if p is None else (lambda n, p=p: p(n.inputs[0], n.inputs[1], n.outputs[0]))
                for p in partials
            ]
        )
    opdef = defop(
        name,
        infer=_same_dtype_infer(kinds, name),
        reference=lambda node, x, y: _result(node, np_fn(x, y)),
        lower=lambda ctx, node, x, y: (ctx.emit(onnx_op, [x, y]),),
        vjp=vjp,
        jvp=jvp,
        doc=doc,
    )

    def fn(x, y, name=None):
        x, y = promote(x, y)
        return apply(opdef, (x, y), name=name)

    fn.__name__ = name
    fn.__doc__ = doc or f"Elementwise {name} with numpy broadcasting."
    fn.opdef = opdef
    return fn


add = binary("add", np.add, "Add", (lambda x, y, o: 1.0, lambda x, y, o: 1.0))
multiply = binary("multiply", np.multiply, "Mul", (lambda x, y, o: y, lambda x, y, o: x))
exp = unary("exp", np.exp, "Exp", lambda x, y: y)
sin = unary("sin", np.sin, "Sin", lambda x, y: cos(x))
cos = unary("cos", np.cos, "Cos", lambda x, y: -sin(x))



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
