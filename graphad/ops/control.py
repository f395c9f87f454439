"""Control flow: while_loop / fori_loop / scan, all one `loop` primitive lowered to ONNX Loop.

A loop node holds closed body graphs (traced once from the Python callables); tensors a body
reads from enclosing graphs become explicit inputs of the node (captures, the tail of its
inputs). `cond` lives in control_cond.py, the derivative rules in control_grad.py.
"""

import itertools

import numpy as np
from onnx import helper

from .. import tree
from ..build import PLACEHOLDER, as_tensor
from ..errors import DTypeError, GraphError, RunError, ShapeError, user_location
from ..export.lowering import LowerCtx, lower_nodes, value_info
from ..graph import Graph, Tensor
from ..interpret import evaluate
from ..registry import apply, defop, graph_of
from ..types import TensorType, bool_, default_int, format_shape, int64

__all__ = ["cond", "fixed_point", "fori_loop", "root", "scan", "while_loop"]

INT64_SCALAR = TensorType((), int64)
_UIDS = itertools.count(1)  # loop ids: a tape loop names the loop it retraces (attr tape_of)
BOOL_SCALAR = TensorType((), bool_)


class StructureError(GraphError, TypeError):
    """A body returns a different pytree structure than it receives (a GraphError and, as in
    JAX, a TypeError)."""


# ---------------------------------------------------------------------------------------------
# Tracing bodies and checking what they return


def trace_body(fn, types, outer, name, call=None):
    """Trace `fn` into a new body graph of `outer` whose inputs are placeholders of `types`.

    `call(placeholders) -> result pytree` adapts how fn is invoked (default: fn(*placeholders)).
    Returns (body, out_treedef); body.inputs / body.outputs are set.
    """
    body = Graph(name=outer.unique_name(name), parent=outer)
    with body:
        phs = [apply(PLACEHOLDER, (), {"shape": t.shape, "dtype": t.dtype}, name=f"arg{i}")
               for i, t in enumerate(types)]
        result = call(phs) if call is not None else fn(*phs)
        leaves, out_tree = tree.flatten(result)
        outs = []
        for leaf in leaves:
            t = leaf if isinstance(leaf, Tensor) else as_tensor(leaf, graph=body)
            if t.node.graph is not body:
                if not body.encloses(t.node.graph):
                    raise GraphError(f"{name}: returned tensor {t.name!r} of an unrelated graph")
                t = body.capture(t)
            outs.append(t)
    body.inputs, body.outputs = phs, outs
    return body, out_tree


def check_carry(label, tree_in, types_in, tree_out, outs):
    """The body must return the structure, dtypes and shapes the loop carries."""
    if tree_in != tree_out:
        raise StructureError(f"{label}: the body returns structure {tree_out} but the loop "
                             f"carries {tree_in}")
    for k, (ti, to) in enumerate(zip(types_in, outs)):
        to = to.type
        if ti.dtype is not to.dtype:
            raise DTypeError(f"{label}: carry leaf {k} enters the body as {ti!r} but the body "
                             f"returns {to!r}; cast it to {ti.dtype.name}")
        if len(ti.shape) != len(to.shape) or any(
            isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(ti.shape, to.shape)
        ):
            raise ShapeError(f"{label}: carry leaf {k} enters the body with shape "
                             f"{format_shape(ti.shape)} but the body returns "
                             f"{format_shape(to.shape)}")


def check_pred(label, t):
    """A condition is one bool scalar (DTypeError for another dtype, ShapeError for a shape)."""
    if t.dtype is not bool_:
        raise DTypeError(f"{label}: the condition must be a bool scalar, got {t.type!r} "
                         f"({t.name!r}); compare it (e.g. x > 0) or use ga.cast")
    if t.shape != ():
        raise ShapeError(f"{label}: the condition must be a bool scalar, got shape "
                         f"{format_shape(t.shape)} ({t.name!r}); reduce it (e.g. ga.max)")


def _label(kind, name, location):
    return f"{kind} {name!r} at {location}" if name else f"{kind} at {location}"


