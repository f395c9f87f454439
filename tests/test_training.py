"""Training: optimizers against hand-written numpy, training-step export continued in a subprocess."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

import graphad as ga


def _data(n=64, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = (x @ np.arange(1, d + 1) - 1.0 > 0).astype(np.float64)
    return x, y


def _logreg(opt, x, y):
    g = ga.Graph()
    with g, ga.config.x64():
        xp = ga.placeholder(("batch", x.shape[1]), dtype=ga.float64, name="x")
        yp = ga.placeholder(("batch",), dtype=ga.float64, name="y")
        w = ga.Variable(np.zeros(x.shape[1]), name="w", dtype=ga.float64)
        b = ga.Variable(0.0, name="b", dtype=ga.float64)
        z = xp @ w + b
        loss = ga.mean(ga.softplus(z) - yp * z)  # logistic loss, stable form
        step = opt.minimize(loss)
    return g, xp, yp, w, b, loss, step


def _numpy_grad(w, b, x, y):
    p = 1 / (1 + np.exp(-(x @ w + b)))
    return x.T @ (p - y) / len(y), np.mean(p - y)


def _numpy_train(kind, steps, x, y, **kw):
    w, b = np.zeros(x.shape[1]), 0.0
    state = {"mw": np.zeros_like(w), "mb": 0.0, "vw": np.zeros_like(w), "vb": 0.0}
    for t in range(1, steps + 1):
        gw, gb = _numpy_grad(w, b, x, y)
        if kind == "sgd":
            mom, nest, lr = kw.get("momentum", 0.0), kw.get("nesterov", False), kw["lr"]
            if mom:
                state["mw"] = mom * state["mw"] + gw
                state["mb"] = mom * state["mb"] + gb
                sw = gw + mom * state["mw"] if nest else state["mw"]
                sb = gb + mom * state["mb"] if nest else state["mb"]
            else:
                sw, sb = gw, gb
            w, b = w - lr * sw, b - lr * sb
        else:
            lr, b1, b2, eps, wd = kw["lr"], 0.9, 0.999, 1e-8, kw.get("wd", 0.0)
            new = []
            for p, gr, m, v in ((w, gw, "mw", "vw"), (b, gb, "mb", "vb")):
                state[m] = b1 * state[m] + (1 - b1) * gr
                state[v] = b2 * state[v] + (1 - b2) * gr * gr
                mh, vh = state[m] / (1 - b1 ** t), state[v] / (1 - b2 ** t)
                new.append(p - lr * (mh / (np.sqrt(vh) + eps) + wd * p))
            w, b = new
    return w, b


@pytest.mark.parametrize("kind,kw,opt", [
    ("sgd", {"lr": 0.5}, lambda: ga.optimizers.SGD(0.5)),
    ("sgd", {"lr": 0.1, "momentum": 0.9}, lambda: ga.optimizers.SGD(0.1, momentum=0.9)),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True},
     lambda: ga.optimizers.SGD(0.1, momentum=0.9, nesterov=True)),
    ("adam", {"lr": 0.05}, lambda: ga.optimizers.Adam(0.05)),
    ("adam", {"lr": 0.05, "wd": 0.1}, lambda: ga.optimizers.Adam(0.05, weight_decay=0.1)),
])
def test_optimizers_match_numpy(kind, kw, opt):
    x, y = _data()
    g, xp, yp, w, b, loss, step = _logreg(opt(), x, y)
    sess = ga.Session(g)
    losses = []
    for _ in range(30):
        losses.append(sess.run(loss, {xp: x, yp: y}))
        sess.run(step, {xp: x, yp: y})
    assert losses[-1] < losses[0] * 0.8
    wn, bn = _numpy_train(kind, 30, x, y, **kw)
    np.testing.assert_allclose(sess.run(w), wn, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sess.run(b), bn, rtol=1e-9, atol=1e-12)


def test_minimize_finds_dependent_trainables_only():
    g = ga.Graph()
    with g:
        a = ga.Variable(1.0, name="a")
        ga.Variable(2.0, name="unused")
        frozen = ga.Variable(3.0, name="frozen", trainable=False)
        loss = (a * frozen) ** 2
        step = ga.optimizers.SGD(0.01).minimize(loss)
    assert [v.name for v in ga.trainable_variables(g)] == ["a", "unused"]
    sess = ga.Session(g)
    sess.run(step)
    assert sess.run(a) == pytest.approx(1 - 0.01 * 18)
    assert sess.run(frozen) == 3.0 and sess.run(g.variables["unused"]) == 2.0
    assert {v.name for v in ga.global_variables(g)} >= {"a", "unused", "frozen"}


def test_w1_mlp_trains_with_sgd_and_adam():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 784)).astype(np.float32)
    labels = rng.integers(0, 10, 256)
    y = np.eye(10, dtype=np.float32)[labels]
    for opt in (ga.optimizers.SGD(0.01), ga.optimizers.Adam(1e-3)):
        g = ga.Graph()
        with g:
            xp = ga.placeholder((None, 784), name="x")
            yp = ga.placeholder((None, 10), name="y")
            h = xp
            sizes = [784, 512, 512, 10]
            for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
                w = ga.Variable(rng.normal(0, np.sqrt(2 / m), (m, n)).astype(np.float32), name=f"w{i}")
                bb = ga.Variable(np.zeros(n, np.float32), name=f"b{i}")
                h = h @ w + bb
                if i < 2:
                    h = ga.relu(h)
            loss = -ga.mean(ga.sum(yp * ga.log_softmax(h), axis=1))
            step = opt.minimize(loss)
        sess = ga.Session(g)
        first = sess.run(loss, {xp: x, yp: y})
        for _ in range(15):
            sess.run(step, {xp: x, yp: y})
        assert sess.run(loss, {xp: x, yp: y}) < first * 0.7


def _mlp_numpy(params, x, y, kind, lr, steps, momentum=0.0, wd=0.0, b1=0.9, b2=0.999, eps=1e-8):
    """Hand-written forward, backward and update of a ReLU MLP with mean softmax cross-entropy."""
    params = [p.copy() for p in params]
    state = [np.zeros_like(p) for p in params]
    state2 = [np.zeros_like(p) for p in params]
    n_layers = len(params) // 2
    for t in range(1, steps + 1):
        acts, pre = [x], []
        for i in range(n_layers):
            z = acts[-1] @ params[2 * i] + params[2 * i + 1]
            pre.append(z)
            acts.append(np.maximum(z, 0) if i < n_layers - 1 else z)
        z = acts[-1]
        e = np.exp(z - z.max(axis=1, keepdims=True))
        dz = (e / e.sum(axis=1, keepdims=True) - y) / len(x)
        grads = [None] * len(params)
        for i in reversed(range(n_layers)):
            if i < n_layers - 1:
                dz = dz * (pre[i] > 0)
            grads[2 * i] = acts[i].T @ dz
            grads[2 * i + 1] = dz.sum(axis=0)
            dz = dz @ params[2 * i].T
        for j, gr in enumerate(grads):
            if kind == "sgd":
                state[j] = momentum * state[j] + gr
                params[j] = params[j] - lr * state[j]
            else:
                state[j] = b1 * state[j] + (1 - b1) * gr
                state2[j] = b2 * state2[j] + (1 - b2) * gr * gr
                mh, vh = state[j] / (1 - b1 ** t), state2[j] / (1 - b2 ** t)
                params[j] = params[j] - lr * (mh / (np.sqrt(vh) + eps) + wd * params[j])
    return params


@pytest.mark.parametrize("kind,kw,make_opt", [
    ("sgd", {"lr": 0.1, "momentum": 0.9}, lambda: ga.optimizers.SGD(0.1, momentum=0.9)),
    ("adam", {"lr": 0.01, "wd": 0.05}, lambda: ga.optimizers.Adam(0.01, weight_decay=0.05)),
], ids=["sgd-momentum", "adamw"])
def test_mlp_parameters_match_numpy(kind, kw, make_opt):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(32, 20))
    y = np.eye(4)[rng.integers(0, 4, 32)]
    sizes = [20, 16, 16, 4]
    init = []
    for m, n in zip(sizes[:-1], sizes[1:]):
        init += [rng.normal(0, np.sqrt(2 / m), (m, n)), rng.normal(0, 0.1, n)]
    g = ga.Graph()
    with g, ga.config.x64():
        xp = ga.placeholder((None, 20), dtype=ga.float64, name="x")
        yp = ga.placeholder((None, 4), dtype=ga.float64, name="y")
        params = [ga.Variable(p, name=f"p{j}", dtype=ga.float64) for j, p in enumerate(init)]
        h = xp
        for i in range(3):
            h = h @ params[2 * i] + params[2 * i + 1]
            if i < 2:
                h = ga.relu(h)
        loss = -ga.mean(ga.sum(yp * ga.log_softmax(h), axis=1))
        step = make_opt().minimize(loss)
    sess = ga.Session(g)
    steps = 5
    for _ in range(steps):
        sess.run(step, {xp: x, yp: y})
    expect = _mlp_numpy(init, x, y, kind, steps=steps, **kw)
    for p, e, p0 in zip(params, expect, init):
        got = sess.run(p)
        assert got.dtype == np.float64
        assert np.abs(e - p0).max() > 1e-4, p.name  # every parameter moved
        np.testing.assert_allclose(got, e, rtol=1e-10, atol=1e-12, err_msg=p.name)


@pytest.mark.parametrize("make_opt,slots", [
    (lambda: ga.optimizers.Adam(0.05), ["w/m", "w/v", "b/m", "b/v", "Adam/step"]),
    (lambda: ga.optimizers.SGD(0.1, momentum=0.9), ["w/momentum", "b/momentum"]),
    (lambda: ga.optimizers.SGD(0.1, momentum=0.9, nesterov=True), ["w/momentum", "b/momentum"]),
], ids=["adam", "sgd-momentum", "sgd-nesterov"])
def test_train_step_export_continues_in_subprocess(tmp_path, make_opt, slots):
    x, y = _data(seed=1)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    g = ga.Graph()
    with g:
        xp = ga.placeholder(("batch", 3), name="x")
        yp = ga.placeholder(("batch",), name="y")
        w = ga.Variable(np.zeros(3, np.float32), name="w")
        b = ga.Variable(0.0, name="b")
        z = xp @ w + b
        loss = ga.mean(ga.softplus(z) - yp * z)
        step = make_opt().minimize(loss)
    k = 7
    sess = ga.Session(g)
    for _ in range(k):
        sess.run(step, {xp: x32, yp: y32})
    path = tmp_path / "step.onnx"
    model = ga.export.train_step_to_onnx(step, session=sess, outputs={"loss": loss}, path=path)
    onnx.checker.check_model(model, full_check=True)
    ins = [i.name for i in model.graph.input]
    outs = [o.name for o in model.graph.output]
    assert ins[:2] == ["x", "y"] and "w" in ins and "b" in ins
    assert outs[0] == "loss" and "w.next" in outs and "b.next" in outs
    for slot in slots:  # optimizer state travels with the step, in and out
        assert slot in ins and f"{slot}.next" in outs, slot
    state = sess.variable_values()
    np.savez(tmp_path / "state.npz", **state)
    np.savez(tmp_path / "data.npz", x=x32, y=y32)
    code = f"""
