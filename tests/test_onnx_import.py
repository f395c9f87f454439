"""`import_onnx`: models written with onnx.helper (MLP, CNN, BatchNormalization, shape ops, control
flow) are imported, checked against onnxruntime on the original file, differentiated against
finite differences, fine-tuned, exported again; malformed and hostile files are refused."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphad as ga
from graphad.errors import OnnxImportError
from graphad.export import to_onnx
from graphad.export.onnx_import import import_onnx
from graphad.interpret import evaluate
from graphad.passes.autodiff import gradients
from gradcheck import assert_close, directional

F32, F64, I64 = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT64
NP = {F32: np.float32, F64: np.float64}


def make_model(nodes, inputs, outputs, inits=(), opset=17, ir=9, check=True, name="m"):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=ir, producer_name="onnx.helper test")
    if check:  # shape inference fills the output shapes left out (None) above
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        onnx.checker.check_model(model, full_check=True)
    return model


def vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def ort_run(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


# ---------------------------------------------------------------------------------------------
# Model builders (float32 for onnxruntime comparisons, float64 for finite differences)


def mlp(dt=F32, seed=0):
    rng = np.random.default_rng(seed)
    t = NP[dt]
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "W2", "b2"], ["z"], transB=1, alpha=0.7, beta=1.5,
                         name="fc2"),
        helper.make_node("Softmax", ["z"], ["y"], axis=1, name="softmax"),
    ]
    inits = [init("W1", rng.standard_normal((4, 16)).astype(t) * 0.5),
             init("b1", rng.standard_normal(16).astype(t) * 0.1),
             init("W2", rng.standard_normal((3, 16)).astype(t) * 0.5),
             init("b2", rng.standard_normal(3).astype(t) * 0.1)]
    return make_model(nodes, [vi("x", dt, ["batch", 4])], [vi("y", dt, ["batch", 3])], inits)


def cnn(dt=F32, seed=1):
    rng = np.random.default_rng(seed)
    t = NP[dt]
    nodes = [
        helper.make_node("Conv", ["x", "K1", "c1"], ["a"], pads=[1, 1, 1, 1], strides=[2, 2],
                         kernel_shape=[3, 3], name="conv1"),
        helper.make_node("Relu", ["a"], ["ar"]),
        helper.make_node("Conv", ["ar", "K2"], ["b"], group=2, dilations=[2, 1],
                         pads=[2, 0, 1, 1], name="conv2"),
        helper.make_node("Tanh", ["b"], ["bt"]),
        helper.make_node("Flatten", ["bt"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "Wd", "bd"], ["y"], name="dense"),
    ]
    inits = [init("K1", rng.standard_normal((4, 2, 3, 3)).astype(t) * 0.4),
             init("c1", rng.standard_normal(4).astype(t) * 0.1),
             init("K2", rng.standard_normal((4, 2, 2, 2)).astype(t) * 0.4),
             init("Wd", rng.standard_normal((4 * 5 * 4, 5)).astype(t) * 0.2),
             init("bd", rng.standard_normal(5).astype(t) * 0.1)]
    return make_model(nodes, [vi("x", dt, ["N", 2, 8, 8])], [vi("y", dt, ["N", 5])], inits)


def bn_model(dt=F32, seed=2):
    rng = np.random.default_rng(seed)
    t = NP[dt]
    nodes = [
        helper.make_node("Conv", ["x", "K"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mu", "var"], ["bn"],
                         epsilon=1e-3),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("ReduceMean", ["r", "hw"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["pooled", "W"], ["y"]),
    ]
    inits = [init("K", rng.standard_normal((3, 2, 3, 3)).astype(t) * 0.5),
             init("gamma", rng.uniform(0.5, 1.5, 3).astype(t)),
             init("beta", rng.standard_normal(3).astype(t) * 0.1),
             init("mu", rng.standard_normal(3).astype(t) * 0.1),
             init("var", rng.uniform(0.5, 2.0, 3).astype(t)),
             init("hw", np.array([2, 3], dtype=np.int64)),
             init("W", rng.standard_normal((3, 2)).astype(t))]
    return make_model(nodes, [vi("x", dt, ["N", 2, 5, 5])], [vi("y", dt, ["N", 2])], inits,
                      opset=18)


def shape_model(dt=F32, seed=3):
    """MatMul -> Reshape through a Shape/Gather/Unsqueeze/Concat chain over the dynamic batch ->
    Transpose -> Concat with a second branch -> ReduceMean (axes attribute, opset 13)."""
    rng = np.random.default_rng(seed)
    t = NP[dt]
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"]),
        helper.make_node("Shape", ["x"], ["xs"]),
        helper.make_node("Gather", ["xs", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        helper.make_node("Concat", ["n1", "tail"], ["target"], axis=0),
        helper.make_node("Reshape", ["h", "target"], ["h3"]),  # (N, 3, 4)
        helper.make_node("Transpose", ["h3"], ["ht"], perm=[0, 2, 1]),  # (N, 4, 3)
        helper.make_node("Reshape", ["x", "shape2"], ["x2"]),  # (N, 4, 2) by 0 and -1
        helper.make_node("Concat", ["ht", "x2"], ["cat"], axis=2),  # (N, 4, 5)
        helper.make_node("Sigmoid", ["cat"], ["s"]),
        helper.make_node("ReduceMean", ["s"], ["y"], axes=[1], keepdims=0),  # (N, 5)
    ]
    inits = [init("W", rng.standard_normal((8, 12)).astype(t) * 0.5),
             init("zero", np.array(0, dtype=np.int64)),
             init("axes0", np.array([0], dtype=np.int64)),
             init("tail", np.array([3, 4], dtype=np.int64)),
             init("shape2", np.array([0, 4, -1], dtype=np.int64))]
    return make_model(nodes, [vi("x", dt, ["N", 8])], [vi("y", dt, ["N", 5])], inits, opset=13)


# builder, input shape, SGD learning rate
MODELS = {"mlp": (mlp, (6, 4), 1.0), "cnn": (cnn, (3, 2, 8, 8), 0.05),
          "bn": (bn_model, (3, 2, 5, 5), 0.05), "shapes": (shape_model, (5, 8), 5.0)}


def _x(shape, dt, seed=10):
    return np.random.default_rng(seed).standard_normal(shape).astype(dt)


# ---------------------------------------------------------------------------------------------
# The four models end to end


@pytest.mark.parametrize("kind", list(MODELS))
def test_outputs_match_onnxruntime(kind):
    build, xshape, _ = MODELS[kind]
    model = build()
    imp = import_onnx(model)
    assert isinstance(imp.graph, ga.Graph)
    assert list(imp.inputs) == ["x"] and list(imp.outputs) == ["y"]
    assert all(isinstance(v, ga.Variable) and v.trainable for v in imp.variables.values())
    float_inits = {t.name for t in model.graph.initializer if t.data_type == F32}
    assert set(imp.variables) == float_inits
    sess = ga.Session(imp.graph)
    for n in (1, xshape[0]):  # the batch dim is named, so any size runs
        x = _x((n,) + xshape[1:], np.float32)
        (want,) = ort_run(model, {"x": x})
        got = sess.run(imp.outputs["y"], {imp.inputs["x"]: x})
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        (ref,) = evaluate([imp.outputs["y"]], {imp.inputs["x"]: x})
        np.testing.assert_allclose(ref, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", list(MODELS))
def test_gradients_match_finite_differences(kind):
    """d loss / d variables of the imported float64 model (symbolic, run on onnxruntime) agree
    with five-point finite differences of the model's own function (reference interpreter)."""
    build, xshape, _ = MODELS[kind]
    imp = import_onnx(build(F64))
    names = list(imp.variables)
    vs = [imp.variables[n] for n in names]
    x = _x(xshape, np.float64)
    rng = np.random.default_rng(7)
    y = imp.outputs["y"]
    with imp.graph:
        weights = ga.constant(rng.standard_normal(x.shape[:1] + y.shape[1:]), dtype=ga.float64)
        loss = ga.sum(y * weights)
        grads = gradients(loss, vs)
    feed = {imp.inputs["x"]: x}
    got = ga.Session(imp.graph).run(grads, feed)
    x0 = [np.asarray(v.initial_value) for v in vs]

    def f(values):
        return evaluate([loss], feed, variables=dict(zip(names, values)))

    for _ in range(2):
        u = [rng.standard_normal(a.shape) for a in x0]
        (want,) = directional(f, x0, u, h=1e-5)  # small h: no relu kink crossed
        have = sum(float(np.sum(g * d)) for g, d in zip(got, u))
        assert_close(have, want, rtol=1e-7, atol=1e-9, what=f"{kind}: <grad, u> vs FD")
    for k, (g, a) in enumerate(zip(got, x0)):  # one variable at a time too
        u = [np.zeros_like(b) for b in x0]
        u[k] = rng.standard_normal(a.shape)
        (want,) = directional(f, x0, u, h=1e-5)  # small h: no relu kink crossed
        assert_close(float(np.sum(g * u[k])), want, rtol=1e-7, atol=1e-9,
                     what=f"{kind}: gradient of {names[k]!r}")


