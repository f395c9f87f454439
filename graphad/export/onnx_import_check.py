"""Safe loading and validation for `import_onnx`: protobuf parsing only (no code runs, nothing is
unpickled), refusal of malformed or hostile models (types, sizes, names, cycles, external-data
paths) before any graph is built, and bounded decoding of tensor data."""

import collections
import math
import os
import pathlib

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto

from ..errors import OnnxImportError

MIN_OPSET, MAX_OPSET = 11, 25  # ai.onnx opsets whose op semantics the importer knows
MAX_DIM = 2**31 - 1  # any one dimension
MAX_ELEMENTS = 2**31 - 1  # elements of any one tensor
MAX_TOTAL_BYTES = 16 * 2**30  # tensor data decoded by one import
MAX_FILE_BYTES = 2**31 - 1  # protobuf's own limit for one message
MAX_NODES = 1_000_000  # nodes, subgraphs included
MAX_DEPTH = 32  # nesting of subgraphs (Loop/If bodies)

DTYPES = {
    TensorProto.FLOAT: np.dtype("<f4"),
    TensorProto.DOUBLE: np.dtype("<f8"),
    TensorProto.FLOAT16: np.dtype("<f2"),
    TensorProto.INT32: np.dtype("<i4"),
    TensorProto.INT64: np.dtype("<i8"),
    TensorProto.BOOL: np.dtype("?"),
}


def refuse(msg):
    return OnnxImportError(f"import_onnx: {msg}")


def type_name(code):
    try:
        return TensorProto.DataType.Name(code)
    except ValueError:
        return f"<unknown element type {code}>"


def check_dtype(code, what):
    if code not in DTYPES:
        supported = ", ".join(type_name(c) for c in DTYPES)
        raise refuse(f"{what} has element type {type_name(code)}, which graphad does not "
                     f"support (it supports {supported})")
    return DTYPES[code]


# ---------------------------------------------------------------------------------------------
# Loading


def load(model_or_path):
    """(ModelProto, the folder of the model file or None)."""
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path, None
    if isinstance(model_or_path, (bytes, bytearray, memoryview)):
        return parse(bytes(model_or_path), "the given bytes"), None
    if isinstance(model_or_path, (str, os.PathLike)):
        path = os.fspath(model_or_path)
        if not os.path.isfile(path):
            raise refuse(f"no such model file {path!r}")
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise refuse(f"{path!r} is {size} bytes, more than the 2 GiB a protobuf model can be "
                         "(large models keep their weights in external data files)")
        with open(path, "rb") as f:
            data = f.read()
        return parse(data, repr(path)), os.path.dirname(os.path.abspath(path))
    raise refuse(f"expects an onnx.ModelProto, bytes or a file path, got "
                 f"{type(model_or_path).__name__}")


def parse(data, what):
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as e:  # protobuf raises DecodeError (and RuntimeError on deep nesting)
        raise refuse(f"{what} is not an ONNX model: protobuf parse error ({e})") from None
    if not model.HasField("graph") or model.ir_version == 0:
        raise refuse(f"{what} is not an ONNX model (it has no graph or no ir_version)")
    return model


def check_model(model):
    """The model's opsets by domain ("" for ai.onnx), after the version checks."""
    if not model.HasField("graph"):
        raise refuse("not an ONNX model: it has no graph")
    if not 3 <= model.ir_version <= onnx.IR_VERSION:
        raise refuse(f"IR version {model.ir_version} is not supported (3..{onnx.IR_VERSION})")
    opsets = {}
    for o in model.opset_import:
        if not isinstance(o.domain, str):
            raise refuse(f"an opset domain is not valid UTF-8: {o.domain!r}")
        dom = "" if o.domain in ("", "ai.onnx") else o.domain
        if dom in opsets:
            raise refuse(f"opset of domain {o.domain or 'ai.onnx'!r} is imported twice")
        opsets[dom] = o.version
    if "" not in opsets:
        raise refuse("the model imports no ai.onnx opset")
    if not MIN_OPSET <= opsets[""] <= MAX_OPSET:
        raise refuse(f"the model uses ai.onnx opset {opsets['']}, outside the opsets "
                     f"{MIN_OPSET}..{MAX_OPSET} that import_onnx supports")
    return opsets


