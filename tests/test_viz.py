"""Seeing graphs: text IR, DOT source, built-in and Graphviz SVG pictures, ONNX views, summaries
of large graphs, networkx and before/after diffs."""

import os
import re
import shutil
import time
import types
import xml.etree.ElementTree as ET

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh

import graphad as ga
from graphad import viz
from graphad.viz_layout import layout
from graphad.viz_model import build
from graphad.viz_style import KINDS

HAVE_DOT = shutil.which("dot") is not None
SVG_NS = "{http://www.w3.org/2000/svg}"


def mlp_graph():
    g = ga.Graph("mlp")
    with g:
        x = ga.placeholder(("batch", 3), name="x")
        w = ga.Variable(np.ones((3, 4), np.float32), name="w")
        y = ga.relu(x @ w)
        loss = ga.mean(y * y)
        (gw,) = ga.gradients(loss, [w])
    return g, x, w, loss, gw


def control_graph():
    g = ga.Graph("ctl")
    with g:
        x = ga.placeholder((3,), name="x")
        s = ga.placeholder((), name="s")
        _, y = ga.while_loop(lambda v: v[0] < 5, lambda v: (v[0] + 1, ga.sin(v[1]) * s),
                             (ga.constant(0), x))
        z = ga.cond(ga.sum(y) > 0, lambda a: a * 2.0, lambda a: ga.exp(a), y)
        loss = ga.sum(z)
        grads = ga.gradients(loss, [x, s])
    return g, loss, grads


def if_model():
    two = oh.make_tensor("two", TP.FLOAT, [], [2.0])
    then_g = oh.make_graph([oh.make_node("Mul", ["x", "two"], ["t_out"], name="then_mul")],
                           "then", [], [oh.make_tensor_value_info("t_out", TP.FLOAT, [3])],
                           initializer=[two])
    else_g = oh.make_graph([oh.make_node("Neg", ["x"], ["e_out"], name="else<neg>&")],
                           "else", [], [oh.make_tensor_value_info("e_out", TP.FLOAT, [3])])
    nodes = [
        oh.make_node("ReduceSum", ["x"], ["s"], keepdims=0, name="rsum"),
        oh.make_node("Greater", ["s", "zero"], ["c"], name="gt"),
        oh.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g, name="branch"),
        oh.make_node("Tanh", ["y"], ["z"], name="out_tanh"),
    ]
    graph = oh.make_graph(nodes, "ifmodel", [oh.make_tensor_value_info("x", TP.FLOAT, [3])],
                          [oh.make_tensor_value_info("z", TP.FLOAT, [3])],
                          initializer=[oh.make_tensor("zero", TP.FLOAT, [], [0.0])])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 21)])
    onnx.checker.check_model(model)
    return model


def classes(svg):
    """Every class word used in an SVG (parsed, so Graphviz's entity escapes do not matter)."""
    words = set()
    for el in ET.fromstring(svg).iter():
        words.update(el.get("class", "").split())
    return words


def texts(svg):
    return [el.text or "" for el in ET.fromstring(svg).iter(f"{SVG_NS}text")]


# ---------------------------------------------------------------------------------------------
# Text IR


def test_text_ir_lines_types_and_gradient_marks():
    g, *_ = mlp_graph()
    text = g.text()
    assert text == str(g)
    lines = text.splitlines()
    assert lines[0].startswith("graph mlp (") and lines[-1] == "}"
    assert len(lines) == len(g.nodes) + 2
    assert "  x:f32[batch,3] = placeholder" in lines
    assert "  w:f32[3,4] = variable" in lines  # shape/dtype/name attrs are not repeated
    assert any(" = matmul x w" in ln for ln in lines)
    grad_lines = [ln for ln in lines if "# vjp of" in ln]
    assert len(grad_lines) == sum(1 for n in g.nodes if n.tags.get("grad_of"))
    assert any("keepdims=False" in ln for ln in lines)


def test_text_ir_constants_keep_their_precision():
    with ga.Graph() as g:
        ga.constant(np.float32(1.01))
        ga.constant(np.arange(3, dtype=np.int32))
        ga.constant(np.zeros((10, 10), np.float32))
    text = g.text()
    assert "constant 1.01" in text and "1.0099" not in text
    assert "constant [0,1,2]" in text
    assert "constant <f32[10,10]>" in text