@pytest.mark.parametrize("kind", list(MODELS))
def test_fine_tune_and_export_again(kind):
    """A few SGD steps with v.assign_sub(lr * g) lower the loss; to_onnx writes the fine-tuned
    values and the re-exported model runs in plain onnxruntime."""
    build, xshape, lr = MODELS[kind]
    model = build()
    imp = import_onnx(model)
    x = _x((8,) + xshape[1:], np.float32, seed=11)
    (y0,) = ort_run(model, {"x": x})
    # a reachable target: the model's outputs for other inputs
    (target,) = ort_run(model, {"x": _x(x.shape, np.float32, seed=13)})
    y = imp.outputs["y"]
    vs = list(imp.variables.values())
    with imp.graph:
        loss = ga.mean(ga.square(y - target))
        grads = gradients(loss, vs)
        step = ga.group(*[v.assign_sub(lr * g) for v, g in zip(vs, grads)])
    sess = ga.Session(imp.graph)
    feed = {imp.inputs["x"]: x}
    losses = [float(sess.run(loss, feed))]
    for _ in range(20):
        sess.run(step, feed)
        losses.append(float(sess.run(loss, feed)))
    assert losses[-1] < 0.8 * losses[0], losses
    assert all(b <= a + 1e-6 for a, b in zip(losses, losses[1:])), losses
    tuned = sess.run(y, feed)
    again = to_onnx(imp.outputs, session=sess)
    onnx.checker.check_model(again, full_check=True)
    (y1,) = ort_run(again, {"x": x})
    np.testing.assert_allclose(y1, tuned, rtol=1e-5, atol=1e-6)
    assert not np.allclose(y1, y0, atol=1e-4)  # the fine-tuned values were exported
    by_name = {t.name: numpy_helper.to_array(t) for t in again.graph.initializer}
    for v in imp.variables.values():
        np.testing.assert_array_equal(by_name[v.name], sess.run(v))


