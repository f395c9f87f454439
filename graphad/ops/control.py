"""Control flow: while_loop / fori_loop / scan (one `loop` primitive) and cond (an `if` node).

Each node holds closed body graphs (traced once from the Python callables); tensors a body reads
from enclosing graphs become explicit inputs of the node (captures). Both lower 1:1 to ONNX
`Loop` / `If`. Derivative rules live in control_grad.py.
"""

import numpy as np
from onnx import helper

from .. import tree
from ..build import PLACEHOLDER, as_tensor
from ..errors import DTypeError, GraphError, ShapeError, user_location
from ..export.lowering import LowerCtx, lower_nodes, value_info
from ..graph import Graph, Tensor
from ..interpret import evaluate
from ..registry import apply, defop, graph_of
from ..types import TensorType, bool_, default_int, format_shape, int64, merge_dims

__all__ = ["while_loop", "fori_loop", "scan", "cond"]

INT64_SCALAR = TensorType((), int64)


# ---------------------------------------------------------------------------------------------
# Tracing bodies


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


def _check_carry(what, tree_in, types_in, tree_out, outs, location):
    if tree_in != tree_out:
        raise GraphError(f"{what} at {location}: the body returns structure {tree_out} but the "
                         f"loop carries {tree_in}")
    for k, (ti, to) in enumerate(zip(types_in, outs)):
        to = to.type
        if ti.dtype is not to.dtype:
            raise DTypeError(f"{what} at {location}: carry leaf {k} enters as {ti!r} but the body "
                             f"returns {to!r}; cast it to {ti.dtype.name}")
        if len(ti.shape) != len(to.shape) or any(
            isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(ti.shape, to.shape)
        ):
            raise ShapeError(f"{what} at {location}: carry leaf {k} enters with shape "
                             f"{format_shape(ti.shape)} but the body returns "
                             f"{format_shape(to.shape)}")


def _check_pred(what, t, location):
    if t.dtype is not bool_ or t.shape != ():
        raise DTypeError(f"{what} at {location}: the condition must be a bool scalar, got "
                         f"{t.type!r} ({t.name!r})")


# ---------------------------------------------------------------------------------------------
# The loop primitive
#
# inputs:  [M (int64 scalar) if has_trip] + inits + xs + body captures + cond captures
# body:    inputs [iter (int64 scalar)] + carried + x slices; outputs carried' + y slices
# cond:    inputs carried; output bool scalar, tested before every iteration (while semantics)
# outputs: final carried + ys stacked on a new leading axis (reversed back when `reverse`)


def _loop_infer(types, a):
    body = a["body"]
    off = 1 if a["has_trip"] else 0
    carried = list(types[off:off + a["n_carried"]])
    ys = [TensorType((a.get("length"),) + o.shape, o.dtype)
          for o in (t.type for t in body.outputs[a["n_carried"]:])]
    return tuple(carried + ys)


def _loop_reference(node, *args):
    a = node.attrs
    body, cnd, nc = a["body"], a["cond"], a["n_carried"]
    m, inits, xs, bcaps, ccaps = split_loop_inputs(node, args)
    trip = None if m is None else int(m)
    v = list(inits)
    ys = []
    bfeed = dict(zip(body.captures.values(), bcaps))
    cfeed = dict(zip(cnd.captures.values(), ccaps)) if cnd is not None else {}
    i = 0
    while trip is None or i < trip:
        if cnd is not None and not bool(evaluate(cnd.outputs, {**cfeed, **dict(zip(cnd.inputs, v))})[0]):
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


def split_loop_inputs(node, seq):
    a = node.attrs
    seq = list(seq)
    m = seq.pop(0) if a["has_trip"] else None
    nc, nx = a["n_carried"], a["n_xs"]
    nb = len(a["body"].captures)
    return m, seq[:nc], seq[nc:nc + nx], seq[nc + nx:nc + nx + nb], seq[nc + nx + nb:]


def _lower_cond_into(ctx, cnd, carried_names, cap_names):
    env = dict(zip(cnd.inputs, carried_names))
    env.update(zip(cnd.captures.values(), cap_names))
    lower_nodes(ctx, cnd.outputs, env, [])
    return env[cnd.outputs[0]]


