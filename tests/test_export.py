"""Export: checked standalone ONNX models, deterministic bytes, dims, frozen variables."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

import graphad as ga


def _model(batch="batch"):
    g = ga.Graph("m")
    with g:
        x = ga.placeholder((batch, 3), name="x")
        w = ga.Variable(np.array([0.5, -1.0, 2.0], np.float32), name="w")
        y = ga.exp(x * w) + 1.0
    return g, x, w, y


def test_to_onnx_checks_and_runs_standalone(tmp_path):
    g, x, w, y = _model()
    s = ga.Session(g)
    s.run(w.assign(w * 2.0))
    path = tmp_path / "m.onnx"
    model = ga.export.to_onnx({"y": y}, session=s, path=path)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 10
    assert [o.opset_import for o in [model]][0][0].version == 21
    assert [i.name for i in model.graph.input] == ["x"]
    assert [o.name for o in model.graph.output] == ["y"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 3
    feed = np.arange(6, dtype=np.float32).reshape(2, 3) / 10
    np.save(tmp_path / "x.npy", feed)
    code = (
        "import sys, json, numpy as np, onnxruntime as ort\n"
        "assert 'graphad' not in sys.modules\n"
        f"s = ort.InferenceSession({str(path)!r}, providers=['CPUExecutionProvider'])\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        "(y,) = s.run(None, {'x': x})\n"
        "print(json.dumps(y.tolist()))\n"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                         check=True)
    got = np.array(json.loads(out.stdout), np.float32)
    want = s.run(y, {x: feed})
    np.testing.assert_array_equal(got, want)  # identical results
    np.testing.assert_allclose(want, np.exp(feed * np.array([1, -2, 4])) + 1, rtol=1e-6)


def test_initial_values_when_no_session():
    g, x, w, y = _model()
    model = ga.export.to_onnx(y)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    np.testing.assert_array_equal(inits["w"], [0.5, -1.0, 2.0])


def test_deterministic_bytes():
    a = ga.export.to_onnx(_model()[3]).SerializeToString()
    b = ga.export.to_onnx(_model()[3]).SerializeToString()
    assert a == b


def test_unknown_dims_and_value_info():
    g, x, w, y = _model(batch=None)
    model = ga.export.to_onnx(y)
    d0 = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert not d0.HasField("dim_value") and not d0.dim_param
    assert len(model.graph.value_info) >= 3


def test_explicit_inputs_cut_the_graph():
    g, x, w, y = _model()
    with g:
        h = x * w
        z = ga.exp(h)
    model = ga.export.to_onnx(z, inputs=[h])
    assert [i.name for i in model.graph.input] == [h.name]


def test_export_rejects_non_tensor():
    g, x, w, y = _model()
    with pytest.raises(ga.ExportError):
        ga.export.to_onnx([y, "nope"])