def test_text_ir_indents_bodies_with_returns():
    g, *_ = control_graph()
    text = g.text()
    assert "    body = graph while_body" in text
    assert "    cond = graph while_cond" in text
    assert "    true = graph cond_true" in text and "    false = graph cond_false" in text
    assert "        return " in text  # body results
    assert "# vjp of loop" in text and "# vjp of cond" in text
    assert text.count("{") == text.count("}")
    shallow = viz.graph_text(g, max_depth=0)
    assert "<graph while_body:" in shallow and "return" not in shallow


def test_outputs_text_only_needed_nodes():
    g, x, w, loss, gw = mlp_graph()
    text = viz.outputs_text([loss], title="# f")
    assert text.startswith("# f\n") and "return mean" in text
    assert "vjp" not in text  # gradient nodes are not needed by the loss


def test_fused_and_recompute_tags_in_text():
    with ga.Graph() as g:
        x = ga.placeholder((2,), name="x")
        y = ga.exp(x)
    y.node.tags["fused"] = ("multiply", "add")
    assert "# fused ('multiply', 'add')" in g.text() or "# fused" in g.text()


# ---------------------------------------------------------------------------------------------
# Pictures: built-in engine


def test_builtin_svg_is_valid_xml_with_every_label():
    g, *_ = mlp_graph()
    d = viz.draw(g, engine="builtin")
    assert d.engine == "builtin" and d._repr_svg_() == d.svg
    root = ET.fromstring(d.svg)
    assert root.tag == f"{SVG_NS}svg"
    words = " ".join(texts(d.svg))
    for node in g.nodes:
        if node.op not in ("constant", "placeholder", "variable"):
            assert node.op in words, node.op
    for name in ("x", "w"):
        assert name in texts(d.svg)
    nodes = [el.get("class").split() for el in root.iter(f"{SVG_NS}g")
             if "node" in el.get("class", "").split()]
    assert len([c for c in nodes if "mark_copy" not in c]) == len(g.nodes)
    assert len([el for el in root.iter(f"{SVG_NS}path") if "edge" in el.get("class", "")]) > 10


def test_gradient_nodes_look_different():
    g, *_ = mlp_graph()
    svg = viz.draw(g, engine="builtin").svg
    assert {"kind_grad", "kind_op", "kind_input", "kind_variable"} <= classes(svg)
    assert KINDS["grad"][0] in svg and KINDS["grad"][0] != KINDS["op"][0] and "gradient (vjp)" in texts(svg)  # legend entry


def test_loop_and_cond_bodies_are_clusters():
    g, loss, grads = control_graph()
    svg = viz.draw(g, engine="builtin").svg
    words = classes(svg)
    assert {"cluster", "kind_loop", "kind_cond", "panel"} <= words
    labels = texts(svg)
    for panel in ("body", "cond", "true", "false"):
        assert panel in labels
    assert "loop body" in labels and "cond branches" in labels  # legend
    assert "sin" in labels and "exp" in labels  # nodes inside bodies are drawn


def test_fused_nodes_look_different():
    with ga.Graph() as g:
        x = ga.placeholder((2,), name="x")
        y = ga.exp(x) * 2.0
    y.node.tags["fused"] = True
    fake = types.SimpleNamespace(name="fused_elementwise")
    g.add_node(fake, [y], {}, out_types=[y.type])
    svg = viz.draw(g, engine="builtin").svg
    groups = [el for el in ET.fromstring(svg).iter(f"{SVG_NS}g")
              if "kind_fused" in el.get("class", "")]
    assert len(groups) == 2
    assert any(el.tag == f"{SVG_NS}polygon" for grp in groups for el in grp)  # hexagons
    assert "fused" in texts(svg)


def test_tensors_draw_only_what_they_need():
    g, x, w, loss, gw = mlp_graph()
    svg = viz.draw(loss, engine="builtin").svg
    assert "kind_grad" not in classes(svg)
    assert "mark_output" in classes(svg)
    svg2 = viz.draw({"loss": loss, "grad": [gw]}, engine="builtin").svg
    assert "kind_grad" in classes(svg2)
    with pytest.raises(TypeError, match="cannot draw"):
        viz.draw(42)