def input_type(vi, what):
    """(shape, numpy dtype) of a tensor-typed ValueInfo; dims are ints, names or None."""
    which = vi.type.WhichOneof("value")
    if which != "tensor_type":
        raise refuse(f"{what} is not a tensor (its type is {which or 'missing'}); graphad "
                     "imports tensor inputs only")
    tt = vi.type.tensor_type
    dtype = check_dtype(tt.elem_type, what)
    if not tt.HasField("shape"):
        raise refuse(f"{what} has no shape; graphad needs at least its rank")
    dims = []
    for d in tt.shape.dim:
        kind = d.WhichOneof("value")
        if kind == "dim_value":
            if not 0 <= d.dim_value <= MAX_DIM:
                raise refuse(f"{what} declares dimension {d.dim_value} (dims must be in "
                             "0..2^31-1)")
            dims.append(int(d.dim_value))
        else:
            param = d.dim_param if kind == "dim_param" else ""
            if not isinstance(param, str):
                raise refuse(f"{what} has a dim name that is not valid UTF-8: {param!r}")
            dims.append(param or None)
    return tuple(dims), dtype


# ---------------------------------------------------------------------------------------------
# Tensors: headers are checked before anything is read


def _num_elements(dims, what):
    for d in dims:
        if d < 0 or d > MAX_DIM:
            raise refuse(f"{what} declares dimension {d} (dims must be in 0..2^31-1)")
    n = math.prod(dims)
    if n > MAX_ELEMENTS:
        raise refuse(f"{what} declares {n} elements (shape {tuple(dims)}), more than the "
                     f"{MAX_ELEMENTS} import_onnx accepts")
    return n


_TYPED_FIELD = {
    TensorProto.FLOAT: "float_data", TensorProto.DOUBLE: "double_data",
    TensorProto.FLOAT16: "int32_data", TensorProto.INT32: "int32_data",
    TensorProto.BOOL: "int32_data", TensorProto.INT64: "int64_data",
}


def _external_info(t, what):
    info = {}
    for e in t.external_data:
        info[e.key] = e.value
    loc = info.get("location", "")
    if not loc:
        raise refuse(f"{what} uses external data without a location")
    for key in ("offset", "length"):
        v = info.get(key)
        if v is not None and (not v.isdigit() or int(v) > 2**62):
            raise refuse(f"{what}: external data {key} {v!r} is not a non-negative integer")
    return loc, int(info.get("offset") or 0), info.get("length")


def external_path(loc, base_dir, what):
    """The real path of an external-data file, refused unless it lies inside `base_dir`."""
    win = pathlib.PureWindowsPath(loc)
    if "\0" in loc or os.path.isabs(loc) or win.is_absolute() or win.drive or loc[:1] in "/\\":
        raise refuse(f"{what}: external data path {loc!r} is absolute; only paths relative to "
                     "the model's folder are read")
    if base_dir is None:
        raise refuse(f"{what} keeps its data in the external file {loc!r}, but the model was not "
                     "loaded from a path, so there is no folder to read it from")
    root = os.path.realpath(base_dir)
    full = os.path.realpath(os.path.join(root, loc))
    if full == root or os.path.commonpath([root, full]) != root:
        raise refuse(f"{what}: external data path {loc!r} points outside the model's folder "
                     f"{root!r}; it is not read")
    return full


def check_tensor(t, what, base_dir):
    """Validate a TensorProto's header; returns its element count (no data is read)."""
    dt = check_dtype(t.data_type, what)
    n = _num_elements(list(t.dims), what)
    if t.HasField("segment"):
        raise refuse(f"{what} is a segmented tensor, which import_onnx does not read")
    if t.data_location == TensorProto.EXTERNAL:
        loc, _, length = _external_info(t, what)
        external_path(loc, base_dir, what)
        if length is not None and int(length) != n * dt.itemsize:
            raise refuse(f"{what}: external data length {length} does not match its shape "
                         f"{tuple(t.dims)} of {n} elements of {dt.itemsize} bytes")
        return n
    if t.raw_data:
        have, need = len(t.raw_data), n * dt.itemsize
    else:
        have, need = len(getattr(t, _TYPED_FIELD[t.data_type])), n
    if have != need:
        raise refuse(f"{what} declares shape {tuple(t.dims)} ({n} elements) but holds data for "
                     f"{have // dt.itemsize if t.raw_data else have}")
    return n


class Budget:
    """Bytes of tensor data decoded so far (external data may be referenced many times)."""

    def __init__(self):
        self.used = 0

    def take(self, nbytes, what):
        self.used += nbytes
        if self.used > MAX_TOTAL_BYTES:
            raise refuse(f"{what}: the model's tensors exceed {MAX_TOTAL_BYTES} bytes in total")


