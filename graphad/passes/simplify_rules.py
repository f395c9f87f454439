"""The algebraic rule table: each rule is `before -> after` with a guard that returns a reason
(a Decline) when it refuses. No rule changes an output's shape or dtype (simplify re-checks)."""

import numpy as np

from ..types import is_static
from .rewrite import Decline, Rule, count_uses  # noqa: F401  (count_uses: for simplify)
from .simplify import MAYBE_UNIFORM, fits_into, same_shape
from .simplify_signs import SIGN_RULES

__all__ = ["RULES", "count_uses"]

MAX_SUM_OPERANDS = 64  # add chains longer than this become several Sums (no quadratic copying)


def _facts(b):
    return b.ctx["facts"]


def _add(b, op, inputs, attrs=None):
    return b.add(op, inputs, attrs or {}).outputs[0]


def zeros(b, out, like=None):
    """Zeros of `out`'s type: a scalar constant broadcast (static shape) or full_like(like)."""
    return _ones_or_zeros(b, out, 0, like)


def _operand_with(node, ins, b, value, commutative=True):
    """(i, x) where the other operand is uniformly `value` and fits into x's shape; a Decline
    when only the shape guard fails; None when no operand has that value."""
    f = _facts(b)
    why = None
    for i in (0, 1) if commutative else (0,):
        x, c = ins[i], ins[1 - i]
        if f.is_value(c, value):
            if fits_into(c.shape, x.shape):
                return i, x
            why = Decline(f"the constant {value} of shape {c.shape} would broadcast "
                          f"{x.shape} (the result must keep its shape)")
    return why


# ---------------------------------------------------------------------------------------------
# Identities of arithmetic


def add_zero(node, ins, b):
    hit = _operand_with(node, ins, b, 0)
    return hit if hit is None or isinstance(hit, Decline) else hit[1]


def sub_zero(node, ins, b):
    hit = _operand_with(node, ins, b, 0, commutative=False)
    return hit if hit is None or isinstance(hit, Decline) else hit[1]


def zero_sub(node, ins, b):
    if not _facts(b).is_value(ins[0], 0):
        return None
    if not fits_into(ins[0].shape, ins[1].shape):
        return Decline("the zero would broadcast the other operand")
    return _add(b, "negative", [ins[1]])


def mul_one(node, ins, b):
    hit = _operand_with(node, ins, b, 1)
    return hit if hit is None or isinstance(hit, Decline) else hit[1]


def mul_minus_one(node, ins, b):
    if node.outputs[0].dtype.is_bool:
        return None
    hit = _operand_with(node, ins, b, -1)
    if hit is None or isinstance(hit, Decline):
        return hit
    return _add(b, "negative", [hit[1]])


def div_one(node, ins, b):
    hit = _operand_with(node, ins, b, 1, commutative=False)
    return hit if hit is None or isinstance(hit, Decline) else hit[1]


def mul_zero(node, ins, b):
    f = _facts(b)
    if not (f.is_value(ins[0], 0) or f.is_value(ins[1], 0)):
        return None
    out = node.outputs[0]
    if out.dtype.is_floating and f.exact:
        return Decline("x * 0 is NaN for x = inf or NaN (IEEE); exact mode keeps it")
    other = ins[1] if f.is_value(ins[0], 0) else ins[0]
    z = zeros(b, out, like=other)
    return z if z is not None else Decline("result shape has unknown dims")


def sub_self(node, ins, b):
    if ins[0] is not ins[1]:
        return None
    out = node.outputs[0]
    if out.dtype.is_floating and _facts(b).exact:
        return Decline("x - x is NaN for x = inf or NaN (IEEE); exact mode keeps it")
    z = zeros(b, out, like=ins[0])
    return z if z is not None else Decline("result shape has unknown dims")


def add_neg(node, ins, b):
    for i in (0, 1):
        if ins[1 - i].node.op == "negative":
            return _add(b, "subtract", [ins[i], ins[1 - i].node.inputs[0]])
    return None