def _check_checkpoint(label, checkpoint):
    if checkpoint is not None and (isinstance(checkpoint, bool) or not isinstance(
            checkpoint, (int, np.integer)) or checkpoint < 1):
        raise ValueError(f"{label}: checkpoint must be None or an int >= 1, got {checkpoint!r}")
    return None if checkpoint is None else int(checkpoint)


# ---------------------------------------------------------------------------------------------
# The loop primitive
#
# inputs:  [M (int64 scalar) if has_trip] + inits + xs + body captures + cond captures
# body:    inputs [iter (int64 scalar)] + carried + x slices; outputs carried' + y slices
# cond:    inputs carried; output bool scalar, tested before every iteration (while semantics)
# outputs: final carried + ys stacked on a new leading axis (reversed back when `reverse`)
# attrs:   checkpoint (None | k: the reverse-mode policy), on_max ("stop" | "error"), label


def split_loop_inputs(node, seq):
    """(M or None, inits, xs, body captures, cond captures) of a loop node's inputs (or of any
    sequence aligned with them, e.g. tangents)."""
    a = node.attrs
    seq = list(seq)
    m = seq.pop(0) if a["has_trip"] else None
    nc, nx = a["n_carried"], a["n_xs"]
    nb = len(a["body"].captures)
    return m, seq[:nc], seq[nc:nc + nx], seq[nc + nx:nc + nx + nb], seq[nc + nx + nb:]


def _loop_infer(types, a):
    body = a["body"]
    off = 1 if a["has_trip"] else 0
    carried = list(types[off:off + a["n_carried"]])
    ys = [TensorType((a.get("length"),) + o.shape, o.dtype)
          for o in (t.type for t in body.outputs[a["n_carried"]:])]
    return tuple(carried + ys)


def _run_cond(cnd, cfeed, v):
    return bool(evaluate(cnd.outputs, {**cfeed, **dict(zip(cnd.inputs, v))})[0])


def _loop_reference(node, *args):
    a = node.attrs
    body, cnd, nc = a["body"], a["cond"], a["n_carried"]
    m, inits, xs, bcaps, ccaps = split_loop_inputs(node, args)
    trip = None if m is None else max(int(m), 0)
    v, ys, i = list(inits), [], 0
    bfeed = dict(zip(body.captures.values(), bcaps))
    cfeed = dict(zip(cnd.captures.values(), ccaps)) if cnd is not None else {}
    while trip is None or i < trip:
        if cnd is not None and not _run_cond(cnd, cfeed, v):
            break
        idx = trip - 1 - i if a["reverse"] else i
        feed = dict(bfeed)
        feed[body.inputs[0]] = np.int64(i)
        feed.update(zip(body.inputs[1:1 + nc], v))
        feed.update(zip(body.inputs[1 + nc:], (x[idx] for x in xs)))
        outs = evaluate(body.outputs, feed)
        v = [np.asarray(o, dtype=t.dtype.np) for o, t in zip(outs[:nc], node.outputs[:nc])]
        ys.append(outs[nc:])
        i += 1
    if a.get("on_max") == "error" and cnd is not None and i == trip and _run_cond(cnd, cfeed, v):
        raise RunError(_max_message(node))
    if a["reverse"]:
        ys.reverse()
    stacked = []
    for k, t in enumerate(node.outputs[nc:]):
        if ys:
            stacked.append(np.stack([y[k] for y in ys]).astype(t.dtype.np))
        else:
            shape = tuple(d if isinstance(d, int) else 0 for d in t.shape[1:])
            stacked.append(np.zeros((0,) + shape, t.dtype.np))
    return tuple(v) + tuple(stacked)


def _max_message(node):
    return (f"{node.attrs.get('label') or node.name} exceeded max_iterations: its condition is "
            "still true after the last allowed trip (on_max='error')")


def _lower_cond_into(ctx, cnd, carried_names, cap_names):
    env = dict(zip(cnd.inputs, carried_names))
    env.update(zip(cnd.captures.values(), cap_names))
    lower_nodes(ctx, cnd.outputs, env, [])
    return env[cnd.outputs[0]]


