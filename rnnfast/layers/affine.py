"""Fully connected layers, row-vector convention: y = x @ W + b.

Affine:      x (N, D)     -> (N, M)
TimeAffine:  x (N, T, D)  -> (N, T, M), one GEMM over all N*T rows.

W (D, M) is kept as given when it is a float array of the layer's dtype in
any memory order: a model ties its output layer to an embedding E (V, D) by
passing W = E.T, a view, so an optimizer's in-place update of E is seen here.

The products run on rnnfast's packed kernel and thread pool
(src/_affine.pxi) where they can, NumPy's BLAS otherwise (no packed kernel
on this CPU or build, W or a gradient in another memory order, tiny
products).  Why: OpenBLAS's threads spin for ~0.1 s after each threaded
product, and the recurrent kernel that follows in a model's step then
shares a core with them (docs/performance.md, item 117).
"""
import math

import numpy as np

from .. import _core, _rnn
from .._repr import weights_repr
from .._validation import check_array
from ._common import SizedConfig, as_param, no_forward, weight_dtype

# Products of fewer multiply-adds stay with NumPy: OpenBLAS runs them on
# one thread (its GEMM_MULTITHREAD_THRESHOLD, 4 * 65536), so they leave no
# spinning thread, and NumPy's call costs less than packing.  So do
# products of fewer than _KERNEL_MIN_ROWS rows: the kernel packs W for
# them, which a few rows do not repay.  A language model's generate (one
# row a call, W 200 x 10,000), 1 thread: 0.25 ms a token with NumPy, 0.44-
# 0.48 with W packed at every call, 0.29 with the AVX-512 tiles reading W
# as it lies (tried, not kept); 2 threads: NumPy 0.19.
_KERNEL_MIN_MACS = 4 * 65536
_KERNEL_MIN_ROWS = 32


# The kernel's types: native float32 and float64 (not a byte-swapped one).
_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _c_order(W):
    """(B, trans_b) with B C-contiguous and op(B) = W: (W, False) for W as
    it lies, (W.T, True) for a tied W = E.T; None for any other layout or
    dtype (a replaced W)."""
    if W.dtype not in _KERNEL_DTYPES:
        return None
    if W.flags.c_contiguous:
        return W, False
    if W.flags.f_contiguous:
        return W.T, True
    return None


# A W of at most this many values goes to the kernel in the forward
# whatever the rows: packing it costs little, and the kernel sums each row
# alike in every batch, which NumPy's BLAS does not (a row's output alone
# and in a batch of 20 differed at float32 rounding: an estimator's
# predictions of a subset, scikit-learn's check_methods_subset_invariance,
# held only by the luck of the values; docs/performance.md item 169).
_KERNEL_SMALL_W = 4096
# Where the kernel reads a float32 W as it lies at a few rows
# (_rnn.reads_w_unpacked: AVX-512), nothing is packed (item 171).  It beat
# NumPy at up to this many weights whatever the rows (1.02-1.6x at 1-20
# rows), and from _KERNEL_FEW_ROWS rows it mostly did at any size (4 rows
# of 128 x 512 1.17x, of 200 x 10,000 2.05x, but of 200 x 1000 0.98x).
# Fewer rows of a larger W (a language model's generate: one row of 200 x
# 10,000) stay with NumPy, which was faster there (one row of 256 x 256
# 1.17x, two of 200 x 1000 1.4x).
_KERNEL_ONE_ROW_W = 32768
_KERNEL_FEW_ROWS = 4


def _on_kernel(rows, D, M):
    return rows >= _KERNEL_MIN_ROWS and rows * D * M >= _KERNEL_MIN_MACS


def _forward_on_kernel(rows, D, M, dtype):
    if _on_kernel(rows, D, M) or (rows >= 1 and D * M <= _KERNEL_SMALL_W):
        return True
    return (dtype == np.float32 and rows >= 1
            and (rows >= _KERNEL_FEW_ROWS or D * M <= _KERNEL_ONE_ROW_W)
            and _rnn.reads_w_unpacked())


def _rows(x):
    """The rows of x's leading axes: the count reshape(-1, D) cannot infer
    when D = 0 (as torch's Linear, a layer of 0 inputs or outputs works)."""
    return math.prod(x.shape[:-1])


