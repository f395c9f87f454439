"""Graph -> onnx.ModelProto: the one lowering used by Session, to_onnx and train_step_to_onnx."""

import re

import onnx
from onnx import helper

from ..errors import ExportError, FeedError
from ..graph import Operation, Tensor
from .lowering import MS_DOMAIN, LowerCtx, lower_nodes, value_info

IR_VERSION = 10
_SAFE = re.compile(r"[^A-Za-z0-9_.\-/:]")


class Lowered:
    """A lowered model plus the mapping between graphad objects and ONNX names."""

    __slots__ = ("model", "input_names", "variable_inputs", "output_names", "assignments")

    def __init__(self, model, input_names, variable_inputs, output_names, assignments):
        self.model = model
        self.input_names = input_names  # one per fed tensor, in order
        self.variable_inputs = variable_inputs  # [(var name, onnx input name)]
        self.output_names = output_names  # one per output tensor, in order
        self.assignments = assignments  # [(var name, onnx output name)]


def safe_name(name):
    return _SAFE.sub("_", name)


def lower(outputs, *, inputs=(), operations=(), output_names=None, variable_mode="input",
          variable_values=None, opset=21, name="graphad", doc=""):
    """Lower the part of a graph that `outputs` and `operations` need.

    `inputs`: tensors fed from outside (placeholders, or any tensor to cut the graph at).
    `variable_mode`: "input" (variables become graph inputs, assignments `<name>.next` outputs)
    or "freeze" (variables become initializers with `variable_values` or initial values).
    """
    outputs = list(outputs)
    for o in outputs:
        if not isinstance(o, Tensor):
            raise ExportError(f"cannot export {o!r}: outputs must be Tensors")
    ctx = LowerCtx(opset=opset, variable_mode=variable_mode, variable_values=variable_values)
    if output_names is None:
        output_names = [f"output_{i}" for i in range(len(outputs))]
    for n in output_names:
        ctx.reserve(n)
    env, graph_inputs, input_names = {}, [], []
    for t in inputs:
        if t in env:
            raise FeedError(f"tensor {t.name!r} is fed twice")
        n = ctx.reserve(safe_name(t.name))
        env[t] = n
        input_names.append(n)
        graph_inputs.append(value_info(n, t.type))
    input_set = set(input_names)
    value_infos = []
    lower_nodes(ctx, outputs + list(operations), env, value_infos, skip=input_set)
    # variables read become inputs (after the fed ones)
    variable_inputs = []
    for vname, (oname, vnode) in ctx.variables_read.items():
        if variable_mode == "input":
            variable_inputs.append((vname, oname))
            graph_inputs.append(value_info(oname, vnode.outputs[0].type))
    graph_outputs = []
    for t, oname in zip(outputs, output_names):
        ctx.emit("Identity", [env[t]], outputs=[oname])
        graph_outputs.append(value_info(oname, t.type))
    assignments = []
    for vname, (value_name, anode) in ctx.assignments.items():
        oname = ctx.reserve(f"{vname}.next")
        ctx.emit("Identity", [value_name], outputs=[oname])
        graph_outputs.append(value_info(oname, anode.inputs[0].type))
        assignments.append((vname, oname))
    done = {vi.name for vi in graph_inputs} | {vi.name for vi in graph_outputs}
    done |= {init.name for init in ctx.initializers}
    value_infos = [vi for vi in value_infos if vi.name not in done]
    graph = helper.make_graph(ctx.nodes, name, graph_inputs, graph_outputs,
                              initializer=ctx.initializers, value_info=value_infos, doc_string=doc)
    opsets = [helper.make_opsetid("", opset)]
    if MS_DOMAIN in ctx.domains:
        opsets.append(helper.make_opsetid(MS_DOMAIN, 1))
    model = helper.make_model(graph, opset_imports=opsets, ir_version=IR_VERSION,
                              producer_name="graphad")
    return Lowered(model, input_names, variable_inputs, list(output_names), assignments)


def check(model):
    """onnx.checker full check; raises ExportError with the checker's message."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"exported model fails the ONNX checker: {e}") from None


def operations_of(fetches):
    return [f for f in fetches if isinstance(f, Operation)]
