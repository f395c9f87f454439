"""Comparisons, logical ops and `where`. Comparisons and logical ops return bool and are not
differentiable; `where` is differentiable with respect to its two branches (not the condition)."""

import numpy as np

from ..build import as_tensor, promote
from ..errors import DTypeError
from ..registry import NOT_DIFFERENTIABLE, apply, defop, graph_of
from ..types import TensorType, bool_, broadcast_shapes, int32
from .elementwise_core import binary, like, lowering, result, same_dtype, unary, wanted

__all__ = [
    "where", "equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
    "logical_and", "logical_or", "logical_not",
]  # fmt: skip


def _compare_kernel(op_type):
    """onnxruntime has no bool kernels for the order comparisons: compare bools as int32."""

    def kernel(ctx, dt, x, y):
        if dt.is_bool and op_type != "Equal":
            x, y = ctx.cast(x, int32), ctx.cast(y, int32)
        return ctx.emit(op_type, [x, y])

    return kernel


def _not_equal_kernel(ctx, dt, x, y):
    return ctx.emit("Not", [_compare_kernel("Equal")(ctx, dt, x, y)])


def _comparison(name, np_fn, kernel, doc):
    return binary(name, np_fn, kernel, NOT_DIFFERENTIABLE, kinds="fib", out_dtype=bool_,
                  doc=doc + " Returns bool; not differentiable.")


equal = _comparison("equal", np.equal, _compare_kernel("Equal"), "x == y elementwise.")
not_equal = _comparison("not_equal", np.not_equal, _not_equal_kernel, "x != y elementwise.")
less = _comparison("less", np.less, _compare_kernel("Less"), "x < y elementwise.")
less_equal = _comparison("less_equal", np.less_equal, _compare_kernel("LessOrEqual"),
                         "x <= y elementwise.")
greater = _comparison("greater", np.greater, _compare_kernel("Greater"), "x > y elementwise.")
greater_equal = _comparison("greater_equal", np.greater_equal,
                            _compare_kernel("GreaterOrEqual"), "x >= y elementwise.")


# ---------------------------------------------------------------------------------------------
# Logical ops: non-bool operands mean `!= 0` (as numpy / jnp).


def _as_bool(x, graph=None):
    x = as_tensor(x, graph=graph)
    return x if x.dtype.is_bool else not_equal(x, like(0, x))


_logical_and = binary("logical_and", np.logical_and, "And", NOT_DIFFERENTIABLE, kinds="b")
_logical_or = binary("logical_or", np.logical_or, "Or", NOT_DIFFERENTIABLE, kinds="b")
_logical_not = unary("logical_not", np.logical_not, "Not", NOT_DIFFERENTIABLE, kinds="b")


def logical_and(x, y, name=None):
    """x and y elementwise (bool; non-bool operands are compared with 0)."""
    g = graph_of((x, y))
    return _logical_and(_as_bool(x, g), _as_bool(y, g), name=name)


def logical_or(x, y, name=None):
    """x or y elementwise (bool; non-bool operands are compared with 0)."""
    g = graph_of((x, y))
    return _logical_or(_as_bool(x, g), _as_bool(y, g), name=name)


def logical_not(x, name=None):
    """not x elementwise (bool; a non-bool operand is compared with 0)."""
    return _logical_not(_as_bool(x), name=name)


for _fn, _impl in ((logical_and, _logical_and), (logical_or, _logical_or),
                   (logical_not, _logical_not)):
    _fn.opdef = _impl.opdef


# ---------------------------------------------------------------------------------------------
# where


def _where_infer(types, attrs):
    if not types[0].dtype.is_bool:
        raise DTypeError(f"where: the condition has dtype {types[0].dtype.name}, not bool")
    same_dtype(types[1:], "where")
    shape = broadcast_shapes(*(t.shape for t in types))
    return (TensorType(shape, types[1].dtype),)


def _where_kernel(ctx, dt, c, x, y):
    if dt.is_bool:  # onnxruntime has no bool Where
        return ctx.emit("Or", [ctx.emit("And", [c, x]),
                               ctx.emit("And", [ctx.emit("Not", [c]), y])])
    return ctx.emit("Where", [c, x, y])


_where_kernel.native_f16 = True


def _where_vjp(node, g):
    if g is None:
        return (None, None, None)
    c = node.inputs[0]
    zero = like(0, g)
    return (None, where(c, g, zero) if wanted(node, 1) else None,
            where(c, zero, g) if wanted(node, 2) else None)


def _where_jvp(node, tc, tx, ty):
    if tx is None and ty is None:
        return (None,)
    c = node.inputs[0]
    tx = like(0, ty) if tx is None else tx
    ty = like(0, tx) if ty is None else ty
    return (where(c, tx, ty),)


WHERE = defop(
    "where",
    infer=_where_infer,
    reference=lambda node, c, x, y: (result(node, np.where(c, x, y)),),
    lower=lowering(_where_kernel),
    vjp=_where_vjp,
    jvp=_where_jvp,
    doc="x where cond else y (numpy broadcasting of all three). Differentiable in x and y.",
)


def where(cond, x, y, name=None):
    """x where `cond` is true, else y; `cond` that is not bool means `cond != 0`."""
    cond = _as_bool(cond, graph_of((cond, x, y)))
    x, y = promote(x, y)
    return apply(WHERE, (cond, x, y), name=name)