import sys, json, numpy as np, onnxruntime as ort
assert 'graphad' not in sys.modules
s = ort.InferenceSession({str(path)!r}, providers=['CPUExecutionProvider'])
st = dict(np.load({str(tmp_path / 'state.npz')!r}))
d = np.load({str(tmp_path / 'data.npz')!r})
names = [o.name for o in s.get_outputs()]
for _ in range({k}):
    feed = {{'x': d['x'], 'y': d['y']}}
    feed.update({{i.name: st[i.name] for i in s.get_inputs() if i.name in st}})
    res = dict(zip(names, s.run(None, feed)))
    st = {{n: res.get(n + '.next', v) for n, v in st.items()}}
np.savez({str(tmp_path / 'out.npz')!r}, **st)
"""
    subprocess.run([sys.executable, "-I", "-c", code], check=True, capture_output=True, text=True)
    got = dict(np.load(tmp_path / "out.npz"))
    for _ in range(k):
        sess.run(step, {xp: x32, yp: y32})
    assert set(got) == set(g.variables) >= {"w", "b", *slots}
    for v in g.variables.values():
        np.testing.assert_array_equal(got[v.name], sess.value(v), err_msg=v.name)
    assert not np.array_equal(got["w"], np.zeros(3, np.float32))  # it did train


def test_failed_step_mid_training_leaves_state():
    x, y = _data()
    g, xp, yp, w, b, loss, step = _logreg(ga.optimizers.Adam(0.1), x, y)
    sess = ga.Session(g)
    sess.run(step, {xp: x, yp: y})
    before = sess.variable_values()
    with pytest.raises(ga.FeedError):
        sess.run(step, {xp: x[:, :2], yp: y})
    with pytest.raises(ga.GraphadError):
        sess.run(step, {xp: x, yp: y[:10]})  # batch mismatch detected by onnxruntime
    after = sess.variable_values()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])


def test_train_step_export_rejects_non_operation():
    g = ga.Graph()
    with g:
        v = ga.Variable(1.0, name="v")
    with pytest.raises(ga.ExportError):
        ga.export.train_step_to_onnx(v * 2.0)
    _ = json


def test_minimize_skips_variables_reached_only_through_non_differentiable_ops():
    # TF-1: with var_list=None a variable that reaches the loss only through a comparison (here
    # the threshold of a where) gets no update; naming it explicitly still raises
    xv = np.array([-1.0, 0.5, 2.0], np.float32)
    g = ga.Graph()
    with g:
        x = ga.placeholder((3,), name="x")
        v = ga.Variable(0.0, name="v")
        w = ga.Variable(np.ones(3, np.float32), name="w")
        both = ga.Variable(1.0, name="both")  # in the condition and in a value: still trained
        loss = ga.sum(ga.where(x > v, x * w, -x * w)) + ga.where(both > 0.0, both * both, both)
        step = ga.optimizers.SGD(0.1, momentum=0.9).minimize(loss)
        with pytest.raises(ga.NotDifferentiableError, match="with respect to 'v'"):
            ga.optimizers.SGD(0.1).minimize(loss, var_list=[v, w])
        with pytest.raises(ga.NotDifferentiableError, match="with respect to 'v'"):
            ga.optimizers.SGD(0.1).minimize(ga.sum(ga.where(x > v, x, -x)))  # nothing left
    sess = ga.Session(g)
    sess.run(step, {x: xv})
    assert sess.run(v) == 0.0
    np.testing.assert_allclose(sess.run(w), 1 - 0.1 * np.abs(xv), rtol=1e-6)
    assert sess.run(both) == pytest.approx(1 - 0.1 * 2)
    assert "w/momentum" in g.variables and "both/momentum" in g.variables
    assert "v/momentum" not in g.variables  # left out, not updated with a zero gradient


def test_minimize_imported_model_with_float_threshold_before_if():
    from onnx import TensorProto, helper, numpy_helper

    then = helper.make_graph([helper.make_node("Mul", ["prod", "prod"], ["sq"])], "then", [],
                             [helper.make_tensor_value_info("sq", TensorProto.FLOAT, [3])])
    other = helper.make_graph([helper.make_node("Neg", ["prod"], ["neg"])], "else", [],
                              [helper.make_tensor_value_info("neg", TensorProto.FLOAT, [3])])
    nodes = [helper.make_node("Mul", ["x", "W"], ["prod"]),
             helper.make_node("ReduceSum", ["prod"], ["tot"], keepdims=0),
             helper.make_node("Greater", ["tot", "zero"], ["pos"]),
             helper.make_node("If", ["pos"], ["out"], then_branch=then, else_branch=other),
             helper.make_node("ReduceSum", ["out"], ["loss"], keepdims=0)]
    inits = [numpy_helper.from_array(np.full(3, 0.5, np.float32), "W"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    model = helper.make_model(
        helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                          [helper.make_tensor_value_info("loss", TensorProto.FLOAT, [])],
                          initializer=inits),
        opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    imp = ga.import_onnx(model)
    assert imp.variables["zero"].trainable and imp.variables["W"].trainable
    with imp.graph.as_default():
        step = ga.optimizers.Adam(0.1).minimize(imp.outputs["loss"])
        with pytest.raises(ga.NotDifferentiableError, match="'zero'.*'greater'"):
            ga.optimizers.SGD(0.1).minimize(imp.outputs["loss"], var_list=list(imp.variables.values()))
    sess = ga.Session(imp.graph)
    xv = np.array([1.0, 2.0, 3.0], np.float32)
    sess.run(step, {imp.inputs["x"]: xv})
    assert sess.value(imp.variables["zero"]) == 0.0
    np.testing.assert_allclose(sess.value(imp.variables["W"]), 0.5 - 0.1, rtol=1e-5)  # Adam step 1


@pytest.mark.parametrize("content", [b"PK\x03\x04garbage", b"", "truncated"])
def test_restore_corrupt_npz_raises_graphad_error_and_changes_nothing(tmp_path, content):
    g = ga.Graph()
    with g:
        w = ga.Variable(np.arange(50, dtype=np.float32), name="w")
        b = ga.Variable(1.0, name="b")
    sess = ga.Session(g)
    good = tmp_path / "good.npz"
    sess.save(good)
    sess.run([w.assign(w * 2.0), b.assign(b + 1.0)])
    if content == "truncated":
        content = good.read_bytes()[:-40]  # cuts into the central directory
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(ga.GraphadError, match="bad.npz.*nothing was changed") as info:
        sess.restore(path)
    assert type(info.value) is ga.GraphadError  # as for the other unreadable files
    np.testing.assert_array_equal(sess.run(w), np.arange(50) * 2.0)
    assert sess.run(b) == 2.0
    sess.restore(good)  # the session still works
    np.testing.assert_array_equal(sess.run(w), np.arange(50))
