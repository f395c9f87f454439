"""Edge routing for the built-in layout: ports spread along node borders, smooth vertical-tangent
curves between layers and straight runs through the dummy nodes of long edges."""

import math

from .viz_layout import node_shape

PORT_STEP = 14.0


def _flat_width(node, w, h):
    shape = node_shape(node)
    if shape == "ellipse":
        return w * 0.55
    if shape in ("stadium", "hexagon"):
        return max(w - h * 0.9, 4.0)
    return max(w - 14.0, 4.0)


def _border_dy(node, dx, w, h):
    """Vertical distance from the centre to the top/bottom border at horizontal offset dx."""
    if node_shape(node) == "ellipse":
        rx = w / 2
        return h / 2 * math.sqrt(max(0.0, 1.0 - (dx / rx) ** 2))
    return h / 2


def _ports(grid, v, nbrs):
    """{neighbour: x offset} for the distinct neighbours on one side, left to right."""
    ordered = sorted(set(nbrs), key=lambda u: grid.x[u])
    k = len(ordered)
    if k <= 1:
        return dict.fromkeys(ordered, 0.0)
    usable = _flat_width(grid.vg.nodes[v], grid.w[v], grid.h[v])
    step = min(PORT_STEP, usable / (k - 1))
    start = -step * (k - 1) / 2
    return {u: start + i * step for i, u in enumerate(ordered)}


def _end(grid, v, nbr, ports, side):
    """Point where an edge meets vertex v (side -1: top border, +1: bottom border). Nodes hang
    from the top of their layer's band."""
    top, bottom = grid.band[grid.layer[v]]
    if grid.is_dummy(v):
        return grid.x[v], top if side < 0 else bottom
    dx = ports[v][side].get(nbr, 0.0)
    cy = top + grid.h[v] / 2
    return grid.x[v] + dx, cy + side * _border_dy(grid.vg.nodes[v], dx, grid.w[v], grid.h[v])


def route_edges(grid):
    """[(kind, svg path d, src id, dst id)] for every edge of the grid's VGraph."""
    ports = {}
    for v in range(grid.n):
        ports[v] = {-1: _ports(grid, v, grid.up[v]), 1: _ports(grid, v, grid.down[v])}
    out = []
    for kind, rev, chain, src, dst in grid.chains:
        first = _end(grid, chain[0], chain[1], ports, 1)
        pts, segs = [first], []
        bottom = grid.band[grid.layer[chain[0]]][1]
        if bottom - first[1] > 1.0:  # a node shorter than its band: drop straight to the band's end
            pts.append((first[0], bottom))
            segs.append("L")
        for i in range(1, len(chain) - 1):
            d = chain[i]
            top, bottom = grid.band[grid.layer[d]]
            pts += [(grid.x[d], top), (grid.x[d], bottom)]
            segs += ["C", "L"]
        pts.append(_end(grid, chain[-1], chain[-2], ports, -1))
        segs.append("C")
        if rev:
            pts.reverse()
            segs.reverse()
        out.append((kind, path_d(pts, segs), src, dst))
    return out


def path_d(pts, segs):
    """Curves (C) with vertical tangents between layers, straight lines (L) through bands."""
    parts = [f"M{pts[0][0]:.1f},{pts[0][1]:.1f}"]
    for i in range(1, len(pts)):
        (x1, y1), (x2, y2) = pts[i - 1], pts[i]
        if segs[i - 1] == "C":
            mid = (y1 + y2) / 2
            parts.append(f"C{x1:.1f},{mid:.1f} {x2:.1f},{mid:.1f} {x2:.1f},{y2:.1f}")
        else:
            parts.append(f"L{x2:.1f},{y2:.1f}")
    return " ".join(parts)
