"""2-D convolution (NCHW input, OIHW filter, ONNX Conv semantics) and its two adjoints. The
adjoints are ops too, so derivatives of every order stay inside this closed family of three
bilinear ops: conv2d -> (conv2d_input_grad, conv2d_filter_grad) -> conv2d -> ..."""

import numpy as np

from ..build import as_tensor, promote
from ..errors import DTypeError, ShapeError
from ..registry import apply, defop
from ..types import TensorType, default_float, format_shape, is_static
from .conv_lower import lower_conv, lower_filter_grad, lower_input_grad
from .elementwise import add
from .elementwise_core import cast, wanted
from .shape import describe, reshape, shape_error

__all__ = ["conv2d"]

_GEOMETRY = ("strides", "pads", "dilations", "groups")


# ---------------------------------------------------------------------------------------------
# Geometry: attrs hold strides (sh, sw), pads (top, left, bottom, right) in ONNX order,
# dilations (dh, dw) and groups; input_grad adds in_size (H, W), filter_grad kernel (kh, kw).


def out_size(n, k, s, d, p0, p1):
    """Output length of one spatial axis (None when the input length is not known)."""
    if not isinstance(n, int):
        return None
    return (n + p0 + p1 - d * (k - 1) - 1) // s + 1


def out_hw(in_hw, kernel, attrs):
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = attrs["strides"], attrs["dilations"], attrs["pads"]
    return (out_size(in_hw[0], kernel[0], sh, dh, pt, pb),
            out_size(in_hw[1], kernel[1], sw, dw, pl, pr))


def geometry(attrs):
    return {k: attrs[k] for k in _GEOMETRY}


# ---------------------------------------------------------------------------------------------
# Type inference


def _dtype(types, opname):
    dts = tuple(dict.fromkeys(t.dtype for t in types))
    if len(dts) != 1:
        raise DTypeError(f"{opname}: inputs have different dtypes {', '.join(d.name for d in dts)}")
    if not dts[0].is_floating:
        raise DTypeError(f"{opname}: needs floating inputs, got {dts[0].name}")
    for t in types:
        if t.rank != 4:
            raise ShapeError(f"{opname}: inputs must be 4-D (NCHW / OIHW), got shapes "
                             + " and ".join(format_shape(u.shape) for u in types))
    return dts[0]


def _static_filter(w, opname):
    if not is_static(w.shape):
        raise ShapeError(f"{opname}: the filter shape {format_shape(w.shape)} must be static")
    return w.shape


def _check_hw(got, want, what, opname):
    for a, b in zip(got, want):
        if isinstance(a, int) and isinstance(b, int) and a != b:
            raise ShapeError(f"{opname}: {what} has spatial size {format_shape(tuple(got))}, "
                             f"the geometry gives {format_shape(tuple(want))}")


def _valid_out(in_hw, kernel, attrs, opname):
    out = out_hw(in_hw, kernel, attrs)
    for o, n, k, d, s in zip(out, in_hw, kernel, attrs["dilations"], ("top/bottom", "left/right")):
        if o is not None and o < 1:
            raise ShapeError(f"{opname}: the dilated kernel ({(k - 1) * d + 1}) is larger than "
                             f"the padded input ({n} plus {s} padding)")
    return out


def _channels(c, o, cg, attrs, opname):
    g = attrs["groups"]
    if o % g:
        raise ShapeError(f"{opname}: {o} output channels cannot be split into {g} groups")
    if isinstance(c, int) and c != cg * g:
        raise ShapeError(f"{opname}: the input has {c} channels but the filter expects {cg * g} "
                         f"({cg} per group x {g} groups)")


def _conv_infer(types, attrs):
    x, w = types
    dt = _dtype(types, "conv2d")
    o, cg, kh, kw = _static_filter(w, "conv2d")
    _channels(x.shape[1], o, cg, attrs, "conv2d")
    ho, wo = _valid_out(x.shape[2:], (kh, kw), attrs, "conv2d")
    return (TensorType((x.shape[0], o, ho, wo), dt),)