def subgraph(ctx, child, name, in_vis, out_names, out_types, vis, copy=()):
    """A GraphProto of `child`'s nodes. Outputs are returned directly (no Identity: each costs
    ~0.5 us per trip) unless they are outer names, repeat an earlier output or are in `copy`
    (onnxruntime 1.31 stacks Loop's iteration number wrongly when a body returns it directly:
    every entry is the last value)."""
    local = {vi.name for vi in in_vis} | {o for n in child.nodes for o in n.output}
    outs, seen = [], set()
    for n in out_names:
        if n in seen or n not in local or n in copy:
            n = child.emit("Identity", [n])
        seen.add(n)
        outs.append(n)
    taken = seen | {vi.name for vi in in_vis}
    vis = [vi for vi in vis if vi.name not in taken]
    ctx.domains |= child.domains
    g = helper.make_graph(child.nodes, child.fresh(name), in_vis,
                          [value_info(n, t) for n, t in zip(outs, out_types)], value_info=vis)
    return g


def _loop_lower(ctx, node, *names):
    a = node.attrs
    body, cnd, nc = a["body"], a["cond"], a["n_carried"]
    m, inits, xs, bcaps, ccaps = split_loop_inputs(node, names)
    if a.get("as_scan") and xs and cnd is None and not _is_read(body, body.inputs[0]) and all(
            isinstance(d, int) for o in body.outputs[nc:] for d in o.shape):
        return _scan_lower(ctx, node, inits, xs, bcaps)
    # an explicit `true` rather than "": onnx.reference's Loop runs zero trips without a cond
    c0 = _lower_cond_into(ctx, cnd, inits, ccaps) if cnd is not None else ctx.const(np.True_)
    last = ctx.emit("Sub", [m, ctx.i64(1)]) if xs and a["reverse"] else None
    child = LowerCtx(opset=ctx.opset, parent=ctx)
    it, cin = child.fresh("iter"), child.fresh("cond_in")
    formals = [child.fresh("carried") for _ in range(nc)]
    env = {body.inputs[0]: it}
    env.update(zip(body.inputs[1:1 + nc], formals))
    env.update(zip(body.captures.values(), bcaps))
    if xs:
        idx = child.emit("Sub", [last, it]) if a["reverse"] else it
        for ph, x in zip(body.inputs[1 + nc:], xs):
            if _is_read(body, ph):  # an unused slice costs a Gather per trip
                env[ph] = child.emit("Gather", [x, idx], axis=0)
    vis = []
    lower_nodes(child, body.outputs, env, vis)
    new = [env[o] for o in body.outputs]
    cout = _lower_cond_into(child, cnd, new[:nc], ccaps) if cnd is not None else cin
    carried_types = [t.type for t in node.outputs[:nc]]
    out_types = [BOOL_SCALAR] + carried_types + [o.type for o in body.outputs[nc:]]
    in_vis = [value_info(it, INT64_SCALAR), value_info(cin, BOOL_SCALAR)]
    in_vis += [value_info(f, t) for f, t in zip(formals, carried_types)]
    g = subgraph(ctx, child, f"{node.name}_body", in_vis, [cout] + new, out_types, vis,
                 copy=(it,))
    results = ctx.emit("Loop", [m or "", c0] + list(inits), outputs=len(new), body=g)
    results = [results] if isinstance(results, str) else list(results)
    if a["reverse"]:
        for k in range(nc, len(results)):
            results[k] = ctx.emit("Slice", [results[k], ctx.i64([-1]), ctx.i64([-(2 ** 63)]),
                                            ctx.i64([0]), ctx.i64([-1])])
    if a.get("on_max") == "error" and cnd is not None and m is not None:
        results = _lower_max_check(ctx, node, cnd, results, ccaps)
    return tuple(results)


