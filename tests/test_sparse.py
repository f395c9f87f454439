"""Sparse derivatives (API.md section 3, "Sparse derivatives"): patterns read off the graph are
exact (or a documented superset), colorings are valid, compressed jacfwd/jacrev/hessian equal the
dense ones and run as one graph."""

import numpy as np
import pytest

import graphad as ga
from graphad import sparse
from graphad.coloring import coloring
from graphad.sparse import hessian_sparsity, jacobian_sparsity

sp = pytest.importorskip("scipy.sparse")

RNG = np.random.default_rng(0)


def _dense(p):
    return p.toarray() if hasattr(p, "toarray") else np.asarray(p)


def _jac_nonzeros(f, x, points=2):
    """Union of the structural nonzeros of the dense Jacobian over random points."""
    nz = 0
    for _ in range(points):
        xr = RNG.normal(size=x.shape).astype(x.dtype)
        j = ga.jacfwd(f)(xr)
        nz = nz | (np.abs(np.reshape(j, (-1, x.size))) > 0)
    return nz


def _hess_nonzeros(f, x, points=2):
    nz = 0
    for _ in range(points):
        xr = RNG.normal(size=x.shape).astype(x.dtype)
        nz = nz | (np.abs(np.reshape(ga.hessian(f)(xr), (x.size, x.size))) > 0)
    return nz


def _assert_pattern(f, x, exact=True, hess=False):
    p = _dense(hessian_sparsity(f, x) if hess else jacobian_sparsity(f, x))
    nz = _hess_nonzeros(f, x) if hess else _jac_nonzeros(f, x)
    assert p.dtype == bool and p.shape == nz.shape
    missing = np.argwhere(nz & ~p)
    assert not len(missing), f"pattern misses nonzeros at {missing[:5].tolist()}"
    if exact:
        extra = np.argwhere(p & ~nz)
        assert not len(extra), f"pattern has extra entries at {extra[:5].tolist()}"
    return p


def _assert_values(f, x, modes=("fwd", "rev")):
    dense = np.reshape(ga.jacfwd(f)(x), (-1, x.size))
    for mode in modes:
        fn = ga.jacfwd if mode == "fwd" else ga.jacrev
        j = fn(f, sparsity="auto")(x)
        assert j.shape == dense.shape
        np.testing.assert_allclose(j.toarray(), dense, rtol=1e-5, atol=1e-6)
    return j


# ---------------------------------------------------------------------------------------------
# The acceptance functions


def pde_residual(u):
    """1-D finite differences: -u'' + u^3 - 1 on the interior points (tridiagonal)."""
    h2 = 0.01
    return -(u[2:] - 2.0 * u[1:-1] + u[:-2]) / h2 + u[1:-1] ** 3 - 1.0


def rosenbrock(x):
    return ga.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def test_pde_residual_is_tridiagonal_with_three_colors():
    x = RNG.normal(size=12)
    p = _assert_pattern(pde_residual, x)
    band = np.zeros((10, 12), bool)
    for i in range(10):
        band[i, i:i + 3] = True
    assert (p == band).all()
    j = _assert_values(pde_residual, x)
    assert j.ncolors == 3
    assert ga.jacfwd(pde_residual, sparsity="auto")(x).ncolors == 3


def test_banded_function():
    def banded(x):  # pentadiagonal: row i depends on i-2 .. i+2
        return (x * (ga.pad(x[2:], [(0, 2)]) + ga.pad(x[:-2], [(2, 0)]))
                + ga.sin(ga.pad(x[1:], [(0, 1)])) + ga.cos(ga.pad(x[:-1], [(1, 0)])))

    x = RNG.normal(size=15)
    p = _assert_pattern(banded, x)
    assert (p == (np.abs(np.subtract.outer(np.arange(15), np.arange(15))) <= 2)).all()
    assert ga.jacfwd(banded, sparsity="auto")(x).ncolors == 5
    _assert_values(banded, x)