def _input_grad_infer(types, attrs):
    g, w = types
    dt = _dtype(types, "conv2d_input_grad")
    o, cg, kh, kw = _static_filter(w, "conv2d_input_grad")
    _channels(None, o, cg, attrs, "conv2d_input_grad")
    if isinstance(g.shape[1], int) and g.shape[1] != o:
        raise ShapeError(f"conv2d_input_grad: cotangent has {g.shape[1]} channels, filter {o}")
    h, w_ = attrs["in_size"]
    _check_hw(g.shape[2:], _valid_out((h, w_), (kh, kw), attrs, "conv2d_input_grad"),
              "the cotangent", "conv2d_input_grad")
    return (TensorType((g.shape[0], cg * attrs["groups"], h, w_), dt),)


def _filter_grad_infer(types, attrs):
    x, g = types
    dt = _dtype(types, "conv2d_filter_grad")
    c, o = x.shape[1], g.shape[1]
    if not (isinstance(c, int) and isinstance(o, int)):
        raise ShapeError(f"conv2d_filter_grad: channel counts must be static, got input "
                         f"{format_shape(x.shape)} and cotangent {format_shape(g.shape)}")
    groups = attrs["groups"]
    if c % groups:
        raise ShapeError(f"conv2d_filter_grad: {c} input channels cannot be split into "
                         f"{groups} groups")
    _channels(c, o, c // groups, attrs, "conv2d_filter_grad")
    kh, kw = attrs["kernel"]
    _check_hw(g.shape[2:], _valid_out(x.shape[2:], (kh, kw), attrs, "conv2d_filter_grad"),
              "the cotangent", "conv2d_filter_grad")
    return (TensorType((o, c // groups, kh, kw), dt),)


# ---------------------------------------------------------------------------------------------
# numpy references: one loop over the kh*kw kernel taps, each an einsum over a strided window


def _windows(attrs, kh, kw, ho, wo):
    (sh, sw), (dh, dw) = attrs["strides"], attrs["dilations"]
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
            cols = slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)
            yield i, j, (Ellipsis, rows, cols)


def _padded(x, pads):
    pt, pl, pb, pr = pads
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))


def _work(a):
    """float16 is computed in float32 (as the lowering does), then rounded once."""
    return a.astype(np.float32) if a.dtype == np.float16 else a


def _conv_reference(node, x, w):
    attrs, groups = node.attrs, node.attrs["groups"]
    xp, w = _padded(_work(x), attrs["pads"]), _work(w)
    n, o, (cg, kh, kw) = x.shape[0], w.shape[0], w.shape[1:]
    ho, wo = out_hw(x.shape[2:], (kh, kw), attrs)
    w5 = w.reshape(groups, o // groups, cg, kh, kw)
    y = np.zeros((n, groups, o // groups, ho, wo), dtype=xp.dtype)
    for i, j, win in _windows(attrs, kh, kw, ho, wo):
        xs = xp[win].reshape(n, groups, cg, ho, wo)
        y += np.einsum("ngchw,goc->ngohw", xs, w5[..., i, j])
    return (y.reshape(n, o, ho, wo).astype(node.outputs[0].dtype.np),)


def _input_grad_reference(node, g, w):
    attrs, groups = node.attrs, node.attrs["groups"]
    g, w = _work(g), _work(w)
    (h, wd), (pt, pl, pb, pr) = attrs["in_size"], attrs["pads"]
    n, (o, cg, kh, kw), (ho, wo) = g.shape[0], w.shape, g.shape[2:]
    w5 = w.reshape(groups, o // groups, cg, kh, kw)
    g5 = g.reshape(n, groups, o // groups, ho, wo)
    dxp = np.zeros((n, groups, cg, h + pt + pb, wd + pl + pr), dtype=g.dtype)
    for i, j, win in _windows(attrs, kh, kw, ho, wo):
        dxp[win] += np.einsum("ngohw,goc->ngchw", g5, w5[..., i, j])
    dx = dxp[..., pt:pt + h, pl:pl + wd].reshape(n, groups * cg, h, wd)
    return (dx.astype(node.outputs[0].dtype.np),)


def _filter_grad_reference(node, x, g):
    attrs, groups = node.attrs, node.attrs["groups"]
    xp, g = _padded(_work(x), attrs["pads"]), _work(g)
    (kh, kw), (n, c), (o, ho, wo) = attrs["kernel"], x.shape[:2], g.shape[1:]
    cg = c // groups
    x5 = xp.reshape(n, groups, cg, *xp.shape[2:])
    g5 = g.reshape(n, groups, o // groups, ho, wo)
    dw = np.zeros((groups, o // groups, cg, kh, kw), dtype=xp.dtype)
    for i, j, win in _windows(attrs, kh, kw, ho, wo):
        dw[..., i, j] = np.einsum("ngchw,ngohw->goc", x5[win], g5)
    return (dw.reshape(o, cg, kh, kw).astype(node.outputs[0].dtype.np),)


# ---------------------------------------------------------------------------------------------
# Derivatives. All three ops are bilinear; with y = C(x, w), D = dC/dx^T and E = dC/dw^T:
#   <h, D(g, w)> = <C(h, w), g> = <E(h, g), w>, so each op's VJP is made of the other two and
# each JVP is the op applied to one tangent at a time (product rule).


def _static_hw(x, what):
    hw = tuple(x.shape[2:])
    if not all(isinstance(d, int) for d in hw):
        raise ShapeError(f"conv2d: the derivative with respect to {what} needs static spatial "
                         f"dims, got {describe(x)}")
    return hw


def _conv(x, w, attrs):
    return apply(CONV2D, (x, w), geometry(attrs))


def _input_grad(g, w, attrs, in_size):
    return apply(CONV2D_INPUT_GRAD, (g, w), dict(geometry(attrs), in_size=tuple(in_size)))


def _filter_grad(x, g, attrs, kernel):
    return apply(CONV2D_FILTER_GRAD, (x, g), dict(geometry(attrs), kernel=tuple(kernel)))


def _plus(terms):
    terms = [t for t in terms if t is not None]
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]


def _conv_vjp(node, g):
    if g is None:
        return (None, None)
    x, w = node.inputs
    dx = _input_grad(g, w, node.attrs, _static_hw(x, "the input")) if wanted(node, 0) else None
    dw = _filter_grad(x, g, node.attrs, w.shape[2:]) if wanted(node, 1) else None
    return (dx, dw)


def _conv_jvp(node, tx, tw):
    x, w = node.inputs
    return (_plus([None if tx is None else _conv(tx, w, node.attrs),
                   None if tw is None else _conv(x, tw, node.attrs)]),)


def _input_grad_vjp(node, h):
    if h is None:
        return (None, None)
    g, w = node.inputs
    dg = _conv(h, w, node.attrs) if wanted(node, 0) else None
    dw = _filter_grad(h, g, node.attrs, w.shape[2:]) if wanted(node, 1) else None
    return (dg, dw)


def _input_grad_jvp(node, tg, tw):
    g, w = node.inputs
    size = node.attrs["in_size"]
    return (_plus([None if tg is None else _input_grad(tg, w, node.attrs, size),
                   None if tw is None else _input_grad(g, tw, node.attrs, size)]),)


def _filter_grad_vjp(node, k):
    if k is None:
        return (None, None)
    x, g = node.inputs
    dx = _input_grad(g, k, node.attrs, _static_hw(x, "the input")) if wanted(node, 0) else None
    dg = _conv(x, k, node.attrs) if wanted(node, 1) else None
    return (dx, dg)


def _filter_grad_jvp(node, tx, tg):
    x, g = node.inputs
    kernel = node.attrs["kernel"]
    return (_plus([None if tx is None else _filter_grad(tx, g, node.attrs, kernel),
                   None if tg is None else _filter_grad(x, tg, node.attrs, kernel)]),)


CONV2D = defop(
    "conv2d",
    infer=_conv_infer,
    reference=_conv_reference,
    lower=lower_conv,
    vjp=_conv_vjp,
    jvp=_conv_jvp,
    doc="2-D cross-correlation, ONNX Conv semantics (NCHW x OIHW, pads, strides, dilations, "
    "groups). VJP: conv2d_input_grad (ConvTranspose) and conv2d_filter_grad.",
)

CONV2D_INPUT_GRAD = defop(
    "conv2d_input_grad",
    infer=_input_grad_infer,
    reference=_input_grad_reference,
    lower=lower_input_grad,
    vjp=_input_grad_vjp,
    jvp=_input_grad_jvp,
    doc="Adjoint of conv2d in its input: g (N, O, Ho, Wo), filter -> (N, C, H, W) for the "
    "static input size `in_size` (ONNX ConvTranspose with the matching output_padding).",
)

CONV2D_FILTER_GRAD = defop(
    "conv2d_filter_grad",
    infer=_filter_grad_infer,
    reference=_filter_grad_reference,
    lower=lower_filter_grad,
    vjp=_filter_grad_vjp,
    jvp=_filter_grad_jvp,
    doc="Adjoint of conv2d in its filter: input x, cotangent g -> (O, C/groups, kh, kw) "
    "(a Conv with batch and channels swapped, strides and dilations exchanged).",
)


# ---------------------------------------------------------------------------------------------
# The builder


def _as_tuple(v):
    try:
        return tuple(v)
    except TypeError:
        return ()


def _pair(v, what):
    vals = (v, v) if isinstance(v, (int, np.integer)) else _as_tuple(v)
    if len(vals) != 2 or not all(_is_int(a) and a >= 1 for a in vals):
        raise shape_error(f"conv2d: {what} must be a positive int or a pair of them, got {v!r}")
    return tuple(int(a) for a in vals)


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _same_pads(x, w, strides, dilations, lower_first):
    """Explicit pads for SAME padding (output size ceil(in / stride)); extra pad at the end
    (SAME_UPPER, TensorFlow's SAME) or at the beginning (SAME_LOWER)."""
    hw = x.shape[2:]
    if not all(isinstance(d, int) for d in hw + w.shape[2:]):
        raise shape_error(f"conv2d: SAME padding needs static spatial dims, got {describe(x)} "
                          f"and the filter {describe(w)}")
    begins, ends = [], []
    for n, k, s, d in zip(hw, w.shape[2:], strides, dilations):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        small, big = total // 2, total - total // 2
        begins.append(big if lower_first else small)
        ends.append(small if lower_first else big)
    return (begins[0], begins[1], ends[0], ends[1])


def _explicit_pads(padding):
    if _is_int(padding):
        vals = (padding,) * 4
    else:
        vals = _as_tuple(padding)
        if len(vals) == 2 and all(_is_int(v) for v in vals):
            vals = vals * 2
        elif len(vals) == 2 and all(isinstance(v, (tuple, list)) and len(v) == 2 for v in vals):
            (pt, pb), (pl, pr) = vals
            vals = (pt, pl, pb, pr)
    if len(vals) != 4 or not all(_is_int(v) and v >= 0 for v in vals):
        raise shape_error(f"conv2d: padding {padding!r} must be 'VALID', 'SAME', 'SAME_LOWER', "
                          "a non-negative int, (ph, pw), ((top, bottom), (left, right)) or "
                          "(top, left, bottom, right)")
    return tuple(int(v) for v in vals)


def _pads(padding, x, w, strides, dilations):
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return (0, 0, 0, 0)
        if mode in ("SAME", "SAME_UPPER", "SAME_LOWER"):
            return _same_pads(x, w, strides, dilations, mode == "SAME_LOWER")
        raise shape_error(f"conv2d: unknown padding {padding!r}")
    return _explicit_pads(padding)


def conv2d(x, w, bias=None, strides=1, padding=0, dilations=1, groups=1, name=None):
    """2-D convolution (cross-correlation, as ONNX Conv and PyTorch) of x (N, C, H, W) with a
    filter w (O, C / groups, kh, kw); `bias` (O,) is added per output channel.

    `padding`: "VALID", "SAME" (= "SAME_UPPER"), "SAME_LOWER", an int, (ph, pw),
    ((top, bottom), (left, right)) or (top, left, bottom, right). Integer inputs are promoted
    to the default float. Returns (N, O, Ho, Wo)."""
    x, w = promote(x, w)
    if not x.dtype.is_floating:
        x, w = cast(x, default_float()), cast(w, default_float())
    for t, what in ((x, "input"), (w, "filter")):
        if t.ndim != 4:
            raise shape_error(f"conv2d: the {what} must be 4-D, got {describe(t)}")
    if not _is_int(groups) or groups < 1:
        raise shape_error(f"conv2d: groups must be a positive int, got {groups!r}")
    strides, dilations = _pair(strides, "strides"), _pair(dilations, "dilations")
    pads = _pads(padding, x, w, strides, dilations)
    attrs = {"strides": strides, "pads": pads, "dilations": dilations, "groups": int(groups)}
    if bias is None:
        return apply(CONV2D, (x, w), attrs, name=name)
    y = apply(CONV2D, (x, w), attrs)
    b = as_tensor(bias, x.dtype)
    if b.ndim != 1:
        raise shape_error(f"conv2d: the bias must be 1-D (one value per output channel), got "
                          f"{describe(b)}")
    return add(y, reshape(b, (-1, 1, 1)), name=name)
