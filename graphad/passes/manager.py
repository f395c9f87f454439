"""The explicit optimisation pipeline: one list of passes run to a fixpoint with a round cap,
`optimize` (the public entry point) and `optimize_for_session` (what Session and export run)."""

import contextlib
import gc
import time

from ..ops.control_merge import merge_taped_loops
from .cse import cse
from .dce import eliminate_dead_code
from .fold import fold_constants
from .fuse import fuse
from .licm import hoist_loop_invariants
from .loop_count import precount_loops
from .loop_rows import carry_rows
from .loop_unroll_counted import unroll_counted_loops
from .rewrite import Program, count_nodes, graph_size
from .simplify import simplify

__all__ = ["PIPELINE", "MAX_ROUNDS", "Report", "optimize", "optimize_for_session", "run_passes"]

# The standard pipeline, in order, run to a fixpoint. Every pass walks only live nodes and
# every rebuild drops dead code, so eliminate_dead_code comes last: it cleans up what the
# rewrites left unused (a cheap scan when nothing is dead) instead of copying the whole input
# graph first. Fusion runs after the algebraic passes: it makes ops (FusedMatMul, gated adds,
# fused groups) those passes need not see.
PIPELINE = [
    merge_taped_loops,
    fold_constants,
    simplify,
    cse,
    hoist_loop_invariants,
    precount_loops,
    fuse,
    carry_rows,
    unroll_counted_loops,
    eliminate_dead_code,
]

MAX_ROUNDS = 4


class Report(list):
    """One dict per pass run: pass, round, nodes_before, nodes_after (live nodes, bodies
    included), seconds (wall), cpu_seconds (this process: steadier on a shared machine),
    changed, graph_nodes (all nodes of the result's graph, dead ones too).
    `print(report)` shows a table; the first row's graph_before counts the input graph."""

    def __str__(self):
        head = (f"{'round':>5}  {'pass':<32} {'before':>8} {'after':>8} {'graph':>8} "
                f"{'seconds':>9}  changed")
        lines = [head, "-" * len(head)]
        for r in self:
            lines.append(f"{r.get('round', ''):>5}  {r['pass']:<32} {r['nodes_before']:>8} "
                         f"{r['nodes_after']:>8} {r.get('graph_nodes', ''):>8} "
                         f"{r['seconds']:>9.4f}  {'yes' if r.get('changed') else 'no'}")
        if self:
            total = sum(r["seconds"] for r in self)
            lines.append(f"{'':>5}  {'total':<32} {self[0]['nodes_before']:>8} "
                         f"{self[-1]['nodes_after']:>8} {self[-1].get('graph_nodes', ''):>8} "
                         f"{total:>9.4f}")
        lines.append("before/after: live nodes (bodies included); graph: all nodes of the "
                     "result's graph")
        return "\n".join(lines)

    def __repr__(self):
        return self.__str__()

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


def _pass_name(p):
    return getattr(p, "__name__", None) or getattr(p, "name", None) or repr(p)


def run_passes(prog, passes=None, max_rounds=MAX_ROUNDS, check=None):
    """Run `passes` (default: PIPELINE) over `prog` to a fixpoint, at most `max_rounds` rounds.

    A pass is skipped once every pass has run since the last change (the fixpoint).
    `check(prog)` (e.g. `verify`) runs after every pass that changed something.
    Returns (program, Report).
    """
    passes = list(PIPELINE if passes is None else passes)
    report = Report()
    if not passes:
        return prog, report
    with _no_gc():
        return _fixpoint(prog, passes, max_rounds, check, report)


@contextlib.contextmanager
def _no_gc():
    """Passes allocate many small objects (nodes, tensors, memo entries); Python's cyclic
    collector then keeps rescanning the growing heap, which doubled the cost of a rebuild
    (measured at 40,000 nodes). It is paused for the pipeline; the garbage it leaves (old
    graphs: nodes and tensors point at each other) is collected when it runs again."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _fixpoint(prog, passes, max_rounds, check, report):
    nodes = count_nodes(prog)
    size = graph_size(prog.graph)
    quiet = 0  # consecutive pass runs that changed nothing
    for rnd in range(1, max_rounds + 1):
        for p in passes:
            if quiet >= len(passes):
                return prog, report
            t0, c0 = time.perf_counter(), time.process_time()
            new = p(prog)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            if not isinstance(new, Program):
                raise TypeError(f"pass {_pass_name(p)} returned {type(new).__name__}, "
                                "not a Program")
            changed = new is not prog
            after = count_nodes(new) if changed else nodes
            new_size = graph_size(new.graph) if changed else size
            report.append({"pass": _pass_name(p), "round": rnd, "nodes_before": nodes,
                           "nodes_after": after, "seconds": dt, "cpu_seconds": cpu,
                           "changed": changed,
                           "graph_before": size, "graph_nodes": new_size})
            if changed:
                if check is not None:
                    check(new)
                quiet = 0
            else:
                quiet += 1
            prog, nodes, size = new, after, new_size
    return prog, report


def optimize(outputs, passes=None, max_rounds=MAX_ROUNDS, check=None):
    """`(new_outputs, report)`: `outputs` (any pytree of Tensors/Operations, or a Program)
    optimised by `passes` (default: the standard pipeline) in a new graph. The input graph is
    never mutated. `print(report)` shows nodes before/after and seconds per pass."""
    if isinstance(outputs, Program):
        return run_passes(outputs, passes, max_rounds, check)
    prog, unpack = Program.from_outputs(outputs)
    new, report = run_passes(prog, passes, max_rounds, check)
    return unpack(new), report


def optimize_for_session(outputs, operations, feeds):
    """The pipeline a Session (and train_step_to_onnx) runs before lowering: returns
    (outputs, operations, feeds) of the optimised graph, feeds in the same order."""
    if not outputs and not operations:
        return outputs, operations, feeds
    graph = (list(outputs) + list(operations))[0].graph
    prog = Program(graph, outputs, operations, feeds)
    new, _ = run_passes(prog)
    return list(new.outputs), list(new.operations), list(new.feeds)
