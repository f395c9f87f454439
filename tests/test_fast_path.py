"""The per-call fast paths of Session.run and jit-compiled calls behave exactly like the full path:
same validation errors, conversions, results, result structures and failure atomicity."""

import numpy as np
import pytest

import graphad as ga
from graphad.session import auto_threads


@pytest.fixture
def g():
    graph = ga.Graph("fast")
    with graph:
        yield graph


def test_repeated_runs_then_bad_feeds_still_raise(g):
    x = ga.placeholder((2, 3), name="x")
    y = ga.sum(x * 2.0, axis=1)
    s = ga.Session(g)
    a = np.ones((2, 3), np.float32)
    for k in range(3):
        np.testing.assert_allclose(s.run(y, {x: a * k}), [6.0 * k] * 2)
    assert len(s._plans) == 1
    with pytest.raises(ga.FeedError, match="expected shape"):
        s.run(y, {x: np.ones((3, 3), np.float32)})
    with pytest.raises(ga.FeedError, match="rank"):
        s.run(y, {x: np.ones(6, np.float32)})
    # a lossless conversion (float64 -> float32) goes through the validator and still works
    np.testing.assert_allclose(s.run(y, {x: np.full((2, 3), 0.5)}), [3.0, 3.0])
    np.testing.assert_allclose(s.run(y, {x: [[1, 1, 1], [2, 2, 2]]}), [6.0, 12.0])


def test_lossy_casts_refused_after_fast_calls(g):
    i = ga.placeholder((2,), ga.int32, name="i")
    out = i * 2
    s = ga.Session(g)
    for _ in range(2):
        assert s.run(out, {i: np.array([1, 2], np.int32)}).tolist() == [2, 4]
    with pytest.raises(ga.FeedError, match="without losing"):
        s.run(out, {i: np.array([1.5, 2.0])})
    with pytest.raises(ga.FeedError, match="without losing"):
        s.run(out, {i: np.array([2**40, 1], np.int64)})


def test_non_contiguous_feeds(g):
    x = ga.placeholder((3, 3), name="x")
    big = ga.placeholder((80, 80), name="big")
    y, z = x * 1.0, big * 1.0
    s = ga.Session(g)
    base = np.arange(24, dtype=np.float32).reshape(3, 8)
    bigbase = np.arange(160 * 80, dtype=np.float32).reshape(80, 160)
    for _ in range(3):  # first call (validator), then the fast path
        got_y, got_z = s.run((y, z), {x: base[:, ::2][:, :3], big: bigbase[:, ::2]})
        np.testing.assert_array_equal(got_y, base[:, ::2][:, :3])
        np.testing.assert_array_equal(got_z, bigbase[:, ::2])
        assert isinstance(s.run((y, z), {x: base[:, :3], big: bigbase[:, :80]}), tuple)


def test_dynamic_and_named_dims(g):
    a = ga.placeholder(("n", 2), name="a")
    b = ga.placeholder(("n",), name="b")
    y = ga.sum(a, axis=1) + b
    s = ga.Session(g)
    for n in (1, 4, 1, 4, 7):
        got = s.run(y, {a: np.ones((n, 2), np.float32), b: np.zeros(n, np.float32)})
        np.testing.assert_allclose(got, np.full(n, 2.0))
    with pytest.raises(ga.FeedError, match="'n'"):
        s.run(y, {a: np.ones((4, 2), np.float32), b: np.zeros(3, np.float32)})


def test_results_are_fresh_arrays(g):
    x = ga.placeholder((3,), name="x")
    y = x + 1.0
    s = ga.Session(g)
    feed = np.zeros(3, np.float32)
    r1 = s.run(y, {x: feed})
    feed[:] = 5.0
    r2 = s.run(y, {x: feed})
    np.testing.assert_array_equal(r1, [1, 1, 1])
    np.testing.assert_array_equal(r2, [6, 6, 6])
    r2[0] = -1.0
    np.testing.assert_array_equal(s.run(y, {x: feed}), [6, 6, 6])


def test_fetch_structures_on_the_fast_path(g):
    x = ga.placeholder((2,), name="x")
    v = ga.Variable(np.zeros(2, np.float32), name="v")
    y = x * 3.0
    step = v.assign_add(x)
    s = ga.Session(g)
    feeds = {x: np.array([1.0, 2.0], np.float32)}
    for k in range(1, 4):
        out = s.run([y, step, y, v], feeds)
        assert isinstance(out, list) and out[1] is None
        np.testing.assert_allclose(out[0], [3, 6])
        np.testing.assert_allclose(out[2], [3, 6])
        np.testing.assert_allclose(out[3], [2 * (k - 1), 4 * (k - 1)])  # read before the update
        assert s.run(step, feeds) is None
        assert isinstance(s.run((y,), feeds), tuple)
        assert set(s.run({"a": y}, feeds)) == {"a"}
    np.testing.assert_allclose(s.run(v), [6, 12])


