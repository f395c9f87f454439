"""Loop passes: invariant hoisting (forward and backward loops, nested bodies, what must never
move), loop merging, batched per-step work (precompute, sink, accumulate) and unrolling. Each on
tiny graphs with structural asserts, onnxruntime before/after equivalence and idempotence; a
W3-like Euler loop keeps its gradient through the whole pipeline."""

import numpy as np

import graphad as ga
from graphad.passes import Program, optimize, verify
from graphad.passes.licm import hoist_invariants, hoist_loop_invariants, unroll_loops
from graphad.passes.loop_batch import batch_loop_work
from graphad.passes.loop_merge import merge_loops
from graphad.passes.rewrite import live_nodes
from test_passes_core import assert_same, check_pass, program, run_ort

RNG = np.random.default_rng(1)


def rand(*shape):
    return (RNG.standard_normal(shape) * 0.3).astype(np.float32)


def loops(prog):
    return [n for n in live_nodes(prog) if n.op == "loop"]


def body_ops(loop):
    from graphad.graph import ancestors

    return [n.op for n in ancestors(loop.attrs["body"].outputs) if n.op != "placeholder"]


def euler(n=8, h=1e-2, t_end=0.1):
    """W3 of BENCHMARKS.md in small: x <- x + h tanh(W x) while t < t_end; loss sum(x^2)."""
    g = ga.Graph()
    with g:
        W = ga.placeholder((n, n), name="W")
        x0 = ga.placeholder((n,), name="x0")

        def body(v):
            t, x = v
            return t + h, x + h * ga.tanh(W @ x)

        _, x = ga.while_loop(lambda v: v[0] < t_end, body, (ga.constant(np.float32(0)), x0))
        loss = ga.sum(x ** 2)
        (gW,) = ga.gradients(loss, [W])
    return g, loss, gW, {"W": rand(n, n), "x0": rand(n)}


# ---------------------------------------------------------------------------------------------
# Hoisting


def test_invariants_leave_a_fori_loop_body():
    g = ga.Graph()
    with g:
        W = ga.placeholder((4, 4), name="W")
        c = ga.placeholder((), name="c")
        x0 = ga.placeholder((4,), name="x0")
        x = ga.fori_loop(0, 5, lambda i, x: x @ ga.transpose(W) * ga.exp(c) + x, x0)
    feeds = {"W": rand(4, 4), "c": np.float32(0.3), "x0": rand(4)}
    prog = program(x)
    new = check_pass(hoist_invariants, prog, feeds)
    (lp,) = loops(new)
    assert "transpose" not in body_ops(lp) and "exp" not in body_ops(lp)
    outer = [n.op for n in live_nodes(new)]
    assert "transpose" in outer and "exp" in outer
    hoisted = [n for n in live_nodes(new) if n.tags.get("hoisted")]
    assert {n.op for n in hoisted} == {"transpose", "exp"}


def test_hoisting_climbs_out_of_nested_loops():
    g = ga.Graph()
    with g:
        W = ga.placeholder((3, 3), name="W")
        x0 = ga.placeholder((3,), name="x0")

        def outer(i, x):
            return ga.fori_loop(0, 3, lambda j, y: ga.tanh(y @ ga.transpose(W)), x)

        x = ga.fori_loop(0, 2, outer, x0)
    feeds = {"W": rand(3, 3), "x0": rand(3)}
    new = check_pass(hoist_invariants, program(x), feeds)
    assert "transpose" in [n.op for n in live_nodes(new)]  # two levels out


def test_zero_trip_loop_and_never_hoisted_ops():
    g = ga.Graph()
    with g:
        x0 = ga.placeholder((4,), name="x0")
        idx = ga.placeholder((2,), dtype=ga.int64, name="idx")
        n = ga.placeholder((), dtype=ga.int64, name="n")
        # gather with an out-of-range index must not start failing when the loop runs 0 times
        x = ga.fori_loop(0, n, lambda i, x: x + ga.sum(ga.gather(x0, idx)), x0)
    prog = program(x)
    new = hoist_invariants(prog)
    assert new is prog  # the gather stays: nothing else is invariant
    out = run_ort(prog, {"x0": rand(4), "idx": np.array([0, 9]), "n": np.int64(0)})
    assert out[0].shape == (4,)