def _scan_lower(ctx, node, inits, xs, bcaps):
    """ONNX Scan for a loop over xs only (trip count = their length, no condition, iteration
    number unused), walking them backwards natively when `reverse`: no per-trip index
    arithmetic and Gather (~1 us per trip less than Loop for a VJP's backward loop)."""
    a, body, nc = node.attrs, node.attrs["body"], node.attrs["n_carried"]
    child = LowerCtx(opset=ctx.opset, parent=ctx)
    formals = [child.fresh("carried") for _ in range(nc)]
    slices = [child.fresh("slice") for _ in xs]
    env = dict(zip(body.inputs[1:1 + nc], formals))
    env.update(zip(body.inputs[1 + nc:], slices))
    env.update(zip(body.captures.values(), bcaps))
    vis = []
    lower_nodes(child, body.outputs, env, vis)
    carried_types = [t.type for t in node.outputs[:nc]]
    in_vis = [value_info(f, t) for f, t in zip(formals, carried_types)]
    in_vis += [value_info(s, p.type) for s, p in zip(slices, body.inputs[1 + nc:])]
    out_types = carried_types + [o.type for o in body.outputs[nc:]]
    # onnxruntime 1.31's Scan gives wrong results when a body returns one of its inputs as is
    g = subgraph(ctx, child, f"{node.name}_body", in_vis, [env[o] for o in body.outputs],
                 out_types, vis, copy=tuple(formals) + tuple(slices))
    ny = len(body.outputs) - nc
    d = 1 if a["reverse"] else 0
    # onnxruntime's Scan fails on zero-length scan inputs: If(trips > 0, Scan, the empty result)
    run = LowerCtx(opset=ctx.opset, parent=ctx)
    res = run.emit("Scan", list(inits) + list(xs), outputs=len(body.outputs), body=g,
                   num_scan_inputs=len(xs), scan_input_directions=[d] * len(xs),
                   scan_output_directions=[d] * ny if ny else None)
    res = [res] if isinstance(res, str) else list(res)
    types = [t.type for t in node.outputs]
    then = subgraph(ctx, run, f"{node.name}_run", [], res, types, [])
    empty = LowerCtx(opset=ctx.opset, parent=ctx)
    outs = list(inits) + [
        empty.emit("ConstantOfShape", [empty.i64((0,) + tuple(t.shape[1:]))],
                   value=helper.make_tensor("zero", t.dtype.onnx, [1], [0]))
        for t in types[nc:]]
    skip = subgraph(ctx, empty, f"{node.name}_empty", [], outs, types, [])
    n = ctx.emit("Shape", [xs[0]], start=0, end=1)
    go = ctx.emit("Greater", [ctx.emit("Squeeze", [n, ctx.i64([0])]), ctx.i64(0)])
    out = ctx.emit("If", [go], outputs=len(types), then_branch=then, else_branch=skip)
    return (out,) if isinstance(out, str) else tuple(out)


def _is_read(body, ph):
    """Whether a node of `body` reads placeholder `ph` or the body returns it."""
    return any(o is ph for o in body.outputs) or any(ph in n.inputs for n in body.nodes)


def _lower_max_check(ctx, node, cnd, results, ccaps):
    running = _lower_cond_into(ctx, cnd, results[:node.attrs["n_carried"]], ccaps)
    return emit_guard(ctx, running, results, _max_message(node))


def emit_guard(ctx, failed, names, message):
    """Each of `names` passes through Gather(Unsqueeze(v), failed): index 1 is out of range, so
    onnxruntime fails naming the node, whose name is `message` (ONNX has no assert op)."""
    idx = ctx.cast(failed, int64)
    ctx.set_prefix("".join(c if c.isprintable() else "_" for c in message))
    out = []
    for v in names:
        one = ctx.emit("Unsqueeze", [v, ctx.i64([0])])
        out.append(ctx.emit("Gather", [one, idx], axis=0))
    return out


LOOP = defop(
    "loop",
    infer=_loop_infer,
    reference=_loop_reference,
    lower=_loop_lower,
    doc="while/fori/scan loop over a body graph; lowers to ONNX Loop.",
)


def make_loop(outer, m, inits, xs, body, cnd, *, length=None, reverse=False, name=None,
              location=None, checkpoint=None, on_max="stop", label=None, tags=None, tape_of=None,
              as_scan=False):
    """Add a loop node to `outer` (captures of body and cond appended to its inputs)."""
    inputs = ([m] if m is not None else []) + list(inits) + list(xs)
    inputs += list(body.captures) + (list(cnd.captures) if cnd is not None else [])
    attrs = {"body": body, "cond": cnd, "n_carried": len(inits), "n_xs": len(xs),
             "has_trip": m is not None, "reverse": bool(reverse), "length": length,
             "checkpoint": checkpoint, "on_max": on_max, "label": label, "uid": next(_UIDS)}
    if tape_of is not None:
        attrs["tape_of"] = tape_of
    if as_scan:  # lowered to ONNX Scan when it walks xs only (the backward loop of a VJP)
        attrs["as_scan"] = True
    return outer.add_node(LOOP, inputs, attrs, name=name or "loop",
                          location=location or user_location(), tags=tags)


