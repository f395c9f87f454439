"""Where graphad's time goes on one workload: Python (cProfile), onnxruntime kernels (its own
profiler, per op type and per node) and the executed graph (node counts before/after
onnxruntime's optimiser). Used to write benchmarks/PROFILE.md.

    python -m benchmarks.profiling W2 [--calls 2000] [--top 25] [--no-cprofile] [--no-ort]
"""

import argparse
import cProfile
import gc
import glob
import json
import os
import pstats
import sys
import tempfile
import time
from collections import defaultdict

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"  # noqa: A001

from .run import workload_modules  # noqa: E402


def _case(mod, mode="full"):
    case = mod.IMPLS["graphad"](mod.config(mode))
    for _ in range(3):
        case.step()
    return case


def _sessions():
    import graphad as ga  # noqa: PLC0415

    return [o for o in gc.get_objects() if isinstance(o, ga.Session)]


def python_profile(mod, calls, top):
    """cProfile of `calls` warm calls; prints the top functions by own time."""
    case = _case(mod)
    t0 = time.perf_counter()
    for _ in range(calls):
        case.step()
    plain = (time.perf_counter() - t0) / calls
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        case.step()
    prof.disable()
    print(f"\n-- cProfile: {calls} calls of the timed step (unprofiled: {plain * 1e6:.1f} µs/call)")
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(top)


def session_factory(prefix=None, config=None):
    """A stand-in for graphad.devices.make_inference_session (CPU only) that turns on
    onnxruntime's profiler (`prefix`) and/or sets session config entries (`config`)."""
    import onnxruntime as ort  # noqa: PLC0415

    from graphad import devices  # noqa: PLC0415

    real = devices.make_inference_session

    def make(model, device, threads, check=True):
        if device != "cpu":
            return real(model, device, threads, check)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
        for k, v in (config or {}).items():
            opts.add_session_config_entry(k, v)
        if prefix:
            opts.enable_profiling = True
            opts.profile_file_prefix = prefix
            opts.optimized_model_filepath = prefix + f"_opt_{id(model)}.onnx"
        data = model if isinstance(model, bytes) else model.SerializeToString()
        return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])

    return make


def ort_profile(mod, calls, top):
    """onnxruntime's profiler over `calls` warm calls: kernel time per op type and per node."""
    import onnx  # noqa: PLC0415

    import graphad.session as gs  # noqa: PLC0415

    tmp = tempfile.mkdtemp(prefix="graphad_prof_")
    real = gs.make_inference_session
    gs.make_inference_session = session_factory(prefix=os.path.join(tmp, "ort"))
    try:
        case = _case(mod)
        t0 = time.perf_counter()
        for _ in range(calls):
            case.step()
        wall = (time.perf_counter() - t0) / calls
    finally:
        gs.make_inference_session = real
    files = []
    for s in _sessions():
        for exe in s._cache.values():
            path = exe.session.end_profiling()
            if path:  # sessions made before the patch have no profile
                files.append((exe, path))
    print(f"\n-- onnxruntime profiler: {calls} calls (+3 warm-up), {wall * 1e6:.1f} µs/call "
          f"with profiling on")
    for exe, path in files:
        opt = glob.glob(os.path.join(tmp, f"ort_opt_{id(exe.model)}.onnx"))
        n_opt = len(onnx.load(opt[0]).graph.node) if opt else "?"
        print(f"graph {exe.model.graph.name}: {len(exe.model.graph.node)} ONNX nodes exported, "
              f"{n_opt} after onnxruntime's optimiser")
        _summarise_trace(path, top)


def _summarise_trace(path, top):
    with open(path) as f:
        events = json.load(f)
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    by_type, by_node, n_runs = defaultdict(float), defaultdict(float), max(len(runs), 1)
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        op = e.get("args", {}).get("op_name", "?")
        by_type[op] += e["dur"]
        by_node[(e["name"][: -len("_kernel_time")], op)] += e["dur"]
    run_us = sum(e["dur"] for e in runs) / n_runs
    kernel_us = sum(by_type.values()) / n_runs
    print(f"   model_run {run_us:.1f} µs/run, of which kernels {kernel_us:.1f} µs; "
          f"{len(by_node)} nodes executed")
    print("   per op type (µs/run, nodes):")
    counts = defaultdict(int)
    for (_, op) in by_node:
        counts[op] += 1
    for op, us in sorted(by_type.items(), key=lambda kv: -kv[1])[:top]:
        print(f"     {op:28s} {us / n_runs:9.2f} µs  x{counts[op]}")
    heavy = sorted(by_node.items(), key=lambda kv: -kv[1])[: min(top, 10)]
    print("   heaviest nodes (µs/run):")
    for (name, op), us in heavy:
        print(f"     {name[:48]:48s} {op:20s} {us / n_runs:9.2f}")


def dispatch_breakdown(mod):
    """Per-call layers of a jit-compiled workload (W2, W5), CPU time of this thread: the whole
    call, from the compiled entry on, the Session's binding + run, onnxruntime's run alone."""
    from graphad import tracing  # noqa: PLC0415

    from .ort_facts import cpu_us  # noqa: PLC0415

    case = _case(mod)
    entries = [e for f in list(tracing._SHARED.values()) for e in f._cache.values()
               if getattr(e, "_plan", None) is not None]
    entry = entries[-1]
    exe = entry._plan.exe
    values = [np.asarray(v) for v in mod.make_data(mod.config("full"))[: len(entry.traced.inputs)]]
    ordered = [values[i] for i in entry._plan.order]
    entry.session._execute(exe, ordered)  # binds every input once
    rows = [("whole call f(*args)", case.step),
            ("_Entry.run (after the signature lookup)", lambda: entry.run(values)),
            ("Session._execute (bind, run, copy out)",
             lambda: entry.session._execute(exe, ordered)),
            ("onnxruntime run_with_iobinding alone", lambda: exe.c_session.run_with_iobinding(
                exe.c_binding, None))]
    print(f"\n-- per-call layers ({len(exe.model.graph.node)} ONNX nodes), CPU time, best of 7:")
    for label, fn in rows:
        print(f"   {label:44s} {cpu_us(fn, inner=1000):7.2f} µs")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.profiling")
    p.add_argument("workload", help="W1, W2, W3, W5 or W5-hess")
    p.add_argument("--calls", type=int, default=None, help="calls profiled (default: ~2 s)")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--no-cprofile", action="store_true")
    p.add_argument("--no-ort", action="store_true")
    p.add_argument("--dispatch", action="store_true", help="per-call layers (jit workloads)")
    args = p.parse_args(argv)
    mods = [m for m in workload_modules(args.workload) if hasattr(m, "IMPLS")
            and m.ID.upper() == args.workload.upper()]
    if not mods:
        p.error(f"no generic workload {args.workload!r} (W4 has its own phase breakdown)")
    mod = mods[0]
    calls = args.calls
    if calls is None:
        case = _case(mod)
        t0 = time.perf_counter()
        case.step()
        calls = max(5, int(2.0 / max(time.perf_counter() - t0, 1e-6)))
        del case
    print(f"# profile of graphad on {mod.ID} {mod.TITLE}, {calls} calls")
    if args.dispatch:
        dispatch_breakdown(mod)
    if not args.no_cprofile:
        python_profile(mod, calls, args.top)
    if not args.no_ort:
        ort_profile(mod, calls, args.top)


if __name__ == "__main__":
    main()
