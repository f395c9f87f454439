"""The fusion pass: its ops (fused_matmul, fused_gated_add: values, derivatives), each rule on a
tiny graph with structural asserts and its declined guard's reason, onnxruntime before/after
equivalence, idempotence, and convex grouping of elementwise chains (the diamond case)."""

import numpy as np
import pytest

import graphad as ga
from graphad.interpret import evaluate
from graphad.passes import Program
from graphad.passes.fuse import fuse, fuse_patterns
from graphad.passes.fuse_elementwise import elementwise_groups, tag_elementwise_groups
from graphad.passes.fuse_ops import fused_gated_add, fused_matmul
from graphad.passes.rewrite import live_nodes
from test_passes_core import check_pass, program, run_ort

RNG = np.random.default_rng(0)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def live_ops(prog):
    return [n.op for n in live_nodes(prog)]


def body_ops(prog):
    return [n.op for n in live_nodes(prog)]


# ---------------------------------------------------------------------------------------------
# The ops


FMM_CASES = [  # (a shape, b shape, trans_a, trans_b)
    ((5,), (3, 5), False, True),
    ((5,), (5, 3), False, False),
    ((5,), (2, 3, 5), False, True),
    ((4, 5), (5, 3), False, False),
    ((5, 4), (5, 3), True, False),
    ((4, 5), (3, 5), False, True),
    ((5, 4), (3, 5), True, True),
    ((2, 4, 5), (3, 5), False, True),
    ((5, 4), (2, 5, 3), True, False),
]


def _np_fmm(a, b, ta, tb, alpha):
    a = np.swapaxes(a, -1, -2) if ta else a
    b = np.swapaxes(b, -1, -2) if tb else b
    return alpha * np.matmul(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sa,sb,ta,tb", FMM_CASES)
def test_fused_matmul_values_on_interpreter_and_onnxruntime(sa, sb, ta, tb, dtype):
    a, b = rand(*sa, dtype=dtype), rand(*sb, dtype=dtype)
    g = ga.Graph()
    with g:
        pa = ga.placeholder(sa, dtype=dtype, name="a")
        pb = ga.placeholder(sb, dtype=dtype, name="b")
        y = fused_matmul(pa, pb, trans_a=ta, trans_b=tb, alpha=0.5)
    want = _np_fmm(a, b, ta, tb, 0.5)
    assert y.shape == want.shape and y.dtype.np == dtype
    (ref,) = evaluate([y], {pa: a, pb: b})
    (got,) = ga.Session(g, optimize=False).run([y], {pa: a, pb: b})
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ref, want, rtol=tol, atol=tol)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    assert got.dtype == dtype


@pytest.mark.parametrize("sa,sb,ta,tb", FMM_CASES)
def test_fused_matmul_derivatives(sa, sb, ta, tb):
    a, b = rand(*sa, dtype=np.float64), rand(*sb, dtype=np.float64)

    def f(x, y):
        return fused_matmul(x, y, trans_a=ta, trans_b=tb, alpha=1.5)

    with ga.config.x64():
        ga.check_grads(f, (a, b), order=2, modes=("fwd", "rev"))


def test_fused_matmul_rejects_bad_operands():
    g = ga.Graph()
    with g:
        v = ga.placeholder((5,), name="v")
        i = ga.placeholder((5, 5), dtype=ga.int32, name="i")
        with pytest.raises(ga.ShapeError, match="rank >= 2"):
            fused_matmul(v, v)
        with pytest.raises(ga.ShapeError, match="transposed operand a"):
            fused_matmul(v, ga.placeholder((5, 3)), trans_a=True)
        with pytest.raises(ga.DTypeError, match="floating"):
            fused_matmul(i, i)


def test_fused_gated_add_values_and_derivatives():
    x, y, h = rand(4, 6), rand(4, 6), rand(4, 1)
    g = ga.Graph()
    with g:
        px, py, ph = (ga.placeholder(a.shape, name=n) for a, n in ((x, "x"), (y, "y"), (h, "h")))
        out = fused_gated_add(px, py, ph)
    (got,) = ga.Session(g, optimize=False).run([out], {px: x, py: y, ph: h})
    np.testing.assert_allclose(got, x + y * h, rtol=1e-6)
    w = rand(4, 6)  # float32 only: compare with the exact derivatives of sum(w * out)
    gx, gy, gh = ga.grad(lambda a, b, c: ga.sum(w * fused_gated_add(a, b, c)),
                         argnums=(0, 1, 2))(x, y, h)
    np.testing.assert_allclose(gx, w, rtol=1e-6)
    np.testing.assert_allclose(gy, w * h, rtol=1e-6)
    np.testing.assert_allclose(gh, np.sum(w * y, -1, keepdims=True), rtol=1e-5, atol=1e-6)
    tx, ty, th = rand(4, 6), rand(4, 6), rand(4, 1)
    _, t_out = ga.jvp(fused_gated_add, (x, y, h), (tx, ty, th))
    np.testing.assert_allclose(t_out, tx + ty * h + y * th, rtol=1e-5, atol=1e-6)
    with g, pytest.raises(ga.DTypeError, match="float32 only"):
        fused_gated_add(ga.placeholder((3,), dtype=ga.float64), ga.placeholder(
            (3,), dtype=ga.float64), ga.placeholder((1,), dtype=ga.float64))
    with g, pytest.raises(ga.ShapeError, match="gate must have shape"):
        fused_gated_add(px, py, ga.placeholder((1, 6)))


