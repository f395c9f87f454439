"""Session: feeds, fetch pytrees, resident variables, caching, failure atomicity, save/restore."""

import numpy as np
import pytest

import graphad as ga

HERE = "test_session.py"


@pytest.fixture
def g():
    graph = ga.Graph("t")
    with graph:
        yield graph


def test_fetch_pytrees(g):
    x = ga.placeholder((2,), name="x")
    y = x * 2.0
    z = ga.exp(x)
    s = ga.Session(g)
    out = s.run({"a": y, "b": (z, [y, None])}, {x: [1.0, 2.0]})
    np.testing.assert_allclose(out["a"], [2, 4])
    np.testing.assert_allclose(out["b"][0], np.exp([1, 2]), rtol=1e-6)
    np.testing.assert_allclose(out["b"][1][0], [2, 4])
    assert out["b"][1][1] is None
    assert isinstance(out["b"], tuple) and isinstance(out["b"][1], list)


def test_feed_by_name_and_fetch_by_name(g):
    x = ga.placeholder((), name="x")
    y = ga.multiply(x, 3.0, name="y")
    s = ga.Session(g)
    assert s.run("y", {"x": 2.0}) == 6.0
    assert s.run(y, {"x": 2.0}) == 6.0


def test_variables_resident_and_assign(g):
    v = ga.Variable(np.array([1.0, 2.0], np.float32), name="v")
    step = v.assign(v * 2.0)
    s = ga.Session(g)
    np.testing.assert_allclose(s.run(v), [1, 2])
    for _ in range(3):
        assert s.run(step) is None
    np.testing.assert_allclose(s.run(v), [8, 16])
    s.assign(v, [5.0, 6.0])
    np.testing.assert_allclose(s.run(v), [5, 6])
    # reads in the same run see the value at the start of the run
    old, _ = s.run([v, step])
    np.testing.assert_allclose(old, [5, 6])
    np.testing.assert_allclose(s.run(v), [10, 12])
    # a second session starts from the initial value
    np.testing.assert_allclose(ga.Session(g).run(v), [1, 2])


def test_assign_add_sub_and_group(g):
    a = ga.Variable(1.0, name="a")
    b = ga.Variable(10.0, name="b")
    step = ga.group(a.assign_add(2.0), b.assign_sub(a))
    s = ga.Session(g)
    s.run(step)
    assert s.run([a, b]) == [3.0, 9.0]
    s.run(step)
    assert s.run([a, b]) == [5.0, 6.0]


def test_double_assignment_in_one_run_is_refused(g):
    a = ga.Variable(1.0, name="a")
    with pytest.raises(ga.ExportError, match="assigned twice"):
        ga.Session(g).run(ga.group(a.assign(2.0), a.assign(3.0)))


def test_compile_cache(g):
    x = ga.placeholder((None,), name="x")
    y = x + 1.0
    s = ga.Session(g)
    s.run(y, {x: [1.0]})
    s.run(y, {x: [1.0, 2.0, 3.0]})
    assert len(s._cache) == 1
    s.run([y, y * 2.0], {x: [1.0]})
    assert len(s._cache) == 2


def test_failed_run_keeps_variables(g):
    x = ga.placeholder((None,), name="x")
    v = ga.Variable(np.zeros(3, np.float32), name="v")
    step = v.assign(v + x)  # x of the wrong length fails inside onnxruntime
    s = ga.Session(g)
    s.run(step, {x: [1.0, 1.0, 1.0]})
    with pytest.raises(ga.GraphadError):
        s.run(step, {x: [1.0, 2.0]})
    np.testing.assert_allclose(s.run(v), [1, 1, 1])
    with pytest.raises(ga.FeedError):
        s.run(step, {x: [[1.0]]})
    np.testing.assert_allclose(s.run(v), [1, 1, 1])
    s.run(step, {x: [1.0, 1.0, 1.0]})
    np.testing.assert_allclose(s.run(v), [2, 2, 2])


def test_save_restore_npz(g, tmp_path):
    v = ga.Variable(np.arange(3, dtype=np.float32), name="v")
    w = ga.Variable(np.ones((2, 2), np.float64), name="w", dtype=ga.float64)
    s = ga.Session(g)
    s.run(v.assign(v * 3.0))
    path = tmp_path / "vars.npz"
    s.save(path)
    s2 = ga.Session(g)
    s2.restore(path)
    np.testing.assert_allclose(s2.run(v), [0, 3, 6])
    assert s2.run(w).dtype == np.float64
    np.savez(tmp_path / "bad.npz", v=np.zeros(5, np.float32), w=np.ones((2, 2)))
    with pytest.raises(ga.GraphadError, match="nothing was changed"):
        s2.restore(tmp_path / "bad.npz")
    np.testing.assert_allclose(s2.run(v), [0, 3, 6])


def test_devices():
    assert ga.Session(device="cpu").device == "cpu"
    s = ga.Session(device="auto")
    assert s.device in ("cpu", "cuda")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ga.DeviceError, match="CUDA"):
            ga.Session(device="cuda")
    with pytest.raises(ga.DeviceError):
        ga.Session(device="tpu")


def test_default_graph_context():
    g1 = ga.Graph("one")
    with g1:
        assert ga.get_default_graph() is g1
        x = ga.placeholder((), name="x")
        with ga.Graph("two").as_default() as g2:
            assert ga.get_default_graph() is g2
        assert ga.get_default_graph() is g1
    assert ga.get_default_graph() is not g1
    assert x.graph is g1 and x.op.graph is g1


def test_tensor_identity_semantics(g):
    x = ga.placeholder((3,), name="x")
    y = x + 1.0
    assert (x == y) is False and (x == x) is True
    d = {x: 1, y: 2}
    assert d[x] == 1 and len(d) == 2
    assert len(x) == 3
    with pytest.raises(TypeError):
        bool(x)