def test_block_diagonal_function():
    w = RNG.normal(size=(4, 4))

    def blocks(x):  # five independent 4-blocks: a batched matmul, then softmax per block
        b = ga.reshape(x, (5, 4, 1))
        return ga.reshape(ga.softmax(ga.matmul(w, b), axis=1), (-1,))

    x = RNG.normal(size=20)
    p = _assert_pattern(blocks, x)
    assert (p == np.kron(np.eye(5, dtype=bool), np.ones((4, 4), bool))).all()
    assert ga.jacfwd(blocks, sparsity="auto")(x).ncolors == 4
    _assert_values(blocks, x)


def test_rosenbrock_hessian_is_tridiagonal():
    x = RNG.normal(size=10)
    p = _assert_pattern(rosenbrock, x, hess=True)
    assert (p == (np.abs(np.subtract.outer(np.arange(10), np.arange(10))) <= 1)).all()
    h = ga.hessian(rosenbrock, sparsity="auto")(x)
    assert h.ncolors == 3 and h.shape == (10, 10)
    np.testing.assert_allclose(h.toarray(), ga.hessian(rosenbrock)(x), rtol=1e-6)


def test_mlp_layer_is_dense_and_elementwise_layer_is_diagonal():
    w, b = RNG.normal(size=(6, 5)), RNG.normal(size=6)
    x = RNG.normal(size=5)
    p = _assert_pattern(lambda x: ga.tanh(w @ x + b), x)
    assert p.all() and p.shape == (6, 5)
    s = RNG.normal(size=5)
    p = _assert_pattern(lambda x: ga.tanh(s * x + 1.0), x)
    assert (p == np.eye(5, dtype=bool)).all()
    assert ga.jacfwd(lambda x: ga.tanh(s * x + 1.0), sparsity="auto")(x).ncolors == 1
    _assert_values(lambda x: ga.tanh(w @ x + b), x)


def test_mlp_layer_wrt_weights():
    x = RNG.normal(size=4).astype(np.float32)

    def layer(w, b):
        return ga.tanh(w @ x + b)

    w, b = RNG.normal(size=(3, 4)).astype(np.float32), RNG.normal(size=3).astype(np.float32)
    p = _dense(jacobian_sparsity(layer, w, b, argnums=(0, 1)))
    expect = np.zeros((3, 15), bool)
    for i in range(3):
        expect[i, 4 * i:4 * i + 4] = True
        expect[i, 12 + i] = True
    assert (p == expect).all()
    dense = ga.jacfwd(layer, argnums=(0, 1))(w, b)
    dense = np.concatenate([dense[0].reshape(3, -1), dense[1].reshape(3, -1)], axis=1)
    for fn, colors in ((ga.jacfwd, 5), (ga.jacrev, 1)):
        j = fn(layer, argnums=(0, 1), sparsity="auto")(w, b)
        assert j.ncolors == colors
        np.testing.assert_allclose(j.toarray(), dense, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Control flow


def _stencil_step(v):
    return v + 0.1 * ga.pad(v[1:], [(0, 1)]) * v


def test_fori_loop_with_constant_trip_count_is_exact():
    f = lambda x: ga.fori_loop(0, 3, lambda i, v: _stencil_step(v), x)
    x = RNG.normal(size=10)
    p = _assert_pattern(f, x)
    assert max(j - i for i, j in np.argwhere(p)) == 3  # three steps reach three neighbours
    _assert_values(f, x)
    _assert_pattern(lambda x: ga.sum(f(x) ** 2), x, hess=True)


def test_loop_bodies_that_capture_outer_tensors():
    def f(x):
        w = ga.sin(x)
        return ga.fori_loop(0, 2, lambda i, v: v * w[::-2], x[:3] * 1.0 + x[3:])

    x = RNG.normal(size=6)
    _assert_pattern(f, x)
    _assert_pattern(lambda x: ga.sum(f(x)), x, hess=True)
    _assert_values(f, x)


def test_while_loop_is_a_documented_superset():
    """A data-dependent trip count: the union over every number of iterations (fixpoint)."""

    def f(x):
        def body(c):
            t, v = c
            return t + 1.0, _stencil_step(v)

        return ga.while_loop(lambda c: c[0] < 2.0, body, (ga.constant(0.0, dtype=x.dtype), x))[1]

    x = RNG.normal(size=8)
    p = _assert_pattern(f, x, exact=False)
    assert (p == np.triu(np.ones((8, 8), bool))).all()  # any trip count reaches every later one
    _assert_values(f, x)
    h = ga.hessian(lambda x: ga.sum(f(x) ** 2), sparsity="auto")(x)
    np.testing.assert_allclose(h.toarray(), ga.hessian(lambda x: ga.sum(f(x) ** 2))(x),
                               rtol=1e-6, atol=1e-9)


def test_scan_is_exact():
    def f(x):
        def step(c, xi):
            c = c * xi + 1.0
            return c, ga.sin(c)

        c, ys = ga.scan(step, ga.constant(1.0, dtype=x.dtype), x)
        return ga.concat([ys, c[None]], 0)

    x = RNG.normal(size=6)
    p = _assert_pattern(f, x)
    assert (p[:6] == np.tril(np.ones((6, 6), bool))).all()
    _assert_values(f, x)
    _assert_pattern(lambda x: ga.sum(f(x) * x[0]), x, hess=True)


def test_cond_takes_the_union_of_both_branches():
    def f(x):
        return ga.cond(x[0] > 0, lambda v: v * 2.0, lambda v: ga.sin(v[::-1]), x)

    x = RNG.normal(size=5)
    p = _assert_pattern(f, x, exact=False)
    assert (p == (np.eye(5, dtype=bool) | np.eye(5, dtype=bool)[::-1])).all()
    _assert_values(f, x)


# ---------------------------------------------------------------------------------------------
# More op rules


def test_constant_matrix_and_masks_keep_their_zeros():
    n = 8
    lap = np.diag(-2.0 * np.ones(n)) + np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1)
    x = RNG.normal(size=n)
    p = _assert_pattern(lambda x: lap @ x + x**3, x)
    assert p.sum() == 3 * n - 2
    _assert_pattern(lambda x: x @ (lap @ x), x, hess=True)
    even = np.arange(n) % 2 == 0
    _assert_pattern(lambda x: ga.where(even, x, ga.exp(x)[::-1]), x)
    _assert_pattern(lambda x: x * even.astype(np.float64) + ga.floor(x), x)


