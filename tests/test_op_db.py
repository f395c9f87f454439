"""Tests generated from the op-info table: numpy oracle == reference interpreter == onnxruntime,
and inferred shapes == computed shapes == ONNX shape inference."""

import numpy as np
import onnx
import pytest

import graphad as ga
from graphad.export.onnx import lower
from graphad.interpret import evaluate
from op_db import all_rows

ROWS = all_rows()


def _cases():
    for row in ROWS:
        for dt in row.dtypes:
            yield pytest.param(row, dt, id=f"{row.name}-{dt}")


def _build(row, sample, dynamic=False):
    g = ga.Graph()
    with g:
        args = list(sample.args)
        feeds = {}
        fed = sample.fed_indices()
        for k, i in enumerate(fed):
            a = np.asarray(sample.args[i])
            shape = list(a.shape)
            if dynamic and k == 0 and shape:
                shape[0] = None
            p = ga.placeholder(tuple(shape), dtype=a.dtype, name=f"arg{i}")
            feeds[p] = a
            args[i] = p
        out = row.fn(*args, **sample.kwargs)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    return g, outs, feeds


def _oracle(row, sample):
    res = row.ref(*sample.args, **sample.kwargs)
    return [np.asarray(r) for r in (res if isinstance(res, (tuple, list)) else [res])]


def _check_xfail(row, test):
    if test in row.xfail:
        pytest.xfail(row.xfail[test])


@pytest.mark.parametrize("row,dtype", list(_cases()))
def test_values(row, dtype):
    """oracle == interpreter == onnxruntime, static and unknown leading dim."""
    _check_xfail(row, "values")
    rng = np.random.default_rng(0)
    for sample in row.sample(rng, np.dtype(dtype)):
        want = _oracle(row, sample)
        for dynamic in (False, True) if sample.dynamic else (False,):
            g, outs, feeds = _build(row, sample, dynamic)
            got_i = evaluate(outs, feeds)
            got_s = ga.Session(g).run(outs, feeds)
            for t, w, gi, gs in zip(outs, want, got_i, got_s):
                rtol, atol = row.tol(gi.dtype if gi.dtype.kind == "f" else dtype)
                assert gi.dtype == t.dtype.np, (row.name, "interpreter dtype", gi.dtype, t.dtype)
                assert gs.dtype == t.dtype.np, (row.name, "onnxruntime dtype", gs.dtype, t.dtype)
                assert gi.shape == w.shape, (row.name, gi.shape, w.shape)
                np.testing.assert_allclose(gi, w.astype(gi.dtype), rtol=rtol, atol=atol,
                                           err_msg=f"{row.name} interpreter vs numpy oracle")
                np.testing.assert_allclose(gs, gi, rtol=rtol, atol=atol,
                                           err_msg=f"{row.name} onnxruntime vs interpreter")


@pytest.mark.parametrize("row,dtype", list(_cases()))
def test_shapes(row, dtype):
    """Inferred static shapes match the computed ones and ONNX shape inference."""
    _check_xfail(row, "shapes")
    rng = np.random.default_rng(1)
    for sample in row.sample(rng, np.dtype(dtype)):
        g, outs, feeds = _build(row, sample)
        got = evaluate(outs, feeds)
        for t, v in zip(outs, got):
            assert t.shape == v.shape, (row.name, "inferred", t.shape, "computed", v.shape)
        low = lower(outs, inputs=list(feeds))
        inferred = onnx.shape_inference.infer_shapes(low.model, strict_mode=True)
        for vi, v in zip(inferred.graph.output, got):
            dims = vi.type.tensor_type.shape.dim
            onnx_shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
            assert len(onnx_shape) == v.ndim, (row.name, onnx_shape, v.shape)
            for a, b in zip(onnx_shape, v.shape):
                assert a is None or a == b, (row.name, "onnx", onnx_shape, "computed", v.shape)
