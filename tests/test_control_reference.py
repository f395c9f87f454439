"""Exported loops and their gradients on two independent runtimes: plain onnxruntime and the ONNX
reference evaluator (with the spec ops of tests/onnx_reference.py), both against graphad's
interpreter, in float64 to a tight tolerance. Also checks the reference ops themselves against
onnxruntime on one-node models, and that the graphad models really contain the ops they add."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnx_reference import reference_run

import graphad as ga
from graphad.interpret import evaluate

RNG = np.random.default_rng(0)
W = np.array([[0.5, -0.3, 0.2], [0.1, 0.4, -0.6], [-0.2, 0.3, 0.1]])
A = np.array([[3.0, 0.5, -0.2], [0.1, 2.0, 0.3], [-0.4, 0.2, 4.0]])
V = np.array([0.3, -0.2, 0.5])
XS = np.linspace(-1.0, 1.0, 12).reshape(4, 3)


def ort_run(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def all_nodes(graph):
    """The nodes of `graph` and of all its subgraphs."""
    for node in graph.node:
        yield node
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from all_nodes(a.g)


def check(fn, *args, specs=None, rtol=1e-11, atol=1e-12):
    """Trace fn(*specs) (default: the args) and export it; asserts that on `args` the reference
    evaluator, onnxruntime and graphad's interpreter agree. Returns the model."""
    args = [np.asarray(a) for a in args]
    traced = ga.jit(fn).trace(*(args if specs is None else specs))
    model = traced.to_onnx()
    names = [i.name for i in model.graph.input]
    assert names == [p.name for p in traced.inputs]
    feeds = dict(zip(names, args))
    want = evaluate(traced.output_leaves, dict(zip(traced.inputs, args)))
    got_ort, got_ref = ort_run(model, feeds), reference_run(model, feeds)
    for k, (w, o, r) in enumerate(zip(want, got_ort, got_ref, strict=True)):
        for what, v in (("onnxruntime", o), ("onnx.reference", r)):
            assert v.shape == np.shape(w) and v.dtype == np.asarray(w).dtype, (what, k)
            np.testing.assert_allclose(v, w, rtol=rtol, atol=atol, err_msg=f"{what}, out {k}")
        np.testing.assert_allclose(r, o, rtol=rtol, atol=atol, err_msg=f"ref vs ort, out {k}")
    return model


# ---------------------------------------------------------------------------------------------
# Programs


def power_tower(x):
    """s <- (s0 x, s1 + |s0|) from (x, x - 1) while s1 < 10: x sets the trip count (0 if x >= 11)"""
    s = ga.while_loop(lambda s: s[1] < 10.0, lambda s: (s[0] * x, s[1] + ga.abs(s[0])),
                      (x, x - 1.0))
    return s[0] + s[1]


def euler(x, w, checkpoint=None):
    """x <- x + 0.1 tanh(W x) while t < 1 (a float counter: a data-dependent trip count)."""
    def step(s):
        return s[0] + 0.1 * ga.tanh(w @ s[0]), s[1] + 0.1

    v, _ = ga.while_loop(lambda s: s[1] < 0.95, step, (x, ga.zeros_like(x[0])),
                         checkpoint=checkpoint)
    return ga.sum(v * v)


def fori_captured(x, w, n=5, checkpoint=None):
    v = ga.fori_loop(0, n, lambda i, v: ga.sin(w @ v) + 0.1 * v, x, checkpoint=checkpoint)
    return ga.sum(v * ga.cos(v))


def rnn(c, w, xs, reverse=False):
    def step(c, x):
        c = ga.tanh(w @ c + x)
        return c, ga.sum(c * x)

    c, ys = ga.scan(step, c, xs, reverse=reverse)
    return ga.sum(c * c) + ga.sum(ys * ys)


def piecewise(x):
    return ga.cond(ga.sum(x) > 0.0, lambda v: ga.sum(ga.sin(v) * v), lambda v: ga.sum(v ** 3), x)


def cond_in_loop(x, w):
    def step(i, v):
        return ga.cond(ga.sum(v) > 0.0, lambda u: ga.tanh(w @ u), lambda u: u * u - 0.5, v)

    return ga.sum(ga.fori_loop(0, 4, step, x))


def loop_in_cond(x, w):
    def looped(v):
        return ga.fori_loop(0, 3, lambda i, u: ga.tanh(w @ u + u), v)

    return ga.sum(ga.cond(ga.sum(x) > 0.0, looped, lambda v: v * 2.0, x) ** 2)


def counted(x, n):
    """fori_loop(0, n) with a run-time n (zero trips when n = 0)."""
    return ga.sum(ga.fori_loop(0, n, lambda i, v: v * ga.sin(v) + 0.5, x))


def cosine_fixed_point(a):
    return ga.sum(ga.fixed_point(lambda x, a: ga.cos(a * x), ga.zeros_like(a), a, tol=1e-14))


