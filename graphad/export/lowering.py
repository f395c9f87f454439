"""The lowering context: the one checked way op rules emit ONNX nodes, constants and state."""

import re

import numpy as np
import onnx
import onnx.defs
from onnx import helper, numpy_helper

from ..errors import ExportError, FeedError, GraphadError
from ..graph import Graph, ancestors
from ..types import as_dtype

# Contrib ops of onnxruntime's standard (inference) build that graphad may emit.
MS_DOMAIN = "com.microsoft"
MS_OPS = frozenset({"FusedMatMul", "Inverse", "GatedAdd", "FusedGemm", "QuickGelu"})

_SCHEMA_CACHE = {}


def check_op(op_type, domain, opset):
    key = (op_type, domain, opset)
    ok = _SCHEMA_CACHE.get(key)
    if ok is None:
        if domain == MS_DOMAIN:
            ok = op_type in MS_OPS
        else:
            try:
                onnx.defs.get_schema(op_type, opset, domain)
                ok = True
            except onnx.defs.SchemaError:
                ok = False
        _SCHEMA_CACHE[key] = ok
    if not ok:
        raise ExportError(f"ONNX op {domain or 'ai.onnx'}::{op_type} does not exist at opset {opset}")


def value_info(name, type_):
    dims = [d if isinstance(d, (int, str)) else None for d in type_.shape]
    return helper.make_tensor_value_info(name, type_.dtype.onnx, dims)


class LowerCtx:
    """Collects ONNX nodes/initializers while op rules lower a graphad graph.

    Rules call `emit` (validated op type), `const` (deduplicated initializers), and, for state,
    `variable` / `assign`, whose meaning the exporter decides (graph inputs or frozen values).
    """

    def __init__(self, opset=21, variable_mode="input", variable_values=None, parent=None):
        self.opset = opset
        self.nodes = []
        self.initializers = []
        self.value_infos = []
        self.domains = {""}
        self.variable_mode = variable_mode  # "input" or "freeze"
        self.variable_values = variable_values or {}
        self.variables_read = {}  # var name -> (onnx name, node)
        self.assignments = {}  # var name -> (value onnx name, assign node)
        self.parent = parent
        self._const_cache = {} if parent is None else parent._const_cache
        self._names = set() if parent is None else parent._names
        self._prefix = "n"
        self._counter = 0

    # -- names ---------------------------------------------------------------------------------
    def fresh(self, hint=None):
        base = hint or self._prefix
        name = base
        while name in self._names:
            self._counter += 1
            name = f"{base}_{self._counter}"
        self._names.add(name)
        return name

    def reserve(self, name):
        if name in self._names:
            raise ExportError(f"ONNX name {name!r} is used twice")
        self._names.add(name)
        return name

    def set_prefix(self, prefix):
        self._prefix = prefix

    # -- emission ------------------------------------------------------------------------------
    def emit(self, op_type, inputs, *, outputs=1, domain="", **attrs):
        """Append one ONNX node; returns its output name (or a tuple when outputs != 1)."""
        check_op(op_type, domain, self.opset)
        if domain:
            self.domains.add(domain)
        if isinstance(outputs, int):
            out_names = [self.fresh(f"{self._prefix}/{op_type}") for _ in range(outputs)]
            single = outputs == 1
        else:
            out_names = list(outputs)
            single = len(out_names) == 1
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(
            helper.make_node(op_type, list(inputs), out_names,
                             name=self.fresh(f"{self._prefix}:{op_type}"), domain=domain, **attrs)
        )
        return out_names[0] if single else tuple(out_names)

    def const(self, value, dtype=None):
        """Name of an initializer holding `value` (deduplicated by dtype, shape and bytes)."""
        arr = np.asarray(value)
        if dtype is not None:
            arr = arr.astype(as_dtype(dtype).np)
        key = (arr.dtype.str, arr.shape, arr.tobytes()) if arr.size <= 4096 else None
        root = self
        while root.parent is not None:
            root = root.parent
        if key is not None and key in root._const_cache:
            return root._const_cache[key]
        name = self.fresh("const")
        root.initializers.append(numpy_helper.from_array(np.array(arr, order="C", copy=True), name))
        if key is not None:
            root._const_cache[key] = name
        return name

    def i64(self, values):
        return self.const(np.asarray(values, dtype=np.int64))

    def cast(self, name, dtype):
        return self.emit("Cast", [name], to=as_dtype(dtype).onnx)

    # -- state ---------------------------------------------------------------------------------
    def variable(self, node):
        vname = node.attrs["name"]
        root = self
        while root.parent is not None:
            root = root.parent
        if vname in root.variables_read:
            return root.variables_read[vname][0]
        if root.variable_mode == "input":
            name = root.reserve(vname)
        else:
            value = root.variable_values.get(vname)
            if value is None:
                value = node.outputs[0].initial_value
            name = root.reserve(vname)
            root.initializers.append(numpy_helper.from_array(np.array(value, order="C", copy=True), name))
        root.variables_read[vname] = (name, node)
        return name

    def assign(self, node, value_name):
        vname = node.attrs["var"]
        if self.parent is not None:
            raise ExportError(f"assignment {node.name!r} inside a control-flow body at {node.location}")
        if vname in self.assignments:
            other = self.assignments[vname][1]
            raise ExportError(
                f"variable {vname!r} is assigned twice in one run: by {other.name!r} "
                f"({other.location}) and by {node.name!r} ({node.location})"
            )
        self.assignments[vname] = (value_name, node)
        return ()


