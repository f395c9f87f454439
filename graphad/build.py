"""The build API: placeholders, constants, Variables, assignments, groups, and value conversion."""

import numbers
import sys

import numpy as np

from .errors import DTypeError, GraphError, ShapeError, _is_internal, user_location
from .graph import Operation, Tensor, get_default_graph
from .registry import NOT_DIFFERENTIABLE, apply, defop, graph_of
from .types import (
    DTypeOverflowError,
    TensorType,
    array_overflow,
    as_dtype,
    as_shape,
    canonicalize,
    default_float,
    default_int,
    dims_compatible,
    format_shape,
    result_type,
    scalar_overflow,
)

# ---------------------------------------------------------------------------------------------
# Source ops


def _lower_placeholder(ctx, node):
    raise GraphError(f"placeholder {node.name!r} reached lowering without being an input")


PLACEHOLDER = defop(
    "placeholder",
    infer=lambda types, a: (TensorType(a["shape"], a["dtype"]),),
    reference=lambda node: (_ for _ in ()).throw(
        GraphError(f"placeholder {node.name!r} has no value: feed it")
    ),
    lower=_lower_placeholder,
    vjp=NOT_DIFFERENTIABLE,
    jvp=NOT_DIFFERENTIABLE,
    pure=False,
    doc="A symbolic input fed at run time.",
)


def _const_reference(node):
    return (node.attrs["value"],)


def _const_lower(ctx, node):
    return (ctx.const(node.attrs["value"]),)


CONSTANT = defop(
    "constant",
    infer=lambda types, a: (TensorType(a["value"].shape, a["value"].dtype),),
    reference=_const_reference,
    lower=_const_lower,
    vjp=lambda node, g: (),
    jvp=lambda node: (None,),
    doc="A constant array held in the node (frozen numpy array).",
)


def _var_reference(node):
    raise GraphError(f"variable {node.attrs['name']!r} is read through the interpreter's state")


VARIABLE = defop(
    "variable",
    infer=lambda types, a: (TensorType(a["shape"], a["dtype"]),),
    reference=_var_reference,
    lower=lambda ctx, node: (ctx.variable(node),),
    vjp=lambda node, g: (),
    jvp=lambda node: (None,),
    pure=False,
    doc="Reads a variable's current value (the value at the start of the run).",
)


def _assign_infer(types, attrs):
    return ()


ASSIGN = defop(
    "assign",
    infer=_assign_infer,
    reference=lambda node, var, value: (),
    lower=lambda ctx, node, var, value: ctx.assign(node, value),
    vjp=NOT_DIFFERENTIABLE,
    jvp=NOT_DIFFERENTIABLE,
    pure=False,
    doc="Sets a variable to a value at the end of the run (reads in the run see the old value).",
)

GROUP = defop(
    "group",
    infer=lambda types, a: (),
    reference=lambda node: (),
    lower=lambda ctx, node: (),
    vjp=NOT_DIFFERENTIABLE,
    jvp=NOT_DIFFERENTIABLE,
    pure=False,
    doc="Runs its control inputs; has no outputs.",
)


# ---------------------------------------------------------------------------------------------
# Conversion and promotion


def _freeze(arr):
    arr = np.array(arr, copy=True)
    arr.flags.writeable = False
    return arr


def _is_python_data(value):
    """Python scalars and (nested) lists/tuples: converted with NumPy 2's overflow rules."""
    if isinstance(value, np.generic):
        return False
    return isinstance(value, (bool, int, float, list, tuple))


def _overflow_error(what, value, dtype, reason, location, index=None, hint=None,
                    default=False):
    """DTypeOverflowError for Python number `value` (element `index`) that cannot take `dtype`;
    `default`: the dtype is graphad's default (int32/float32 without x64), not the user's."""
    at = f" at index {index}" if index else ""
    if hint is None:
        widest = "int64" if dtype.is_integer else "float64"
        if dtype.bits == 64 or scalar_overflow(value, widest) is not None:
            hint = f"it does not fit {widest} either, the widest graphad dtype of its kind"
        else:
            hint = f"give dtype={_wider(dtype)}" + (" or enable x64 (ga.config.enable_x64())"
                                                    if default else "")
    text = repr(value)
    if len(text) > 40:
        text = f"{text[:12]}...{text[-6:]} ({len(text)} digits)"
    return DTypeOverflowError(f"{what}: Python {type(value).__name__} {text}{at} {reason} "
                              f"(at {location}); {hint}")


