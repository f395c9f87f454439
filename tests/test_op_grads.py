"""Derivative tests generated from the op-info table (float64), on the reference interpreter and
on onnxruntime: VJP and JVP against finite differences in random directions, VJP/JVP duality,
second order (three ways) against finite differences, NotDifferentiableError for ops without a
derivative, and registry completeness (every op has both rules or is NOT_DIFFERENTIABLE)."""

import numpy as np
import pytest
from gradcheck import assert_close, directional, inner
from op_db import all_rows

import graphad as ga
from graphad.interpret import evaluate
from graphad.passes.autodiff import gradients, vjp
from graphad.passes.forward import jvp
from graphad.registry import NOT_DIFFERENTIABLE, all_ops

ROWS = all_rows()
DIFF_ROWS = [r for r in ROWS if r.differentiable and "float64" in r.dtypes]
NONDIFF_ROWS = [r for r in ROWS if not r.differentiable]
BACKENDS = ("interpreter", "onnxruntime")

# Finite differences (five-point, h = 1e-3) are good to ~1e-9 on the smooth, well-scaled
# samples of the table; these bounds leave room for ill-conditioned ops.
FD_RTOL, FD_ATOL = 1e-6, 1e-7
DUAL_RTOL, DUAL_ATOL = 1e-9, 1e-11


def _f64(a):
    a = np.asarray(a)
    return a.astype(np.float64) if a.dtype.kind == "f" else a


class _Case:
    """One sample of one row: the graph with its VJP/JVP (and second-order) nodes, built once
    and evaluated on each backend."""

    def __init__(self, row, sample, seed, dynamic=False):
        rng = np.random.default_rng(seed)
        self.row, self.sample = row, sample
        self.graph = ga.Graph()
        self.feeds, self.args = {}, list(sample.args)
        fed = sample.fed_indices()
        wanted = row.grad_args if row.grad_args is not None else fed
        with self.graph:
            for k, i in enumerate(fed):
                a = _f64(sample.args[i])
                shape = (None,) + a.shape[1:] if dynamic and k == 0 and a.shape else a.shape
                p = ga.placeholder(shape, dtype=a.dtype, name=f"arg{i}")
                self.feeds[p] = a
                self.args[i] = p
            self.xs = [self.args[i] for i in wanted
                       if i in fed and self.args[i].dtype == ga.float64]
            out = row.fn(*self.args, **sample.kwargs)
            outs = list(out) if isinstance(out, (tuple, list)) else [out]
            # Finite differences need float64 outputs (a cast to float16 rounds them away).
            self.outs = [o for o in outs if o.dtype == ga.float64]
            self._directions(rng)
            self._derivatives()
        self._values = {}

    def _directions(self, rng):
        x0 = [self.feeds[x] for x in self.xs]
        y0 = evaluate(self.outs, self.feeds)
        self.u = [rng.standard_normal(a.shape) for a in x0]
        self.v = [rng.standard_normal(a.shape) for a in x0]
        self.w = [rng.standard_normal(np.shape(y)) for y in y0]
        self.scale = max([1.0] + [float(np.max(np.abs(y), initial=0.0)) for y in y0])
        self.u_t = [ga.constant(a, dtype=ga.float64) for a in self.u]
        self.v_t = [ga.constant(a, dtype=ga.float64) for a in self.v]
        self.w_t = [ga.constant(a, dtype=o.dtype) for a, o in zip(self.w, self.outs)]

    def _derivatives(self):
        self.vjp = vjp(self.outs, self.xs, self.w_t)
        self.jvp = jvp(self.outs, self.xs, self.u_t)
        self.second = None
        if self.row.second_order:
            vj = [t for t in self.vjp if t is not None]
            jv = [t for t in self.jvp if t is not None]
            keep_u = [i for i, t in enumerate(self.vjp) if t is not None]
            keep_w = [i for i, t in enumerate(self.jvp) if t is not None]
            us = [self.u_t[i] for i in keep_u]
            ws = [self.w_t[i] for i in keep_w]
            self.second = {
                # D_v <vjp(w), u>: forward over reverse, reverse over reverse; D_v <w, jvp(u)>:
                # reverse over forward. All three equal the second derivative along (u, v).
                "fwd-over-rev": (jvp(vj, self.xs, self.v_t), [self.u[i] for i in keep_u]),
                "rev-over-rev": (vjp(vj, self.xs, us), self.v),
                "rev-over-fwd": (vjp(jv, self.xs, ws), self.v),
            }

    def fetches(self):
        f = {"vjp": self.vjp, "jvp": self.jvp}
        for k, (res, _) in (self.second or {}).items():
            f[k] = res
        return f

    def values(self, backend):
        """{name: list of arrays or None} of every symbolic derivative, on `backend`."""
        if backend not in self._values:
            f = self.fetches()
            flat = [(k, i, t) for k, ts in f.items() for i, t in enumerate(ts) if t is not None]
            tensors = [t for _, _, t in flat]
            if not tensors:
                got = []
            elif backend == "interpreter":
                got = evaluate(tensors, self.feeds)
            else:
                got = ga.Session(self.graph).run(tensors, self.feeds)
            vals = {k: [None] * len(ts) for k, ts in f.items()}
            for (k, i, _), v in zip(flat, got):
                vals[k][i] = v
            self._values[backend] = vals
        return self._values[backend]

    def outputs_at(self, tensors, xs_values):
        """Values of `tensors` with the differentiated inputs moved to `xs_values`."""
        feeds = dict(self.feeds)
        feeds.update(zip(self.xs, xs_values))
        return evaluate(tensors, feeds)

    def x0(self):
        return [self.feeds[x] for x in self.xs]