def test_invariants_of_the_backward_loop_are_hoisted_and_the_gradient_kept():
    g, loss, gW, feeds = euler()
    prog = program(loss, gW)
    new = check_pass(hoist_loop_invariants, prog, feeds, rtol=1e-5, atol=1e-6)
    assert len(loops(new)) == 2  # the primal loop merged into the taped copy
    for lp in loops(new):
        assert "transpose" not in body_ops(lp)


def test_whole_pipeline_keeps_the_euler_gradient_and_shrinks_the_loops():
    g, loss, gW, feeds = euler()
    prog = program(loss, gW)
    before = sum(len(body_ops(lp)) for lp in loops(prog))
    new, report = optimize(prog, check=verify)
    # per step: the trip counter runs once per block, an unrolled body does k steps, and the
    # remainder loop repeats one of them
    per_step = [lp for lp in loops(new) if "count trips" not in (lp.attrs["label"] or "")
                and not lp.tags.get("unrolled_rest")]
    after = sum(len(body_ops(lp)) / lp.tags.get("unrolled", 1) for lp in per_step)
    assert after <= before / 2, (before, after)
    assert_same(run_ort(new, feeds), run_ort(prog, feeds), rtol=1e-5, atol=1e-6)
    want = ga.numerical_grad(lambda W: _euler_loss(W, feeds["x0"]), (feeds["W"].astype(
        np.float64),))[0]
    np.testing.assert_allclose(run_ort(new, feeds)[1], want, rtol=2e-3, atol=2e-4)


def _euler_loss(W, x0, h=1e-2, t_end=0.1):
    x, t = x0.astype(np.float64), np.float32(0)
    while t < np.float32(t_end):  # the step count of the float32 counter
        x = x + h * np.tanh(W @ x)
        t = np.float32(t + np.float32(h))
    return np.sum(x ** 2)


# ---------------------------------------------------------------------------------------------
# Merging


def test_merge_loops_keeps_one_of_two_equal_loops():
    g = ga.Graph()
    with g:
        x0 = ga.placeholder((3,), name="x0")
        a = ga.fori_loop(0, 4, lambda i, x: ga.sin(x) * 2.0, x0)
        b = ga.fori_loop(0, 4, lambda i, x: ga.sin(x) * 2.0, x0)
        c = ga.fori_loop(0, 4, lambda i, x: ga.cos(x), x0)  # different: kept
    feeds = {"x0": rand(3)}
    new = check_pass(merge_loops, program(a + b, c), feeds)
    assert len(loops(new)) == 2


# ---------------------------------------------------------------------------------------------
# Batched per-step work


def test_input_projection_of_a_scan_is_precomputed():
    g = ga.Graph()
    with g:
        Wx = ga.placeholder((5, 3), name="Wx")
        Wh = ga.placeholder((3, 3), name="Wh")
        xs = ga.placeholder((7, 5), name="xs")
        h0 = ga.placeholder((3,), name="h0")

        def cell(h, x):
            h = ga.tanh(h @ Wh + ga.exp(x * 0.5) @ Wx)
            return h, h

        h, hs = ga.scan(cell, h0, xs)
    feeds = {"Wx": rand(5, 3), "Wh": rand(3, 3), "xs": rand(7, 5), "h0": rand(3)}
    new = check_pass(batch_loop_work, program(h, hs), feeds, rtol=1e-5, atol=1e-6)
    (lp,) = loops(new)
    assert body_ops(lp).count("matmul") == 1 and "exp" not in body_ops(lp)
    batched = [n.op for n in live_nodes(new) if n.tags.get("batched")]
    assert "matmul" in batched and "exp" in batched


