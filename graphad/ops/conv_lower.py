"""ONNX lowering of the conv2d family (ops/conv.py). float32: Conv, ConvTranspose, and for the
filter gradient a Conv with batch and channels swapped; float16 computes in float32; float64
(onnxruntime has no double Conv/ConvTranspose kernel) by im2col: strided Slices + one Einsum."""

from ..errors import ExportError
from ..types import float16, float32, float64


def _out(n, k, s, d, p0, p1):
    return (n + p0 + p1 - d * (k - 1) - 1) // s + 1


def _onnx_geometry(attrs):
    return {"strides": list(attrs["strides"]), "pads": list(attrs["pads"]),
            "dilations": list(attrs["dilations"]), "group": attrs["groups"]}


def _to32(ctx, dt, *names):
    return [ctx.cast(n, float32) for n in names] if dt is float16 else list(names)


def _back(ctx, dt, name):
    return ctx.cast(name, float16) if dt is float16 else name


def _static_hw(node, t):
    hw = t.shape[2:]
    if not all(isinstance(d, int) for d in hw):
        raise ExportError(f"{node.op} ({node.name}, created at {node.location}): this lowering "
                          f"needs static spatial dims, got {t.type!r}")
    return tuple(hw)


def _out_hw(attrs, hw, kernel):
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = attrs["strides"], attrs["dilations"], attrs["pads"]
    return _out(hw[0], kernel[0], sh, dh, pt, pb), _out(hw[1], kernel[1], sw, dw, pl, pr)


# ---------------------------------------------------------------------------------------------
# float32 (and float16 through float32)


def lower_conv(ctx, node, x, w):
    dt = node.outputs[0].dtype
    if dt is float64:
        return (_conv_f64(ctx, node, x, w),)
    x, w = _to32(ctx, dt, x, w)
    return (_back(ctx, dt, ctx.emit("Conv", [x, w], **_onnx_geometry(node.attrs))),)


def lower_input_grad(ctx, node, g, w):
    """ConvTranspose; output_padding restores the rows a strided conv dropped at the end."""
    dt = node.outputs[0].dtype
    if dt is float64:
        return (_input_grad_f64(ctx, node, g, w),)
    attrs = node.attrs
    kernel = node.inputs[1].shape[2:]
    (pt, pl, pb, pr), (h, wd) = attrs["pads"], attrs["in_size"]
    extra = [(n + p0 + p1 - d * (k - 1) - 1) % s for n, k, s, d, p0, p1 in zip(
        (h, wd), kernel, attrs["strides"], attrs["dilations"], (pt, pl), (pb, pr))]
    g, w = _to32(ctx, dt, g, w)
    y = ctx.emit("ConvTranspose", [g, w], output_padding=extra, **_onnx_geometry(attrs))
    return (_back(ctx, dt, y),)


