"""`import_onnx` refusals: malformed and hostile files (not a model, pickles, unsupported ops,
opsets, cycles, undefined or duplicate names, absurd sizes, wrong types, external-data paths
outside the model's folder, nesting and size limits, random corruption) each raise
`OnnxImportError` naming the problem; nothing is executed, unpickled or read outside the folder."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import graphad as ga
from graphad.errors import OnnxImportError
from graphad.export.onnx_import import import_onnx
from test_onnx_import import (
    F32, F64, I64, _x, cnn, init, make_model, mlp, ort_run, shape_model, vi,
)

# ---------------------------------------------------------------------------------------------
# Refusals: every one an OnnxImportError naming the problem


def _refused(model_or_path, match):
    with pytest.raises(OnnxImportError, match=match):
        import_onnx(model_or_path)


def test_unsupported_ops_listed_all_at_once():
    n = helper.make_node
    nodes = [n("NonMaxSuppression", ["x", "x"], ["a"]), n("Relu", ["x"], ["b"]),
             n("Foo", ["b"], ["c"], domain="com.example"), n("TopK", ["x", "k"], ["d", "di"]),
             n("Foo", ["c"], ["e"], domain="com.example"), n("TopK", ["e", "k"], ["y", "yi"])]
    graph = helper.make_graph(nodes, "g", [vi("x", F32, [4])], [vi("y", F32, None)],
                              [init("k", np.array([1], np.int64))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example", 1)],
                              ir_version=9)
    with pytest.raises(OnnxImportError) as err:
        import_onnx(model)
    msg = str(err.value)
    for part in ("NonMaxSuppression (x1)", "TopK (x2)", "com.example::Foo (x2)"):
        assert part in msg, msg
    assert "Relu" not in msg


def test_not_a_model(tmp_path):
    _refused(b"\x08\x01\x12\x07garbage\xff\xff\xff", "not an ONNX model")
    _refused(np.random.default_rng(0).bytes(2000), "not an ONNX model")
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n" * 10)
    _refused(text, "not an ONNX model")
    _refused(tmp_path / "missing.onnx", "no such model file")
    _refused(42, "expects an onnx.ModelProto, bytes or a file path, got int")
    _refused(onnx.ModelProto(ir_version=8), "no graph")
    _refused(helper.make_tensor("t", F32, [1], [1.0]).SerializeToString(), "not an ONNX model")


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/graphad_pwned_marker",))


def test_pickles_are_never_loaded(tmp_path):
    import os
    import pickle

    marker = "/tmp/graphad_pwned_marker"
    if os.path.exists(marker):
        os.remove(marker)
    path = tmp_path / "evil.onnx"
    path.write_bytes(pickle.dumps(_Evil()))
    _refused(path, "not an ONNX model")
    assert not os.path.exists(marker)


def test_opset_and_ir_version_refused():
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    for opset in (7, 10, 26):
        model = make_model(nodes, [vi("x", F32, [2])], [vi("y", F32, [2])], opset=opset, ir=9,
                           check=False)
        _refused(model, f"opset {opset}, outside the opsets 11..25")
    model = make_model(nodes, [vi("x", F32, [2])], [vi("y", F32, [2])], check=False)
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    _refused(model, "imports no ai.onnx opset")
    model = make_model(nodes, [vi("x", F32, [2])], [vi("y", F32, [2])], ir=99, check=False)
    _refused(model, "IR version 99")


def test_cycle_refused():
    n = helper.make_node
    nodes = [n("Add", ["x", "c"], ["a"], name="first"), n("Relu", ["a"], ["b"], name="second"),
             n("Neg", ["b"], ["c"], name="third"), n("Identity", ["b"], ["y"])]
    model = make_model(nodes, [vi("x", F32, [2])], [vi("y", F32, [2])], check=False)
    with pytest.raises(OnnxImportError, match="cycle") as err:
        import_onnx(model)
    for name in ("first", "second", "third"):
        assert name in str(err.value)
    self_loop = make_model([n("Add", ["x", "z"], ["z"], name="me")], [vi("x", F32, [2])],
                           [vi("z", F32, [2])], check=False)
    _refused(self_loop, "cycle: node 'me' \\(Add\\)")


def test_undefined_and_duplicate_names_refused():
    n = helper.make_node
    model = make_model([n("Add", ["x", "ghost"], ["y"], name="adder")], [vi("x", F32, [2])],
                       [vi("y", F32, [2])], check=False)
    _refused(model, "node 'adder' \\(Add\\) reads 'ghost', which no node")
    model = make_model([n("Relu", ["x"], ["y"]), n("Neg", ["x"], ["y"])], [vi("x", F32, [2])],
                       [vi("y", F32, [2])], check=False)
    _refused(model, "value 'y' is defined twice")
    model = make_model([n("Relu", ["x"], ["y"])], [vi("x", F32, [2])], [vi("nowhere", F32, [2])],
                       check=False)
    _refused(model, "graph output 'nowhere' is not produced")
    br = helper.make_graph([n("Neg", ["phantom"], ["t"])], "b", [], [vi("t", F32, [1])])
    model = make_model([n("If", ["p"], ["y"], then_branch=br, else_branch=br)],
                       [vi("p", TensorProto.BOOL, [])], [vi("y", F32, [1])], check=False)
    _refused(model, "reads 'phantom'")


def test_absurd_sizes_refused():
    n = helper.make_node
    huge = TensorProto(name="W", data_type=F32, dims=[10**6, 10**6])  # 10^12 elements, no data
    model = make_model([n("Relu", ["W"], ["y"])], [], [vi("y", F32, None)], [huge], check=False)
    _refused(model, "initializer 'W' declares 1000000000000 elements")
    big_dim = TensorProto(name="W", data_type=F32, dims=[2**40, 0])
    model = make_model([n("Relu", ["W"], ["y"])], [], [vi("y", F32, None)], [big_dim],
                       check=False)
    _refused(model, "initializer 'W' declares dimension 1099511627776")
    model = make_model([n("Relu", ["x"], ["y"])], [vi("x", F32, [2**33, 2])],
                       [vi("y", F32, None)], check=False)
    _refused(model, "graph input 'x' declares dimension 8589934592")
    short = TensorProto(name="W", data_type=F32, dims=[3], float_data=[1.0, 2.0])
    model = make_model([n("Relu", ["W"], ["y"])], [], [vi("y", F32, None)], [short], check=False)
    _refused(model, "initializer 'W' declares shape \\(3,\\) \\(3 elements\\) but holds data for 2")
    raw = TensorProto(name="W", data_type=F32, dims=[4], raw_data=b"\0" * 12)
    model = make_model([n("Relu", ["W"], ["y"])], [], [vi("y", F32, None)], [raw], check=False)
    _refused(model, "declares shape \\(4,\\)")
    const = TensorProto(name="v", data_type=F32, dims=[10**7, 10**7])
    model = make_model([n("Constant", [], ["y"], value=const)], [], [vi("y", F32, None)],
                       check=False)
    _refused(model, "attribute 'value' of node 'y' \\(Constant\\) declares 100000000000000")


def test_wrong_types_refused():
    n = helper.make_node
    seq = helper.make_tensor_sequence_value_info("s", F32, [2])
    model = make_model([n("Identity", ["s"], ["y"])], [seq], [vi("y", F32, None)], check=False)
    _refused(model, "graph input 's' is not a tensor")
    strings = helper.make_tensor("names", TensorProto.STRING, [1], [b"a"])
    model = make_model([n("Identity", ["names"], ["y"])], [], [vi("y", F32, None)], [strings],
                       check=False)
    _refused(model, "initializer 'names' has element type STRING")
    model = make_model([n("Relu", ["x"], ["y"])], [vi("x", TensorProto.UINT8, [2])],
                       [vi("y", F32, None)], check=False)
    _refused(model, "graph input 'x' has element type UINT8")
    no_shape = helper.make_tensor_value_info("x", F32, None)
    model = make_model([n("Relu", ["x"], ["y"])], [no_shape], [vi("y", F32, None)], check=False)
    _refused(model, "graph input 'x' has no shape")
    gemm = n("Gemm", ["x", "x"], ["y"], name="g")
    gemm.attribute.append(helper.make_attribute("transB", "yes"))
    model = make_model([gemm], [vi("x", F32, [2, 2])], [vi("y", F32, None)], check=False)
    _refused(model, "node 'g' \\(Gemm\\): attribute 'transB' must be of type int, got STRING")
    model = make_model([n("Cast", ["x"], ["y"], to=TensorProto.UINT8, name="c")],
                       [vi("x", F32, [2])], [vi("y", TensorProto.UINT8, None)], check=False)
    _refused(model, "node 'c' \\(Cast\\): target type UINT8 is not a dtype graphad supports")
    model = make_model([n("Add", ["x", "y0"], ["y"], name="mix")],
                       [vi("x", F32, [2]), vi("y0", F64, [2])], [vi("y", F32, None)],
                       check=False)
    _refused(model, "node 'mix' \\(Add\\)")  # onnx forbids mixed dtypes; graphad says where
    sparse = helper.make_sparse_tensor(helper.make_tensor("v", F32, [1], [1.0]),
                                       helper.make_tensor("i", I64, [1], [0]), [3])
    model = make_model([n("Relu", ["x"], ["y"])], [vi("x", F32, [3])], [vi("y", F32, None)],
                       check=False)
    model.graph.sparse_initializer.append(sparse)
    _refused(model, "sparse initializers")


def _external_model(location, offset=0, length=None):
    t = TensorProto(name="W", data_type=F32, dims=[2])
    t.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": str(offset)}
    if length is not None:
        entries["length"] = str(length)
    for k, v in entries.items():
        e = t.external_data.add()
        e.key, e.value = k, v
    return make_model([helper.make_node("Relu", ["W"], ["y"])], [], [vi("y", F32, None)], [t],
                      check=False)


def test_external_data_paths_refused_and_never_read(tmp_path, monkeypatch):
    from graphad.export import onnx_import_check as check_mod

    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.float32([1, 2]).tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    opened = []
    real_open = open

    def spy(path, *a, **kw):
        opened.append(str(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr(check_mod, "open", spy, raising=False)
    outside = "outside the model's folder"
    cases = [(str(secret), "is absolute"), ("/etc/passwd", "is absolute"),
             ("C:\\Windows\\win.ini", "is absolute"), ("../secret.bin", outside),
             ("sub/../../secret.bin", outside)]
    (folder / "link.bin").symlink_to(secret)
    cases.append(("link.bin", outside))
    for k, (loc, match) in enumerate(cases):
        path = folder / f"m{k}.onnx"
        onnx.save_model(_external_model(loc), str(path))
        opened.clear()
        _refused(path, match)
        assert opened == [str(path)], opened  # only the model file itself was read
    _refused(_external_model("weights.bin"), "not loaded from a path")
    assert opened == [str(path)]


def test_external_data_inside_the_folder_is_read(tmp_path):
    model, saved = mlp(), mlp()
    path = tmp_path / "mlp.onnx"
    onnx.save_model(saved, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").exists()
    imp = import_onnx(path)
    x = _x((2, 4), np.float32)
    got = ga.Session(imp.graph).run(imp.outputs["y"], {imp.inputs["x"]: x})
    np.testing.assert_allclose(got, ort_run(model, {"x": x})[0], rtol=1e-6)
    imp2 = import_onnx(str(path))  # str paths too
    assert set(imp2.variables) == set(imp.variables)
    onnx.save_model(_external_model("weights.bin", offset=10**6), str(tmp_path / "far.onnx"))
    _refused(tmp_path / "far.onnx", "needs 8 from offset 1000000")
    onnx.save_model(_external_model("weights.bin", length=12), str(tmp_path / "len.onnx"))
    _refused(tmp_path / "len.onnx", "external data length 12 does not match")


def test_large_constant_of_shape_is_not_folded():
    n = helper.make_node
    model = make_model([n("ConstantOfShape", ["s"], ["y"])], [], [vi("y", F32, None)],
                       [init("s", np.array([40000, 40000], np.int64))])
    imp = import_onnx(model)  # 1.6e9 elements: kept as a graph node, never materialised
    assert imp.outputs["y"].shape == (40000, 40000)
    assert imp.outputs["y"].op.op != "constant"


def test_errors_name_the_onnx_node():
    n = helper.make_node
    model = make_model([n("MatMul", ["x", "W"], ["y"], name="proj")], [vi("x", F32, [2, 3])],
                       [vi("y", F32, None)], [init("W", np.ones((4, 5), np.float32))],
                       check=False)
    _refused(model, "node 'proj' \\(MatMul\\).*ShapeError")
    model = make_model([n("BatchNormalization", ["x", "s", "s", "s", "s"], ["y"],
                          training_mode=1, name="bn")],
                       [vi("x", F32, [2, 3])], [vi("y", F32, None)],
                       [init("s", np.ones(3, np.float32))], opset=15, check=False)
    _refused(model, "node 'bn' \\(BatchNormalization\\): training_mode=1 is not supported")


def test_limits_on_nodes_nesting_and_total_bytes(monkeypatch):
    from graphad.export import onnx_import_check as check_mod

    n = helper.make_node
    chain = [n("Relu", ["x"], ["h0"])] + [n("Relu", [f"h{i}"], [f"h{i + 1}"]) for i in range(9)]
    model = make_model(chain, [vi("x", F32, [2])], [vi("h9", F32, [2])])
    monkeypatch.setattr(check_mod, "MAX_NODES", 5)
    _refused(model, "more than 5 nodes")
    monkeypatch.undo()
    leaf = helper.make_graph([n("Identity", ["x"], ["t0"])], "b0", [], [vi("t0", F32, [1])])
    branch = leaf
    for k in range(1, 9):  # If inside If inside If ... (else branches stay flat)
        node = n("If", ["p"], [f"t{k}"], then_branch=branch, else_branch=leaf)
        branch = helper.make_graph([node], f"b{k}", [], [vi(f"t{k}", F32, [1])])
    model = make_model(list(branch.node), [vi("p", TensorProto.BOOL, []), vi("x", F32, [1])],
                       [vi("t8", F32, [1])], check=False)
    monkeypatch.setattr(check_mod, "MAX_DEPTH", 5)  # protobuf itself stops at ~33 levels
    _refused(model, "nested deeper than 5 levels")
    monkeypatch.setattr(check_mod, "MAX_TOTAL_BYTES", 100)
    _refused(mlp(), "exceed 100 bytes in total")


def test_corrupted_files_are_refused_or_imported_never_crash():
    """Random byte changes of valid models: import_onnx raises OnnxImportError or succeeds."""
    rng = np.random.default_rng(0)
    outcomes = {"imported": 0, "refused": 0}
    for build in (mlp, cnn, shape_model):
        data = build().SerializeToString()
        for _ in range(80):
            d = bytearray(data)
            for _ in range(rng.integers(1, 5)):
                d[rng.integers(len(d))] = rng.integers(256)
            try:
                import_onnx(bytes(d))
                outcomes["imported"] += 1
            except OnnxImportError:
                outcomes["refused"] += 1
    assert outcomes["imported"] and outcomes["refused"], outcomes
