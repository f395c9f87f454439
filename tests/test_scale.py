"""Deep graphs: a 100,000-node chain builds, interprets, exports and runs without recursion."""

import numpy as np

import graphad as ga
from graphad.interpret import evaluate


def test_100k_node_chain():
    g = ga.Graph("chain")
    with g:
        x = ga.placeholder((4,), name="x")
        c = ga.constant(np.float32(1.0))
        two = ga.constant(np.float32(0.5))
        y = x
        for i in range(100_000):
            y = ga.add(y, c) if i % 2 == 0 else ga.multiply(y, two)
    assert len(g.nodes) > 100_000
    feed = np.ones(4, np.float32)
    want = feed.copy()
    for i in range(100_000):
        want = want + 1 if i % 2 == 0 else want * 0.5
    (got_i,) = evaluate([y], {x: feed})
    np.testing.assert_allclose(got_i, want)
    model = ga.export.to_onnx(y)
    assert len(model.graph.node) >= 100_000
    np.testing.assert_allclose(ga.Session(g).run(y, {x: feed}), want)