def _loop_lower(ctx, node, *names):
    a = node.attrs
    body, cnd, nc = a["body"], a["cond"], a["n_carried"]
    m, inits, xs, bcaps, ccaps = split_loop_inputs(node, names)
    c0 = _lower_cond_into(ctx, cnd, inits, ccaps) if cnd is not None else ""
    child = LowerCtx(opset=ctx.opset, parent=ctx)
    it, cin = child.fresh("iter"), child.fresh("cond_in")
    formals = [child.fresh("carried") for _ in range(nc)]
    env = {body.inputs[0]: it}
    env.update(zip(body.inputs[1:1 + nc], formals))
    env.update(zip(body.captures.values(), bcaps))
    if xs:
        idx = it
        if a["reverse"]:
            idx = child.emit("Sub", [child.emit("Sub", [m, child.i64(1)]), it])
        for ph, x in zip(body.inputs[1 + nc:], xs):
            env[ph] = child.emit("Gather", [x, idx], axis=0)
    vis = []
    lower_nodes(child, body.outputs, env, vis)
    new = [env[o] for o in body.outputs]
    cout = _lower_cond_into(child, cnd, new[:nc], ccaps) if cnd is not None else cin
    outs = [child.emit("Identity", [cout])] + [child.emit("Identity", [n]) for n in new]
    out_types = [TensorType((), bool_)] + [t.type for t in node.inputs[(1 if a["has_trip"] else 0):][:nc]]
    out_types += [o.type for o in body.outputs[nc:]]
    in_vis = [value_info(it, INT64_SCALAR), value_info(cin, TensorType((), bool_))]
    in_vis += [value_info(f, t) for f, t in zip(formals, out_types[1:1 + nc])]
    g = helper.make_graph(child.nodes, child.fresh(f"{node.name}_body"), in_vis,
                          [value_info(n, t) for n, t in zip(outs, out_types)], value_info=vis)
    ctx.domains |= child.domains
    results = ctx.emit("Loop", [m or "", c0] + list(inits), outputs=len(new), body=g)
    results = [results] if isinstance(results, str) else list(results)
    if a["reverse"]:
        for k in range(nc, len(results)):
            results[k] = ctx.emit("Slice", [results[k], ctx.i64([-1]), ctx.i64([-(2 ** 63)]),
                                            ctx.i64([0]), ctx.i64([-1])])
    return tuple(results)


LOOP = defop(
    "loop",
    infer=_loop_infer,
    reference=_loop_reference,
    lower=_loop_lower,
    doc="while/fori/scan loop over a body graph; lowers to ONNX Loop.",
)


def _make_loop(outer, m, inits, xs, body, cnd, *, length=None, reverse=False, name=None,
               location=None):
    inputs = ([m] if m is not None else []) + list(inits) + list(xs)
    inputs += list(body.captures) + (list(cnd.captures) if cnd is not None else [])
    attrs = {"body": body, "cond": cnd, "n_carried": len(inits), "n_xs": len(xs),
             "has_trip": m is not None, "reverse": bool(reverse), "length": length}
    return outer.add_node(LOOP, inputs, attrs, name=name or "loop",
                          location=location or user_location())


def _leaves_as_tensors(val, outer=None):
    leaves, td = tree.flatten(val)
    g = outer or graph_of([x for x in leaves if isinstance(x, Tensor)])
    return [x if isinstance(x, Tensor) else as_tensor(x, graph=g) for x in leaves], td, g


def while_loop(cond_fn, body_fn, init_val, max_iterations=None, name=None):
    """Repeat `val = body_fn(val)` while `cond_fn(val)`; the trip count may depend on data.

    `max_iterations` (int) bounds the trip count (the loop stops there). Reverse mode stores
    every carry on a tape: O(T) time and O(T * carry size) memory for T trips.
    """
    location = user_location()
    inits, td, outer = _leaves_as_tensors(init_val)
    types = [t.type for t in inits]
    cnd, ctd = trace_body(cond_fn, types, outer, "while_cond",
                          call=lambda phs: cond_fn(tree.unflatten(td, phs)))
    if len(cnd.outputs) != 1:
        raise DTypeError(f"while_loop at {location}: cond_fn must return one bool scalar")
    _check_pred("while_loop cond_fn", cnd.outputs[0], location)
    body, btd = trace_body(body_fn, [INT64_SCALAR] + types, outer, "while_body",
                           call=lambda phs: body_fn(tree.unflatten(td, phs[1:])))
    _check_carry("while_loop", td, types, btd, body.outputs, location)
    m = None
    if max_iterations is not None:
        with outer.as_default():
            m = as_tensor(np.int64(max_iterations), graph=outer)
    node = _make_loop(outer, m, inits, [], body, cnd, name=name, location=location)
    return tree.unflatten(td, node.outputs)


