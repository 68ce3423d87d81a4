"""Loss layers: forward(scores, targets, ...) -> float loss, then
backward(dout=1.0) -> d(loss)/d(scores) of the scores' shape and dtype
(dout: dL/dloss, a finite real number).

    SoftmaxWithLoss      logits (N, V),    int targets (N,)      many-to-one
    TimeSoftmaxWithLoss  logits (N, T, V), int targets (N, T)    per step
    TimeSigmoidWithLoss  logits (N, T) or (N, T, K), targets in [0, 1], same shape
    MSELoss, HuberLoss   predictions and targets of one shape

Softmax and sigmoid losses work from the logits (log-sum-exp), so they stay
finite for any finite logits.  Reductions:

    "mean"      the mean over the targets that count (default)
    "sum_time"  summed over time, averaged over the batch (Zaremba et al. 2014)
    "sum"       the plain sum

A target counts unless it equals `ignore_label` or `mask` (N, T) is false
there.  With no target counting the loss is 0 and the gradient zero.
The scores' dtype (float32 or float64) is kept; other inputs become float64.

sample_weight (N,), weights >= 0 of the samples (scikit-learn's, as in
MLPClassifier): each counted target's loss is multiplied by its sample's
weight, and "mean" divides by the sum of the counted targets' weights
("sum_time" by the sum of the batch's weights) instead of their number.
All weights 1 is the unweighted loss; weights summing to 0 give loss 0.
"""
import math
import numbers

import numpy as np

from . import _core, _rnn
from ._repr import init_repr
from ._validation import (check_array, check_int, check_int_targets, check_mask,
                          check_sample_weight, finite_array, nonfinite_error)

REDUCTIONS = ("mean", "sum_time", "sum")


def _float_dtype(x):
    dt = np.asarray(x).dtype
    return dt if dt in (np.float32, np.float64) else np.dtype(np.float64)


def _check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _denominator(reduction, count, batch):
    """What the summed loss is divided by: the counted targets (their
    weight, with sample_weight) for "mean", the batch (its weight) for
    "sum_time", 1 for "sum"; a zero divides by 1 (loss 0)."""
    if reduction == "mean":
        return count if count > 0 else 1
    if reduction == "sum_time":
        return batch if batch > 0 else 1
    return 1


# the largest finite value of each scores' type, for _backward_scale
_LARGEST = {np.dtype(np.float32): float(np.finfo(np.float32).max),
            np.dtype(np.float64): float(np.finfo(np.float64).max)}


def _backward_scale(dout, denom, dtype):
    """dout / denom as a `dtype` scalar, the factor of a loss's backward:
    dout (dL/dloss) must be a real number, and the factor finite (a NaN or
    Inf dout, or one that overflows the scores' type, would fill the whole
    gradient with them).  In Python floats: np.errstate alone cost ~2 us,
    much of a small batch's loss (docs/performance.md item 151)."""
    value = dout
    if type(value) is not float:
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value[()]                   # a 0-d array: its number
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"dout: expected a real number (dL/dloss), got "
                            f"{type(dout).__name__} {dout!r}")
        try:
            value = float(value)
        except OverflowError:                   # an int past float64's range
            value = math.inf
    scale = value / float(denom)
    largest = _LARGEST.get(dtype) or float(np.finfo(dtype).max)
    if not abs(scale) <= largest:               # NaN fails it too
        raise ValueError(f"dout: expected a finite number whose quotient by the loss's "
                         f"denominator ({denom}) fits {dtype.name}, got {dout!r}")
    return dtype.type(scale)


def log_softmax(x, axis=-1):
    """log softmax by log-sum-exp: finite for any finite x."""
    s = x - x.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


# False: picked_log_softmax takes NumPy's path always (A/B timings, tests).
_COMPILED_SOFTMAX = True


