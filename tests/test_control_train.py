"""Training through a data-dependent while_loop: many Session steps with ga.gradients and
assign_sub, and the same step exported with train_step_to_onnx and continued in plain
onnxruntime; plus a small W3-shaped (Euler, while t < T) gradient against numpy."""

import numpy as np
import onnxruntime as ort

import graphad as ga


def _model(x, w, b):
    """Integrate v <- v + h tanh(w v + b) while t < 1 (t advances by h = 0.1)."""
    def body(s):
        v, t = s
        return v + 0.1 * ga.tanh(w * v + b), t + 0.1

    v, _ = ga.while_loop(lambda s: s[1] < 0.95, body, (x, ga.zeros_like(x[0])))
    return v


def _target(xs, w=1.5, b=0.3):
    v = xs.astype(np.float64)
    for _ in range(10):
        v = v + 0.1 * np.tanh(w * v + b)
    return v.astype(np.float32)


def _build(lr=1.0):
    rng = np.random.default_rng(0)
    xs = rng.uniform(-1.0, 1.0, size=(16,)).astype(np.float32)
    target = _target(xs)
    w = ga.Variable(np.float32(0.1), name="w")
    b = ga.Variable(np.float32(0.0), name="b")
    x = ga.placeholder((16,), name="x")
    y = ga.placeholder((16,), name="y")
    loss = ga.mean((_model(x, w, b) - y) ** 2)
    gw, gb = ga.gradients(loss, [w, b])
    step = ga.group(w.assign_sub(lr * gw), b.assign_sub(lr * gb))
    return (x, y, xs, target), loss, step, (w, b)


def test_training_through_while_loop_converges():
    with ga.Graph():
        (x, y, xs, target), loss, step, (w, b) = _build()
        sess = ga.Session()
        feed = {x: xs, y: target}
        first = float(sess.run(loss, feed))
        for _ in range(150):
            sess.run(step, feed)
        last = float(sess.run(loss, feed))
        assert last < 1e-6 * first, (first, last)
        np.testing.assert_allclose(sess.run([w, b]), [1.5, 0.3], rtol=1e-3)  # recovered


def test_exported_training_step_continues_in_plain_onnxruntime():
    with ga.Graph():
        (x, y, xs, target), loss, step, (w, b) = _build()
        sess = ga.Session()
        feed = {x: xs, y: target}
        model = ga.export.train_step_to_onnx(step, outputs={"loss": loss})
        plain = ort.InferenceSession(model.SerializeToString())
        state = {"w": np.array(0.1, np.float32), "b": np.array(0.0, np.float32)}
        losses = []
        for _ in range(100):
            out = plain.run(None, {"x": xs, "y": target, **state})
            named = dict(zip([o.name for o in plain.get_outputs()], out))
            losses.append(float(named["loss"]))
            state = {"w": named["w.next"], "b": named["b.next"]}
        for _ in range(100):
            sess.run(step, feed)
        assert losses[-1] < 1e-4 * losses[0]
        np.testing.assert_allclose(state["w"], sess.run(w), rtol=1e-5)
        np.testing.assert_allclose(state["b"], sess.run(b), rtol=1e-5, atol=1e-7)


def test_w3_shape_gradient_against_numpy():
    """A smaller W3 (state 8, h = 0.01, while t < 0.5): dW by a hand-written adjoint."""
    rng = np.random.default_rng(3)
    w0 = rng.normal(size=(8, 8)) / 3
    x0 = rng.normal(size=(8,))
    with ga.Graph(), ga.config.x64():
        w = ga.placeholder((8, 8), ga.float64)
        x = ga.placeholder((8,), ga.float64)

        def body(s):
            v, t = s
            return v + 0.01 * ga.tanh(w @ v), t + 0.01

        v, _ = ga.while_loop(lambda s: s[1] < 0.5 - 1e-9, body,
                             (x, ga.constant(0.0, ga.float64)))
        (gw,) = ga.gradients(ga.sum(v ** 2), [w])
        got = ga.Session().run(gw, {w: w0, x: x0})
    vs = [x0]
    for _ in range(50):
        vs.append(vs[-1] + 0.01 * np.tanh(w0 @ vs[-1]))
    g, dw = 2 * vs[-1], np.zeros((8, 8))
    for v in reversed(vs[:-1]):
        d = 0.01 * g * (1 - np.tanh(w0 @ v) ** 2)
        dw += np.outer(d, v)
        g = g + w0.T @ d
    np.testing.assert_allclose(got, dw, rtol=1e-10)
