"""Embedding lookups: int ids -> rows of W (V, D).

Embedding:      ids (N,)    -> (N, D)
TimeEmbedding:  ids (N, T)  -> (N, T, D)

backward overwrites grads[0] (V, D) with the rows of dout summed per id
(repeated ids accumulate, in the order of the ids: np.add.at's sums), in
one call for all N*T ids; compiled (src/_rowops.pxi, scatter_add_rows)
where np.add.at took ~1.7 us a row (docs/performance.md item 124).
"""
import numpy as np

from .. import _rnn
from .._repr import weights_repr
from .._validation import _describe, check_array
from ._common import SizedConfig, as_param, no_forward, weight_dtype


def check_ids(ids, name, vocab_size, expected):
    """Integer ids of shape `expected`, each in 0..vocab_size-1, as intp."""
    arr = np.asarray(ids)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer ids of shape {_describe(expected)}, "
                        f"got dtype {arr.dtype}")
    # The range before the cast to intp, so that a huge unsigned id is
    # neither wrapped to a negative one nor reported as one.
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        raise ValueError(f"{name}: ids must lie in 0..{vocab_size - 1} (vocab_size="
                         f"{vocab_size}), got min {arr.min()} and max {arr.max()}")
    return check_array(arr, name, np.intp, expected)


class Embedding(SizedConfig):
    """ids (N,) -> W[ids] (N, D).  params = [W], W (V, D)."""
    _id_shape = ("N",)
    _config_sizes = ("vocab_size", "embedding_size")

    def __init__(self, W):
        dt = weight_dtype(W)
        self.params = [as_param(W, "W", dt, ("V", "D"))]
        self._remember_sizes(self.params[0])
        self.grads = [np.zeros_like(self.params[0])]
        self._ids = None

    @property
    def dtype(self):
        """float32 or float64, from W (float64 for integer or bool W)."""
        return self.params[0].dtype

    def __repr__(self):
        return weights_repr(self, lambda s: s.params[0].shape)

    @staticmethod
    def _zero_weights(sizes, dtype):
        return (np.zeros(sizes, dtype),)

    @property
    def vocab_size(self):
        """V, the number of rows of W."""
        return self.params[0].shape[0]

    def forward(self, ids):
        """ids (N,) -> W[ids] (N, D), a copy (TimeEmbedding: (N, T) ->
        (N, T, D)).  Non-integer ids raise TypeError, a wrong shape or ids
        outside 0..V-1 ValueError.  Keeps the ids for backward."""
        ids = check_ids(ids, "ids", self.vocab_size, self._id_shape)
        self._ids = ids
        return self.params[0][ids]

    def backward(self, dout):
        """dL/d(output) (ids' shape + (D,)) -> None (ids have no
        gradient); overwrites grads[0] (V, D) with dout's rows summed per
        id.  One backward per forward (RuntimeError otherwise)."""
        if self._ids is None:
            raise no_forward(self)
        ids, self._ids = self._ids, None
        D = self.params[0].shape[1]
        dout = check_array(dout, "dout", self.dtype, ids.shape + (D,))
        dW = self.grads[0]
        dW[...] = 0
        ids, rows = ids.reshape(-1), dout.reshape(-1, D)
        if (dW.flags.c_contiguous and rows.flags.c_contiguous and ids.flags.c_contiguous
                and dW.dtype == rows.dtype and dW.dtype in (np.float32, np.float64)
                and not np.may_share_memory(dW, rows)):
            _rnn.scatter_add_rows(ids, rows, dW)
        else:
            np.add.at(dW, ids, rows)
        return None


class TimeEmbedding(Embedding):
    """ids (N, T) -> W[ids] (N, T, D).  params = [W], W (V, D)."""
    _id_shape = ("N", "T")
