"""Graph colorings of sparsity patterns: column (forward) and row (reverse) partitions into
structurally orthogonal groups, and a star coloring of a symmetric pattern (Hessians) with
direct recovery. Greedy colorings of networkx on the intersection graph (the best of a few
strategies), a greedy star coloring (Gebremedhin, Manne and Pothen, SIAM Review 2005)."""

import numpy as np

from .sparse_rows import Rows, _ranges

__all__ = ["Coloring", "coloring", "as_rows"]

STRATEGIES = ("smallest_last", "connected_sequential_bfs")
# networkx strategies are tried while the intersection graph has at most this many edge slots.
NETWORKX_LIMIT = 100_000
# The star coloring keeps an n x colors count table; above this many cells it gives up.
STAR_COUNTS_LIMIT = 50_000_000
STAR_NNZ_LIMIT = 2_000_000


class Coloring:
    """A partition of the columns (mode "column"), rows ("row") or both ("star") of a pattern.

    `colors[j]` is the color of column (row) j; `ncolors` how many JVPs/VJPs/HVPs evaluate the
    compressed matrix; `mode`; `pattern` (a `Rows`). `seeds()` gives the 0/1 seed matrix
    (n x ncolors).
    """

    def __init__(self, colors, mode, pattern):
        self.colors = np.asarray(colors, np.int64)
        self.ncolors = int(self.colors.max()) + 1 if len(self.colors) else 0
        self.mode = mode
        self.pattern = pattern

    def __repr__(self):
        return f"<Coloring {self.mode}: {len(self.colors)} -> {self.ncolors} colors>"

    def seeds(self):
        s = np.zeros((len(self.colors), self.ncolors), bool)
        s[np.arange(len(self.colors)), self.colors] = True
        return s

    def positions(self):
        """For each nonzero of the pattern (CSR order): (color, index) of the compressed matrix
        entry holding it. Column mode: B[c] = J s_c, entry J[i, j] at (colors[j], i); row
        mode: B[c] = s_c^T J, at (colors[i], j); star: B[c] = H s_c, at (colors[j], i) when
        colors[j] occurs once in row i, else at (colors[i], j)."""
        p = self.pattern
        rows, cols = p.row_of_entry(), p.indices
        if self.mode == "column":
            return self.colors[cols], rows
        if self.mode == "row":
            return self.colors[rows], cols
        key = rows * max(self.ncolors, 1) + self.colors[cols]
        _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        direct = counts[inverse] == 1
        return (np.where(direct, self.colors[cols], self.colors[rows]),
                np.where(direct, rows, cols))

    def check(self):
        """Raise AssertionError unless every nonzero is alone in the compressed entry it is
        read from (direct recovery)."""
        p = self.pattern
        rows, cols = p.row_of_entry(), p.indices
        if self.mode == "row":  # B[c, j] sums the rows of color c in column j
            lines, col_of = cols, self.colors[rows]
        else:  # B[c, i] sums the columns of color c in row i
            lines, col_of = rows, self.colors[cols]
        nc = max(self.ncolors, 1)
        keys, counts = np.unique(lines * nc + col_of, return_counts=True)
        c, r = self.positions()
        found = np.searchsorted(keys, r * nc + c)
        ok = (found < len(keys)) & (keys[np.minimum(found, len(keys) - 1)] == r * nc + c)
        assert ok.all() and (counts[found[ok]] == 1).all(), "a nonzero shares its entry"


def as_rows(pattern):
    """A pattern (scipy.sparse matrix, dense bool array, Rows) as Rows."""
    if isinstance(pattern, Rows):
        return pattern
    if hasattr(pattern, "tocsr") and hasattr(pattern, "nnz"):
        m = pattern.tocsr().copy()
        m.eliminate_zeros()
        m.sort_indices()
        m.sum_duplicates()
        return Rows(m.indptr, m.indices, m.shape[1])
    arr = np.asarray(pattern)
    if arr.ndim != 2:
        raise ValueError(f"a sparsity pattern must be 2-D, got shape {arr.shape}")
    r, c = np.nonzero(arr)
    return Rows.from_coo(r, c, arr.shape[0], arr.shape[1])


