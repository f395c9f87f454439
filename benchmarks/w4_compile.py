"""W4 compile: cold time from a Python function to the first result of its gradient, for
`x = sin(x)*1.01 + 0.1` repeated 500, 5,000 and 50,000 times on a vector of 8.

Each measurement runs in a fresh child process (`python -m benchmarks.w4_compile --child ...`)
with a time limit, after a tiny warm-up compile there (imports are not counted). graphad's time is
split into phases by wrapping its internal steps; JAX runs `jit(grad(f)).lower(x).compile()` after
`jax.clear_caches()`, then the call.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ID, TITLE = "W4", "compile"
SYSTEMS = ("graphad", "jax")


def plan(mode):
    """[(layers, repetitions)] and the child time limit in seconds."""
    if mode == "tiny":
        return [(20, 1)], 120
    if mode == "quick":
        return [(500, 1), (5000, 1)], 300
    return [(500, 3), (5000, 1), (50000, 1)], 600


# ---------------------------------------------------------------------------------------------
# children


class _Phases:
    """Wraps functions to add their (outermost) durations into `self.t[label]`."""

    def __init__(self):
        self.t = {}

    def wrap(self, module, attr, label):
        fn = getattr(module, attr)
        depth = [0]

        def wrapped(*a, **k):
            depth[0] += 1
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    self.t[label] = self.t.get(label, 0.0) + time.perf_counter() - t0

        setattr(module, attr, wrapped)


def _graphad_child(layers, reps):
    import graphad as ga  # noqa: PLC0415
    import graphad.passes.autodiff as autodiff  # noqa: PLC0415
    import graphad.passes.manager as manager  # noqa: PLC0415
    import graphad.session as session  # noqa: PLC0415
    import graphad.tracing as tracing  # noqa: PLC0415

    def make(n):
        def f(x):
            for _ in range(n):
                x = ga.sin(x) * 1.01 + 0.1
            return ga.sum(x)

        return f

    x = np.linspace(-1, 1, 8).astype(np.float32)
    ga.jit(ga.grad(make(2)))(x)  # imports and first-use caches
    phases = _Phases()
    phases.wrap(tracing.Transformed, "_trace", "trace (incl. differentiate)")
    phases.wrap(autodiff, "_reverse", "differentiate")
    phases.wrap(manager, "optimize_for_session", "optimize")
    phases.wrap(session, "lower", "lower to ONNX")
    phases.wrap(session, "make_inference_session", "onnxruntime session")
    for attr, label in (("schedule_early", "re-order nodes"), ("auto_threads", "thread choice")):
        if hasattr(session, attr):
            phases.wrap(session, attr, label)
    phases.wrap(session.Session, "_execute", "first run")
    times = []
    for _ in range(reps):
        f = make(layers)
        t0 = time.perf_counter()
        np.asarray(ga.jit(ga.grad(f))(x))
        times.append(time.perf_counter() - t0)
    return times, {k: v / reps for k, v in phases.t.items()}


def _jax_child(layers, reps):
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    def make(n):
        def f(x):
            for _ in range(n):
                x = jnp.sin(x) * 1.01 + 0.1
            return jnp.sum(x)

        return f

    x = np.linspace(-1, 1, 8).astype(np.float32)
    jax.jit(jax.grad(make(2)))(x).block_until_ready()
    times, phases = [], {"trace+lower": 0.0, "XLA compile": 0.0}
    for _ in range(reps):
        jax.clear_caches()
        f = make(layers)
        t0 = time.perf_counter()
        lowered = jax.jit(jax.grad(f)).lower(x)
        t1 = time.perf_counter()
        compiled = lowered.compile()
        t2 = time.perf_counter()
        compiled(x).block_until_ready()
        times.append(time.perf_counter() - t0)
        phases["trace+lower"] += (t1 - t0) / reps
        phases["XLA compile"] += (t2 - t1) / reps
    return times, phases


def child_main(system, layers, reps):
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))  # the default: no raising it
    from .harness import peak_mib, rss_mib  # noqa: PLC0415

    base = rss_mib()  # VmHWM, not ru_maxrss: the latter is inherited from the parent over exec
    fn = {"graphad": _graphad_child, "jax": _jax_child}[system]
    times, phases = fn(layers, reps)
    peak = peak_mib()
    print("RESULT " + json.dumps({"times": times, "phases": phases, "peak_rss_mib": peak,
                                  "rss_after_imports_mib": base}))


# ---------------------------------------------------------------------------------------------
# parent


def _rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def memory_cap_mib():
    """A child is stopped above this RSS: a third of the machine's memory (JAX at 50,000 layers
    grows past 12 GiB; the machine is shared)."""
    try:
        with open("/proc/meminfo") as f:
            total = int(f.readline().split()[1]) / 1024
        return total / 3
    except (OSError, ValueError, IndexError):
        return 8192.0


def measure(system, layers, reps, limit):
    """Run one child under a time and memory cap; returns its result dict or {"error": ...}."""
    cmd = [sys.executable, "-m", "benchmarks.w4_compile", "--child", system, str(layers),
           str(reps)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cap = memory_cap_mib()
    t0 = time.perf_counter()
    # files, not pipes: a chatty child must never block on a full pipe while we poll it
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        with subprocess.Popen(cmd, stdout=out, stderr=err, text=True, cwd=root, env=env) as p:
            while p.poll() is None:
                rss = _rss_mib(p.pid)
                why = (f"did not finish within {limit} s" if time.perf_counter() - t0 > limit
                       else f"stopped at {rss:.0f} MiB RSS (cap {cap:.0f} MiB)"
                       if rss is not None and rss > cap else None)
                if why:
                    p.kill()
                    p.wait()
                    return {"error": why}
                time.sleep(0.2)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            out = json.loads(line[7:])
            out["median_s"] = float(np.median(out["times"]))
            out["wall_s"] = time.perf_counter() - t0
            return out
    tail = (stderr or stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail)[-300:] or f"exit code {p.returncode}"}


def run(mode, budget, peers):
    from . import harness  # noqa: PLC0415

    steps, limit = plan(mode)
    res = {"id": ID, "title": TITLE, "config": {"layers": [n for n, _ in steps]},
           "sizes": {}, "rows": [], "skipped": {}}
    for system in SYSTEMS:
        if system not in peers:
            continue
        if not harness.installed(system):
            res["skipped"][system] = "not installed"
            continue
        for layers, reps in steps:
            r = measure(system, layers, reps, limit)
            res["sizes"].setdefault(str(layers), {})[system] = r
            res["rows"].append(_row(system, layers, r))
    _summarise(res, steps)
    return res


def _row(system, layers, r):
    from .report import fmt_time  # noqa: PLC0415

    if "error" in r:
        return f"{system:8s} {layers:>6d} layers: ERROR {r['error']}"
    phases = ", ".join(f"{k} {fmt_time(v)}" for k, v in r["phases"].items())
    return (f"{system:8s} {layers:>6d} layers: {fmt_time(r['median_s']):>9s} to first result "
            f"(n={len(r['times'])}; peak RSS {r['peak_rss_mib']:.0f} MiB; {phases})")


def _summarise(res, steps):
    sizes = res["sizes"]
    lines, ratios = [], {}
    for layers, _ in steps:
        row = sizes.get(str(layers), {})
        gd, jx = row.get("graphad", {}), row.get("jax", {})
        if "median_s" in gd and "median_s" in jx:
            ratios[layers] = gd["median_s"] / jx["median_s"]
            lines.append(f"ratio graphad/jax at {layers} layers: {ratios[layers]:.2f}")
    gd_times = [(n, sizes.get(str(n), {}).get("graphad", {}).get("median_s")) for n, _ in steps]
    gd_times = [(n, t) for n, t in gd_times if t]
    if len(gd_times) > 1:
        (n0, t0), (n1, t1) = gd_times[0], gd_times[-1]
        lines.append(f"graphad growth {n0} -> {n1} layers: x{t1 / t0:.1f} time for x{n1 / n0:.0f}"
                     f" layers ({t1 / n1 * 1e6:.0f} µs/layer at {n1})")
    res["rows"].extend(lines)
    res["ratios"] = {str(k): v for k, v in ratios.items()}
    first = steps[0][0]
    if first in ratios:
        res["target_text"] = f"{ratios[first]:.2f} vs jax at {first} layers"
        res["target_met"] = ratios[first] <= 0.5
    big = str(max(n for n, _ in steps))
    if "error" in sizes.get(big, {}).get("graphad", {}):
        res["target_met"] = False
        res["target_text"] = res.get("target_text", "") + f"; {big} layers failed"


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        print(__doc__)