def picked_log_softmax(x, cls, rows=None):
    """log softmax(x)[r, cls] for the rows r of x (R, V) (`rows`, or all),
    in float64, with the parts a softmax gradient needs: returns (log p,
    e, z), e = exp(x - rowmax) in a new array (all rows) and z (R, 1) its
    row sums, so softmax = e / z.  One exp and one array of x's size:
    log p = (x - max)[r, cls] - log z.  Its arguments are not checked (the
    losses check theirs first).

    A C-contiguous float32 or float64 x (every loss's) goes to a compiled
    pass, rows over rnnfast's threads: two passes over each row, where
    NumPy's version below makes six over the whole array (a language
    model's 700 x 10,000 logits: 7.5 -> 4.4 ms, 2.2 at 2 threads;
    docs/performance.md item 118).  z is summed in double there, and log p
    taken from that sum."""
    rows = np.arange(x.shape[0]) if rows is None else rows
    if (_COMPILED_SOFTMAX and x.ndim == 2 and x.shape[1] >= 1 and x.flags.c_contiguous
            and x.dtype in (np.float32, np.float64)):
        e = _core.empty_output(1, x.shape[0], x.shape[1], x.dtype)[0]
        z = np.empty(x.shape[0], np.float64)
        top = np.empty(x.shape[0], x.dtype)
        _rnn.softmax_rows(x, e, z, top)
        picked = x[rows, cls].astype(np.float64) - top[rows]
        return picked - np.log(z[rows]), e, z.astype(x.dtype)[:, None]
    e = np.subtract(x, x.max(axis=1, keepdims=True))
    picked = e[rows, cls].astype(np.float64)
    np.exp(e, out=e)
    z = e.sum(axis=1, keepdims=True)
    return picked - np.log(z[rows, 0].astype(np.float64)), e, z


def _softmax_with_targets(x, ts, ignore_label, compiled):
    """A softmax cross-entropy's parts for logits x (R, V), V >= 1, C order,
    and int targets ts (R,) (intp): (e, z, picked, share, cls, counted) with
    e = exp(x - row max) (R, V), z its row sums (R,) in double, picked (R,)
    x[r, t] - row max in double where row r's target t counts (log p =
    picked - log z), share (R,) in x's type 1 there and 0 for a target equal
    to ignore_label, cls (R,) the targets that count (0 elsewhere), counted
    their number.  A target neither in 0..V-1 nor ignore_label raises the
    ValueError check_int_targets gives, before anything is computed.

    One compiled call (_rnn.softmax_loss_rows, rows over rnnfast's threads)
    where NumPy took a dozen operations: at a scikit-learn user's batch of 32
    rows the loss's forward took 29 us in a training loop
    (docs/performance.md item 151); NumPy's lines below when
    compiled is false (tests compare the two): _COMPILED_SOFTMAX, read
    once by the caller.  The compiled pass leaves z[r] NaN for a row r with
    a NaN or Inf (finite rows sum to 1..V); NumPy's lines expect finite x."""
    R, V = x.shape
    if compiled:
        e = _core.empty_output(1, R, V, x.dtype)[0]
        z, picked = np.empty(R, np.float64), np.empty(R, np.float64)
        share, cls = np.empty(R, x.dtype), np.empty(R, np.intp)
        counted = _rnn.softmax_loss_rows(x, ts, ignore_label, e, z, picked, share, cls)
        if counted < 0:
            _raise_bad_target(ts, V, ignore_label, -1 - counted)
        return e, z, picked, share, cls, counted
    counts = ts != ignore_label
    bad = counts & ((ts < 0) | (ts >= V))
    if bad.any():
        _raise_bad_target(ts, V, ignore_label, np.flatnonzero(bad)[0])
    cls = np.where(counts, ts, 0)
    e = np.subtract(x, x.max(axis=1, keepdims=True))
    picked = np.where(counts, e[np.arange(R), cls].astype(np.float64), 0.0)
    np.exp(e, out=e)
    z = e.sum(axis=1).astype(np.float64)
    return e, z, picked, counts.astype(x.dtype), cls, int(counts.sum())


def _raise_bad_target(ts, V, ignore_label, i):
    raise ValueError(f"ts: class ids must lie in 0..{V - 1} (or equal "
                     f"ignore_label={ignore_label}), got {ts[i]}")


