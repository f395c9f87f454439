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


def to_onnx(outputs, inputs=None, *, session=None, path=None, opset=21, name=None,
            optimize=True):
    """An onnx.ModelProto computing `outputs` (Tensor, list or dict) from `inputs`.

    Variables are frozen to initializers holding their values in `session` (else their initial
    values). Unknown dims become dims without a value, named dims `dim_param`s. With
    `optimize` (the default) the graph first goes through the pipeline a Session runs, so the
    file computes exactly what `Session.run` computes.
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
    if optimize:  # the pipeline Session runs, so the file computes exactly what Session does
        from ..passes.manager import optimize_for_session  # noqa: PLC0415

        outs, _, inputs = optimize_for_session(outs, [], inputs)
    low = lower(outs, inputs=inputs, output_names=names, variable_mode="freeze",
                variable_values=values, opset=opset, name=name or (graph.name if graph else "graphad"))
    check(low.model)
    _save(low.model, path)
    return low.model


def train_step_to_onnx(train_op, *, session=None, inputs=None, outputs=(), path=None, opset=21,
                       name=None):
    """One training step as a standalone ONNX model.

    Graph inputs: the placeholders the step needs (or `inputs`), then every variable the step
    reads, named as the variable. Graph outputs: the requested `outputs` (Tensor, list or dict),
    then `<variable>.next` for every variable the step writes. Feeding each `.next` back in
    place of its variable repeats training; the lowering is the one `Session` runs, so results
    match it bit for bit. `session` supplies nothing but is accepted for symmetry (the values to
    start from are `session.variable_values()`).
    """
    from ..graph import Operation  # noqa: PLC0415
    from ..passes.manager import optimize_for_session  # noqa: PLC0415

    ops = tree.leaves(train_op)
    for op in ops:
        if not isinstance(op, Operation):
            raise ExportError(f"train_step_to_onnx: {op!r} is not an Operation (e.g. minimize())")
    if isinstance(outputs, dict):
        names, outs = [str(k) for k in outputs], list(outputs.values())
    else:
        outs = tree.leaves(outputs)
        names = [safe_name(o.name) for o in outs]
    if inputs is None:
        feeds = [n.outputs[0] for n in ancestors(outs + ops) if n.op == "placeholder"
                 and not n.attrs.get("captured")]
    else:
        feeds = list(inputs.values()) if isinstance(inputs, dict) else tree.leaves(inputs)
    feeds = sorted(feeds, key=lambda t: (t.node.id, t.index))
    lowered_outs, lowered_ops, lowered_feeds = optimize_for_session(outs, ops, feeds)
    graph = ops[0].graph
    low = lower(lowered_outs, inputs=lowered_feeds, operations=lowered_ops, output_names=names,
                variable_mode="input", opset=opset, name=name or f"{graph.name}_train_step")
    if not low.assignments:
        raise ExportError("train_step_to_onnx: the operation assigns no variable")
    check(low.model)
    _save(low.model, path)
    return low.model
