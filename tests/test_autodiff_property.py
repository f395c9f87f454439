"""Property tests (hypothesis) for the derivative transforms on random small float64 programs.

A program is a few steps over the values x, y (2, 3) and a bias b (3,): smooth elementwise
unary/binary ops (log/sqrt/pow only on guarded positive arguments), broadcasting against
reductions (sum, mean, max, logsumexp over an axis) and against b, matmul, reshape, transpose,
slicing, concat, stack, softmax/log_softmax and `where` with a comparison. Every derivative is
built in graph mode by the public transforms and checked on the numpy interpreter and on
onnxruntime (a Session, which also runs the optimisation pipeline):

- first order: `jvp`, `vjp`, `grad` and `gradients` against five-point finite differences of the
  program in a random direction, and the duality <w, J u> == <J^T w, u>;
- second order: `hvp` and grad-of-grad of a scalar (H u as the gradient of <grad f, u>) against
  five-point differences of the gradient, plus the symmetry <H u, v> == <H v, u>.

Settings are derandomized so a CI run is reproducible.
"""

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import graphad as ga
from graphad.interpret import evaluate

SHAPE = (2, 3)
NAMES = ("x", "y", "b")
SHAPES = {"x": SHAPE, "y": SHAPE, "b": (3,)}
W3 = np.array([[0.5, -0.3, 0.2], [0.1, 0.4, -0.6], [-0.2, 0.3, 0.7]])
RTOL, ATOL = 1e-5, 1e-6  # finite differences (five-point, h = 1e-3) vs AD
EXACT = 1e-10  # AD vs AD (duality, symmetry, grad-of-grad vs hvp)


def _pos(t):  # a smooth, strictly positive argument for log / sqrt / pow / rsqrt
    return 1.0 + t * t


UNARY = {
    "sin": ga.sin, "cos": ga.cos, "tanh": ga.tanh, "sigmoid": ga.sigmoid, "erf": ga.erf,
    "arctan": ga.arctan, "softplus": ga.softplus, "cube": lambda t: 0.5 * t ** 3,
    "exp_tanh": lambda t: ga.exp(ga.tanh(t)), "log_softplus": lambda t: ga.log(ga.softplus(t)),
    "sqrt": lambda t: ga.sqrt(_pos(t)), "rsqrt": lambda t: ga.rsqrt(_pos(t)),
    "log1p_sq": lambda t: ga.log1p(t * t), "expm1_tanh": lambda t: ga.expm1(ga.tanh(t)),
    "recip": lambda t: ga.reciprocal(_pos(t)), "cosh_tanh": lambda t: ga.cosh(ga.tanh(t)),
    "softmax0": lambda t: ga.softmax(t, axis=0), "softmax1": lambda t: ga.softmax(t, axis=-1),
    "log_softmax": lambda t: ga.log_softmax(t, axis=1),
    "lse_center": lambda t: t - ga.logsumexp(t, axis=0, keepdims=True),
    "mean_center": lambda t: t - ga.mean(t, axis=1, keepdims=True),
    "matmul_w": lambda t: t @ ga.constant(W3),
    "gram": lambda t: 0.3 * (t @ ga.transpose(t)) @ t,
    "reshape_t": lambda t: ga.reshape(ga.transpose(ga.reshape(t, (3, 2))), SHAPE),
    "transpose_r": lambda t: ga.reshape(ga.transpose(t), SHAPE),
    "roll": lambda t: ga.concat([t[:, 1:], t[:, :1]], axis=1),
    "flip_rows": lambda t: ga.concat([t[1:] * 2.0, t[:1]], axis=0),
    "tile_row": lambda t: ga.tile(t[:1] * t[1:], (2, 1)),
    "prod_row": lambda t: t * ga.prod(ga.tanh(t), axis=1, keepdims=True),
    "where0": lambda t: ga.where(t > 0.0, ga.sin(t), t - t * t),  # C1 at 0 (both slopes 1)
}
BINARY = {
    "add": ga.add, "sub": ga.subtract, "mul": ga.multiply, "max": ga.maximum,
    "min": ga.minimum, "div": lambda a, c: a / _pos(c),
    "pow": lambda a, c: _pos(a) ** ga.tanh(c), "hypot": lambda a, c: ga.sqrt(a * a + _pos(c)),
    "where": lambda a, c: ga.where(a > c, a * c, 0.5 * c),
    "stack_sum": lambda a, c: ga.sum(ga.stack([a, 2.0 * c], axis=0), axis=0),
    "concat_mix": lambda a, c: ga.concat([a[:, :2], c[:, 2:] * a[:, 2:]], axis=1),
    "matmul": lambda a, c: 0.3 * (a @ ga.transpose(c)) @ a,
}
BCAST = ("add", "sub", "mul", "max", "div", "pow", "where")  # a (2, 3) against a (1, 3) etc.
REDUCE = {"sum": ga.sum, "mean": ga.mean, "max": ga.max, "lse": ga.logsumexp}