def lower_nodes(ctx, roots, env, value_infos, skip=frozenset()):
    """Lower every node `roots` need (stopping at tensors already in `env`) into `ctx`.

    Adds each output's ONNX name to `env` and its type to `value_infos` (unless in `skip`).
    """
    for node in ancestors(roots, stop=lambda t: t in env):
        if node.outputs and all(o in env for o in node.outputs):
            continue
        if node.op == "placeholder":
            t = node.outputs[0]
            raise FeedError(
                f"placeholder {t.name!r} {t.type!r} (created at {node.location}) is needed "
                "but was not fed"
            )
        ctx.set_prefix(_safe(node.name))
        try:
            names = node.opdef.lower(ctx, node, *(env[i] for i in node.inputs))
        except GraphadError:
            raise
        except Exception as e:  # a lowering bug: name the op and its user line
            raise ExportError(
                f"lowering op {node.op!r} ({node.name}, created at {node.location}) failed: "
                f"{type(e).__name__}: {e}"
            ) from e
        if len(names) != len(node.outputs):
            raise ExportError(f"lowering of {node.op!r} returned {len(names)} names for "
                              f"{len(node.outputs)} outputs")
        for t, n in zip(node.outputs, names):
            env[t] = n
            if n not in skip:
                value_infos.append(value_info(n, t.type))


def _safe(name):
    return "".join(c if c.isalnum() or c in "_.-/" else "_" for c in name)


def lower_body(ctx, body, formals, bound, outputs, name="body", output_types=None):
    """An ONNX subgraph (GraphProto) for body graph `body`.

    `formals`: [(tensor of body or None, TensorType)] -> subgraph inputs, in order (None: an input
    the body does not use, e.g. Loop's iteration number). `bound`: {tensor of body: ONNX name in
    an enclosing scope} (captures read the outer value directly, as ONNX allows).
    `outputs`: tensors of `body` (or names already in scope) -> subgraph outputs, in order.
    """
    child = LowerCtx(opset=ctx.opset, parent=ctx)
    env = dict(bound)
    inputs = []
    for t, ty in formals:
        n = child.fresh(f"{name}/in")
        if t is not None:
            env[t] = n
        inputs.append(value_info(n, ty))
    value_infos = []
    roots = [o for o in outputs if not isinstance(o, str)]
    lower_nodes(child, roots, env, value_infos)
    outs = []
    for i, o in enumerate(outputs):
        src = o if isinstance(o, str) else env[o]
        n = child.emit("Identity", [src], outputs=[child.fresh(f"{name}/out")])
        ty = output_types[i] if output_types is not None else o.type
        outs.append(value_info(n, ty))
    ctx.domains |= child.domains
    return helper.make_graph(child.nodes, child.fresh(name), inputs, outs, value_info=value_infos)


# ---------------------------------------------------------------------------------------------
# From an onnxruntime failure back to the graphad node that emitted the failing ONNX node

_ORT_NODE = re.compile(r"Name:'(.*?)'(?= Status Message|$)", re.S)
_ORT_STATUS = re.compile(r"Status Message:\s*(.*)", re.S)


def _find_emitter(graphs, prefix):
    """The node (in `graphs` or their bodies) whose lowering named its ONNX nodes `prefix`."""
    stack, seen = list(graphs), set()
    while stack:
        g = stack.pop()
        if id(g) in seen:
            continue
        seen.add(id(g))
        for n in g.nodes:
            if _safe(n.name) == prefix:
                return n
            stack.extend(v for v in n.attrs.values() if isinstance(v, Graph))
    return None


def describe_ort_failure(graphs, error):
    """A readable account of onnxruntime's `error` text: the failing graphad op, its name and
    the user's line that created it (guards name their ONNX nodes by their message)."""
    text = str(error)
    m = _ORT_NODE.search(text)
    status = _ORT_STATUS.search(text)
    reason = status.group(1).strip() if status else text
    if m is None:
        return reason
    prefix = m.group(1).rsplit(":", 1)[0]
    node = _find_emitter(graphs, prefix)
    if node is None:  # a guard: its ONNX node is named by its message, which has the line
        return prefix if " at " in prefix else reason
    return f"op {node.op!r} (node {node.name!r}, created at {node.location}) failed: {reason}"
