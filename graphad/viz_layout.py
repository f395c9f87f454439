"""A layered (Sugiyama-style) layout without Graphviz: longest-path layering, shared dummy nodes
for long edges, barycentric ordering sweeps, and x placement by weighted isotonic regression.
Control-flow nodes are laid out as compound boxes holding their bodies' own layouts."""

import math
from bisect import bisect_right

TITLE_PX, LINE_PX = 13, 11
TITLE_H, LINE_H, PAD_X, PAD_Y = 17, 14, 10, 6
PANEL_LABEL_H, PANEL_PAD, PANEL_GAP = 16, 10, 14
NODE_GAP, DUMMY_GAP, LAYER_GAP = 22, 8, 34
MIN_W = 40
# advance widths (em) of DejaVu Sans Bold, the widest common sans: estimates stay conservative
_WIDE = dict.fromkeys("mwMW", 1.0) | dict.fromkeys("ABCDGHKNOQRUVXY&%@", 0.8)
_NARROW = dict.fromkeys("iljI.,:;|!' ", 0.36) | dict.fromkeys("frt()[]-/", 0.5)


def text_width(text, px, mono=False):
    if mono:
        return len(text) * px * 0.61
    return sum(_WIDE.get(c, _NARROW.get(c, 0.69)) for c in text) * px


def shape_of(kind, marks=()):
    """ellipse, stadium, hexagon or rect; a fused node is a hexagon whatever its kind."""
    if "fused" in marks:
        return "hexagon"
    return {"constant": "ellipse", "input": "stadium", "output": "stadium",
            "fused": "hexagon"}.get(kind, "rect")


def node_shape(node):
    return shape_of(node.kind, node.marks)


class Placed:
    """A laid-out VGraph: width, height, node boxes {id: (cx, cy, w, h)}, edges
    [(kind, points, src, dst)] and panel placements {id: [(label, ox, oy, Placed)]}."""

    def __init__(self, vg):
        self.vg = vg
        self.w = self.h = 0.0
        self.boxes = {}
        self.edges = []
        self.panels = {}


def measure(node):
    w = text_width(node.title, TITLE_PX) + 2 * PAD_X
    for line in node.lines:
        w = max(w, text_width(line, LINE_PX, mono=True) + 2 * PAD_X)
    h = TITLE_H + LINE_H * len(node.lines) + 2 * PAD_Y
    shape = node_shape(node)
    if shape == "ellipse":
        w, h = w * 1.25, h * 1.15
    elif shape == "stadium":
        w += h * 0.6
    elif shape == "hexagon":
        w += h * 0.6
    return max(w, MIN_W), h


def _place_panels(node, placed):
    """Lay out each panel; return the compound node's (w, h) and record panel offsets."""
    w, head_h = measure(node)
    inner = [(label, layout(sub)) for label, sub in node.panels]
    panels_w = sum(p.w + 2 * PANEL_PAD for _, p in inner) + PANEL_GAP * (len(inner) - 1)
    panels_h = max(p.h + PANEL_LABEL_H + 2 * PANEL_PAD for _, p in inner)
    total_w = max(w, panels_w + 2 * PANEL_PAD)
    x = (total_w - panels_w) / 2
    spots = []
    for label, p in inner:
        spots.append((label, x, head_h, p))
        x += p.w + 2 * PANEL_PAD + PANEL_GAP
    placed.panels[node.id] = spots
    return total_w, head_h + panels_h + PANEL_PAD


def layout(vg):
    """Place every node and route every edge of `vg` (top to bottom)."""
    placed = Placed(vg)
    if not vg.nodes:
        placed.w, placed.h = 120.0, 40.0
        return placed
    sizes = [(_place_panels(n, placed) if n.panels else measure(n)) for n in vg.nodes]
    grid = _Grid(vg, sizes)
    grid.order_layers()
    grid.assign_x()
    grid.assign_y()
    grid.route(placed)
    return placed


