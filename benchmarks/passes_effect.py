"""What graphad's optimisation pipeline (`ga.passes.optimize`, run by every Session before
lowering) does to the gradient graphs of W1, W3 and W5: each graph is run by two Sessions,
`optimize=False` and `optimize=True` (the default), on the same inputs.

    python -m benchmarks.passes_effect [--quick] [--json out.json]

Graphs, data and sizes are the workload modules' own (full size even with `--quick`): W1's graph
and feeds are taken from `w1_mlp.graphad`'s session, and W3/W5's jitted functions from
`w3_loop`, `w5_hvp`, `w5_hessian` are traced on their `make_data` inputs. Rows:

- W1 vg: loss and gradients of the MLP; W1 step: loss plus the SGD update (state kept);
- W3: value_and_grad of the while-loop integration; W5 hvp (n = 1000); W5 hessian (n = 100).

Reported per row: graphad IR live nodes (bodies included) before/after the pipeline (its
`Report`) and the pipeline's own time; ONNX nodes of the model each Session compiled, top level
and with every Loop/Scan/If body; first call of each variant (optimise + lower + create the
onnxruntime session + run; tracing excluded; median over 3 fresh Sessions) and the median per
call, both variants interleaved in rounds (`harness.interleaved`); `max|diff|` between the two
variants' first-call results (W1 step: the loss and every variable after that one step). Both
variants are called through `Session.run` (jit's own path skips a little of that dispatch).
"""

import argparse
import inspect
import json
import statistics

import numpy as np

from . import harness, w1_mlp, w3_loop, w5_hessian, w5_hvp


def _nonlocals(fn):
    """The variables a workload's Case lambda closes over (its graph, session, function)."""
    return inspect.getclosurevars(fn).nonlocals


def _w1(kind):
    case = w1_mlp.graphad(w1_mlp.config("full"))
    fn = case.grad if kind == "vg" else case.step
    env = _nonlocals(fn)
    fetches = env["fetch_vg"] if kind == "vg" else env["fetch_step"]
    return env["sess"].graph, fetches, env["feeds"], kind == "step"


def _jitted(mod, args_of):
    """(graph, fetches, feeds) of the workload's jitted graphad function traced on its data."""
    from graphad.tracing import Transformed  # noqa: PLC0415

    cfg = mod.config("full")
    env = _nonlocals(mod.graphad(cfg).step)
    fn = next(v for v in env.values() if isinstance(v, Transformed))
    args = args_of(cfg)
    traced = fn.trace(*args)
    return traced.graph, traced.output_leaves, dict(zip(traced.inputs, args)), False


COMPILES = 3  # first calls per variant (fresh Sessions): the median is reported

SUBJECTS = {
    "W1 vg": lambda: _w1("vg"),
    "W1 step": lambda: _w1("step"),
    "W3 loop_grad": lambda: _jitted(w3_loop, w3_loop.make_data),
    "W5 hvp n=1000": lambda: _jitted(w5_hvp, w5_hvp.make_data),
    "W5 hessian n=100": lambda: _jitted(w5_hessian, lambda cfg: w5_hvp.make_data(cfg)[:1]),
}


def onnx_nodes(model):
    """(top-level nodes, nodes including every subgraph body) of an ONNX model."""

    def count(graph):
        n = 0
        for node in graph.node:
            n += 1
            for attr in node.attribute:
                if attr.HasField("g"):
                    n += count(attr.g)
                for sub in attr.graphs:
                    n += count(sub)
        return n

    return len(model.graph.node), count(model.graph)


def _results(sess, out, stateful):
    """The arrays a first call produced (and, for a training step, the variables after it)."""
    import graphad as ga  # noqa: PLC0415

    arrays = [np.asarray(a) for a in ga.tree.leaves(out) if a is not None]
    if stateful:
        values = sess.variable_values()
        arrays += [values[k] for k in sorted(values)]
    return arrays


def _max_diff(a, b):
    diff = max(float(np.max(np.abs(np.asarray(x, np.float64) - y))) for x, y in zip(a, b))
    scale = max(float(np.max(np.abs(y))) for y in b)
    return diff, scale


