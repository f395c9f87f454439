"""Session: compiles fetch/feed signatures to onnxruntime, checks feeds, keeps variables resident.

Variables live in the runtime as OrtValues. A step that writes a variable writes a spare buffer
(ping-pong: onnxruntime has no alias analysis, so input and output must differ) and the buffers
swap only after the run succeeds, so a failed run leaves every variable as it was.

Per-call fast path: a `_Plan` remembers, per (fetch objects, feed keys) signature, the
executable, where each feed goes and which feed shapes already passed the full validator; a call
whose feeds are arrays of exactly the placeholders' dtypes and of an already-validated shape
skips straight to binding them. Anything else goes through `validate_feeds` as before.
"""

import numpy as np
import onnxruntime as ort

from . import tree
from .build import Variable
from .devices import make_inference_session, resolve_device
from .errors import GraphError, RunError
from .export.lowering import describe_ort_failure
from .export.onnx import lower
from .feeds import validate_feeds
from .graph import Operation, Tensor, ancestors, get_default_graph

_NDARRAY = np.ndarray
_FETCH_TYPES = frozenset((Tensor, Operation, Variable))
_PLAN_LIMIT = 256  # plans kept per session (each is small; this bounds odd call patterns)
# An op doing at least this much work (elements x inner dim) is worth onnxruntime's thread pool;
# below it one intra-op thread is never slower, and much faster for loops and on a busy machine
# (W3's loop: 20 ms with 1 thread, 70 ms with the pool; see benchmarks/PROFILE.md).
_PARALLEL_WORK = 1 << 21
_UNKNOWN_DIM = 256  # size assumed for an unknown or named dim when estimating work
# A feed of a static shape up to this size gets its own OrtValue, bound once and refilled by a
# copy each call (~0.4 µs), cheaper than binding the caller's array anew (~1 µs); larger feeds
# are bound without a copy.
_PREBOUND_BYTES = 16384


class _Executable:
    __slots__ = ("session", "binding", "feed_names", "feeds", "outputs", "output_names",
                 "variable_inputs", "assignments", "model", "c_session", "c_binding",
                 "device", "dynamic_outputs", "feed_slots", "graphs")


class _Plan:
    """A resolved run signature: executable, feed order, validated shapes, result layout."""

    __slots__ = ("exe", "order", "dtypes", "shapes", "layout", "treedef")

    def feeds_ready(self, values):
        """`values` (feed values in feed_dict order) in executable order when they need no
        conversion and their shapes were validated before; else None (use the validator)."""
        for v, dt in zip(values, self.dtypes):
            if type(v) is not _NDARRAY:
                return None
            vd = v.dtype
            if vd is not dt and vd != dt:
                return None
        if tuple([v.shape for v in values]) not in self.shapes:
            return None
        return [values[i] for i in self.order]

    def result(self, values):
        layout = self.layout
        if layout is None:  # a single Tensor
            return values[0]
        if layout is False:  # a single Operation
            return None
        out = [None if i is None else values[i] for i in layout]
        return tuple(out) if self.treedef is tuple else out


def _fast_fetch_key(fetches):
    """A hashable key made of the fetch objects themselves (so they stay alive while cached),
    for a single Tensor/Operation or a flat list/tuple of them; None for anything else."""
    t = type(fetches)
    if t in _FETCH_TYPES:
        return fetches
    if t is list or t is tuple:
        for f in fetches:
            if type(f) not in _FETCH_TYPES:
                return None
        return (t, *fetches)
    return None


# Exported graphs at least this large are re-ordered before onnxruntime sees them (see
# schedule_early). Smaller ones keep their order: creating their session is fast anyway, and
# depth order can run slower (W5's 1,300-node Hessian: ~10% per call, breadth-first order).
_SCHEDULE_NODES = 2000


def _names_used(graph):
    """Names a (sub)graph reads from its enclosing scopes: inputs of its nodes, including those
    of nested subgraphs, that it does not define itself."""
    defined = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    used = []
    for node in graph.node:
        used.extend(node.input)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                used.extend(_names_used(sub))
        defined.update(node.output)
    return [n for n in dict.fromkeys(used) if n and n not in defined]


