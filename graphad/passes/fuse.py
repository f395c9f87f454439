"""Fusion: rewrite patterns into the forms onnxruntime runs fastest, then tag elementwise chains.

Each rule below was measured on onnxruntime 1.31 CPU (ONNX_NOTES.md has the method): MatMul with
a 1-D right operand is 4-40x slower than `v @ A^T` as one FusedMatMul; ReduceSum over the leading
axis is up to 20x slower than `ones @ x`; GatedAdd does `x + h*y` in one node. Transposes and
scalar factors are absorbed into FusedMatMul (onnxruntime would do that too; doing it here keeps
the graph small and loop bodies short). Elementwise chains are only tagged (fuse_elementwise.py):
exported as ONNX local functions they ran exactly as fast as unfused (onnxruntime inlines them
and has no generic elementwise fusion on CPU).
"""

import numpy as np

from ..types import float32, float64, is_static
from .dce import eliminate_dead_code
from .fuse_elementwise import tag_elementwise_groups
from .fuse_ops import FUSED_GATED_ADD, FUSED_MATMUL, gate_shape
from .rewrite import Builder, Decline, Rule, apply_rules, count_uses, graph_pass, index_rules, \
    rebuild

__all__ = ["fuse", "fuse_patterns", "RULES"]

MAX_ONES = 1 << 20  # longest ones vector (a constant) a leading-axis sum becomes a product with


live_uses = count_uses  # the name loop_batch imports


def _out(b, op, inputs, attrs=None):
    return b.add(op, inputs, attrs or {}).outputs[0]


def outer_value(t):
    """The outermost tensor `t` stands for: a capture placeholder stands for its outer tensor."""
    while t.node.op == "placeholder" and t.node.attrs.get("captured"):
        g = t.node.graph
        outer = next((o for o, ph in g.captures.items() if ph is t), None)
        if outer is None:
            return t
        t = outer
    return t


def _swaps_last_two(t):
    """x when t = transpose(x) swapping only the last two axes (t may be a capture of such a
    transpose; x is then a tensor of an enclosing graph: see `_inside`), else None."""
    src = outer_value(t)
    n = src.node
    if n.op != "transpose" or len(t.shape) < 2:
        return None
    r = len(t.shape)
    if tuple(n.attrs["perm"]) != tuple(range(r - 2)) + (r - 1, r - 2):
        return None
    return n.inputs[0]


def _inside(b, t):
    """`t` as seen from the graph being built (a capture when t belongs to an enclosing
    graph). In rebuild's probe nothing may be built: report that the rule fires instead."""
    g = b.graph
    if t.node.graph is g:
        return t
    if not isinstance(b, Builder):
        b.const(0)  # the probe builder raises "would fire" here
    return g.capture(t)


def _single_use(b, k):
    """Whether input k of the node being rewritten has no other use (so fusing it into this
    node does not compute it twice)."""
    return b.ctx["uses"].get(id(b.node.inputs[k]), 0) <= 1


def _uniform_scalar(t):
    """The value of a constant (or a capture of one) of one element."""
    n = outer_value(t).node
    if n.op != "constant" or any(d != 1 for d in t.shape):
        return None
    a = n.attrs["value"]
    return a.reshape(-1)[0].item()


def _matvec(b, A, v):
    """A @ v for 1-D v as v @ A^T; when A = B^T already, plain v @ B."""
    base = _swaps_last_two(A)
    if base is not None:
        return ("matmul", [v, _inside(b, base)], {})
    return (FUSED_MATMUL, [v, A], {"trans_a": False, "trans_b": True, "alpha": 1.0})


# ---------------------------------------------------------------------------------------------
# Rules


def matvec(node, ins, b):
    A, v = ins
    if len(v.shape) != 1 or len(A.shape) < 2:
        return None
    if not A.dtype.is_floating:
        return Decline(f"{A.dtype.name} matmul: FusedMatMul has floating kernels only")
    op, inputs, attrs = _matvec(b, A, v)
    return _out(b, op, inputs, attrs)


