"""Optimizers: SGD (momentum, Nesterov) and Adam (decoupled weight decay) as graph updates.

`opt.minimize(loss)` adds the gradient and update nodes and returns one Operation; optimizer
state (momentum, moments, step count) lives in non-trainable Variables, so it is resident in the
Session, saved by `sess.save` and exported by `ga.export.train_step_to_onnx` like parameters.
"""

import numpy as np

from .build import Variable, as_tensor, group
from .errors import GraphadError, GraphError, NotDifferentiableError
from .graph import Operation, Tensor, ancestors

__all__ = ["Optimizer", "SGD", "Adam"]


def _dependent_trainables(loss):
    return [n.outputs[0] for n in ancestors([loss])
            if n.op == "variable" and n.outputs[0].trainable]


def _differentiable_trainables(loss):
    """The trainable variables `loss` depends on, less those it reaches only through ops with
    no derivative (a float threshold in `x > t`, the predicate of an If): TF-1 leaves those out
    of var_list=None silently. The test is the one `gradients` applies (Plan.check_differentiable);
    when all of them are blocked, its NotDifferentiableError for the first is raised."""
    from .passes.autodiff import Plan  # noqa: PLC0415

    found = _dependent_trainables(loss)
    floats = [v for v in found if v.dtype.is_floating]
    try:
        Plan([loss], floats).check_differentiable("vjp")
        return found  # the common case: one walk, nothing blocked
    except NotDifferentiableError as e:
        error = e
    blocked = set()
    for v in floats:  # only when something is blocked: one plan per variable finds which
        try:
            Plan([loss], [v]).check_differentiable("vjp")
        except NotDifferentiableError:
            blocked.add(v)
    if len(blocked) == len(floats):
        raise error
    return [v for v in found if v not in blocked]


class Optimizer:
    """Base: builds `gradients(loss, var_list)` then one update per variable, grouped."""

    def __init__(self, learning_rate):
        self.learning_rate = learning_rate
        self._slots = {}

    def minimize(self, loss, var_list=None, name=None):
        """One Operation updating every trainable variable `loss` depends on (or `var_list`)."""
        from .passes.autodiff import gradients  # noqa: PLC0415

        if not isinstance(loss, Tensor):
            raise GraphError(f"minimize: loss must be a Tensor, got {loss!r}")
        if loss.shape != ():
            raise GraphadError(f"minimize: loss {loss.name!r} must be a scalar, has shape "
                               f"{loss.shape}")
        if var_list is None:
            var_list = _differentiable_trainables(loss)
        var_list = list(var_list)
        if not var_list:
            raise GraphadError(f"minimize: loss {loss.name!r} depends on no trainable variable")
        for v in var_list:
            if not isinstance(v, Variable) or not v.dtype.is_floating:
                raise GraphError(f"minimize: {v!r} is not a floating-point Variable")
        with loss.graph.as_default():
            grads = gradients(loss, var_list)
            return self.apply_gradients(list(zip(grads, var_list)), name=name)

    def apply_gradients(self, grads_and_vars, name=None):
        ops = []
        with _graph(grads_and_vars).as_default():
            extra = self._prepare(grads_and_vars)
            for g, v in grads_and_vars:
                ops.extend(self._update(g, v))
            ops.extend(extra)
            return group(*ops, name=name or type(self).__name__)

    def _slot(self, var, kind, value=0.0):
        key = (var.name, kind)
        if key not in self._slots:
            with var.graph.as_default():
                self._slots[key] = Variable(np.full(var.shape, value, var.dtype.np),
                                            name=f"{var.name}/{kind}", trainable=False)
        return self._slots[key]

    def _lr(self, var):
        lr = self.learning_rate
        return as_tensor(lr, var.dtype, graph=var.graph) if not isinstance(lr, Tensor) \
            else _cast(lr, var.dtype)

    def _prepare(self, grads_and_vars):
        return []

    def _update(self, g, v):
        raise NotImplementedError


def _graph(grads_and_vars):
    return grads_and_vars[0][1].graph


def _cast(t, dtype):
    from .ops import cast  # noqa: PLC0415

    return cast(t, dtype)


class SGD(Optimizer):
    """p -= lr * g; with momentum m: u = m*u + g, p -= lr * (g + m*u if nesterov else u)."""

    def __init__(self, learning_rate, momentum=0.0, nesterov=False):
        super().__init__(learning_rate)
        if momentum < 0:
            raise ValueError(f"SGD momentum must be >= 0, got {momentum}")
        if nesterov and momentum == 0:
            raise ValueError("SGD nesterov=True needs momentum > 0")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def _update(self, g, v):
        lr = self._lr(v)
        if self.momentum == 0:
            return [v.assign(v - lr * g)]
        u = self._slot(v, "momentum")
        u_new = self.momentum * u + g
        step = g + self.momentum * u_new if self.nesterov else u_new
        return [u.assign(u_new), v.assign(v - lr * step)]


class Adam(Optimizer):
    """Adam with bias correction; `weight_decay` is decoupled (AdamW): p -= lr * wd * p."""

    def __init__(self, learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(learning_rate)
        self.b1, self.b2, self.eps, self.weight_decay = b1, b2, eps, weight_decay
        self._count = None

    def _prepare(self, grads_and_vars):
        graph = _graph(grads_and_vars)
        if self._count is None:
            with graph.as_default():
                self._count = Variable(np.int32(0), name="Adam/step", trainable=False)
        self._t = self._count + 1
        return [self._count.assign(self._t)]

    def _update(self, g, v):
        from .ops import cast, power, sqrt  # noqa: PLC0415

        lr = self._lr(v)
        t = cast(self._t, v.dtype)
        m, s = self._slot(v, "m"), self._slot(v, "v")
        m_new = self.b1 * m + (1 - self.b1) * g
        s_new = self.b2 * s + (1 - self.b2) * (g * g)
        m_hat = m_new / (1 - power(as_tensor(self.b1, v.dtype, graph=v.graph), t))
        s_hat = s_new / (1 - power(as_tensor(self.b2, v.dtype, graph=v.graph), t))
        step = m_hat / (sqrt(s_hat) + self.eps)
        if self.weight_decay:
            step = step + self.weight_decay * v
        return [m.assign(m_new), s.assign(s_new), v.assign(v - lr * step)]


_ = Operation