def test_failed_fast_run_keeps_variables(g):
    x = ga.placeholder((None, 2), name="x")
    t = ga.placeholder((None,), name="t")
    w = ga.Variable(np.ones(2, np.float32), name="w")
    loss = ga.sum((x @ w - t) ** 2)
    step = ga.optimizers.SGD(0.01).minimize(loss)
    s = ga.Session(g)
    xs, ts = np.ones((4, 2), np.float32), np.zeros(4, np.float32)
    for _ in range(3):
        s.run(step, {x: xs, t: ts})
    before = s.value(w)
    with pytest.raises(ga.GraphadError):
        s.run(step, {x: xs, t: ts[:3]})  # shapes clash inside onnxruntime
    np.testing.assert_array_equal(s.value(w), before)
    s.run(step, {x: xs, t: ts})
    assert not np.array_equal(s.value(w), before)


def test_closed_session_refuses_fast_calls(g):
    x = ga.placeholder((), name="x")
    s = ga.Session(g)
    s.run(x * 2.0, {x: np.float32(1)})
    s.close()
    with pytest.raises(ga.GraphError, match="closed"):
        s.run(x * 2.0, {x: np.float32(1)})


def test_temporary_operation_fetches_do_not_alias(g):
    a = ga.Variable(0.0, name="a")
    b = ga.Variable(0.0, name="b")
    a.assign_add(1.0, name="inc_a")
    b.assign_add(10.0, name="inc_b")
    s = ga.Session(g)
    for _ in range(3):
        s.run("inc_a")
        s.run("inc_b")
    assert s.run([a, b]) == [3.0, 30.0]


def test_jit_fast_path_arguments():
    def f(x, s):
        return x * s, x

    jf = ga.jit(f)
    x = np.arange(3, dtype=np.float32)
    for k in range(3):
        out, back = jf(x, np.float32(k))
        np.testing.assert_allclose(out, x * k)
        back[0] = 99.0  # a returned input is a copy
        assert x[0] == 0.0
    np.testing.assert_allclose(jf(x, 2.0)[0], x * 2)  # Python float: a new signature
    np.testing.assert_allclose(jf(x.astype(np.float64), 2.0)[0], x * 2)  # float64 -> float32
    assert jf(x.astype(np.float64), 2.0)[0].dtype == np.float32
    np.testing.assert_allclose(jf(x[::-1], np.float32(1))[0], x[::-1])  # non-contiguous


def test_jit_constant_outputs_are_fresh():
    jf = ga.jit(lambda x: (x + 1.0, 2.0))
    x = np.zeros(2, np.float32)
    first = jf(x)[1]
    first[...] = 7.0
    assert jf(x)[1] == 2.0


def test_auto_threads():
    with ga.Graph("small"):
        x = ga.placeholder((4, 3))
        small = x @ ga.constant(np.ones((3, 2), np.float32))
    assert auto_threads([small]) == 1
    with ga.Graph("big"):
        a = ga.placeholder((256, 784))
        big = a @ ga.constant(np.ones((784, 512), np.float32))
    assert auto_threads([big]) is None


def test_schedule_early_keeps_loop_captures_valid():
    import onnx  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415

    from graphad.session import schedule_early  # noqa: PLC0415

    with ga.Graph("sched"):
        x = ga.placeholder((3,), name="x")
        outs = []
        h = x
        for k in range(4):
            w = ga.sin(h) * float(k + 1)  # captured by the loop body below
            _, h = ga.while_loop(lambda s: s[0] < 3, lambda s, w=w: (s[0] + 1, s[1] * 0.5 + w),
                                 (ga.constant(np.int64(0)), h))
            outs.append(ga.cos(x) * h)  # reads x again late: depth order moves it up
        model = ga.export.to_onnx({"y": ga.sum(ga.stack(outs, 0))})
    before = [n.name for n in model.graph.node]
    xv = np.array([0.1, 0.2, 0.3], np.float32)

    def run(m):
        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return s.run(None, {s.get_inputs()[0].name: xv})[0]

    want = run(model)
    schedule_early(model)
    onnx.checker.check_model(model, full_check=True)
    assert sorted(n.name for n in model.graph.node) == sorted(before)
    np.testing.assert_allclose(run(model), want, rtol=1e-6)