def _wider(dtype):
    if dtype.is_integer:
        return "ga.int64"
    return "ga.float32" if dtype.bits == 16 else "ga.float64"


def _np_array(value, what, location):
    """np.asarray(value) with NumPy's ragged/unsupported-data errors turned into graphad's."""
    try:
        return np.asarray(value)
    except ValueError as e:
        if "inhomogeneous" in str(e) or "sequence" in str(e):
            raise ShapeError(f"{what}: nested sequences of different lengths (ragged) cannot be "
                             f"a tensor (at {location}): {e}") from None
        raise DTypeError(f"{what}: cannot convert {type(value).__name__} to an array "
                         f"(at {location}): {e}") from None
    except (TypeError, OverflowError) as e:
        raise DTypeError(f"{what}: cannot convert {type(value).__name__} to an array "
                         f"(at {location}): {e}") from None


def _check_python_data(arr, value, dtype, what, location, default=False):
    """Python data `value` (as array `arr`) taking `dtype`: refuse overflow (NumPy 2 / JAX)."""
    if arr.dtype == object:
        flat = arr.reshape(-1).tolist()
        for k, v in enumerate(flat):
            if isinstance(v, int) and not isinstance(v, bool):
                reason = scalar_overflow(v, dtype)
                if reason is not None:
                    index = tuple(int(i) for i in np.unravel_index(k, arr.shape))
                    raise _overflow_error(what, v, dtype, reason, location, index=index,
                                          default=default)
        return
    hit = array_overflow(arr, dtype)
    if hit is not None:
        index, v, reason = hit
        raise _overflow_error(what, v, dtype, reason, location, index=index if arr.ndim else None,
                              default=default)


def _what(kind, name):
    return f"{kind} {name!r}" if name else kind


def _to_array(value, dtype, what, location):
    """The array a constant/variable of `value` holds (dtype given, or graphad's defaults)."""
    if dtype is None:
        return _default_array(value, what, location)
    dtype = as_dtype(dtype)
    arr = _np_array(value, what, location)
    if arr.dtype.kind not in "biuf" and not (arr.dtype == object and _is_python_data(value)):
        raise DTypeError(f"{what}: cannot make a {dtype.name} tensor from "
                         f"{type(value).__name__} of dtype {arr.dtype} (at {location})")
    if _is_python_data(value):
        _check_python_data(arr, value, dtype, what, location)
        if arr.dtype == object:
            raise DTypeError(f"{what}: cannot make a {dtype.name} tensor from "
                             f"{type(value).__name__} of mixed Python objects (at {location})")
    if arr.dtype.kind == "f" and dtype.kind in "ib" and not np.all(np.isfinite(arr)):
        raise DTypeError(f"{what}: non-finite values cannot become {dtype.name} (at {location})")
    return arr.astype(dtype.np)


def constant(value, dtype=None, name=None, shape=None):
    """A constant tensor. Without x64, Python floats and float64 arrays become float32.

    Python ints outside the dtype's range (int32 without x64) and finite Python numbers that
    would overflow to inf raise `DTypeOverflowError` (a DTypeError and an OverflowError), as in
    NumPy 2 / JAX; numpy arrays given an explicit dtype are cast like `astype`."""
    location = user_location()
    if isinstance(value, Tensor):
        raise GraphError(f"ga.constant() got a Tensor {value.name!r} at {location}; constants "
                         "hold data")
    arr = _to_array(value, dtype, _what("ga.constant()", name), location)
    if shape is not None:
        arr = np.broadcast_to(arr, as_shape(shape))
    return apply(CONSTANT, (), {"value": _freeze(arr)}, name=name, location=location)


