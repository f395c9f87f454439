"""Forward values of while_loop / fori_loop / scan / cond: numpy oracle == interpreter ==
Session == exported ONNX on onnxruntime == onnx.reference; structure, errors, export."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from test_control_helpers import loop_nodes, run_all, x64  # noqa: F401

import graphad as ga
from graphad.interpret import evaluate


def test_while_loop_data_dependent_trip_count(x64):
    with ga.Graph():
        x = ga.placeholder((), ga.float64, name="x")
        y = ga.while_loop(lambda v: v < 100.0, lambda v: v * 3.0, x)
        for x0 in (1.0, 50.0, 200.0):  # 5, 1 and 0 trips
            want = x0
            while want < 100.0:
                want *= 3.0
            np.testing.assert_allclose(run_all([y], {x: x0})[0], want)


def test_while_loop_pytree_carry(x64):
    with ga.Graph():
        x = ga.placeholder((2,), ga.float64, name="x")
        out = ga.while_loop(
            lambda s: s["i"] < 3,
            lambda s: {"i": s["i"] + 1, "v": (s["v"][0] * x, s["v"][1] + 1.0)},
            {"i": 0, "v": (x, ga.constant(0.0, ga.float64))})
        assert set(out) == {"i", "v"} and isinstance(out["v"], tuple)
        i, v0, v1 = run_all([out["i"], out["v"][0], out["v"][1]], {x: np.array([1.5, 2.0])})
        assert int(i) == 3 and float(v1) == 3.0
        np.testing.assert_allclose(v0, np.array([1.5, 2.0]) ** 4)


def test_while_loop_max_iterations_stops(x64):
    with ga.Graph():
        x = ga.placeholder((), ga.float64, name="x")
        y = ga.while_loop(lambda v: v < 1e9, lambda v: v * 2.0, x, max_iterations=5)
        z = ga.while_loop(lambda v: v < 1e9, lambda v: v * 2.0, x, max_iterations=0)
        np.testing.assert_allclose(run_all([y, z], {x: 1.5}), [48.0, 1.5])


def test_while_loop_max_iterations_tensor(x64):
    with ga.Graph():
        x = ga.placeholder((), ga.float64, name="x")
        n = ga.placeholder((), ga.int64, name="n")
        y = ga.while_loop(lambda v: v < 1e9, lambda v: v * 2.0, x, max_iterations=n)
        np.testing.assert_allclose(run_all([y], {x: 1.0, n: np.int64(3)})[0], 8.0)


@pytest.mark.parametrize("lo, hi", [(0, 5), (2, 6), (3, 3), (5, 2)])
def test_fori_loop_static_bounds(x64, lo, hi):
    with ga.Graph():
        x = ga.placeholder((), ga.float64, name="x")
        y = ga.fori_loop(lo, hi, lambda i, v: v * x + ga.cast(i, ga.float64), x)
        want = 1.5
        for i in range(lo, hi):
            want = want * 1.5 + i
        np.testing.assert_allclose(run_all([y], {x: 1.5})[0], want)


def test_fori_loop_tensor_bounds(x64):
    with ga.Graph():
        lo = ga.placeholder((), ga.int64, name="lo")
        hi = ga.placeholder((), ga.int64, name="hi")
        x = ga.placeholder((), ga.float64, name="x")
        y = ga.fori_loop(lo, hi, lambda i, v: v * x + ga.cast(i, ga.float64), x)
        for a, b in ((2, 6), (4, 4), (6, 2), (0, 1)):
            want = 1.5
            for i in range(a, b):
                want = want * 1.5 + i
            got = run_all([y], {lo: np.int64(a), hi: np.int64(b), x: 1.5})[0]
            np.testing.assert_allclose(got, want)


def test_fori_loop_index_dtype():
    with ga.Graph():
        seen = []
        ga.fori_loop(0, 3, lambda i, v: (seen.append(i.dtype), v)[1], ga.constant(1.0))
        assert seen == [ga.int32]
        n = ga.placeholder((), ga.int64)
        ga.fori_loop(0, n, lambda i, v: (seen.append(i.dtype), v)[1], ga.constant(1.0))
        assert seen[-1] == ga.int64


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("n", [0, 1, 4])
def test_scan_matches_numpy(x64, reverse, n):
    xs_np = np.arange(3.0 * n).reshape(n, 3) * 0.5
    with ga.Graph():
        xs = ga.placeholder((None, 3), ga.float64, name="xs")
        c, ys = ga.scan(lambda c, x: (c * 0.5 + x, (c * x, ga.sum(c))),
                        ga.zeros((3,), ga.float64), xs, reverse=reverse)
        assert ys[0].shape == (None, 3) and ys[1].shape == (None,)
        got = run_all([c, ys[0], ys[1]], {xs: xs_np})
    carry, ys0, ys1 = np.zeros(3), [None] * n, [None] * n
    for i in (reversed(range(n)) if reverse else range(n)):
        ys0[i], ys1[i] = carry * xs_np[i], carry.sum()
        carry = carry * 0.5 + xs_np[i]
    np.testing.assert_allclose(got[0], carry)
    np.testing.assert_allclose(got[1], np.array(ys0).reshape(n, 3))
    np.testing.assert_allclose(got[2], np.array(ys1).reshape(n))


def test_scan_zero_trips_keeps_declared_shapes(x64):
    with ga.Graph():
        xs = ga.placeholder((None, 2, 3), ga.float64, name="xs")
        c, ys = ga.scan(lambda c, x: (c + ga.sum(x), x * c), ga.constant(1.0, ga.float64), xs)
        got = run_all([c, ys], {xs: np.zeros((0, 2, 3))})
        assert got[1].shape == (0, 2, 3)
        sess = ga.Session().run(ys, {xs: np.zeros((0, 2, 3))})
        assert sess.shape == (0, 2, 3)


def test_scan_pytree_xs_and_length():
    with ga.Graph():
        xs = {"a": ga.constant(np.arange(4.0, dtype=np.float32)),
              "b": ga.constant(np.ones((4, 2), np.float32))}
        c, ys = ga.scan(lambda c, x: (c + x["a"] * x["b"], None), ga.zeros((2,)), xs)
        assert ys is None
        np.testing.assert_allclose(ga.Session().run(c), [6.0, 6.0])
        c2, ys2 = ga.scan(lambda c, _: (c + 1.0, c), ga.constant(0.0), None, length=3)
        np.testing.assert_allclose(ga.Session().run([c2, ys2])[1], [0.0, 1.0, 2.0])


def test_nested_loops(x64):
    with ga.Graph():
        x = ga.placeholder((), ga.float64, name="x")

        def outer(i, v):
            return ga.while_loop(lambda u: u < 10.0 * (ga.cast(i, ga.float64) + 1.0),
                                 lambda u: u * x + 1.0, v)

        y = ga.fori_loop(0, 3, outer, x)
        want = 1.5
        for i in range(3):
            while want < 10.0 * (i + 1):
                want = want * 1.5 + 1.0
        np.testing.assert_allclose(run_all([y], {x: 1.5})[0], want)


def test_loop_inside_cond_and_cond_inside_loop(x64):
    with ga.Graph():
        x = ga.placeholder((), ga.float64, name="x")
        a = ga.cond(x > 0, lambda v: ga.fori_loop(0, 3, lambda i, w: w * v, v), lambda v: -v, x)
        b = ga.fori_loop(0, 5, lambda i, w: ga.cond(i < 2, lambda u: u * x, lambda u: u + x, w), x)
        got = run_all([a, b], {x: 1.5})
        np.testing.assert_allclose(got, [1.5 ** 4, 1.5 ** 3 + 3 * 1.5])
        got = run_all([a, b], {x: -1.5})
        np.testing.assert_allclose(got, [1.5, (-1.5) ** 3 + 3 * -1.5])


def test_captures_variables_and_outer_tensors():
    with ga.Graph():
        v = ga.Variable(np.float32(2.0), name="v")
        x = ga.placeholder((), name="x")
        y = ga.fori_loop(0, 3, lambda i, w: w * v + x, x)
        sess = ga.Session()
        np.testing.assert_allclose(sess.run(y, {x: 1.0}), 15.0)
        sess.run(v.assign(v + 1.0))
        np.testing.assert_allclose(sess.run(y, {x: 1.0}), 40.0)
        np.testing.assert_allclose(evaluate([y], {x: np.float32(1.0)})[0], 15.0)


def test_cond_python_and_tensor_predicates(x64):
    with ga.Graph():
        x = ga.placeholder((2,), ga.float64, name="x")
        p = ga.placeholder((), ga.bool_, name="p")
        y = ga.cond(p, lambda a, b: (a * b, a), lambda a, b: (a + b, a - b), x, 2.0)
        got = run_all([y[0], y[1]], {x: np.array([1.0, 2.0]), p: np.array(True)})
        np.testing.assert_allclose(got[0], [2.0, 4.0])
        got = run_all([y[0], y[1]], {x: np.array([1.0, 2.0]), p: np.array(False)})
        np.testing.assert_allclose(got[0], [3.0, 4.0])
        z = ga.cond(True, lambda a: a * 3.0, lambda a: a, x)
        np.testing.assert_allclose(evaluate([z], {x: np.array([1.0, 2.0])})[0], [3.0, 6.0])


def test_cond_branches_with_different_dims():
    with ga.Graph():
        p = ga.placeholder((), ga.bool_)
        x = ga.placeholder((4,))
        y = ga.cond(p, lambda a: a[:2], lambda a: a[1:], x)
        assert y.shape == (None,)
        sess = ga.Session()
        assert sess.run(y, {p: True, x: np.arange(4.0)}).shape == (2,)
        assert sess.run(y, {p: False, x: np.arange(4.0)}).shape == (3,)


# ---------------------------------------------------------------------------------------------
# errors: typed, naming the construct and the user's line


def _line_of(fn):
    return f"{__file__}:{fn.__code__.co_firstlineno + 1}"


def test_error_body_structure():
    with ga.Graph(), pytest.raises(ga.GraphError, match="while_loop at .*test_control_flow.py"):
        ga.while_loop(lambda v: v < 1.0, lambda v: (v, v), 1.0)
    with ga.Graph(), pytest.raises(TypeError, match=r"structure \(\*, \*\)"):
        ga.fori_loop(0, 2, lambda i, v: (v, v), ga.constant(1.0))


def test_error_body_dtype_and_shape():
    with ga.Graph(), pytest.raises(ga.DTypeError, match="carry leaf 0 .*float64.*float32"):
        ga.while_loop(lambda v: v < 1.0, lambda v: ga.cast(v, ga.float32),
                      ga.constant(1.0, ga.float64))
    with ga.Graph(), pytest.raises(ga.ShapeError, match=r"fori_loop .* shape \(2,\) .* \(4,\)"):
        ga.fori_loop(0, 3, lambda i, v: ga.concat([v, v], 0), ga.ones((2,)))
    with ga.Graph(), pytest.raises(ga.ShapeError, match="scan"):
        ga.scan(lambda c, x: (c, x), 0.0, ga.constant(1.0))


def test_error_condition_type():
    with ga.Graph(), pytest.raises(ga.DTypeError, match="bool scalar"):
        ga.while_loop(lambda v: v, lambda v: v, 1.0)
    with ga.Graph(), pytest.raises(ga.ShapeError, match=r"bool scalar, got shape \(2,\)"):
        ga.while_loop(lambda v: v < ga.ones((2,)), lambda v: v, ga.ones((2,)))
    with ga.Graph(), pytest.raises(ga.DTypeError, match="cond at"):
        ga.cond(ga.constant(1.0), lambda: 1.0, lambda: 2.0)


def test_error_cond_branches_differ():
    with ga.Graph(), pytest.raises(TypeError, match="true_fn returns"):
        ga.cond(ga.constant(True), lambda: 1.0, lambda: (1.0, 2.0))
    with ga.Graph(), pytest.raises(ga.DTypeError, match="output leaf 0"):
        ga.cond(ga.constant(True), lambda: ga.constant(1.0), lambda: ga.constant(1))


def test_error_bad_options():
    with ga.Graph():
        with pytest.raises(ValueError, match="on_max"):
            ga.while_loop(lambda v: v < 1.0, lambda v: v, 1.0, on_max="error")
        with pytest.raises(ValueError, match="checkpoint"):
            ga.fori_loop(0, 2, lambda i, v: v, 1.0, checkpoint=0)
        with pytest.raises(ga.DTypeError, match="bounds"):
            ga.fori_loop(0.0, 2, lambda i, v: v, 1.0)


def test_on_max_error_in_every_runtime(x64):
    with ga.Graph():
        x = ga.placeholder((), ga.float64, name="x")
        y = ga.while_loop(lambda v: v < 100.0, lambda v: v * 2.0, x, max_iterations=5,
                          on_max="error")
        (dy,) = ga.gradients(y, [x])
        sess = ga.Session()
        np.testing.assert_allclose(sess.run([y, dy], {x: 10.0}), [160.0, 16.0])
        for fetch in (y, dy):
            with pytest.raises(ga.RunError, match="exceeded max_iterations"):
                sess.run(fetch, {x: 1.0})
            with pytest.raises(ga.RunError, match=r"while_loop at .*max_iterations=5"):
                evaluate([fetch], {x: np.float64(1.0)})
        model = ga.export.to_onnx(y, inputs=[x])
        plain = ort.InferenceSession(model.SerializeToString())
        assert plain.run(None, {"x": np.array(10.0)})[0] == 160.0
        with pytest.raises(Exception, match="exceeded max_iterations"):
            plain.run(None, {"x": np.array(1.0)})


# ---------------------------------------------------------------------------------------------
# lowering and export


def _bodies(model):
    out = []
    stack = list(model.graph.node)
    while stack:
        n = stack.pop()
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                out.append(a.g)
                stack.extend(a.g.node)
    return out


def test_export_checks_and_lowers_to_loop_and_if(x64):
    with ga.Graph():
        x = ga.placeholder((3,), ga.float64, name="x")
        y = ga.while_loop(lambda v: ga.sum(v) < 100.0, lambda v: v * 2.0 + 1.0, x)
        z = ga.cond(ga.sum(x) > 0, lambda a: a * 2.0, lambda a: -a, y)
        model = ga.export.to_onnx({"z": z}, inputs=[x])
        onnx.checker.check_model(model, full_check=True)
        ops = [n.op_type for n in model.graph.node]
        assert "Loop" in ops and "If" in ops
        for body in _bodies(model):
            assert "Identity" not in [n.op_type for n in body.node], body.name
        # the cond of every Loop is explicit (onnx.reference runs 0 trips without one)
        for n in model.graph.node:
            if n.op_type == "Loop":
                assert n.input[1] != ""
        got = run_all([z], {x: np.array([1.0, 2.0, 3.0])})
        want = np.array([1.0, 2.0, 3.0])
        while want.sum() < 100.0:
            want = want * 2.0 + 1.0
        np.testing.assert_allclose(got[0], want * 2.0)


def test_fori_export_runs_in_reference_evaluator(x64):
    with ga.Graph():
        x = ga.placeholder((), ga.float64, name="x")
        y = ga.fori_loop(0, 4, lambda i, v: v * x + ga.cast(i, ga.float64), x)
        np.testing.assert_allclose(run_all([y], {x: 2.0})[0], 43.0)  # 2 -> 4 -> 9 -> 20 -> 43


def test_iteration_number_as_scan_output(x64):
    # onnxruntime 1.31 stacks Loop's iteration input wrongly when a body returns it directly
    with ga.Graph():
        _, ys = ga.scan(lambda c, _: (c + 1, c), ga.constant(0, ga.int64), None, length=5)
        _, ys2 = ga.scan(lambda c, x: (c, x), ga.constant(0, ga.int64),
                         ga.constant(np.arange(5, dtype=np.int64)))
        got = run_all([ys, ys2], {}, reference=False)
        np.testing.assert_array_equal(got[0], np.arange(5))
        np.testing.assert_array_equal(got[1], np.arange(5))


def test_text_ir_shows_loop_bodies():
    with ga.Graph() as g:
        ga.fori_loop(0, 3, lambda i, v: v * 2.0, ga.constant(1.0))
        text = g.text()
    assert "loop" in text and "fori_body" in text
    assert len(loop_nodes(g)) == 1


def test_dict_carry_mismatch_names_the_keys():
    x = ga.placeholder((), name="x")
    with pytest.raises(ga.GraphadError, match=r"returns structure \{'b': \*\} but the loop "
                                              r"carries \{'a': \*\}"):
        ga.while_loop(lambda s: s["a"] < 3.0, lambda s: {"b": s["a"]}, {"a": x})


def test_scan_length_checked_against_run_time_xs():
    """xs of unknown length scanned with length=5: 3 or 7 rows fail the run (interpreter and
    Session) instead of reading out of range or silently dropping rows."""
    from graphad.interpret import evaluate

    xs = ga.placeholder((None,), name="xs")
    c, _ = ga.scan(lambda c, x: (c + x, c * x), 0.0, xs, length=5)
    sess = ga.Session()
    assert float(sess.run(c, {xs: np.arange(5.0)})) == 10.0
    for n in (3, 7):
        with pytest.raises(ga.RunError, match="other than length 5"):
            sess.run(c, {xs: np.arange(float(n))})
        with pytest.raises(ga.RunError, match="other than length 5"):
            evaluate([c], {xs: np.arange(float(n), dtype=np.float32)})
    (g,) = ga.gradients(c, [xs])
    np.testing.assert_array_equal(sess.run(g, {xs: np.arange(5.0)}), np.ones(5))