def sub_neg(node, ins, b):
    if ins[1].node.op == "negative":
        return _add(b, "add", [ins[0], ins[1].node.inputs[0]])
    return None


def neg_neg(node, ins, b):
    x = ins[0]
    return x.node.inputs[0] if x.node.op == "negative" else None


def same_operands(node, ins, b):
    return ins[0] if ins[0] is ins[1] else None


def where_same(node, ins, b):
    c, x, y = ins
    if x is not y:
        return None
    if not fits_into(c.shape, x.shape):
        return Decline("the condition would broadcast the result")
    return x


def where_const(node, ins, b):
    c, x, y = ins
    v = _facts(b).uniform(c)
    if v is None:
        return None
    pick, other = (x, y) if bool(v) else (y, x)
    if not (fits_into(c.shape, pick.shape) and fits_into(other.shape, pick.shape)):
        return Decline("the other operands would broadcast the chosen one")
    return pick


def _ones_or_zeros(b, out, value, like):
    dt = out.dtype
    if out.shape == ():
        return b.const(np.asarray(value, dt.np))
    if is_static(out.shape):
        return _add(b, "broadcast_to", [b.const(np.asarray(value, dt.np))], {"shape": out.shape})
    if like is not None and tuple(like.shape) == tuple(out.shape):
        return _add(b, "full_like", [like], {"value": dt.np.type(value).item(), "dtype": dt})
    return None


def pow_const(node, ins, b):
    """pow(x, 1) -> x; pow(x, 0) -> 1 (IEEE pow(x, 0) is 1 even for NaN); pow(x, 2) ->
    square(x) (x * x: what numpy's and onnxruntime's Pow compute for exponent 2)."""
    x, e = ins
    v = _facts(b).uniform(e)
    if v is None or v not in (0, 1, 2):
        return None
    if not fits_into(e.shape, x.shape):
        return Decline("the exponent would broadcast x")
    if v == 1:
        return x
    if v == 2:
        return _add(b, "square", [x])
    r = _ones_or_zeros(b, node.outputs[0], 1, x)
    return r if r is not None else Decline("result shape has unknown dims")


# Elementwise ops whose value on uniform inputs is the op applied to the scalars, broadcast.
ELEMENTWISE = frozenset({
    "add", "subtract", "multiply", "divide", "power", "negative", "reciprocal", "square", "abs",
    "sign", "maximum", "minimum", "sqrt", "rsqrt", "exp", "expm1", "log", "log1p", "sin", "cos",
    "tan", "tanh", "arctan", "sinh", "cosh", "softplus", "erf", "sigmoid", "relu", "floor",
    "ceil", "cast",
})


def uniform_elementwise(node, ins, b):
    """op(broadcast(a), broadcast(b)) -> broadcast(op(a, b)): a known value computed once."""
    from ..interpret import run_node  # noqa: PLC0415

    consts = 0
    for t in ins:
        op = t.node.op
        if op not in MAYBE_UNIFORM:
            return None  # the common case, decided cheaply
        consts += op == "constant"
    if consts == len(ins):
        return None  # fold_constants' job (within its size cap)
    f = _facts(b)
    vals = [f.uniform(t) for t in ins]
    if any(v is None for v in vals):
        return None
    out = node.outputs[0]
    if not is_static(out.shape):
        return Decline("result shape has unknown dims")
    args = [np.asarray(v, dtype=t.dtype.np) for v, t in zip(vals, ins)]
    try:
        with np.errstate(all="ignore"):
            (r,) = run_node(node, *args)
    except Exception as e:  # noqa: BLE001  (a reference refusing scalars: leave the node)
        return Decline(f"reference failed on scalars: {type(e).__name__}")
    c = b.const(np.asarray(r, dtype=out.dtype.np).reshape(()))
    return c if out.shape == () else _add(b, "broadcast_to", [c], {"shape": out.shape})


