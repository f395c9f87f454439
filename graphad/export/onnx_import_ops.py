"""The ONNX op -> graphad op mapping of `import_onnx`: the handler registry and one handler per
ONNX op type, built only from public graphad ops (elementwise, nn, control flow here; shape ops
and symbolic shape vectors in onnx_import_shapes.py)."""

import numpy as np
import onnx.defs

from .. import ops as O
from ..build import constant
from ..ops.conv import conv2d
from ..types import as_dtype, float64
from .onnx_import_check import DTYPES, type_name

HANDLERS = {}  # ai.onnx op type -> Handler
MS_DOMAIN = "com.microsoft"
MS_HANDLERS = {}  # com.microsoft op type -> Handler (the contrib ops graphad itself exports)


class Handler:
    __slots__ = ("fn", "versions", "fold", "available")

    def __init__(self, fn, versions, fold, available):
        self.fn, self.versions, self.fold, self.available = fn, versions, fold, available


_SINCE = {}


def since_version(op_type, opset):
    """The version of an ai.onnx op's schema in force at `opset` (None if there is none)."""
    key = (op_type, opset)
    if key not in _SINCE:
        try:
            _SINCE[key] = onnx.defs.get_schema(op_type, opset, "").since_version
        except onnx.defs.SchemaError:
            _SINCE[key] = None
    return _SINCE[key]


def handler(*op_types, versions=None, fold=True, available=None, domain=""):
    """Register `fn(ctx) -> list of outputs` for op types. `versions`: the schema versions
    (since_version) whose semantics the handler implements (None: all, e.g. elementwise math).
    Outputs are Tensors, constant numpy arrays, `Sym` shape vectors or input Vals."""

    table = MS_HANDLERS if domain == MS_DOMAIN else HANDLERS

    def deco(fn):
        for op in op_types:
            table[op] = Handler(fn, versions, fold, available)
        return fn

    return deco


def lookup(node):
    """The handler of a node, or None."""
    if node.domain in ("", "ai.onnx"):
        return HANDLERS.get(node.op_type)
    return MS_HANDLERS.get(node.op_type) if node.domain == MS_DOMAIN else None


def unsupported_reason(node, opsets):
    """None if the importer maps `node`, else the label under which it is reported."""
    if node.domain not in ("", "ai.onnx"):
        return None if lookup(node) else f"{node.domain}::{node.op_type}"
    h = HANDLERS.get(node.op_type)
    if h is None or (h.available is not None and not h.available()):
        return node.op_type
    since = since_version(node.op_type, opsets[""])
    if since is None:
        return node.op_type
    if h.versions is not None and since not in h.versions:
        return f"{node.op_type} (version {since})"
    return None


def onnx_dtype(ctx, code, what):
    if code not in DTYPES:
        raise ctx.fail(f"{what} {type_name(code)} is not a dtype graphad supports")
    return as_dtype(DTYPES[code].newbyteorder("="))


def ints_of(ctx, arr, what):
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iu" or arr.ndim > 1:
        raise ctx.fail(f"{what} must be a 1-D integer tensor, got {arr.dtype} of shape {arr.shape}")
    return [int(v) for v in arr.ravel()]


# ---------------------------------------------------------------------------------------------
# Elementwise


UNARY = {
    "Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Neg": "negative", "Exp": "exp",
    "Log": "log", "Sqrt": "sqrt", "Abs": "abs", "Reciprocal": "reciprocal", "Erf": "erf",
    "Softplus": "softplus", "Sin": "sin", "Cos": "cos", "Tan": "tan", "Sinh": "sinh",
    "Cosh": "cosh", "Atan": "arctan", "Floor": "floor", "Ceil": "ceil", "Sign": "sign",
    "Round": "round", "Not": "logical_not",
}  # fmt: skip

BINARY = {
    "Add": "add", "Sub": "subtract", "Mul": "multiply", "And": "logical_and",
    "Or": "logical_or", "Equal": "equal", "Less": "less", "Greater": "greater",
    "LessOrEqual": "less_equal", "GreaterOrEqual": "greater_equal",
}  # fmt: skip


@handler(*UNARY)
def _unary(ctx):
    return [getattr(O, UNARY[ctx.node.op_type])(ctx.input(0), name=ctx.out_name)]


@handler(*BINARY)
def _binary(ctx):
    return [getattr(O, BINARY[ctx.node.op_type])(ctx.input(0), ctx.input(1), name=ctx.out_name)]


@handler("Div")
def _div(ctx):
    a, b = ctx.input(0), ctx.input(1)
    if a.dtype.is_floating:
        return [O.divide(a, b, name=ctx.out_name)]
    # ONNX integer division truncates toward zero, as a float -> int cast does (exact below 2^53)
    q = O.divide(O.cast(a, float64), O.cast(b, float64))
    return [O.cast(q, a.dtype, name=ctx.out_name)]