def test_imported_graph_and_its_gradient_can_be_optimised():
    imp = import_onnx(cnn())
    vs = list(imp.variables.values())
    with imp.graph:
        loss = ga.sum(ga.square(imp.outputs["y"]))
        grads = gradients(loss, vs)
    new, report = ga.passes.optimize({"loss": loss, "grads": grads})
    assert report and all("nodes_after" in r for r in report)
    x = _x((2, 2, 8, 8), np.float32)
    want = evaluate([loss, *grads], {imp.inputs["x"]: x})
    (ph,) = [p for p in new["loss"].graph.placeholders() if p.name == "x"]
    got = evaluate([new["loss"], *new["grads"]], {ph: x})
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_reimport_of_exported_model():
    imp = import_onnx(mlp())
    again = import_onnx(to_onnx(imp.outputs))
    x = _x((3, 4), np.float32)
    a = ga.Session(imp.graph).run(imp.outputs["y"], {imp.inputs["x"]: x})
    b = ga.Session(again.graph).run(again.outputs["y"], {again.inputs["x"]: x})
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_contrib_ops_graphad_exports_reimport():
    """com.microsoft FusedMatMul, GatedAdd and Inverse (what graphad's exporter emits)."""
    n = helper.make_node
    ms = "com.microsoft"
    nodes = [n("FusedMatMul", ["a", "b"], ["m"], domain=ms, transB=1, alpha=0.5),
             n("GatedAdd", ["m", "m", "gate"], ["g"], domain=ms),
             n("Inverse", ["sq"], ["inv"], domain=ms),
             n("FusedMatMul", ["inv", "g"], ["y"], domain=ms, transA=1)]
    rng = np.random.default_rng(5)
    graph = helper.make_graph(nodes, "ms", [vi("a", F32, [3, 4]), vi("b", F32, [3, 4])],
                              [vi("y", F32, [3, 3])],
                              [init("gate", rng.uniform(size=(3, 1)).astype(np.float32)),
                               init("sq", (np.eye(3) * 3 + rng.uniform(size=(3, 3)))
                                    .astype(np.float32))])
    model = helper.make_model(graph, ir_version=9, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid(ms, 1)])
    feeds = {"a": _x((3, 4), np.float32, 1), "b": _x((3, 4), np.float32, 2)}
    _compare(model, feeds, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Inputs, initializers and dims


def test_dims_initializers_and_trainable_flag():
    nodes = [helper.make_node("Add", ["x", "b"], ["s"]),
             helper.make_node("Reshape", ["z", "shape"], ["y"])]
    inputs = [vi("x", F32, ["batch", None, 3]),
              vi("b", F32, [3]),  # an old-style input with a default (an initializer)
              vi("z", F32, ["batch", 2, 3])]
    inits = [init("b", np.ones(3, np.float32)), init("shape", np.array([0, -1], np.int64))]
    model = make_model(nodes, inputs, [vi("s", F32, None), vi("y", F32, None)], inits)
    imp = import_onnx(model, trainable=False)
    assert imp.inputs["x"].shape == ("batch", None, 3)
    assert list(imp.inputs) == ["x", "z"]
    assert set(imp.variables) == {"b"} and not imp.variables["b"].trainable
    assert ga.trainable_variables(imp.graph) == []
    assert imp.outputs["y"].shape == ("batch", 6)
    feeds = {"x": _x((2, 5, 3), np.float32), "z": _x((2, 2, 3), np.float32)}
    _compare(model, feeds, trainable=False)
    assert import_onnx(model).variables["b"].trainable


def test_float64_and_int_initializers_keep_their_dtypes():
    nodes = [helper.make_node("Gather", ["W", "idx"], ["g"], axis=0),
             helper.make_node("Cast", ["g"], ["y"], to=F32)]
    inits = [init("W", np.arange(12, dtype=np.float64).reshape(4, 3) / 7),
             init("idx", np.array([3, -1, 0], dtype=np.int64))]
    model = make_model(nodes, [], [vi("y", F32, [3, 3])], inits)
    imp = import_onnx(model)
    assert imp.variables["W"].dtype == ga.float64  # not float32, even without x64
    np.testing.assert_allclose(ga.Session(imp.graph).run(imp.outputs["y"]),
                               ort_run(model, {})[0])


# ---------------------------------------------------------------------------------------------
# The other ops of the catalogue, against onnxruntime


def _compare(model, feeds, rtol=1e-5, atol=1e-6, **kw):
    imp = import_onnx(model, **kw)
    want = ort_run(model, feeds)
    fd = {imp.inputs[k]: v for k, v in feeds.items()}
    got = ga.Session(imp.graph).run(list(imp.outputs.values()), fd)
    for g, w, name in zip(got, want, imp.outputs):
        assert g.dtype == w.dtype, name
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=name)
    return imp


