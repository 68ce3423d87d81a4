"""Fully connected layers, row-vector convention: y = x @ W + b.

Affine:      x (N, D)     -> (N, M)
TimeAffine:  x (N, T, D)  -> (N, T, M), one GEMM over all N*T rows.

W (D, M) is kept as given when it is a float array of the layer's dtype in
any memory order: a model ties its output layer to an embedding E (V, D) by
passing W = E.T, a view, so an optimizer's in-place update of E is seen here.
"""
import math

import numpy as np

from .._validation import check_array
from ._common import as_param, no_forward, weight_dtype


def _rows(x):
    """The rows of x's leading axes: the count reshape(-1, D) cannot infer
    when D = 0 (as torch's Linear, a layer of 0 inputs or outputs works)."""
    return math.prod(x.shape[:-1])


class Affine:
    """y = x @ W + b over the last axis.  params = [W (D, M), b (M,)]."""
    _lead = ("N",)

    def __init__(self, W, b):
        dt = weight_dtype(W)
        W = as_param(W, "W", dt, ("D", "M"))
        b = as_param(b, "b", dt, (W.shape[1],))
        self.params = [W, b]
        self.grads = [np.zeros_like(W), np.zeros_like(b)]
        self._x = None

    @property
    def dtype(self):
        """float32 or float64, from W (float64 for integer or bool W)."""
        return self.params[0].dtype

    def forward(self, x):
        """x (N, D) -> y (N, M) (TimeAffine: (N, T, D) -> (N, T, M)).
        x is converted to the layer's dtype; a wrong shape or a NaN or Inf
        raises ValueError.  Keeps x for backward (not a copy: the caller's
        array itself when it needed no conversion)."""
        W, b = self.params
        x = check_array(x, "x", self.dtype, self._lead + (W.shape[0],))
        self._x = x
        D, M = W.shape
        y = x.reshape(_rows(x), D) @ W
        y += b                          # in place: y can be a language model's largest array
        return y.reshape(x.shape[:-1] + (M,))

    def backward(self, dout):
        """dL/dy -> dL/dx of x's shape; overwrites grads (dW, db).  dout
        must have y's shape.  One backward per forward (RuntimeError
        otherwise)."""
        if self._x is None:
            raise no_forward(self)
        x, self._x = self._x, None
        W, _ = self.params
        D, M = W.shape
        dout = check_array(dout, "dout", self.dtype, x.shape[:-1] + (M,))
        x2, d2 = x.reshape(_rows(x), D), dout.reshape(_rows(x), M)
        dW, db = self.grads
        if dW.shape == (D, M) and dW.dtype == x2.dtype and dW.flags.c_contiguous:
            np.matmul(x2.T, d2, out=dW)         # straight into the gradient, no temporary
        elif dW.shape == (D, M) and dW.dtype == x2.dtype and dW.flags.f_contiguous:
            np.matmul(d2.T, x2, out=dW.T)       # a tied W = E.T's gradient: (E's layout)
        else:                                   # a replaced grad: as any assignment
            dW[...] = x2.T @ d2
        db[...] = d2.sum(axis=0)
        return (d2 @ W.T).reshape(x.shape)


class TimeAffine(Affine):
    """y = x @ W + b for x (N, T, D) -> (N, T, M)."""
    _lead = ("N", "T")