def _default_array(value, what="ga.constant()", location=None):
    """numpy array with graphad's default dtypes (JAX-like, x64-aware)."""
    if isinstance(value, (bool, np.bool_)):
        return np.asarray(value, dtype=np.bool_)
    if isinstance(value, np.generic):
        return np.asarray(value).astype(canonicalize(value.dtype).np)
    location = location or user_location()
    if isinstance(value, numbers.Integral):
        value = int(value)
        reason = scalar_overflow(value, default_int())
        if reason is not None:
            raise _overflow_error(what, value, default_int(), reason, location, default=True)
        return np.asarray(value, dtype=default_int().np)
    if isinstance(value, numbers.Real):
        value = float(value)
        reason = scalar_overflow(value, default_float())
        if reason is not None:
            raise _overflow_error(what, value, default_float(), reason, location, default=True)
        return np.asarray(value, dtype=default_float().np)
    if isinstance(value, (list, tuple)):
        arr = _np_array(value, what, location)
        if arr.dtype.kind == "i":
            _check_python_data(arr, value, default_int(), what, location, default=True)
            return arr.astype(default_int().np)
        if arr.dtype.kind == "f":
            _check_python_data(arr, value, default_float(), what, location, default=True)
            return arr.astype(default_float().np)
        if arr.dtype.kind == "b":
            return arr
        if arr.dtype == object:
            _check_python_data(arr, value, default_int(), what, location, default=True)
        raise DTypeError(f"{what}: cannot make a tensor of {type(value).__name__} with dtype "
                         f"{arr.dtype} (at {location})")
    arr = _np_array(value, what, location)
    if arr.dtype.kind not in "fib":
        raise DTypeError(f"{what}: cannot make a tensor from {type(value).__name__} of dtype "
                         f"{arr.dtype} (at {location})")
    return arr.astype(canonicalize(arr.dtype).np, copy=False)


def is_weak(x):
    """Python scalars are weakly typed: they take the dtype of the tensors they meet."""
    return isinstance(x, (bool, int, float)) and not isinstance(x, (np.generic,))


def as_tensor(x, dtype=None, graph=None):
    """A Tensor for x: tensors unchanged (cast if `dtype` differs), data becomes a constant."""
    if isinstance(x, Tensor):
        if dtype is not None and x.dtype is not as_dtype(dtype):
            from .ops import cast  # noqa: PLC0415

            return cast(x, dtype)
        return x
    if isinstance(x, Operation):
        raise GraphError(f"operation {x.name!r} has no value and cannot be used as a tensor")
    g = graph or get_default_graph()
    with g.as_default():
        if dtype is not None:
            return constant(x, dtype=dtype)
        return constant(x)


def _op_of_caller():
    """Name of the op whose builder called `promote` (for error messages): the `opdef` of an
    op-family builder closure (ops/elementwise_core.binary), else the first public function
    name on the stack inside graphad (`where`, `clip`, `concat`, ...)."""
    frame = sys._getframe(2)
    while frame is not None and _is_internal(frame.f_code.co_filename):
        code = frame.f_code
        if code.co_name == "fn":
            opdef = frame.f_locals.get("opdef")
            if getattr(opdef, "name", None):
                return opdef.name
        elif not code.co_name.startswith("_") and code.co_name != "promote":
            return code.co_name
        frame = frame.f_back
    return None


def _check_weak(args, dt, op):
    """Refuse weak Python scalars of `args` that overflow the dtype `dt` they take."""
    for a in args:
        if not is_weak(a) or isinstance(a, bool):
            continue
        reason = scalar_overflow(a, dt)
        if reason is None:
            continue
        widest = "int64" if dt.is_integer else "float64"
        op = op or _op_of_caller()
        other = next((t for t in args if isinstance(t, Tensor)), None)
        with_t = ("" if other is None
                  else f" combined with tensor {other.name!r} ({other.dtype.name})")
        what = f"op {op!r}" if op else "an op"
        if dt.bits == 64 or scalar_overflow(a, widest) is not None:
            hint = f"it does not fit {widest} either, the widest graphad dtype of its kind"
        elif other is not None:
            hint = f"cast the tensor to a wider dtype first (e.g. ga.cast(x, {_wider(dt)}))"
        else:
            hint = f"enable x64 or use a {_wider(dt)} tensor"
        raise _overflow_error(f"{what}{with_t}", a, dt, reason, user_location(), hint=hint)