def test_elementwise_and_reductions():
    n = helper.make_node
    nodes = [
        n("Abs", ["x"], ["a"]), n("Add", ["a", "one"], ["a1"]), n("Sqrt", ["a1"], ["sq"]),
        n("Log", ["a1"], ["lg"]), n("Exp", ["x"], ["ex"]), n("Neg", ["ex"], ["ng"]),
        n("Sub", ["sq", "lg"], ["d"]), n("Mul", ["d", "ng"], ["m"]), n("Div", ["m", "a1"], ["q"]),
        n("Pow", ["a1", "two"], ["p"]), n("Tanh", ["q"], ["t"]), n("Sigmoid", ["p"], ["sg"]),
        n("LogSoftmax", ["t"], ["ls"], axis=-1), n("Identity", ["ls"], ["ident"]),
        n("Constant", [], ["c"], value_float=0.25), n("Mul", ["ident", "c"], ["o1"]),
        n("ReduceSum", ["sg", "ax1"], ["rs"], keepdims=1), n("ReduceMax", ["o1"], ["rm"],
                                                           axes=[0], keepdims=0),
        n("Squeeze", ["rs", "ax1"], ["o2"]), n("Unsqueeze", ["rm", "ax0"], ["o3"]),
        n("Cast", ["o3"], ["o4"], to=F64),
    ]
    inits = [init("one", np.float32(1.0)), init("two", np.float32(2.0)),
             init("ax1", np.array([1], np.int64)), init("ax0", np.array([0], np.int64))]
    model = make_model(nodes, [vi("x", F32, [3, 4])],
                       [vi("o1", F32, None), vi("o2", F32, None), vi("o4", F64, None)], inits,
                       opset=17)
    _compare(model, {"x": _x((3, 4), np.float32)})


