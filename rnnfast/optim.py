"""Optimizers, gradient clipping and learning-rate schedules.

Every optimizer's ``update(params, grads)`` changes the arrays of `params`
in place (so views and tied weights stay shared) and never changes `grads`.
Every param must be a writable floating-point numpy array; all params and
grads are checked before anything is changed, so a refused update leaves no
partial step.

An array listed more than once in `params` (a tied weight, listed once per
use with that use's gradient, as in DLFS2) is one parameter, as in PyTorch:
it is updated once, with the sum of its gradients, and has one state.  "The
same array" is the same object or another view of exactly the same memory
(same data pointer, shape, strides and dtype: ``W.reshape(W.shape)``), since
updating either updates both; views that only partly overlap (``W`` and
``W.T``) are separate parameters.  Per-parameter state (velocities, moment
estimates) is kept per distinct array in order of first appearance, so pass
the same list in the same order each time.

weight_decay adds ``weight_decay * param`` to the gradient before the
update (coupled L2, PyTorch's ``weight_decay``), except in AdamW, which
shrinks the param itself (decoupled, Loshchilov & Hutter 2019).

Each step is written below as NumPy lines.  A float32 or float64 param
(with its grad and state of its dtype, shape and memory order, none
overlapping) takes it in one compiled pass over rnnfast's threads instead,
all params in one call (src/_rowops.h, src/_rowops.pxi): the same values
bit for bit (a NaN's sign aside), but no RuntimeWarning for an overflow or
an invalid value on the way; under ``np.errstate(over="raise")`` and the
like the NumPy lines run.
"""
import math
import numbers

import numpy as np

from . import _rnn
from ._repr import init_repr


def _check_rate(value, name, allow_zero=False, below_one=False):
    rng = "in [0, 1)" if below_one else (">= 0" if allow_zero else "> 0")
    number = math.nan
    if not isinstance(value, bool) and isinstance(value, numbers.Real):
        try:                            # Fraction, Decimal-like, ints beyond float
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            pass
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero) or \
            (below_one and number >= 1):
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise ValueError(f"{name}: expected a number {rng}, got {shown}")
    return number


def _type_name(obj):
    t = type(obj)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__name__}"


def _distinct(params):
    """None when every array of `params` is distinct; otherwise (firsts,
    repeats): the position of each distinct array's first listing and the
    positions of its later listings (the same object, or a view of exactly
    the same memory); compiled (_rnn.distinct_positions)."""
    return _rnn.distinct_positions(params)