_BINARY = ("add", "subtract", "multiply", "divide", "maximum", "minimum", "power")


def unbroadcast_operand(node, ins, b):
    """op(x, broadcast_to(y)) -> op(x, y) when x alone gives the result its shape: the
    elementwise op broadcasts anyway (one Expand less)."""
    for i in (0, 1):
        t, other = ins[i], ins[1 - i]
        if t.node.op != "broadcast_to":
            continue
        y = t.node.inputs[0]
        if tuple(other.shape) == tuple(node.outputs[0].shape) and fits_into(y.shape, other.shape) \
                and y.dtype is t.dtype:
            new = list(ins)
            new[i] = y
            return _add(b, node.op, new)
    return None


def unreduce_uniform(node, ins, b):
    """unreduce(c, like) -> broadcast(c or c / count): the seed of a gradient needs no Expand
    of a forward tensor's run-time shape."""
    g, like = ins
    v = _facts(b).uniform(g)
    out = node.outputs[0]
    if v is None or not is_static(out.shape):
        return None
    value = np.asarray(v, dtype=out.dtype.np)
    if node.attrs["mean"]:
        count = int(np.prod([like.shape[a] for a in node.attrs["axes"]]))
        value = value / np.asarray(count, dtype=out.dtype.np)
    c = b.const(np.asarray(value, dtype=out.dtype.np).reshape(()))
    return c if out.shape == () else _add(b, "broadcast_to", [c], {"shape": out.shape})


# ---------------------------------------------------------------------------------------------
# exp / log


_NONNEGATIVE = frozenset({"exp", "sigmoid", "softplus", "square", "abs", "sqrt", "relu",
                          "softmax"})


def exp_log(node, ins, b):
    x = ins[0]
    if x.node.op != "log":
        return None
    y = x.node.inputs[0]
    v = _facts(b).uniform(y)
    if y.node.op in _NONNEGATIVE or (v is not None and v >= 0) or not _facts(b).exact:
        return y
    return Decline(f"exp(log(x)) is NaN for x < 0; x ({y.node.op}) is not known to be >= 0")


def log_exp(node, ins, b):
    x = ins[0]
    if x.node.op != "exp":
        return None
    if _facts(b).exact:
        return Decline("exp(x) overflows to inf (and underflows to 0) for large |x|; "
                       "exact mode keeps log(exp(x))")
    return x.node.inputs[0]


# ---------------------------------------------------------------------------------------------
# Layout: transpose, reshape, broadcast, squeeze/expand_dims, cast


def transpose_rule(node, ins, b):
    x, perm = ins[0], tuple(node.attrs["perm"])
    if perm == tuple(range(len(perm))):
        return x
    if x.node.op != "transpose":
        return None
    inner = tuple(x.node.attrs["perm"])
    composed = tuple(inner[j] for j in perm)
    src = x.node.inputs[0]
    if composed == tuple(range(len(composed))):
        return src
    return _add(b, "transpose", [src], {"perm": composed})


_RESHAPES = frozenset({"reshape", "squeeze", "expand_dims"})


def reshape_rule(node, ins, b):
    x = ins[0]
    out = node.outputs[0]
    if tuple(x.shape) == tuple(out.shape) and sum(not isinstance(d, int)
                                                  for d in x.shape) <= 1:
        return x
    if x.node.op in _RESHAPES and node.op == "reshape":
        return _add(b, "reshape", [x.node.inputs[0]], {"shape": node.attrs["shape"]})
    return None


def reshape_like_rule(node, ins, b):
    x, y = ins
    return x if same_shape(x.shape, y.shape) else None


def squeeze_expand(node, ins, b):
    x = ins[0]
    inverse = {"squeeze": "expand_dims", "expand_dims": "squeeze"}[node.op]
    if x.node.op == inverse and tuple(x.node.attrs["axes"]) == tuple(node.attrs["axes"]):
        return x.node.inputs[0]
    return None