class _SoftmaxLoss:
    _lead = None                       # ("N",) or ("N", "T")

    __repr__ = init_repr

    def __init__(self, ignore_label=-1, reduction="mean"):
        self.ignore_label = check_int(ignore_label, "ignore_label", minimum=-2 ** 62)
        if self.ignore_label > 2 ** 62:
            # the compiled pass compares it with int64 targets (a C ssize_t)
            raise ValueError(f"ignore_label: expected an integer in -2**62..2**62, got "
                             f"{ignore_label}")
        self.reduction = _check_reduction(reduction)
        self.params, self.grads = [], []
        self._cache = None

    def forward(self, xs, ts, mask=None, sample_weight=None):
        """The loss (a float) of logits xs and int targets ts (see the
        subclass for the shapes); mask and sample_weight as in the module
        doc.  Keeps the softmax for backward."""
        dt = _float_dtype(xs)
        # the compiled pass finds a NaN or Inf in xs as it reads each row
        # (z is NaN there): a language model's logits are the step's largest
        # array, and a scan of their own was half of the 3 % of DLFS2's
        # Rnnlm step that finiteness scans took (docs/performance.md items 161, 164)
        compiled = _COMPILED_SOFTMAX
        xs = check_array(xs, "xs", dt, self._lead + ("V",), allow_nonfinite=compiled)
        lead, V = xs.shape[:-1], xs.shape[-1]
        if V == 0:
            raise ValueError(f"xs: a softmax needs at least one class (V >= 1), got "
                             f"shape {xs.shape}")
        ts = check_int_targets(ts, "ts", lead, None, self.ignore_label)   # range: below
        # the output layer of a language model makes xs the largest array of
        # a training step: one exp over it and one new array of its size
        e, z, picked, share, cls, counted = _softmax_with_targets(
            xs.reshape(-1, V), ts.reshape(-1), self.ignore_label, compiled)
        if compiled and not finite_array(z):
            raise nonfinite_error("xs", xs.shape)
        m = check_mask(mask, lead)
        w = check_sample_weight(sample_weight, lead[0])
        R = e.shape[0]
        # share: each row's share of the gradient, before dout/denom: 1 (or
        # its sample's weight) where its target counts, 0 elsewhere
        if m is not None:
            share[~m.reshape(-1)] = 0
        rows = None if m is None and counted == R else np.flatnonzero(share)  # None: all
        logp_t = picked - np.log(z) if rows is None else picked[rows] - np.log(z[rows])
        if w is None:
            denom = _denominator(self.reduction, R if rows is None else rows.size, lead[0])
        else:
            rows = np.arange(R) if rows is None else rows
            w_rows = w[rows // (R // max(lead[0], 1))] if rows.size else w[:0]
            share[rows] = w_rows
            logp_t = logp_t * w_rows
            denom = _denominator(self.reduction, w_rows.sum(), w.sum())
        self._cache = (e, z, share, cls, denom, xs.shape)
        return float(-logp_t.sum() / denom) + 0.0      # + 0.0: no -0.0 when none counts

    def backward(self, dout=1.0):
        """d(loss * dout)/d(xs), of xs's shape and dtype."""
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        e, z, share, cls, denom, shape = self._cache
        # d(-log p_t)/dx = softmax(x) - onehot(t), times the row's share
        scale = _backward_scale(dout, denom, e.dtype)
        dx = _core.empty_output(1, *e.shape, e.dtype)[0]
        if _COMPILED_SOFTMAX:
            _rnn.softmax_loss_grad(e, z, share, cls, float(scale), dx)
        else:
            f = share * scale                                   # (R,)
            np.multiply(e, (f / z.astype(e.dtype))[:, None], out=dx)
            rows = np.flatnonzero(f)
            dx[rows, cls[rows]] -= f[rows]
        return dx.reshape(shape)


class SoftmaxWithLoss(_SoftmaxLoss):
    """Cross-entropy of softmax(xs) for xs (N, V) and int targets ts (N,).

    ignore_label: targets equal to it do not count (default -1).
    reduction: "mean" (over counted targets) or "sum".
    """
    _lead = ("N",)

    def __init__(self, ignore_label=-1, reduction="mean"):
        if reduction == "sum_time":
            raise ValueError("reduction: 'sum_time' needs a time axis; use "
                             "TimeSoftmaxWithLoss, or 'mean' or 'sum'")
        super().__init__(ignore_label, reduction)


class TimeSoftmaxWithLoss(_SoftmaxLoss):
    """Cross-entropy of softmax(xs) for xs (N, T, V) and int targets ts (N, T).

    forward(xs, ts, mask=None): mask (N, T), where false, drops a step.
    ignore_label: targets equal to it do not count (default -1).
    reduction: "mean" per counted token (default; exp(loss) is perplexity),
        "sum_time" (summed over time, averaged over batch) or "sum".
    """
    _lead = ("N", "T")


class TimeSigmoidWithLoss:
    """Binary cross-entropy of sigmoid(xs) for xs (N, T) or (N, T, K) and
    targets ts of the same shape in [0, 1] (soft labels allowed).

    forward(xs, ts, mask=None, sample_weight=None): mask (N, T) drops
    steps (all K outputs); sample_weight (N,) as in the module doc.
    reduction: "mean" over counted elements, "sum_time" or "sum".
    """

    __repr__ = init_repr

    def __init__(self, reduction="mean"):
        self.reduction = _check_reduction(reduction)
        self.params, self.grads = [], []
        self._cache = None

    def forward(self, xs, ts, mask=None, sample_weight=None):
        """The loss (a float); keeps sigmoid(xs) for backward."""
        dt = _float_dtype(xs)
        xs = np.asarray(xs)
        if xs.ndim not in (2, 3):
            raise ValueError(f"xs: expected shape (N, T) or (N, T, K), got shape {xs.shape}")
        xs = check_array(xs, "xs", dt, xs.shape)
        ts = check_array(ts, "ts", dt, xs.shape)
        if ts.size and (ts.min() < 0 or ts.max() > 1):
            raise ValueError(f"ts: targets must lie in [0, 1], got min {ts.min()} "
                             f"and max {ts.max()}")
        m = check_mask(mask, xs.shape[:2])
        sw = check_sample_weight(sample_weight, xs.shape[0])
        w = np.ones(xs.shape[:2], dt) if m is None else m.astype(dt)
        if sw is not None:
            w = w * sw[:, None].astype(dt)
        if xs.ndim == 3:
            w = np.broadcast_to(w[:, :, None], xs.shape)
        # BCE with logits: max(x, 0) - x t + log(1 + exp(-|x|))
        loss = np.maximum(xs, 0) - xs * ts + np.log1p(np.exp(-np.abs(xs)))
        if sw is None:
            denom = _denominator(self.reduction, int(np.count_nonzero(w)), xs.shape[0])
        else:
            denom = _denominator(self.reduction, w.sum(dtype=np.float64), sw.sum())
        e = np.exp(-np.abs(xs))
        sig = np.where(xs >= 0, 1 / (1 + e), e / (1 + e)).astype(dt)
        self._cache = (sig, ts, w, denom)
        return float((loss * w).sum(dtype=np.float64) / denom)

    def backward(self, dout=1.0):
        """d(loss * dout)/d(xs), of xs's shape and dtype."""
        if self._cache is None:
            raise RuntimeError("TimeSigmoidWithLoss.backward called before forward")
        sig, ts, w, denom = self._cache
        return (sig - ts) * w * _backward_scale(dout, denom, sig.dtype)


class _RegressionLoss:
    __repr__ = init_repr

    def __init__(self):
        self.params, self.grads = [], []
        self._cache = None

    def _check(self, y, t):
        dt = _float_dtype(y)
        y = np.asarray(y)
        y = check_array(y, "y", dt, y.shape)
        t = check_array(t, "t", dt, y.shape)
        return y, t

    def _reduce(self, loss, grad, sample_weight):
        """The mean of the element losses (weighted by their sample's
        weight along axis 0), keeping the element gradients for backward."""
        if sample_weight is None:
            self._cache = (grad, max(loss.size, 1))
            return float(loss.sum(dtype=np.float64) / max(loss.size, 1))
        if loss.ndim == 0:
            raise ValueError("sample_weight: needs predictions with a sample axis, got a "
                             "scalar")
        w = check_sample_weight(sample_weight, loss.shape[0])
        per_sample = loss.size // max(loss.shape[0], 1)
        denom = w.sum() * per_sample
        denom = denom if denom > 0 else 1.0
        wb = w.reshape((-1,) + (1,) * (loss.ndim - 1))
        self._cache = (grad * wb.astype(grad.dtype), denom)
        return float((loss * wb).sum() / denom)

    def backward(self, dout=1.0):
        """d(loss * dout)/d(y), of y's shape and dtype."""
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        # n is forward's denominator, already 1 where it was 0: a sum of
        # weights below 1 divides as it is, as in the loss
        g, n = self._cache
        return g * _backward_scale(dout, n, g.dtype)


class MSELoss(_RegressionLoss):
    """mean((y - t)^2) over all elements (PyTorch's MSELoss); y, t same shape."""

    def forward(self, y, t, sample_weight=None):
        """The mean squared error (a float); sample_weight (N,) weighs the
        rows (module doc)."""
        y, t = self._check(y, t)
        d = y - t
        return self._reduce(np.square(d, dtype=np.float64), 2 * d, sample_weight)


class HuberLoss(_RegressionLoss):
    """Mean Huber loss: 0.5 d^2 where |d| <= delta, delta (|d| - 0.5 delta)
    elsewhere, d = y - t (PyTorch's HuberLoss)."""

    def __init__(self, delta=1.0):
        if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not delta > 0:
            raise ValueError(f"delta: expected a positive number, got {delta!r}")
        self.delta = float(delta)
        super().__init__()

    def forward(self, y, t, sample_weight=None):
        """The mean Huber loss (a float); sample_weight (N,) weighs the rows
        (module doc)."""
        y, t = self._check(y, t)
        d = y - t
        small = np.abs(d) <= self.delta
        loss = np.where(small, 0.5 * d * d, self.delta * (np.abs(d) - 0.5 * self.delta))
        grad = np.where(small, d, self.delta * np.sign(d)).astype(d.dtype)
        return self._reduce(loss.astype(np.float64), grad, sample_weight)