class Optimizer:
    """Base class: lr, weight_decay, state per distinct parameter."""

    # The grouping of the last params list, reused while the list holds the
    # same arrays with the same shapes (the common case: every batch).
    _layout_key = None          # ids and shapes of that list
    _layout_params = None       # its arrays, kept alive so that their ids stay theirs
    _layout = None              # _distinct() of it
    _decoupled_decay = False    # AdamW: weight_decay shrinks params, not added to grads

    def __init__(self, lr, weight_decay=0.0):
        self.lr = _check_rate(lr, "lr")
        self.weight_decay = _check_rate(weight_decay, "weight_decay", allow_zero=True)
        self.state = None          # list of per-parameter state, built on first update
        self.t = 0                 # number of updates done

    def __getstate__(self):
        # The grouping cache is not state: its arrays would make a copy of
        # every parameter in a pickle or deepcopy of the optimizer alone,
        # and its ids mean nothing in the copy.  Rebuilt on the next update.
        state = self.__dict__.copy()
        for name in ("_layout_key", "_layout_params", "_layout"):
            state.pop(name, None)
        return state

    def _grads(self, params, grads):
        """Check every param and grad (nothing is changed yet); return the
        distinct params and, for each, the sum of its grads (+ weight decay)."""
        if len(params) != len(grads):
            raise ValueError(f"grads: expected {len(params)} arrays (one per param), "
                             f"got {len(grads)}")
        key = []
        for i, (p, g) in enumerate(zip(params, grads)):
            # `p -= step` on anything but a writable array would rebind a local
            if not isinstance(p, np.ndarray):
                raise TypeError(f"params[{i}]: expected a numpy array (updated in place), "
                                f"got {_type_name(p)}")
            if p.dtype.kind != "f":
                raise TypeError(f"params[{i}]: expected a floating-point array, got "
                                f"dtype {p.dtype}")
            if not p.flags.writeable:
                raise ValueError(f"params[{i}]: the array is read-only; the optimizer "
                                 f"updates params in place")
            if not isinstance(g, np.ndarray) or g.dtype.kind not in "fiu":
                raise TypeError(f"grads[{i}]: expected a numpy array of real numbers, got "
                                f"{_type_name(g) if not isinstance(g, np.ndarray) else g.dtype}")
            if p.shape != g.shape:
                raise ValueError(f"grads[{i}]: expected shape {p.shape} like "
                                 f"params[{i}], got shape {g.shape}")
            key.append(id(p))
            key.append(p.shape)
        key = tuple(key)
        if key != self._layout_key:
            self._layout = _distinct(params)
            self._layout_key, self._layout_params = key, tuple(params)
        firsts = range(len(params))
        if self._layout is not None:
            firsts, repeats = self._layout
            summed = []
            for i, later in zip(firsts, repeats):
                g = grads[i]
                for j in later:
                    g = g + grads[j]            # a new array: grads are left alone
                summed.append(g)
            params, grads = [params[i] for i in firsts], summed
        if self.state is not None:
            if len(self.state) != len(params):
                raise ValueError(f"params: this optimizer holds state for {len(self.state)} "
                                 f"arrays, got {len(params)} distinct arrays; use a new "
                                 f"optimizer")
            for i, p, entry in zip(firsts, params, self.state):
                if entry and entry[0].shape != p.shape:
                    raise ValueError(f"params[{i}]: shape {entry[0].shape} when this "
                                     f"optimizer's state was built, now {p.shape}; use a "
                                     f"new optimizer")
        if self.weight_decay and not self._decoupled_decay:
            grads = [g + self.weight_decay * p for p, g in zip(params, grads)]
        return params, grads

    def _init_state(self, params, n):
        if self.state is None:
            self.state = [tuple(np.zeros_like(p) for _ in range(n)) for p in params]

    def update(self, params, grads):
        """One step (t += 1): changes `params` in place from `grads`, one
        per param, of its shape; an array listed twice is updated once,
        with the sum of its grads.  Everything is checked first (TypeError,
        ValueError), so a refused update changes nothing."""
        params, grads = self._grads(params, grads)
        self.t += 1
        self._update(params, grads)

    __repr__ = init_repr


# NumPy's floating-point error modes under which the compiled steps may run
# in place of the NumPy lines (they raise no FloatingPointError and call no
# handler).
_QUIET_ERRORS = frozenset(("warn", "ignore"))


def _python_scalars(*values):
    """Whether every value is a Python float or int: NumPy rounds such a
    scalar to the arrays' type, as the compiled steps do; a NumPy float64
    (say an lr set to one) would make NumPy's step in double instead."""
    return all(type(v) in (float, int) for v in values)


def _compiled_steps(kind, params, grads, state, scalars):
    """An optimizer's step on each param in one compiled pass over
    rnnfast's threads (_rnn.optimizer_steps: its kinds, the scalars in its
    order, the layouts it takes), the bits of the optimizer's NumPy lines.
    Returns the positions left to those lines: every one unless the scalars
    are Python numbers (_python_scalars) and NumPy's floating-point error
    handling is at "warn" or "ignore" (under np.errstate(over="raise") and
    the like the NumPy lines run, to raise as before); otherwise those of
    arrays the loop does not take (a subclass such as np.matrix, another
    dtype or memory order, overlapping memory).  The loops give no
    RuntimeWarning for an overflow or a NaN made on the way."""
    if not (_python_scalars(*scalars) and _QUIET_ERRORS.issuperset(np.geterr().values())):
        return range(len(params))
    return _rnn.optimizer_steps(kind, params, grads, state, tuple(scalars))


class SGD(Optimizer):
    """p -= lr * g"""

    def __init__(self, lr=0.01, weight_decay=0.0):
        super().__init__(lr, weight_decay)

    def _update(self, params, grads):
        # NumPy made two passes and a temporary of p's size, on one thread
        for i in _compiled_steps("sgd", params, grads, [()] * len(params), (self.lr,)):
            p = params[i]
            p -= self.lr * grads[i]