def _leaves_as_tensors(val, outer=None):
    leaves, td = tree.flatten(val)
    g = outer or graph_of([x for x in leaves if isinstance(x, Tensor)])
    return [x if isinstance(x, Tensor) else as_tensor(x, graph=g) for x in leaves], td, g


def while_loop(cond_fn, body_fn, init_val, max_iterations=None, *, on_max="stop",
               checkpoint=None, name=None):
    """Repeat `val = body_fn(val)` while `cond_fn(val)`; the trip count may depend on data.

    `max_iterations` (int or int Tensor) bounds the trip count: with `on_max="stop"` the loop
    just stops there; with `on_max="error"` a run whose condition is still true after that many
    trips fails (ga.RunError in the interpreter and in a Session; in exported ONNX, a node named
    by the message fails with an index error).

    Reverse mode (also with a data-dependent trip count), T trips:
    - `checkpoint=None` (default): the forward loop records each step's residuals (the values
      the step's VJP reads) on a tape; the backward loop replays the tape in reverse with no
      recomputation. Time ~2x the forward loop; memory O(T * residual size).
    - `checkpoint=k`: only every k-th carry is stored; the backward loop re-runs each segment
      of k steps from its stored carry (taping that segment only) before reversing it. Time
      ~3x the forward loop; memory O(T/k * carry size + k * residual size). k=1 stores every
      carry and recomputes each step inside the backward loop (O(T * carry size)).
    """
    location = user_location()
    label = _label("while_loop", name, location)
    if on_max not in ("stop", "error"):
        raise ValueError(f"{label}: on_max must be 'stop' or 'error', got {on_max!r}")
    if on_max == "error" and max_iterations is None:
        raise ValueError(f"{label}: on_max='error' needs max_iterations")
    checkpoint = _check_checkpoint(label, checkpoint)
    inits, td, outer = _leaves_as_tensors(init_val)
    types = [t.type for t in inits]
    cnd, ctd = trace_body(cond_fn, types, outer, "while_cond",
                          call=lambda phs: cond_fn(tree.unflatten(td, phs)))
    if len(cnd.outputs) != 1:
        raise StructureError(f"{label}: cond_fn must return one bool scalar, got {ctd}")
    check_pred(f"{label}: cond_fn", cnd.outputs[0])
    body, btd = trace_body(body_fn, [INT64_SCALAR] + types, outer, "while_body",
                           call=lambda phs: body_fn(tree.unflatten(td, phs[1:])))
    check_carry(label, td, types, btd, body.outputs)
    m = None
    if max_iterations is not None:
        m = _max_trips(label, max_iterations, outer)
        shown = m.name if isinstance(max_iterations, Tensor) else int(max_iterations)
        label = f"{label} (max_iterations={shown})"
    node = make_loop(outer, m, inits, [], body, cnd, name=name, location=location,
                     checkpoint=checkpoint, on_max=on_max, label=label)
    return tree.unflatten(td, node.outputs)


def _max_trips(label, max_iterations, outer):
    from . import cast  # noqa: PLC0415

    if isinstance(max_iterations, Tensor):
        if max_iterations.shape != () or not max_iterations.dtype.is_integer:
            raise DTypeError(f"{label}: max_iterations must be an integer scalar, got "
                             f"{max_iterations.type!r}")
        with outer.as_default():
            return cast(max_iterations, int64)
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, (int, np.integer)):
        raise TypeError(f"{label}: max_iterations must be an int, got {max_iterations!r}")
    if max_iterations < 0:
        raise ValueError(f"{label}: max_iterations must be >= 0, got {max_iterations}")
    return as_tensor(np.int64(max_iterations), graph=outer)


