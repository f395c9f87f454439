"""Tracing and jit: the machinery that lets every functional transform run in both modes.

Called with Tensors a transformed function adds nodes to their graph; called with concrete values
it traces into a fresh Graph (placeholders for array leaves), compiles once per input signature
and runs on onnxruntime through a Session.
"""

import collections
import functools
import inspect
import itertools

import numpy as np

from . import tree
from .build import as_tensor, constant, placeholder
from .errors import GraphError
from .graph import Graph, Operation, Tensor
from .types import (
    TensorType,
    as_dtype,
    bool_,
    canonicalize,
    default_float,
    default_int,
    is_static,
    x64_enabled,
)

__all__ = ["jit", "Traced"]

_TRACE_IDS = itertools.count()


# ---------------------------------------------------------------------------------------------
# Small helpers shared by the transform modules


def autodiff_engine():
    from .passes import autodiff  # noqa: PLC0415  (engines import the op catalogue)

    return autodiff


def forward_engine():
    from .passes import forward  # noqa: PLC0415

    return forward


def ops():
    from . import ops as _ops  # noqa: PLC0415

    return _ops


def contains_tensor(x):
    return any(isinstance(leaf, (Tensor, Operation)) for leaf in tree.leaves(x))


def graph_of_tree(x):
    for leaf in tree.leaves(x):
        if isinstance(leaf, (Tensor, Operation)):
            return leaf.graph
    return None


def zeros(shape_like, dtype):
    """Zeros of `shape_like`'s shape (a Tensor or any object with .shape and .graph) in `dtype`:
    a scalar constant broadcast to the shape (no large initializer)."""
    dtype = as_dtype(dtype)
    with shape_like.graph.as_default():
        scalar = constant(np.zeros((), dtype.np), dtype=dtype)
        if shape_like.shape == ():
            return scalar
        if is_static(shape_like.shape):
            return ops().broadcast_to(scalar, shape_like.shape)
        return autodiff_engine().zeros_like(shape_like, dtype)


def float_dtype_for(t):
    """The dtype a derivative with respect to `t` has: its own if floating, else the default."""
    return t.dtype if t.dtype.is_floating else default_float()


def to_float(t):
    """Integer/bool tensors as the default float: their derivatives are floating (API.md)."""
    return t if t.dtype.is_floating else ops().cast(t, default_float())


def tensor_leaves(x, what, graph=None):
    """Flatten pytree `x` to Tensors (data leaves become constants); returns (leaves, treedef)."""
    leaves, td = tree.flatten(x)
    out = []
    for i, leaf in enumerate(leaves):
        if isinstance(leaf, Tensor):
            out.append(leaf)
        elif _is_data(leaf):
            out.append(as_tensor(leaf, graph=graph))
        else:
            raise TypeError(f"{what}: leaf {i} is {leaf!r} ({type(leaf).__name__}), not an array")
    return out, td


def _is_data(x):
    return isinstance(x, (bool, int, float, np.ndarray, np.generic)) or (
        hasattr(x, "__array__") and not isinstance(x, type)
    )


def normalize_argnums(argnums, nargs, who):
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)
    if not nums:
        raise ValueError(f"{who}: argnums must name at least one argument")
    out = []
    for a in nums:
        if not isinstance(a, int):
            raise TypeError(f"{who}: argnums entries must be ints, got {a!r}")
        if not -nargs <= a < nargs:
            raise ValueError(f"{who}: argnums {a} is out of range for {nargs} positional arguments")
        out.append(a % nargs)
    return single, tuple(out)


# ---------------------------------------------------------------------------------------------
# Input signatures


def _leaf_spec(leaf, allow_specs):
    """("dyn", TensorType) for array-like leaves, ("static", value) for everything else."""
    if isinstance(leaf, bool):
        return "dyn", TensorType((), bool_)
    if isinstance(leaf, int):
        return "dyn", TensorType((), default_int())
    if isinstance(leaf, float):
        return "dyn", TensorType((), default_float())
    if isinstance(leaf, (np.ndarray, np.generic)):
        return "dyn", TensorType(leaf.shape, canonicalize(leaf.dtype))
    if isinstance(leaf, TensorType):
        if not allow_specs:
            raise TypeError("a TensorType argument can only be given to .trace(), not called")
        return "dyn", leaf
    if allow_specs and hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
        return "dyn", TensorType(tuple(leaf.shape), canonicalize(leaf.dtype))
    if hasattr(leaf, "__array__") and not isinstance(leaf, type):
        arr = np.asarray(leaf)
        return "dyn", TensorType(arr.shape, canonicalize(arr.dtype))
    try:
        hash(leaf)
    except TypeError:
        raise TypeError(
            f"argument leaf {leaf!r} ({type(leaf).__name__}) is neither an array nor hashable; "
            "non-array arguments are static and must be hashable"
        ) from None
    return "static", leaf