def test_traced_and_duck_typed_objects():
    tr = ga.jit(lambda a, b: ga.sin(a) * b).trace(np.zeros(3, np.float32),
                                                  np.ones(3, np.float32))
    svg = tr._repr_svg_()
    assert "sin" in texts(svg) and "multiply" in texts(svg)
    g, x, w, loss, gw = mlp_graph()
    duck = types.SimpleNamespace(graph=g, outputs={"loss": loss}, inputs=[x])
    svg = viz.draw(duck, engine="builtin").svg
    assert "mean" in texts(svg) and "kind_grad" not in classes(svg)
    assert g._repr_svg_().lstrip().startswith(("<svg", "<?xml"))


def test_layout_has_no_overlapping_boxes():
    g, *_ = control_graph()
    placed = layout(build(g))
    for boxes in [placed.boxes] + [p.boxes for spots in placed.panels.values()
                                   for _, _, _, p in spots]:
        rects = [(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                 for cx, cy, w, h in boxes.values()]
        for i, a in enumerate(rects):
            for b in rects[i + 1:]:
                overlap = a[0] < b[2] - 0.5 and b[0] < a[2] - 0.5 and a[1] < b[3] - 0.5 \
                    and b[1] < a[3] - 0.5
                assert not overlap, (a, b)


def test_shared_constants_are_drawn_beside_each_consumer():
    with ga.Graph() as g:
        x = ga.placeholder((3,), name="x")
        c = ga.constant(np.float32(1.5))
        y = ga.exp(x * c) + ga.sin(x) * c
    vg = build(g)
    copies = [n for n in vg.nodes if n.title == "1.5"]
    assert len(copies) == 2 and sum(n.copy for n in copies) == 1
    assert vg.count() == len(g.nodes)  # copies are not counted
    assert sorted(dst for src, dst, _ in vg.edges if src in {n.id for n in copies}) == sorted(
        f"n{n.id}" for n in g.nodes if n.op == "multiply")
    assert y is not None


def test_long_labels_are_capped():
    with ga.Graph() as g:
        ga.placeholder((2,), name="a_really_long_placeholder_name_that_goes_on_and_on_forever")
    svg = viz.draw(g, engine="builtin").svg
    assert max(len(t) for t in texts(svg) if "\u2026" in t) <= 32
    assert any("\u2026" in t for t in texts(svg))


def test_empty_graph_draws():
    d = viz.draw(ga.Graph("empty"), engine="builtin")
    ET.fromstring(d.svg)


def _big_graph(n_layers):
    g = ga.Graph("big")
    with g:
        h = ga.placeholder((4,), name="x")
        for _ in range(n_layers):
            h = ga.tanh(h * 1.5 + 0.25)
    return g


def test_two_thousand_nodes_render_fast_and_bounded():
    g = _big_graph(400)
    assert len(g.nodes) >= 2000
    t0 = time.perf_counter()
    d = viz.draw(g, engine="builtin")
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0, elapsed
    assert len(d.svg) < 1_000_000
    root = ET.fromstring(d.svg)
    assert float(root.get("width")) < 20_000 and float(root.get("height")) < 40_000
    nodes = [el for el in root.iter(f"{SVG_NS}g") if "node" in el.get("class", "").split()]
    assert len(nodes) <= viz.MAX_NODES
    assert "kind_summary" in classes(d.svg)
    assert any("more nodes" in t for t in texts(d.svg))
    assert len(viz.to_dot(g)) < 300_000


def test_large_graph_grouped_by_name_scope():
    g = ga.Graph("scoped")
    with g:
        h = ga.placeholder((4,), name="x")
        for i in range(60):
            for j in range(4):
                h = ga.tanh(h, name=f"block{i}/layer{j}/tanh")
    vg = viz.picture(g, max_nodes=100)
    assert "grouped by name scope" in vg.note
    assert any(n.kind == "group" and n.title.startswith("block") for n in vg.nodes)
    ET.fromstring(viz.draw(g, engine="builtin", max_nodes=100).svg)


def test_deep_bodies_are_collapsed():
    with ga.Graph() as g:
        x = ga.placeholder((), name="x")

        def inner(v):
            return ga.fori_loop(0, 2, lambda i, u: u * 2.0, v)

        ga.fori_loop(0, 3, lambda i, v: inner(v) + 1.0, x)
    full = build(g, max_depth=3)
    assert any(n.panels for n in full.walk() if n is not None)
    flat = build(g, max_depth=0)
    assert not any(n.panels for n in flat.nodes)
    assert any("collapsed" in " ".join(n.lines) for n in flat.nodes)
    svg = viz.draw(g, engine="builtin", max_depth=1).svg
    assert "collapsed" in " ".join(texts(svg))


# ---------------------------------------------------------------------------------------------
# ONNX models


def test_onnx_model_with_if_subgraphs(tmp_path):
    model = if_model()
    d = viz.draw(model, engine="builtin")
    labels = texts(d.svg)
    for op in ("ReduceSum", "Greater", "If", "Mul", "Neg", "Tanh"):
        assert op in labels, op
    assert "then_branch" in labels and "else_branch" in labels
    assert {"kind_cond", "cluster", "kind_input", "kind_output", "edge_capture"} <= classes(d.svg)
    assert any("else<neg>&" in t for t in labels)  # escaped, and the XML still parses
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert "ReduceSum" in texts(viz.draw(str(path), engine="builtin").svg)
    dot = viz.to_dot(model)
    assert 'subgraph "cluster_' in dot and "then_branch" in dot


def test_exported_loop_model_draws():
    g, loss, grads = control_graph()
    model = ga.export.to_onnx({"loss": loss, "gx": grads[0]})
    svg = viz.draw(model, engine="builtin").svg
    assert "Loop" in texts(svg) and "If" in texts(svg)
    assert {"kind_loop", "kind_cond"} <= classes(svg)


# ---------------------------------------------------------------------------------------------
# DOT source and the Graphviz engine


def test_to_dot_structure():
    g, loss, grads = control_graph()
    dot = viz.to_dot(g)
    assert dot.startswith('digraph "ctl" {') and dot.rstrip().endswith("}")
    body = re.sub(r'"(?:[^"\\]|\\.)*"', '""', dot)  # braces inside strings do not count
    body = re.sub(r"<(?:[^<>]|<[^<>]*>)*>", "", body)  # nor inside HTML labels
    assert body.count("{") == body.count("}")
    declared = set(re.findall(r'^\s*"([^"]+)" \[', dot, re.M))
    edges = re.findall(r'^\s*"([^"]+)" -> "([^"]+)"', dot, re.M)
    assert edges and all(a in declared and b in declared for a, b in edges)
    assert dot.count('subgraph "cluster_') >= 4  # two loops, two conds (plus panels, legend)
    assert "lhead=" in dot and "kind_grad" in dot and "kind_loop" in dot
    assert "rankdir=TB" in dot


@pytest.mark.skipif(not HAVE_DOT, reason="Graphviz `dot` is not installed")
def test_dot_engine_when_installed():
    g, loss, grads = control_graph()
    d = viz.draw(g, engine="dot")
    assert d.engine == "dot"
    words = classes(d.svg)
    assert {"kind_grad", "kind_loop", "kind_cond"} <= words
    assert "sin" in texts(d.svg)
    assert viz.draw(g).engine == "dot"  # auto picks Graphviz when it is there
    assert viz.draw(if_model(), engine="dot").engine == "dot"


def test_dot_engine_absent_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    g, *_ = mlp_graph()
    with pytest.raises(RuntimeError, match="not on PATH"):
        viz.draw(g, engine="dot")
    assert viz.draw(g).engine == "builtin"  # auto falls back


def test_auto_falls_back_when_dot_fails(monkeypatch):
    import graphad.viz_dot as vd

    false = shutil.which("false") or "/bin/false"
    monkeypatch.setattr(vd, "dot_binary", lambda: false)
    monkeypatch.setattr(viz, "dot_binary", lambda: false)
    g, *_ = mlp_graph()
    assert viz.draw(g, engine="auto").engine == "builtin"
    with pytest.raises(RuntimeError):
        viz.draw(g, engine="dot")
    with pytest.raises(ValueError, match="engine"):
        viz.draw(g, engine="neato")


def test_save_formats(tmp_path):
    g, *_ = mlp_graph()
    d = viz.draw(g, engine="builtin")
    ET.parse(d.save(tmp_path / "g.svg"))
    assert open(d.save(tmp_path / "g.dot")).read().startswith("digraph")
    can_png = shutil.which("rsvg-convert") or HAVE_DOT
    if can_png:
        d.save(tmp_path / "g.png")
        assert open(tmp_path / "g.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="cannot write"):
        d.save(tmp_path / "g.jpg")


def test_png_without_any_rasteriser_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    import builtins

    real_import = builtins.__import__

    def no_cairosvg(name, *a, **k):
        if name == "cairosvg":
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_cairosvg)
    g, *_ = mlp_graph()
    with pytest.raises(RuntimeError, match="rsvg-convert"):
        viz.draw(g, engine="builtin").save(tmp_path / "g.png")
    assert not os.path.exists(tmp_path / "g.png") or os.path.getsize(tmp_path / "g.png") == 0


# ---------------------------------------------------------------------------------------------
# networkx and diffs


def test_to_networkx_attributes():
    g, x, w, loss, gw = mlp_graph()
    nxg = g.to_networkx()
    assert nxg.number_of_nodes() == len(g.nodes)
    data = nxg.nodes["matmul"]
    assert data["op"] == "matmul" and data["shape"] == ("batch", 4) and data["dtype"] == "float32"
    assert nxg.has_edge("x", "matmul")
    assert any(d["grad_of"] for _, d in nxg.nodes(data=True))
    import networkx as nx

    assert nx.is_directed_acyclic_graph(nxg)


def _pipeline(optimised):
    g = ga.Graph("p")
    with g:
        x = ga.placeholder((4,), name="x")
        y = ga.placeholder((4,), name="y")
        a = ga.add(x, y, name="a")
        if optimised:
            e = ga.exp(a, name="e")
            s = ga.multiply(e, 2.0, name="twice")
        else:
            a2 = ga.add(x, y, name="a2")
            m = ga.multiply(a, 1.0, name="m")
            s = ga.add(ga.exp(m, name="e"), ga.exp(a2, name="e2"), name="s")
        out = ga.sum(ga.tanh(s, name="t"), name="out")
    return g, out


def test_diff_counts_and_picture():
    gb, ob = _pipeline(False)
    ga_, oa = _pipeline(True)
    d = viz.diff(ob, oa, title="optimize")
    assert (d.nodes_before, d.nodes_after) == (len(gb.nodes), len(ga_.nodes))
    removed = sorted(op for _, op in d.removed)
    assert removed == ["add", "add", "exp", "multiply"]  # a2, s, e2 and the multiply by 1
    assert [op for _, op in d.added] == ["multiply"]
    assert {name for name, _, _ in d.changed} >= {"e", "t"}
    assert d.by_op["add"]["removed"] == 2
    text = str(d)
    assert text.startswith("optimize: 11 -> 8 nodes") and "removed" in text and "added" in text
    words = classes(d.svg)
    assert {"mark_removed", "mark_added", "mark_changed"} <= words
    assert "before \u2014 11 nodes" in texts(d.svg) and "after \u2014 8 nodes" in texts(d.svg)


def test_diff_accepts_graphs_and_optimize_results(tmp_path):
    gb, ob = _pipeline(False)
    same = viz.diff(gb, gb)
    assert not same.removed and not same.added and not same.changed
    assert same.unchanged == len(gb.nodes)
    ga_, oa = _pipeline(True)
    d = viz.diff([ob], ([oa], [{"pass": "cse", "nodes_before": 11, "nodes_after": 8}]))
    assert d.removed
    ET.parse(d.save(tmp_path / "diff.svg"))


@pytest.mark.skipif(not HAVE_DOT, reason="Graphviz `dot` is not installed")
def test_diff_with_dot_engine():
    _, ob = _pipeline(False)
    _, oa = _pipeline(True)
    d = viz.diff(ob, oa, engine="dot")
    ET.fromstring(d.svg)
    assert "mark_removed" in classes(d.svg)
