"""`ga.export.to_onnx`: outputs (and their inputs) as a checked, standalone ONNX model."""

import onnx

from .. import tree
from ..errors import ExportError
from ..graph import Tensor, ancestors
from .onnx import check, lower, safe_name


def _needed_placeholders(outputs):
    return [n.outputs[0] for n in ancestors(outputs) if n.op == "placeholder"]


def _save(model, path):
    if path is not None:
        onnx.save_model(model, str(path))


def to_onnx(outputs, inputs=None, *, session=None, path=None, opset=21, name=None):
    """An onnx.ModelProto computing `outputs` (Tensor, list or dict) from `inputs`.

    Variables are frozen to initializers holding their values in `session` (else their initial
    values). Unknown dims become dim_param-free dims, named dims `dim_param`s.
    """
    if isinstance(outputs, dict):
        names = [str(k) for k in outputs]
        outs = list(outputs.values())
    elif isinstance(outputs, Tensor):
        names, outs = None, [outputs]
    else:
        outs = tree.leaves(outputs)
        names = None
    for o in outs:
        if not isinstance(o, Tensor):
            raise ExportError(f"to_onnx outputs must be Tensors, got {o!r}")
    if names is None:
        names = []
        for o in outs:
            base = safe_name(o.name)
            names.append(base if base not in names else f"{base}_{len(names)}")
    if inputs is None:
        inputs = _needed_placeholders(outs)
    elif isinstance(inputs, dict):
        inputs = list(inputs.values())
    else:
        inputs = list(inputs) if not isinstance(inputs, Tensor) else [inputs]
    values = session.variable_values() if session is not None else None
    graph = outs[0].graph if outs else None
    low = lower(outs, inputs=inputs, output_names=names, variable_mode="freeze",
                variable_values=values, opset=opset, name=name or (graph.name if graph else "graphad"))
    check(low.model)
    _save(low.model, path)
    return low.model