def squeezed_matvec(node, ins, b):
    """squeeze(A @ expand_dims(v, -1), -1) (how matrix-vector VJPs are written) -> v @ A^T."""
    (m,) = ins
    mn = m.node
    if mn.op not in ("matmul", "fused_matmul") or len(m.shape) < 2 or \
            tuple(node.attrs["axes"]) != (len(m.shape) - 1,):
        return None
    A, e = mn.inputs
    en = e.node
    if en.op != "expand_dims" or len(e.shape) != 2 or tuple(en.attrs["axes"]) != (1,):
        return None
    if not A.dtype.is_floating:
        return Decline(f"{A.dtype.name} matmul: FusedMatMul has floating kernels only")
    v = en.inputs[0]
    if mn.op == "matmul":
        op, inputs, attrs = _matvec(b, A, v)
        return _out(b, op, inputs, attrs)
    at = mn.attrs
    if at["trans_b"]:
        return None
    if at["trans_a"] and at["alpha"] == 1.0:  # op(A) = A^T: A^T v = v @ A
        return _out(b, "matmul", [v, A])
    return _out(b, FUSED_MATMUL, [v, A], {"trans_a": False, "trans_b": not at["trans_a"],
                                          "alpha": at["alpha"]})


def transposed_operand(node, ins, b):
    a, bb = ins
    if len(a.shape) < 2 or len(bb.shape) < 2:
        return None
    a0, b0 = _swaps_last_two(a), _swaps_last_two(bb)
    if a0 is None and b0 is None:
        return None
    if not a.dtype.is_floating:
        return Decline(f"{a.dtype.name} matmul: FusedMatMul has floating kernels only")
    attrs = {"trans_a": a0 is not None, "trans_b": b0 is not None, "alpha": 1.0}
    return _out(b, FUSED_MATMUL, [a if a0 is None else _inside(b, a0),
                                  bb if b0 is None else _inside(b, b0)], attrs)


def scaled_matmul(node, ins, b):
    """mul(matmul(a, b), c) -> fused_matmul(a, b, alpha=c) for a scalar constant c."""
    for k in (0, 1):
        m, c = ins[k], ins[1 - k]
        if m.node.op not in ("matmul", "fused_matmul") or len(m.node.inputs[1].shape) < 2:
            continue
        value = _uniform_scalar(c)
        if value is None or len(c.shape) > len(m.shape) or not m.dtype.is_floating:
            continue
        if float(np.float32(value)) != value:  # FusedMatMul's alpha is a float32 attribute
            return Decline(f"factor {value!r} is not exact in float32 (FusedMatMul's alpha)")
        if not _single_use(b, k):
            return Decline("the product has other uses (it would be computed twice)")
        mn = m.node
        at = dict(mn.attrs) if mn.op == "fused_matmul" else {"trans_a": False, "trans_b": False,
                                                             "alpha": 1.0}
        at["alpha"] = at["alpha"] * value
        return _out(b, FUSED_MATMUL, list(mn.inputs), at)
    return None


def leading_sum(node, ins, b):
    """sum(x, axes=(0..k-1)) -> ones(P) @ reshape(x, (P, R)): ReduceSum over leading axes is
    slow in onnxruntime (287 us vs 13 us at 256x512 with 2 threads), the GEMV path is not."""
    (x,) = ins
    axes, r = tuple(node.attrs["axes"]), len(x.shape)
    k = len(axes)
    if r < 2 or not axes or axes != tuple(range(k)) or k >= r:
        return None
    if x.dtype not in (float32, float64):
        return Decline(f"{x.dtype.name} sum: only float32/float64 go through MatMul")
    if not is_static(x.shape):
        return Decline(f"shape {x.shape} is not static (the ones vector needs its length)")
    lead, rest = x.shape[:k], x.shape[k:]
    p, q = int(np.prod(lead)), int(np.prod(rest))
    if p == 1:
        return None
    if p > MAX_ONES:
        return Decline(f"{p} summed rows: the ones vector would be a large constant")
    x2 = x if (k == 1 and r == 2) else _out(b, "reshape", [x], {"shape": (p, q)})
    y = _out(b, "matmul", [b.const(np.ones(p, x.dtype.np)), x2])
    shape = (1,) * k + tuple(rest) if node.attrs["keepdims"] else tuple(rest)
    return y if shape == (q,) else _out(b, "reshape", [y], {"shape": shape})


