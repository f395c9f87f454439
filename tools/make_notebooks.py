"""Writes notebooks/*.ipynb from the cell sources below (outputs are not committed).

Run `python tools/make_notebooks.py` after editing; the test suite executes every notebook.
"""

import os

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "notebooks")


def md(text):
    return new_markdown_cell(text.strip("\n"))


def code(text):
    return new_code_cell(text.strip("\n"))


QUICKSTART = [
    md("""
# graphad quickstart
Build a symbolic graph, run it in a `Session`, differentiate it, export it to ONNX and run the
exported file in plain onnxruntime.
"""),
    code("""
import numpy as np
import graphad as ga

g = ga.Graph("quickstart")
with g:
    x = ga.placeholder(("batch", 3), name="x")
    w = ga.Variable(np.array([0.5, -1.0, 2.0], np.float32), name="w")
    b = ga.Variable(0.1, name="b")
    y = ga.tanh(x @ w + b)
    loss = ga.mean(y ** 2)
print(g)
"""),
    md("A `Session` compiles what a fetch needs to ONNX and runs it on onnxruntime; variables stay resident."),
    code("""
sess = ga.Session(g)
feed = {x: np.arange(6, dtype=np.float32).reshape(2, 3) / 6}
print(sess.run({"y": y, "loss": loss}, feed))
"""),
    md("Symbolic gradients (TF-1 style) are ordinary graph nodes:"),
    code("""
dw, db = ga.gradients(loss, [w, b])
step = ga.group(w.assign_sub(0.5 * dw), b.assign_sub(0.5 * db))
for i in range(5):
    sess.run(step, feed)
    print(i, sess.run(loss, feed))
"""),
    md("Export the trained model and run it where only onnxruntime is installed:"),
    code("""
import tempfile, os
import onnxruntime as ort

path = os.path.join(tempfile.mkdtemp(), "quickstart.onnx")
ga.export.to_onnx({"y": y}, session=sess, path=path)
plain = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
(y_onnx,) = plain.run(None, {"x": feed[x]})
assert np.array_equal(y_onnx, sess.run(y, feed))
y_onnx
"""),
    md("The graph renders as a picture when it is a cell's value:"),
    code("g"),
]

AUTODIFF = [
    md("""
# Automatic differentiation
The functional transforms work on plain numpy values (trace, compile once, run on onnxruntime) and on
symbolic tensors inside a graph. They compose to any order.
"""),
    code("""
import numpy as np
import graphad as ga

f = lambda x: ga.sum(x ** 3 + x)
print(ga.grad(f)(np.array([[1., 1.], [2., 3.], [5., 8.]])))
print(ga.grad(ga.tanh)(2.0), 1 - np.tanh(2.0) ** 2)
print(ga.grad(ga.grad(lambda x: x ** 3 + 2 * x ** 2 - 3 * x + 1))(1.0))
"""),
    md("`value_and_grad` with auxiliary outputs, and with a `transform` of the value (Nx style):"),
    code("""
def loss(w, x):
    pred = ga.tanh(x @ w)
    return ga.mean(pred ** 2), pred

(val, pred), g = ga.value_and_grad(loss, has_aux=True)(np.ones(3), np.eye(3))
print(val, g)
v, gt = ga.value_and_grad(lambda w: ga.sum(w ** 2), transform=ga.sqrt)(np.array([3.0, 4.0]))
print(v, gt)   # value 25; gradient of sqrt(sum(w^2)) = w / 5
"""),
    md("Forward mode, reverse mode, Jacobians and Hessians agree:"),
    code("""
F = lambda x: ga.stack([x[0] ** 2 + x[1] ** 2, x[0] * x[1]])
x0 = np.array([1.5, -2.0])
print(ga.jvp(F, (x0,), (np.array([1.0, 0.0]),)))
out, vjp_fn = ga.vjp(F, x0)
print(vjp_fn(np.array([1.0, 0.0])))
print(ga.jacfwd(F)(x0))
print(ga.jacrev(F)(x0))

rosen = lambda x: ga.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
x = np.linspace(-1, 1, 5)
H = ga.hessian(rosen)(x)
print(np.allclose(H @ np.ones(5), ga.hvp(rosen, (x,), (np.ones(5),))))
"""),
    md("Custom rules: a `custom_jvp` also gives reverse mode; `check_grads` compares with finite differences."),
    code("""
@ga.custom_jvp
def f(x, y):
    return ga.sin(x) * y

@f.defjvp
def f_jvp(primals, tangents):
    x, y = primals
    xd, yd = tangents
    return f(x, y), ga.cos(x) * xd * y + ga.sin(x) * yd

print(ga.jvp(f, (2.0, 3.0), (1.0, 0.0)))
print(ga.grad(f)(2.0, 3.0))
ga.check_grads(lambda x: ga.sum(ga.sin(x) * x), (np.linspace(0, 1, 4),), order=2)
print(ga.numerical_grad(lambda x: np.sum(np.sin(x) * x), (np.linspace(0, 1, 4),)))
"""),
    md("Every transform can show the graph it traced:"),
    code("print(ga.debug_expr(ga.grad(lambda x: ga.sum(ga.tanh(x) ** 2)))(np.ones(3)))"),
]