def newton_cubic(b, a):
    """x with A x + 0.1 x^3 = b (vector Newton: its steps and gradients solve with Inverse)."""
    x = ga.root(lambda x, b, a: a @ x + 0.1 * x ** 3 - b, ga.zeros_like(b), b, a, tol=1e-14)
    return ga.sum(x * ga.linalg.solve(a, b))


VG = ga.value_and_grad
CASES = {
    "while_trips_depend_on_x": (VG(power_tower), 1.3),
    "while_second_order": (ga.grad(ga.grad(power_tower)), 1.1),
    "while_euler": (VG(euler, argnums=(0, 1)), V, W),
    "while_euler_hessian": (ga.hessian(euler), V, W),
    "while_euler_checkpoint2": (VG(lambda x, w: euler(x, w, 2), argnums=(0, 1)), V, W),
    "fori_captured": (VG(fori_captured, argnums=(0, 1)), V, W),
    "fori_checkpoint2": (VG(lambda x, w: fori_captured(x, w, 7, 2), argnums=(0, 1)), V, W),
    "fori_hessian": (ga.hessian(fori_captured), V, W),
    "scan": (VG(rnn, argnums=(0, 1, 2)), V, W, XS),
    "scan_reverse": (VG(lambda c, w, xs: rnn(c, w, xs, True), argnums=(0, 1, 2)), V, W, XS),
    "scan_hessian": (ga.hessian(rnn), V, W, XS),
    "cond_true": (VG(piecewise), V),
    "cond_false": (VG(piecewise), -V),
    "cond_in_loop": (VG(cond_in_loop, argnums=(0, 1)), V, W),
    "loop_in_cond": (VG(loop_in_cond, argnums=(0, 1)), V, W),
    "loop_in_cond_skipped": (VG(loop_in_cond, argnums=(0, 1)), -V, W),
    "zero_trip_while": (VG(power_tower), 12.0),
    "zero_trip_fori_runtime": (VG(counted), V, np.int64(0)),
    "three_trip_fori_runtime": (VG(counted), V, np.int64(3)),
    "zero_trip_fori_static": (VG(lambda x, w: fori_captured(x, w, 0), argnums=(0, 1)), V, W),
    "zero_length_scan": (VG(rnn, argnums=(0, 1, 2)), V, W, np.zeros((0, 3))),
    "fixed_point": (VG(cosine_fixed_point), np.array([0.5, 1.0, 1.5])),
    "root_newton_vector": (VG(newton_cubic, argnums=(0, 1)), V, A),
}


@pytest.mark.parametrize("case", list(CASES))
def test_reference_matches_onnxruntime(case):
    fn, *args = CASES[case]
    with ga.config.x64():
        check(fn, *args)


@pytest.mark.parametrize("length", [0, 1, 5])
def test_scan_of_run_time_length(length):
    """xs of unknown length: the zero-trip tape's element shape comes from the declared body."""
    xs = np.linspace(-1.0, 1.0, 3 * length).reshape(length, 3)
    with ga.config.x64():
        check(CASES["scan"][0], V, W, xs, specs=(V, W, ga.TensorType((None, 3), ga.float64)))


def test_models_exercise_the_reference_ops():
    """The custom ops are not dead code: the models do contain them. GatedAdd is float32 only:
    float32 Euler steps x + 0.1 * tanh(W x) fuse into it."""
    with ga.config.x64():
        scan = list(all_nodes(check(CASES["scan"][0], V, W, XS).graph))
        root = list(all_nodes(check(CASES["root_newton_vector"][0], V, A).graph))
    f32 = all_nodes(check(VG(euler, argnums=(0, 1)), V.astype(np.float32), W.astype(np.float32),
                          rtol=1e-5, atol=1e-6).graph)
    dirs = {a.name: tuple(a.ints) for n in scan if n.op_type == "Scan" for a in n.attribute}
    assert set(dirs["scan_input_directions"]) == set(dirs["scan_output_directions"]) == {1}
    # (2-D products now export as Gemm; FusedMatMul's kernel is checked on one-node models)
    for nodes, domain, op in ((scan, "", "Gemm"), (root, "com.microsoft", "Inverse"),
                              (f32, "com.microsoft", "GatedAdd")):
        assert (domain, op) in {(n.domain, n.op_type) for n in nodes}


# ---------------------------------------------------------------------------------------------
# The reference ops alone, against onnxruntime on one-node models


def vi(name, elem=TensorProto.DOUBLE, shape=()):
    return helper.make_tensor_value_info(name, elem, shape)


def one_node(node, inputs, n_out=1, out_type=TensorProto.DOUBLE):
    ins = [vi(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in inputs.items()]
    outs = [vi(f"y{i}", out_type, None) for i in range(n_out)]
    return helper.make_model(helper.make_graph([node], "g", ins, outs), ir_version=10,
                             opset_imports=[helper.make_opsetid("", 21),
                                            helper.make_opsetid("com.microsoft", 1)])


def agree(model, feeds, rtol=1e-12):
    got, want = reference_run(model, feeds), ort_run(model, feeds)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-12)
    return got