def test_integer_division_truncates_like_onnx():
    n = helper.make_node
    nodes = [n("Div", ["a", "b"], ["q"]), n("Pow", ["a", "e"], ["p"])]
    model = make_model(nodes, [vi("a", I64, [6]), vi("b", I64, [6])],
                       [vi("q", I64, [6]), vi("p", I64, [6])], [init("e", np.int64(3))])
    a = np.array([7, -7, 7, -7, 9, 0], np.int64)
    b = np.array([2, 2, -2, -2, 3, 5], np.int64)
    _compare(model, {"a": a, "b": b}, rtol=0, atol=0)


@pytest.mark.parametrize("opset", [11, 13])
def test_old_opset_forms(opset):
    """Softmax before opset 13 normalises over all axes from `axis` on; Squeeze/Unsqueeze and
    ReduceSum take axes as attributes before opset 13."""
    n = helper.make_node
    axes_attr = opset < 13
    nodes = [n("Softmax", ["x"], ["s"], axis=1),
             n("Unsqueeze", ["s"] if axes_attr else ["s", "ax"], ["u"],
               **({"axes": [0]} if axes_attr else {})),
             n("Squeeze", ["u"] if axes_attr else ["u", "ax"], ["q"],
               **({"axes": [0]} if axes_attr else {})),
             n("ReduceSum", ["q"] if axes_attr else ["q", "ax2"], ["y"], keepdims=0,
               **({"axes": [2]} if axes_attr else {}))]
    inits = [init("ax", np.array([0], np.int64)), init("ax2", np.array([2], np.int64))]
    model = make_model(nodes, [vi("x", F32, [2, 3, 4])], [vi("y", F32, None)], inits,
                       opset=opset, ir=7)
    _compare(model, {"x": _x((2, 3, 4), np.float32)})