_CASES = {}
_DYNAMIC_CASES = {}


def _dynamic_cases_of(row):
    """The samples again, with the first fed argument's leading dim unknown (None)."""
    if id(row) not in _DYNAMIC_CASES:
        rng = np.random.default_rng(1234)
        samples = row.sample(rng, np.dtype("float64"))
        _DYNAMIC_CASES[id(row)] = [_Case(row, s, seed=k, dynamic=True) if s.dynamic else None
                                   for k, s in enumerate(samples)]
    return _DYNAMIC_CASES[id(row)]


def _cases_of(row):
    if id(row) not in _CASES:
        rng = np.random.default_rng(1234)
        samples = row.sample(rng, np.dtype("float64"))
        _CASES[id(row)] = [_Case(row, s, seed=k) for k, s in enumerate(samples)]
    return _CASES[id(row)]


def _ids(rows):
    return [r.name for r in rows]


def _label(row, case_no, backend):
    return f"{row.name} sample {case_no} on {backend}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("row", DIFF_ROWS, ids=_ids(DIFF_ROWS))
def test_first_order(row, backend):
    """JVP == FD of the function along u; <w, J u> (FD) == <vjp(w), u>; duality."""
    checked = 0
    for k, case in enumerate(_cases_of(row)):
        if not case.xs or not case.outs:
            continue
        checked += 1
        label = _label(row, k, backend)
        vals = case.values(backend)
        ju_fd = directional(lambda xv, c=case: c.outputs_at(c.outs, xv), case.x0(), case.u)
        for i, (got, want) in enumerate(zip(vals["jvp"], ju_fd)):
            got = np.zeros_like(want) if got is None else got
            assert_close(got, want, rtol=FD_RTOL, atol=FD_ATOL, scale=case.scale,
                         what=f"{label}: JVP of output {i} vs finite differences")
        w_ju = inner(case.w, ju_fd)
        vjp_u = inner(vals["vjp"], case.u)
        assert_close(vjp_u, w_ju, rtol=FD_RTOL, atol=FD_ATOL, scale=case.scale,
                     what=f"{label}: <vjp(w), u> vs <w, J u> by finite differences")
        assert_close(inner(case.w, vals["jvp"]), vjp_u, rtol=DUAL_RTOL, atol=DUAL_ATOL,
                     scale=case.scale, what=f"{label}: duality <w, jvp(u)> vs <vjp(w), u>")
    if not checked:
        pytest.skip(f"{row.name}: no sample with a float64 input and a float64 output")


def _float_casts(nodes):
    return [n for n in nodes if n.op == "cast" and n.inputs[0].dtype.is_floating
            and n.outputs[0].dtype.is_floating]


@pytest.mark.parametrize("row", DIFF_ROWS, ids=_ids(DIFF_ROWS))
def test_derivatives_keep_float64(row):
    """Derivative nodes of a float64 function never compute in a narrower float (a rule that
    builds a float32 constant would silently lose precision: the engine casts back)."""
    for k, case in enumerate(_cases_of(row)):
        forward = [n for n in case.graph.nodes if "mode" not in n.tags]
        if _float_casts(forward):
            continue
        narrow = [n for n in case.graph.nodes if "mode" in n.tags and any(
            o.dtype.is_floating and o.dtype != ga.float64 for o in n.outputs)]
        assert not narrow, (f"{row.name} sample {k}: derivative nodes in a narrower float: "
                            + ", ".join(f"{n.name} ({n.op}, grad of {n.tags['grad_of']})"
                                        for n in narrow[:5]))


@pytest.mark.parametrize("row", DIFF_ROWS, ids=_ids(DIFF_ROWS))
def test_first_order_unknown_leading_dim(row):
    """With the first input's leading dim unknown, onnxruntime gives the same VJP and JVP as
    with static shapes (rules must not rely on static dims)."""
    for k, (case, dyn) in enumerate(zip(_cases_of(row), _dynamic_cases_of(row))):
        if dyn is None or not case.xs or not case.outs:
            continue
        static, dynamic = case.values("onnxruntime"), dyn.values("onnxruntime")
        for name in ("vjp", "jvp"):
            for i, (a, b) in enumerate(zip(static[name], dynamic[name])):
                if a is None or b is None:
                    assert a is None and b is None, (row.name, k, name, i, a, b)
                    continue
                assert_close(b, a, rtol=1e-9, atol=1e-12, scale=case.scale,
                             what=f"{row.name} sample {k}: {name} {i}, unknown vs static dims")