def test_scan_output_work_is_sunk_after_the_loop():
    g = ga.Graph()
    with g:
        x0 = ga.placeholder((4,), name="x0")

        def step(x, _):
            return ga.sin(x), 1.0 - ga.cos(x) * ga.cos(x)

        x, ys = ga.scan(step, x0, None, length=6)
    feeds = {"x0": rand(4)}
    new = check_pass(batch_loop_work, program(x, ys), feeds, rtol=1e-5, atol=1e-6)
    (lp,) = loops(new)
    assert body_ops(lp).count("cos") == 0 and "subtract" not in body_ops(lp)


def test_accumulated_outer_products_become_one_gemm():
    g = ga.Graph()
    with g:
        us = ga.placeholder((6, 4), name="us")
        vs = ga.placeholder((6, 3), name="vs")
        acc0 = ga.zeros((4, 3))

        def step(acc, uv):
            u, v = uv
            return acc + ga.expand_dims(ga.tanh(u), -1) * v, ga.sum(u)

        acc, s = ga.scan(step, acc0, (us, vs))
    feeds = {"us": rand(6, 4), "vs": rand(6, 3)}
    new = check_pass(batch_loop_work, program(acc, s), feeds, rtol=1e-5, atol=1e-6)
    assert loops(new) == []  # every step's work is batched: the loop is gone
    batched = [n.op for n in live_nodes(new) if n.tags.get("batched")]
    assert "matmul" in batched and "multiply" not in batched  # U^T V, no (T, 4, 3) product


def test_dead_carried_values_and_unused_scan_outputs_are_dropped():
    g = ga.Graph()
    with g:
        x0 = ga.placeholder((3,), name="x0")
        (x, junk), ys = ga.scan(lambda c, _: ((ga.sin(c[0]), c[1] * 2.0), ga.exp(c[0])),
                                (x0, x0), None, length=5)
    feeds = {"x0": rand(3)}
    new = check_pass(batch_loop_work, program(x), feeds)
    (lp,) = loops(new)
    assert lp.attrs["n_carried"] == 1 and len(lp.outputs) == 1


# ---------------------------------------------------------------------------------------------
# Unrolling


def test_short_static_loops_are_unrolled():
    g = ga.Graph()
    with g:
        x0 = ga.placeholder((3,), name="x0")
        x = ga.fori_loop(0, 4, lambda i, x: ga.sin(x) + ga.cast(i, ga.float32), x0)
        y = ga.fori_loop(0, 1000, lambda i, x: ga.sin(x), x0)  # long: kept as a loop
    feeds = {"x0": rand(3)}
    new = check_pass(unroll_loops, program(x, y), feeds, rtol=1e-5, atol=1e-6)
    assert len(loops(new)) == 1
    assert [n.op for n in live_nodes(new)].count("sin") == 4


def test_passes_accept_programs_and_pytrees():
    g, loss, gW, feeds = euler()
    out = hoist_loop_invariants({"loss": loss, "gW": gW})
    assert set(out) == {"loss", "gW"} and out["gW"].graph is not g
    assert isinstance(hoist_loop_invariants(program(loss)), Program)


def test_checkpointed_scan_gradient_keeps_variable_length_segments_in_the_loop():
    # checkpoint=2 over 5 steps: segments of 2, 2 and 1 steps; a segment's tape has a different
    # length at every backward step, so it may never become a stacked scan output
    with ga.config.x64():
        g = ga.Graph()
        with g:
            c0 = ga.placeholder((2,), ga.float64, name="c0")
            xs = ga.placeholder((5, 2), ga.float64, name="xs")
            w = ga.placeholder((2,), ga.float64, name="w")
            c, ys = ga.scan(lambda c, x: (ga.sin(c * w + x), c * x), c0, xs, reverse=True,
                            checkpoint=2)
            loss = ga.sum(c) + ga.sum(ys * ys)
            grads = ga.gradients(loss, [c0, xs, w])
    feeds = {"c0": np.array([0.1, 0.2]), "xs": np.arange(10.0).reshape(5, 2) * 0.1,
             "w": np.array([0.5, -0.3])}
    prog = program(loss, *grads)
    check_pass(batch_loop_work, prog, feeds, rtol=1e-10, atol=1e-12)
    new, _ = optimize(prog, check=verify)
    assert_same(run_ort(new, feeds), run_ort(prog, feeds), rtol=1e-10, atol=1e-12)