def broadcast_rule(node, ins, b):
    x = ins[0]
    out = node.outputs[0]
    if tuple(x.shape) == tuple(out.shape):
        return x
    if x.node.op == "broadcast_to":
        if not is_static(node.attrs["shape"]):
            return Decline("outer target has unknown dims (they would keep the inner's dims)")
        return _add(b, "broadcast_to", [x.node.inputs[0]], {"shape": node.attrs["shape"]})
    return None


def broadcast_like_rule(node, ins, b):
    x, y = ins
    if fits_into(y.shape, x.shape):
        return x
    if is_static(y.shape) and fits_into(x.shape, y.shape):
        return _add(b, "broadcast_to", [x], {"shape": y.shape})
    return None


def sum_to_like_rule(node, ins, b):
    g, x = ins
    return g if same_shape(g.shape, x.shape) else None


def full_like_static(node, ins, b):
    x = ins[0]
    if not is_static(x.shape):
        return None
    a = node.attrs
    return _add(b, "full", [], {"shape": tuple(x.shape), "value": a["value"], "dtype": a["dtype"]})


def _lossless(src, dst):
    if src is dst or src.is_bool:
        return True
    if src.is_integer:
        return (dst.is_integer and dst.bits >= src.bits) or (dst.is_floating and dst.bits > 32
                                                              and src.bits <= 32)
    if src.is_floating:
        return dst.is_floating and dst.bits >= src.bits
    return False


def cast_rule(node, ins, b):
    x = ins[0]
    dt = node.attrs["dtype"]
    if x.dtype is dt:
        return x
    if x.node.op != "cast":
        return None
    src = x.node.inputs[0]
    if not _lossless(src.dtype, x.dtype):
        return Decline(f"the first cast {src.dtype.name} -> {x.dtype.name} may lose values")
    if src.dtype is dt:
        return src
    return _add(b, "cast", [src], {"dtype": dt})


def sum_no_axes(node, ins, b):
    return ins[0] if tuple(node.attrs["axes"]) == () else None


def stop_stop(node, ins, b):
    return ins[0] if ins[0].node.op == "stop_gradient" else None


# ---------------------------------------------------------------------------------------------
# Sums: zeros dropped from add_n, add chains into one n-ary Sum


def _single_use(b, old):
    return b.ctx["uses"].get(id(old), 0) == 1


def _flatten_sum(node, ins, b):
    """Operands of node with single-use float add/add_n operands spliced in (one level)."""
    out = []
    spliced = False
    for old, new in zip(node.inputs, ins):
        op = new.node.op
        if op in ("add", "add_n") and new.dtype.is_floating and _single_use(b, old) \
                and new.node.graph is b.graph and new.dtype is node.outputs[0].dtype:
            out.extend(new.node.inputs)
            spliced = True
        else:
            out.append(new)
    return out, spliced


def add_chain(node, ins, b):
    if not node.outputs[0].dtype.is_floating:
        return None
    flat, spliced = _flatten_sum(node, ins, b)
    if not spliced:
        return None
    if len(flat) > MAX_SUM_OPERANDS:
        return Decline(f"the Sum would have {len(flat)} > {MAX_SUM_OPERANDS} operands")
    return _add(b, "add_n", flat)


def add_n_rule(node, ins, b):
    f = _facts(b)
    keep = [t for t in ins if not f.is_value(t, 0)]
    dropped = [t for t in ins if f.is_value(t, 0)]
    out = node.outputs[0]
    if not keep:
        z = zeros(b, out)
        return z if z is not None else Decline("all operands are zero but the shape is unknown")
    if dropped and not all(any(fits_into(z.shape, k.shape) for k in keep) for z in dropped):
        return Decline("a zero operand sets the result's shape")
    flat, spliced = _flatten_sum(node, ins, b) if not dropped else (keep, False)
    if not dropped and not spliced:
        return None
    if len(flat) == 1:
        return flat[0] if tuple(flat[0].shape) == tuple(out.shape) else None
    if len(flat) > MAX_SUM_OPERANDS:
        return Decline(f"the Sum would have {len(flat)} > {MAX_SUM_OPERANDS} operands")
    return _add(b, "add_n", flat)