def _gate(b, h, x):
    value = _uniform_scalar(h)
    if value is None:
        return Decline("the factor is not a scalar constant (a broadcast node per call would "
                       "cancel the gain)")
    return b.const(np.full(gate_shape(x.shape), value, np.float32))


def gated_add(node, ins, b):
    """add(x, mul(y, h)) -> GatedAdd(x, y, h) for float32 x, y of one static shape."""
    for k in (0, 1):
        x, m = ins[k], ins[1 - k]
        if m.node.op != "multiply":
            continue
        why = _gated_guard(x, m, node)
        if why is not None:
            return why
        for j in (0, 1):
            y, h = m.node.inputs[j], m.node.inputs[1 - j]
            if tuple(y.shape) == tuple(x.shape) and len(h.shape) <= len(x.shape):
                gate = _gate(b, h, x)
                if isinstance(gate, Decline):
                    continue
                if not _single_use(b, 1 - k):
                    return Decline("the product has other uses (it would be computed twice)")
                return _out(b, FUSED_GATED_ADD, [x, y, gate])
    return None


def _gated_guard(x, m, node):
    if x.dtype is not float32:
        return Decline(f"{x.dtype.name}: onnxruntime's GatedAdd is float32 only")
    if not x.shape or not is_static(x.shape) or tuple(node.outputs[0].shape) != tuple(x.shape):
        return Decline(f"shape {x.shape}: GatedAdd needs x static and unbroadcast")
    return None


def exp_log_softmax(node, ins, b):
    (s,) = ins
    if s.node.op != "log_softmax":
        return None
    return _out(b, "softmax", [s.node.inputs[0]], {"axes": s.node.attrs["axes"]})


RULES = [
    Rule("matmul(A, v) -> fused_matmul(v, A, trans_b)", ("matmul",), matvec),
    Rule("matmul(transpose(A), B) -> fused_matmul(A, B, trans_a)", ("matmul",),
         transposed_operand),
    Rule("squeeze(matmul(A, expand_dims(v, -1)), -1) -> fused_matmul(v, A, trans_b)",
         ("squeeze",), squeezed_matvec),
    Rule("mul(matmul(a, b), c) -> fused_matmul(a, b, alpha=c)", ("multiply",), scaled_matmul),
    Rule("sum(x, leading axes) -> ones @ x", ("sum",), leading_sum),
    Rule("add(x, mul(y, h)) -> gated_add(x, y, h)", ("add",), gated_add),
    Rule("exp(log_softmax(z)) -> softmax(z)", ("exp",), exp_log_softmax),
]


def _type_kept(new, old):
    if new.dtype is not old.dtype or len(new.shape) != len(old.shape):
        return False
    return all(a == c or c is None for a, c in zip(new.shape, old.shape))


def make_fuse(rules=None):
    by_op = index_rules(RULES if rules is None else rules)

    def rewrite(node, inputs, b):
        if node.op not in by_op:
            return None
        res = apply_rules(by_op, node, inputs, b)
        if res is None:
            return None
        for new, old in zip(res, node.outputs):
            if not _type_kept(new.type, old.type):
                b.decline("type check", f"a rule gave {new.type!r} for {old.type!r}")
                return None
        return res

    return rewrite


@graph_pass
def fuse_patterns(prog, rules=None, declines=None, fires=None):
    """Apply the fusion rules (RULES) everywhere, loop bodies included; dead nodes dropped."""
    ctx = {"uses": live_uses(prog)}
    # the probe (rebuild's cheap "would anything fire?" scan) does not record declines
    new = rebuild(prog, make_fuse(rules), declines=declines, fires=fires, ctx=ctx,
                  probe=declines is None)
    return new if new is prog else eliminate_dead_code(new)


@graph_pass
def fuse(prog, declines=None, fires=None):
    """The fusion pass: the pattern rules, then elementwise chains tagged `fused`."""
    new = fuse_patterns(prog, declines=declines, fires=fires)
    return tag_elementwise_groups(new, in_place=new is not prog)