# ---------------------------------------------------------------------------------------------
# The rules: structure, equivalence, idempotence, declines


def _fire(prog, feeds):
    declines, fires = [], {}
    new = fuse_patterns(prog, declines=declines, fires=fires)
    checked = check_pass(fuse, prog, feeds, rtol=1e-5, atol=1e-5)
    return new, checked, declines, fires


def test_matvec_becomes_v_times_a_transposed():
    g = ga.Graph()
    with g:
        A = ga.placeholder((6, 5), name="A")
        v = ga.placeholder((5,), name="v")
        y = ga.tanh(A @ v)
    feeds = {"A": rand(6, 5), "v": rand(5)}
    new, checked, _, fires = _fire(program(y), feeds)
    assert fires == {"matmul(A, v) -> fused_matmul(v, A, trans_b)": 1}
    (fm,) = [n for n in live_nodes(checked) if n.op == "fused_matmul"]
    assert fm.attrs["trans_b"] and fm.inputs[0].name == "v" and "matmul" not in live_ops(checked)


def test_matvec_of_a_transpose_is_a_plain_vector_matrix_product():
    g = ga.Graph()
    with g:
        A = ga.placeholder((5, 6), name="A")
        v = ga.placeholder((5,), name="v")
        y = ga.squeeze(ga.transpose(A) @ ga.expand_dims(v, -1), -1)
    feeds = {"A": rand(5, 6), "v": rand(5)}
    new, checked, _, _ = _fire(program(y), feeds)
    ops = live_ops(checked)
    assert ops.count("matmul") == 1 and "transpose" not in ops and "squeeze" not in ops
    (mm,) = [n for n in live_nodes(checked) if n.op == "matmul"]
    assert [t.name for t in mm.inputs] == ["v", "A"]


def test_transposed_matrix_times_vector_is_right_after_fusion():
    # onnxruntime 1.31 (level ALL) fuses Transpose + MatMul with a 1-D right operand into a
    # FusedMatMul that ignores transA (it computes W @ x): the fused graph never has that pattern
    W, x = rand(3, 4), rand(3)
    g = ga.Graph()
    with g:
        pw = ga.placeholder((3, 4), name="W")
        px = ga.placeholder((3,), name="x")
        y = ga.transpose(pw) @ px
    (got,) = ga.Session(g).run([y], {pw: W, px: x})
    np.testing.assert_allclose(got, W.T @ x, rtol=1e-5)


def test_transposes_are_absorbed_and_scalars_become_alpha():
    g = ga.Graph()
    with g:
        a = ga.placeholder((5, 4), name="a")
        b = ga.placeholder((3, 5), name="b")
        y = (ga.transpose(a) @ ga.transpose(b)) * 2.0
    feeds = {"a": rand(5, 4), "b": rand(3, 5)}
    _, checked, _, _ = _fire(program(y), feeds)
    (fm,) = [n for n in live_nodes(checked) if n.op == "fused_matmul"]
    assert fm.attrs == {"trans_a": True, "trans_b": True, "alpha": 2.0}
    assert live_ops(checked) == ["fused_matmul"]


def test_scale_not_exact_in_float32_is_declined_with_its_reason():
    with ga.config.x64():
        g = ga.Graph()
        with g:
            a = ga.placeholder((4, 4), dtype=ga.float64, name="a")
            y = (a @ a) * 0.1
    declines = []
    fuse_patterns(program(y), declines=declines)
    (d,) = [d for d in declines if d["rule"].startswith("mul(matmul")]
    assert "not exact in float32" in d["reason"]


def test_product_with_other_uses_is_not_rescaled():
    g = ga.Graph()
    with g:
        a = ga.placeholder((4, 4), name="a")
        p = a @ a
        y = p * 2.0 + p
    declines = []
    new = fuse_patterns(program(y), declines=declines)
    assert any("other uses" in d["reason"] for d in declines)
    assert "fused_matmul" not in live_ops(new)


def test_leading_sum_becomes_ones_times_x_and_unknown_batch_declines():
    g = ga.Graph()
    with g:
        x = ga.placeholder((8, 3, 5), name="x")
        y = ga.sum(x, axis=(0, 1), keepdims=True)
        z = ga.sum(x, axis=0)
        u = ga.placeholder((None, 5), name="u")
        w = ga.sum(u, axis=0)
    feeds = {"x": rand(8, 3, 5), "u": rand(7, 5)}
    prog = program(y, z, w)
    new, checked, declines, fires = _fire(prog, feeds)
    assert fires["sum(x, leading axes) -> ones @ x"] == 2
    assert live_ops(checked).count("sum") == 1
    assert any("not static" in d["reason"] for d in declines)


