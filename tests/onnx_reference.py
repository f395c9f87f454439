"""`reference_run(model, feeds)`: run an exported model on onnx.reference as an independent oracle.

`onnx.reference.ReferenceEvaluator` (onnx 1.23) cannot run what graphad exports for loops and
their gradients, so this module passes it `new_ops` (numpy implementations written from the
specifications, not from graphad's lowering):

- `Scan` (overrides the built-in one): the ONNX Scan spec (opset >= 9), including
  `scan_input_directions` / `scan_output_directions` of 1 (the backward loop of a VJP is a
  reverse Scan), `scan_input_axes` / `scan_output_axes`, and zero-length scans. The built-in one
  rejects all of these.
- `Loop` (overrides the built-in one): an omitted `cond` means true (the built-in one runs zero
  trips), scan outputs are stacked on a new leading axis (the built-in one uses `np.vstack`, which
  makes scalars `(T, 1)` and matrices `(T * rows, cols)`), and zero trips give `(0, ...)` scan
  outputs shaped as the body declares them (the built-in one fails on `np.vstack([])`).
- com.microsoft `FusedMatMul`, `GatedAdd` and `Inverse`: the onnxruntime contrib (inference)
  ops graphad emits (graphad/passes/fuse_ops.py, graphad/ops/linalg_ops.py). Their semantics
  (transBatchA / transBatchB included) are checked against onnxruntime on one-node models in
  tests/test_control_reference.py.

onnx.reference picks a `new_ops` class by (its `op_domain`, its class name), so each class is
named after the op type it implements; subgraphs (If / Loop / Scan bodies) get the same ops.

A zero-trip Loop or Scan needs the body's declared scan-output shape to be fully static: the
element shape of an empty stack cannot be known otherwise, and this raises rather than guesses.
"""

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

__all__ = ["NEW_OPS", "reference_run", "FusedMatMul", "GatedAdd", "Inverse", "Loop", "Scan"]

MS_DOMAIN = "com.microsoft"


def reference_run(model, feeds):
    """Outputs (a list of numpy arrays) of `model` (an onnx.ModelProto) on onnx.reference with
    the ops of this module. `feeds`: {input name: array}, or a sequence in graph-input order."""
    if not isinstance(feeds, dict):
        feeds = dict(zip((i.name for i in model.graph.input), feeds, strict=True))
    return list(ReferenceEvaluator(model, new_ops=NEW_OPS).run(None, feeds))


# ---------------------------------------------------------------------------------------------
# com.microsoft contrib ops


def _fmm_operand(x, trans_batch, trans, what):
    if (trans or trans_batch) and x.ndim < 2:  # noqa: PLR2004
        raise ValueError(f"FusedMatMul: cannot transpose the rank-{x.ndim} operand {what}")
    if trans_batch:  # [d0, d1, ..., dn-2, dn-1] -> [d1, ..., dn-2, d0, dn-1]
        x = np.transpose(x, (*range(1, x.ndim - 1), 0, x.ndim - 1))
    return np.swapaxes(x, -1, -2) if trans else x


class FusedMatMul(OpRun):
    """Y = alpha * op(A) @ op(B) with numpy matmul broadcasting. op: `transBatch*` first moves
    the leading axis just before the last one, then `trans*` swaps the last two axes."""

    op_domain = MS_DOMAIN

    def _run(self, a, b, alpha=1.0, transA=0, transB=0, transBatchA=0, transBatchB=0):  # noqa: N803
        y = np.matmul(_fmm_operand(a, transBatchA, transA, "A"),
                      _fmm_operand(b, transBatchB, transB, "B"))
        if alpha != 1.0:
            y = y * a.dtype.type(alpha)
        return (np.asarray(y, dtype=a.dtype),)


class GatedAdd(OpRun):
    """Y = X + Y_in * gate (gate broadcast, in practice shaped X.shape[:-1] + (1,))."""

    op_domain = MS_DOMAIN

    def _run(self, x, y, gate):
        return (np.asarray(x + y * gate, dtype=x.dtype),)


class Inverse(OpRun):
    """Inverse of each square matrix over the last two axes (float16 computed in float32)."""

    op_domain = MS_DOMAIN

    def _run(self, x):
        work = x.astype(np.float32) if x.dtype == np.float16 else x
        return (np.linalg.inv(work).astype(x.dtype),)


# ---------------------------------------------------------------------------------------------
# Control flow


def _graph_attr(node, name):
    return next(a.g for a in node.attribute if a.name == name)


def _empty_stack(value_info, op):
    """A zero-length stack (0, *element shape) of the body output declared by `value_info`."""
    t = value_info.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    if not t.HasField("shape") or None in dims:
        raise ValueError(f"{op} ran zero iterations, but its body output {value_info.name!r} "
                         f"has no static declared shape to build the empty result from")
    return np.zeros((0, *dims), dtype=onnx.helper.tensor_dtype_to_np_dtype(t.elem_type))


def _per_value(values, n, name):
    """An attribute list with one entry per scan input or output (default 0), checked."""
    values = [0] * n if values is None else list(values)
    if len(values) != n:
        raise ValueError(f"Scan: {name} has {len(values)} entries for {n} values")
    return values


def _axis(axis, rank, name):
    if not -rank <= axis < rank:
        raise ValueError(f"Scan: {name} {axis} is out of range for rank {rank}")
    return axis % rank