def _trip_count(lower, upper, outer):
    """max(upper - lower, 0) as an int64 scalar tensor (a constant when both are static)."""
    from . import cast, maximum, subtract  # noqa: PLC0415

    if not isinstance(lower, Tensor) and not isinstance(upper, Tensor):
        n = max(int(upper) - int(lower), 0)
        return as_tensor(np.int64(n), graph=outer), n
    with outer.as_default():
        lo = cast(as_tensor(lower, graph=outer), int64)
        hi = cast(as_tensor(upper, graph=outer), int64)
        return maximum(subtract(hi, lo), np.int64(0)), None


def fori_loop(lower, upper, body_fn, init_val, name=None):
    """`for i in range(lower, upper): val = body_fn(i, val)`; bounds may be Tensors."""
    from . import add, cast  # noqa: PLC0415

    location = user_location()
    inits, td, outer = _leaves_as_tensors(init_val)
    m, length = _trip_count(lower, upper, outer)
    idt = lower.dtype if isinstance(lower, Tensor) else (
        upper.dtype if isinstance(upper, Tensor) else None)
    types = [t.type for t in inits]

    def call(phs):
        i = cast(phs[0], idt if idt is not None else default_int())
        if not (isinstance(lower, int) and lower == 0):
            i = add(i, lower)
        return body_fn(i, tree.unflatten(td, phs[1:]))

    body, btd = trace_body(body_fn, [INT64_SCALAR] + types, outer, "fori_body", call=call)
    _check_carry("fori_loop", td, types, btd, body.outputs, location)
    node = _make_loop(outer, m, inits, [], body, None, length=length, name=name,
                      location=location)
    return tree.unflatten(td, node.outputs)


def scan(f, init, xs, length=None, reverse=False, name=None):
    """`carry, y = f(carry, x)` over the leading axis of `xs`; returns `(carry, ys)`."""
    location = user_location()
    inits, td, outer = _leaves_as_tensors(init)
    x_leaves, xtd = tree.flatten(xs)
    x_leaves = [x if isinstance(x, Tensor) else as_tensor(x, graph=outer) for x in x_leaves]
    lengths = {x.shape[0] for x in x_leaves if x.shape and isinstance(x.shape[0], int)}
    for x in x_leaves:
        if not x.shape:
            raise ShapeError(f"scan at {location}: xs leaf {x.name!r} is a scalar; it needs a "
                             "leading axis to scan over")
    if length is not None:
        lengths.add(int(length))
    if len(lengths) > 1:
        raise ShapeError(f"scan at {location}: xs leading dims disagree: {sorted(lengths)}")
    static = lengths.pop() if lengths else None
    if static is not None:
        m = as_tensor(np.int64(static), graph=outer)
    elif x_leaves:
        m = dim_size(x_leaves[0], 0)
    else:
        raise ShapeError(f"scan at {location}: give `length` when xs is None")
    types = [t.type for t in inits]
    xtypes = [TensorType(x.shape[1:], x.dtype) for x in x_leaves]
    ytree = []

    def call(phs):
        carry = tree.unflatten(td, phs[1:1 + len(types)])
        xv = tree.unflatten(xtd, phs[1 + len(types):]) if x_leaves else None
        new_carry, y = f(carry, xv)
        c_leaves, c_td = tree.flatten(new_carry)
        y_leaves, y_td = tree.flatten(y)
        ytree.append((c_td, y_td, len(c_leaves)))
        return list(c_leaves) + list(y_leaves)

    body, _ = trace_body(f, [INT64_SCALAR] + types + xtypes, outer, "scan_body", call=call)
    c_td, y_td, nc = ytree[0]
    _check_carry("scan", td, types, c_td, body.outputs[:nc], location)
    node = _make_loop(outer, m, inits, x_leaves, body, None, length=static, reverse=reverse,
                      name=name, location=location)
    outs = node.outputs
    return tree.unflatten(td, outs[:nc]), tree.unflatten(y_td, outs[nc:])


# ---------------------------------------------------------------------------------------------
# dim_size: a dim of a tensor's runtime shape, as an int64 scalar


