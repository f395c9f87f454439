"""`ga.import_onnx`: an ONNX model from any producer becomes an ordinary graphad Graph built from
graphad ops (so it can be differentiated, optimised, trained and exported again). Loading and
validation: onnx_import_check.py; the per-op mapping: onnx_import_ops.py."""

import numpy as np
import onnx.defs

from ..build import Variable, constant, placeholder
from ..errors import GraphadError, OnnxImportError
from ..graph import Graph, Tensor, get_default_graph
from ..interpret import evaluate
from ..types import as_dtype, num_elements
from .onnx_import_check import (
    Budget,
    CheckState,
    check_graph,
    check_model,
    input_type,
    load,
    node_label,
    node_order,
    refuse,
    to_array,
)
from .onnx_import_ops import lookup, since_version, unsupported_reason
from .onnx_import_shapes import Sym

__all__ = ["import_onnx", "ImportedModel"]

FOLD_LIMIT = 1 << 20  # constant subgraphs with larger results stay in the graph, unevaluated


class ImportedModel:
    """What `import_onnx` returns: the graph and its ONNX-named inputs, outputs and variables."""

    __slots__ = ("graph", "inputs", "outputs", "variables", "opset", "producer")

    def __init__(self, graph, inputs, outputs, variables, opset, producer):
        self.graph = graph
        self.inputs = inputs  # ONNX input name -> placeholder
        self.outputs = outputs  # ONNX output name -> Tensor
        self.variables = variables  # ONNX initializer name -> Variable (float initializers)
        self.opset = opset
        self.producer = producer

    def __repr__(self):
        return (f"<ImportedModel {self.graph.name!r}: inputs {list(self.inputs)}, outputs "
                f"{list(self.outputs)}, {len(self.variables)} variables, opset {self.opset}>")


def import_onnx(model_or_path, trainable=True):
    """Read an ONNX model (ModelProto, serialized bytes or a file path) into a fresh `ga.Graph`.

    Float initializers become Variables (trainable when `trainable`), other initializers
    constants; graph inputs that are initializers are variables too. Dims: dim_value -> int,
    dim_param -> the same named dim, missing -> None. Raises `ga.OnnxImportError` for files that
    are malformed or hostile, and lists every unsupported op type (with counts) at once.
    Loading runs no code from the file and never unpickles.
    """
    model, base_dir = load(model_or_path)
    opsets = check_model(model)
    state = CheckState(lambda node: unsupported_reason(node, opsets), base_dir)
    check_graph(model.graph, state)
    for vi in model.graph.input:
        input_type(vi, f"graph input {vi.name!r}")
    if state.unsupported:
        listing = ", ".join(f"{op} (x{n})" for op, n in sorted(state.unsupported.items()))
        raise OnnxImportError(f"import_onnx: the model uses ONNX ops that graphad cannot import: "
                              f"{listing}")
    return _Importer(model, opsets[""], state, base_dir, bool(trainable)).run()


# ---------------------------------------------------------------------------------------------
# Values and scopes


class Val:
    """An ONNX value while importing: a graph Tensor, a known constant array (folded), or a
    run-time shape vector of symbolic dims (`Sym`)."""

    __slots__ = ("tensor", "value", "sym")

    def __init__(self, tensor=None, value=None, sym=None):
        self.tensor, self.value, self.sym = tensor, value, sym

    def get(self, importer, what):
        if self.tensor is not None:
            return self.tensor
        if self.value is not None:
            t = constant(self.value, dtype=self.value.dtype)
            if get_default_graph() is importer.graph:
                self.tensor = t  # cache only main-graph constants (not folding/body scratch)
            return t
        raise OnnxImportError(
            f"import_onnx: {what} is the run-time shape {self.sym} of a tensor with unknown dims; "
            "graphad only uses such shapes to reshape (give the model's inputs static dims "
            "or use ga.reshape_like)")


class Scope:
    """Name -> Val for one graph; subgraph scopes fall back to their parent's names."""

    def __init__(self, parent=None):
        self.vals, self.parent = {}, parent

    def lookup(self, name):
        scope = self
        while scope is not None:
            if name in scope.vals:
                return scope.vals[name]
            scope = scope.parent
        raise refuse(f"value {name!r} is not defined")

    def bind(self, name, val):
        self.vals[name] = val


# ---------------------------------------------------------------------------------------------
# The importer