@handler("Pow")
def _pow(ctx):
    a, b = ctx.input(0), ctx.input(1)
    if a.dtype.is_floating or b.dtype.is_integer:
        return [O.power(a, O.cast(b, a.dtype), name=ctx.out_name)]
    return [O.cast(O.power(O.cast(a, b.dtype), b), a.dtype, name=ctx.out_name)]


@handler("Sum", "Max", "Min", "Mean")
def _variadic(ctx):
    op = ctx.node.op_type
    fn = {"Sum": O.add, "Mean": O.add, "Max": O.maximum, "Min": O.minimum}[op]
    xs = ctx.inputs()
    y = xs[0]
    for x in xs[1:]:
        y = fn(y, x)
    return [y / len(xs) if op == "Mean" else y]


@handler("Clip", versions={11, 12, 13})
def _clip(ctx):
    lo = ctx.input(1) if ctx.has(1) else None
    hi = ctx.input(2) if ctx.has(2) else None
    return [O.clip(ctx.input(0), lo, hi, name=ctx.out_name)]


@handler("LeakyRelu")
def _leaky_relu(ctx):
    x, alpha = ctx.input(0), ctx.attr("alpha", "float", 0.01)
    return [O.where(O.greater_equal(x, 0), x, x * alpha, name=ctx.out_name)]


@handler("Where")
def _where(ctx):
    return [O.where(ctx.input(0), ctx.input(1), ctx.input(2), name=ctx.out_name)]


@handler("Identity")
def _identity(ctx):
    if not ctx.has(0):
        raise ctx.fail("input 0 is required")
    return [ctx.vals[0]]


@handler("Cast")
def _cast(ctx):
    to = onnx_dtype(ctx, ctx.attr("to", "int"), "target type")
    if ctx.sym(0) is not None:
        if not to.is_integer:
            raise ctx.fail("a run-time shape can only be cast to an integer type")
        return [ctx.vals[0]]
    return [O.cast(ctx.input(0), to, name=ctx.out_name)]


@handler("Dropout", versions={10, 12, 13, 22})
def _dropout(ctx):
    if ctx.has(2) and (ctx.value(2) is None or bool(np.asarray(ctx.value(2)).any())):
        raise ctx.fail("training_mode must be a constant false (graphad imports inference form)")
    if len(ctx.node.output) > 1 and ctx.node.output[1]:
        raise ctx.fail("the mask output is not supported (inference form only)")
    return [ctx.vals[0]]


# ---------------------------------------------------------------------------------------------
# Linear algebra and neural-network ops


@handler("MatMul")
def _matmul(ctx):
    return [O.matmul(ctx.input(0), ctx.input(1), name=ctx.out_name)]


@handler("Gemm", versions={11, 13})
def _gemm(ctx):
    a, b = ctx.input(0), ctx.input(1)
    if a.ndim != 2 or b.ndim != 2:
        raise ctx.fail(f"A and B must be 2-D, got shapes {a.shape} and {b.shape}")
    if ctx.attr("transA", "int", 0):
        a = O.transpose(a)
    if ctx.attr("transB", "int", 0):
        b = O.transpose(b)
    alpha, beta = ctx.attr("alpha", "float", 1.0), ctx.attr("beta", "float", 1.0)
    y = O.matmul(a, b)
    if alpha != 1.0:
        y = y * alpha
    if ctx.has(2) and beta != 0.0:
        c = ctx.input(2)
        y = y + (c if beta == 1.0 else c * beta)
    return [O.cast(y, a.dtype)]


