"""The derivative engines (passes/autodiff.py, passes/forward.py) on worked examples, and their
cross-cutting duties: unbroadcasting, fan-in, tags, errors, scale, higher order."""

import time

import numpy as np
import pytest
from gradcheck import assert_close, directional, inner

import graphad as ga
from graphad.errors import GraphadError
from graphad.graph import ancestors
from graphad.interpret import evaluate
from graphad.ops.accumulate import add_n, sum_to_like
from graphad.passes.autodiff import gradients, vjp
from graphad.passes.forward import jvp
from graphad.registry import OpDef
from graphad.types import default_float

F64 = ga.float64


def run_both(fetches, feeds=None, graph=None):
    """Values on the reference interpreter and on onnxruntime; asserts they agree."""
    feeds = feeds or {}
    graph = graph or fetches[0].graph
    got_i = evaluate(fetches, feeds)
    got_s = ga.Session(graph).run(list(fetches), feeds)
    for a, b in zip(got_i, got_s):
        assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-9)
    return got_s


def c64(v):
    return ga.constant(np.asarray(v, dtype=np.float64), dtype=F64)


# ---------------------------------------------------------------------------------------------
# Worked examples


def test_grad_cubic_plus_x():
    with ga.Graph():
        x = c64([[1, 1], [2, 3], [5, 8]])
        (dx,) = gradients(x**3 + x, [x])
        (got,) = run_both([dx])
    np.testing.assert_allclose(got, [[4, 4], [13, 28], [76, 193]])


def test_three_argument_function():
    with ga.Graph():
        x1, x2, x3 = c64(2.0), c64(3.0), c64(4.0)
        f = 3 * (x1**2 + x2 * x3)
        grads = gradients(f, [x1, x2, x3])
        got = run_both([f] + grads)
    np.testing.assert_allclose(got, [48, 12, 12, 9])


def test_tanh_derivative():
    with ga.Graph():
        x = c64(2.0)
        (d,) = gradients(ga.tanh(x), [x])
        (got,) = run_both([d])
    np.testing.assert_allclose(got, 0.0706508, rtol=1e-6)


def test_polynomial_derivative():
    with ga.Graph():
        x = c64(1.0)
        (d,) = gradients(x**3 + 2 * x**2 - 3 * x + 1, [x])
        (got,) = run_both([d])
    np.testing.assert_allclose(got, 4.0)


def test_sigmoid_value_and_derivative():
    with ga.Graph():
        x = c64(0.0)
        y = ga.sigmoid(x)
        (d,) = gradients(y, [x])
        got = run_both([y, d])
    np.testing.assert_allclose(got, [0.5, 0.25])


