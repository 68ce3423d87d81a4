"""Dot-product attention of every decoder step over all encoder states,
vectorised over time (two batched matmuls each way, no loop over steps).

    s = hs_dec @ hs_enc^T          (N, T, S)   scores
    a = softmax(s, axis=-1)        (N, T, S)   weights over encoder steps
    c = a @ hs_enc                 (N, T, H)   contexts

This is the textbook's TimeAttention (DLFS2 ch08) computed for all T
decoder steps at once.
"""
import numpy as np

from .._repr import init_repr
from .._validation import check_array
from ._common import no_forward


class TimeAttention:
    """forward(hs_enc (N, S, H), hs_dec (N, T, H)) -> c (N, T, H);
    backward(dc) -> (dhs_enc, dhs_dec).  No parameters.  After forward,
    .attention_weights holds a (N, T, S)."""

    __repr__ = init_repr

    def __init__(self):
        self.params, self.grads = [], []
        self.attention_weights = None
        self._cache = None

    def get_config(self):
        """{}: no sizes and no parameters (for rnnfast.io.save)."""
        return {}

    def forward(self, hs_enc, hs_dec):
        """hs_enc (N, S, H), hs_dec (N, T, H) -> c (N, T, H), in hs_enc's
        dtype (float64 unless float32 or float64).  S == 0, mismatched N or
        H, or a NaN or Inf raise ValueError.  Sets .attention_weights;
        keeps hs_enc, hs_dec and the weights for backward."""
        hs_enc = self._checked_encoder_states(hs_enc)
        return self._forward(hs_enc, hs_dec)

    @staticmethod
    def _checked_encoder_states(hs_enc):
        """hs_enc as forward takes it: float32 or float64 (float64 from any
        other dtype), (N, S, H) with S >= 1, finite; ValueError otherwise."""
        hs_enc = np.asarray(hs_enc)
        dt = hs_enc.dtype if hs_enc.dtype in (np.float32, np.float64) else np.float64
        hs_enc = check_array(hs_enc, "hs_enc", dt, ("N", "S", "H"))
        if hs_enc.shape[1] == 0:
            raise ValueError(f"hs_enc: attention needs at least one encoder step, got "
                             f"shape {hs_enc.shape}")
        return hs_enc

    def _forward(self, hs_enc, hs_dec):
        """forward for hs_enc that _checked_encoder_states returned (a
        decoder's generate checks its encoder states once, not at every
        step: docs/performance.md item 180)."""
        N, S, H = hs_enc.shape
        hs_dec = check_array(hs_dec, "hs_dec", hs_enc.dtype, (N, "T", H))
        s = hs_dec @ hs_enc.transpose(0, 2, 1)
        s -= s.max(axis=-1, keepdims=True)
        a = np.exp(s)
        a /= a.sum(axis=-1, keepdims=True)
        self.attention_weights = a
        self._cache = (hs_enc, hs_dec, a)
        return a @ hs_enc

    def backward(self, dc):
        """dc (N, T, H) -> (dhs_enc (N, S, H), dhs_dec (N, T, H)).  One
        backward per forward (RuntimeError otherwise)."""
        if self._cache is None:
            raise no_forward(self)
        (hs_enc, hs_dec, a), self._cache = self._cache, None
        dc = check_array(dc, "dc", hs_enc.dtype, hs_dec.shape)
        da = dc @ hs_enc.transpose(0, 2, 1)                   # (N, T, S)
        ds = a * (da - (da * a).sum(axis=-1, keepdims=True))  # softmax backward
        dhs_enc = a.transpose(0, 2, 1) @ dc + ds.transpose(0, 2, 1) @ hs_dec
        dhs_dec = ds @ hs_enc
        return dhs_enc, dhs_dec