def schedule_early(model):
    """Re-order the top-level nodes of `model` by depth (each node right after its inputs),
    in place. onnxruntime's session creation is quadratic when a value's consumers are far
    apart in node order, as in gradient graphs where the backward pass reads forward values:
    W4 at 2,000 layers took 31 s to create its session as exported and 7 s re-ordered."""
    nodes = list(model.graph.node)
    producer = {}
    depth = []
    for i, node in enumerate(nodes):
        names = list(node.input)
        if any(a.HasField("g") or len(a.graphs) for a in node.attribute):
            names.extend(_names_used_by_node(node))
        depth.append(1 + max((depth[producer[n]] for n in names if n in producer), default=0))
        for o in node.output:
            producer[o] = i
    order = sorted(range(len(nodes)), key=lambda i: (depth[i], i))
    if order != list(range(len(nodes))):
        del model.graph.node[:]
        model.graph.node.extend(nodes[i] for i in order)


def _names_used_by_node(node):
    out = []
    for attr in node.attribute:
        for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            out.extend(_names_used(sub))
    return out


def _work(node):
    """Rough work of a node: largest tensor it touches (x the inner dim for matmul-like ops)."""
    def size(t):
        n = 1
        for d in t.shape:
            n *= d if isinstance(d, int) else _UNKNOWN_DIM
        return n

    tensors = list(node.inputs) + list(node.outputs)
    biggest = max((size(t) for t in tensors), default=0)
    if node.op in ("matmul", "dot") and node.inputs and node.inputs[0].shape:
        d = node.inputs[0].shape[-1]
        biggest = max((size(t) for t in node.outputs), default=1) * (
            d if isinstance(d, int) else _UNKNOWN_DIM)
    return biggest


def auto_threads(roots):
    """1 (no thread pool) when no node of the graph is big enough to gain from parallel
    kernels, else None (onnxruntime's default: one thread per core)."""
    for node in ancestors(roots):
        if _work(node) >= _PARALLEL_WORK:
            return None
    return 1


