"""Optimizers, gradient clipping and learning-rate schedules.

Every optimizer's ``update(params, grads)`` changes the arrays of `params`
in place (so views and tied weights stay shared) and never changes `grads`.
Per-parameter state (velocities, moment estimates) is keyed by position in
the list, so pass the same list in the same order each time.

weight_decay adds ``weight_decay * param`` to the gradient before the
update (coupled L2, PyTorch's ``weight_decay``).
"""
import numbers

import numpy as np


def _check_rate(value, name, allow_zero=False, below_one=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero) or \
            (below_one and value >= 1):
        rng = "[0, 1)" if below_one else (">= 0" if allow_zero else "> 0")
        raise ValueError(f"{name}: expected a number {rng}, got {value!r}")
    return float(value)


class Optimizer:
    """Base class: lr, weight_decay, position-keyed state."""

    def __init__(self, lr, weight_decay=0.0):
        self.lr = _check_rate(lr, "lr")
        self.weight_decay = _check_rate(weight_decay, "weight_decay", allow_zero=True)
        self.state = None          # list of per-parameter state, built on first update
        self.t = 0                 # number of updates done

    def _grads(self, params, grads):
        if len(params) != len(grads):
            raise ValueError(f"grads: expected {len(params)} arrays (one per param), "
                             f"got {len(grads)}")
        for i, (p, g) in enumerate(zip(params, grads)):
            if np.shape(p) != np.shape(g):
                raise ValueError(f"grads[{i}]: expected shape {np.shape(p)} like "
                                 f"params[{i}], got shape {np.shape(g)}")
        if self.state is not None and len(self.state) != len(params):
            raise ValueError(f"params: this optimizer holds state for {len(self.state)} "
                             f"arrays, got {len(params)}; use a new optimizer")
        if self.weight_decay:
            return [g + self.weight_decay * p for p, g in zip(params, grads)]
        return grads

    def _init_state(self, params, n):
        if self.state is None:
            self.state = [tuple(np.zeros_like(p) for _ in range(n)) for p in params]

    def update(self, params, grads):
        grads = self._grads(params, grads)
        self.t += 1
        self._update(params, grads)

    def __repr__(self):
        return f"{type(self).__name__}(lr={self.lr}, weight_decay={self.weight_decay})"


class SGD(Optimizer):
    """p -= lr * g"""

    def __init__(self, lr=0.01, weight_decay=0.0):
        super().__init__(lr, weight_decay)

    def _update(self, params, grads):
        for p, g in zip(params, grads):
            p -= self.lr * g


class Momentum(Optimizer):
    """v = momentum * v - lr * g;  p += v   (the textbook's form)."""

    def __init__(self, lr=0.01, momentum=0.9, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.momentum = _check_rate(momentum, "momentum", allow_zero=True, below_one=True)

    def _update(self, params, grads):
        self._init_state(params, 1)
        for p, g, (v,) in zip(params, grads, self.state):
            v *= self.momentum
            v -= self.lr * g
            p += v


class Nesterov(Momentum):
    """Nesterov's accelerated gradient (Sutskever et al. 2013, in the form of
    Bengio et al. 2012): v = momentum * v - lr * g;  p += momentum * v - lr * g."""

    def _update(self, params, grads):
        self._init_state(params, 1)
        for p, g, (v,) in zip(params, grads, self.state):
            v *= self.momentum
            v -= self.lr * g
            p += self.momentum * v - self.lr * g


class AdaGrad(Optimizer):
    """h += g^2;  p -= lr * g / (sqrt(h) + eps)."""

    def __init__(self, lr=0.01, eps=1e-7, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.eps = _check_rate(eps, "eps")

    def _update(self, params, grads):
        self._init_state(params, 1)
        for p, g, (h,) in zip(params, grads, self.state):
            h += g * g
            p -= self.lr * g / (np.sqrt(h) + self.eps)


class RMSprop(Optimizer):
    """h = decay_rate * h + (1 - decay_rate) g^2;  p -= lr * g / (sqrt(h) + eps)."""

    def __init__(self, lr=0.01, decay_rate=0.99, eps=1e-7, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.decay_rate = _check_rate(decay_rate, "decay_rate", allow_zero=True,
                                      below_one=True)
        self.eps = _check_rate(eps, "eps")

    def _update(self, params, grads):
        self._init_state(params, 1)
        rho = self.decay_rate
        for p, g, (h,) in zip(params, grads, self.state):
            h *= rho
            h += (1 - rho) * g * g
            p -= self.lr * g / (np.sqrt(h) + self.eps)


class Adam(Optimizer):
    """Kingma & Ba (2015), as PyTorch: m, v moving averages of g and g^2;
    p -= lr * m_hat / (sqrt(v_hat) + eps) with the bias corrections
    m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t)."""

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.beta1 = _check_rate(beta1, "beta1", allow_zero=True, below_one=True)
        self.beta2 = _check_rate(beta2, "beta2", allow_zero=True, below_one=True)
        self.eps = _check_rate(eps, "eps")

    def _update(self, params, grads):
        self._init_state(params, 2)
        b1, b2, t = self.beta1, self.beta2, self.t
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        for p, g, (m, v) in zip(params, grads, self.state):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            p -= (self.lr / c1) * m / (np.sqrt(v / c2) + self.eps)


def clip_grads(grads, max_norm):
    """Scale all `grads` in place so that their global L2 norm is at most
    `max_norm`; returns the norm before clipping.  Arrays listed twice
    (shared) are counted once."""
    max_norm = _check_rate(max_norm, "max_norm")
    unique = list({id(g): g for g in grads}.values())
    total = float(np.sqrt(sum(float(np.square(g, dtype=np.float64).sum()) for g in unique)))
    if total > max_norm:
        rate = max_norm / (total + 1e-6)
        for g in unique:
            g *= rate
    return total


class StepDecay:
    """Zaremba et al.'s schedule: lr constant for the first `start_epoch`
    epochs, then multiplied by `decay` each epoch:

        lr(epoch) = lr0 * decay ** max(0, epoch - start_epoch),  epoch = 1, 2, ...

    ``step(epoch)`` sets ``optimizer.lr`` for that epoch and returns it.
    """

    def __init__(self, optimizer, decay=0.5, start_epoch=4, lr0=None):
        self.optimizer = optimizer
        self.decay = _check_rate(decay, "decay")
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, numbers.Integral) \
                or start_epoch < 0:
            raise ValueError(f"start_epoch: expected an integer >= 0, got {start_epoch!r}")
        self.start_epoch = int(start_epoch)
        self.lr0 = optimizer.lr if lr0 is None else _check_rate(lr0, "lr0")

    def lr_at(self, epoch):
        return self.lr0 * self.decay ** max(0, epoch - self.start_epoch)

    def step(self, epoch):
        self.optimizer.lr = self.lr_at(epoch)
        return self.optimizer.lr


class ReduceOnPlateau:
    """The textbook's schedule: when the monitored value (e.g. validation
    perplexity, lower is better) does not improve on the best so far,
    multiply lr by `factor` (0.25 is the textbook's ``lr /= 4``).

    ``step(value)`` returns True when `value` is a new best.
    """

    def __init__(self, optimizer, factor=0.25, min_lr=0.0):
        self.optimizer = optimizer
        self.factor = _check_rate(factor, "factor", below_one=True)
        self.min_lr = _check_rate(min_lr, "min_lr", allow_zero=True)
        self.best = None

    def step(self, value):
        value = float(value)
        if self.best is None or value < self.best:
            self.best = value
            return True
        self.optimizer.lr = max(self.optimizer.lr * self.factor, self.min_lr)
        return False