@pytest.mark.parametrize("name, f", [
    ("gather", lambda x: ga.gather(x, np.array([3, 1, 1, 7])) * x[:4]),
    ("pad_reflect", lambda x: ga.pad(x, [(2, 1)], mode="reflect") * 3.0),
    ("stack_transpose", lambda x: ga.reshape(ga.transpose(ga.stack([x, 2 * x], 1)), (-1,))),
    ("split_concat", lambda x: ga.concat(ga.split(x, 2)[::-1], 0) ** 2),
    ("tile_broadcast", lambda x: ga.reshape(ga.tile(x[:3], 2) + ga.broadcast_to(x[:1], (6,)),
                                            (2, 3))),
    ("reduce_axis", lambda x: ga.sum(ga.reshape(x, (2, 4)) ** 2, axis=0)),
    ("mean_keepdims", lambda x: ga.reshape(x, (4, 2)) - ga.mean(ga.reshape(x, (4, 2)), axis=1,
                                                                 keepdims=True)),
    ("matmul_both", lambda x: ga.reshape(x[:4], (2, 2)) @ ga.reshape(x[4:], (2, 2))),
    ("log_softmax", lambda x: ga.log_softmax(ga.reshape(x, (2, 4)), axis=0)),
    ("expand_squeeze", lambda x: ga.squeeze(ga.expand_dims(x, 0) * 2.0, 0)),
    ("int_index", lambda x: x[2] * x),
])
def test_structural_rules_are_exact(name, f):
    _assert_pattern(f, RNG.normal(size=8))


