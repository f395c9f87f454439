"""The built-in SVG writer: draws a laid-out picture (viz_layout.Placed) with a title and legend;
nodes are groups with CSS classes `node kind_<kind> mark_<mark>` (clusters `cluster kind_<kind>`);
all text is XML-escaped."""

import hashlib
import re

from .viz_layout import (LINE_H, LINE_PX, PAD_Y, PANEL_LABEL_H, PANEL_PAD, TITLE_H, TITLE_PX,
                         layout, node_shape, shape_of, text_width)
from .viz_style import (CLUSTERS, DETAIL, EDGES, KINDS, MARKS, MONO, SANS, TEXT, cluster_kind,
                        legend_items, mark_of)

MARGIN = 16
_BAD_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def esc(text):
    text = _BAD_XML.sub("?", str(text))
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _f(v):
    return f"{v:.1f}"


class _Writer:
    def __init__(self, uid):
        self.uid = uid
        self.out = []

    def emit(self, text):
        self.out.append(text)

    # -- nodes ---------------------------------------------------------------------------------
    def shape(self, shape, cx, cy, w, h, fill, stroke, width=1.3, dash=None):
        style = f'fill="{fill}" stroke="{stroke}" stroke-width="{width}"'
        if dash:
            style += f' stroke-dasharray="{dash}"'
        x, y = cx - w / 2, cy - h / 2
        if shape == "ellipse":
            self.emit(f'<ellipse cx="{_f(cx)}" cy="{_f(cy)}" rx="{_f(w / 2)}" ry="{_f(h / 2)}" '
                      f"{style}/>")
        elif shape == "hexagon":
            k = h * 0.3
            pts = [(x, cy), (x + k, y), (x + w - k, y), (x + w, cy), (x + w - k, y + h),
                   (x + k, y + h)]
            self.emit(f'<polygon points="{" ".join(f"{_f(a)},{_f(b)}" for a, b in pts)}" '
                      f"{style}/>")
        else:
            r = h / 2 if shape == "stadium" else 5
            self.emit(f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(w)}" height="{_f(h)}" '
                      f'rx="{_f(r)}" {style}/>')

    def label(self, node, cx, top):
        y = top + PAD_Y + TITLE_PX
        self.emit(f'<text x="{_f(cx)}" y="{_f(y)}" text-anchor="middle" font-family="{SANS}" '
                  f'font-size="{TITLE_PX}" font-weight="bold" fill="{TEXT}">{esc(node.title)}'
                  "</text>")
        for i, line in enumerate(node.lines):
            ly = top + PAD_Y + TITLE_H + LINE_H * i + LINE_PX
            self.emit(f'<text x="{_f(cx)}" y="{_f(ly)}" text-anchor="middle" '
                      f'font-family="{MONO}" font-size="{LINE_PX}" fill="{DETAIL}">{esc(line)}'
                      "</text>")

    def node(self, node, box):
        cx, cy, w, h = box
        fill, stroke, _ = KINDS.get(node.kind, KINDS["op"])
        mark = mark_of(node)
        classes = [f"kind_{node.kind}"] + [f"mark_{m}" for m in sorted(node.marks)]
        width, dash, opacity = 1.3, ("4,3" if node.kind in ("summary", "operation") else None), 1
        if "fused" in node.marks:  # e.g. a gradient node in a fusion group: its fill, fused shape
            stroke, width = KINDS["fused"][1], 2.0
        if mark:
            m_stroke, width, m_dash, opacity, _ = MARKS[mark]
            stroke, dash = m_stroke or stroke, m_dash or dash
        attr = f' opacity="{opacity}"' if opacity != 1 else ""
        self.emit(f'<g class="node {" ".join(classes)}"{attr}><title>{esc(node.tooltip)}</title>')
        shape = node_shape(node)
        self.shape(shape, cx, cy, w, h, fill, stroke, width, dash)
        if node.kind == "variable":  # a second border: state that persists across runs
            self.shape(shape, cx, cy, w - 6, h - 6, "none", stroke, 0.8)
        self.label(node, cx, cy - h / 2)
        self.emit("</g>")

    def cluster(self, node, box, spots):
        cx, cy, w, h = box
        ck = cluster_kind(node)
        fill, stroke, _ = CLUSTERS[ck]
        mark = mark_of(node)
        width, dash, opacity = 1.6, "6,3", 1
        if mark:
            stroke, width, opacity = MARKS[mark][0] or stroke, MARKS[mark][1], MARKS[mark][3]
        x, y = cx - w / 2, cy - h / 2
        classes = f"cluster kind_{ck} kind_{node.kind}" + "".join(
            f" mark_{m}" for m in sorted(node.marks))
        attr = f' opacity="{opacity}"' if opacity != 1 else ""
        self.emit(f'<g class="{classes}"{attr}><title>{esc(node.tooltip)}</title>')
        self.emit(f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(w)}" height="{_f(h)}" rx="8" '
                  f'fill="{fill}" stroke="{stroke}" stroke-width="{width}" '
                  f'stroke-dasharray="{dash}"/>')
        if node.kind in ("grad", "tangent", "fused"):  # a gradient loop: a coloured header band
            self.emit(f'<rect x="{_f(x + 3)}" y="{_f(y + 3)}" width="{_f(w - 6)}" '
                      f'height="{_f(TITLE_H + PAD_Y)}" rx="5" fill="{KINDS[node.kind][0]}"/>')
        self.label(node, cx, y)
        for label, ox, oy, sub in spots:
            px, py = x + ox, y + oy
            pw, ph = sub.w + 2 * PANEL_PAD, sub.h + PANEL_LABEL_H + 2 * PANEL_PAD
            self.emit(f'<g class="panel"><rect x="{_f(px)}" y="{_f(py)}" width="{_f(pw)}" '
                      f'height="{_f(ph)}" rx="6" fill="#ffffff" fill-opacity="0.75" '
                      f'stroke="{stroke}" stroke-width="0.8"/>')
            self.emit(f'<text x="{_f(px + 8)}" y="{_f(py + 13)}" font-family="{SANS}" '
                      f'font-size="11" font-style="italic" fill="{stroke}">{esc(label)}</text>')
            self.emit(f'<g transform="translate({_f(px + PANEL_PAD)},'
                      f'{_f(py + PANEL_LABEL_H + PANEL_PAD)})">')
            self.graph(sub)
            self.emit("</g></g>")
        self.emit("</g>")

    # -- graphs --------------------------------------------------------------------------------
    def graph(self, placed):
        for kind, d, src, dst in placed.edges:
            color, dash = EDGES.get(kind, EDGES["data"])
            extra = f' stroke-dasharray="{dash}"' if dash else ""
            self.emit(f'<path class="edge edge_{kind}" d="{d}" fill="none" stroke="{color}" '
                      f'stroke-width="1.2"{extra} marker-end="url(#{self.uid}-{kind})"/>')
        for node in placed.vg.nodes:
            box = placed.boxes[node.id]
            if node.id in placed.panels:
                self.cluster(node, box, placed.panels[node.id])
            else:
                self.node(node, box)

    def defs(self):
        self.emit("<defs>")
        for kind, (color, _) in EDGES.items():
            self.emit(f'<marker id="{self.uid}-{kind}" viewBox="0 0 10 10" refX="9.5" refY="5" '
                      'markerWidth="7" markerHeight="7" markerUnits="userSpaceOnUse" '
                      f'orient="auto"><path d="M0,0.5 L10,5 L0,9.5 z" fill="{color}"/></marker>')
        self.emit("</defs>")


