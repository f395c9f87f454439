"""`python -m graphad.demo`: build, differentiate, train, export and re-run a small classifier.

The embedded default data set is two interleaved spirals generated from a fixed seed; pass
`--steps N`, `--out DIR` to change the run. Everything runs on onnxruntime's CPU provider.
"""

import argparse
import os
import tempfile
import time

import numpy as np

import graphad as ga


def spirals(n=256, seed=0):
    """Two interleaved spirals, 2-D points with one-hot labels (the embedded default)."""
    rng = np.random.default_rng(seed)
    t = np.sqrt(rng.uniform(0.05, 1.0, n)) * 3.0 * np.pi
    label = rng.integers(0, 2, n)
    sign = np.where(label == 0, 1.0, -1.0)
    xy = np.stack([sign * t * np.cos(t), sign * t * np.sin(t)], axis=1) / (3.0 * np.pi)
    xy += rng.normal(0.0, 0.03, xy.shape)
    return xy.astype(np.float32), np.eye(2, dtype=np.float32)[label]


def build(hidden=32, seed=0):
    rng = np.random.default_rng(seed)
    g = ga.Graph("demo")
    with g:
        x = ga.placeholder(("batch", 2), name="x")
        y = ga.placeholder(("batch", 2), name="labels")
        w1 = ga.Variable(rng.normal(0, 1.0, (2, hidden)).astype(np.float32), name="w1")
        b1 = ga.Variable(np.zeros(hidden, np.float32), name="b1")
        w2 = ga.Variable(rng.normal(0, 0.3, (hidden, hidden)).astype(np.float32), name="w2")
        b2 = ga.Variable(np.zeros(hidden, np.float32), name="b2")
        w3 = ga.Variable(rng.normal(0, 0.3, (hidden, 2)).astype(np.float32), name="w3")
        b3 = ga.Variable(np.zeros(2, np.float32), name="b3")
        h = ga.tanh(x @ w1 + b1)
        h = ga.tanh(h @ w2 + b2)
        logits = h @ w3 + b3
        loss = -ga.mean(ga.sum(y * ga.log_softmax(logits, axis=-1), axis=1))
        step = ga.optimizers.SGD(0.5, momentum=0.5).minimize(loss)
        probs = ga.softmax(logits, axis=-1)
    return g, x, y, loss, step, probs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--out", default=None, help="folder for the exported model (default: temp)")
    args = ap.parse_args(argv)

    xs, ys = spirals()
    g, x, y, loss, step, probs = build()
    print(f"built graph {g.name!r}: {len(g.nodes)} nodes (forward + gradient + update)")
    sess = ga.Session(g)
    t0 = time.perf_counter()
    for i in range(args.steps + 1):
        if i % (max(args.steps // 6, 1)) == 0:
            value = sess.run(loss, {x: xs, y: ys})
            acc = (sess.run(probs, {x: xs}).argmax(1) == ys.argmax(1)).mean()
            print(f"step {i:5d}  loss {value:.4f}  accuracy {acc:.3f}")
        if i < args.steps:
            sess.run(step, {x: xs, y: ys})
    dt = time.perf_counter() - t0
    print(f"trained {args.steps} steps in {dt:.2f} s ({1e3 * dt / max(args.steps, 1):.2f} ms/step)")

    out_dir = args.out or tempfile.mkdtemp(prefix="graphad-demo-")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "spirals.onnx")
    ga.export.to_onnx({"probs": probs}, session=sess, path=path)
    print(f"exported the trained classifier to {path}")

    import onnxruntime as ort  # noqa: PLC0415  (plain onnxruntime, no graphad involved)

    plain = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (p_onnx,) = plain.run(None, {"x": xs})
    p_sess = sess.run(probs, {x: xs})
    print(f"plain onnxruntime re-run: max |difference| vs Session = {np.abs(p_onnx - p_sess).max():.2e}")
    print(f"accuracy of the exported model: {(p_onnx.argmax(1) == ys.argmax(1)).mean():.3f}")
    print("first 3 predictions:", np.round(p_onnx[:3].astype(np.float64), 3).tolist())
    continue_training(sess, g, step, loss, x, y, xs, ys, out_dir, ort)


def continue_training(sess, g, step, loss, x, y, xs, ys, out_dir, ort, k=20):
    """Export the training step itself, run k more steps in plain onnxruntime, compare."""
    path = os.path.join(out_dir, "spirals_train_step.onnx")
    model = ga.export.train_step_to_onnx(step, outputs={"loss": loss}, path=path)
    names = [i.name for i in model.graph.input]
    print(f"exported the training step to {path}: inputs {names}")
    state = sess.variable_values()
    plain = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in plain.get_outputs()]
    for _ in range(k):
        feed = {"x": xs, "labels": ys, **{n: state[n] for n in names if n in state}}
        res = dict(zip(out_names, plain.run(None, feed)))
        state = {n: res.get(f"{n}.next", v) for n, v in state.items()}
    for _ in range(k):
        sess.run(step, {x: xs, y: ys})
    same = all(np.array_equal(sess.value(v), state[v.name]) for v in g.variables.values())
    print(f"{k} more steps in plain onnxruntime: loss {res['loss']:.4f}; parameters equal to "
          f"{k} Session steps bit for bit: {same}")


if __name__ == "__main__":
    main()