def _random_scan(seed):
    """A scan whose body mixes the carry, the slice, a captured matrix and constants at random,
    with an accumulated outer product, a scan output and its gradient."""
    rng = np.random.default_rng(seed)
    g = ga.Graph()
    with g:
        W = ga.placeholder((3, 3), name="W")
        c0 = ga.placeholder((3,), name="c0")
        xs = ga.placeholder((6, 3), name="xs")

        def step(carry, x):
            c, acc = carry
            pool = [c, x, ga.tanh(x), c * 0.5]
            for _ in range(int(rng.integers(3, 8))):
                a, b = (pool[int(i)] for i in rng.integers(0, len(pool), 2))
                op = int(rng.integers(0, 6))
                pool.append([a + b, a * b, ga.sin(a), W @ a, a @ W, ga.tanh(a - b)][op])
            u, v = (pool[int(i)] for i in rng.integers(0, len(pool), 2))
            new_c = ga.tanh(c + 0.1 * pool[-1])
            return (new_c, acc + ga.expand_dims(u, -1) * v), pool[int(rng.integers(0, len(pool)))]

        (c, acc), ys = ga.scan(step, (c0, ga.zeros((3, 3))), xs, reverse=bool(seed % 2))
        loss = ga.sum(c) + ga.sum(acc * acc) + ga.sum(ys)
        grads = ga.gradients(loss, [W, c0, xs])
    feeds = {"W": rand(3, 3), "c0": rand(3), "xs": rand(6, 3)}
    return program(loss, c, acc, ys, *grads), feeds


def test_random_scans_keep_their_values_and_gradients_through_the_pipeline():
    for seed in range(12):
        prog, feeds = _random_scan(seed)
        new, _ = optimize(prog, check=verify)
        assert_same(run_ort(new, feeds), run_ort(prog, feeds), rtol=2e-4, atol=2e-5)
        again, _ = optimize(new)
        assert_same(run_ort(again, feeds), run_ort(prog, feeds), rtol=2e-4, atol=2e-5)


def test_random_scans_with_unrolling_in_the_pipeline():
    from graphad.passes.manager import PIPELINE

    passes = list(PIPELINE) + [unroll_loops]
    for seed in range(4):
        prog, feeds = _random_scan(seed)
        new, _ = optimize(prog, passes=passes, check=verify)
        assert loops(new) == []  # 6 static steps: straight-line code
        assert_same(run_ort(new, feeds), run_ort(prog, feeds), rtol=2e-4, atol=2e-5)


def test_scalar_factor_regrouped_out_of_the_backward_loop():
    """(ct * h) * (1 - tanh^2) in the backward loop becomes ct * (h * (1 - tanh^2)): the scalar
    joins the tape-only factor, which is then computed once before the loop."""
    g, loss, gW, feeds = euler()
    (opt,), _ = optimize([gW])
    back = [n for n in live_nodes(Program.from_outputs([opt])[0]) if n.op == "loop"
            and n.attrs["cond"] is None]
    assert back, "no backward loop"
    ops = body_ops(back[-1])
    assert ops.count("multiply") == 1, ops
    prog = program(gW)
    new = check_pass(batch_loop_work, prog, feeds, rtol=1e-5, atol=1e-6)
    assert any(n.tags.get("regrouped") for lp in loops(new)
               for n in lp.attrs["body"].nodes)