def promote(*args, op=None):
    """Convert args to Tensors of one common dtype (JAX-like promotion, weak Python scalars).

    A weak Python scalar that does not fit the common dtype (`int32_tensor + 2**40`, a finite
    float that overflows to inf) raises DTypeOverflowError naming `op` (found from the caller
    when not given), the value, the dtype and the user's line."""
    strong, weak_kinds = [], set()
    for a in args:
        if isinstance(a, Tensor):
            strong.append(a.dtype)
        elif is_weak(a):
            weak_kinds.add("b" if isinstance(a, bool) else "i" if isinstance(a, int) else "f")
        else:
            strong.append(canonicalize(_default_array(a).dtype))
    dt = result_type(strong, weak_kinds)
    if weak_kinds - {"b"}:
        _check_weak(args, dt, op)
    g = graph_of(args)
    return [as_tensor(a, dt, graph=g) for a in args]


# ---------------------------------------------------------------------------------------------
# Placeholders, variables, groups


def placeholder(shape, dtype="float32", name=None):
    """Symbolic input; dims are ints, None (unknown) or names shared across placeholders."""
    dtype = as_dtype(dtype)
    shape = as_shape(shape)
    return apply(PLACEHOLDER, (), {"shape": shape, "dtype": dtype}, name=name or "placeholder",
                 location=user_location())


class Variable(Tensor):
    """State that lives in a Session. Reading it in a graph gives its value at the run's start."""

    __slots__ = ("initial_value", "trainable")

    @property
    def name(self):
        return self.node.attrs["name"]

    def __repr__(self):
        return f"<Variable {self.name!r} {self.type!r}>"

    def __new__(cls, initial_value, name=None, trainable=True, dtype=None):
        from .interpret import evaluate  # noqa: PLC0415

        location = user_location()
        if isinstance(initial_value, Tensor):
            (value,) = evaluate([initial_value])
        else:
            value = initial_value
        value = _initial_array(value, dtype, _what("ga.Variable()", name), location)
        g = graph_of([initial_value]) if isinstance(initial_value, Tensor) else get_default_graph()
        vname = g.unique_name(name or "Variable")
        node = g.add_node(
            VARIABLE,
            (),
            {"name": vname, "shape": value.shape, "dtype": as_dtype(value.dtype)},
            name=vname,
            location=location,
            name_reserved=True,
        )
        self = object.__new__(cls)
        Tensor.__init__(self, node, 0, node.outputs[0].type)
        self.initial_value = value
        self.trainable = bool(trainable)
        node.outputs = (self,)
        g.variables[vname] = self
        return self

    def __init__(self, *args, **kwargs):
        pass

    def _assign_value(self, value, location):
        if isinstance(value, Tensor):
            if value.dtype is not self.dtype:
                raise DTypeError(
                    f"assign to variable {self.name!r} ({self.dtype.name}) a value of dtype "
                    f"{value.dtype.name} (tensor {value.name!r}) at {location}; cast it first"
                )
        else:
            value = as_tensor(value, self.dtype, graph=self.graph)
        if len(value.shape) != len(self.shape) or not all(
            dims_compatible(a, b) for a, b in zip(value.shape, self.shape)
        ):
            raise ShapeError(
                f"assign to variable {self.name!r} of shape {format_shape(self.shape)} a value of "
                f"shape {format_shape(value.shape)} at {location}"
            )
        return value

    def assign(self, value, name=None):
        location = user_location()
        value = self._assign_value(value, location)
        node = self.graph.add_node(ASSIGN, (self, value), {"var": self.name},
                                   name=name or f"{self.name}/assign", location=location)
        return Operation(node)

    def assign_add(self, delta, name=None):
        return self.assign(self + delta, name=name or f"{self.name}/assign_add")

    def assign_sub(self, delta, name=None):
        return self.assign(self - delta, name=name or f"{self.name}/assign_sub")

    def read_value(self):
        return self


def _initial_array(value, dtype, what, location):
    return np.array(_to_array(value, dtype, what, location))


def group(*ops, name=None):
    """One Operation that runs all of `ops` (Operations or Tensors)."""
    if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
        ops = tuple(ops[0])
    location = user_location()
    for o in ops:
        if not isinstance(o, (Operation, Tensor)):
            raise GraphError(f"ga.group() at {location}: {o!r} is not an Operation or Tensor")
    g = ops[0].graph if ops else get_default_graph()
    node = g.add_node(GROUP, (), {}, name=name or "group", control_inputs=ops, location=location)
    return Operation(node)


def trainable_variables(graph=None):
    g = graph or get_default_graph()
    return [v for v in g.variables.values() if v.trainable]


def global_variables(graph=None):
    g = graph or get_default_graph()
    return list(g.variables.values())
