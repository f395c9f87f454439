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

CONTROL = [
    md("""
# Control flow and implicit functions
`while_loop`, `fori_loop`, `scan` and `cond` are graph nodes holding body graphs; they lower to ONNX
`Loop` / `If` and differentiate in both modes, to any order, even when the trip count depends on the
data (JAX refuses reverse mode through `while_loop`).
"""),
    code("""
import numpy as np
import graphad as ga

def power_by_loop(x, n):
    # acc = acc * x, repeated while i < n: the trip count is data
    _, acc = ga.while_loop(lambda v: v[0] < n, lambda v: (v[0] + 1, v[1] * x), (0, ga.ones_like(x)))
    return acc

for n in (0, 1, 5):
    d = ga.grad(power_by_loop)(1.5, n)
    d2 = ga.grad(ga.grad(power_by_loop))(1.5, n)
    print(n, d, n * 1.5 ** (n - 1), d2)
"""),
    md("A loop whose trip count changes with the input: Newton's method for a square root, run to tolerance."),
    code("""
def newton_sqrt(a):
    def body(v):
        i, x = v
        return i + 1, 0.5 * (x + a / x)
    def cond(v):
        i, x = v
        return ga.logical_and(ga.abs(x * x - a) > 1e-6 * a, i < 100)
    return ga.while_loop(cond, body, (0, a))[1]

for a in (2.0, 9.0, 1e4):
    # value, autodiff derivative through the data-dependent loop, and the exact 1 / (2 sqrt(a))
    print(a, ga.jit(newton_sqrt)(a), ga.grad(newton_sqrt)(a), 0.5 / np.sqrt(a))
"""),
    md("`scan` carries state over the leading axis; `cond` picks a branch on data; both differentiate."),
    code("""
def cumulative(xs):
    return ga.scan(lambda c, x: (c + x, c * x), 0.0, xs)

print(ga.jit(cumulative)(np.arange(1.0, 5.0)))
print(ga.grad(lambda xs: ga.sum(cumulative(xs)[1]))(np.arange(1.0, 5.0)))

piecewise = lambda x: ga.cond(x > 0, lambda t: t ** 2, lambda t: -t, x)
print([ga.grad(piecewise)(v) for v in (-2.0, 3.0)])
"""),
    md("Implicit functions: derivatives by the implicit function theorem, not by unrolling the solver."),
    code("""
# x* = cos(a x*): the fixed point moves with a
xstar = lambda a: ga.fixed_point(lambda x, a: ga.cos(a * x), 0.5, a)
a = 0.8
x = ga.jit(xstar)(a)
print(x, ga.grad(xstar)(a))
# implicit derivative: dx/da = -x sin(a x) / (1 + a sin(a x))
print(-x * np.sin(a * x) / (1 + a * np.sin(a * x)))

cube_root = lambda c: ga.root(lambda x, c: x ** 3 - c, 1.0, c)
print(ga.jit(cube_root)(8.0), ga.grad(cube_root)(8.0), 1 / (3 * 4.0))
bis = lambda c: ga.root(lambda x, c: x ** 3 - c, 0.0, c, method="bisection", bracket=(0.0, 4.0))
print(ga.jit(bis)(8.0), ga.grad(bis)(8.0))
"""),
    md("The traced loop, and its picture (bodies are clusters):"),
    code("""
traced = ga.jit(ga.grad(power_by_loop)).trace(1.5, 3)
print(traced.text()[:1500])
traced
"""),
]

OPTIMIZER_TOUR = [
    md("""
# A tour of the optimiser
`ga.passes.optimize` runs the explicit pipeline (dead code, constant folding, CSE, simplification,
loop-invariant hoisting, fusion) to a fixpoint and reports what each pass did. Gradient graphs are
where it matters most.
"""),
    code("""
import numpy as np
import graphad as ga

g = ga.Graph("tour")
with g:
    x = ga.placeholder((None, 4), name="x")
    w = ga.Variable(np.ones((4, 3), np.float32), name="w")
    y = ga.tanh(x @ w) * 1.0 + 0.0
    loss = ga.sum(ga.log_softmax(y) ** 2)
    (dw,) = ga.gradients(loss, [w])
print("nodes before:", len(g.nodes))
(opt_dw,), report = ga.passes.optimize([dw])
print(report)
"""),
    md("The text IR before and after:"),
    code("""
from graphad.viz import outputs_text
print(outputs_text([dw])[:2000])
print(outputs_text([opt_dw])[:2000])
"""),
    md("Both compute the same values:"),
    code("""
feed = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
before = ga.Session(g, optimize=False).run(dw, {x: feed})
after = ga.Session(opt_dw.graph, optimize=False).run(opt_dw, {opt_dw.graph.placeholders()[0]: feed})
print(np.max(np.abs(before - after)))
"""),
    md("Pictures: the gradient graph before, and what the optimiser changed:"),
    code("ga.viz.draw(dw)"),
    code("ga.viz.draw(opt_dw)"),
    code("""
d = ga.viz.diff([dw], [opt_dw])
print(d)
d
"""),
]

NOTEBOOKS = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_autodiff.ipynb": AUTODIFF,
    "03_control_flow.ipynb": CONTROL,
    "04_training_export.ipynb": TRAINING,
    "05_optimizer_tour.ipynb": OPTIMIZER_TOUR,
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
