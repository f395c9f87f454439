"""Edge routing for the built-in layout: ports spread along node borders, smooth vertical-tangent
curves between layers and straight runs through the dummy nodes of long edges."""

import math

from .viz_layout import shape_of

PORT_STEP = 14.0


def _flat_width(kind, w, h):
    shape = shape_of(kind)
    if shape == "ellipse":
        return w * 0.55
    if shape in ("stadium", "hexagon"):
        return max(w - h * 0.9, 4.0)
    return max(w - 14.0, 4.0)


def _border_dy(kind, dx, w, h):
    """Vertical distance from the centre to the top/bottom border at horizontal offset dx."""
    if shape_of(kind) == "ellipse":
        rx = w / 2
        return h / 2 * math.sqrt(max(0.0, 1.0 - (dx / rx) ** 2))
    return h / 2


def _ports(grid, v, nbrs):
    """{neighbour: x offset} for the distinct neighbours on one side, left to right."""
    ordered = sorted(set(nbrs), key=lambda u: grid.x[u])
    k = len(ordered)
    if k <= 1:
        return dict.fromkeys(ordered, 0.0)
    kind = grid.vg.nodes[v].kind
    usable = _flat_width(kind, grid.w[v], grid.h[v])
    step = min(PORT_STEP, usable / (k - 1))
    start = -step * (k - 1) / 2
    return {u: start + i * step for i, u in enumerate(ordered)}


def _end(grid, v, nbr, ports, side):
    """Point where an edge meets vertex v (side -1: top border, +1: bottom border)."""
    top, bottom = grid.band[grid.layer[v]]
    if grid.is_dummy(v):
        return grid.x[v], top if side < 0 else bottom
    dx = ports[v][side].get(nbr, 0.0)
    kind = grid.vg.nodes[v].kind
    cy = (top + bottom) / 2
    return grid.x[v] + dx, cy + side * _border_dy(kind, dx, grid.w[v], grid.h[v])


def route_edges(grid):
    """[(kind, svg path d, src id, dst id)] for every edge of the grid's VGraph."""
    ports = {}
    for v in range(grid.n):
        ports[v] = {-1: _ports(grid, v, grid.up[v]), 1: _ports(grid, v, grid.down[v])}
    out = []
    for kind, rev, chain, src, dst in grid.chains:
        pts = [_end(grid, chain[0], chain[1], ports, 1)]
        for i in range(1, len(chain) - 1):
            d = chain[i]
            top, bottom = grid.band[grid.layer[d]]
            pts.append((grid.x[d], top))
            pts.append((grid.x[d], bottom))
        pts.append(_end(grid, chain[-1], chain[-2], ports, -1))
        if rev:
            pts.reverse()
        out.append((kind, path_d(pts), src, dst))
    return out


def path_d(pts):
    """Curves with vertical tangents between layers, straight lines through dummy runs."""
    parts = [f"M{pts[0][0]:.1f},{pts[0][1]:.1f}"]
    for i in range(1, len(pts)):
        (x1, y1), (x2, y2) = pts[i - 1], pts[i]
        if i % 2 == 1:
            mid = (y1 + y2) / 2
            parts.append(f"C{x1:.1f},{mid:.1f} {x2:.1f},{mid:.1f} {x2:.1f},{y2:.1f}")
        else:
            parts.append(f"L{x2:.1f},{y2:.1f}")
    return " ".join(parts)