def _dim_lower(ctx, node, x):
    shape = ctx.emit("Shape", [x])
    return (ctx.emit("Gather", [shape, ctx.i64(node.attrs["axis"])], axis=0),)


DIM = defop(
    "dim_size",
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
# cond
#
# inputs: [pred] + operands + true captures + false captures; both branches take the operands.


def _if_infer(types, a):
    outs = []
    for t, f in zip(a["true"].outputs, a["false"].outputs):
        shape = tuple(merge_dims(x, y) for x, y in zip(t.shape, f.shape))
        outs.append(TensorType(shape, t.dtype))
    return tuple(outs)


def _ifsplit_loop_inputs(node, seq):
    a = node.attrs
    seq = list(seq)
    n, nt = a["n_operands"], len(a["true"].captures)
    return seq[0], seq[1:1 + n], seq[1 + n:1 + n + nt], seq[1 + n + nt:]


def _if_reference(node, *args):
    pred, ops, tc, fc = _ifsplit_loop_inputs(node, args)
    br = node.attrs["true"] if bool(pred) else node.attrs["false"]
    caps = tc if bool(pred) else fc
    feed = dict(zip(br.inputs, ops))
    feed.update(zip(br.captures.values(), caps))
    outs = evaluate(br.outputs, feed)
    return tuple(np.asarray(o, dtype=t.dtype.np) for o, t in zip(outs, node.outputs))


def _if_lower(ctx, node, *names):
    pred, ops, tc, fc = _ifsplit_loop_inputs(node, names)
    graphs = []
    for key, caps in (("true", tc), ("false", fc)):
        br = node.attrs[key]
        child = LowerCtx(opset=ctx.opset, parent=ctx)
        env = dict(zip(br.inputs, ops))
        env.update(zip(br.captures.values(), caps))
        vis = []
        lower_nodes(child, br.outputs, env, vis)
        outs = [child.emit("Identity", [env[o]]) for o in br.outputs]
        graphs.append(helper.make_graph(
            child.nodes, child.fresh(f"{node.name}_{key}"), [],
            [value_info(n, t.type) for n, t in zip(outs, node.outputs)], value_info=vis))
        ctx.domains |= child.domains
    res = ctx.emit("If", [pred], outputs=len(node.outputs), then_branch=graphs[0],
                   else_branch=graphs[1])
    return (res,) if isinstance(res, str) else tuple(res)


IF = defop(
    "cond",
    infer=_if_infer,
    reference=_if_reference,
    lower=_if_lower,
    doc="Two-branch conditional over branch graphs; lowers to ONNX If.",
)


def cond(pred, true_fn, false_fn, *operands, name=None):
    """`true_fn(*operands)` if pred else `false_fn(*operands)`; both return the same structure."""
    location = user_location()
    leaves, td = tree.flatten(tuple(operands))
    tensors = [x for x in leaves if isinstance(x, Tensor)]
    outer = graph_of(tensors + ([pred] if isinstance(pred, Tensor) else []))
    ops = [x if isinstance(x, Tensor) else as_tensor(x, graph=outer) for x in leaves]
    p = pred if isinstance(pred, Tensor) else as_tensor(bool(pred), graph=outer)
    _check_pred("cond", p, location)
    types = [t.type for t in ops]
    branches = []
    for fn, label in ((true_fn, "cond_true"), (false_fn, "cond_false")):
        branches.append(trace_body(fn, types, outer, label,
                                   call=lambda phs, fn=fn: fn(*tree.unflatten(td, phs))))
    (tg, ttd), (fg, ftd) = branches
    if ttd != ftd:
        raise GraphError(f"cond at {location}: true_fn returns {ttd} but false_fn returns {ftd}")
    for k, (a, b) in enumerate(zip(tg.outputs, fg.outputs)):
        if a.dtype is not b.dtype or len(a.shape) != len(b.shape):
            raise DTypeError(f"cond at {location}: output {k} is {a.type!r} in true_fn but "
                             f"{b.type!r} in false_fn")
    inputs = [p] + ops + list(tg.captures) + list(fg.captures)
    node = outer.add_node(IF, inputs, {"true": tg, "false": fg, "n_operands": len(ops)},
                          name=name or "cond", location=location)
    return tree.unflatten(ttd, node.outputs)


from . import control_grad  # noqa: E402,F401  (attaches the loop/cond derivative rules)
