"""Seeing graphs: the text IR, DOT source and SVG pictures (built-in layout, or Graphviz `dot`
when installed), the networkx view, and before/after pictures of a pass (`diff`)."""

import os
import shutil
import subprocess

from .viz_dot import dot_binary, run_dot
from .viz_dot import to_dot as _dot_of
from .viz_model import build
from .viz_summary import summarise
from .viz_svg import to_svg
from .viz_text import graph_text, node_text, outputs_text, type_text  # noqa: F401

MAX_NODES = 400
MAX_DEPTH = 3
ENGINES = ("auto", "builtin", "dot")


class Drawing:
    """A picture: `.svg` text, `.dot` source; shows itself in notebooks; `.save(path)`."""

    def __init__(self, svg, dot, engine, title=""):
        self.svg, self.dot, self.engine, self.title = svg, dot, engine, title

    def _repr_svg_(self):
        return self.svg

    def __repr__(self):
        return f"<Drawing {self.title!r} ({self.engine}, {len(self.svg)} bytes of SVG)>"

    def save(self, path):
        """Write `.svg`, `.dot`/`.gv` (DOT source) or `.png` (needs rsvg-convert, cairosvg or
        Graphviz); returns the path."""
        path = os.fspath(path)
        ext = os.path.splitext(path)[1].lower()
        if ext == ".svg":
            with open(path, "w", encoding="utf-8") as f:
                f.write(self.svg)
        elif ext in (".dot", ".gv"):
            with open(path, "w", encoding="utf-8") as f:
                f.write(self.dot)
        elif ext == ".png":
            with open(path, "wb") as f:
                f.write(self.png())
        else:
            raise ValueError(f"Drawing.save: cannot write {ext or 'a file without extension'!r}; "
                             "use .svg, .png, .dot or .gv")
        return path

    def png(self):
        """PNG bytes of the picture, from whichever rasteriser this machine has."""
        exe = shutil.which("rsvg-convert")
        if exe:
            done = subprocess.run([exe, "-f", "png"], input=self.svg.encode(),
                                  capture_output=True, timeout=60, check=False)
            if done.returncode == 0 and done.stdout:
                return done.stdout
        try:
            import cairosvg  # noqa: PLC0415
        except ImportError:
            cairosvg = None
        if cairosvg is not None:
            return cairosvg.svg2png(bytestring=self.svg.encode())
        if dot_binary():
            return run_dot(self.dot, "png")
        raise RuntimeError(
            "saving a PNG needs one of: the `rsvg-convert` program (librsvg), the `cairosvg` "
            "package, or Graphviz `dot`; none is installed. Save as .svg instead"
        )


def picture(x, max_nodes=MAX_NODES, max_depth=MAX_DEPTH, keep=()):
    """The summarised picture model (VGraph) of anything `draw` accepts."""
    if max_nodes < 4:
        raise ValueError(f"max_nodes must be at least 4, got {max_nodes}")
    return summarise(build(x, max_depth=max_depth), max_nodes, keep=keep)


def to_dot(x, *, max_nodes=MAX_NODES, max_depth=MAX_DEPTH, title=None, legend=True):
    """DOT source text of a Graph, Tensor(s), Traced or onnx.ModelProto."""
    return _dot_of(picture(x, max_nodes, max_depth), title=title, legend=legend)


def render(vg, engine="auto", title=None, legend=True):
    """A Drawing of a picture model with the chosen engine."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    dot = _dot_of(vg, title=title, legend=legend)
    if engine == "dot" or (engine == "auto" and dot_binary()):
        try:  # auto: a picture is never worth a long wait, the built-in layout is quick
            svg = run_dot(dot, "svg", timeout=60 if engine == "dot" else 15).decode("utf-8")
            return Drawing(svg, dot, "dot", vg.title)
        except RuntimeError:
            if engine == "dot":
                raise
    svg, _ = to_svg(vg, title=title, legend=legend)
    return Drawing(svg, dot, "builtin", vg.title)


def draw(x, engine="auto", *, max_nodes=MAX_NODES, max_depth=MAX_DEPTH, title=None,
         legend=True):
    """Picture of a Graph, a Tensor or pytree of Tensors (only the nodes they need), a Traced
    (anything with `.graph` and `.outputs`) or an onnx.ModelProto (or a path to a .onnx file).

    engine: "dot" uses Graphviz, "builtin" the layout here, "auto" Graphviz when on PATH (falling
    back to the built-in layout on any failure). Bodies nested deeper than `max_depth` are
    folded, and pictures of more than `max_nodes` nodes are summarised.
    """
    return render(picture(x, max_nodes, max_depth), engine, title=title, legend=legend)


def diff(before, after, engine="builtin", **kwargs):
    """Before/after picture and text summary of a pass; see viz_diff.diff."""
    from .viz_diff import diff as _diff  # noqa: PLC0415

    return _diff(before, after, engine=engine, **kwargs)


def to_networkx(graph):
    """networkx.DiGraph: one node per graph node (attributes op, shape, dtype, location)."""
    import networkx as nx  # noqa: PLC0415

    g = nx.DiGraph(name=graph.name)
    for node in graph.nodes:
        out = node.outputs[0] if node.outputs else None
        tags = node.tags or {}
        g.add_node(
            node.name,
            op=node.op,
            shape=out.shape if out is not None else None,
            dtype=out.dtype.name if out is not None else None,
            location=node.location,
            grad_of=tags.get("grad_of"),
            mode=tags.get("mode"),
            fused=bool(tags.get("fused") or node.op.startswith("fused")),
            outputs=tuple((o.shape, o.dtype.name) for o in node.outputs),
        )
        for t in node.inputs:
            g.add_edge(t.node.name, node.name, index=t.index)
        for c in node.control_inputs:
            g.add_edge(c.name, node.name, control=True)
    return g