def transpose(p):
    return Rows.from_coo(p.indices, p.row_of_entry(), p.ncols, p.nrows)


def _conflict_edges(p):
    """Pairs (j, k), j < k, of columns sharing a row."""
    lens = p.row_lengths()
    counts = lens * lens
    q = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    a, b = np.divmod(q, np.repeat(lens, counts))
    start = np.repeat(p.indptr[:-1], counts)
    u, v = p.indices[start + a], p.indices[start + b]
    keep = u < v
    if not keep.any():
        return np.zeros((0, 2), np.int64)
    key = np.unique(u[keep] * p.ncols + v[keep])
    return np.stack(np.divmod(key, p.ncols), axis=1)


def _first_free(mark, stamp, ncolors):
    """The smallest color c with mark[c] != stamp (colors 0..ncolors are candidates)."""
    free = np.nonzero(mark[:ncolors + 1] != stamp)[0]
    return int(free[0])


def _greedy_columns(p, pt, order):
    """Greedy distance-2 coloring of the columns of p in `order`, straight from the bipartite
    structure (the intersection graph is never built): a column takes the smallest color
    no column sharing a row with it has."""
    n = p.ncols
    colors = np.full(n, -1, np.int64)
    mark = np.full(n + 1, -1, np.int64)
    lens = p.row_lengths()
    top = -1
    for j in order.tolist():
        rows = pt.indices[pt.indptr[j]:pt.indptr[j + 1]]
        if len(rows):
            near = colors[p.indices[_ranges(p.indptr[rows], lens[rows])]]
            mark[near[near >= 0]] = j
        c = _first_free(mark, j, top + 1)
        colors[j] = c
        top = max(top, c)
    return colors


def _networkx_coloring(n, edges, strategy):
    import networkx as nx  # noqa: PLC0415

    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(edges.tolist())
    got = nx.coloring.greedy_color(g, strategy=strategy)
    return np.array([got[j] for j in range(n)], np.int64)


def _band_coloring(p):
    """j mod w, where w is the widest span (last - first column + 1) of a row: valid because
    two columns of one row are less than w apart."""
    lens = p.row_lengths()
    full = lens > 0
    if not full.any():
        return None
    first = p.indices[p.indptr[:-1][full]]
    last = p.indices[p.indptr[1:][full] - 1]
    w = int((last - first).max()) + 1
    return np.arange(p.ncols, dtype=np.int64) % w


def column_coloring(p, strategy="auto"):
    """Colors of the columns of `p` such that no two columns of a color share a row.

    `strategy`: "auto" (the best of greedy in natural and in largest-first order, plus
    networkx's smallest-last and BFS orders while the intersection graph stays small), or
    the name of a networkx greedy_color strategy (the intersection graph is built)."""
    n = p.ncols
    if n == 0:
        return np.zeros(0, np.int64)
    lens = p.row_lengths()
    if p.nnz and lens.max() == n:  # a full row: every column needs its own color
        return np.arange(n, dtype=np.int64)
    if strategy != "auto":
        return _networkx_coloring(n, _conflict_edges(p), strategy)
    bound = int(lens.max()) if p.nnz else 1  # the columns of one row all differ
    band = _band_coloring(p)
    if band is not None and band.max() + 1 <= bound:
        return band  # banded or equal blocks: j mod bandwidth is optimal
    pt = transpose(p)
    weight = np.bincount(p.indices, weights=lens[p.row_of_entry()], minlength=n)
    tries = [lambda: _greedy_columns(p, pt, np.arange(n)),
             lambda: _greedy_columns(p, pt, np.argsort(-weight, kind="stable"))]
    if int((lens * lens).sum()) <= NETWORKX_LIMIT:
        edges = _conflict_edges(p)
        tries += [lambda st=st: _networkx_coloring(n, edges, st) for st in STRATEGIES]
    best = None
    for attempt in tries:
        colors = attempt()
        if best is None or colors.max() < best.max():
            best = colors
        if best.max() + 1 <= bound:  # optimal: stop
            break
    return best