class Affine(SizedConfig):
    """y = x @ W + b over the last axis.  params = [W (D, M), b (M,)]."""
    _lead = ("N",)
    _config_sizes = ("input_size", "output_size")
    _min_size = 0               # as the constructor, which takes D = 0 or M = 0

    def __init__(self, W, b):
        dt = weight_dtype(W)
        W = as_param(W, "W", dt, ("D", "M"))
        b = as_param(b, "b", dt, (W.shape[1],))
        self._remember_sizes(W)
        self.params = [W, b]
        self.grads = [np.zeros_like(W), np.zeros_like(b)]
        self._x = None

    @property
    def dtype(self):
        """float32 or float64, from W (float64 for integer or bool W)."""
        return self.params[0].dtype

    def __repr__(self):
        return weights_repr(self, lambda s: s.params[0].shape)

    @staticmethod
    def _zero_weights(sizes, dtype):
        return np.zeros(sizes, dtype), np.zeros(sizes[1], dtype)

    def forward(self, x):
        """x (N, D) -> y (N, M) (TimeAffine: (N, T, D) -> (N, T, M)).
        x is converted to the layer's dtype; a wrong shape or a NaN or Inf
        raises ValueError.  Keeps x for backward (not a copy: the caller's
        array itself when it needed no conversion)."""
        W, b = self.params
        x = check_array(x, "x", self.dtype, self._lead + (W.shape[0],))
        self._x = x
        D, M = W.shape
        x2 = x.reshape(_rows(x), D)
        # a replaced b of another dtype or shape: NumPy's path casts and broadcasts it
        B = (_c_order(W) if _forward_on_kernel(x2.shape[0], D, M, W.dtype) and b.flags.c_contiguous
             and b.dtype == W.dtype and b.ndim == 1 else None)
        if B is not None:
            # from rnnfast's output pool: a language model's logits are the
            # step's largest array, and fresh pages fault in at every step
            y = _core.empty_output(1, x2.shape[0], M, self.dtype)[0]
            if not _rnn.matmul_bias(x2, B[0], b, y, B[1]):
                B = None
        if B is None:
            y = x2 @ W
            y += b                      # in place: y can be a language model's largest array
        return y.reshape(x.shape[:-1] + (M,))

    def backward(self, dout):
        """dL/dy -> dL/dx of x's shape; overwrites grads (dW, db).  dout
        must have y's shape.  One backward per forward (RuntimeError
        otherwise)."""
        return self._backward(dout, known_finite=False)

    def _backward(self, dout, known_finite):
        """backward; known_finite: dout holds no NaN or Inf by how it was
        made (a model's own softmax loss's gradient), so its scan is skipped:
        a language model's dout is the step's largest array (28 MB for
        DLFS2's Rnnlm), and its scan was half of the 3 % of that step that
        finiteness scans took (docs/performance.md items 161, 164)."""
        if self._x is None:
            raise no_forward(self)
        x, self._x = self._x, None
        W, _ = self.params
        D, M = W.shape
        dout = check_array(dout, "dout", self.dtype, x.shape[:-1] + (M,),
                           allow_nonfinite=known_finite)
        x2, d2 = x.reshape(_rows(x), D), dout.reshape(_rows(x), M)
        dW, db = self.grads
        dx = self._input_grad(d2, W)
        if self._kernel_weight_grads(x2, d2, dW, db):
            return dx.reshape(x.shape)
        if dW.shape == (D, M) and dW.dtype == x2.dtype and dW.flags.c_contiguous:
            np.matmul(x2.T, d2, out=dW)         # straight into the gradient, no temporary
        elif dW.shape == (D, M) and dW.dtype == x2.dtype and dW.flags.f_contiguous:
            np.matmul(d2.T, x2, out=dW.T)       # a tied W = E.T's gradient: (E's layout)
        else:                                   # a replaced grad: as any assignment
            dW[...] = x2.T @ d2
        db[...] = d2.sum(axis=0)
        return dx.reshape(x.shape)

    @staticmethod
    def _input_grad(d2, W):
        """dx = d2 @ W.T (rows, D)."""
        D, M = W.shape
        B = _c_order(W) if _on_kernel(d2.shape[0], D, M) and d2.dtype == W.dtype else None
        if B is not None:
            dx = np.empty((d2.shape[0], D), W.dtype)
            # W as it lies (D, M) is op(B) = W.T with trans_b; a tied E (M, D) as it lies
            if _rnn.matmul_rows(d2, B[0], dx, not B[1]):
                return dx
        return d2 @ W.T

    @staticmethod
    def _kernel_weight_grads(x2, d2, dW, db):
        """dW = x2.T @ d2 and db = d2's column sums, on the kernel; False
        (nothing written) where it does not apply."""
        if (dW.ndim != 2 or db.ndim != 1 or x2.dtype not in _KERNEL_DTYPES
                or dW.dtype != x2.dtype or db.dtype != x2.dtype or d2.dtype != x2.dtype
                or not db.flags.c_contiguous or not _on_kernel(x2.shape[0], *dW.shape)):
            return False        # a replaced gradient of another kind: NumPy's path says what
        if dW.flags.c_contiguous:
            return _rnn.matmul_tn(x2, d2, dW, db)
        if dW.flags.f_contiguous:       # a tied W = E.T: E's gradient dE = d2.T @ x2
            if _rnn.matmul_tn(d2, x2, dW.T, None):
                db[...] = d2.sum(axis=0)
                return True
        return False


class TimeAffine(Affine):
    """y = x @ W + b for x (N, T, D) -> (N, T, M)."""
    _lead = ("N", "T")