class _Grid:
    """The layered graph: real vertices 0..n-1 then shared dummies, their layers and orders."""

    def __init__(self, vg, sizes):
        self.vg = vg
        self.n = len(vg.nodes)
        self.w = [s[0] for s in sizes]
        self.h = [s[1] for s in sizes]
        idx = {node.id: i for i, node in enumerate(vg.nodes)}
        self.chains = []  # (kind, reversed, [vertices top to bottom], src id, dst id)
        edges = []
        for src, dst, kind in vg.edges:
            a, b = idx.get(src), idx.get(dst)
            if a is None or b is None or a == b:
                continue
            edges.append((min(a, b), max(a, b), kind, a > b, src, dst))
        self._layer(edges)
        self._dummies(edges)

    def _layer(self, edges):
        preds = [[] for _ in range(self.n)]
        succs = [[] for _ in range(self.n)]
        for a, b, *_ in edges:
            preds[b].append(a)
            succs[a].append(b)
        layer = [0] * self.n
        for v in range(self.n):  # vertex order is a topological order of the oriented edges
            if preds[v]:
                layer[v] = max(layer[p] for p in preds[v]) + 1
        for v in range(self.n - 1, -1, -1):  # sources sit just above their first consumer
            if not preds[v] and succs[v]:
                layer[v] = min(layer[s] for s in succs[v]) - 1
        self.layer = layer

    def _dummies(self, edges):
        shared = {}
        self.up = [[] for _ in range(self.n)]
        self.down = [[] for _ in range(self.n)]
        for a, b, kind, rev, src, dst in edges:
            chain = [a]
            for lay in range(self.layer[a] + 1, self.layer[b]):
                d = shared.get((a, lay))
                if d is None:
                    d = shared[(a, lay)] = self._new_dummy(lay)
                chain.append(d)
            chain.append(b)
            for u, v in zip(chain, chain[1:]):
                if v not in self.down[u]:
                    self.down[u].append(v)
                    self.up[v].append(u)
            self.chains.append((kind, rev, chain, src, dst))

    def _new_dummy(self, lay):
        self.layer.append(lay)
        self.w.append(2.0)
        self.h.append(0.0)
        self.up.append([])
        self.down.append([])
        return len(self.layer) - 1

    def is_dummy(self, v):
        return v >= self.n

    # -- ordering ------------------------------------------------------------------------------
    def order_layers(self, sweeps=8):
        depth = max(self.layer) + 1
        layers = [[] for _ in range(depth)]
        for v in range(len(self.layer)):
            layers[self.layer[v]].append(v)
        self.pos = [0.0] * len(self.layer)
        for row in layers:
            for i, v in enumerate(row):
                self.pos[v] = i
        for k in range(1, depth):  # initial order: follow the layer above
            self._sort(layers[k], self.up)
        best, best_cross = [row[:] for row in layers], self._crossings(layers)
        for it in range(sweeps):
            for k in range(1, depth):
                self._sort(layers[k], self.up)
            for k in range(depth - 2, -1, -1):
                self._sort(layers[k], self.down)
            cross = self._crossings(layers)
            if cross < best_cross:
                best, best_cross = [row[:] for row in layers], cross
            elif it > 2 and cross >= best_cross:
                break
        self.layers = best
        for row in best:
            for i, v in enumerate(row):
                self.pos[v] = i

    def _sort(self, row, nbrs):
        pos = self.pos
        keys = {}
        for v in row:
            ns = nbrs[v]
            keys[v] = sum(pos[u] for u in ns) / len(ns) if ns else pos[v]
        # on a tie, long edges step aside (to the right) so chains of real nodes stay straight
        row.sort(key=lambda v: (keys[v], v >= self.n, pos[v]))
        for i, v in enumerate(row):
            pos[v] = i

    def _crossings(self, layers):
        total = 0
        for row in layers[:-1]:
            pairs = sorted((self.pos[u], self.pos[v]) for u in row for v in self.down[u])
            seen = []
            for _, b in pairs:  # inversions: earlier edges ending right of this one
                total += len(seen) - bisect_right(seen, b)
                seen.insert(bisect_right(seen, b), b)
        return total

    # -- coordinates ---------------------------------------------------------------------------
    def _gap(self, u, v):
        return DUMMY_GAP if self.is_dummy(u) and self.is_dummy(v) else NODE_GAP

    def _weight(self, u, v):
        du, dv = self.is_dummy(u), self.is_dummy(v)
        if du and dv:  # long edges run straight
            return 8.0
        if du or dv:  # the first or last piece of a long edge may jog sideways
            return 1.0
        if not self.up[u] or not self.up[v]:  # a constant hangs beside its consumer
            return 0.5
        # chains of real nodes stay straight; a node lines up with its first consumer (the
        # forward continuation, not the gradient nodes made later) when several pull equally
        return 3.5 if self.primary[u] == v else 3.0

    def assign_x(self, rounds=4):
        self.primary = [min((s for s in self.down[v] if s < self.n), default=-1)
                        for v in range(len(self.layer))]
        self.x = [0.0] * len(self.layer)
        for row in self.layers:
            x = 0.0
            for i, v in enumerate(row):
                if i:
                    x += (self.w[row[i - 1]] + self.w[v]) / 2 + self._gap(row[i - 1], v)
                self.x[v] = x
        plan = [(self.up, range(1, len(self.layers))),
                (self.down, range(len(self.layers) - 2, -1, -1))]
        for _ in range(rounds):
            for nbrs, ks in plan:
                for k in ks:
                    self._place_row(self.layers[k], (nbrs,))
        for k in range(len(self.layers)):
            self._place_row(self.layers[k], (self.up, self.down))
        left = min(self.x[v] - self.w[v] / 2 for v in range(len(self.x)))
        self.x = [x - left for x in self.x]

    def _place_row(self, row, sides):
        desired, weight = [], []
        for v in row:
            pulls = [(self.x[u], self._weight(u, v)) for nbrs in sides for u in nbrs[v]]
            desired.append(_median_near(pulls, self.x[v]) if pulls else self.x[v])
            weight.append(sum(w for _, w in pulls) if pulls else 0.05)
        offsets = [0.0]
        for i in range(1, len(row)):
            a, b = row[i - 1], row[i]
            offsets.append(offsets[-1] + (self.w[a] + self.w[b]) / 2 + self._gap(a, b))
        fitted = isotonic([d - o for d, o in zip(desired, offsets)], weight)
        for v, y, o in zip(row, fitted, offsets):
            self.x[v] = y + o

    def assign_y(self):
        self.band = []
        y = 0.0
        for k, row in enumerate(self.layers):
            h = max((self.h[v] for v in row), default=0.0)
            self.band.append((y, y + h))
            fan = sum(len(self.down[v]) for v in row)
            y += h + LAYER_GAP + min(40.0, 4.0 * math.sqrt(fan)) * (k + 1 < len(self.layers))
        self.height = self.band[-1][1]

    # -- edges ---------------------------------------------------------------------------------
    def route(self, placed):
        from .viz_route import route_edges  # noqa: PLC0415

        for v in range(self.n):
            top, _ = self.band[self.layer[v]]
            placed.boxes[self.vg.nodes[v].id] = (self.x[v], top + self.h[v] / 2, self.w[v],
                                                 self.h[v])
        placed.w = max(self.x[v] + self.w[v] / 2 for v in range(len(self.x)))
        placed.h = self.height
        placed.edges = route_edges(self)