# ---------------------------------------------------------------------------------------------
# The table


RULES = (
    Rule("op(uniform...) -> broadcast(op(scalars))", tuple(sorted(ELEMENTWISE)),
         uniform_elementwise),
    Rule("unreduce(c, like) -> broadcast(c)", ("unreduce",), unreduce_uniform),
    Rule("op(x, broadcast_to(y)) -> op(x, y)", _BINARY, unbroadcast_operand),
    Rule("pow(x, 1) -> x; pow(x, 0) -> 1; pow(x, 2) -> square(x)", ("power",), pow_const),
    Rule("add(x, 0) -> x", ("add",), add_zero),
    Rule("add(x, neg(y)) -> sub(x, y)", ("add",), add_neg),
    Rule("add(add(a, b), c) -> add_n(a, b, c)", ("add",), add_chain),
    Rule("add_n(..., 0, ...) -> add_n(...); add_n(add_n(a, b), c) -> add_n(a, b, c)",
         ("add_n",), add_n_rule),
    Rule("sub(x, 0) -> x", ("subtract",), sub_zero),
    Rule("sub(0, x) -> neg(x)", ("subtract",), zero_sub),
    Rule("sub(x, neg(y)) -> add(x, y)", ("subtract",), sub_neg),
    Rule("sub(x, x) -> 0", ("subtract",), sub_self),
    Rule("mul(x, 1) -> x", ("multiply",), mul_one),
    Rule("mul(x, -1) -> neg(x)", ("multiply",), mul_minus_one),
    Rule("mul(x, 0) -> 0", ("multiply",), mul_zero),
    Rule("div(x, 1) -> x", ("divide",), div_one),
    Rule("neg(neg(x)) -> x", ("negative",), neg_neg),
    Rule("max(x, x) -> x; min(x, x) -> x", ("maximum", "minimum"), same_operands),
    Rule("where(c, x, x) -> x", ("where",), where_same),
    Rule("where(true, x, y) -> x", ("where",), where_const),
    Rule("exp(log(x)) -> x", ("exp",), exp_log),
    Rule("log(exp(x)) -> x", ("log",), log_exp),
    Rule("transpose(transpose(x, p), q) -> transpose(x, p o q)", ("transpose",), transpose_rule),
    Rule("reshape(reshape(x, a), b) -> reshape(x, b)", ("reshape",), reshape_rule),
    Rule("reshape_like(x, y) -> x (same shape)", ("reshape_like",), reshape_like_rule),
    Rule("squeeze(expand_dims(x, a), a) -> x", ("squeeze", "expand_dims"), squeeze_expand),
    Rule("broadcast_to(broadcast_to(x, a), b) -> broadcast_to(x, b)", ("broadcast_to",),
         broadcast_rule),
    Rule("broadcast_to_like(x, y) -> x | broadcast_to(x, y.shape)", ("broadcast_to_like",),
         broadcast_like_rule),
    Rule("sum_to_like(g, x) -> g (same shape)", ("sum_to_like",), sum_to_like_rule),
    Rule("full_like(x, v) -> full(x.shape, v) (static shape)", ("full_like",), full_like_static),
    Rule("cast(cast(x, a), b) -> cast(x, b) (lossless a)", ("cast",), cast_rule),
    Rule("sum(x, axes=()) -> x", ("sum",), sum_no_axes),
    Rule("stop_gradient(stop_gradient(x)) -> stop_gradient(x)", ("stop_gradient",), stop_stop),
) + SIGN_RULES
