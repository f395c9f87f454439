"""Index-set algebra for sparsity detection: `Rows` (one sorted set of input indices per tensor
element, stored CSR-like in numpy), the two moves every op rule is written in (gather, reduce)
and the accumulation of second-order index pairs. numpy only (scipy is optional)."""

import numpy as np

__all__ = ["Rows", "Pairs", "apply_steps", "vec_steps", "vec_steps_transposed", "gather", "reduce"]

_INT = np.int64


def gather(src, nin):
    """Step: output element e takes input element src[e] (src[e] < 0: nothing)."""
    return ("g", np.asarray(src, _INT).ravel(), int(nin))


def reduce(dst, nout):
    """Step: input element k goes into output element dst[k] (dst[k] < 0: dropped)."""
    return ("r", np.asarray(dst, _INT).ravel(), int(nout))


def sorted_unique(a):
    """np.unique for int arrays by sort and compare (numpy's hash-based unique is slower)."""
    a = np.sort(a)
    if len(a) < 2:
        return a
    keep = np.empty(len(a), bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def _ranges(starts, lens):
    """Concatenation of arange(s, s + l) for each (s, l), vectorized."""
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, _INT)
    ends = np.cumsum(lens)
    offs = np.repeat(ends - lens, lens)
    return np.arange(total, dtype=_INT) - offs + np.repeat(starts, lens)


class Rows:
    """A boolean sparse matrix as row sets: row e = sorted indices (columns) it depends on."""

    __slots__ = ("indptr", "indices", "ncols")

    def __init__(self, indptr, indices, ncols):
        self.indptr = np.asarray(indptr, _INT)
        self.indices = np.asarray(indices, _INT)
        self.ncols = int(ncols)

    @property
    def nrows(self):
        return len(self.indptr) - 1

    @property
    def nnz(self):
        return len(self.indices)

    def __repr__(self):
        return f"<Rows {self.nrows}x{self.ncols} nnz={self.nnz}>"

    @staticmethod
    def empty(nrows, ncols):
        return Rows(np.zeros(nrows + 1, _INT), np.zeros(0, _INT), ncols)

    @staticmethod
    def identity(n, ncols, offset=0):
        return Rows(np.arange(n + 1, dtype=_INT), np.arange(offset, offset + n, dtype=_INT), ncols)

    @staticmethod
    def from_coo(rows, cols, nrows, ncols):
        """Rows from (row, col) pairs; duplicates are merged."""
        rows, cols = np.asarray(rows, _INT), np.asarray(cols, _INT)
        if len(rows):
            keys = sorted_unique(rows * max(ncols, 1) + cols)
            rows, cols = np.divmod(keys, max(ncols, 1))
        counts = np.bincount(rows, minlength=nrows)
        indptr = np.zeros(nrows + 1, _INT)
        np.cumsum(counts, out=indptr[1:])
        return Rows(indptr, cols, ncols)

    def row_lengths(self):
        return np.diff(self.indptr)

    def row_of_entry(self):
        return np.repeat(np.arange(self.nrows, dtype=_INT), self.row_lengths())

    def gather(self, src):
        """Row e of the result is row src[e] of self (empty where src[e] < 0)."""
        src = np.asarray(src, _INT)
        ok = src >= 0
        safe = np.where(ok, src, 0)
        lens = np.where(ok, self.row_lengths()[safe] if self.nrows else 0, 0)
        indptr = np.zeros(len(src) + 1, _INT)
        np.cumsum(lens, out=indptr[1:])
        idx = _ranges(self.indptr[safe] if self.nrows else np.zeros(len(src), _INT), lens)
        return Rows(indptr, self.indices[idx], self.ncols)

    def reduce(self, dst, nout):
        """Row g of the result is the union of the rows k of self with dst[k] == g."""
        dst = np.asarray(dst, _INT)
        target = dst[self.row_of_entry()]
        keep = target >= 0
        return Rows.from_coo(target[keep], self.indices[keep], nout, self.ncols)

    def union(self, other):
        if other is None or other.nnz == 0:
            return self
        if self.nnz == 0:
            return other
        rows = np.concatenate([self.row_of_entry(), other.row_of_entry()])
        cols = np.concatenate([self.indices, other.indices])
        return Rows.from_coo(rows, cols, self.nrows, self.ncols)

    def all_union(self):
        """The union of all rows as a sorted index array."""
        return sorted_unique(self.indices)

    def equals(self, other):
        return (other is not None and self.nrows == other.nrows
                and np.array_equal(self.indptr, other.indptr)
                and np.array_equal(self.indices, other.indices))

    def rows_block(self, start, stop):
        """Rows start..stop-1 as a new Rows."""
        return self.gather(np.arange(start, stop, dtype=_INT))

    def row_ids(self):
        """An id per row, equal exactly for rows holding the same set (used to skip repeated
        pairs): rows are grouped by a random-weight hash, then checked entry by entry."""
        n, lens = self.nrows, self.row_lengths()
        if n == 0:
            return np.zeros(0, _INT)
        w = np.random.default_rng(12345).integers(1, 2**62, size=max(self.ncols, 1),
                                                   dtype=np.uint64)
        csum = np.concatenate([[np.uint64(0)], np.cumsum(w[self.indices], dtype=np.uint64)])
        h = csum[self.indptr[1:]] - csum[self.indptr[:-1]]  # wraps mod 2**64
        _, first, ids = np.unique(np.stack([h.view(np.int64), lens]), axis=1,
                                  return_index=True, return_inverse=True)
        ids = ids.ravel().astype(_INT)
        rep = first[ids]  # the row each row claims to equal
        q = _ranges(np.zeros(n, _INT), lens)
        owner = self.row_of_entry()
        bad = self.indices[self.indptr[owner] + q] != self.indices[self.indptr[rep[owner]] + q]
        if bad.any():  # a hash collision: those rows keep ids of their own
            rows = np.unique(owner[bad])
            ids[rows] = ids.max() + 1 + np.arange(len(rows))
        return ids

    def to_dense(self):
        out = np.zeros((self.nrows, self.ncols), bool)
        out[self.row_of_entry(), self.indices] = True
        return out

    def to_scipy(self):
        import scipy.sparse as sp  # noqa: PLC0415  (optional dependency)

        data = np.ones(self.nnz, bool)
        return sp.csr_matrix((data, self.indices, self.indptr), shape=(self.nrows, self.ncols))