def isotonic(values, weights):
    """Weighted least-absolute-deviations non-decreasing fit (pool adjacent violators with
    weighted medians): unlike least squares, a heavy edge wins outright instead of every node
    in a conflict moving a little, so chains stay straight instead of drifting."""
    blocks = []  # [sorted [(value, weight)], median, count]
    for val, wt in zip(values, weights):
        blocks.append([[(val, wt)], val, 1])
        while len(blocks) > 1 and blocks[-2][1] > blocks[-1][1]:
            items2, _, c2 = blocks.pop()
            items1, _, c1 = blocks.pop()
            items = sorted(items1 + items2)
            blocks.append([items, _weighted_median(items), c1 + c2])
    out = []
    for _, median, count in blocks:
        out.extend([median] * count)
    return out


def _median_near(pulls, current):
    """The weighted median of neighbour positions; when a whole interval is optimal (an even
    split), the point of it nearest `current`, so aligned nodes stay aligned."""
    items = sorted(pulls)
    half = sum(w for _, w in items) / 2
    acc = 0.0
    for i, (v, w) in enumerate(items):
        acc += w
        if acc > half + 1e-9:
            return v
        if abs(acc - half) <= 1e-9 and i + 1 < len(items):
            return min(max(current, v), items[i + 1][0])
    return items[-1][0]


def _weighted_median(items):
    half = sum(w for _, w in items) / 2
    acc = 0.0
    for i, (v, w) in enumerate(items):
        acc += w
        if acc > half + 1e-12:
            return v
        if abs(acc - half) <= 1e-12 and i + 1 < len(items):  # an even split: the midpoint
            return (v + items[i + 1][0]) / 2
    return items[-1][0]
