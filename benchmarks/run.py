"""Runs the workloads of shared/BENCHMARKS.md side by side: graphad and every installed peer in one
process, printing medians, ratios graphad/peer and the targets; `--json out.json` saves it all.

    python -m benchmarks [--quick] [--only W1,W3] [--peers jax,numpy] [--json out.json]
"""

import argparse
import importlib
import json
import os
import sys
import traceback

if __package__ in (None, ""):  # `python benchmarks/run.py`: make the package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"  # noqa: A001

from . import harness  # noqa: E402
from .report import print_workload, target_summary  # noqa: E402

MODULES = ("w1_mlp", "w2_tiny", "w3_loop", "w4_compile", "w5_hvp", "w5_hessian", "w6_gpu")
ORDER = ("graphad", "jax", "torch", "numpy", "pytensor")


def workload_modules(only=None):
    mods = [importlib.import_module(f".{m}", __package__) for m in MODULES]
    if not only:
        return mods
    wanted = [w.strip().upper() for w in only.split(",") if w.strip()]
    return [m for m in mods if any(m.ID.upper() == w or m.ID.upper().split("-")[0] == w
                                   for w in wanted)]


def prepare_system(mod, peer, cfg):
    """Build one system's case and make its first call (both timed); run its check."""
    out = {}
    harness.preimport(peer if peer in harness.PEERS else "graphad")
    case, out["build_s"] = harness.timed(lambda: mod.IMPLS[peer](cfg))
    with harness.PeakDelta() as first_mem:
        _, out["first_call_s"] = harness.timed(case.step)
    if case.check is not None:
        out["check"] = case.check()
    if getattr(mod, "MEMORY", False):
        with harness.PeakDelta() as steady_mem:
            for _ in range(3):
                case.step()
        out["first_call_peak_mib"] = first_mem.mib
        out["steady_peak_mib"] = steady_mem.mib
    if case.note:
        out["note"] = case.note
    return case, out


def measure_systems(cases, budget):
    """Interleaved medians of every system's step (and value/grad calls where given)."""
    series = []
    for peer, case in cases.items():
        series.append(harness.Series((peer, "step"), case.step))
        if case.value is not None:
            series.append(harness.Series((peer, "value"), case.value))
            if case.grad is not None:
                series.append(harness.Series((peer, "grad"), case.grad))
    harness.interleaved(series, budget)
    out = {peer: {} for peer in cases}
    for s in series:
        peer, kind = s.label
        row = out[peer]
        if kind == "step":
            row["median_s"], row["calls"] = s.median, s.calls
        else:
            row[f"{kind}_median_s"] = s.median
    for row in out.values():
        if "value_median_s" in row:
            row.setdefault("grad_median_s", row["median_s"])
            row["cheap_gradient_ratio"] = row["grad_median_s"] / row["value_median_s"]
    return out


def _check_error(got, ref):
    """Largest error relative to the reference's scale, over all checked arrays."""
    import numpy as np  # noqa: PLC0415

    worst = 0.0
    for a, b in zip(got, ref):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.shape != b.shape:
            return float("inf")
        scale = max(float(np.max(np.abs(b))) if b.size else 0.0, 1e-30)
        worst = max(worst, float(np.max(np.abs(a - b))) / scale if a.size else 0.0)
    return worst


def run_generic(mod, mode, budget, peers):
    cfg = mod.config(mode)
    result = {"id": mod.ID, "title": mod.TITLE, "config": cfg, "systems": {}, "skipped": {}}
    cases = {}
    for peer in ORDER:
        if peer not in peers or peer not in mod.IMPLS:
            continue
        if not harness.installed(peer):
            result["skipped"][peer] = "not installed"
            continue
        try:
            cases[peer], result["systems"][peer] = prepare_system(mod, peer, cfg)
        except Exception as e:  # a failing system is reported, the run goes on
            traceback.print_exc()
            result["systems"][peer] = {"error": f"{type(e).__name__}: {e}"}
    try:
        for peer, row in measure_systems(cases, budget).items():
            result["systems"][peer].update(row)
    except Exception as e:
        traceback.print_exc()
        for peer in cases:
            result["systems"][peer]["error"] = f"while timing: {type(e).__name__}: {e}"
    _add_checks_and_ratios(result)
    if hasattr(mod, "extras"):
        result["extras"] = mod.extras(cfg, mode, result)
    return result


def _add_checks_and_ratios(result):
    systems = result["systems"]
    ref_peer = next((p for p in ("numpy", "jax", "torch") if "check" in systems.get(p, {})), None)
    ref = systems[ref_peer]["check"] if ref_peer is not None else None
    for row in systems.values():
        if "check" in row:
            if ref is not None:
                row["check_error"] = _check_error(row["check"], ref)
            del row["check"]
    gd = systems.get("graphad", {}).get("median_s")
    result["ratios"] = {p: gd / row["median_s"] for p, row in systems.items()
                        if p != "graphad" and gd and row.get("median_s")}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="short measurements (0.3 s per median)")
    p.add_argument("--tiny", action="store_true", help="tiny sizes, one call (smoke test)")
    p.add_argument("--only", default=None, help="comma-separated workload ids, e.g. W1,W3")
    p.add_argument("--peers", default=",".join(ORDER), help="systems to run (default: all)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    mode = "tiny" if args.tiny else ("quick" if args.quick else "full")
    budget = {"tiny": harness.TINY, "quick": harness.QUICK, "full": harness.FULL}[mode]
    peers = tuple(x.strip() for x in args.peers.split(",") if x.strip())
    env = harness.env_summary()
    print("# graphad benchmarks (" + mode + "): " + ", ".join(f"{k} {v}" for k, v in env.items()))
    results = []
    for mod in workload_modules(args.only):
        if hasattr(mod, "run"):
            res = mod.run(mode, budget, peers)
        else:
            res = run_generic(mod, mode, budget, peers)
        results.append(res)
        print_workload(res)
        sys.stdout.flush()
    print(target_summary(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"mode": mode, "env": env, "workloads": results}, f, indent=1,
                      default=_jsonable)
        print(f"results written to {args.json}")
    return results


def _jsonable(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return repr(x)


if __name__ == "__main__":
    main()