SECOND_ROWS = [r for r in DIFF_ROWS if r.second_order]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("row", SECOND_ROWS, ids=_ids(SECOND_ROWS))
def test_second_order(row, backend):
    """D_v <w, J u> by finite differences of the JVP graph == fwd-over-rev, rev-over-rev and
    rev-over-fwd symbolic second derivatives."""
    for k, case in enumerate(_cases_of(row)):
        if not case.xs or not case.outs:
            continue
        label = _label(row, k, backend)
        jv = [t for t in case.jvp if t is not None]
        ws = [w for w, t in zip(case.w, case.jvp) if t is not None]
        if not jv:
            continue

        def s_of(xv, jv=jv, ws=ws, case=case):
            return [np.asarray(inner(ws, case.outputs_at(jv, xv)))]

        (want,) = directional(s_of, case.x0(), case.v)
        vals = case.values(backend)
        for name, (_, dirs) in case.second.items():
            got = inner(vals[name], dirs)
            assert_close(got, want, rtol=FD_RTOL * 10, atol=FD_ATOL * 10, scale=case.scale,
                         what=f"{label}: second derivative ({name}) vs finite differences")


@pytest.mark.parametrize("row", NONDIFF_ROWS, ids=_ids(NONDIFF_ROWS))
def test_not_differentiable_raises(row):
    """A gradient asked only through an op without a derivative raises NotDifferentiableError."""
    dt = next((d for d in row.dtypes if np.dtype(d).kind == "f"), None)
    if dt is None:
        pytest.skip(f"{row.name}: no floating dtype, so no derivative to ask for")
    rng = np.random.default_rng(0)
    for sample in row.sample(rng, np.dtype(dt)):
        g = ga.Graph()
        with g:
            args = list(sample.args)
            xs, fed = [], []
            for i in sample.fed_indices():
                a = np.asarray(sample.args[i])
                args[i] = ga.placeholder(a.shape, dtype=a.dtype, name=f"arg{i}")
                if a.dtype.kind == "f":
                    xs.append(args[i])
                    fed.append(i)
            if not xs:
                continue
            out = row.fn(*args, **sample.kwargs)
            outs = list(out) if isinstance(out, (tuple, list)) else [out]
            outs = [ga.cast(o, dt) for o in outs]
            blockers = {n.op for n in g.nodes if n.inputs and n.opdef.vjp is NOT_DIFFERENTIABLE}
            ones = [ga.constant(np.ones(x.shape), dtype=x.dtype) for x in xs]
            if not blockers:
                # A row of an op with a zero derivative (stop_gradient, a cast to an integer):
                # no error, and zeros.
                grads = gradients(outs, xs)
                tans = [t for t in jvp(outs, xs, ones) if t is not None]
                for v in evaluate(grads + tans, dict(zip(xs, (sample.args[i] for i in fed)))):
                    np.testing.assert_array_equal(v, np.zeros_like(v))
                continue
            with pytest.raises(ga.NotDifferentiableError) as err:
                gradients(outs, xs)
            assert any(f"op {b!r}" in str(err.value) for b in blockers), str(err.value)
            with pytest.raises(ga.NotDifferentiableError):
                jvp(outs, xs, ones)


def test_registry_complete():
    """Every registered op has a VJP and a JVP rule, or says NOT_DIFFERENTIABLE explicitly."""
    import graphad.passes.autodiff  # noqa: F401  (registers the engine's own ops)

    missing = []
    for name, opdef in sorted(all_ops().items()):
        for rule in ("vjp", "jvp"):
            r = getattr(opdef, rule)
            if not (r is NOT_DIFFERENTIABLE or callable(r)):
                missing.append(f"{name}.{rule}")
    assert not missing, "ops without a derivative rule (and not NOT_DIFFERENTIABLE): " + ", ".join(
        missing)


def test_shape_only_inputs_are_no_derivative_path():
    """sum's VJP reads x only for its shape (unreduce's `like`): that is no path to x, so the
    Hessian of sum(floor(a) * a) is refused like the scalar case, not silently zero."""
    f = lambda a: ga.sum(ga.floor(a) * a)  # noqa: E731
    for arg in (np.array([0.3, 1.7], np.float32), np.float32(1.5)):
        with pytest.raises(ga.NotDifferentiableError, match="floor"):
            ga.hessian(f)(arg)
    np.testing.assert_allclose(ga.grad(f)(np.array([0.3, 1.7], np.float32)), [0.0, 1.0])