class Session:
    """Runs graphs on onnxruntime (`device` "cpu", "cuda" or "auto")."""

    def __init__(self, graph=None, device="cpu", optimize=True, threads=None):
        self.graph = graph or get_default_graph()
        self.device = resolve_device(device)
        self.optimize = bool(optimize)
        self.threads = threads
        self._state = {}  # variable name -> OrtValue holding its current value
        self._spare = {}  # variable name -> OrtValue to write the next value into
        self._cache = {}
        self._plans = {}  # fast-path signature -> _Plan (see the module docstring)
        self._closed = False

    # -- context manager -----------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        self._cache.clear()
        self._plans.clear()
        self._closed = True

    # -- public --------------------------------------------------------------------------------
    def run(self, fetches, feed_dict=None):
        """Evaluate a pytree of Tensors/Operations; returns the same structure of numpy arrays."""
        fkey = _fast_fetch_key(fetches)
        if fkey is not None:
            key = (fkey, tuple(feed_dict) if feed_dict else ())
            plan = self._plans.get(key)
            if plan is not None:
                values = plan.feeds_ready(list(feed_dict.values()) if feed_dict else [])
                if values is not None:
                    return plan.result(self._execute(plan.exe, values))
        else:
            key = None
        return self._run_validated(fetches, feed_dict, key)

    def _run_validated(self, fetches, feed_dict, key):
        """The full path: resolve fetches, validate every feed, compile if needed, run; then
        remember a plan for `key` (when given) so the next call of this shape is fast."""
        if self._closed:
            raise GraphError("this Session is closed")
        leaves, treedef = tree.flatten(fetches)
        leaves = [self._resolve_fetch(f) for f in leaves]
        feeds = validate_feeds(self.graph, feed_dict)
        if not leaves:
            return tree.unflatten(treedef, [])
        exe = self._executable(leaves, feeds)
        values = self._execute(exe, [feeds[t] for t in exe.feeds])
        if key is not None:
            self._remember(key, exe, leaves, feed_dict, feeds)
        by_tensor = dict(zip(exe.outputs, values))
        out = [by_tensor[f] if isinstance(f, Tensor) else None for f in leaves]
        return tree.unflatten(treedef, out)

    def _executable(self, leaves, feeds):
        # Operations by their node: an Operation wrapper may be a temporary whose id is reused
        key = (tuple(id(f.node) if isinstance(f, Operation) else id(f) for f in leaves),
               tuple(map(id, feeds)))
        exe = self._cache.get(key)
        if exe is None:
            exe = self._compile(leaves, list(feeds))
            self._cache[key] = exe
        return exe

    def _remember(self, key, exe, leaves, feed_dict, feeds):
        """Record (or extend) the fast-path plan of `key` after a validated run."""
        plan = self._plans.get(key)
        items = list(feed_dict.items()) if feed_dict else []
        tensors = list(feeds)  # validate_feeds keeps feed_dict order
        if plan is None:
            if len(self._plans) >= _PLAN_LIMIT:
                self._plans.clear()
            plan = _Plan()
            plan.exe = exe
            pos = {t: i for i, t in enumerate(tensors)}
            plan.order = [pos[t] for t in exe.feeds]
            plan.dtypes = [t.dtype.np for t in tensors]
            plan.shapes = set()
            fk = key[0]
            index = {t: i for i, t in enumerate(exe.outputs)}
            if type(fk) is tuple and fk and fk[0] in (list, tuple):
                plan.treedef = fk[0]
                plan.layout = [index.get(f) if isinstance(f, Tensor) else None for f in leaves]
            else:
                plan.treedef = None
                plan.layout = None if isinstance(leaves[0], Tensor) else False
            self._plans[key] = plan
        # only feeds that were already exact arrays are fast next time (others need converting)
        if all(type(v) is _NDARRAY and v.dtype == dt for (_, v), dt in zip(items, plan.dtypes)):
            plan.shapes.add(tuple(v.shape for _, v in items))

    def assign(self, var, value):
        """Set a variable's value in this session (validated against its shape and dtype)."""
        var = self._resolve_variable(var)
        arr = validate_feeds(self.graph, {var: value}, allow_variables=True)[var]
        self._state[var.name] = self._to_ortvalue(arr)
        spare = self._spare.get(var.name)
        if spare is not None and tuple(spare.shape()) != arr.shape:
            del self._spare[var.name]

    def value(self, var):
        """Current value of a variable (a copy)."""
        var = self._resolve_variable(var)
        ov = self._state.get(var.name)
        return np.array(var.initial_value if ov is None else ov.numpy(), copy=True)

    def variable_values(self, variables=None):
        vs = self.graph.variables.values() if variables is None else variables
        return {v.name: self.value(v) for v in vs}

    def save(self, path):
        from .checkpoint_io import save_variables  # noqa: PLC0415

        save_variables(self, path)

    def restore(self, path):
        from .checkpoint_io import restore_variables  # noqa: PLC0415

        restore_variables(self, path)

    # -- internals -----------------------------------------------------------------------------
    def _resolve_fetch(self, f):
        if isinstance(f, str):
            node = self.graph.by_name(f)
            return node.outputs[0] if node.outputs else Operation(node)
        if isinstance(f, (Tensor, Operation)):
            if f.graph is not self.graph:
                raise GraphError(
                    f"fetch {f.name!r} belongs to graph {f.graph.name!r}, but this session runs "
                    f"graph {self.graph.name!r}"
                )
            return f
        raise GraphError(f"cannot fetch {f!r}: fetches are Tensors, Operations or Variables")

    def _resolve_variable(self, var):
        if isinstance(var, str):
            if var not in self.graph.variables:
                raise GraphError(f"graph {self.graph.name!r} has no variable {var!r}")
            return self.graph.variables[var]
        if getattr(var, "node", None) is None or var.node.op != "variable":
            raise GraphError(f"{var!r} is not a Variable")
        if var.graph is not self.graph:
            raise GraphError(f"variable {var.name!r} belongs to another graph")
        return var

    def _compile(self, leaves, feeds):
        outputs = list(dict.fromkeys(f for f in leaves if isinstance(f, Tensor)))
        operations = [f for f in leaves if isinstance(f, Operation)]
        feeds = sorted(feeds, key=lambda t: (t.node.id, t.index))
        to_lower, ops_to_lower, feeds_to_lower = outputs, operations, feeds
        if self.optimize:
            from .passes.manager import optimize_for_session  # noqa: PLC0415

            to_lower, ops_to_lower, feeds_to_lower = optimize_for_session(outputs, operations,
                                                                          feeds)
        low = lower(to_lower, inputs=feeds_to_lower, operations=ops_to_lower,
                    name=self.graph.name)
        threads = self.threads or auto_threads(outputs + operations)
        if len(low.model.graph.node) >= _SCHEDULE_NODES:
            schedule_early(low.model)
        exe = _Executable()
        exe.model = low.model
        exe.graphs = tuple(dict.fromkeys([t.graph for t in to_lower + ops_to_lower]
                                         + [self.graph]))  # to name a failing node
        exe.session = make_inference_session(low.model, self.device, threads)
        exe.binding = exe.session.io_binding()
        exe.c_session = exe.session._sess  # the pybind objects: no Python wrapper per call
        exe.c_binding = exe.binding._iobinding
        exe.device = ort.OrtDevice.make(self.device, 0)._get_c_device()
        exe.feeds = feeds
        exe.feed_names = low.input_names
        exe.feed_slots = [(name, self._prebound(exe, t, name))
                          for t, name in zip(feeds, low.input_names)]
        exe.outputs = outputs
        exe.output_names = low.output_names
        exe.variable_inputs = low.variable_inputs
        exe.assignments = low.assignments
        # outputs of a static shape are bound once (onnxruntime reuses the buffer, results are
        # copied out); others are rebound every call so onnxruntime allocates the right shape
        exe.dynamic_outputs = []
        for t, oname in zip(outputs, low.output_names):
            exe.c_binding.bind_output(oname, exe.device)
            if not all(isinstance(d, int) for d in t.shape):
                exe.dynamic_outputs.append(oname)
        return exe

    def _prebound(self, exe, t, name):
        """The OrtValue bound once for feed `t` (small static shape, CPU), else None."""
        shape = t.shape
        if self.device != "cpu" or not all(isinstance(d, int) for d in shape):
            return None
        n = t.dtype.np.itemsize
        for d in shape:
            n *= d
        if n > _PREBOUND_BYTES:
            return None
        ov = ort.OrtValue.ortvalue_from_shape_and_type(shape, t.dtype.np, "cpu", 0)._ortvalue
        exe.c_binding.bind_ortvalue_input(name, ov)
        return ov

    def _to_ortvalue(self, arr):
        arr = np.array(arr, order="C", copy=True)
        ov = ort.OrtValue.ortvalue_from_shape_and_type(arr.shape, arr.dtype, self.device, 0)
        ov.update_inplace(arr)
        return ov

    def _current(self, vname):
        ov = self._state.get(vname)
        if ov is None:
            ov = self._to_ortvalue(self.graph.variables[vname].initial_value)
            self._state[vname] = ov
        return ov

    def _spare_for(self, vname):
        sp = self._spare.get(vname)
        if sp is None:
            cur = self._current(vname)
            sp = ort.OrtValue.ortvalue_from_shape_and_type(
                cur.shape(), self.graph.variables[vname].dtype.np, self.device, 0
            )
            self._spare[vname] = sp
        return sp

    def _execute(self, exe, feed_values):
        io = exe.c_binding
        for (name, slot), arr in zip(exe.feed_slots, feed_values):
            if slot is None:
                io.bind_input(name, arr)
            elif arr.flags.c_contiguous:
                slot.update_inplace(arr)
            else:  # update_inplace copies raw memory: it needs a C-contiguous array
                slot.update_inplace(np.ascontiguousarray(arr))
        for oname in exe.dynamic_outputs:
            io.bind_output(oname, exe.device)
        spares = self._bind_variables(exe) if exe.variable_inputs or exe.assignments else ()
        try:
            exe.c_session.run_with_iobinding(io, None)
        except Exception as e:  # onnxruntime raises its own exception types
            what = describe_ort_failure(exe.graphs, e)
            raise RunError(f"running graph {self.graph.name!r}: {what}\n  (onnxruntime: {e})"
                           ) from None
        n = len(exe.output_names)
        if not spares:
            values = io.copy_outputs_to_cpu() if n else []
        else:
            outs = io.get_outputs()
            values = [outs[i].numpy().copy() for i in range(n)]
            state, spare = self._state, self._spare
            for vname, sp in spares:
                spare[vname] = state[vname]
                state[vname] = sp
        return values

    def _bind_variables(self, exe):
        """Bind each read variable's current buffer and each written one's spare buffer."""
        io = exe.c_binding
        state = self._state
        for vname, oname in exe.variable_inputs:
            ov = state.get(vname)
            if ov is None:
                ov = self._current(vname)
            io.bind_ortvalue_input(oname, ov._ortvalue)
        spares = []
        for vname, oname in exe.assignments:
            sp = self._spare_for(vname)
            spares.append((vname, sp))
            io.bind_ortvalue_output(oname, sp._ortvalue)
        return spares
