"""Checkpoint policies of loop reverse mode (None: taped residuals, 1: taped carries and
recompute, k: every k-th carry and recomputed segments): equal derivatives, smaller tapes; and
the pass that lets the tape loop give the primal loop's outputs."""

import numpy as np
import pytest
from test_control_helpers import check_derivatives, loop_nodes, x64  # noqa: F401

import graphad as ga
from graphad.interpret import evaluate
from graphad.ops.control_merge import merge_taped_loops
from graphad.passes.rewrite import Program

POLICIES = [None, 1, 2, 3, 7]


def _while(x, k):
    s = ga.while_loop(lambda s: s[1] < 10.0, lambda s: (s[0] * x, s[1] + ga.abs(s[0])),
                      (x, ga.constant(0.0, ga.float64)), checkpoint=k)
    return s[0] + s[1]


@pytest.mark.parametrize("k", POLICIES)
def test_policies_give_the_same_derivatives(k):
    base = check_derivatives(lambda x: _while(x, None), [1.3], order=1)
    got = check_derivatives(lambda x: _while(x, k), [1.3], order=2)
    np.testing.assert_allclose(got, base, rtol=1e-12)


@pytest.mark.parametrize("k", POLICIES)
def test_policies_with_max_iterations_and_index(k):
    def f(x):
        s = ga.while_loop(lambda s: s[1] < 10.0, lambda s: (s[0] * x, s[1] + ga.abs(s[0])),
                          (x, ga.constant(0.0, ga.float64)), max_iterations=4, checkpoint=k)
        return s[0] + s[1]

    check_derivatives(f, [1.3], order=1)
    check_derivatives(lambda x: ga.fori_loop(1, 6, lambda i, v: v * x + ga.cast(i, ga.float64)
                                             * ga.sin(v), x, checkpoint=k), [0.7])


@pytest.mark.parametrize("k", POLICIES)
@pytest.mark.parametrize("reverse", [False, True])
def test_policies_on_scan(k, reverse):
    weights = np.arange(10.0).reshape(5, 2)

    def f(c0, xs, w):
        c, ys = ga.scan(lambda c, x: (ga.sin(c * w + x), c * x), c0, xs, reverse=reverse,
                        checkpoint=k)
        return ga.sum(c) + ga.sum(ys * ys * ga.constant(weights))

    check_derivatives(f, [np.array([0.1, 0.2]), np.arange(10.0).reshape(5, 2) * 0.1,
                          np.array([0.5, -0.3])])


def test_checkpoint_with_on_max_error(x64):
    with ga.Graph():
        x = ga.placeholder((), ga.float64)
        y = ga.while_loop(lambda v: v < 100.0, lambda v: v * 2.0, x, max_iterations=5,
                          on_max="error", checkpoint=2)
        (dy,) = ga.gradients(y, [x])
        sess = ga.Session()
        assert float(sess.run(dy, {x: 10.0})) == 16.0
        with pytest.raises(ga.RunError, match="exceeded max_iterations"):
            sess.run(dy, {x: 1.0})
        with pytest.raises(ga.RunError, match="exceeded max_iterations"):
            evaluate([dy], {x: np.float64(1.0)})


def _stored(k, steps=100):
    """(gradient, elements the forward pass keeps for the backward pass) of a 16-wide Euler
    loop: the scan outputs of the top-level loops other than the backward one."""
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(16, 16)) / 4
    with ga.Graph() as g, ga.config.x64():
        x = ga.placeholder((16,), ga.float64)
        w = ga.placeholder((16, 16), ga.float64)

        def body(s):
            v, t = s
            return v + 0.01 * ga.tanh(w @ v), t + 1.0

        v, _ = ga.while_loop(lambda s: s[1] < steps - 0.5, body,
                             (x, ga.constant(0.0, ga.float64)), checkpoint=k)
        (gw,) = ga.gradients(ga.sum(v * v), [w])
        kept = [o for n in loop_nodes(g) if not n.name.endswith("/vjp")
                for o in n.outputs[n.attrs["n_carried"]:]]
        vals = evaluate([gw] + kept, {x: np.ones(16), w: w0})
    return vals[0], sum(a.size for a in vals[1:])


