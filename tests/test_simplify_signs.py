"""The sign / scalar-factor / scattered-sum rules (graphad/passes/simplify_signs.py): structure
after simplify, equivalence on onnxruntime and the interpreter, a declined guard with its
reason, and the W5 Hessian-vector product graph they were written for."""

import numpy as np

import graphad as ga
from graphad.passes import simplify, verify
from test_passes_core import X3, assert_same, live_ops, program, run_ort, run_ref


def _simplified(ys, feeds=X3, **kw):
    prog = program(*ys)
    declines = []
    new = simplify(prog, declines=declines, **kw)
    verify(new)
    assert_same(run_ort(new, feeds), run_ort(prog, feeds))
    assert_same(run_ref(new, feeds), run_ref(prog, feeds))
    return new, declines


def test_signs_move_out_and_cancel():
    g = ga.Graph()
    with g:
        x = ga.placeholder((3,), name="x")
        y = ga.placeholder((3,), name="y")
        a = -((-x) * 2.0)          # neg(mul(neg x, 2)) -> x * 2
        b = (-x) * (-y)            # -> x * y
        c = y + (-x) * y           # -> y - x * y
    feeds = {"x": X3["x"], "y": np.array([2.0, -1.0, 0.5], np.float32)}
    new, _ = _simplified([a, b, c], feeds)
    assert "negative" not in live_ops(new)


def test_scalar_factors_merge_when_exact():
    g = ga.Graph()
    with g:
        x = ga.placeholder((3,), name="x")
        exact = (x * 2.0) * 100.0      # a power of two, both >= 1: one Mul by 200
        inexact = (x * 3.0) * 0.1      # 0.3 rounds differently: declined in exact mode
    new, declines = _simplified([exact, inexact])
    muls = [op for op in live_ops(new) if op == "multiply"]
    assert len(muls) == 3
    assert any(d["rule"] == "mul(mul(x, c1), c2) -> mul(x, c1 c2)" and "exact" in d["reason"]
               for d in declines)
    fast, _ = _simplified([exact, inexact], exact=False)
    assert [op for op in live_ops(fast) if op == "multiply"] == ["multiply"] * 2


def test_scattered_slices_of_one_shape_are_summed_before_one_pad():
    g = ga.Graph()
    with g:
        x = ga.placeholder((3,), name="x")
        loss = ga.sum(ga.sin(x[1:]) + ga.cos(x[1:]) * 2.0 + x[:-1] ** 2)
        (gx,) = ga.gradients(loss, [x])
    new, _ = _simplified([gx])
    ops = live_ops(new)
    assert ops.count("scatter_slice") == 2, ops  # one per distinct slice, not one per use


def test_w5_hvp_graph_shrinks():
    def rosen(x):
        return ga.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    x = np.linspace(-1, 1, 50).astype(np.float32)
    v = np.cos(np.arange(50)).astype(np.float32)
    fn = ga.jit(lambda x, v: ga.hvp(rosen, (x,), (v,)))
    model = fn.trace(x, v).to_onnx()
    ops = [n.op_type for n in model.graph.node]
    assert "Neg" not in ops and ops.count("Pad") == 2 and len(ops) <= 20, ops
    d = 1200 * x[:-1] ** 2 - 400 * x[1:] + 2
    want = np.zeros(50)
    want[:-1] += d * v[:-1] - 400 * x[:-1] * v[1:]
    want[1:] += 200 * v[1:] - 400 * x[:-1] * v[:-1]
    np.testing.assert_allclose(fn(x, v), want, rtol=2e-5, atol=2e-3)