def _conv_padding(ctx, k):
    auto = ctx.attr("auto_pad", "string", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        return auto
    if auto != "NOTSET":
        raise ctx.fail(f"unknown auto_pad {auto!r}")
    pads = ctx.attr("pads", "ints", [0] * (2 * k))
    if len(pads) != 2 * k:
        raise ctx.fail(f"pads {pads} should have {2 * k} entries")
    return tuple(pads) if k == 2 else (0, pads[0], 0, pads[1])


@handler("Conv", versions={11, 22})
def _conv(ctx):
    x, w = ctx.input(0), ctx.input(1)
    if x.ndim not in (3, 4) or w.ndim != x.ndim:
        raise ctx.fail(f"only 1-D and 2-D convolutions are supported (input and filter of rank "
                       f"3 or 4), got input {x.shape} and filter {w.shape}")
    k = x.ndim - 2
    strides = ctx.attr("strides", "ints", [1] * k)
    dilations = ctx.attr("dilations", "ints", [1] * k)
    kernel = ctx.attr("kernel_shape", "ints", None)
    if kernel is not None and tuple(kernel) != tuple(w.shape[2:]):
        raise ctx.fail(f"kernel_shape {kernel} does not match the filter shape {w.shape}")
    if len(strides) != k or len(dilations) != k:
        raise ctx.fail(f"strides {strides} and dilations {dilations} need {k} entries")
    padding = _conv_padding(ctx, k)
    bias = ctx.input(2) if ctx.has(2) else None
    if k == 1:  # a 1-D convolution is a 2-D one over a height of 1
        x, w = O.expand_dims(x, 2), O.expand_dims(w, 2)
        strides, dilations = [1, strides[0]], [1, dilations[0]]
    y = conv2d(x, w, bias, strides=tuple(strides), padding=padding,
               dilations=tuple(dilations), groups=ctx.attr("group", "int", 1))
    return [O.squeeze(y, 2) if k == 1 else y]


@handler("BatchNormalization", versions={9, 14, 15})
def _batch_norm(ctx):
    if ctx.attr("training_mode", "int", 0):
        raise ctx.fail("training_mode=1 is not supported (graphad imports the inference form)")
    if any(ctx.node.output[1:]):
        raise ctx.fail("the running mean/variance outputs exist only in training mode")
    x = ctx.input(0)
    if x.ndim < 2:
        raise ctx.fail(f"the input must have a channel axis (rank >= 2), got shape {x.shape}")
    scale, bias, mean, var = (O.cast(ctx.input(i), x.dtype) for i in range(1, 5))
    eps = ctx.attr("epsilon", "float", 1e-5)
    # y = (x - mean) / sqrt(var + eps) * scale + bias, folded per channel into x * a + b
    a = scale * O.rsqrt(var + eps)
    b = bias - mean * a
    shape = (-1,) + (1,) * (x.ndim - 2)
    return [O.add(x * O.reshape(a, shape), O.reshape(b, shape), name=ctx.out_name)]


def _softmax_like(fn):
    def handle(ctx):
        x = ctx.input(0)
        if ctx.version < 13:  # opset < 13: normalise over all axes from `axis` on (default 1)
            axis = ctx.attr("axis", "int", 1)
            axis = axis + x.ndim if axis < 0 else axis
            if not 0 <= axis < max(x.ndim, 1):
                raise ctx.fail(f"axis {axis} is out of range for rank {x.ndim}")
            return [fn(x, axis=tuple(range(axis, x.ndim)), name=ctx.out_name)]
        return [fn(x, axis=ctx.attr("axis", "int", -1), name=ctx.out_name)]

    return handle


handler("Softmax", versions={11, 13})(_softmax_like(O.softmax))
handler("LogSoftmax", versions={11, 13})(_softmax_like(O.log_softmax))


REDUCE = {"ReduceMean": ("mean", 18), "ReduceSum": ("sum", 13), "ReduceMax": ("max", 18),
          "ReduceMin": ("min", 18), "ReduceProd": ("prod", 18),
          "ReduceLogSumExp": ("logsumexp", 18)}


@handler(*REDUCE, versions={11, 12, 13, 18, 20})
def _reduce(ctx):
    fn, axes_input_since = REDUCE[ctx.node.op_type]
    x = ctx.input(0)
    if ctx.version >= axes_input_since:
        axes = ints_of(ctx, ctx.const(1, "axes"), "axes") if ctx.has(1) else None
    else:
        axes = ctx.attr("axes", "ints", None)
    if not axes:
        if ctx.attr("noop_with_empty_axes", "int", 0):
            return [x]
        axes = None
    y = getattr(O, fn)(x, axis=None if axes is None else tuple(axes),
                       keepdims=bool(ctx.attr("keepdims", "int", 1)))
    return [O.cast(y, x.dtype)]


# ---------------------------------------------------------------------------------------------
# com.microsoft contrib ops that graphad's own exporter emits (so its models re-import)


def _same_float(ctx, xs):
    dts = {x.dtype for x in xs}
    if len(dts) != 1 or not next(iter(dts)).is_floating:
        raise ctx.fail(f"inputs must share one floating dtype, got {sorted(d.name for d in dts)}")


def _swap_last(x):
    return O.transpose(x, tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2))


@handler("FusedMatMul", domain=MS_DOMAIN)
def _fused_matmul(ctx):
    a, b = ctx.input(0), ctx.input(1)
    _same_float(ctx, (a, b))
    if ctx.attr("transBatchA", "int", 0) or ctx.attr("transBatchB", "int", 0):
        raise ctx.fail("transBatchA / transBatchB are not supported")
    if ctx.attr("transA", "int", 0):
        a = _swap_last(a)
    if ctx.attr("transB", "int", 0):
        b = _swap_last(b)
    y = O.matmul(a, b)
    alpha = ctx.attr("alpha", "float", 1.0)
    return [y if alpha == 1.0 else y * alpha]