def test_checkpointing_shrinks_the_tape():
    g_none, n_none = _stored(None)
    g_one, n_one = _stored(1)
    g_ten, n_ten = _stored(10)
    np.testing.assert_allclose(g_one, g_none, rtol=1e-12)
    np.testing.assert_allclose(g_ten, g_none, rtol=1e-12)
    assert n_none == 100 * (16 + 16)  # residuals: the carry and tanh(W x) per step
    assert n_one == 100 * 16  # the carry the step is recomputed from
    assert n_ten == 10 * (16 + 1 + 2)  # ten segment starts (carry, t), counts, first steps
    assert n_ten * 8 < n_none


def _body_ops(loop):
    return [n.op for n in loop.attrs["body"].nodes]


@pytest.mark.parametrize("k", [None, 1])
def test_optimizer_keeps_checkpointed_recomputation_in_the_backward_loop(k):
    """With checkpoint=1 the backward loop recomputes tanh from the stored carries; the loop
    passes must not move that recomputation out over the whole tape (it would store T
    residuals again). Without checkpointing, tanh is taped and the backward loop has none."""
    with ga.Graph(), ga.config.x64():
        x = ga.placeholder((16,), ga.float64)
        w = ga.placeholder((16, 16), ga.float64)
        v = ga.fori_loop(0, 50, lambda i, v: v + 0.01 * ga.tanh(w @ v), x, checkpoint=k)
        (gw,) = ga.gradients(ga.sum(v * v), [w])
        (opt,), _ = ga.passes.optimize([gw])
        backward = [n for n in opt.graph.nodes if n.op == "loop" and n.tags.get("recompute")]
        assert len(backward) == (1 if k == 1 else 0)
        if k == 1:
            assert "tanh" in _body_ops(backward[0])
        rng = np.random.default_rng(1)
        feeds = {x: rng.normal(size=16), w: rng.normal(size=(16, 16)) / 4}
        ph = {p.name: p for p in opt.graph.placeholders()}
        got = ga.Session(opt.graph, optimize=False).run(
            opt, {ph[t.name]: val for t, val in feeds.items()})
        np.testing.assert_allclose(got, evaluate([gw], feeds)[0], rtol=1e-10)


def test_checkpoint_docstrings_state_costs():
    for fn in (ga.while_loop, ga.fori_loop, ga.scan):
        assert "checkpoint" in fn.__doc__
    assert "O(T/k" in ga.while_loop.__doc__ and "memory" in ga.while_loop.__doc__


# ---------------------------------------------------------------------------------------------
# merge_taped_loops


def test_merge_taped_loops_runs_the_forward_once(x64):
    with ga.Graph() as g:
        x = ga.placeholder((3,), ga.float64, name="x")
        w = ga.constant(np.random.default_rng(0).normal(size=(3, 3)) / 3)

        def body(s):
            v, t = s
            return v + 0.1 * ga.tanh(w @ v), t + 0.1

        vf, _ = ga.while_loop(lambda s: s[1] < 1.0, body, (x, ga.constant(0.0, ga.float64)))
        loss = ga.sum(vf * vf)
        (gx,) = ga.gradients(loss, [x])
        prog, unpack = Program.from_outputs([loss, gx])
        new = merge_taped_loops(prog)
        assert new is not prog
        assert len(loop_nodes(new.graph)) == len(loop_nodes(g)) - 1 == 2
        assert merge_taped_loops(new) is new
        want = evaluate([loss, gx], {x: np.ones(3)})
        out = unpack(new)
        ph = [n.outputs[0] for n in new.graph.nodes if n.op == "placeholder"]
        got = evaluate(out, {ph[0]: np.ones(3)})
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-14)
        only_loss = Program.from_outputs([loss])[0]
        assert merge_taped_loops(only_loss) is only_loss  # no tape needed: nothing to merge