_NDARRAY = np.ndarray
_SCALARS = (bool, int, float)


def _argument_overflow(fn, args, error):
    """The DTypeOverflowError for a Python number argument that does not fit its traced dtype
    (int32 without x64), as JAX raises OverflowError for it."""
    from .errors import DTypeOverflowError, user_location  # noqa: PLC0415

    big = [repr(a) for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
    return DTypeOverflowError(
        f"{getattr(fn, '__name__', 'jit')}: an argument does not fit the dtype it is traced with "
        f"({error}; Python numbers given: {', '.join(big) or 'none'}) at {user_location()}; "
        "pass a numpy array of a wider dtype or enable x64 (ga.config.enable_x64())")


def _fast_key(args):
    """A cheap cache key for calls whose arguments are all plain ndarrays, numpy scalars or Python
    scalars (dtype + shape per array, the type per Python scalar, and the x64 flag); else None. It
    determines `_signature`'s key for such calls, and which arguments need converting."""
    key = [x64_enabled()]
    for a in args:
        t = type(a)
        if t is _NDARRAY:
            key.append(a.dtype)
            key.append(a.shape)
        elif t in _SCALARS:
            key.append(t)
        elif isinstance(a, np.generic):  # numpy scalars (converted to 0-d arrays on each call)
            key.append(a.dtype)
            key.append(None)
        else:
            return None
    return tuple(key)


def _signature(args, kwargs, static_argnums, allow_specs=False):
    """(key, dyn_args, treedef, specs): the cache key of a call and its dynamic leaves."""
    static = tuple((i, args[i]) for i in static_argnums if i < len(args))
    dyn_args = tuple(None if i in static_argnums else a for i, a in enumerate(args))
    leaves, td = tree.flatten((dyn_args, kwargs))
    specs = [_leaf_spec(leaf, allow_specs) for leaf in leaves]
    for i, v in static:
        try:
            hash(v)
        except TypeError:
            raise TypeError(f"static argument {i} ({type(v).__name__}) is not hashable") from None
    key = (td, tuple(specs), static, x64_enabled())
    return key, leaves, td, specs, static


# ---------------------------------------------------------------------------------------------
# Traced: one trace of a function


class Traced:
    """One trace of a function: its graph, placeholders (`inputs`) and pytree of `outputs`."""

    def __init__(self, graph, inputs, outputs, name="f"):
        self.graph = graph
        self.inputs = list(inputs)
        self.outputs = outputs
        self.name = name

    @property
    def output_leaves(self):
        return tree.leaves(self.outputs)

    def text(self):
        """The graph as text IR, ending with the returned tensors."""
        try:
            text = self.graph.text()
        except ImportError:  # viz not available: a minimal fallback
            text = _fallback_text(self.graph)
        outs = [t.name if isinstance(t, Tensor) else repr(t) for t in self.output_leaves]
        ins = ", ".join(f"{t.name}" for t in self.inputs)
        head = f"# {self.name}({ins})\n"
        return head + text.rstrip().rstrip("}") + f"  return {', '.join(outs)}\n}}"

    def to_onnx(self, path=None):
        from .export import to_onnx  # noqa: PLC0415

        leaves = self.output_leaves
        bad = [x for x in leaves if not isinstance(x, Tensor)]
        if bad:
            raise TypeError(f"to_onnx: output {bad[0]!r} of {self.name} is not a Tensor")
        outputs = {f"output_{i}": t for i, t in enumerate(leaves)}
        return to_onnx(outputs, self.inputs, path=path)

    def _repr_svg_(self):
        from . import viz  # noqa: PLC0415

        return viz.draw(self).svg

    def __str__(self):
        return self.text()

    def __repr__(self):
        ins = ", ".join(f"{t.name}: {t.type!r}" for t in self.inputs)
        return f"<Traced {self.name}({ins}): {len(self.graph.nodes)} nodes>"


def _fallback_text(graph):
    lines = [f"graph {graph.name} {{"]
    for n in graph.nodes:
        outs = ", ".join(f"{o.name}:{o.type!r}" for o in n.outputs) or "_"
        lines.append(f"  {outs} = {n.op} {' '.join(t.name for t in n.inputs)}")
    return "\n".join(lines + ["}"])


# ---------------------------------------------------------------------------------------------
# Compiled entries and the transformed-function wrapper


class _Entry:
    """A trace plus the Session that runs it, and the per-call fast path of that trace."""

    def __init__(self, traced):
        from .session import Session  # noqa: PLC0415

        self.traced = traced
        self.session = Session(graph=traced.graph)
        leaves, self.out_tree = tree.flatten(traced.outputs)
        self.out_leaves = leaves
        inputs = set(traced.inputs)
        self.fetches = list(dict.fromkeys(
            t for t in leaves if isinstance(t, Tensor) and t not in inputs))
        self._plan_key = ((list, *self.fetches), tuple(traced.inputs))
        self._plan = None
        self._layout = self._output_layout()
        src, flat = self._layout
        in_order = src == [("f", i) for i in range(len(self.fetches))]
        self._direct = self.out_tree.kind if flat and in_order and src else None

    def _output_layout(self):
        """Per output leaf: ("f", i) fetched output i, ("i", k) input k, ("c", value) constant;
        and whether the outputs form a flat tuple/list or a single leaf (no unflatten needed)."""
        at = {t: i for i, t in enumerate(self.fetches)}
        pos = {t: k for k, t in enumerate(self.traced.inputs)}
        src = []
        for leaf in self.out_leaves:
            if isinstance(leaf, Tensor):
                src.append(("f", at[leaf]) if leaf in at else ("i", pos[leaf]))
            elif isinstance(leaf, (bool, int, float)):
                src.append(("c", np.asarray(leaf, _leaf_spec(leaf, False)[1].dtype.np)))
            else:
                src.append(("c", leaf))
        td = self.out_tree
        flat = td.kind == "leaf" or (td.kind in ("tuple", "list")
                                     and all(c.kind == "leaf" for c in td.children))
        return src, flat

    def run(self, values):
        """Outputs for `values` (one per traced input, already of the inputs' dtypes)."""
        plan = self._plan
        if plan is not None and not self.session._closed:
            # values match this trace's signature exactly (dtypes and static shapes of its
            # placeholders), so they pass the feed validator: bind them directly
            got = self.session._execute(plan.exe, [values[i] for i in plan.order])
        else:
            got = self._run_full(values)
        direct = self._direct
        if direct is not None:
            return got[0] if direct == "leaf" else (tuple(got) if direct == "tuple" else got)
        return self._assemble(got, values)

    def _run_full(self, values):
        if not self.fetches:
            return []
        feeds = dict(zip(self.traced.inputs, values))
        got = self.session.run(self.fetches, feeds)
        self._plan = self.session._plans.get(self._plan_key)
        return got

    def _assemble(self, got, values):
        src, flat = self._layout
        out = []
        for kind, v in src:
            if kind == "f":
                out.append(got[v])
            elif kind == "i":
                # a returned input comes straight back (lowering cannot fetch a fed placeholder)
                out.append(np.array(values[v], copy=True))
            else:
                out.append(v.copy() if isinstance(v, np.ndarray) else v)
        if flat:
            kind = self.out_tree.kind
            return out[0] if kind == "leaf" else (tuple(out) if kind == "tuple" else out)
        return tree.unflatten(self.out_tree, out)


class _LRU(collections.OrderedDict):
    def __init__(self, size):
        super().__init__()
        self.size = size

    def lookup(self, key, make):
        try:
            value = self[key]
            self.move_to_end(key)
            return value
        except KeyError:
            value = make()
            self[key] = value
            while len(self) > self.size:
                self.popitem(last=False)
            return value


# Transformed functions shared by key, e.g. ("grad", f, argnums, has_aux): `ga.grad(f)(x)` in
# a loop then compiles once, and `ga.jvp(ga.grad(f), ...)` reuses the inner trace cache.
_SHARED = _LRU(512)


def transformed(key, make):
    """The Transformed function for `key`, built by `make()` once (while it stays cached)."""
    try:
        hash(key)
    except TypeError:
        return make()
    return _SHARED.lookup(key, make)


class Transformed:
    """A function usable in both modes (see the module docstring)."""

    def __init__(self, fn, name=None, static_argnums=(), arg_names=None, wrapped=None):
        self._fn = fn
        self._static_argnums = tuple(static_argnums)
        self._cache = {}
        self._fast = {}  # _fast_key(args) -> (entry, ((arg index, dtype) to convert, ...))
        self.trace_count = 0
        self.__name__ = name or getattr(fn, "__name__", "f")
        self.__qualname__ = self.__name__
        self.__doc__ = getattr(wrapped or fn, "__doc__", None)
        self.__wrapped__ = wrapped or fn
        self._arg_names = arg_names

    def __call__(self, *args, **kwargs):
        if not kwargs and not self._static_argnums:
            fkey = _fast_key(args)
            if fkey is not None:
                fast = self._fast.get(fkey)
                if fast is not None:
                    entry, converts = fast
                    if not converts:  # arrays of exactly the traced dtypes: used as they are
                        return entry.run(args)
                    values = list(args)
                    try:
                        for i, dt in converts:
                            values[i] = np.asarray(values[i], dtype=dt)
                    except OverflowError as e:
                        raise _argument_overflow(self, args, e) from None
                    return entry.run(values)
        else:
            fkey = None
        g = graph_of_tree((args, kwargs))
        if g is not None:
            with g.as_default():
                return self._fn(*args, **kwargs)
        key, leaves, _, _, _ = _signature(args, kwargs, self._static_argnums)
        entry = self._cache.get(key)
        if entry is None:
            entry = _Entry(self._trace(args, kwargs, allow_specs=False))
            self._cache[key] = entry
        specs = key[1]
        dtypes = [spec[1].dtype.np for spec in specs if spec[0] == "dyn"]
        if fkey is not None and len(dtypes) == len(args):
            self._fast[fkey] = (entry, tuple(
                (i, dt) for i, (a, dt) in enumerate(zip(args, dtypes))
                if type(a) is not _NDARRAY or a.dtype != dt))
        try:
            values = [np.asarray(leaf, dtype=spec[1].dtype.np)
                      for leaf, spec in zip(leaves, specs) if spec[0] == "dyn"]
        except OverflowError as e:
            raise _argument_overflow(self, args, e) from None
        return entry.run(values)

    def trace(self, *args, **kwargs):
        """Trace in a fresh Graph; args are values, TensorTypes or objects with shape/dtype."""
        return self._trace(args, kwargs, allow_specs=True)

    def cache_size(self):
        return len(self._cache)

    def _trace(self, args, kwargs, allow_specs):
        _, leaves, td, specs, static = _signature(args, kwargs, self._static_argnums,
                                                  allow_specs=allow_specs)
        graph = Graph(f"{self.__name__}_{next(_TRACE_IDS)}")
        names = self._leaf_names(td, len(leaves))
        inputs, new_leaves = [], []
        with graph.as_default():
            for leaf, (kind, spec), nm in zip(leaves, specs, names):
                if kind == "dyn":
                    ph = placeholder(spec.shape, spec.dtype, name=nm)
                    inputs.append(ph)
                    new_leaves.append(ph)
                else:
                    new_leaves.append(leaf)
            dyn_args, kw = tree.unflatten(td, new_leaves)
            call_args = list(dyn_args)
            for i, v in static:
                call_args[i] = v
            self.trace_count += 1
            out = self._fn(*call_args, **kw)
        _check_outputs(out, graph, self.__name__)
        return Traced(graph, inputs, out, name=self.__name__)

    def _leaf_names(self, td, n):
        """Placeholder names from the parameter names, e.g. `x`, `params_0`, `params_1`."""
        names = self._arg_names
        if names is None:
            names = _param_names(self.__wrapped__)
        args_td, kw_td = td.children
        out = []
        for i, sub in enumerate(args_td.children):
            base = names[i] if i < len(names) else f"arg{i}"
            k = sub.num_leaves if sub.kind != "none" else 0
            out.extend([base] if k == 1 else [f"{base}_{j}" for j in range(k)])
        for key, sub in zip(kw_td.meta or (), kw_td.children):
            k = sub.num_leaves if sub.kind != "none" else 0
            out.extend([str(key)] if k == 1 else [f"{key}_{j}" for j in range(k)])
        return out + [f"arg{i}" for i in range(len(out), n)]

    def __repr__(self):
        return f"<transformed function {self.__name__}>"

    def __get__(self, obj, objtype=None):  # usable as a method decorator
        return self if obj is None else functools.partial(self, obj)


def _param_names(fn):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _check_outputs(out, graph, name):
    for leaf in tree.leaves(out):
        if isinstance(leaf, Operation):
            raise TypeError(f"{name} returned an Operation ({leaf.name!r}); return Tensors")
        if isinstance(leaf, Tensor) and leaf.graph is not graph:
            raise GraphError(
                f"{name} returned tensor {leaf.name!r} of graph {leaf.graph.name!r}, not one "
                f"computed from its arguments (graph {graph.name!r}); a traced function must not "
                "close over tensors of another graph"
            )


# ---------------------------------------------------------------------------------------------
# jit


def jit(f=None, *, static_argnums=()):
    """A compiled version of `f`: traced and compiled once per input signature.

    The signature is the pytree structure, the shapes and dtypes of array leaves (Python floats
    are default-float scalars, ints default-int scalars) and the values of static leaves
    (non-array leaves and the arguments in `static_argnums`). Called with Tensors, `f` is
    simply applied (its nodes go into the tensors' graph). `jit(f).trace(*args)` -> `Traced`.
    """
    if f is None:
        return functools.partial(jit, static_argnums=static_argnums)
    if isinstance(static_argnums, int):
        static_argnums = (static_argnums,)
    static_argnums = tuple(static_argnums)
    return transformed(("jit", f, static_argnums),
                       lambda: Transformed(f, static_argnums=static_argnums, wrapped=f))