@handler("GatedAdd", domain=MS_DOMAIN)
def _gated_add(ctx):
    x, y, gate = ctx.input(0), ctx.input(1), ctx.input(2)
    _same_float(ctx, (x, y, gate))
    return [O.add(x, y * gate, name=ctx.out_name)]


@handler("Inverse", domain=MS_DOMAIN)
def _inverse(ctx):
    x = ctx.input(0)
    _same_float(ctx, (x,))
    return [O.linalg.inv(x)]


# ---------------------------------------------------------------------------------------------
# Control flow: mapped onto ga.cond / ga.while_loop when the op catalogue has them (until then
# `unsupported_reason` reports If and Loop by name). Bodies are imported while being traced.


@handler("If", versions={11, 13, 16, 19, 21, 23, 24, 25}, fold=False,
         available=lambda: hasattr(O, "cond"))
def _if(ctx):
    importer, scope = ctx.importer, ctx.scope

    def branch(gp):
        return lambda *_: tuple(importer.import_subgraph(gp, scope, {}))

    pred = O.reshape(ctx.input(0), ())
    out = O.cond(pred, branch(ctx.attr("then_branch", "graph")),
                 branch(ctx.attr("else_branch", "graph")))
    return list(out) if isinstance(out, (tuple, list)) else [out]


@handler("Loop", versions={11, 13, 16, 19, 21, 23, 24, 25}, fold=False,
         available=lambda: hasattr(O, "while_loop") and hasattr(O, "scan"))
def _loop(ctx):
    """ONNX Loop(M, cond, v...) -> ga.while_loop over (i, cond, v...); with scan outputs (which
    a while loop cannot stack) only the for-loop form maps, onto ga.scan."""
    body = ctx.attr("body", "graph")
    n_carried = ctx.n_inputs - 2
    if len(body.input) != 2 + n_carried or len(body.output) < 1 + n_carried:
        raise ctx.fail(f"the body has {len(body.input)} inputs and {len(body.output)} outputs "
                       f"for {n_carried} loop-carried values")
    if len(body.output) > 1 + n_carried:
        return _loop_as_scan(ctx, body, n_carried)
    importer, scope = ctx.importer, ctx.scope
    trips = O.reshape(ctx.input(0), ()) if ctx.has(0) else None
    names = [vi.name for vi in body.input]  # (iteration number, condition, carried...)

    def cond_fn(val):
        return val[1] if trips is None else O.logical_and(val[1], O.less(val[0], trips))

    def body_fn(val):
        outs = importer.import_subgraph(body, scope, dict(zip(names, val)))
        return (val[0] + 1, O.reshape(outs[0], ()), *outs[1:])

    cond0 = O.reshape(ctx.input(1), ()) if ctx.has(1) else constant(True)
    carried = [ctx.input(i) for i in range(2, ctx.n_inputs)]
    init = (constant(0, dtype="int64"), cond0, *carried)
    return list(O.while_loop(cond_fn, body_fn, init)[2:])


def _loop_as_scan(ctx, body, n_carried):
    """A Loop with scan outputs, a constant trip count and a condition that stays true."""
    trips = ctx.value(0)
    cond0 = ctx.value(1) if ctx.has(1) else np.asarray(True)
    if trips is None or trips.size != 1 or cond0 is None or not bool(np.all(cond0)):
        raise ctx.fail("a Loop with scan outputs needs a constant trip count and no (or a "
                       "constant true) condition")
    importer, scope = ctx.importer, ctx.scope
    names = [vi.name for vi in body.input]

    def step(carry, _):
        i, *vs = carry
        bound = dict(zip(names, [i, np.asarray(True), *vs]))
        outs = importer.import_subgraph(body, scope, bound)
        c = outs[0]
        if c.node.op != "constant" or not bool(np.all(c.node.attrs["value"])):
            raise ctx.fail("a Loop with scan outputs must keep its condition true")
        return (i + 1, *outs[1:1 + n_carried]), tuple(outs[1 + n_carried:])

    carried = [ctx.input(i) for i in range(2, ctx.n_inputs)]
    init = (constant(0, dtype="int64"), *carried)
    carry, ys = O.scan(step, init, None, length=int(trips.ravel()[0]))
    return list(carry[1:]) + list(ys)


from . import onnx_import_shapes  # noqa: E402,F401  (registers the shape-op handlers)
