"""Per-step loop work done once over all steps (ONNX_NOTES.md, "gradients of loops"): every body
node costs ~0.3-0.5 us per step in onnxruntime whatever it computes, a batched node over the
stacked steps costs its arithmetic only. Three moves, each taken only when the body loses more
nodes than it gains scan inputs/outputs (each costs about one node per step):

- precompute: nodes that read only scanned slices (and invariants) run before the loop on the
  whole stacked input, their results scanned instead (an RNN's input projection, a backward
  loop's recomputation from the tape);
- sink: nodes whose results only leave as scan outputs run after the loop on their stacked
  inputs (a tape's residuals, e.g. 1 - tanh^2 from a taped tanh);
- accumulate: a carried `acc + d` whose acc nothing else reads becomes `init + sum_t d_t` after
  the loop; for an outer product d = u x^T that sum is one GEMM U^T X (a weight gradient).
"""

from .loop_plan import plan_loop
from .loop_reassoc import regroup_scalar_factors
from .loop_vmap import batch_node
from .rewrite import graph_pass, rebuild

__all__ = ["batch_loop_work"]


@graph_pass
def batch_loop_work(prog, fires=None, declines=None):
    """Apply precompute / sink / accumulate to every loop where it removes per-step nodes."""
    def rewrite(node, inputs, b):
        if node.op != "loop":
            return None
        regrouped = regroup_scalar_factors(b.attrs["body"], b.attrs["n_carried"])
        if regrouped is not None:  # only kept when a plan below uses it
            b.attrs = dict(b.attrs, body=regrouped)
        plan = plan_loop(node, inputs, b)
        if plan is None:
            return None
        from .licm import fire_probe  # noqa: PLC0415  (licm imports this module)

        fire_probe(b)
        b.fired("batch loop work")
        return _apply(plan, b)

    from .fuse import live_uses  # noqa: PLC0415

    return rebuild(prog, rewrite, fires=fires, declines=declines,
                   ctx={"uses": live_uses(prog)})


# ---------------------------------------------------------------------------------------------
# Emitting a plan


def _emitter(graph, location):
    from ..registry import lookup  # noqa: PLC0415

    def emit(spec):
        op, inputs, attrs = spec
        opdef = lookup(op) if isinstance(op, str) else op
        return graph.add_node(opdef, list(inputs), attrs, name=opdef.name,
                              location=location, tags={"batched": True}).outputs[0]

    return emit


def _run_batched(nodes, env, emit, plan):
    """Batched copies of `nodes` (schedule order) outside the loop. env: body tensor ->
    (outer tensor, batched?); invariants resolve through plan.outer_value."""
    for n in nodes:
        ins, flags = [], []
        for t in n.inputs:
            v = env.get(t)
            if v is None:
                v = (plan.outer_value(t), False)
                env[t] = v
            ins.append(v[0])
            flags.append(v[1])
        if any(flags):
            out = batch_node(n, ins, flags, emit)
        else:
            out = emit((n.opdef, ins, n.attrs))
        env[n.outputs[0]] = (out, any(flags))
    return env


def _apply(plan, b):
    G = b.graph
    emit = _emitter(G, b.node.location)
    # 1. precompute: batched slice-only work before the loop, scanned instead
    env = {ph: (x, True) for ph, x in zip(plan.slices, plan.xs)}
    _run_batched(plan.pre_nodes, env, emit, plan)
    new_xs = [env[t][0] for t in plan.pre_frontier]
    # 2. the new loop
    loop = plan.make_loop(G, new_xs, b)
    # 3. sink and accumulate: batched work after the loop on the stacked scan outputs
    env = {t: (s, True) for t, s in zip(plan.cut, loop.stacked_cut)}
    env.update((ph, (x, True)) for ph, x in plan.aligned_slices.items())
    _run_batched(plan.post_nodes, env, emit, plan)
    outs = list(loop.kept_outputs)
    for j, t in plan.sunk_ys.items():
        outs[plan.nc + j] = _as_ys(env, t, plan, emit)
    for k, ds in plan.accumulators.items():
        total = plan.inits[k]
        for d in ds:
            total = emit(("add", [total, _sum_steps(d, env, plan, emit)], {}))
        outs[k] = total
    return outs


def _as_ys(env, t, plan, emit):
    v, batched = env.get(t, (None, False))
    if v is None:
        v = plan.outer_value(t)
    if batched:
        return v
    raise AssertionError(f"sunk scan output {t.name} is not batched")


def _sum_steps(d, env, plan, emit):
    """sum over steps of body value d, from its batched value (an outer product: one GEMM)."""
    outer = plan.outer_factors.get(d)
    if outer is not None:
        (p, q) = outer
        P = _rows(env[p][0], emit)
        Q = _rows(env[q][0], emit)
        pt = emit(("transpose", [P], {"perm": (1, 0)}))
        return emit(("matmul", [pt, Q], {}))
    v, batched = env.get(d, (None, False))
    if v is None:
        v = plan.outer_value(d)
        batched = False
    if not batched:
        raise AssertionError(f"accumulated value {d.name} is not batched")
    return emit(("sum", [v], {"axes": (0,), "keepdims": False}))


def _rows(x, emit):
    """A stacked per-step vector (T, n) from (T, n), (T, n, 1) or (T, 1, n)."""
    if len(x.shape) == 2:
        return x
    axis = 2 if x.shape[2] == 1 else 1
    return emit(("squeeze", [x], {"axes": (axis,)}))

