"""The picture model of an ONNX model: its nodes, graph inputs / initializers / outputs, and the
subgraphs of Loop / If / Scan as panels (outer values a subgraph captures become capture edges)."""

from .viz_model import VGraph, VNode, clip, collapsed_line, control_kind

_SHORT = {"float": "f32", "double": "f64", "float16": "f16", "int32": "i32", "int64": "i64",
          "bool": "bool", "bfloat16": "bf16", "int8": "i8", "uint8": "u8", "string": "str"}


def _load(x):
    import onnx  # noqa: PLC0415

    if isinstance(x, (onnx.ModelProto, onnx.GraphProto)):
        return x
    return onnx.load(str(x))


def _infer(model):
    import onnx  # noqa: PLC0415

    if not isinstance(model, onnx.ModelProto) or len(model.graph.node) > 5000:
        return model
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001  (a picture never fails because shapes cannot be inferred)
        return model


def _type_text(value_info):
    import onnx  # noqa: PLC0415

    t = value_info.type
    if not t.HasField("tensor_type"):
        return t.WhichOneof("value") or ""
    tt = t.tensor_type
    name = onnx.TensorProto.DataType.Name(tt.elem_type).lower() if tt.elem_type else "?"
    if not tt.HasField("shape"):
        return f"{_SHORT.get(name, name)}[*]"
    dims = ",".join(d.dim_param or (str(d.dim_value) if d.HasField("dim_value") else "?")
                    for d in tt.shape.dim)
    return f"{_SHORT.get(name, name)}[{dims}]"


def _init_type(init):
    import onnx  # noqa: PLC0415

    name = onnx.TensorProto.DataType.Name(init.data_type).lower()
    return f"{_SHORT.get(name, name)}[{','.join(str(d) for d in init.dims)}]"


def _attr_summary(node):
    import onnx  # noqa: PLC0415

    parts = []
    for a in node.attribute:
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS,
                      onnx.AttributeProto.TENSOR):
            continue
        value = onnx.helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, float):
            value = f"{value:g}"
        parts.append(f"{a.name}={value}")
    return clip(" ".join(parts).replace(" ", " ").replace(", ", ","), 40) if parts else ""


def _subgraphs(node):
    import onnx  # noqa: PLC0415

    found = []
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            found.append((a.name, a.g))
        elif a.type == onnx.AttributeProto.GRAPHS:
            found.extend((f"{a.name}[{i}]", g) for i, g in enumerate(a.graphs))
    order = {"then_branch": 0, "else_branch": 1}  # If: the `then` branch on the left
    return sorted(found, key=lambda kg: order.get(kg[0], 2))


class _Builder:
    def __init__(self, types, max_depth, initializers):
        self.types, self.max_depth, self.initializers = types, max_depth, initializers

    def graph(self, g, prefix, depth):
        """(VGraph, names used but not defined here) for one GraphProto."""
        vg = VGraph(g.name or "onnx")
        producer = {}
        inits = {i.name for i in g.initializer}
        for i, vi in enumerate(g.input):
            if vi.name in inits:
                continue
            vid = f"{prefix}in{i}"
            vg.nodes.append(VNode(vid, "input", vi.name, [_type_text(vi)], name=vi.name,
                                  op="input"))
            producer[vi.name] = vid
        if self.initializers:
            for i, init in enumerate(g.initializer):
                vid = f"{prefix}c{i}"
                vg.nodes.append(VNode(vid, "constant", init.name, [_init_type(init)],
                                      name=init.name, op="initializer"))
                producer[init.name] = vid
        free = []
        for i, node in enumerate(g.node):
            vid = f"{prefix}{i}"
            vn = self.node(node, vid, depth)
            vg.nodes.append(vn)
            inner_free = self.panels(vn, node, vid, depth)
            seen = set()
            for name in list(node.input) + inner_free:
                src = producer.get(name)
                kind = "data" if name in node.input else "capture"
                if src is not None and src not in seen:
                    seen.add(src)
                    vg.edges.append((src, vid, kind))
                elif src is None and name and name not in inits:
                    free.append(name)
            for name in node.output:
                if name:
                    producer[name] = vid
        for i, vi in enumerate(g.output):
            vid = f"{prefix}out{i}"
            vg.nodes.append(VNode(vid, "output", vi.name, [_type_text(vi)], name=vi.name,
                                  op="output"))
            if vi.name in producer:
                vg.edges.append((producer[vi.name], vid, "data"))
        return vg, free

    def node(self, node, vid, depth):
        outs = [o for o in node.output if o]
        typed = self.types.get(outs[0], "") if outs else ""
        name = node.name or (outs[0] if outs else node.op_type)
        lines = [f"{name} : {typed}" if typed else name, _attr_summary(node)]
        kind = "op"
        fused = node.op_type.lower().startswith("fused")
        if fused:
            kind = "fused"
        elif node.op_type == "Constant":
            kind = "constant"
        title = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        tip = f"{name} = {title}({', '.join(node.input)}) -> {', '.join(outs)}"
        vn = VNode(vid, kind, title, lines, tip, name=name, op=node.op_type)
        if fused:
            vn.marks.add("fused")
        return vn

    def panels(self, vn, node, vid, depth):
        subs = _subgraphs(node)
        if not subs:
            return []
        kind = control_kind(node.op_type)
        vn.marks.update(("control", kind))
        if vn.kind == "op":
            vn.kind = kind
        free = []
        for key, sub in subs:
            vsub, sub_free = self.graph(sub, f"{vid}_{len(vn.panels)}_", depth + 1)
            free.extend(n for n in sub_free if n not in free)
            if depth >= self.max_depth:
                vn.collapsed += vsub.count()
            else:
                vn.panels.append((key, vsub))
        if vn.collapsed:
            vn.lines.append(collapsed_line(len(subs), vn.collapsed))
        return free


def from_onnx(x, max_depth=3, initializers=True):
    """VGraph of an onnx.ModelProto / GraphProto / path to a .onnx file."""
    import onnx  # noqa: PLC0415

    model = _infer(_load(x))
    graph = model.graph if isinstance(model, onnx.ModelProto) else model
    types = {}
    stack = [graph]
    while stack:
        g = stack.pop()
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            types[vi.name] = _type_text(vi)
        for init in g.initializer:
            types.setdefault(init.name, _init_type(init))
        for node in g.node:
            stack.extend(sub for _, sub in _subgraphs(node))
    vg, _ = _Builder(types, max_depth, initializers).graph(graph, "x", 0)
    return vg
