"""conv2d (graphad/ops/conv.py): values, shapes and derivatives of every order through the op-info
harness against a brute-force oracle; each lowering (float32 Conv/ConvTranspose/swapped Conv,
float16 via float32, float64 im2col) against the numpy references; argument validation."""

import numpy as np
import pytest

import graphad as ga
import test_op_db as op_db_tests
import test_op_grads as grad_tests
from graphad.interpret import evaluate
from graphad.ops.conv import conv2d
from graphad.passes.autodiff import gradients
from op_db import OpInfo, Sample, uniform


def naive_conv(x, w, bias=None, strides=1, padding=0, dilations=1, groups=1):
    """Seven nested loops straight from the definition (float64)."""
    sh, sw = (strides, strides) if isinstance(strides, int) else strides
    dh, dw = (dilations, dilations) if isinstance(dilations, int) else dilations
    pt, pl, pb, pr = (padding,) * 4 if isinstance(padding, int) else padding
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    n, _, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ho, wo = (h - dh * (kh - 1) - 1) // sh + 1, (wd - dw * (kw - 1) - 1) // sw + 1
    og = o // groups
    y = np.zeros((n, o, ho, wo))
    for b in range(n):
        for oc in range(o):
            gi = oc // og
            for p in range(ho):
                for q in range(wo):
                    acc = 0.0
                    for ci in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                acc += (x[b, gi * cg + ci, p * sh + i * dh, q * sw + j * dw]
                                        * w[oc, ci, i, j])
                    y[b, oc, p, q] = acc
    if bias is not None:
        y += bias.reshape(-1, 1, 1)
    return y


def _samples(rng, dt):
    u = lambda *s: uniform(rng, s, dt)  # noqa: E731
    return [
        Sample((u(2, 3, 7, 6), u(4, 3, 3, 3))),
        Sample((u(2, 3, 8, 7), u(2, 3, 3, 2)),
               {"strides": 2, "padding": (1, 0, 2, 1), "dilations": (1, 2)}),
        # stride 3 over 8 rows drops two rows at the end: output_padding in the input gradient
        Sample((u(1, 2, 8, 8), u(3, 2, 3, 3)), {"strides": (3, 2), "padding": 0}),
        Sample((u(2, 6, 6, 5), u(6, 2, 2, 3)), {"strides": (2, 1), "padding": 1, "groups": 3}),
        Sample((u(1, 4, 5, 5), u(4, 1, 3, 3)), {"dilations": 2, "padding": 2, "groups": 4}),
        Sample((u(2, 3, 4, 4), u(5, 3, 1, 1))),
        Sample((u(2, 3, 5, 4), u(4, 3, 2, 2), u(4)), {"padding": (0, 1, 1, 0)}),
    ]


CONV_ROW = OpInfo("conv2d", conv2d, naive_conv, _samples, dtypes=("float16", "float32", "float64"),
                  rtol={"float32": 1e-4}, atol={"float32": 1e-4, "float16": 5e-2})


@pytest.mark.parametrize("dtype", CONV_ROW.dtypes)
def test_conv_values(dtype):
    op_db_tests.test_values(CONV_ROW, dtype)


@pytest.mark.parametrize("dtype", CONV_ROW.dtypes)
def test_conv_shapes(dtype):
    op_db_tests.test_shapes(CONV_ROW, dtype)


@pytest.mark.parametrize("backend", grad_tests.BACKENDS)
def test_conv_first_order(backend):
    grad_tests.test_first_order(CONV_ROW, backend)