def _direction(d, name):
    if d not in (0, 1):
        raise ValueError(f"Scan: {name} must be 0 or 1, got {d}")
    return d


class Scan(OpRun):
    """ONNX Scan (opset >= 9): N state variables then M scan inputs (M = num_scan_inputs); the
    body maps (state, one slice of each scan input) to (state, K scan-output elements).

    Scan input j is sliced along scan_input_axes[j], from its end when scan_input_directions[j]
    is 1. Scan output k stacks its elements along scan_output_axes[k] (of the output's rank),
    last iteration first when scan_output_directions[k] is 1. All scan inputs must have one
    length T; T = 0 returns the initial state and empty scan outputs."""

    def __init__(self, onnx_node, run_params):
        OpRun.__init__(self, onnx_node, run_params)
        if run_params["opsets"].get("", 9) < 9:  # noqa: PLR2004
            raise NotImplementedError("Scan before opset 9 (batched, sequence_lens) is not "
                                      "implemented")
        self.body_proto = _graph_attr(onnx_node, "body")

    def need_context(self):
        return True  # the body may read outer-scope names

    def _run(self, *args, context=None, body=None, num_scan_inputs=None,  # noqa: ARG002
             scan_input_axes=None, scan_input_directions=None, scan_output_axes=None,
             scan_output_directions=None, attributes=None, bindings=None):
        m = num_scan_inputs
        n = len(args) - m
        k = len(self.body.output_names) - n
        if m < 1 or n < 0 or k < 0:
            raise ValueError(f"Scan: {len(args)} inputs, num_scan_inputs={m}, "
                             f"{len(self.body.output_names)} body outputs do not fit")
        states = list(args[:n])
        axes = _per_value(scan_input_axes, m, "scan_input_axes")
        dirs = _per_value(scan_input_directions, m, "scan_input_directions")
        xs = []  # each scan input with its scan axis first, in visiting order
        for j, (x, ax, d) in enumerate(zip(args[n:], axes, dirs)):
            x = np.moveaxis(x, _axis(ax, x.ndim, "scan_input_axes"), 0)
            xs.append(x[::-1] if _direction(d, f"scan_input_directions[{j}]") else x)
        lengths = {x.shape[0] for x in xs}
        if len(lengths) != 1:
            raise ValueError(f"Scan: the scan inputs have different lengths {sorted(lengths)}")
        trips = lengths.pop()
        elements = [[] for _ in range(k)]
        for t in range(trips):
            feeds = dict(context or {})  # body inputs shadow outer-scope names
            feeds.update(zip(self.body.input_names, [*states, *(x[t] for x in xs)]))
            outs = self._run_body(feeds, attributes=attributes, bindings=bindings)
            states = list(outs[:n])
            for acc, y in zip(elements, outs[n:]):
                acc.append(y)
        axes = _per_value(scan_output_axes, k, "scan_output_axes")
        dirs = _per_value(scan_output_directions, k, "scan_output_directions")
        scans = []
        for j, (acc, ax, d) in enumerate(zip(elements, axes, dirs)):
            if _direction(d, f"scan_output_directions[{j}]"):
                acc = acc[::-1]
            y = np.stack(acc) if acc else _empty_stack(self.body_proto.output[n + j], "Scan")
            scans.append(np.moveaxis(y, 0, _axis(ax, y.ndim, "scan_output_axes")))
        return self._check_and_fix_outputs(tuple(states + scans))


class Loop(OpRun):
    """ONNX Loop: inputs (M, cond, v_initial...), both M and cond optional (empty names); body
    inputs (iteration number, cond, carried...), outputs (cond, carried..., scan outputs...).
    Runs while `i < M` (when M is given) and `cond` (when given; omitted means true). Scan
    outputs stack their per-iteration values on a new leading axis; zero trips give (0, ...)."""

    def __init__(self, onnx_node, run_params):
        OpRun.__init__(self, onnx_node, run_params)
        self.body_proto = _graph_attr(onnx_node, "body")

    def need_context(self):
        return True

    def _run(self, trip_count, cond, *carried, context=None, body=None,  # noqa: ARG002
             attributes=None, bindings=None):
        n = len(carried)
        k = len(self.body.output_names) - 1 - n
        if k < 0 or len(self.body.input_names) != n + 2:
            raise ValueError(f"Loop: {n} carried values do not fit a body with inputs "
                             f"{self.body.input_names} and outputs {self.body.output_names}")
        limit = None if trip_count is None else int(np.asarray(trip_count).reshape(()))
        keep = True if cond is None else bool(np.asarray(cond).reshape(()))
        carried = list(carried)
        elements = [[] for _ in range(k)]
        i = 0
        while keep and (limit is None or i < limit):
            feeds = dict(context or {})
            feeds.update(zip(self.body.input_names,
                             [np.array(i, np.int64), np.array(keep), *carried]))
            outs = self._run_body(feeds, attributes=attributes, bindings=bindings)
            keep = bool(np.asarray(outs[0]).reshape(()))
            carried = list(outs[1:1 + n])
            for acc, y in zip(elements, outs[1 + n:]):
                acc.append(y)
            i += 1
        scans = [np.stack(acc) if acc else
                 _empty_stack(self.body_proto.output[1 + n + j], "Loop")
                 for j, acc in enumerate(elements)]
        return self._check_and_fix_outputs(tuple(carried + scans))


NEW_OPS = [Scan, Loop, FusedMatMul, GatedAdd, Inverse]