def _legend(w, items, x0, y0, max_w):
    """Swatches with labels, wrapping at max_w; returns the height used."""
    x, y = x0, y0
    for kind, cat, text in items:
        item_w = 34 + text_width(text, 11) + 16
        if x + item_w > x0 + max_w and x > x0:
            x, y = x0, y + 22
        if cat == "kind":
            fill, stroke, _ = KINDS[kind]
            w.shape(shape_of(kind), x + 13, y + 8, 26, 15, fill, stroke, 1.2,
                    "4,3" if kind in ("summary", "operation") else None)
        elif cat == "cluster":
            fill, stroke, _ = CLUSTERS[kind]
            w.shape("rect", x + 13, y + 8, 26, 15, fill, stroke, 1.4, "5,2")
        elif cat == "mark":
            m_stroke, width, dash, opacity, _ = MARKS[kind]
            w.emit(f'<g opacity="{opacity}">')
            w.shape("rect", x + 13, y + 8, 26, 15, "#ffffff", m_stroke or "#333333", width, dash)
            w.emit("</g>")
        else:
            color, dash = EDGES[kind]
            w.emit(f'<path d="M{_f(x)},{_f(y + 8)} L{_f(x + 26)},{_f(y + 8)}" stroke="{color}" '
                   f'stroke-width="1.4" stroke-dasharray="{dash}"/>')
        w.emit(f'<text x="{_f(x + 32)}" y="{_f(y + 12)}" font-family="{SANS}" font-size="11" '
               f'fill="{TEXT}">{esc(text)}</text>')
        x += item_w
    return y + 22 - y0 if items else 0


def uid_of(vg):
    h = hashlib.md5(f"{vg.title}|{len(vg.nodes)}|{len(vg.edges)}".encode()).hexdigest()
    return "ga" + h[:8]


def header(w, title, note, items, x0, y0, max_w):
    """Title line, note line and legend; returns the height used."""
    w.emit(f'<text x="{_f(x0)}" y="{_f(y0 + 15)}" font-family="{SANS}" font-size="15" '
           f'font-weight="bold" fill="{TEXT}">{esc(title)}</text>')
    y = y0 + 24
    if note:
        w.emit(f'<text x="{_f(x0)}" y="{_f(y + 11)}" font-family="{SANS}" font-size="11.5" '
               f'fill="{DETAIL}">{esc(note)}</text>')
        y += 18
    y += 4
    w.emit('<g class="legend">')
    y += _legend(w, items, x0, y, max_w)
    w.emit("</g>")
    return y - y0 + 8


def to_svg(vg, title=None, legend=True):
    """SVG text of a VGraph (laid out here)."""
    placed = layout(vg)
    writer = _Writer(uid_of(vg))
    items = legend_items(vg) if legend else []
    title = title if title is not None else f"{vg.title} \u2014 {vg.count()} nodes"
    width = max(placed.w + 2 * MARGIN, 480.0)
    body = _Writer(writer.uid)
    head_h = header(body, title, vg.note, items, MARGIN, MARGIN, width - 2 * MARGIN)
    height = head_h + placed.h + 2 * MARGIN
    writer.emit(f'<svg xmlns="http://www.w3.org/2000/svg" width="{_f(width)}" '
                f'height="{_f(height)}" viewBox="0 0 {_f(width)} {_f(height)}" '
                f'class="graphad-graph">')
    writer.defs()
    writer.emit(f'<rect x="0" y="0" width="{_f(width)}" height="{_f(height)}" fill="#ffffff"/>')
    writer.out.extend(body.out)
    writer.emit(f'<g class="graph" transform="translate({MARGIN},{_f(MARGIN + head_h)})">')
    writer.graph(placed)
    writer.emit("</g></svg>")
    return "\n".join(writer.out), (width, height)
