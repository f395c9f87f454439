"""Reverse mode of a loop with `checkpoint=k`: store every k-th carry, recompute each segment.

Forward: a loop over segments runs the original step at most k times per trip (an inner loop
with the original condition) and records only the segment's first carry, its step count and its
first step number. Backward: a loop over the recorded segments, last first, re-runs each segment
as a plain k-step loop from its stored carry and applies that loop's VJP (the default taped rule:
the segment's residuals live only while the segment is reversed). Memory O(T/k * carry +
k * residual); time ~3x the forward loop (forward, re-run, backward).
"""

import numpy as np

from ..build import as_tensor
from .control import (
    INT64_SCALAR,
    dim_size,
    guard,
    iota,
    make_loop,
    split_loop_inputs,
)
from .control_grad import (
    finish,
    inside,
    loop_cotangents,
    new_body,
    replay,
    safe_vjp,
    zeros,
)
from .control_tape import static_enough


def _ops():
    from .. import ops  # noqa: PLC0415

    return ops


def _flip(x):
    return x[::-1]


def segmented_vjp(node, cts, fc, fx, fcap, fy):
    """(ct of inits for fc, ct of xs for fx, ct of captures for fcap) of loop `node`."""
    a, outer = node.attrs, node.graph
    nc = a["n_carried"]
    m, inits, xs, bcaps, ccaps = split_loop_inputs(node, node.inputs)
    body = a["body"]
    if xs and not all(static_enough(t) for t in body.inputs[1 + nc:]):
        return loop_cotangents(node, cts, fc, fx, fcap, fy, policy=None)
    with outer.as_default():
        x_ex = [_flip(x) if a["reverse"] else x for x in xs]
        cty_ex = [_flip(cts[nc + j]) if a["reverse"] else cts[nc + j] for j in fy]
    ckpt, counts, bases = _forward_segments(node, m, inits, x_ex, bcaps, ccaps)
    types = [INT64_SCALAR] + [inits[k].type for k in fc] + [bcaps[k].type for k in fcap]
    types += [t.type for t in inits] + [INT64_SCALAR, INT64_SCALAR]
    sb, ph = new_body(outer, f"{body.name}_segment_vjp", types)
    ct_c, acc = ph[1:1 + len(fc)], ph[1 + len(fc):1 + len(fc) + len(fcap)]
    start, count, base = ph[-2 - nc:-2], ph[-2], ph[-1]
    ops = _ops()
    with sb:
        idx = base + iota(count)
        x_seg = [ops.gather(inside(sb, x), idx) for x in x_ex]
        seg = _segment_loop(node, sb, count, start, base, x_seg, bcaps)
        cty_seg = [ops.gather(inside(sb, c), idx) for c in cty_ex]
        res = safe_vjp([seg[k] for k in fc] + [seg[nc + j] for j in fy],
                       [start[k] for k in fc] + [x_seg[j] for j in fx]
                       + [sb.capture(bcaps[k]) for k in fcap], list(ct_c) + cty_seg)
        new_ct = [r if r is not None else zeros(sb, c) for r, c in zip(res[:len(fc)], ct_c)]
        new_acc = [s if r is None else s + r for s, r in zip(acc, res[len(fc) + len(fx):])]
        # pad each segment's x cotangents to k rows (repeating its last row) so they stack
        pad = ops.minimum(as_tensor(np.arange(a["checkpoint"], dtype=np.int64)), count - 1)
        ct_x = [ops.gather(r if r is not None else zeros(sb, x_seg[j]), pad)
                for r, j in zip(res[len(fc):len(fc) + len(fx)], fx)]
    finish(sb, new_ct + new_acc + ct_x)
    init_ct = [cts[k] if cts[k] is not None else zeros(outer, inits[k]) for k in fc]
    init_acc = [zeros(outer, bcaps[k]) for k in fcap]
    bnode = make_loop(outer, dim_size(counts, 0), init_ct + init_acc, ckpt + [counts, bases], sb,
                      None, reverse=True, name=f"{node.name}/vjp", location=node.location)
    bo = list(bnode.outputs)
    ct_xs = []
    with outer.as_default():
        for i, j in enumerate(fx):
            stacked = bo[len(fc) + len(fcap) + i]
            flat = ops.reshape(stacked, (-1,) + tuple(stacked.shape[2:]))
            r = ops.gather(flat, iota(m))
            ct_xs.append(_flip(r) if a["reverse"] else r)
    return bo[:len(fc)], ct_xs, bo[len(fc):len(fc) + len(fcap)]


