"""Sparsity detection read off the graph: propagate index sets (which inputs each element depends
on) forward through the op rules of sparsity_rules.py and, for Hessians, adjoint flags backward
while collecting the index pairs that meet in nonlinear ops. Nothing is evaluated numerically
except constant subgraphs (gather indices, trip counts, constant factors).

Second order follows the edge-pushing identity  H = sum over nodes v of  adj(v) * J_v^T
(d2 phi_v) J_v: a node contributes set_i x set_j for each pair of its arguments it is nonlinear
in, wherever its output reaches the result through nonzero first derivatives.
"""

import numpy as np

from .graph import ancestors
from .interpret import run_node
from .sparse_rows import (
    Pairs,
    Rows,
    apply_steps,
    vec_steps,
    vec_steps_transposed,
)
from .sparsity_rules import dense_rule, rule_for, size_of

__all__ = ["Analysis", "analyze"]

# A loop with a constant trip count up to this is followed iteration by iteration (exact);
# longer or data-dependent loops iterate their body's sets to a fixpoint (a superset).
UNROLL_LIMIT = 256
# A fixpoint that has not settled after this many rounds is declared dense (still a superset).
FIXPOINT_LIMIT = 64

_UNKNOWN = object()


class Analysis:
    """One sparsity propagation over `ncols` independent input elements."""

    def __init__(self, ncols, second_order=False):
        self.ncols = ncols
        self.second_order = second_order
        self.pairs = Pairs(ncols) if second_order else None
        self._consts = {}

    # -- constants ------------------------------------------------------------------------------
    def const_value(self, t):
        """t's value when it depends on no placeholder or variable (else None)."""
        if t in self._consts:
            v = self._consts[t]
            return None if v is _UNKNOWN else v
        for node in ancestors([t], stop=lambda s: s in self._consts):
            if all(o in self._consts for o in node.outputs):
                continue
            ins = [self._consts.get(s, _UNKNOWN) for s in node.inputs]
            if (node.op in ("placeholder", "variable") or not node.opdef.pure
                    or any(v is _UNKNOWN for v in ins)):
                vals = [_UNKNOWN] * len(node.outputs)
            else:
                try:
                    vals = list(run_node(node, *ins))
                except Exception:  # noqa: BLE001  (a constant we cannot fold is just unknown)
                    vals = [_UNKNOWN] * len(node.outputs)
            self._consts.update(zip(node.outputs, vals))
        v = self._consts.get(t, _UNKNOWN)
        return None if v is _UNKNOWN else v

    # -- forward: index sets ----------------------------------------------------------------------
    def forward(self, roots, env):
        """Fill env {Tensor: Rows or None} for everything `roots` need; env holds the seeds.
        Returns the records the reverse pass replays."""
        records = []
        for node in ancestors(roots, stop=lambda t: t in env):
            if not node.outputs or all(o in env for o in node.outputs):
                continue
            ins = [env.get(t) for t in node.inputs]
            if all(d is None or d.nnz == 0 for d in ins):
                for o in node.outputs:
                    env.setdefault(o, None)
                continue
            if node.op == "loop":
                rec = self._loop_forward(node, ins, env)
            elif node.op == "cond":
                rec = self._cond_forward(node, ins, env)
            else:
                rec = self._node_forward(node, ins, env)
            records.append(rec)
        return records

    def _local(self, node):
        local = rule_for(node)(node, self)
        return dense_rule(node, self) if local is None else local

    def _node_forward(self, node, ins, env):
        local = self._local(node)
        for k, o in enumerate(node.outputs):
            if o in env:
                continue
            acc = None
            if o.dtype.is_floating:
                for i, steps in local.outs[k]:
                    d = ins[i]
                    if d is not None and d.nnz:
                        r = apply_steps(d, steps)
                        acc = r if acc is None else acc.union(r)
            env[o] = acc
        return ("node", node, local, ins)

    # -- reverse: adjoint flags and pairs --------------------------------------------------------
    def reverse(self, records, env, adj, pairs=True):
        """Propagate boolean adjoints {Tensor: bool array} from outputs to inputs; with
        `pairs`, add the second-order pairs of every node to self.pairs."""
        for rec in reversed(records):
            kind, node = rec[0], rec[1]
            outs = [adj.get(o) for o in node.outputs]
            if all(a is None or not a.any() for a in outs):
                continue
            if kind == "loop":
                self._loop_reverse(rec, adj, outs, pairs)
            elif kind == "cond":
                self._cond_reverse(rec, adj, outs, pairs)
            else:
                self._node_reverse(rec, adj, outs, pairs)

    def _node_reverse(self, rec, adj, outs, pairs):
        _, node, local, ins = rec
        if pairs:
            for k, (i, si), (j, sj), sadj in local.inter:
                a, di, dj = outs[k], ins[i], ins[j]
                if a is None or di is None or dj is None or not di.nnz or not dj.nnz:
                    continue
                sel = vec_steps(a, sadj)
                if sel.any():
                    self.pairs.add_outer(apply_steps(di, si), apply_steps(dj, sj), sel)
        for k, terms in enumerate(local.outs):
            if outs[k] is None:
                continue
            for i, steps in terms:
                if ins[i] is not None and ins[i].nnz:
                    t = node.inputs[i]
                    _or_into(adj, t, vec_steps_transposed(outs[k], steps, size_of(t)))

    # -- control flow -----------------------------------------------------------------------------
    def _body_env(self, body, nc, carried, xslices, caps):
        env = {body.inputs[0]: None}
        env.update(zip(body.inputs[1:1 + nc], carried))
        env.update(zip(body.inputs[1 + nc:], xslices))
        env.update(zip(body.captures.values(), caps))
        return env

    def _run_body(self, body, env):
        recs = self.forward(body.outputs, env)
        return recs, [env.get(o) for o in body.outputs]

    def _trip_count(self, node):
        a = node.attrs
        if not a["has_trip"] or a["cond"] is not None:
            return None
        m = self.const_value(node.inputs[0])
        return None if m is None else max(int(m), 0)

    def _loop_forward(self, node, ins, env):
        from .ops.control import split_loop_inputs  # noqa: PLC0415

        _, inits, xs, bcaps, _ = split_loop_inputs(node, ins)
        x_ts = split_loop_inputs(node, node.inputs)[2]
        slice_sizes = [size_of(t) // max(t.shape[0], 1) if t.shape[0] else 0 for t in x_ts]
        trip = self._trip_count(node)
        if trip is not None and trip <= UNROLL_LIMIT:
            rec = self._loop_unrolled(node, inits, xs, bcaps, slice_sizes, trip)
        else:
            rec = self._loop_fixpoint(node, inits, xs, bcaps, slice_sizes)
        for o, d in zip(node.outputs, rec[2]):
            env.setdefault(o, d if o.dtype.is_floating else None)
        return rec

    def _loop_unrolled(self, node, inits, xs, bcaps, sizes, trip):
        a = node.attrs
        body, nc = a["body"], a["n_carried"]
        carried, steps, ys = list(inits), [], [[] for _ in node.outputs[nc:]]
        for i in range(trip):
            idx = trip - 1 - i if a["reverse"] else i
            xsl = [None if d is None else d.rows_block(idx * s, (idx + 1) * s)
                   for d, s in zip(xs, sizes)]
            env = self._body_env(body, nc, carried, xsl, bcaps)
            recs, outs = self._run_body(body, env)
            if self.second_order:  # only the reverse pass replays iterations
                steps.append((env, recs, idx))
            carried = outs[:nc]
            for k, y in enumerate(outs[nc:]):
                ys[k].append((idx, y))
        ys_rows = [_stack_blocks(blocks, o, self.ncols) for blocks, o in
                   zip(ys, node.outputs[nc:])]
        return ("loop", node, carried + ys_rows, ("unrolled", steps, sizes))

    def _loop_fixpoint(self, node, inits, xs, bcaps, sizes):
        a = node.attrs
        body, nc = a["body"], a["n_carried"]
        y_ts = node.outputs[nc:]
        xsl = [None if d is None else d.reduce(np.arange(d.nrows) % s, s) if s else None
               for d, s in zip(xs, sizes)]
        carried = list(inits)
        for _ in range(FIXPOINT_LIMIT):
            env = self._body_env(body, nc, carried, xsl, bcaps)
            recs, outs = self._run_body(body, env)
            new = [_union(c, o) for c, o in zip(carried, outs[:nc])]
            if all(_same(c, n) for c, n in zip(carried, new)):
                break
            carried = new
        else:  # not settled: every carried element may depend on everything seen so far
            seen = [d for d in list(carried) + xsl + list(bcaps) if d is not None]
            every = np.unique(np.concatenate([d.indices for d in seen])) if seen else []
            carried = [_full_rows(size_of(t), every, self.ncols) for t in body.inputs[1:1 + nc]]
            env = self._body_env(body, nc, carried, xsl, bcaps)
            recs, outs = self._run_body(body, env)
        ys = []
        for y, o in zip(outs[nc:], y_ts):
            n, s = size_of(o), (size_of(o) // o.shape[0] if o.shape[0] else 0)
            ys.append(None if y is None or not s else y.gather(np.arange(n) % s))
        return ("loop", node, carried + ys, ("fixpoint", env, recs, sizes))

    def _loop_reverse(self, rec, adj, outs, pairs):
        from .ops.control import split_loop_inputs  # noqa: PLC0415

        _, node, _, data = rec
        a = node.attrs
        body, nc = a["body"], a["n_carried"]
        _, init_ts, x_ts, cap_ts, _ = split_loop_inputs(node, node.inputs)
        cphs, xphs = body.inputs[1:1 + nc], body.inputs[1 + nc:]
        per = [size_of(o) for o in body.outputs[nc:]]  # elements of one y slice
        a_c = [_zeros_or(v, o) for v, o in zip(outs[:nc], node.outputs[:nc])]
        a_y = [_zeros_or(v, o) for v, o in zip(outs[nc:], node.outputs[nc:])]
        a_x = [np.zeros(size_of(t), bool) for t in x_ts]
        a_cap = [np.zeros(size_of(t), bool) for t in cap_ts]
        if data[0] == "unrolled":
            _, steps, sizes = data
            for env, recs, idx in reversed(steps):
                seeds = list(a_c) + [y[idx * p:(idx + 1) * p] for y, p in zip(a_y, per)]
                badj = self._body_reverse(body, recs, env, seeds, pairs)
                a_c = [_get(badj, ph) for ph in cphs]
                for k, (ph, sz) in enumerate(zip(xphs, sizes)):
                    a_x[k][idx * sz:(idx + 1) * sz] |= _get(badj, ph)
                for k, ph in enumerate(body.captures.values()):
                    a_cap[k] |= _get(badj, ph)
        else:
            _, env, recs, sizes = data
            ys = [y.reshape(-1, p).any(axis=0) if p and len(y) else np.zeros(p, bool)
                  for y, p in zip(a_y, per)]
            for _ in range(FIXPOINT_LIMIT):
                badj = self._body_reverse(body, recs, env, a_c + ys, False)
                new = [c | _get(badj, ph) for c, ph in zip(a_c, cphs)]
                if all(np.array_equal(c, n) for c, n in zip(a_c, new)):
                    break
                a_c = new
            else:
                a_c = [np.ones_like(c) for c in a_c]
            badj = self._body_reverse(body, recs, env, a_c + ys, pairs)
            a_c = [c | _get(badj, ph) for c, ph in zip(a_c, cphs)]
            for k, (ph, sz) in enumerate(zip(xphs, sizes)):
                a_x[k] |= np.tile(_get(badj, ph), len(a_x[k]) // sz if sz else 0)
            for k, ph in enumerate(body.captures.values()):
                a_cap[k] |= _get(badj, ph)
        for t, v in zip(list(init_ts) + list(x_ts) + list(cap_ts), a_c + a_x + a_cap):
            _or_into(adj, t, v)

    def _body_reverse(self, body, recs, env, seeds, pairs):
        badj = {}
        for o, v in zip(body.outputs, seeds):
            if v is not None and env.get(o) is not None:
                _or_into(badj, o, v)
        self.reverse(recs, env, badj, pairs)
        return badj

    def _cond_forward(self, node, ins, env):
        n = node.attrs["n_operands"]
        ops, caps = ins[1:1 + n], ins[1 + n:]
        branches, outs = [], [None] * len(node.outputs)
        for key in ("true", "false"):
            br = node.attrs[key]
            k = len(br.captures)
            benv = dict(zip(br.inputs, ops))
            benv.update(zip(br.captures.values(), caps[:k]))
            caps = caps[k:]
            recs, bout = self._run_body(br, benv)
            branches.append((br, benv, recs))
            outs = [_union(a, b) for a, b in zip(outs, bout)]
        for o, d in zip(node.outputs, outs):
            env.setdefault(o, d if o.dtype.is_floating else None)
        return ("cond", node, outs, branches)

    def _cond_reverse(self, rec, adj, outs, pairs):
        _, node, _, branches = rec
        n = node.attrs["n_operands"]
        seeds = [_zeros_or(v, o) for v, o in zip(outs, node.outputs)]
        cap_ts = list(node.inputs[1 + n:])
        for br, benv, recs in branches:
            badj = self._body_reverse(br, recs, benv, seeds, pairs)
            for t, ph in zip(node.inputs[1:1 + n], br.inputs):
                _or_into(adj, t, _get(badj, ph, size_of(t)))
            k = len(br.captures)
            for t, ph in zip(cap_ts[:k], br.captures.values()):
                _or_into(adj, t, _get(badj, ph, size_of(t)))
            cap_ts = cap_ts[k:]


# ---------------------------------------------------------------------------------------------
# Small helpers


def _get(badj, t, n=None):
    v = badj.get(t)
    return np.zeros(size_of(t) if n is None else n, bool) if v is None else v


def _zeros_or(v, t):
    return np.zeros(size_of(t), bool) if v is None else v


def _or_into(adj, t, v):
    if v is None or not v.any():
        return
    old = adj.get(t)
    adj[t] = v.copy() if old is None else (old | v)


def _union(a, b):
    if a is None:
        return b
    return a if b is None else a.union(b)


def _same(a, b):
    if a is None or b is None:
        return (a is None or a.nnz == 0) and (b is None or b.nnz == 0)
    return a.equals(b)


def _full_rows(nrows, cols, ncols):
    cols = np.asarray(cols, np.int64)
    return Rows(np.arange(nrows + 1, dtype=np.int64) * len(cols), np.tile(cols, nrows), ncols)


def _stack_blocks(blocks, out, ncols):
    """The stacked ys of an unrolled loop: block idx holds the rows of iteration idx."""
    n = size_of(out)
    per = n // out.shape[0] if out.shape[0] else 0
    rows, cols = [], []
    for idx, y in blocks:
        if y is not None and y.nnz:
            rows.append(y.row_of_entry() + idx * per)
            cols.append(y.indices)
    if not rows:
        return None
    return Rows.from_coo(np.concatenate(rows), np.concatenate(cols), n, ncols)


# ---------------------------------------------------------------------------------------------
# Entry point


def analyze(xs, ys, second_order=False):
    """Index sets of `ys` (Tensors) in terms of the elements of `xs` (Tensors, columns laid out
    one after the other). Returns (jacobian Rows (sum of ys sizes x n), hessian Rows or None);
    the Hessian is of the sum of all ys (for a scalar y: its Hessian)."""
    sizes = [size_of(x) for x in xs]
    n = int(sum(sizes))
    an = Analysis(n, second_order)
    env, off = {}, 0
    for x, sz in zip(xs, sizes):
        seed = Rows.identity(sz, n, off) if x.dtype.is_floating else None
        env[x] = _union(env.get(x), seed)
        off += sz
    recs = an.forward(ys, env)
    rows, cols, base = [], [], 0
    for y in ys:
        d = env.get(y) if y.dtype.is_floating else None
        if d is not None and d.nnz:
            rows.append(d.row_of_entry() + base)
            cols.append(d.indices)
        base += size_of(y)
    jac = Rows.from_coo(np.concatenate(rows) if rows else np.zeros(0, np.int64),
                        np.concatenate(cols) if cols else np.zeros(0, np.int64), base, n)
    if not second_order:
        return jac, None
    adj = {}
    for y in ys:
        if env.get(y) is not None:
            _or_into(adj, y, np.ones(size_of(y), bool))
    an.reverse(recs, env, adj)
    return jac, an.pairs.to_rows()