def star_coloring(p, order=None):
    """A star coloring of the symmetric pattern `p` (n x n): a proper coloring of its adjacency
    graph in which every path on four vertices uses at least three colors, so each nonzero
    H[i, j] is recovered directly from row i or row j of H S. Greedy: the color of v avoids
    its neighbours' colors and every color that would close a two-colored path on four
    vertices through v (v at an end, or second). None if the color count table grows too big."""
    n = p.nrows
    ind, ptr = p.indices, p.indptr
    colors = np.full(n, -1, np.int64)
    width = 16
    counts = np.zeros((n, width), np.int32)  # counts[x, c]: colored neighbours of x with color c
    mark = np.full(n + 1, -1, np.int64)
    if order is None:
        order = np.argsort(-p.row_lengths(), kind="stable")
    top = -1
    for v in order.tolist():
        nb = ind[ptr[v]:ptr[v + 1]]
        nb = nb[(nb != v) & (colors[nb] >= 0)]
        _star_forbid(v, nb, ind, ptr, colors, counts, mark)
        c = _first_free(mark, v, top + 1)
        colors[v] = c
        top = max(top, c)
        if c >= width:
            if n * width * 2 > STAR_COUNTS_LIMIT:
                return None
            counts = np.concatenate([counts, np.zeros_like(counts)], axis=1)
            width *= 2
        full = ind[ptr[v]:ptr[v + 1]]
        counts[full[full != v], c] += 1
    return colors


def _star_forbid(v, nb, ind, ptr, colors, counts, mark):
    """Mark (mark[c] = v) the colors v must not take; nb are v's colored neighbours."""
    cw = colors[nb]
    mark[cw] = v
    vals, mult = np.unique(cw, return_counts=True)
    dup = set(vals[mult >= 2].tolist())
    for w, c_w in zip(nb.tolist(), cw.tolist()):
        xs = ind[ptr[w]:ptr[w + 1]]
        xs = xs[(xs != v) & (xs != w)]
        xs = xs[colors[xs] >= 0]
        if not len(xs):
            continue
        if c_w in dup:  # u - v - w - x with color(u) == color(w): x's color is out
            mark[colors[xs]] = v
        else:  # v - w - x - y with color(y) == color(w): x's color is out
            mark[colors[xs[counts[xs, c_w] >= 2]]] = v


def coloring(pattern, mode="column", strategy="auto"):
    """Color a sparsity pattern. `mode`: "column" (forward mode, jacfwd), "row" (reverse mode,
    jacrev) or "star" (symmetric, Hessians: the better of a star coloring and a distance-2
    coloring). `strategy`: a networkx greedy strategy, or "auto" for the best of a few.
    Returns a `Coloring` (`.colors`, `.ncolors`)."""
    p = as_rows(pattern)
    aliases = {"fwd": "column", "forward": "column", "columns": "column", "rev": "row",
               "reverse": "row", "rows": "row", "symmetric": "star", "hessian": "star"}
    mode = aliases.get(mode, mode)
    if mode == "column":
        return Coloring(column_coloring(p, strategy), "column", p)
    if mode == "row":
        return Coloring(column_coloring(transpose(p), strategy), "row", p)
    if mode != "star":
        raise ValueError(f"coloring mode {mode!r} is not one of 'column', 'row', 'star'")
    if p.nrows != p.ncols:
        raise ValueError(f"a star coloring needs a square pattern, got {p.nrows}x{p.ncols}")
    sym = Rows.from_coo(np.concatenate([p.row_of_entry(), p.indices]),
                        np.concatenate([p.indices, p.row_of_entry()]), p.nrows, p.ncols)
    d2 = Coloring(column_coloring(sym, strategy), "star", sym)
    if sym.nnz > STAR_NNZ_LIMIT or sym.nnz == sym.nrows * sym.ncols:
        return d2  # the star pass costs the sum of squared degrees
    colors = star_coloring(sym)
    if colors is None:
        return d2
    star = Coloring(colors, "star", sym)
    return star if star.ncolors < d2.ncolors else d2