class Momentum(Optimizer):
    """v = momentum * v - lr * g;  p += v   (the textbook's form).

    This equals torch.optim.SGD(momentum=...) only while lr is constant:
    torch keeps the velocity in gradient units (b = momentum * b + g) and
    steps by the current lr * b, so when lr changes its whole velocity is
    rescaled at once, whereas here v keeps the old lr's steps (they fade at
    the rate `momentum`).  To follow torch, rescale the velocities whenever
    you change lr: ``for (v,) in opt.state: v *= new_lr / opt.lr`` before
    setting ``opt.lr = new_lr``.
    """

    def __init__(self, lr=0.01, momentum=0.9, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.momentum = _check_rate(momentum, "momentum", allow_zero=True, below_one=True)

    def _update(self, params, grads):
        self._init_state(params, 1)
        for i in _compiled_steps("momentum", params, grads, self.state,
                                 (self.momentum, self.lr)):
            p, g, (v,) = params[i], grads[i], self.state[i]
            v *= self.momentum
            v -= self.lr * g
            p += v


class Nesterov(Momentum):
    """Nesterov's accelerated gradient (Sutskever et al. 2013, in the form of
    Bengio et al. 2012): v = momentum * v - lr * g;  p += momentum * v - lr * g.

    Like Momentum, this equals torch.optim.SGD(momentum=..., nesterov=True)
    only while lr is constant (torch's velocity is in gradient units and is
    multiplied by the current lr); rescale ``opt.state``'s velocities by
    new_lr / old_lr when changing lr to follow torch.
    """

    def _update(self, params, grads):
        self._init_state(params, 1)
        for i in _compiled_steps("nesterov", params, grads, self.state,
                                 (self.momentum, self.lr)):
            p, g, (v,) = params[i], grads[i], self.state[i]
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
        # RMSprop's step with rho = 1 - rho = 1: h * 1 and 1 * g are exact
        for i in _compiled_steps("rmsprop", params, grads, self.state,
                                 (1.0, 1.0, self.lr, self.eps)):
            p, g, (h,) = params[i], grads[i], self.state[i]
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
        for i in _compiled_steps("rmsprop", params, grads, self.state,
                                 (rho, 1 - rho, self.lr, self.eps)):
            p, g, (h,) = params[i], grads[i], self.state[i]
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
        self._adam_steps(params, grads, None)

    def _adam_steps(self, params, grads, shrink):
        """Adam's step on each param, after p *= shrink unless shrink is
        None (AdamW's decay; the params are distinct arrays, so shrinking
        each just before its step is shrinking all first)."""
        self._init_state(params, 2)
        b1, b2, t = self.beta1, self.beta2, self.t
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        scalars = (b1, 1 - b1, b2, 1 - b2, self.lr / c1, c2, self.eps)
        if shrink is None:
            left = _compiled_steps("adam", params, grads, self.state, scalars)
        else:                               # the shrink in the same pass
            left = _compiled_steps("adamw", params, grads, self.state, scalars + (shrink,))
        for i in left:
            p, g, (m, v) = params[i], grads[i], self.state[i]
            if shrink is not None:
                p *= shrink
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            p -= (self.lr / c1) * m / (np.sqrt(v / c2) + self.eps)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as
    ``torch.optim.AdamW``: p *= 1 - lr * weight_decay, then Adam's step on
    the gradient alone.  Default weight_decay 0.01, PyTorch's."""
    _decoupled_decay = True

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
        super().__init__(lr, beta1, beta2, eps, weight_decay)

    def _update(self, params, grads):
        shrink = 1 - self.lr * self.weight_decay if self.weight_decay else None
        self._adam_steps(params, grads, shrink)


def _distinct_arrays(arrays, name="grads"):
    """`arrays` without later listings of an array (the same object, or a
    view of exactly the same memory; see `_distinct`), each checked to be a
    float ndarray (TypeError naming it)."""
    arrays = list(arrays)
    for i, g in enumerate(arrays):
        if not isinstance(g, np.ndarray) or g.dtype.kind != "f":
            what = f"dtype {g.dtype}" if isinstance(g, np.ndarray) else _type_name(g)
            raise TypeError(f"{name}[{i}]: expected a floating-point numpy array, got {what}")
    layout = _distinct(arrays)
    return arrays if layout is None else [arrays[i] for i in layout[0]]


def _sum_squares(arrays):
    """The sum of the squares of all values of float `arrays`, in double
    (no float32 square overflows where the sum is finite: |g| ~ 1e19, the
    very gradients clipping is for), in one compiled pass each
    (_rnn.sum_squares), by NumPy for the layouts that does not take."""
    total, left = _rnn.sum_squares(arrays)
    for i in left:
        total += float(np.square(arrays[i], dtype=np.float64).sum())
    return total


def _add_scaled(ys, xs, a):
    """y += a * x for each pair of float arrays of one shape and dtype (an
    L2 penalty's gradient: grads += alpha * params), `a` rounded to y's
    type; in one compiled pass each where the layouts allow, NumPy's line
    otherwise (the same bits)."""
    for i in _compiled_steps("axpy", ys, xs, [()] * len(ys), (float(a),)):
        y = ys[i]
        y += y.dtype.type(a) * xs[i]


def _norm_of_distinct(arrays):
    """The L2 norm of distinct float arrays (_sum_squares)."""
    return math.sqrt(_sum_squares(arrays))


def global_norm(grads):
    """The L2 norm of all `grads` (float arrays) together, each distinct
    array counted once."""
    return _norm_of_distinct(_distinct_arrays(grads))


def clip_grads(grads, max_norm):
    """Scale all `grads` in place so that their global L2 norm is at most
    `max_norm` (Pascanu et al.; ``torch.nn.utils.clip_grad_norm_``); returns
    the norm before clipping.  Arrays listed twice (shared) are counted and
    scaled once.  A non-finite norm leaves the grads as they are (scaling
    by max_norm/inf would turn inf entries into NaN): check the returned
    norm."""
    max_norm = _check_rate(max_norm, "max_norm")
    unique = _distinct_arrays(grads)
    total = _norm_of_distinct(unique)
    if math.isfinite(total) and total > max_norm:
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

    __repr__ = init_repr

    def __init__(self, optimizer, decay=0.5, start_epoch=4, lr0=None):
        self.optimizer = optimizer
        self.decay = _check_rate(decay, "decay")
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, numbers.Integral) \
                or start_epoch < 0:
            raise ValueError(f"start_epoch: expected an integer >= 0, got {start_epoch!r}")
        self.start_epoch = int(start_epoch)
        self.lr0 = optimizer.lr if lr0 is None else _check_rate(lr0, "lr0")

    def lr_at(self, epoch):
        """lr0 * decay ** max(0, epoch - start_epoch); changes nothing.
        epoch: an integer >= 1."""
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 1:
            raise ValueError(f"epoch: expected an integer >= 1 (epochs count from 1), "
                             f"got {epoch!r}")
        return self.lr0 * self.decay ** max(0, int(epoch) - self.start_epoch)

    def step(self, epoch):
        """Set optimizer.lr to lr_at(epoch) (epoch counts from 1) and
        return it."""
        self.optimizer.lr = self.lr_at(epoch)
        return self.optimizer.lr