@pytest.mark.parametrize("backend", grad_tests.BACKENDS)
def test_conv_second_order(backend):
    grad_tests.test_second_order(CONV_ROW, backend)


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-4), ("float16", 3e-2)])
def test_native_lowerings_match_reference(dtype, tol):
    """First and second derivatives in float32/float16 run on Conv, ConvTranspose and the swapped
    Conv; onnxruntime must agree with the numpy references."""
    rng = np.random.default_rng(3)
    for s in _samples(rng, np.dtype(dtype))[:6]:
        x0, w0 = s.args[:2]
        g = ga.Graph()
        with g:
            x = ga.placeholder(x0.shape, dtype=dtype)
            w = ga.placeholder(w0.shape, dtype=dtype)
            y = conv2d(x, w, **s.kwargs)
            loss = ga.sum(ga.tanh(y) * y)
            dx, dw = gradients(loss, [x, w])
            ddx, ddw = gradients(ga.sum(dx * dx) + ga.sum(dw * dw), [x, w])
        outs = [y, dx, dw, ddx, ddw]
        ops = {n.op for n in g.nodes}
        assert {"conv2d_input_grad", "conv2d_filter_grad"} <= ops
        feeds = {x: x0, w: w0}
        want = evaluate(outs, feeds)
        got = ga.Session(g).run(outs, feeds)
        for a, b, what in zip(got, want, ("y", "dx", "dw", "ddx", "ddw")):
            assert a.dtype == np.dtype(dtype)
            scale = max(1.0, float(np.max(np.abs(b.astype(np.float64)))))
            np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=tol,
                                       atol=tol * scale, err_msg=f"{what} {s.kwargs}")


def test_same_padding_matches_explicit():
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((1, 2, 7, 6)).astype(np.float32)
    w0 = rng.standard_normal((3, 2, 3, 2)).astype(np.float32)
    cases = [("SAME", 2, (1, 0, 1, 0)), ("SAME", 1, (1, 0, 1, 1)),
             ("SAME_LOWER", 1, (1, 1, 1, 0)), ("VALID", 1, (0, 0, 0, 0))]
    for padding, stride, pads in cases:
        with ga.Graph():
            y = conv2d(x0, w0, strides=stride, padding=padding)
            assert y.op.attrs["pads"] == pads, (padding, stride)
            if padding != "VALID":
                assert y.shape[2:] == (-(-7 // stride), -(-6 // stride))
            (yv,) = evaluate([y])
        np.testing.assert_allclose(yv, naive_conv(x0, w0, strides=stride, padding=pads),
                                   rtol=1e-5, atol=1e-5)


def test_dynamic_batch_float64_and_float32():
    rng = np.random.default_rng(5)
    for dt in ("float32", "float64"):
        g = ga.Graph()
        with g:
            x = ga.placeholder(("batch", 2, 6, 6), dtype=dt)
            w = ga.Variable(rng.standard_normal((3, 2, 3, 3)), dtype=dt)
            y = conv2d(x, w, padding=1, strides=2)
            assert y.shape == ("batch", 3, 3, 3)
            (dw,) = gradients(ga.sum(y * y), [w])
        for n in (1, 4):
            x0 = rng.standard_normal((n, 2, 6, 6)).astype(dt)
            got = ga.Session(g).run([y, dw], {x: x0})
            want = evaluate([y, dw], {x: x0})
            for a, b in zip(got, want):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs,match", [
    ({"groups": 2}, "cannot be split into 2 groups|filter expects"),
    ({"strides": 0}, "strides must be a positive int"),
    ({"padding": -1}, "padding -1 must be"),
    ({"padding": "FULL"}, "unknown padding"),
    ({"dilations": (1, 2, 3)}, "dilations must be"),
    ({"padding": 0, "w_shape": (2, 3, 9, 3)}, "larger than the padded input"),
    ({"w_shape": (2, 4, 3, 3)}, "the input has 3 channels but the filter expects 4"),
    ({"x_shape": (3, 5, 5)}, "the input must be 4-D"),
])
def test_bad_arguments(kwargs, match):
    kwargs = dict(kwargs)
    xs, ws = kwargs.pop("x_shape", (1, 3, 5, 5)), kwargs.pop("w_shape", (3, 3, 3, 3))
    with ga.Graph():
        x = ga.placeholder(xs)
        w = ga.placeholder(ws)
        with pytest.raises(ga.ShapeError, match=match):
            conv2d(x, w, **kwargs)


def test_dtype_mismatch_and_int_promotion():
    with ga.Graph():
        x = ga.placeholder((1, 1, 3, 3), dtype="float64")
        w = ga.placeholder((1, 1, 2, 2), dtype="float32")
        assert conv2d(x, w).dtype == ga.float64  # promoted, as every binary op
        xi = ga.placeholder((1, 1, 3, 3), dtype="int32")
        wi = ga.placeholder((1, 1, 2, 2), dtype="int32")
        assert conv2d(xi, wi).dtype.is_floating
