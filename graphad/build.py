"""The build API: placeholders, constants, Variables, assignments, groups, and value conversion."""

import numbers

import numpy as np

from .errors import DTypeError, GraphError, ShapeError, user_location
from .graph import Operation, Tensor, get_default_graph
from .registry import NOT_DIFFERENTIABLE, apply, defop, graph_of
from .types import (
    TensorType,
    as_dtype,
    as_shape,
    canonicalize,
    default_float,
    default_int,
    dims_compatible,
    format_shape,
    result_type,
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


def constant(value, dtype=None, name=None, shape=None):
    """A constant tensor. Without x64, Python floats and float64 arrays become float32."""
    if isinstance(value, Tensor):
        raise GraphError(f"ga.constant() got a Tensor {value.name!r}; constants hold data")
    if dtype is not None:
        dtype = as_dtype(dtype)
        arr = np.asarray(value)
        if arr.dtype.kind == "f" and dtype.kind in "ib" and not np.all(np.isfinite(arr)):
            raise DTypeError(f"constant {name or ''}: non-finite values cannot become {dtype.name}")
        arr = arr.astype(dtype.np)
    else:
        arr = _default_array(value)
    if shape is not None:
        arr = np.broadcast_to(arr, as_shape(shape))
    return apply(CONSTANT, (), {"value": _freeze(arr)}, name=name, location=user_location())


def _default_array(value):
    """numpy array with graphad's default dtypes (JAX-like, x64-aware)."""
    if isinstance(value, (bool, np.bool_)):
        return np.asarray(value, dtype=np.bool_)
    if isinstance(value, np.generic):
        return np.asarray(value).astype(canonicalize(value.dtype).np)
    if isinstance(value, numbers.Integral):
        return np.asarray(value, dtype=default_int().np)
    if isinstance(value, numbers.Real):
        return np.asarray(value, dtype=default_float().np)
    if isinstance(value, (list, tuple)):
        arr = np.asarray(value)
        if arr.dtype.kind == "i":
            return arr.astype(default_int().np)
        if arr.dtype.kind == "f":
            return arr.astype(default_float().np)
        if arr.dtype.kind == "b":
            return arr
        raise DTypeError(f"cannot make a tensor of {type(value).__name__} with dtype {arr.dtype}")
    arr = np.asarray(value)
    if arr.dtype.kind not in "fib":
        raise DTypeError(f"cannot make a tensor from {type(value).__name__} of dtype {arr.dtype}")
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


def promote(*args):
    """Convert args to Tensors of one common dtype (JAX-like promotion, weak Python scalars)."""
    strong, weak_kinds = [], set()
    for a in args:
        if isinstance(a, Tensor):
            strong.append(a.dtype)
        elif is_weak(a):
            weak_kinds.add("b" if isinstance(a, bool) else "i" if isinstance(a, int) else "f")
        else:
            strong.append(canonicalize(_default_array(a).dtype))
    dt = result_type(strong, weak_kinds)
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
        value = _initial_array(value, dtype)
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


def _initial_array(value, dtype):
    if dtype is not None:
        return np.array(value, dtype=as_dtype(dtype).np)
    return np.array(_default_array(value))


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