def _segment_loop(node, g, count, start, base, x_seg, bcaps):
    """In graph `g`: the original step run `count` times from carry `start`, its step numbers
    counted from `base`, its x slices `x_seg`; returns the loop's outputs (carried + ys)."""
    a, body = node.attrs, node.attrs["body"]
    nc = a["n_carried"]
    types = [INT64_SCALAR] + [t.type for t in start] + [t.type for t in body.inputs[1 + nc:]]
    lb, ph = new_body(g, f"{body.name}_segment", types)
    with lb:
        it = inside(lb, base) + ph[0]
        outs = replay(body, lb, [it] + ph[1:], bcaps)
    finish(lb, outs)
    return list(make_loop(g, count, start, x_seg, lb, None, name="segment",
                          location=node.location).outputs)


def _forward_segments(node, m, inits, x_ex, bcaps, ccaps):
    """Loop over segments: returns (first carry of each segment per carried leaf, step counts,
    first step numbers), each stacked over the segments."""
    a, outer, body = node.attrs, node.graph, node.attrs["body"]
    nc, k, cnd = a["n_carried"], a["checkpoint"], a["cond"]
    ops = _ops()
    types = [t.type for t in inits]
    fb, ph = new_body(outer, f"{body.name}_segments", [INT64_SCALAR] + types + [INT64_SCALAR])
    state, done = ph[1:1 + nc], ph[1 + nc]
    with fb:
        n = as_tensor(np.int64(k)) if m is None else ops.minimum(
            np.int64(k), inside(fb, m) - done)
        new_state, count = _inner_segment(node, fb, n, state, done, x_ex, bcaps, ccaps)
    finish(fb, new_state + [done + count] + state + [count, done])
    fcond, cph = new_body(outer, f"{body.name}_segments_cond", types + [INT64_SCALAR])
    with fcond:
        parts = [] if cnd is None else replay(cnd, fcond, cph[:nc], ccaps)
        if m is not None:
            parts.append(ops.less(cph[nc], inside(fcond, m)))
        go = parts[0] if len(parts) == 1 else ops.logical_and(parts[0], parts[1])
    finish(fcond, [go])
    with outer.as_default():
        zero = as_tensor(np.int64(0))
    fnode = make_loop(outer, None, list(inits) + [zero], [], fb, fcond,
                      name=f"{node.name}/segments", location=node.location)
    out = list(fnode.outputs)
    tapes = out[nc + 1:]
    if a.get("on_max") == "error" and cnd is not None and m is not None:
        with outer.as_default():
            still = replay(cnd, outer, out[:nc], ccaps)[0]
            failed = ops.logical_and(still, ops.greater_equal(out[nc], m))
            tapes = guard(failed, tapes, (f"{a.get('label') or node.name} exceeded "
                                          "max_iterations (on_max='error')"))
    return tapes[:nc], tapes[nc], tapes[nc + 1]


def _inner_segment(node, g, n, state, done, x_ex, bcaps, ccaps):
    """In graph `g`: at most `n` steps from `state` while the condition holds; returns (the new
    state, the number of steps taken)."""
    a, body = node.attrs, node.attrs["body"]
    nc, cnd = a["n_carried"], a["cond"]
    ops = _ops()
    types = [INT64_SCALAR] + [t.type for t in state] + [INT64_SCALAR]
    lb, ph = new_body(g, f"{body.name}_segment", types)
    with lb:
        it = inside(lb, done) + ph[0]
        xsl = [ops.gather(inside(lb, x), it) for x in x_ex]
        outs = replay(body, lb, [it] + ph[1:1 + nc] + xsl, bcaps)
    finish(lb, outs[:nc] + [ph[-1] + np.int64(1)])
    lc = None
    if cnd is not None:
        lc, cph = new_body(g, f"{cnd.name}_segment", types[1:])
        finish(lc, replay(cnd, lc, cph[:nc], ccaps))
    with g.as_default():
        zero = as_tensor(np.int64(0))
    res = make_loop(g, n, list(state) + [zero], [], lb, lc, name="segment",
                    location=node.location).outputs
    return list(res[:nc]), res[nc]