def test_inverse_jvp():
    """d inv(A) = -C dA C with C = inv(A)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 4)) + 4 * np.eye(4)
    da = rng.standard_normal((4, 4))
    with ga.Graph():
        A = c64(a)
        C = ga.linalg.inv(A)
        (dC,) = jvp([C], [A], [c64(da)])
        (got,) = run_both([dC])
    c = np.linalg.inv(a)
    np.testing.assert_allclose(got, -c @ da @ c, rtol=1e-9, atol=1e-12)


def test_jvp_vjp_of_vector_function():
    """f = [x1**2 + x2**2, x1*x2]: J e1 = [2x1, x2], e1^T J = [2x1, 2x2]."""
    with ga.Graph():
        x1, x2 = c64(3.0), c64(5.0)
        f = [x1**2 + x2**2, x1 * x2]
        j = jvp(f, [x1, x2], [c64(1.0), None])
        v = vjp(f, [x1, x2], [c64(1.0), None])
        got = run_both(j + v)
    np.testing.assert_allclose(got, [6, 5, 6, 10])


# ---------------------------------------------------------------------------------------------
# Engine duties


def test_unconnected_and_integer_inputs_get_zeros():
    with ga.Graph():
        x = ga.placeholder((2, 3), F64)
        z = ga.placeholder((4,), F64)
        k = ga.placeholder((2, 3), ga.int32)
        y = ga.sin(x) * ga.cast(k, F64)
        dz, dk = gradients(y, [z, k])
        assert vjp([y], [z, k], [None])[0] is None
        assert vjp([y], [z], [ga.ones_like(y)]) == [None]
        assert jvp([y], [z], [c64(np.ones(4))]) == [None]
        assert dz.dtype == F64 and dz.shape == (4,)
        assert dk.dtype == default_float() and dk.shape == (2, 3)
        got = run_both([dz, dk], {x: np.ones((2, 3)), k: np.ones((2, 3), np.int32)})
    np.testing.assert_array_equal(got[0], np.zeros(4))
    np.testing.assert_array_equal(got[1], np.zeros((2, 3)))


def test_fan_out_sums_once():
    """x used five times: its cotangent is one n-ary sum (one ONNX Sum node)."""
    g = ga.Graph()
    with g:
        x = ga.placeholder((3,), F64)
        y = ga.sin(x) + ga.cos(x) + ga.exp(x) + x * x
        (dx,) = gradients(y, [x])
    assert dx.node.op == "add_n" and len(dx.node.inputs) == 5
    assert sum(n.op == "add_n" for n in g.nodes) == 1
    xv = np.array([0.1, 0.5, -1.0])
    (got,) = run_both([dx], {x: xv})
    np.testing.assert_allclose(got, np.cos(xv) - np.sin(xv) + np.exp(xv) + 2 * xv)
    model = ga.export.to_onnx([dx], [x])
    assert sum(n.op_type == "Sum" for n in model.graph.node) == 1


def test_nodes_are_tagged_with_their_origin():
    g = ga.Graph()
    with g:
        x = ga.placeholder((3,), F64)
        y = ga.sin(x)
        t = c64(np.ones(3))
        mark = len(g.nodes)
        gradients(y, [x])
        mid = len(g.nodes)
        jvp([y], [x], [t])
    for n in g.nodes[mark:mid]:
        assert n.tags.get("mode") == "vjp" and n.tags.get("grad_of"), n
    for n in g.nodes[mid:]:
        assert n.tags.get("mode") == "jvp" and n.tags.get("grad_of"), n
    assert any(n.tags["grad_of"] == y.node.name for n in g.nodes[mark:mid])


def test_constant_operands_build_no_dead_nodes():
    """Rules consult needs_gradient: no cotangent is built for a constant operand."""
    g = ga.Graph()
    with g:
        x = ga.placeholder((3,), F64)
        h = x
        for _ in range(4):
            h = ga.sin(h) * 1.5 + 0.25
        mark = len(g.nodes)
        (dx,) = gradients(h, [x])
    live = {n.id for n in ancestors([dx])}
    dead = [n for n in g.nodes[mark:] if n.id not in live]
    assert not dead, dead


def test_stop_gradient_blocks():
    with ga.Graph():
        x = c64([1.0, 2.0])
        (d1,) = gradients(ga.stop_gradient(x) * x, [x])
        (d2,) = gradients(ga.stop_gradient(x) * 3.0, [x])
        (t,) = jvp([ga.stop_gradient(x) * x], [x], [c64([1.0, 1.0])])
        got = run_both([d1, d2, t])
    np.testing.assert_allclose(got[0], [1.0, 2.0])
    np.testing.assert_allclose(got[1], [0.0, 0.0])
    np.testing.assert_allclose(got[2], [1.0, 2.0])


def test_broadcast_cotangents_reduce_with_unknown_batch():
    g = ga.Graph()
    with g:
        x = ga.placeholder((None, 3), F64)
        b = ga.placeholder((3,), F64)
        c = ga.placeholder((1, 3), F64)
        s = ga.placeholder((), F64)
        y = ga.sin(x) * b + c * x * s
        dx, db, dc, ds = gradients(y, [x, b, c, s])
        p = ga.placeholder((None,), F64)  # fed (1,) while q is fed (5,): broadcasts at run time
        q = ga.placeholder((None,), F64)
        dp, dq = gradients(p * q, [p, q])
        (tp,) = jvp([p * q], [p], [c64([1.0])])
    assert (db.shape, dc.shape, ds.shape) == ((3,), (1, 3), ())
    rng = np.random.default_rng(0)
    xv, bv, cv, sv = rng.standard_normal((5, 3)), rng.standard_normal(3), rng.standard_normal(
        (1, 3)), np.float64(0.7)
    feeds = {x: xv, b: bv, c: cv, s: sv}
    got = ga.Session(g).run([dx, db, dc, ds], feeds)
    np.testing.assert_allclose(got[0], np.cos(xv) * bv + cv * sv)
    np.testing.assert_allclose(got[1], np.sin(xv).sum(0))
    np.testing.assert_allclose(got[2], (xv * sv).sum(0, keepdims=True))
    np.testing.assert_allclose(got[3], (cv * xv).sum())
    qv = np.arange(5.0)
    for got in (ga.Session(g).run([dp, dq, tp], {p: [2.0], q: qv}),
                evaluate([dp, dq, tp], {p: np.array([2.0]), q: qv})):
        np.testing.assert_allclose(got[0], [qv.sum()])
        np.testing.assert_allclose(got[1], np.full(5, 2.0))
        np.testing.assert_allclose(got[2], qv)


def test_forward_broadcasts_small_tangents():
    with ga.Graph():
        x = c64([1.0, 2.0, 3.0])
        b = c64(np.ones((2, 3)))
        y = x + b
        (t,) = jvp([y], [x], [c64([1.0, 0.0, 2.0])])
        assert t.shape == (2, 3)
        (got,) = run_both([t])
    np.testing.assert_allclose(got, [[1, 0, 2], [1, 0, 2]])


def test_dtype_of_gradients_follows_inputs():
    with ga.Graph():
        x = ga.constant(np.array([1.0, 2.0], np.float32), dtype=ga.float32)
        y = ga.cast(x, F64) ** 2
        (d,) = gradients(y, [x])
        assert d.dtype == ga.float32
        (got,) = run_both([d])
    np.testing.assert_allclose(got, [2.0, 4.0])


def test_variables_and_intermediate_xs():
    g = ga.Graph()
    with g:
        v = ga.Variable(np.array([1.0, 2.0]), dtype=F64)
        h = v * v  # an intermediate x downstream of another x (TF semantics: total derivative)
        y = ga.sin(h)
        dv, dh = gradients(y, [v, h])
        (th,) = jvp([y], [v, h], [c64([1.0, 0.0]), c64([0.0, 1.0])])
        got = ga.Session(g).run([dv, dh, th])
    vv = np.array([1.0, 2.0])
    np.testing.assert_allclose(got[1], np.cos(vv**2))
    np.testing.assert_allclose(got[0], np.cos(vv**2) * 2 * vv)
    np.testing.assert_allclose(got[2], np.cos(vv**2) * (2 * vv * [1, 0] + [0, 1]))


def test_ys_list_and_grad_ys():
    with ga.Graph():
        x = c64([1.0, 2.0])
        dx1, = gradients([x * x, ga.sin(x)], [x])
        dx2, = gradients([x * x, ga.sin(x)], [x], grad_ys=[c64([1.0, 2.0]), None])
        got = run_both([dx1, dx2])
    xv = np.array([1.0, 2.0])
    np.testing.assert_allclose(got[0], 2 * xv + np.cos(xv))
    np.testing.assert_allclose(got[1], 2 * xv * [1, 2] + np.cos(xv))


def test_integer_paths_carry_no_gradient():
    with ga.Graph():
        x = c64([1.5, 2.5])
        y = ga.cast(ga.cast(x, ga.int32), F64) * x
        (d,) = gradients(y, [x])
        (got,) = run_both([d])
    np.testing.assert_allclose(got, [1.0, 2.0])


# ---------------------------------------------------------------------------------------------
# Errors


def test_not_differentiable_only_path_raises():
    with ga.Graph():
        x = ga.placeholder((3,), F64, name="xin")
        m = ga.greater(x, 0.0)  # the op without a derivative
        y = ga.cast(m, F64) * 2.0
        with pytest.raises(ga.NotDifferentiableError) as err:
            gradients(y, [x])
        msg = str(err.value)
        assert "'greater'" in msg and m.node.name in msg and "xin" in msg
        assert "test_autodiff_engine.py" in msg  # the user line that created the op
        with pytest.raises(ga.NotDifferentiableError):
            jvp([y], [x], [c64(np.ones(3))])
        with pytest.raises(ga.NotDifferentiableError, match="'argmax'"):
            gradients(ga.argmax(x), [x])  # an integer y, asked for: still an error
        (dz,) = gradients(ga.cast(x, ga.int32), [x])  # a differentiable op: zero, no error
        assert dz.dtype == F64


def test_mixed_paths_differentiate_the_differentiable_one():
    with ga.Graph():
        x = c64([-1.0, 2.0])
        y = ga.where(ga.greater(x, 0.0), x * x, -x)
        (d,) = gradients(y, [x])
        (t,) = jvp([y], [x], [c64([1.0, 1.0])])
        got = run_both([d, t])
    np.testing.assert_allclose(got[0], [-1.0, 4.0])
    np.testing.assert_allclose(got[1], [-1.0, 4.0])


def _custom_op(name, vjp_rule=None, jvp_rule=None):
    """An unregistered op (so the registry-completeness test never sees it)."""
    return OpDef(name, infer=lambda types, attrs: (types[0],),
                 reference=lambda node, x: (x,), lower=lambda ctx, node, x: (x,),
                 vjp=vjp_rule, jvp=jvp_rule)


def test_masks_built_by_rules_do_not_block_higher_order():
    """A VJP rule may build a non-differentiable mask (x > 0 for relu); differentiating the
    gradient again gives zero through it, not NotDifferentiableError."""
    def relu_vjp(node, g):
        x = node.inputs[0]
        return (g * ga.cast(ga.greater(x, 0.0), x.dtype),)

    def relu_jvp(node, t):
        x = node.inputs[0]
        return (t * ga.cast(ga.greater(x, 0.0), x.dtype),)

    my_relu = OpDef("my_relu", infer=lambda types, attrs: (types[0],),
                    reference=lambda node, x: (np.maximum(x, 0),),
                    lower=lambda ctx, node, x: (ctx.emit("Relu", [x]),),
                    vjp=relu_vjp, jvp=relu_jvp)
    g = ga.Graph()
    with g:
        x = c64([-1.0, 2.0])
        y = g.add_node(my_relu, (x,)).outputs[0]
        (d1,) = gradients(y, [x])
        (d2,) = gradients(d1, [x])
        (t2,) = jvp([d1], [x], [c64([1.0, 1.0])])
        assert t2 is None  # the mask passes no tangent
        got = run_both([d1, d2])
    np.testing.assert_allclose(got[0], [0.0, 1.0])
    np.testing.assert_allclose(got[1], [0.0, 0.0])


def test_missing_rule_names_the_op():
    g = ga.Graph()
    with g:
        x = c64([1.0])
        y = g.add_node(_custom_op("mystery_op"), (x,)).outputs[0]
        with pytest.raises(GraphadError, match="no VJP rule for op 'mystery_op'"):
            gradients(y, [x])
        with pytest.raises(GraphadError, match="no JVP rule for op 'mystery_op'"):
            jvp([y], [x], [c64([1.0])])


def test_rule_with_wrong_arity_is_caught():
    bad = _custom_op("bad_arity_op", vjp_rule=lambda node, g: (g, g),
                     jvp_rule=lambda node, t: t)
    g = ga.Graph()
    with g:
        x = c64([1.0])
        y = g.add_node(bad, (x,)).outputs[0]
        with pytest.raises(GraphadError, match="bad_arity_op.*2 entries.*1 entries, one per input"):
            gradients(y, [x])
        with pytest.raises(GraphadError, match="bad_arity_op"):
            jvp([y], [x], [c64([1.0])])


def test_rule_with_wrong_shape_is_caught():
    bad = _custom_op("bad_shape_op", vjp_rule=lambda node, g: (c64(np.ones(4)),))
    g = ga.Graph()
    with g:
        x = c64([1.0, 2.0, 3.0])
        y = g.add_node(bad, (x,)).outputs[0]
        with pytest.raises(GraphadError, match="bad_shape_op.*cannot be broadcast"):
            gradients(y, [x])


def test_mixing_graphs_is_an_error():
    with ga.Graph():
        x = c64(1.0)
    with ga.Graph():
        y = c64(2.0) * 2.0
        with pytest.raises(ga.GraphError):
            gradients(y, [x])


# ---------------------------------------------------------------------------------------------
# Higher order


def test_second_and_third_order():
    with ga.Graph():
        x = c64([0.5, 2.0])
        (d1,) = gradients(x**3, [x])
        (d2,) = gradients(d1, [x])
        (d3,) = gradients(d2, [x])
        (d4,) = gradients(d3, [x])
        got = run_both([d1, d2, d3, d4])
    xv = np.array([0.5, 2.0])
    np.testing.assert_allclose(got[0], 3 * xv**2)
    np.testing.assert_allclose(got[1], 6 * xv)
    np.testing.assert_allclose(got[2], [6.0, 6.0])
    np.testing.assert_allclose(got[3], [0.0, 0.0])


def _rosenbrock(x):
    a, b = x[1:], x[:-1]
    return ga.sum(100.0 * (a - b**2) ** 2 + (1.0 - b) ** 2)


def _rosenbrock_hessian(x):
    n = len(x)
    h = np.zeros((n, n))
    for i in range(n - 1):
        h[i, i] += 1200 * x[i] ** 2 - 400 * x[i + 1] + 2
        h[i + 1, i + 1] += 200
        h[i, i + 1] += -400 * x[i]
        h[i + 1, i] += -400 * x[i]
    return h


def test_hessian_vector_products():
    """Forward-over-reverse, reverse-over-reverse and reverse-over-forward agree with H v."""
    rng = np.random.default_rng(3)
    xv, vv = rng.standard_normal(6), rng.standard_normal(6)
    with ga.Graph():
        x = ga.placeholder((6,), F64)
        v = c64(vv)
        f = _rosenbrock(x)
        (g,) = gradients(f, [x])
        (hv_fwd,) = jvp([g], [x], [v])
        (hv_rev,) = gradients(ga.sum(g * v), [x])
        (fv,) = jvp([f], [x], [v])
        (hv_rof,) = gradients(fv, [x])
        got = run_both([hv_fwd, hv_rev, hv_rof], {x: xv})
    want = _rosenbrock_hessian(xv) @ vv
    for h in got:
        np.testing.assert_allclose(h, want, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# The engine's own ops


def test_add_n_and_sum_to_like_values_and_derivatives():
    rng = np.random.default_rng(5)
    a, b, c = rng.standard_normal((2, 3)), rng.standard_normal(3), rng.standard_normal((1, 1))
    g = ga.Graph()
    with g:
        pa = ga.placeholder((None, 3), F64)
        pb = ga.placeholder((3,), F64)
        pc = ga.placeholder((None, 1), F64)
        s = add_n([pa, pb, pc])
        r1 = sum_to_like(pa, pb)  # reduce: (2, 3) -> (3,)
        r2 = sum_to_like(pb, pa)  # expand: (3,) -> (2, 3)
        r3 = sum_to_like(pa, pc)  # reduce over an unknown axis fed 1: (2, 3) -> (1, 1)
        outs = [s, r1, r2, r3]
    feeds = {pa: a, pb: b, pc: c}
    want = [a + b + c, a.sum(0), np.broadcast_to(b, (2, 3)), a.sum(keepdims=True)]
    for got in (evaluate(outs, feeds), ga.Session(g).run(outs, feeds)):
        for w, v in zip(want, got):
            np.testing.assert_allclose(v, w, rtol=1e-12)
    xs = [pa, pb, pc]
    with g:
        ws = [c64(rng.standard_normal(w.shape)) for w in want]
        us = [rng.standard_normal(a.shape) for a in (a, b, c)]
        vj = vjp(outs, xs, ws)
        jv = jvp(outs, xs, [c64(u) for u in us])
    vals = ga.Session(g).run(vj + jv, feeds)
    x0 = [a, b, c]

    def f(xv):
        return evaluate(outs, dict(zip(xs, xv)))

    ju = directional(f, x0, us)
    wv = evaluate(ws)
    assert_close(inner(vals[:3], us), inner(wv, ju), rtol=1e-9, atol=1e-9, what="vjp")
    for got, want_t in zip(vals[3:], ju):
        assert_close(got, want_t, rtol=1e-9, atol=1e-9, what="jvp")


# ---------------------------------------------------------------------------------------------
# Scale: iterative and linear


def _chain(n):
    g = ga.Graph()
    with g:
        x = ga.placeholder((4,), F64)
        h = x
        for _ in range(n):
            h = ga.sin(h) * 1.01
    return g, x, h


def _time_gradient(n):
    g, x, h = _chain(n)
    t0 = time.perf_counter()
    with g:
        (d,) = gradients(h, [x])
    return time.perf_counter() - t0, g, x, d


def test_long_chain_is_iterative_and_linear():
    """A 21,000-node chain (7,000 layers of sin, constant and multiply; 28,000 derivative
    nodes) differentiates without recursion, in time linear in its length."""
    t_small = min(_time_gradient(700)[0] for _ in range(2))
    t_big, _, x, d = _time_gradient(7_000)
    assert t_big < 25 * t_small + 0.5, (t_small, t_big)  # 10x the nodes: ~10x the time
    xv = np.array([0.1, 0.2, 0.3, 0.4])
    (got,) = evaluate([d], {x: xv})
    want = np.ones(4)
    h = xv
    for _ in range(7_000):
        want = want * np.cos(h) * 1.01
        h = np.sin(h) * 1.01
    np.testing.assert_allclose(got, want, rtol=1e-9)