def physical(logical, trans, trans_batch):
    """The FusedMatMul operand whose op(.) (transpose, then batch transpose) is `logical`."""
    x = np.swapaxes(logical, -1, -2) if trans else logical
    return np.moveaxis(x, -2, 0) if trans_batch else x


@pytest.mark.parametrize("ta, tb, tba, tbb", [(0, 0, 0, 0), (1, 0, 0, 0), (0, 1, 0, 0),
                                              (1, 1, 0, 0), (0, 1, 1, 1), (1, 0, 1, 0)])
def test_fused_matmul(ta, tb, tba, tbb):
    la, lb = RNG.normal(size=(3, 2, 4, 5)), RNG.normal(size=(3, 2, 5, 6))
    feeds = {"a": physical(la, ta, tba), "b": physical(lb, tb, tbb)}
    node = helper.make_node("FusedMatMul", ["a", "b"], ["y0"], domain="com.microsoft",
                            alpha=0.25, transA=ta, transB=tb, transBatchA=tba, transBatchB=tbb)
    (y,) = agree(one_node(node, feeds), feeds)
    np.testing.assert_allclose(y, 0.25 * la @ lb, rtol=1e-12)


def test_inverse_and_gated_add():
    feeds = {"a": RNG.normal(size=(2, 3, 3)) + 3 * np.eye(3)}
    agree(one_node(helper.make_node("Inverse", ["a"], ["y0"], domain="com.microsoft"), feeds),
          feeds)
    feeds = {k: RNG.normal(size=s).astype(np.float32)
             for k, s in (("x", (2, 4)), ("y", (2, 4)), ("g", (2, 1)))}
    node = helper.make_node("GatedAdd", ["x", "y", "g"], ["y0"], domain="com.microsoft")
    agree(one_node(node, feeds, out_type=TensorProto.FLOAT), feeds, rtol=1e-6)


def scan_model(directions_in, directions_out, axes_in, axes_out, xs):
    """Scan with one state s and one scan input x: s' = s + x, ys = (s' * x, x)."""
    body = helper.make_graph(
        [helper.make_node("Add", ["s", "x"], ["s2"]), helper.make_node("Mul", ["s2", "x"], ["p"]),
         helper.make_node("Identity", ["x"], ["xc"])], "body",
        [vi("s", shape=[2]), vi("x", shape=[2])], [vi(n, shape=[2]) for n in ("s2", "p", "xc")])
    node = helper.make_node("Scan", ["s0", "xs"], ["y0", "y1", "y2"], body=body,
                            num_scan_inputs=1, scan_input_directions=[directions_in],
                            scan_output_directions=directions_out, scan_input_axes=[axes_in],
                            scan_output_axes=axes_out)
    return one_node(node, {"s0": np.zeros(2), "xs": xs}, n_out=3)


@pytest.mark.parametrize("d_in, d_out, ax_in, ax_out", [
    (0, [0, 0], 0, [0, 0]), (1, [0, 1], 0, [0, 0]), (1, [1, 0], 1, [1, -1]),
    (0, [1, 1], -1, [-2, 1])])
def test_scan_directions_and_axes(d_in, d_out, ax_in, ax_out):
    xs = RNG.normal(size=(4, 2) if ax_in == 0 else (2, 4))
    feeds = {"s0": np.array([0.5, -1.0]), "xs": xs}
    s, _, xcopy = agree(scan_model(d_in, d_out, ax_in, ax_out, xs), feeds)
    seq = np.moveaxis(xs, ax_in, 0)[::-1 if d_in else 1]
    np.testing.assert_allclose(s, feeds["s0"] + xs.sum(axis=ax_in))
    np.testing.assert_allclose(xcopy, np.moveaxis(seq[::-1 if d_out[1] else 1], 0, ax_out[1]))


def test_scan_zero_length_follows_the_spec():
    """onnxruntime cannot run it (graphad guards it with an If); the spec result is clear."""
    model = scan_model(1, [1, 0], 0, [0, 1], np.zeros((0, 2)))
    s, ys, xcopy = reference_run(model, {"s0": np.array([0.5, -1.0]), "xs": np.zeros((0, 2))})
    np.testing.assert_array_equal(s, [0.5, -1.0])
    assert ys.shape == (0, 2) and xcopy.shape == (2, 0) and ys.dtype == np.float64


@pytest.mark.parametrize("m", [0, 3])
def test_loop_with_omitted_cond_and_scalar_scan_output(m):
    """The built-in Loop runs no trip without a cond, and stacks scalars as (T, 1)."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["c2"]),
         helper.make_node("Mul", ["v", "v"], ["v2"]), helper.make_node("Sum", ["v", "v"], ["y"])],
        "body", [vi("i", TensorProto.INT64), vi("c", TensorProto.BOOL), vi("v")],
        [vi("c2", TensorProto.BOOL), vi("v2"), vi("y")])
    node = helper.make_node("Loop", ["m", "", "v0"], ["y0", "y1"], body=body)
    feeds = {"m": np.array(m, np.int64), "v0": np.array(1.5)}
    _, ys = agree(one_node(node, feeds, n_out=2), feeds)
    assert ys.shape == (m,)