@pytest.mark.parametrize("name, f, exact", [
    ("cross", lambda x: x[0] * x[1] + ga.sum(ga.sin(x[2:])), True),
    ("logsumexp", lambda x: ga.sum(ga.logsumexp(ga.reshape(x, (3, 2)), axis=1)), True),
    ("softmax", lambda x: ga.sum(ga.softmax(ga.reshape(x, (2, 3)), axis=1)
                                 * ga.reshape(x[::-1], (2, 3))), True),
    ("matmul_bilinear", lambda x: ga.sum(ga.reshape(x[:4], (2, 2)) @ ga.reshape(x[2:], (2, 2))),
     True),
    ("piecewise", lambda x: ga.sum(ga.relu(x) * x[::-1]) + ga.max(ga.abs(x)), True),
    ("divide", lambda x: ga.sum(x[:3] / x[3:]), True),
    ("prod", lambda x: ga.prod(x[:3]) + ga.sum(x[3:] ** 2), False),  # diagonal of prod is 0
])
def test_hessian_rules(name, f, exact):
    _assert_pattern(f, RNG.normal(size=6), exact=exact, hess=True)


def test_gradient_graph_rules_give_the_hessian_pattern():
    """jacobian_sparsity of grad(f) walks the derivative ops (unreduce, scatter_slice, masks)."""
    x = RNG.normal(size=9)
    f = lambda x: ga.sum(ga.softplus(x[1:] * x[:-1])) + ga.max(ga.abs(x))
    pj = _dense(jacobian_sparsity(ga.grad(f), x))
    ph = _assert_pattern(f, x, hess=True)
    assert (pj == ph).all()
    h = ga.jacfwd(ga.grad(f), sparsity="auto")(x)
    np.testing.assert_allclose(h.toarray(), ga.hessian(f)(x), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Coloring


def _random_pattern(seed, n, density, symmetric=False):
    a = sp.random(n, n, density=density, random_state=seed, format="csr").astype(bool)
    return (a + a.T + sp.eye(n, dtype=bool)).tocsr() if symmetric else a


@pytest.mark.parametrize("seed", range(12))
def test_colorings_are_valid(seed):
    n = 5 + 7 * seed
    a = _random_pattern(seed, n, 0.02 + 0.02 * seed)
    for mode in ("column", "row"):
        c = coloring(a, mode)
        c.check()
        lens = np.diff(a.tocsr().indptr if mode == "column" else a.tocsc().indptr)
        assert c.ncolors >= (lens.max() if lens.size else 0)
    s = _random_pattern(seed, n, 0.02 + 0.02 * seed, symmetric=True)
    c = coloring(s, "star")
    c.check()
    assert c.ncolors <= coloring(s, "column").ncolors


def test_star_coloring_beats_distance_two_on_an_arrowhead():
    def arrow(x):
        return x[0] * ga.sum(x[1:] ** 2) + ga.sum(ga.sin(x))

    x = RNG.normal(size=30)
    p = _assert_pattern(arrow, x, hess=True)
    assert coloring(p, "column").ncolors == 30
    assert coloring(p, "star").ncolors == 2
    h = ga.hessian(arrow, sparsity="auto")(x)
    assert h.ncolors == 2
    np.testing.assert_allclose(h.toarray(), ga.hessian(arrow)(x), rtol=1e-6)


def test_coloring_of_a_bad_mode_or_shape():
    with pytest.raises(ValueError, match="mode"):
        coloring(np.eye(3, dtype=bool), "diagonal")
    with pytest.raises(ValueError, match="square"):
        coloring(np.ones((2, 3), bool), "star")
    c = coloring(np.eye(4, dtype=bool), "fwd")
    assert c.mode == "column" and c.ncolors == 1 and c.seeds().shape == (4, 1)


# ---------------------------------------------------------------------------------------------
# The compressed evaluation


def test_given_pattern_and_its_validation():
    x = RNG.normal(size=7)
    band = jacobian_sparsity(pde_residual, x)
    dense = ga.jacfwd(pde_residual)(x)
    for pattern in (band, band.toarray(), np.ones((5, 7), bool)):
        j = ga.jacrev(pde_residual, sparsity=pattern)(x)
        np.testing.assert_allclose(j.toarray(), dense, rtol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        ga.jacfwd(pde_residual, sparsity=np.ones((7, 7), bool))(x)
    with pytest.raises(ValueError, match="auto"):
        ga.jacfwd(pde_residual, sparsity="yes")


def test_one_compiled_graph_per_signature(monkeypatch):
    """All colors' JVPs live in one traced graph: one Session, reused by later calls."""
    x = RNG.normal(size=40).astype(np.float32)
    f = ga.jacfwd(lambda u: pde_residual(u) * 1.0, sparsity="auto")
    sessions = []
    original = ga.Session.__init__
    monkeypatch.setattr(ga.Session, "__init__",
                        lambda self, *a, **k: (sessions.append(1), original(self, *a, **k))[1])
    j = f(x)
    assert len(sessions) == 1 and j.dtype == np.float32 and j.ncolors == 3
    f(x + 1)
    assert len(sessions) == 1 and f._inner.cache_size() == 1


def test_detection_runs_nothing(monkeypatch):
    """The pattern comes from the graph: no session, no derivative engine."""
    from graphad.passes import autodiff, forward

    def boom(*a, **k):
        raise AssertionError("sparsity detection evaluated something")

    monkeypatch.setattr(ga.Session, "run", boom)
    monkeypatch.setattr(forward, "jvp", boom)
    monkeypatch.setattr(autodiff, "vjp", boom)
    monkeypatch.setattr(autodiff, "gradients", boom)
    assert jacobian_sparsity(pde_residual, ga.TensorType((500,), ga.float32)).nnz == 3 * 498
    assert hessian_sparsity(rosenbrock, np.zeros(500)).nnz == 3 * 500 - 2


def test_graph_mode_returns_a_sparse_tensor():
    g = ga.Graph()
    with g:
        u = ga.placeholder((6,), ga.float32, name="u")
        jt = ga.jacfwd(lambda u: u[1:] * u[:-1], sparsity="auto")(u)
        assert isinstance(jt, sparse.SparseTensor) and jt.shape == (5, 6) and jt.nnz == 10
        dense = jt.todense()
        val = ga.Session().run(dense, {u: np.arange(6, dtype=np.float32)})
    expect = ga.jacfwd(lambda u: u[1:] * u[:-1])(np.arange(6, dtype=np.float32))
    np.testing.assert_allclose(val, expect)


def test_has_aux_integer_inputs_and_several_outputs():
    def f(x):
        return (x[1:] * x[:-1], ga.sum(x)), {"n": ga.sum(x * 0.0) + 3.0}

    x = np.arange(5)
    (j, aux) = ga.jacfwd(f, has_aux=True, sparsity="auto")(x)
    assert j.shape == (5, 5) and float(aux["n"]) == 3.0
    expect = np.zeros((5, 5))
    for i in range(4):
        expect[i, i], expect[i, i + 1] = i + 1, i
    expect[4] = 1
    np.testing.assert_allclose(j.toarray(), expect)


def test_hessian_of_several_arguments_and_aux():
    def f(a, b):
        return ga.sum(a * b) + ga.sum(a**3), ga.sum(b)

    a, b = np.ones(3), np.full(3, 2.0)
    h, aux = ga.hessian(f, argnums=(0, 1), has_aux=True, sparsity="auto")(a, b)
    expect = np.block([[6 * np.eye(3), np.eye(3)], [np.eye(3), np.zeros((3, 3))]])
    np.testing.assert_allclose(h.toarray(), expect)
    assert float(aux) == 6.0


def test_without_scipy(monkeypatch):
    monkeypatch.setattr(sparse, "_scipy_sparse", lambda: None)
    x = RNG.normal(size=6)
    p = jacobian_sparsity(pde_residual, x)
    assert isinstance(p, np.ndarray) and p.dtype == bool and p.sum() == 12
    j = ga.jacfwd(pde_residual, sparsity=p)(x)
    assert isinstance(j, sparse.SparseMatrix) and j.nnz == 12 and j.ncolors == 3
    np.testing.assert_allclose(j.toarray(), ga.jacfwd(pde_residual)(x), rtol=1e-6)


def test_large_tridiagonal_needs_three_colors():
    x = np.linspace(0.0, 1.0, 3000)
    j = ga.jacfwd(pde_residual, sparsity="auto")(x)
    assert j.ncolors == 3 and j.shape == (2998, 3000) and j.nnz == 3 * 2998
    sub = ga.jacfwd(pde_residual)(x[:12])
    np.testing.assert_allclose(j.toarray()[:10, :12], sub, rtol=1e-9)


# ---------------------------------------------------------------------------------------------
# Random programs: the pattern never misses a nonzero


def _random_op(op, u, v, k, mat, mask):
    n = mat.shape[0]
    return [
        lambda: ga.sin(u) * v,
        lambda: ga.concat([u[k:], u[:k]], 0) + v,
        lambda: u / (1.0 + v * v),
        lambda: ga.tanh(mat @ u),
        lambda: ga.where(mask, u, ga.exp(v)),
        lambda: ga.sum(u[:k]) * v,
        lambda: ga.softmax(u) + ga.relu(v),
        lambda: ga.gather(u, np.arange(n)[::-1] % (k + 1)) * v,
        lambda: ga.fori_loop(0, 2, lambda i, w: w * ga.concat([w[1:], w[:1]], 0), u),
        lambda: ga.reshape(ga.transpose(ga.reshape(u, (2, n // 2))), (-1,)) ** 2,
        lambda: ga.maximum(u, v) + ga.abs(u * 0.5),
        lambda: ga.pad(u[k:], [(k, 0)]) * ga.cos(v),
    ][op]()


def _random_program(seed, n=6):
    rng = np.random.default_rng(seed)
    steps = [int(rng.integers(0, 12)) for _ in range(6)]
    args = [rng.integers(0, 100, size=3) for _ in range(6)]
    mat = rng.normal(size=(n, n)) * (rng.random((n, n)) < 0.3)
    mask = rng.random(n) < 0.5

    def f(x):
        pool = [x]
        for op, a in zip(steps, args):
            u, v = pool[a[0] % len(pool)], pool[a[1] % len(pool)]
            pool.append(_random_op(op, u, v, int(a[2] % (n - 1)) + 1, mat, mask))
        return pool[-1] + 0.1 * pool[-2]

    return f


@pytest.mark.parametrize("seed", range(12))
def test_random_programs_never_miss_a_nonzero(seed):
    f = _random_program(seed)
    x = RNG.normal(size=6)
    _assert_pattern(f, x, exact=False)
    _assert_pattern(lambda x: ga.sum(f(x) ** 2) + ga.sum(f(x) * x), x, exact=False, hess=True)
    j = ga.jacrev(f, sparsity="auto")(x)
    np.testing.assert_allclose(j.toarray(), ga.jacfwd(f)(x), rtol=1e-5, atol=1e-6)


def test_float64_results_keep_their_precision():
    with ga.config.x64():
        x = RNG.normal(size=7)
        j = ga.jacfwd(pde_residual, sparsity="auto")(x)
        h = ga.hessian(rosenbrock, sparsity="auto")(x)
        assert j.dtype == np.float64 and h.dtype == np.float64
        np.testing.assert_allclose(j.toarray(), ga.jacfwd(pde_residual)(x), rtol=1e-13)
        np.testing.assert_allclose(h.toarray(), ga.hessian(rosenbrock)(x), rtol=1e-13)


def test_compressed_evaluation_is_one_batched_graph(monkeypatch):
    """All colors go through one batched JVP (the per-color copies are only a fallback): the
    compiled model of a tridiagonal Jacobian stays the size of one JVP."""
    import graphad.session as session

    models = []
    real = session.make_inference_session

    def spy(model, *a, **k):
        models.append(model)
        return real(model, *a, **k)

    monkeypatch.setattr(session, "make_inference_session", spy)

    def f(u):
        return -(u[2:] - 2.0 * u[1:-1] + u[:-2]) + u[1:-1] ** 3

    u = np.linspace(0.0, 1.0, 200).astype(np.float32)
    jac = ga.jacfwd(f, sparsity="auto")(u)
    dense = ga.jacfwd(f)(u)
    np.testing.assert_allclose(jac.toarray(), dense, rtol=1e-6, atol=1e-6)
    assert len(models[0].graph.node) <= 12, [n.op_type for n in models[0].graph.node]