class _Importer:
    def __init__(self, model, opset, state, base_dir, trainable):
        self.model, self.opset, self.state = model, opset, state
        self.base_dir, self.trainable = base_dir, trainable
        self.budget = Budget()
        self.graph = Graph(name=model.graph.name or "onnx_model")

    def run(self):
        gp = self.model.graph
        scope = Scope()
        with self.graph:
            variables = self._initializers(gp, scope, make_variables=True)
            initializers = {t.name for t in gp.initializer}
            inputs = {}
            for vi in gp.input:
                if vi.name in initializers:  # an old-style default: a variable or constant
                    continue
                shape, dtype = input_type(vi, f"graph input {vi.name!r}")
                p = placeholder(shape, dtype=dtype, name=vi.name)
                inputs[vi.name] = p
                scope.bind(vi.name, Val(tensor=p))
            self.run_nodes(gp, scope)
            outputs = {vi.name: scope.lookup(vi.name).get(self, f"graph output {vi.name!r}")
                       for vi in gp.output}
        producer = f"{self.model.producer_name} {self.model.producer_version}".strip()
        return ImportedModel(self.graph, inputs, outputs, variables, self.opset, producer)

    def _initializers(self, gp, scope, make_variables):
        variables = {}
        for t in gp.initializer:
            arr = to_array(t, f"initializer {t.name!r}", self.base_dir, self.budget)
            if make_variables and arr.dtype.kind == "f":
                v = Variable(arr, name=t.name, trainable=self.trainable, dtype=arr.dtype)
                variables[t.name] = v
                scope.bind(t.name, Val(tensor=v))
            else:
                scope.bind(t.name, Val(value=arr))
        return variables

    def run_nodes(self, gp, scope):
        """Import the nodes of `gp` (in the checked topological order) into the default graph."""
        for node in node_order(gp):
            label = node_label(node)
            try:
                outs = self._node(node, scope)
            except OnnxImportError:
                raise
            except (GraphadError, ValueError, TypeError, IndexError, ArithmeticError) as e:
                raise OnnxImportError(f"import_onnx: {label}: {type(e).__name__}: {e}") from None
            wanted = [(k, n) for k, n in enumerate(node.output) if n]
            for k, name in wanted:
                if k >= len(outs) or outs[k] is None:
                    raise OnnxImportError(f"import_onnx: {label}: output {k} ({name!r}) is not "
                                          "supported")
                scope.bind(name, _as_val(outs[k]))

    def import_subgraph(self, gp, scope, bindings):
        """Tensors of `gp`'s outputs, with its inputs bound to `bindings` (name -> Tensor), into
        the current default graph (a control-flow body being traced)."""
        inner = Scope(scope)
        for name, t in bindings.items():
            inner.bind(name, _as_val(t))
        self._initializers(gp, inner, make_variables=False)
        self.run_nodes(gp, inner)
        return [inner.lookup(vi.name).get(self, f"subgraph output {vi.name!r}")
                for vi in gp.output]

    def _node(self, node, scope):
        handler = lookup(node)
        vals = [scope.lookup(n) if n else None for n in node.input]
        if node.domain in ("", "ai.onnx"):  # contrib ops check their own types
            _check_types(node, vals, self.opset)
        present = [v for v in vals if v is not None]
        if handler.fold and all(v.value is not None for v in present):
            folded = self._fold(handler, node, vals, scope)
            if folded is not None:
                return folded
        return handler.fn(NodeCtx(self, node, vals, scope))

    def _fold(self, handler, node, vals, scope):
        """Evaluate a node whose inputs are all constants (shape arithmetic, Constant nodes) in
        a scratch graph; None when a result would be too large to keep as a constant."""
        with Graph("fold"):
            outs = handler.fn(NodeCtx(self, node, vals, scope))
            tensors = [o for o in outs if isinstance(o, Tensor)]
            for t in tensors:
                n = num_elements(t.shape)
                if n is None or n > FOLD_LIMIT:
                    return None
            values = iter(evaluate(tensors))
        return [Val(value=np.asarray(next(values))) if isinstance(o, Tensor) else _as_val(o)
                for o in outs]


def _as_val(out):
    """A handler's result as a Val: Tensors, constant arrays, shape vectors, or a passed Val."""
    if out is None or isinstance(out, Val):
        return out
    if isinstance(out, Tensor):
        return Val(tensor=out)
    if isinstance(out, Sym):
        return Val(sym=out)
    return Val(value=np.asarray(out))


# ---------------------------------------------------------------------------------------------
# Input types against the op's ONNX schema (graphad would promote where ONNX refuses)


_ONNX_TYPE = {"float32": "float", "float64": "double", "float16": "float16", "int32": "int32",
              "int64": "int64", "bool": "bool"}
_SCHEMAS = {}
_VARIADIC = onnx.defs.OpSchema.FormalParameterOption.Variadic