def test_gated_add_for_float32_and_declined_for_float64():
    g = ga.Graph()
    with g:
        x = ga.placeholder((2, 6), name="x")
        y = ga.placeholder((2, 6), name="y")
        z = x + 0.25 * ga.tanh(y)
    feeds = {"x": rand(2, 6), "y": rand(2, 6)}
    _, checked, _, _ = _fire(program(z), feeds)
    (ga_node,) = [n for n in live_nodes(checked) if n.op == "fused_gated_add"]
    assert ga_node.inputs[2].shape == (2, 1)
    with ga.config.x64():
        g = ga.Graph()
        with g:
            x = ga.placeholder((6,), dtype=ga.float64, name="x")
            z = x + 0.25 * x * x
    declines = []
    fuse_patterns(program(z), declines=declines)
    assert any("float32 only" in d["reason"] for d in declines)


def test_integer_matvec_is_declined():
    g = ga.Graph()
    with g:
        A = ga.placeholder((3, 3), dtype=ga.int64, name="A")
        v = ga.placeholder((3,), dtype=ga.int64, name="v")
        y = A @ v
    declines = []
    assert fuse_patterns(program(y), declines=declines) is not None
    assert any("floating kernels only" in d["reason"] for d in declines)


def test_exp_of_log_softmax_is_softmax():
    g = ga.Graph()
    with g:
        z = ga.placeholder((4, 10), name="z")
        y = ga.exp(ga.log_softmax(z))
    feeds = {"z": rand(4, 10)}
    _, checked, _, _ = _fire(program(y), feeds)
    assert "softmax" in live_ops(checked) and "exp" not in live_ops(checked)


def test_mlp_gradient_is_fused_and_unchanged():
    g = ga.Graph()
    with g:
        x = ga.placeholder((16, 12), name="x")
        y = ga.placeholder((16, 4), name="y")
        w1 = ga.placeholder((12, 8), name="w1")
        w2 = ga.placeholder((8, 4), name="w2")
        b1 = ga.placeholder((8,), name="b1")
        z = ga.relu(x @ w1 + b1) @ w2
        loss = -ga.mean(ga.sum(y * ga.log_softmax(z), axis=-1))
        grads = ga.gradients(loss, [w1, b1, w2])
    feeds = {"x": rand(16, 12), "y": np.eye(4, dtype=np.float32)[RNG.integers(0, 4, 16)],
             "w1": rand(12, 8), "w2": rand(8, 4), "b1": rand(8)}
    prog = program(loss, *grads)
    _, checked, _, _ = _fire(prog, feeds)
    ops = live_ops(checked)
    assert "transpose" not in ops and ops.count("fused_matmul") >= 3


# ---------------------------------------------------------------------------------------------
# Elementwise groups: convex by construction


def test_elementwise_chain_is_one_group():
    g = ga.Graph()
    with g:
        x = ga.placeholder((5,), name="x")
        y = ga.exp(ga.sin(x) * 2.0 + 1.0)
    tagged = tag_elementwise_groups(program(y))
    tags = {n.tags.get("fused") for n in live_nodes(tagged) if n.op not in ("placeholder",
                                                                         "constant")}
    assert len(tags) == 1 and None not in tags
    assert tag_elementwise_groups(tagged) is tagged


def test_fusion_diamond_stays_convex():
    # a -> (b = sum(a), not elementwise) -> d = a * b: the path a -> b -> d leaves the group,
    # so a and d may not be grouped together
    g = ga.Graph()
    with g:
        x = ga.placeholder((5,), name="x")
        a = ga.exp(ga.sin(x))
        b = ga.sum(a, keepdims=True)
        d = ga.cos(a * b)
    prog = program(d)
    groups = elementwise_groups(live_nodes(prog))
    by = {n.name: groups.get(id(n)) for n in live_nodes(prog)}
    assert by["exp"] is not None and by["exp"] is by["sin"]
    assert by["multiply"] is not by["exp"]
    assert by["cos"] is by["multiply"]
    # both branches elementwise: one group
    g2 = ga.Graph()
    with g2:
        x = ga.placeholder((5,), name="x")
        a = ga.exp(x)
        d = ga.sin(a) + ga.cos(a)
    prog2 = program(d)
    groups2 = elementwise_groups(live_nodes(prog2))
    assert len({id(v) for v in groups2.values()}) == 1 and len(groups2) == 4


def test_fuse_pipeline_on_a_program_and_on_outputs():
    g = ga.Graph()
    with g:
        A = ga.placeholder((4, 4), name="A")
        v = ga.placeholder((4,), name="v")
        y = ga.exp(A @ v)
    (new_y,) = fuse([y])
    assert new_y.graph is not g and new_y.node.op == "exp"
    assert isinstance(fuse(program(y)), Program)
    feeds = {"A": rand(4, 4), "v": rand(4)}
    fused = program(new_y, feeds=new_y.graph.placeholders())
    np.testing.assert_allclose(run_ort(fused, feeds)[0], run_ort(program(y), feeds)[0], rtol=1e-6)