def test_regrouping_needs_a_scalar_invariant_factor():
    """(c * v) * s with v a per-step value is left alone."""
    from graphad.passes.loop_reassoc import regroup_scalar_factors

    g = ga.Graph()
    with g:
        xs = ga.placeholder((5, 3), name="xs")
        c0 = ga.placeholder((3,), name="c0")
        w = ga.placeholder((3,), name="w")
        k = ga.placeholder((), name="k")
        carry, _ = ga.scan(lambda c, x: ((c * (x + 1.0)) * x + (c * k) * x * w, c), c0, xs)
    (lp,) = [n for n in g.nodes if n.op == "loop"]
    new = regroup_scalar_factors(lp.attrs["body"], lp.attrs["n_carried"])
    assert new is not None
    tagged = [n for n in new.nodes if n.tags.get("regrouped")]
    assert len(tagged) == 2  # only (c * k) * x: a factor k * x and the product c * (k * x)
    feeds = {"xs": rand(5, 3), "c0": rand(3), "w": rand(3), "k": np.float32(0.7)}
    (opt,), _ = optimize([carry])
    assert_same(run_ort(program(opt), feeds), run_ort(program(carry), feeds), 1e-5, 1e-6)


# ---------------------------------------------------------------------------------------------
# Vector carries as rows (Gemm instead of a matrix-vector product in the body)


def test_vector_carries_become_rows_where_they_meet_matrices():
    from graphad.passes.loop_rows import carry_rows

    g, loss, gW, feeds = euler()
    prog = program(loss, gW)
    (opt_loss, opt_gw), _ = optimize([loss, gW], passes=[p for p in ga.passes.PIPELINE
                                                         if p is not carry_rows])
    before = program(opt_loss, opt_gw)
    new = check_pass(carry_rows, before, feeds, rtol=1e-5, atol=1e-6)
    lifted = [lp for lp in loops(new)
              if any(len(ph.shape) == 2 and ph.shape[0] == 1 for ph in lp.attrs["body"].inputs)]
    assert len(lifted) == 2  # the forward (tape) loop and the backward loop
    assert_same(run_ort(new, feeds), run_ort(prog, feeds), 1e-5, 1e-6)
    model = ga.export.to_onnx([loss, gW])
    bodies = [a.g for n in model.graph.node for a in n.attribute if a.type == a.GRAPH]
    inner = [n.op_type for b in bodies for n in b.node]
    assert "Gemm" in inner and "FusedMatMul" not in inner and "MatMul" not in inner, inner


def test_carries_stay_vectors_when_the_body_needs_them_so():
    from graphad.passes.loop_rows import carry_rows

    g = ga.Graph()
    with g:
        W = ga.placeholder((4, 4), name="W")
        x0 = ga.placeholder((4,), name="x0")
        reduced = ga.fori_loop(0, 3, lambda i, x: ga.tanh(W @ x) + ga.sum(x), x0)
        no_matrix = ga.fori_loop(0, 3, lambda i, x: ga.tanh(x) * 0.5, x0)
    feeds = {"W": rand(4, 4), "x0": rand(4)}
    prog = program(reduced, no_matrix)
    assert carry_rows(prog) is prog
    assert_same(run_ort(prog, feeds), run_ort(program(reduced, no_matrix), feeds))


# ---------------------------------------------------------------------------------------------
# Counter-driven while loops run as counted loops