def test_conv1d_same_padding_and_reduce_axes_input():
    n = helper.make_node
    rng = np.random.default_rng(4)
    nodes = [n("Conv", ["x", "K", "b"], ["c"], auto_pad="SAME_UPPER", strides=[2]),
             n("ReduceMax", ["c", "ax"], ["y"], keepdims=1)]
    inits = [init("K", rng.standard_normal((3, 2, 4)).astype(np.float32)),
             init("b", rng.standard_normal(3).astype(np.float32)),
             init("ax", np.array([-1], np.int64))]
    model = make_model(nodes, [vi("x", F32, [2, 2, 9])], [vi("y", F32, None)], inits, opset=18)
    _compare(model, {"x": _x((2, 2, 9), np.float32)})


def test_shape_of_static_tensor_folds_and_extra_ops():
    n = helper.make_node
    nodes = [n("Shape", ["x"], ["s"]), n("Cast", ["s"], ["sf"], to=F32),
             n("ReduceProd", ["sf"], ["count"], keepdims=0),
             n("Slice", ["x", "st", "en", "axs"], ["sl"]),
             n("Clip", ["sl", "lo", "hi"], ["cl"]),
             n("Div", ["cl", "count"], ["y"]),
             n("ConstantOfShape", ["s"], ["z"], value=numpy_helper.from_array(
                 np.array([2.5], np.float32))),
             n("Expand", ["b", "s"], ["e"]), n("Add", ["e", "z"], ["y2"])]
    inits = [init("st", np.array([1, -3], np.int64)), init("en", np.array([100, -1], np.int64)),
             init("axs", np.array([0, 1], np.int64)), init("lo", np.float32(-0.5)),
             init("hi", np.float32(0.5)), init("b", np.ones((1, 5), np.float32))]
    model = make_model(nodes, [vi("x", F32, [4, 5])], [vi("y", F32, None), vi("y2", F32, None)],
                       inits)
    imp = _compare(model, {"x": _x((4, 5), np.float32)})
    assert not any(nd.op == "shape" for nd in imp.graph.nodes)


def test_dynamic_flatten_and_reshape_keep_named_dims():
    n = helper.make_node
    nodes = [n("Flatten", ["x"], ["f"], axis=1), n("Shape", ["f"], ["s"]),
             n("Slice", ["s", "z", "one"], ["s0"]), n("Concat", ["s0", "m1"], ["t"], axis=0),
             n("Reshape", ["x", "t"], ["y"])]
    inits = [init("z", np.array([0], np.int64)), init("one", np.array([1], np.int64)),
             init("m1", np.array([-1], np.int64))]
    model = make_model(nodes, [vi("x", F32, ["B", 2, 3])], [vi("f", F32, None),
                                                             vi("y", F32, None)], inits)
    imp = _compare(model, {"x": _x((4, 2, 3), np.float32)})
    assert imp.outputs["f"].shape == ("B", 6) and imp.outputs["y"].shape == ("B", 6)


def test_reshape_with_two_runtime_dims_is_refused_clearly():
    n = helper.make_node
    nodes = [n("Reshape", ["x", "t"], ["y"])]
    model = make_model(nodes, [vi("x", F32, ["B", "T", 6])], [vi("y", F32, None)],
                       [init("t", np.array([0, 0, 2, 3], np.int64))])
    with pytest.raises(OnnxImportError, match="Reshape.*2 dims known only at run time"):
        import_onnx(model)


# ---------------------------------------------------------------------------------------------
# Control flow (If / Loop), when the op catalogue has cond / while_loop


needs_control = pytest.mark.skipif(not (hasattr(ga, "cond") and hasattr(ga, "while_loop")),
                                   reason="ga.cond / ga.while_loop not in the catalogue yet")


@needs_control
def test_if_imports_as_cond():
    n = helper.make_node
    then_g = helper.make_graph([n("Mul", ["x", "w"], ["t"])], "then", [], [vi("t", F32, [3])])
    else_g = helper.make_graph([n("Neg", ["x"], ["e"])], "else", [], [vi("e", F32, [3])])
    nodes = [n("ReduceSum", ["x"], ["s"], keepdims=0), n("Greater", ["s", "zero"], ["p"]),
             n("If", ["p"], ["y"], then_branch=then_g, else_branch=else_g)]
    model = make_model(nodes, [vi("x", F32, [3])], [vi("y", F32, [3])],
                       [init("zero", np.float32(0)), init("w", np.float32([1, 2, 3]))])
    for x in (np.float32([1, 2, 3]), np.float32([-1, -2, 0.5])):
        _compare(model, {"x": x})
    _check_grad_of_variable(model, "w", {"x": np.float32([1, 2, 3])}, "y")


