"""Run-time failures (shapes only known at run time, bad indices, guards) come back as RunErrors
naming the graphad op, its node and the user's line, from onnxruntime and from the interpreter;
and the variables keep their values."""

import numpy as np
import pytest

import graphad as ga
from graphad.interpret import evaluate


def _line_of(marker):
    with open(__file__) as f:
        for i, line in enumerate(f, 1):
            if marker in line and "_line_of" not in line:
                return i
    raise AssertionError(marker)


def test_matmul_mismatch_at_run_time_names_op_and_line():
    g = ga.Graph("t")
    with g:
        a = ga.placeholder((2, None), name="a")
        b = ga.placeholder((None, 5), name="b")
        c = a @ b  # MARK-matmul
    with pytest.raises(ga.RunError) as info:
        ga.Session(g).run(c, {a: np.ones((2, 3), np.float32), b: np.ones((4, 5), np.float32)})
    msg = str(info.value)
    assert "op 'matmul'" in msg and f"test_run_errors.py:{_line_of('MARK-matmul')}" in msg


@pytest.mark.parametrize("interpreter", [False, True])
def test_gather_out_of_range_names_op_and_line(interpreter):
    g = ga.Graph("t")
    with g:
        idx = ga.placeholder((None,), ga.int64, name="idx")
        picked = ga.gather(ga.constant(np.arange(3.0)), idx)  # MARK-gather
    where = f"test_run_errors.py:{_line_of('MARK-gather')}"
    with pytest.raises(ga.RunError, match="op 'gather'") as info:
        if interpreter:
            evaluate([picked], {idx: np.array([5])})
        else:
            ga.Session(g).run(picked, {idx: np.array([5])})
    assert where in str(info.value)


def test_guard_failure_reads_as_its_message():
    x = ga.placeholder((), name="x")
    y = ga.while_loop(lambda v: v < 100.0, lambda v: v * 2.0, x,  # MARK-while
                      max_iterations=3, on_max="error")
    with pytest.raises(ga.RunError) as info:
        ga.Session().run(y, {x: 1.0})
    first = str(info.value).splitlines()[0]
    assert "exceeded max_iterations" in first
    assert f"test_run_errors.py:{_line_of('MARK-while')}" in first


def test_failed_step_keeps_variables():
    g = ga.Graph("t")
    with g:
        w = ga.Variable(np.ones(3, np.float32), name="w")
        idx = ga.placeholder((None,), ga.int64, name="idx")
        loss = ga.sum(ga.gather(w, idx) ** 2)
        step = ga.optimizers.SGD(0.1).minimize(loss)
    sess = ga.Session(g)
    sess.run(step, {idx: np.array([0, 1])})
    before = sess.run(w).copy()
    with pytest.raises(ga.RunError, match="gather"):
        sess.run(step, {idx: np.array([7])})
    np.testing.assert_array_equal(sess.run(w), before)