def _trip_count(label, lower, upper, outer):
    """max(upper - lower, 0) as an int64 scalar tensor (a constant when both are static)."""
    from . import cast, maximum, subtract  # noqa: PLC0415

    for b in (lower, upper):
        ok = b.dtype.is_integer if isinstance(b, Tensor) else (
            isinstance(b, (int, np.integer)) and not isinstance(b, bool))
        if not ok or (isinstance(b, Tensor) and b.shape != ()):
            raise DTypeError(f"{label}: loop bounds must be integer scalars, got {b!r}")
    if not isinstance(lower, Tensor) and not isinstance(upper, Tensor):
        n = max(int(upper) - int(lower), 0)
        return as_tensor(np.int64(n), graph=outer), n
    with outer.as_default():
        lo = cast(as_tensor(lower, graph=outer), int64)
        hi = cast(as_tensor(upper, graph=outer), int64)
        return maximum(subtract(hi, lo), np.int64(0)), None


def fori_loop(lower, upper, body_fn, init_val, *, checkpoint=None, name=None):
    """`for i in range(lower, upper): val = body_fn(i, val)`; bounds may be Tensors.

    Reverse mode stores residuals per step (`checkpoint=None`) or every k-th carry
    (`checkpoint=k`): see `while_loop` for the time and memory of each policy.
    """
    from . import add, cast  # noqa: PLC0415

    location = user_location()
    label = _label("fori_loop", name, location)
    checkpoint = _check_checkpoint(label, checkpoint)
    inits, td, outer = _leaves_as_tensors(init_val)
    m, length = _trip_count(label, lower, upper, outer)
    idt = lower.dtype if isinstance(lower, Tensor) else (
        upper.dtype if isinstance(upper, Tensor) else default_int())
    types = [t.type for t in inits]

    def call(phs):
        i = cast(phs[0], idt)
        if not (isinstance(lower, (int, np.integer)) and lower == 0):
            i = add(i, lower)
        return body_fn(i, tree.unflatten(td, phs[1:]))

    body, btd = trace_body(body_fn, [INT64_SCALAR] + types, outer, "fori_body", call=call)
    check_carry(label, td, types, btd, body.outputs)
    node = make_loop(outer, m, inits, [], body, None, length=length, name=name,
                     location=location, checkpoint=checkpoint, label=label)
    return tree.unflatten(td, node.outputs)


def _guard_lengths(x_leaves, m, static, label, outer):
    """xs leaves whose leading dim is only known at run time, made to fail the run when it is
    not the scan's length (`length`, a static leaf's, or else the first leaf's)."""
    from .compare import not_equal  # noqa: PLC0415

    out = list(x_leaves)
    want = f"length {static}" if static is not None else "the leading dim of xs leaf 0"
    with outer.as_default():
        for i, x in enumerate(x_leaves):
            if isinstance(x.shape[0], int) or (static is None and i == 0):
                continue
            bad = not_equal(dim_size(x, 0), m)
            out[i] = guard(bad, [x], f"{label}: xs leaf {i} ({x.name!r}) has a leading dim "
                                     f"other than {want}")[0]
    return out