def _check_grad_of_variable(model, var, feeds, out):
    """d sum(out) / d var through the imported control flow vs central differences."""
    imp = import_onnx(model)
    w = imp.variables[var]
    with imp.graph:
        loss = ga.sum(imp.outputs[out])
        (g,) = gradients(loss, [w])
    fd = {imp.inputs[k]: v for k, v in feeds.items()}
    got = ga.Session(imp.graph).run(g, fd)
    w0 = np.asarray(w.initial_value, dtype=np.float64)

    def f(value):
        return evaluate([loss], fd, variables={w.name: value[0].astype(np.float32)})

    (want,) = directional(f, [w0], [np.ones_like(w0)], h=1e-2)
    assert_close(np.sum(got), want, rtol=1e-3, atol=1e-3, what=f"d/d{var}")


@needs_control
def test_loop_imports_as_while_loop_and_scan():
    n = helper.make_node
    body = helper.make_graph(
        [n("Mul", ["v_in", "w"], ["v_out"]), n("ReduceSum", ["v_out"], ["s"], keepdims=0),
         n("Less", ["s", "lim"], ["c_out"])],
        "body", [vi("i", I64, []), vi("c_in", TensorProto.BOOL, []), vi("v_in", F32, [2])],
        [vi("c_out", TensorProto.BOOL, []), vi("v_out", F32, [2])])
    model = make_model([n("Loop", ["M", "cond", "v"], ["v_final"], body=body)],
                       [vi("v", F32, [2])], [vi("v_final", F32, [2])],
                       [init("M", np.int64(10)), init("cond", np.bool_(True)),
                        init("w", np.float32(1.5)), init("lim", np.float32(20))])
    for v in (np.float32([1, 2]), np.float32([0.01, 0.02]), np.float32([30, 1])):
        _compare(model, {"v": v})
    _check_grad_of_variable(model, "w", {"v": np.float32([1, 2])}, "v_final")

    sbody = helper.make_graph(
        [n("Cast", ["i"], ["i_f"], to=F32), n("Add", ["a_in", "i_f"], ["a_out"]),
         n("Identity", ["c_in"], ["c_out"]), n("Mul", ["a_out", "two"], ["ys"])],
        "sbody", [vi("i", I64, []), vi("c_in", TensorProto.BOOL, []), vi("a_in", F32, [2])],
        [vi("c_out", TensorProto.BOOL, []), vi("a_out", F32, [2]), vi("ys", F32, [2])])
    model = make_model([n("Loop", ["M", "", "a"], ["a_final", "stacked"], body=sbody)],
                       [vi("a", F32, [2])], [vi("a_final", F32, [2]), vi("stacked", F32, None)],
                       [init("M", np.int64(4)), init("two", np.float32(2))])
    _compare(model, {"a": np.float32([0.5, -1])})


def test_control_flow_reported_by_name_when_missing(monkeypatch):
    from graphad.export import onnx_import_ops as ops_mod

    monkeypatch.setattr(ops_mod.HANDLERS["If"], "available", lambda: False)
    n = helper.make_node
    br = helper.make_graph([n("Identity", ["x"], ["t"])], "b", [], [vi("t", F32, [1])])
    model = make_model([n("If", ["p"], ["y"], then_branch=br, else_branch=br)],
                       [vi("p", TensorProto.BOOL, []), vi("x", F32, [1])], [vi("y", F32, [1])])
    with pytest.raises(OnnxImportError, match=r"If \(x1\)"):
        import_onnx(model)
