"""Shared helpers of the control-flow tests (no tests here): run a graph every way we can
(interpreter, Session, exported ONNX on plain onnxruntime and on onnx.reference), and check
derivatives against float64 finite differences."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx.reference import ReferenceEvaluator

import graphad as ga
from graphad.interpret import evaluate
from graphad.passes.forward import jvp as forward_jvp


@pytest.fixture
def x64():
    with ga.config.x64():
        yield


def run_all(outs, feeds, reference=True, rtol=1e-6, atol=1e-9):
    """Values of `outs` from the interpreter; asserts that a Session, the exported model on
    onnxruntime and (when `reference`) onnx.reference agree with them."""
    outs = list(outs)
    want = evaluate(outs, {k: np.asarray(v) for k, v in feeds.items()})
    sess = ga.Session(outs[0].graph).run(outs, feeds)
    model = ga.export.to_onnx(outs, inputs=list(feeds))
    names = [i.name for i in model.graph.input]
    fv = dict(zip(names, [np.asarray(v) for v in feeds.values()]))
    plain = ort.InferenceSession(model.SerializeToString()).run(None, fv)
    for k, (w, s, p) in enumerate(zip(want, sess, plain)):
        np.testing.assert_allclose(s, w, rtol=rtol, atol=atol, err_msg=f"Session, output {k}")
        np.testing.assert_allclose(p, w, rtol=rtol, atol=atol, err_msg=f"onnxruntime, output {k}")
    if reference and all(w.size for w in want):
        # onnx.reference 1.23 stacks Loop scan outputs with np.vstack (scalars become (T, 1),
        # matrices (T * rows, cols)) and fails on zero trips: compare values, not layout
        got = ReferenceEvaluator(model).run(None, fv)
        for k, (w, r) in enumerate(zip(want, got)):
            np.testing.assert_allclose(np.reshape(r, w.shape), w, rtol=rtol, atol=atol,
                                       err_msg=f"onnx.reference, output {k}")
    return want


def five_point(fun, args, h=1e-4):
    """Gradient of scalar fun(*arrays) by the five-point stencil, one array per argument."""
    grads = []
    for k, a in enumerate(args):
        a = np.asarray(a, np.float64)
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            vals = []
            for s in (-2, -1, 1, 2):
                b = a.copy()
                b[idx] += s * h
                vals.append(fun(*[b if j == k else args[j] for j in range(len(args))]))
            g[idx] = (vals[0] - 8 * vals[1] + 8 * vals[2] - vals[3]) / (12 * h)
        grads.append(g)
    return grads


def check_derivatives(f, args, order=2, rtol=1e-5, atol=1e-7, session=True, seed=0):
    """f: Tensors -> scalar Tensor. Checks, in float64 against finite differences: the gradient
    (reverse mode), a JVP (forward mode) and, with order 2, a Hessian-vector product both
    forward-over-reverse and reverse-over-reverse. All on the interpreter, and (with
    `session`) the same values from onnxruntime. Returns [value, jvp, *grads]."""
    args = [np.asarray(a, np.float64) for a in args]
    g = ga.Graph()
    rng = np.random.default_rng(seed)
    tans = [rng.normal(size=a.shape) for a in args]
    with g, ga.config.x64():
        phs = [ga.placeholder(a.shape, ga.float64, name=f"a{i}") for i, a in enumerate(args)]
        y = f(*phs)
        grads = ga.gradients(y, phs)
        (jv,) = forward_jvp([y], phs, [ga.constant(t) for t in tans])
        outs = [y, jv] + grads
        if order >= 2:
            hv_f = forward_jvp(grads, phs, [ga.constant(t) for t in tans])
            hv_r = ga.gradients(sum(ga.sum(gr * ga.constant(t)) for gr, t in zip(grads, tans)),
                                phs)
            outs += [h if h is not None else ga.zeros_like(p) for h, p in zip(hv_f, phs)] + hv_r
    feed = dict(zip(phs, args))
    vals = evaluate(outs, feed)
    n = len(args)
    want = five_point(lambda *a: float(evaluate([y], dict(zip(phs, a)))[0]), args)
    for k in range(n):
        np.testing.assert_allclose(vals[2 + k], want[k], rtol=rtol, atol=atol,
                                   err_msg=f"gradient of argument {k}")
    np.testing.assert_allclose(vals[1], sum(np.sum(w * t) for w, t in zip(want, tans)),
                               rtol=rtol, atol=atol, err_msg="jvp")
    if order >= 2:
        def directional(*a):
            got = evaluate(grads, dict(zip(phs, a)))
            return float(sum(np.sum(x * t) for x, t in zip(got, tans)))

        want2 = five_point(directional, args)
        for k in range(n):
            np.testing.assert_allclose(vals[2 + n + k], want2[k], rtol=1e-4, atol=1e-6,
                                       err_msg=f"hvp (forward over reverse), argument {k}")
            np.testing.assert_allclose(vals[2 + 2 * n + k], want2[k], rtol=1e-4, atol=1e-6,
                                       err_msg=f"hvp (reverse over reverse), argument {k}")
    if session:
        got = ga.Session(g).run(outs, feed)
        for k, (a, b) in enumerate(zip(vals, got)):
            np.testing.assert_allclose(b, a, rtol=1e-7, atol=1e-10,
                                       err_msg=f"onnxruntime vs interpreter, output {k}")
    return vals[:2 + n]


def loop_nodes(graph):
    return [n for n in graph.nodes if n.op == "loop"]