def scan(f, init, xs, length=None, reverse=False, *, checkpoint=None, name=None):
    """`carry, y = f(carry, x)` over the leading axis of `xs`; returns `(carry, ys)`.

    `xs` may be a pytree (or None with `length`); `reverse=True` walks xs from the end (ys keep
    xs's order). Reverse-mode policies (`checkpoint`) as in `while_loop`.
    """
    location = user_location()
    label = _label("scan", name, location)
    checkpoint = _check_checkpoint(label, checkpoint)
    inits, td, outer = _leaves_as_tensors(init)
    x_leaves, xtd = tree.flatten(xs)
    x_leaves = [x if isinstance(x, Tensor) else as_tensor(x, graph=outer) for x in x_leaves]
    for x in x_leaves:
        if not x.shape:
            raise ShapeError(f"{label}: xs leaf {x.name!r} is a scalar; it needs a leading "
                             "axis to scan over")
    lengths = {x.shape[0] for x in x_leaves if isinstance(x.shape[0], int)}
    if length is not None:
        lengths.add(int(length))
    if len(lengths) > 1:
        raise ShapeError(f"{label}: xs leading dims and length disagree: {sorted(lengths)}")
    static = lengths.pop() if lengths else None
    if static is not None:
        m = as_tensor(np.int64(static), graph=outer)
    elif x_leaves:
        m = dim_size(x_leaves[0], 0)
    else:
        raise ShapeError(f"{label}: give `length` when xs is None")
    x_leaves = _guard_lengths(x_leaves, m, static, label, outer)
    types = [t.type for t in inits]
    xtypes = [TensorType(x.shape[1:], x.dtype) for x in x_leaves]
    seen = []

    def call(phs):
        carry = tree.unflatten(td, phs[1:1 + len(types)])
        xv = tree.unflatten(xtd, phs[1 + len(types):])
        res = f(carry, xv)
        if not (isinstance(res, (tuple, list)) and len(res) == 2):
            raise StructureError(f"{label}: f must return a pair (carry, y), got "
                                 f"{type(res).__name__}")
        c_leaves, c_td = tree.flatten(res[0])
        y_leaves, y_td = tree.flatten(res[1])
        seen.append((c_td, y_td, len(c_leaves)))
        return list(c_leaves) + list(y_leaves)

    body, _ = trace_body(f, [INT64_SCALAR] + types + xtypes, outer, "scan_body", call=call)
    c_td, y_td, nc = seen[0]
    check_carry(label, td, types, c_td, body.outputs[:nc])
    node = make_loop(outer, m, inits, x_leaves, body, None, length=static, reverse=reverse,
                     name=name, location=location, checkpoint=checkpoint, label=label)
    outs = node.outputs
    return tree.unflatten(td, outs[:nc]), tree.unflatten(y_td, outs[nc:])


# ---------------------------------------------------------------------------------------------
# dim_size: a dim of a tensor's runtime shape, as an int64 scalar


def _dim_lower(ctx, node, x):
    shape = ctx.emit("Shape", [x])
    return (ctx.emit("Gather", [shape, ctx.i64(node.attrs["axis"])], axis=0),)


DIM = defop(
    "dim_size",
    shape_only=(0,),  # inputs whose values are not read
    infer=lambda types, a: (INT64_SCALAR,),
    reference=lambda node, x: (np.int64(x.shape[node.attrs["axis"]]),),
    lower=_dim_lower,
    vjp=lambda node, g: (None,),
    jvp=lambda node, t: (None,),
    doc="Size of one axis at run time (int64 scalar); its value does not depend on x's values.",
)


def dim_size(x, axis=0):
    x = as_tensor(x)
    d = x.shape[axis]
    if isinstance(d, int):
        return as_tensor(np.int64(d), graph=x.graph)
    return apply(DIM, (x,), {"axis": axis % len(x.shape)})


# ---------------------------------------------------------------------------------------------
# guard: fail at run time with a message (max_iterations exceeded); iota: 0..n-1 at run time


def _guard_reference(node, failed, *values):
    if bool(failed):
        raise RunError(node.attrs["message"])
    return values


GUARD = defop(
    "guard",
    infer=lambda types, a: tuple(types[1:]),
    reference=_guard_reference,
    lower=lambda ctx, node, failed, *names: tuple(emit_guard(ctx, failed, names,
                                                             node.attrs["message"])),
    vjp=lambda node, *cts: (None,) + cts,
    jvp=lambda node, t, *tangents: tangents,
    doc="Passes its values through; a run where `failed` is true fails with `message`.",
)


def guard(failed, values, message):
    """`values` (a list of tensors), made to fail at run time with `message` when `failed`."""
    out = apply(GUARD, [failed] + list(values), {"message": message})
    return [out] if isinstance(out, Tensor) else list(out)


IOTA = defop(
    "iota",
    infer=lambda types, a: (TensorType((None,), int64),),
    reference=lambda node, n: (np.arange(max(int(n), 0), dtype=np.int64),),
    lower=lambda ctx, node, n: (ctx.emit("Range", [ctx.i64(0), n, ctx.i64(1)]),),
    vjp=lambda node, g: (None,),
    jvp=lambda node, t: (None,),
    doc="int64 vector [0, 1, ..., n-1] for an int64 scalar n known at run time.",
)


def iota(n):
    return apply(IOTA, (n,))


from . import control_grad  # noqa: E402,F401  (attaches the loop/cond derivative rules)
from .control_cond import cond  # noqa: E402
from .implicit import fixed_point, root  # noqa: E402