def lower_filter_grad(ctx, node, x, g):
    """dW[o, c, i, j] = sum_{n, p, q} g[n, o, p, q] * xpad[n, c, i*dh + p*sh, j*dw + q*sw]: a
    Conv over x with batch and channels swapped, g as the filter, strides and dilations
    exchanged; its output may have extra taps at the end, which are sliced off."""
    dt = node.outputs[0].dtype
    if dt is float64:
        return (_filter_grad_f64(ctx, node, x, g),)
    attrs, groups = node.attrs, node.attrs["groups"]
    (kh, kw), c = attrs["kernel"], node.inputs[0].shape[1]
    x, g = _to32(ctx, dt, x, g)
    if groups == 1:
        xt = ctx.emit("Transpose", [x], perm=[1, 0, 2, 3])  # (C, N, H, W)
    else:
        # channel gi*N + n of the swapped input holds x[n, gi*Cg + c] (group gi's batch)
        h, wd = _static_hw(node, node.inputs[0])
        x5 = ctx.emit("Reshape", [x, ctx.i64([-1, groups, c // groups, h, wd])])
        xt = ctx.emit("Transpose", [x5], perm=[2, 1, 0, 3, 4])
        xt = ctx.emit("Reshape", [xt, ctx.i64([c // groups, -1, h, wd])])
    gt = ctx.emit("Transpose", [g], perm=[1, 0, 2, 3])  # (O, N, Ho, Wo)
    y = ctx.emit("Conv", [xt, gt], strides=list(attrs["dilations"]),
                 dilations=list(attrs["strides"]), pads=list(attrs["pads"]), group=groups)
    y = ctx.emit("Slice", [y, ctx.i64([0, 0]), ctx.i64([kh, kw]), ctx.i64([2, 3])])
    return (_back(ctx, dt, ctx.emit("Transpose", [y], perm=[1, 0, 2, 3])),)


# ---------------------------------------------------------------------------------------------
# float64: im2col. Each kernel tap (i, j) reads the strided window
# xpad[..., i*dh :: sh, j*dw :: sw] of Ho x Wo positions; the taps stack on a new axis K.


def _pad(ctx, x, pads):
    pt, pl, pb, pr = pads
    if not any(pads):
        return x
    return ctx.emit("Pad", [x, ctx.i64([0, 0, pt, pl, 0, 0, pb, pr])])


def _taps(attrs, kernel):
    (dh, dw) = attrs["dilations"]
    return [(i * dh, j * dw) for i in range(kernel[0]) for j in range(kernel[1])]


def _im2col(ctx, node, x, kernel, cg, out_hw):
    """(N, G, C/G, kh*kw, Ho, Wo) windows of the padded x."""
    attrs, (ho, wo) = node.attrs, out_hw
    (sh, sw), groups = attrs["strides"], attrs["groups"]
    xp = _pad(ctx, x, attrs["pads"])
    cols = []
    for r, c in _taps(attrs, kernel):
        win = ctx.emit("Slice", [xp, ctx.i64([r, c]),
                                 ctx.i64([r + sh * (ho - 1) + 1, c + sw * (wo - 1) + 1]),
                                 ctx.i64([2, 3]), ctx.i64([sh, sw])])
        cols.append(ctx.emit("Unsqueeze", [win, ctx.i64([2])]))
    cols = ctx.emit("Concat", cols, axis=2) if len(cols) > 1 else cols[0]
    k = kernel[0] * kernel[1]
    return ctx.emit("Reshape", [cols, ctx.i64([0, groups, cg, k, ho, wo])])


def _conv_f64(ctx, node, x, w):
    o, cg, kh, kw = node.inputs[1].shape
    groups = node.attrs["groups"]
    ho, wo = _out_hw(node.attrs, _static_hw(node, node.inputs[0]), (kh, kw))
    cols = _im2col(ctx, node, x, (kh, kw), cg, (ho, wo))
    w4 = ctx.emit("Reshape", [w, ctx.i64([groups, o // groups, cg, kh * kw])])
    y = ctx.emit("Einsum", [cols, w4], equation="ngckhw,gock->ngohw")
    return ctx.emit("Reshape", [y, ctx.i64([0, o, ho, wo])])


def _filter_grad_f64(ctx, node, x, g):
    c, o = node.inputs[0].shape[1], node.inputs[1].shape[1]
    groups, (kh, kw) = node.attrs["groups"], node.attrs["kernel"]
    ho, wo = _out_hw(node.attrs, _static_hw(node, node.inputs[0]), (kh, kw))
    cols = _im2col(ctx, node, x, (kh, kw), c // groups, (ho, wo))
    g5 = ctx.emit("Reshape", [g, ctx.i64([0, groups, o // groups, ho, wo])])
    dw = ctx.emit("Einsum", [cols, g5], equation="ngckhw,ngohw->gock")
    return ctx.emit("Reshape", [dw, ctx.i64([o, c // groups, kh, kw])])


def _dilate(ctx, z, c, ho, wo, sh, sw):
    """(N, C, Ho, Wo) -> (N, C, Ho*sh, Wo*sw) with z[.., p, q] at (p*sh, q*sw), zeros between."""
    if sh == sw == 1:
        return z
    z = ctx.emit("Reshape", [z, ctx.i64([0, c, ho, 1, wo, 1])])
    z = ctx.emit("Pad", [z, ctx.i64([0] * 6 + [0, 0, 0, sh - 1, 0, sw - 1])])
    return ctx.emit("Reshape", [z, ctx.i64([0, c, ho * sh, wo * sw])])


def _input_grad_f64(ctx, node, g, w):
    """Scatter-add of each tap's contribution g . w[..., i, j] into the padded input: dilate by
    the stride, shift by the tap's offset (Pad; a negative end pad crops trailing zeros)."""
    attrs, groups = node.attrs, node.attrs["groups"]
    o, cg, kh, kw = node.inputs[1].shape
    (h, wd), (pt, pl, pb, pr), (sh, sw) = attrs["in_size"], attrs["pads"], attrs["strides"]
    ho, wo = _out_hw(attrs, (h, wd), (kh, kw))
    hp, wp, c, k = h + pt + pb, wd + pl + pr, cg * groups, kh * kw
    g5 = ctx.emit("Reshape", [g, ctx.i64([0, groups, o // groups, ho, wo])])
    w4 = ctx.emit("Reshape", [w, ctx.i64([groups, o // groups, cg, k])])
    z = ctx.emit("Einsum", [g5, w4], equation="ngohw,gock->nkgchw")
    z = ctx.emit("Reshape", [z, ctx.i64([0, k, c, ho, wo])])
    parts = []
    for t, (r, q) in enumerate(_taps(attrs, (kh, kw))):
        zt = _dilate(ctx, ctx.emit("Gather", [z, ctx.i64(t)], axis=1), c, ho, wo, sh, sw)
        pads = [0, 0, r, q, 0, 0, hp - r - ho * sh, wp - q - wo * sw]
        parts.append(ctx.emit("Pad", [zt, ctx.i64(pads)]))
    dxp = ctx.emit("Sum", parts) if len(parts) > 1 else parts[0]
    if not any(attrs["pads"]):
        return dxp
    return ctx.emit("Slice", [dxp, ctx.i64([pt, pl]), ctx.i64([pt + h, pl + wd]), ctx.i64([2, 3])])