def measure(name, budget):
    import graphad as ga  # noqa: PLC0415

    graph, fetches, feeds, stateful = SUBJECTS[name]()
    row = {"workload": name}
    sessions, results, firsts = {}, {}, {"off": [], "on": []}
    for _ in range(COMPILES):  # fresh Sessions, the variants alternating
        for label, opt in (("off", False), ("on", True)):
            s = ga.Session(graph, optimize=opt)
            out, t = harness.timed(lambda s=s: s.run(fetches, feeds))
            firsts[label].append(t)
            if label not in sessions:
                sessions[label], results[label] = s, _results(s, out, stateful)
    for label, s in sessions.items():
        row[f"first_call_{label}_s"] = statistics.median(firsts[label])
        (exe,) = s._cache.values()  # the one model this Session compiled and runs
        row[f"onnx_top_{label}"], row[f"onnx_all_{label}"] = onnx_nodes(exe.model)
    row["max_abs_diff"], row["result_scale"] = _max_diff(results["off"], results["on"])
    _, report = ga.passes.optimize(fetches)  # after the timed compiles: nothing shared
    row["ir_nodes_off"] = report[0]["nodes_before"] if report else None
    row["ir_nodes_on"] = report[-1]["nodes_after"] if report else None
    row["passes_s"] = sum(r["seconds"] for r in report)
    series = [harness.Series(label, lambda s=s: s.run(fetches, feeds))
              for label, s in sessions.items()]
    harness.interleaved(series, budget)
    for s in series:
        row[f"median_{s.label}_s"], row[f"calls_{s.label}"] = s.median, s.calls
    row["speedup"] = row["median_off_s"] / row["median_on_s"]
    return row


def _warm_up():
    """Imports, onnxruntime start-up and the lowering of loops, outside every timed call."""
    w3_loop.graphad(w3_loop.config("tiny")).step()
    w5_hvp.graphad(w5_hvp.config("tiny")).step()


def _ms(s):
    return f"{s * 1e3:.3f}" if s < 1e-2 else f"{s * 1e3:.1f}"


def format_table(rows):
    head = (f"{'workload':<17} {'IR nodes':>11} {'ONNX top':>11} {'ONNX all':>11} "
            f"{'passes':>7} {'first call s':>13} {'median ms':>17} {'off/on':>6} {'max|diff|':>9}")
    lines = [head, f"{'':<17} {'off -> on':>11} {'off -> on':>11} {'off -> on':>11} "
                   f"{'s':>7} {'off / on':>13} {'off / on':>17}", "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['workload']:<17} error: {r['error']}")
            continue
        pair = lambda k: f"{r[k + '_off']} -> {r[k + '_on']}"  # noqa: E731
        lines.append(
            f"{r['workload']:<17} {pair('ir_nodes'):>11} {pair('onnx_top'):>11} "
            f"{pair('onnx_all'):>11} {r['passes_s']:>7.3f} "
            f"{r['first_call_off_s']:>6.3f}/{r['first_call_on_s']:<6.3f} "
            f"{_ms(r['median_off_s']):>8}/{_ms(r['median_on_s']):<8} {r['speedup']:>6.2f} "
            f"{r['max_abs_diff']:>9.1e}")
    lines.append("IR nodes: live graphad nodes, bodies included (ga.passes.optimize's report); "
                 "ONNX all: with subgraph bodies;\npasses: the pipeline's own time (part of "
                 "first call 'on'); off/on: median off / median on (> 1: the pipeline helps);\n"
                 "max|diff|: between the two variants' first-call results")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.passes_effect",
                                description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="short medians (0.3 s per variant)")
    p.add_argument("--only", default=None, help="comma-separated row-name prefixes, e.g. W1,W5")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    budget = harness.QUICK if args.quick else harness.FULL
    names = [n for n in SUBJECTS if not args.only
             or any(n.startswith(w.strip()) for w in args.only.split(",") if w.strip())]
    env = harness.env_summary()
    mode = "quick" if args.quick else "full"
    print(f"# optimisation pipeline on/off ({mode}): "
          + ", ".join(f"{k} {v}" for k, v in env.items()))
    _warm_up()
    rows = []
    for name in names:
        try:
            rows.append(measure(name, budget))
        except Exception as e:  # a failing row is reported, the run goes on
            import traceback  # noqa: PLC0415

            traceback.print_exc()
            rows.append({"workload": name, "error": f"{type(e).__name__}: {e}"})
        print(f"  {name}: measured", flush=True)
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"mode": mode, "env": env, "rows": rows}, f, indent=1)
        print(f"results written to {args.json}")
    return rows


if __name__ == "__main__":
    main()
