"""Sparse Jacobians (issue 9): the tridiagonal Jacobian of a 1-D finite-difference residual.

    python -m benchmarks.sparse_bench [--n 10000] [--dense-sizes 200 400 800] [--quick]

graphad's compressed jacfwd (3 colors: 3 JVPs in one graph) at n, against graphad's dense jacfwd
(n JVPs in one graph: measured at sizes it can handle, extrapolated to n with the power law of
the two largest sizes), JAX's dense jit(jacfwd) and, as the fair peer of the compressed
evaluation, JAX with the same 3 seeds by hand (jit(vmap(jvp))). Not a test: it prints a table.
"""

import argparse
import math
import sys

import numpy as np

from . import harness


def residual(lib):
    """-u'' + u^3 - 1 on the interior points of a uniform grid (h = 1 / n)."""

    def f(u):
        h2 = 1.0 / (u.shape[0] - 1) ** 2
        return -(u[2:] - 2.0 * u[1:-1] + u[:-2]) / h2 + u[1:-1] ** 3 - 1.0

    return f


def _grid(n):
    x = np.linspace(0.0, 1.0, n, dtype=np.float32)
    return (np.sin(3.0 * x) + 0.1).astype(np.float32)


def graphad_sparse(n, budget):
    import graphad as ga  # noqa: PLC0415
    from graphad.sparse import coloring, jacobian_sparsity  # noqa: PLC0415

    f = residual(ga)
    u = _grid(n)
    jacobian_sparsity(f, _grid(8))  # first-use imports are not detection time
    pattern, t_detect = harness.timed(lambda: jacobian_sparsity(f, u))
    _, t_color = harness.timed(lambda: coloring(pattern, "column"))
    jac = ga.jacfwd(f, sparsity="auto")
    out, t_build = harness.timed(lambda: jac(u))
    t_call, calls = harness.median_time(lambda: jac(u), budget)
    return {"detect_s": t_detect, "color_s": t_color, "build_s": t_build, "call_s": t_call,
            "calls": calls, "ncolors": out.ncolors, "nnz": out.nnz, "result": out}


def graphad_dense(n, budget):
    import graphad as ga  # noqa: PLC0415

    jac = ga.jacfwd(residual(ga))
    u = _grid(n)
    out, t_build = harness.timed(lambda: jac(u))
    t_call, calls = harness.median_time(lambda: jac(u), budget)
    return {"build_s": t_build, "call_s": t_call, "calls": calls, "result": out}


def jax_dense(n, budget):
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    jac = jax.jit(jax.jacfwd(residual(jnp)))
    u = jnp.asarray(_grid(n))
    out, t_build = harness.timed(lambda: jac(u).block_until_ready())
    t_call, calls = harness.median_time(lambda: jac(u).block_until_ready(), budget)
    return {"build_s": t_build, "call_s": t_call, "calls": calls, "result": out}


def jax_compressed(n, budget, colors):
    """JAX has no sparse Jacobians; this is the same compression written by hand."""
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    f = residual(jnp)
    seeds = jnp.asarray(np.eye(int(colors.max()) + 1, dtype=np.float32)[colors].T)
    comp = jax.jit(lambda u: jax.vmap(lambda s: jax.jvp(f, (u,), (s,))[1])(seeds))
    u = jnp.asarray(_grid(n))
    out, t_build = harness.timed(lambda: comp(u).block_until_ready())
    t_call, calls = harness.median_time(lambda: comp(u).block_until_ready(), budget)
    return {"build_s": t_build, "call_s": t_call, "calls": calls, "result": out}


def _extrapolate(points, n):
    """Power law through the two largest (size, seconds) points, evaluated at n."""
    (n1, t1), (n2, t2) = sorted(points)[-2:]
    k = math.log(t2 / t1) / math.log(n2 / n1)
    return t2 * (n / n2) ** k, k


def _row(name, r, ref=None):
    ratio = "" if ref is None else f"{r['call_s'] / ref:9.2f}x"
    return (f"  {name:<44} build {r['build_s']:9.3f} s   call {r['call_s'] * 1e3:12.3f} ms "
            f"{ratio}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--dense-sizes", type=int, nargs="+", default=[200, 400, 800])
    ap.add_argument("--quick", action="store_true", help="short timing budget")
    args = ap.parse_args(argv)
    budget = harness.QUICK if args.quick else harness.FULL
    n = args.n
    print(f"# sparse Jacobian benchmark, n = {n}: {harness.env_summary()}")

    sp = graphad_sparse(n, budget)
    print(f"graphad sparsity detection {sp['detect_s'] * 1e3:.1f} ms, coloring "
          f"{sp['color_s'] * 1e3:.1f} ms: {sp['ncolors']} colors, nnz {sp['nnz']}")
    assert sp["ncolors"] == 3, sp["ncolors"]
    print(_row(f"graphad jacfwd(sparsity='auto') n={n}", sp))

    dense = []
    for m in args.dense_sizes:
        r = graphad_dense(m, budget)
        small = graphad_sparse(m, harness.TINY)["result"].toarray()
        assert np.allclose(small, r["result"], rtol=1e-5, atol=1e-3 * np.abs(small).max())
        dense.append((m, r))
        print(_row(f"graphad dense jacfwd n={m}", r))
    t_call, k_call = _extrapolate([(m, r["call_s"]) for m, r in dense], n)
    t_build, k_build = _extrapolate([(m, r["build_s"]) for m, r in dense], n)
    m_big, r_big = max(dense, key=lambda p: p[0])
    t_quad = r_big["call_s"] * (n / m_big) ** 2  # n JVPs of O(n) each: the asymptotic n^2
    t_call = max(t_call, t_quad)
    print(f"  graphad dense jacfwd n={n} (extrapolated)       build ~{t_build:9.1f} s   call "
          f"~{t_call * 1e3:12.1f} ms   (fit: call ~ n^{k_call:.2f}, build ~ n^{k_build:.2f}; "
          f"call taken as the larger of the fit and n^2 from n={m_big})")
    print(f"  => sparse / dense (extrapolated) at n={n}: call {sp['call_s'] / t_call:.2e}x, "
          f"build {sp['build_s'] / t_build:.2e}x")

    if harness.installed("jax"):
        harness.preimport("jax")
        colors = sp["result"]  # check the values against JAX on the nonzeros
        jd = jax_dense(n, budget)
        rows = np.repeat(np.arange(n - 2), np.diff(colors.indptr))
        ref = np.asarray(jd["result"])[rows, colors.indices]
        assert np.allclose(colors.data, ref, rtol=1e-4, atol=1e-3 * np.abs(ref).max())
        print(_row(f"jax jit(jacfwd) dense n={n}", jd))
        jc = jax_compressed(n, budget, coloring_of(n))
        print(_row(f"jax jit(vmap(jvp)) same 3 seeds n={n}", jc))
        print(f"  => graphad sparse / jax dense: {sp['call_s'] / jd['call_s']:.3f}x; "
              f"graphad sparse / jax compressed: {sp['call_s'] / jc['call_s']:.2f}x")
    else:
        print("  jax not installed: skipped")
    return 0


def coloring_of(n):
    import graphad as ga  # noqa: PLC0415
    from graphad.sparse import coloring, jacobian_sparsity  # noqa: PLC0415

    return coloring(jacobian_sparsity(residual(ga), _grid(n)), "column").colors


if __name__ == "__main__":
    sys.exit(main())