TRAINING = [
    md("""
# Training and exporting
Train an MLP in a `Session`, export it for inference, export the training step itself and continue
training in plain onnxruntime.
"""),
    code("""
import numpy as np
import graphad as ga

rng = np.random.default_rng(0)
X = rng.normal(size=(512, 20)).astype(np.float32)
true_w = rng.normal(size=(20, 3)).astype(np.float32)
labels = (X @ true_w).argmax(1)
Y = np.eye(3, dtype=np.float32)[labels]

g = ga.Graph("mlp")
with g:
    x = ga.placeholder(("batch", 20), name="x")
    y = ga.placeholder(("batch", 3), name="y")
    w1 = ga.Variable(rng.normal(0, 0.3, (20, 32)).astype(np.float32), name="w1")
    b1 = ga.Variable(np.zeros(32, np.float32), name="b1")
    w2 = ga.Variable(rng.normal(0, 0.3, (32, 3)).astype(np.float32), name="w2")
    b2 = ga.Variable(np.zeros(3, np.float32), name="b2")
    logits = ga.relu(x @ w1 + b1) @ w2 + b2
    loss = -ga.mean(ga.sum(y * ga.log_softmax(logits), axis=1))
    step = ga.optimizers.Adam(0.01).minimize(loss)
    probs = ga.softmax(logits)

sess = ga.Session(g)
for i in range(201):
    if i % 50 == 0:
        acc = (sess.run(probs, {x: X}).argmax(1) == labels).mean()
        print(i, sess.run(loss, {x: X, y: Y}), acc)
    sess.run(step, {x: X, y: Y})
"""),
    code("""
import os, tempfile
import onnxruntime as ort

d = tempfile.mkdtemp()
ga.export.to_onnx({"probs": probs}, session=sess, path=os.path.join(d, "mlp.onnx"))
m = ga.export.train_step_to_onnx(step, outputs={"loss": loss}, path=os.path.join(d, "step.onnx"))
print([i.name for i in m.graph.input])
print([o.name for o in m.graph.output])
"""),
    md("Continue training for 20 steps in plain onnxruntime, feeding each `.next` back; compare with 20 more Session steps:"),
    code("""
state = sess.variable_values()
plain = ort.InferenceSession(os.path.join(d, "step.onnx"), providers=["CPUExecutionProvider"])
names = [o.name for o in plain.get_outputs()]
for _ in range(20):
    feed = {"x": X, "y": Y, **{i.name: state[i.name] for i in plain.get_inputs() if i.name in state}}
    res = dict(zip(names, plain.run(None, feed)))
    state = {k: res.get(k + ".next", v) for k, v in state.items()}
for _ in range(20):
    sess.run(step, {x: X, y: Y})
print("bit-for-bit equal:", all(np.array_equal(sess.value(v), state[v.name]) for v in g.variables.values()))
print("loss", res["loss"])
"""),
    md("Variables save to and restore from `.npz` (never pickle):"),
    code("""
sess.save(os.path.join(d, "vars.npz"))
fresh = ga.Session(g)
fresh.restore(os.path.join(d, "vars.npz"))
print(fresh.run(loss, {x: X, y: Y}) == sess.run(loss, {x: X, y: Y}))
"""),
]

NOTEBOOKS = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_autodiff.ipynb": AUTODIFF,
    "04_training_export.ipynb": TRAINING,
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nbformat.write(nb, os.path.join(OUT, name))
        print("wrote", name)


if __name__ == "__main__":
    main()
