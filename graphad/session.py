"""Session: compiles fetch/feed signatures to onnxruntime, validates feeds, keeps variables resident.

Variables live in the runtime as OrtValues. A step that writes a variable writes a spare buffer
(ping-pong: onnxruntime has no alias analysis, so input and output must differ) and the buffers
swap only after the run succeeds, so a failed run leaves every variable as it was.
"""

import numpy as np
import onnxruntime as ort

from . import tree
from .devices import make_inference_session, resolve_device
from .errors import GraphError, RunError
from .export.onnx import lower
from .feeds import validate_feeds
from .graph import Operation, Tensor, get_default_graph


class _Executable:
    __slots__ = ("session", "binding", "feed_names", "feeds", "outputs", "output_names",
                 "variable_inputs", "assignments", "model")


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
        self._closed = False

    # -- context manager -----------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        self._cache.clear()
        self._closed = True

    # -- public --------------------------------------------------------------------------------
    def run(self, fetches, feed_dict=None):
        """Evaluate a pytree of Tensors/Operations; returns the same structure of numpy arrays."""
        if self._closed:
            raise GraphError("this Session is closed")
        leaves, treedef = tree.flatten(fetches)
        leaves = [self._resolve_fetch(f) for f in leaves]
        feeds = validate_feeds(self.graph, feed_dict)
        if not leaves:
            return tree.unflatten(treedef, [])
        key = (tuple(map(id, leaves)), tuple(map(id, feeds)))
        exe = self._cache.get(key)
        if exe is None:
            exe = self._compile(leaves, list(feeds))
            self._cache[key] = exe
        values = self._execute(exe, [feeds[t] for t in exe.feeds])
        by_tensor = dict(zip(exe.outputs, values))
        out = [by_tensor[f] if isinstance(f, Tensor) else None for f in leaves]
        return tree.unflatten(treedef, out)

    def assign(self, var, value):
        """Set a variable's value in this session (validated against its shape and dtype)."""
        var = self._resolve_variable(var)
        arr = validate_feeds(self.graph, {var: value}, allow_variables=True)[var]
        self._state[var.name] = self._to_ortvalue(arr)

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
        exe = _Executable()
        exe.model = low.model
        exe.session = make_inference_session(low.model, self.device, self.threads)
        exe.binding = exe.session.io_binding()
        exe.feeds = feeds
        exe.feed_names = low.input_names
        exe.outputs = outputs
        exe.output_names = low.output_names
        exe.variable_inputs = low.variable_inputs
        exe.assignments = low.assignments
        return exe

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
        cur = self._current(vname)
        sp = self._spare.get(vname)
        if sp is None or sp.shape() != cur.shape():
            sp = ort.OrtValue.ortvalue_from_shape_and_type(
                cur.shape(), self.graph.variables[vname].dtype.np, self.device, 0
            )
            self._spare[vname] = sp
        return sp

    def _execute(self, exe, feed_values):
        io = exe.binding
        for name, arr in zip(exe.feed_names, feed_values):
            io.bind_cpu_input(name, arr)
        for vname, oname in exe.variable_inputs:
            io.bind_ortvalue_input(oname, self._current(vname))
        for oname in exe.output_names:
            io.bind_output(oname, self.device)
        spares = []
        for vname, oname in exe.assignments:
            sp = self._spare_for(vname)
            spares.append((vname, sp))
            io.bind_ortvalue_output(oname, sp)
        try:
            exe.session.run_with_iobinding(io)
        except Exception as e:  # onnxruntime raises its own exception types
            raise RunError(f"onnxruntime failed running graph {self.graph.name!r}: {e}") from None
        outs = io.get_outputs()
        values = [np.array(outs[i].numpy(), copy=True) for i in range(len(exe.output_names))]
        for vname, sp in spares:
            self._spare[vname] = self._state[vname]
            self._state[vname] = sp
        return values