def test_counter_loops_become_counted_loops_with_the_same_trips():
    from graphad.passes.loop_count import BLOCK, precount_loops

    feeds = {"x0": rand(3)}
    cases = [  # (step, end): 0 trips, 1 trip, exactly one block, several blocks, float rounding
        (np.float32(0.5), np.float32(-1.0)), (np.float32(0.5), np.float32(0.3)),
        (np.float32(1.0), np.float32(BLOCK)), (np.float32(1e-3), np.float32(1.0)),
        (np.float32(0.1), np.float32(70.3)),
    ]
    for h, end in cases:
        g = ga.Graph()
        with g:
            x0 = ga.placeholder((3,), name="x0")
            t, x = ga.while_loop(lambda s: s[0] < end, lambda s: (s[0] + h, ga.sin(s[1]) * 0.9),
                                 (ga.constant(np.float32(0.0)), x0))
        prog = program(t, x)
        new = check_pass(precount_loops, prog, feeds)
        assert any(lp.attrs["has_trip"] and lp.attrs["cond"] is None for lp in loops(new))
        t_np, trips = np.float32(0.0), 0
        while t_np < end:
            t_np, trips = np.float32(t_np + h), trips + 1
        got_t, _ = run_ort(new, feeds)
        assert got_t == t_np, (h, end, got_t, t_np, trips)  # bit-equal final counter


def test_integer_counters_and_what_is_left_alone():
    from graphad.passes.loop_count import precount_loops

    feeds = {"x0": rand(3), "n": np.int32(600)}
    g = ga.Graph()
    with g:
        x0 = ga.placeholder((3,), name="x0")
        n = ga.placeholder((), ga.int32, name="n")
        i, x = ga.while_loop(lambda s: s[0] < n, lambda s: (s[0] + 1, s[1] * 0.999),
                             (ga.constant(np.int32(0)), x0))
        # the condition reads the state: not a counter loop
        _, y = ga.while_loop(lambda s: ga.sum(s[1]) < 10.0, lambda s: (s[0] + 1, s[1] + 1.0),
                             (ga.constant(np.int32(0)), x0))
        # the body reads the counter: not a counter loop
        _, z = ga.while_loop(lambda s: s[0] < 5.0, lambda s: (s[0] + 1.0, s[1] * s[0]),
                             (ga.constant(np.float32(1.0)), x0))
    prog = program(i, x, y, z)
    new = check_pass(precount_loops, prog, feeds)
    counted = [lp for lp in loops(new) if lp.attrs["has_trip"] and lp.attrs["cond"] is None]
    assert len(counted) == 1
    assert run_ort(new, feeds)[0] == 600


# ---------------------------------------------------------------------------------------------
# Counted loops with a run-time trip count, unrolled k times plus a remainder loop


def test_counted_loops_unroll_with_a_remainder_for_every_trip_count():
    from graphad.passes.loop_count import precount_loops
    from graphad.passes.loop_unroll_counted import unroll_counted_loops

    for trips in (0, 1, 15, 16, 17, 53):
        g = ga.Graph()
        with g:
            W = ga.placeholder((4, 4), name="W")
            x0 = ga.placeholder((4,), name="x0")
            _, x = ga.while_loop(lambda s: s[0] < np.float32(trips),
                                 lambda s: (s[0] + np.float32(1.0), s[1] + 0.1 * ga.tanh(W @ s[1])),
                                 (ga.constant(np.float32(0.0)), x0))
            loss = ga.sum(x * x)
            (gW,) = ga.gradients(loss, [W])  # its tape loop stacks per-step scan outputs
        feeds = {"W": rand(4, 4), "x0": rand(4)}
        prog = program(loss, gW)
        counted = precount_loops(prog)
        new = check_pass(unroll_counted_loops, counted, feeds, rtol=1e-5, atol=1e-6)
        main = [lp for lp in loops(new) if isinstance(lp.tags.get("unrolled"), int)]
        assert main and main[0].tags["unrolled"] >= 2, trips
        assert_same(run_ort(new, feeds), run_ort(prog, feeds), 1e-5, 1e-6)


def test_static_trip_counts_are_not_unrolled_here():
    from graphad.passes.loop_unroll_counted import unroll_counted_loops

    g = ga.Graph()
    with g:
        x0 = ga.placeholder((4,), name="x0")
        x = ga.fori_loop(0, 40, lambda i, x: ga.sin(x) * 0.5, x0)
    prog = program(x)
    assert unroll_counted_loops(prog) is prog