def _read_external(t, what, base_dir, nbytes):
    loc, offset, _ = _external_info(t, what)
    path = external_path(loc, base_dir, what)
    if not os.path.isfile(path):
        raise refuse(f"{what}: external data file {loc!r} does not exist")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if offset + nbytes > size:
            raise refuse(f"{what}: external data file {loc!r} has {size} bytes; the tensor "
                         f"needs {nbytes} from offset {offset}")
        f.seek(offset)
        return f.read(nbytes)


def to_array(t, what, base_dir, budget):
    """A checked TensorProto as a new numpy array of its exact dtype."""
    n = check_tensor(t, what, base_dir)
    dt = DTYPES[t.data_type]
    budget.take(n * dt.itemsize, what)
    shape = tuple(t.dims)
    if t.data_location == TensorProto.EXTERNAL:
        raw = _read_external(t, what, base_dir, n * dt.itemsize)
    elif t.raw_data:
        raw = t.raw_data
    else:
        vals = getattr(t, _TYPED_FIELD[t.data_type])
        if t.data_type == TensorProto.FLOAT16:
            arr = np.asarray(vals, dtype=np.int64).astype(np.uint16).view(np.float16)
        elif t.data_type == TensorProto.BOOL:
            arr = np.asarray(vals, dtype=np.int64) != 0
        else:
            arr = np.asarray(vals, dtype=dt)
        return arr.astype(dt.newbyteorder("=")).reshape(shape)
    arr = np.frombuffer(raw, dtype=dt, count=n)
    if t.data_type == TensorProto.BOOL:
        arr = arr.view(np.uint8) != 0
    return arr.astype(dt.newbyteorder("="), copy=True).reshape(shape)


# ---------------------------------------------------------------------------------------------
# Graphs: names, references, order, sizes and supported ops, recursively into subgraphs


def node_label(node):
    op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
    ident = node.name or (node.output[0] if len(node.output) else "")
    return f"node {ident!r} ({op})"


class CheckState:
    """Shared by the checks of a graph and its subgraphs."""

    def __init__(self, unsupported_reason, base_dir):
        self.unsupported_reason = unsupported_reason  # node -> None or a label
        self.base_dir = base_dir
        self.unsupported = collections.Counter()
        self.nodes = 0


def check_graph(graph, state, outer=frozenset(), depth=0):
    """Validate `graph` (and its subgraphs); return the outer-scope names it reads (its free
    names), on which the node holding it depends."""
    if depth > MAX_DEPTH:
        raise refuse(f"subgraphs nested deeper than {MAX_DEPTH} levels")
    where = f" in subgraph {graph.name!r}" if depth else ""
    if len(graph.sparse_initializer):
        raise refuse(f"sparse initializers{where} are not supported")
    defined = {}
    for t in graph.initializer:
        _define(defined, t.name, f"initializer {t.name!r}{where}")
        check_tensor(t, f"initializer {t.name!r}{where}", state.base_dir)
    inits = set(defined)
    for vi in graph.input:
        if vi.name not in inits:
            _define(defined, vi.name, f"graph input {vi.name!r}{where}")
    producers, free = {}, set()
    visible = []  # computed once, for the first node with a subgraph

    def scope_names():
        if not visible:
            visible.append(frozenset(outer | set(defined) | _all_outputs(graph)))
        return visible[0]

    for k, node in enumerate(graph.node):
        state.nodes += 1
        if state.nodes > MAX_NODES:
            raise refuse(f"the model has more than {MAX_NODES} nodes")
        _check_names(node, where)
        reason = state.unsupported_reason(node)
        if reason:
            state.unsupported[reason] += 1
        for out in node.output:
            if out:
                _define(defined, out, node_label(node) + where)
                producers[out] = k
        free |= _check_attributes(node, state, scope_names, depth)
    _toposort(graph, producers, defined, outer, where)
    for vi in graph.output:
        if not isinstance(vi.name, str):
            raise refuse(f"a graph output{where} has a name that is not valid UTF-8: {vi.name!r}")
        if vi.name not in defined and vi.name not in outer:
            raise refuse(f"graph output {vi.name!r}{where} is not produced by any node, input "
                         "or initializer")
        if vi.name in outer:
            free.add(vi.name)
    return {n for n in free if n not in defined}