class ReduceOnPlateau:
    """The textbook's schedule: when the monitored value does not improve on
    the best so far, multiply lr by `factor` (0.25 is the textbook's
    ``lr /= 4``), but not below `min_lr`; lr is never raised (a min_lr above
    the current lr leaves it alone), as in PyTorch's ReduceLROnPlateau.

    mode: "min" (default: lower is better, e.g. validation perplexity) or
        "max" (higher is better, e.g. accuracy), PyTorch's `mode`.  A
        Trainer refuses a fit whose `mode` is not the schedule's.

    As in PyTorch the first value is compared with +inf ("min") or -inf
    ("max"): NaN, and +inf in "min" (-inf in "max"), are bad epochs, never
    the best.
    ``best`` is None until a value improves (None rather than inf, so that
    checkpoints stay plain JSON).

    ``step(value)`` returns True when `value` is a new best.
    """

    __repr__ = init_repr

    def __init__(self, optimizer, factor=0.25, min_lr=0.0, mode="min"):
        self.optimizer = optimizer
        self.factor = _check_rate(factor, "factor", below_one=True)
        self.min_lr = _check_rate(min_lr, "min_lr", allow_zero=True)
        if mode not in ("min", "max"):
            raise ValueError(f"mode: expected 'min' or 'max', got {mode!r}")
        self.mode = mode
        self.best = None

    def step(self, value):
        """Record one epoch's monitored value: True when it beats the best
        so far (then .best = value); otherwise lr *= factor, floored at
        min_lr and never raised, and False (NaN is never a best).  A value
        float() refuses raises TypeError or ValueError."""
        value = float(value)
        if getattr(self, "mode", "min") == "max":    # schedules pickled before mode: "min"
            better = value > (-math.inf if self.best is None else self.best)
        else:
            better = value < (math.inf if self.best is None else self.best)
        if better:                                   # False for NaN
            self.best = value
            return True
        lr = self.optimizer.lr
        new_lr = max(lr * self.factor, self.min_lr)
        if new_lr < lr:
            self.optimizer.lr = new_lr
        return False