@st.composite
def programs(draw):
    """A recipe: steps over earlier values by index (0 = x, 1 = y), each value of shape (2, 3)."""
    steps = []
    for k in range(draw(st.integers(1, 6))):
        i, j = (draw(st.integers(0, 1 + k)) for _ in range(2))
        kind = draw(st.sampled_from(["unary", "unary", "binary", "reduce", "bias"]))
        if kind == "unary":
            steps.append(("unary", draw(st.sampled_from(sorted(UNARY))), i))
        elif kind == "binary":
            steps.append(("binary", draw(st.sampled_from(sorted(BINARY))), i, j))
        elif kind == "reduce":  # op(v_i, reduce(v_j, axis)) broadcast back to (2, 3)
            steps.append(("reduce", draw(st.sampled_from(BCAST)), i, j,
                          draw(st.sampled_from(sorted(REDUCE))), draw(st.integers(0, 1)),
                          draw(st.booleans())))
        else:  # op(v_i, b): the (3,) bias broadcast over rows
            steps.append(("bias", draw(st.sampled_from(BCAST)), i))
    return steps


def program_fn(steps):
    """The recipe as a function f(x, y, b) -> (2, 3) tensor."""

    def f(x, y, b):
        vals = [x, y]
        for s in steps:
            if s[0] == "unary":
                vals.append(UNARY[s[1]](vals[s[2]]))
            elif s[0] == "binary":
                vals.append(BINARY[s[1]](vals[s[2]], vals[s[3]]))
            elif s[0] == "reduce":
                _, op, i, j, red, axis, keep = s
                r = REDUCE[red](vals[j], axis=axis, keepdims=keep or axis == 1)
                vals.append(ga.broadcast_to(BINARY[op](vals[i], r), SHAPE))
            else:
                vals.append(ga.broadcast_to(BINARY[s[1]](vals[s[2]], b), SHAPE))
        return vals[-1]

    return f


def scalar_fn(steps):
    f = program_fn(steps)

    def fs(x, y, b):
        out = f(x, y, b)
        return ga.sum(out * ga.sin(out + 0.3))

    return fs


def _vdot(a, b):
    return sum(ga.sum(s * t) for s, t in zip(a, b))


def _rand(rng):
    return {n: rng.standard_normal(SHAPES[n]) for n in NAMES}


def _fd5(fun, point, direction, h):
    at = [fun({n: point[n] + s * h * direction[n] for n in NAMES}) for s in (2, 1, -1, -2)]
    return [(-a + 8 * b - 8 * c + d) / (12 * h) for a, b, c, d in zip(*at)]


def _fd(fun, point, direction, h=1e-3):
    """Five-point derivative of fun(dict of arrays) at `point` along `direction`. A kink of
    max/min/where inside the stencil makes it disagree with the stencil of half the step: such
    an example is rejected (the derivative there is not what differences measure)."""
    want = _fd5(fun, point, direction, h)
    half = _fd5(fun, point, direction, h / 2)
    assume(all(np.allclose(a, b, rtol=RTOL / 10, atol=ATOL / 10) for a, b in zip(want, half)))
    return want


def _close(got, want, rtol=RTOL, atol=ATOL, what=""):
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"{what}[{k}]")


class Case:
    """A graph with placeholders for the primals (x, y, b) and the directions u, v, w."""

    def __init__(self, seed):
        self.graph = ga.Graph()
        with self.graph:
            self.ph = {f"{k}{n}": ga.placeholder(SHAPES[n], ga.float64, name=f"{k}{n}")
                       for k in ("", "u", "v") for n in NAMES}
            self.ph["w"] = ga.placeholder(SHAPE, ga.float64, name="w")
        rng = np.random.default_rng(seed)
        self.point = {n: rng.uniform(-1, 1, SHAPES[n]) for n in NAMES}
        self.dirs = {"u": _rand(rng), "v": _rand(rng), "w": rng.standard_normal(SHAPE)}

    def primals(self, k=""):
        return tuple(self.ph[f"{k}{n}"] for n in NAMES)

    def feeds(self, point=None):
        point = self.point if point is None else point
        feeds = {self.ph[n]: point[n] for n in NAMES}
        feeds.update({self.ph[f"{k}{n}"]: self.dirs[k][n] for k in "uv" for n in NAMES})
        feeds[self.ph["w"]] = self.dirs["w"]
        return feeds

    def at(self, tensors):
        """fun(point) -> values of `tensors` by the interpreter, directions fixed."""
        return lambda point: [np.asarray(a) for a in evaluate(tensors, self.feeds(point))]

    def backends(self, tensors):
        """Values of `tensors` at the base point: interpreter and onnxruntime."""
        ref = evaluate(tensors, self.feeds())
        ort = ga.Session(self.graph).run(tensors, self.feeds())
        return {"interpreter": ref, "onnxruntime": ort}


SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(programs(), st.integers(0, 2**16))
def test_first_derivatives_match_finite_differences(steps, seed):
    with ga.config.x64():
        c = Case(seed)
        f, fs = program_fn(steps), scalar_fn(steps)
        with c.graph:
            out, jv = ga.jvp(f, c.primals(), c.primals("u"))
            out2, vjp_fn = ga.vjp(f, *c.primals())
            ct = vjp_fn(c.ph["w"])
            g = ga.grad(fs, argnums=(0, 1, 2))(*c.primals())
            s = fs(*c.primals())
            gs = ga.gradients(s, list(c.primals()))
            tensors = [out, jv, out2, *ct, *g, *gs, s]
        fd_out = _fd(c.at([out]), c.point, c.dirs["u"])[0]
        fd_s = _fd(c.at([s]), c.point, c.dirs["u"])[0]
        u, w = [c.dirs["u"][n] for n in NAMES], c.dirs["w"]
        for name, vals in c.backends(tensors).items():
            o, j, o2, ct, g, gs = vals[0], vals[1], vals[2], vals[3:6], vals[6:9], vals[9:12]
            for a, want in zip(ct + g + gs, [SHAPES[n] for n in NAMES] * 3):
                assert np.shape(a) == want, name
            _close([o2, j], [o, fd_out], what=f"{name} jvp")
            wju, jtwu = float(np.sum(w * j)), sum(float(np.sum(a * b)) for a, b in zip(ct, u))
            _close([jtwu], [wju], rtol=EXACT, atol=EXACT, what=f"{name} duality")
            _close([jtwu], [float(np.sum(w * fd_out))], what=f"{name} vjp")
            _close([sum(float(np.sum(a * b)) for a, b in zip(g, u))], [fd_s], what=f"{name} grad")
            _close(gs, g, rtol=EXACT, atol=EXACT, what=f"{name} gradients vs grad")


@SETTINGS
@given(programs(), st.integers(0, 2**16))
def test_second_derivatives_match_finite_differences(steps, seed):
    with ga.config.x64():
        c = Case(seed)
        fs = scalar_fn(steps)
        grad = ga.grad(fs, argnums=(0, 1, 2))
        with c.graph:
            g = grad(*c.primals())
            hu = ga.hvp(fs, c.primals(), c.primals("u"))
            hv = ga.hvp(fs, c.primals(), c.primals("v"))
            gg = ga.grad(lambda *p: _vdot(grad(*p), c.primals("u")), argnums=(0, 1, 2))
            ggu = gg(*c.primals())
            tensors = [*hu, *hv, *ggu]
        fd_hu = _fd(c.at(list(g)), c.point, c.dirs["u"])
        u, v = ([d[n] for n in NAMES] for d in (c.dirs["u"], c.dirs["v"]))
        for name, vals in c.backends(tensors).items():
            hu, hv, ggu = vals[0:3], vals[3:6], vals[6:9]
            _close(hu, fd_hu, what=f"{name} hvp")
            _close(ggu, hu, rtol=EXACT, atol=EXACT, what=f"{name} grad-of-grad vs hvp")
            uhv = sum(float(np.sum(a * b)) for a, b in zip(u, hv))
            vhu = sum(float(np.sum(a * b)) for a, b in zip(v, hu))
            _close([uhv], [vhu], rtol=EXACT, atol=EXACT, what=f"{name} symmetry")


def test_programs_cover_the_catalogue_and_are_not_constant():
    """Every op in the catalogue has a nonzero derivative somewhere (no vacuous steps)."""
    with ga.config.x64():
        for table, kind in ((UNARY, "unary"), (BINARY, "binary")):
            for name in table:
                step = (kind, name, 0) if kind == "unary" else (kind, name, 0, 1)
                c = Case(0)
                with c.graph:
                    _, jv = ga.jvp(program_fn([step]), c.primals(), c.primals("u"))
                (val,) = evaluate([jv], c.feeds())
                assert np.abs(val).max() > 1e-3, name