def apply_steps(rows, steps):
    """Apply gather/reduce steps (in order) to a Rows."""
    for kind, arr, n in steps:
        rows = rows.gather(arr) if kind == "g" else rows.reduce(arr, n)
    return rows


def vec_steps(v, steps):
    """The same steps on a boolean vector (an element is set if any source is set)."""
    for kind, arr, n in steps:
        if kind == "g":
            ok = arr >= 0
            out = np.zeros(len(arr), bool)
            out[ok] = v[arr[ok]]
        else:
            out = np.zeros(n, bool)
            hit = v & (arr >= 0)
            out[arr[hit]] = True
        v = out
    return v


def vec_steps_transposed(v, steps, n_in):
    """Pull a boolean vector back through the steps (in reverse): input element k is set when
    some output element it reaches is set. `n_in` is the size before the first step."""
    sizes = [n_in]
    for kind, arr, n in steps[:-1]:
        sizes.append(len(arr) if kind == "g" else n)
    for (kind, arr, n), size in zip(reversed(steps), reversed(sizes)):
        out = np.zeros(size, bool)
        if kind == "g":
            hit = v & (arr >= 0)
            out[arr[hit]] = True
        else:
            ok = arr >= 0
            out[ok] = v[arr[ok]]
        v = out
    return v


class Pairs:
    """Accumulates the index pairs (i, j) of a symmetric pattern, merged now and then."""

    def __init__(self, n):
        self.n = n
        self._rows, self._cols, self._pending = [], [], 0
        self._keys = np.zeros(0, _INT)

    def add_outer(self, left, right, sel):
        """Add left[e] x right[e] for the elements e with sel[e] (rows of equal Rows shapes)."""
        es = np.nonzero(sel)[0]
        if len(es) == 0 or left.nnz == 0 or right.nnz == 0:
            return
        ll, rl = left.row_lengths()[es], right.row_lengths()[es]
        nz = (ll > 0) & (rl > 0)
        es = es[nz]
        if len(es) == 0:
            return
        lid, rid = left.row_ids()[es], right.row_ids()[es]
        key = lid * (int(rid.max()) + 1) + rid
        _, first = np.unique(key, return_index=True)  # one element per distinct (L, R) pair
        es = es[first]
        ll, rl = left.row_lengths()[es], right.row_lengths()[es]
        counts = ll * rl
        owner = np.repeat(np.arange(len(es), dtype=_INT), counts)
        q = np.arange(int(counts.sum()), dtype=_INT) - np.repeat(np.cumsum(counts) - counts,
                                                                 counts)
        li, ri = np.divmod(q, rl[owner])
        self._add(left.indices[left.indptr[es][owner] + li],
                  right.indices[right.indptr[es][owner] + ri])

    def add_block(self, idx_a, idx_b):
        """Add idx_a x idx_b (two index arrays)."""
        if len(idx_a) and len(idx_b):
            self._add(np.repeat(idx_a, len(idx_b)), np.tile(idx_b, len(idx_a)))

    def _add(self, r, c):
        lo, hi = np.minimum(r, c), np.maximum(r, c)  # symmetric: keep the upper triangle
        self._rows.append(lo)
        self._cols.append(hi)
        self._pending += len(lo)
        if self._pending > 4_000_000:
            self._merge()

    def _merge(self):
        if self._rows:
            keys = np.concatenate([self._keys] + [r * self.n + c for r, c in
                                                  zip(self._rows, self._cols)])
            self._keys = sorted_unique(keys)
        self._rows, self._cols, self._pending = [], [], 0

    def to_rows(self):
        """The symmetric pattern as Rows (n x n)."""
        self._merge()
        r, c = np.divmod(self._keys, max(self.n, 1))
        return Rows.from_coo(np.concatenate([r, c]), np.concatenate([c, r]), self.n, self.n)