def _schema(op_type, opset):
    key = (op_type, opset)
    if key not in _SCHEMAS:
        _SCHEMAS[key] = onnx.defs.get_schema(op_type, opset, "")
    return _SCHEMAS[key]


def _val_type(v):
    if v.tensor is not None:
        name = v.tensor.dtype.name
    elif v.value is not None:
        name = as_dtype(v.value.dtype).name
    else:
        name = "int64"  # a shape vector
    return f"tensor({_ONNX_TYPE[name]})"


def _check_types(node, vals, opset):
    """Refuse inputs the ONNX schema forbids: wrong count, a type outside the op's type
    constraint, or two inputs that must share a type parameter but do not."""
    schema = _schema(node.op_type, opset)
    label = node_label(node)
    if not schema.min_input <= len(vals) <= schema.max_input:
        raise refuse(f"{label} has {len(vals)} inputs; the op takes {schema.min_input}.."
                     f"{schema.max_input}")
    params = schema.inputs
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    seen = {}
    for i, v in enumerate(vals):
        if v is None or not params:
            continue
        p = params[min(i, len(params) - 1)]
        if i >= len(params) - 1 and p.option == _VARIADIC and not (
                p.is_homogeneous):
            continue
        t = _val_type(v)
        want = allowed.get(p.type_str, {p.type_str})
        if t not in want:
            raise refuse(f"{label}: input {i} ({node.input[i]!r}) has type {t}, which the op "
                         f"does not accept (allowed: {', '.join(sorted(want))})")
        first = seen.setdefault(p.type_str, (i, t))
        if first[1] != t:
            raise refuse(f"{label}: inputs {first[0]} and {i} must have the same type "
                         f"({p.type_str}), got {first[1]} and {t}")


# ---------------------------------------------------------------------------------------------
# What a handler sees


_KINDS = {"int": 2, "float": 1, "string": 3, "tensor": 4, "graph": 5, "floats": 6, "ints": 7,
          "strings": 8}
_REQUIRED = object()


class NodeCtx:
    """One ONNX node's inputs and attributes, for its handler."""

    def __init__(self, importer, node, vals, scope):
        self.importer, self.node, self.vals, self.scope = importer, node, vals, scope
        self.label = node_label(node)
        self.opset = importer.opset
        default = node.domain in ("", "ai.onnx")
        self.version = since_version(node.op_type, importer.opset) if default else 1
        self.out_name = next((o for o in node.output if o), None)
        self._attrs = {a.name: a for a in node.attribute}

    def fail(self, msg):
        return OnnxImportError(f"import_onnx: {self.label}: {msg}")

    @property
    def n_inputs(self):
        return len(self.vals)

    def has(self, i):
        return i < len(self.vals) and self.vals[i] is not None

    def input(self, i):
        if not self.has(i):
            raise self.fail(f"input {i} is required")
        what = f"input {i} ({self.node.input[i]!r}) of {self.label}"
        return self.vals[i].get(self.importer, what)

    def inputs(self):
        return [self.input(i) for i in range(len(self.vals)) if self.has(i)]

    def value(self, i):
        """The constant value of input i, or None when it is computed at run time."""
        return self.vals[i].value if self.has(i) else None

    def sym(self, i):
        return self.vals[i].sym if self.has(i) else None

    def const(self, i, what):
        v = self.value(i)
        if v is None:
            raise self.fail(f"input {i} ({what}) must be a constant (an initializer or computed "
                            "from constants), because graphad needs it while building the graph")
        return v

    def attr(self, name, kind, default=_REQUIRED):
        a = self._attrs.get(name)
        if a is None:
            if default is _REQUIRED:
                raise self.fail(f"attribute {name!r} is required")
            return default
        if a.type != _KINDS[kind]:
            raise self.fail(f"attribute {name!r} must be of type {kind}, got "
                            f"{_type_name(a.type)}")
        if kind == "int":
            return int(a.i)
        if kind == "float":
            return float(a.f)
        if kind == "string":
            return a.s.decode("utf-8", errors="replace")
        if kind == "ints":
            return [int(v) for v in a.ints]
        if kind == "floats":
            return [float(v) for v in a.floats]
        if kind == "strings":
            return [s.decode("utf-8", errors="replace") for s in a.strings]
        if kind == "tensor":
            imp = self.importer
            return to_array(a.t, f"attribute {name!r} of {self.label}", imp.base_dir, imp.budget)
        return a.g

    def attr_names(self):
        return tuple(self._attrs)


def _type_name(code):
    from onnx import AttributeProto  # noqa: PLC0415

    return AttributeProto.AttributeType.Name(code)