def _check_names(node, where):
    """Names must be text: protobuf hands back bytes for strings that are not valid UTF-8."""
    fields = [node.op_type, node.domain, node.name, *node.input, *node.output,
              *(a.name for a in node.attribute)]
    for v in fields:
        if not isinstance(v, str):
            raise refuse(f"a node{where} has a name or op type that is not valid UTF-8: {v!r}")
    if not node.op_type:
        raise refuse(f"{node_label(node)}{where} has an empty op_type")


def _all_outputs(graph):
    return {o for node in graph.node for o in node.output if o}


def _define(defined, name, what):
    if not isinstance(name, str):
        raise refuse(f"{what} has a name that is not valid UTF-8: {name!r}")
    if not name:
        raise refuse(f"{what} has an empty name")
    if name in defined:
        raise refuse(f"value {name!r} is defined twice: by {defined[name]} and by {what}")
    defined[name] = what


def _check_attributes(node, state, scope_names, depth):
    free = set()
    for a in node.attribute:
        what = f"attribute {a.name!r} of {node_label(node)}"
        if a.type == AttributeProto.TENSOR:
            check_tensor(a.t, what, state.base_dir)
        elif a.type == AttributeProto.TENSORS:
            for t in a.tensors:
                check_tensor(t, what, state.base_dir)
        elif a.type in (AttributeProto.SPARSE_TENSOR, AttributeProto.SPARSE_TENSORS):
            raise refuse(f"{what} is a sparse tensor, which import_onnx does not read")
        elif a.type == AttributeProto.GRAPH:
            free |= check_graph(a.g, state, scope_names(), depth + 1)
        elif a.type == AttributeProto.GRAPHS:
            for g in a.graphs:
                free |= check_graph(g, state, scope_names(), depth + 1)
    return free


class _Everything:
    def __contains__(self, name):
        return True


def node_order(graph):
    """The nodes of a checked graph in an order where producers come before consumers."""
    producers = {out: k for k, node in enumerate(graph.node) for out in node.output if out}
    return _toposort(graph, producers, _Everything(), frozenset(), "")


def _toposort(graph, producers, defined, outer, where):
    """Kahn's algorithm over producer -> consumer edges; refuses undefined names and cycles."""
    nodes = list(graph.node)
    deps = []
    for k, node in enumerate(nodes):
        needs = set()
        for name in list(node.input) + sorted(_subgraph_reads(node)):
            if not name:
                continue
            if name in producers:
                needs.add(producers[name])
            elif name not in defined and name not in outer:
                raise refuse(f"{node_label(node)}{where} reads {name!r}, which no node, graph "
                             "input or initializer defines")
        deps.append(needs)
    users = collections.defaultdict(list)
    for k, needs in enumerate(deps):
        for p in needs:
            users[p].append(k)
    waiting = [len(d) for d in deps]
    ready = collections.deque(k for k, w in enumerate(waiting) if w == 0)
    order = []
    while ready:
        k = ready.popleft()
        order.append(nodes[k])
        for u in users[k]:
            waiting[u] -= 1
            if waiting[u] == 0:
                ready.append(u)
    if len(order) != len(nodes):
        raise refuse(f"the graph{where} has a cycle: {_cycle_text(nodes, deps, waiting)}")
    return order


def _subgraph_reads(node):
    """Names a node's subgraphs read from outside themselves (so the node depends on them)."""
    reads = set()
    for a in node.attribute:
        graphs = [a.g] if a.type == AttributeProto.GRAPH else list(a.graphs)
        for g in graphs:
            reads |= _free_names(g)
    return reads


def _free_names(graph):
    stack, reads = [graph], set()
    while stack:
        g = stack.pop()
        local = {t.name for t in g.initializer} | {v.name for v in g.input} | _all_outputs(g)
        for node in g.node:
            reads |= {n for n in node.input if n and n not in local}
            for a in node.attribute:
                stack.extend([a.g] if a.type == AttributeProto.GRAPH else list(a.graphs))
        reads |= {v.name for v in g.output if v.name not in local}
    return reads


def _cycle_text(nodes, deps, waiting):
    """One cycle among the nodes left over by Kahn's algorithm, as 'a -> b -> a'."""
    k = next(i for i, w in enumerate(waiting) if w > 0)
    seen, path = {}, []
    while k not in seen:
        seen[k] = len(path)
        path.append(k)
        k = next(p for p in sorted(deps[k]) if waiting[p] > 0)
    cycle = path[seen[k]:] + [k]
    # edges point from a consumer to what it reads; print in data-flow order
    return " -> ".join(node_label(nodes[i]) for i in reversed(cycle))
