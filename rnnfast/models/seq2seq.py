"""Encoder-decoder models of the textbook (DLFS2 ch07, ch08), with LSTMs.

    Seq2seq           the decoder starts from the encoder's last h
    PeekySeq2seq      ... and sees that h at every step, concatenated to its
                      input [h, embed] and to the affine's input [h, h_dec]
    AttentionSeq2seq  dot-product attention over all encoder states; the
                      context is concatenated before the affine: [c, h_dec]

forward(xs, ts) -> loss: xs (N, S) source ids, ts (N, T+1) target ids that
start with the start id; the decoder reads ts[:, :-1] and predicts ts[:, 1:]
(teacher forcing).  generate(xs, start_id, sample_size) decodes greedily,
batched over N, one decoder call per output token.  Reversing the source
(Sutskever et al.) is the data reader's job.

Initial weights are the textbook's: embeddings N(0, 0.01^2), matrices
N(0, 1/fan_in), biases zero.
"""
import numpy as np

from ..layers import TimeAffine, TimeAttention, TimeEmbedding, TimeLSTM
from ..layers.embedding import check_ids
from ..losses import TimeSoftmaxWithLoss
from .._core import packs_kept
from .._validation import check_int, check_int_targets
from ._base import Model


def _normal(rng, shape, fan_in, dtype):
    return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(dtype)


def _embedding(rng, V, D, dtype):
    return TimeEmbedding((rng.standard_normal((V, D)) / 100).astype(dtype))


def _lstm(rng, D, H, dtype, stateful):
    return TimeLSTM(_normal(rng, (D, 4 * H), D, dtype), _normal(rng, (H, 4 * H), H, dtype),
                    np.zeros(4 * H, dtype), stateful=stateful)


class _Part:
    """An encoder or decoder: a list of layers with params and grads."""

    def _collect(self, *layers):
        self.layers = layers
        self.params = [p for layer in layers for p in layer.params]
        self.grads = [g for layer in layers for g in layer.grads]


# ----------------------------------------------------------------- encoders
class Encoder(_Part):
    """ids (N, S) -> the last hidden state (N, H)."""

    def __init__(self, V, D, H, rng, dtype):
        self.embed = _embedding(rng, V, D, dtype)
        self.lstm = _lstm(rng, D, H, dtype, stateful=False)
        self._collect(self.embed, self.lstm)
        self._shape = None

    def forward(self, xs):
        """ids xs (N, S) -> h (N, H), the LSTM's last hidden state."""
        hs = self.lstm.forward(self.embed.forward(xs))
        self._shape = hs.shape
        return hs[:, -1, :]

    def backward(self, dh):
        """dh (N, H), an ndarray, -> None; fills grads (the gradient enters
        at the last step only)."""
        if self._shape is None:
            raise RuntimeError(f"{type(self).__name__}.backward needs a forward first")
        dh = np.asarray(dh)
        dhs = np.zeros(self._shape, dh.dtype)
        dhs[:, -1, :] = dh
        self.embed.backward(self.lstm.backward(dhs))


class AttentionEncoder(Encoder):
    """ids (N, S) -> all hidden states (N, S, H)."""

    def forward(self, xs):
        """ids xs (N, S) -> hs (N, S, H), every hidden state."""
        return self.lstm.forward(self.embed.forward(xs))

    def backward(self, dhs):
        """dhs (N, S, H) -> None; fills grads."""
        self.embed.backward(self.lstm.backward(dhs))


# ----------------------------------------------------------------- decoders
class Decoder(_Part):
    """ids (N, T) and the encoder's h (N, H) -> logits (N, T, V)."""

    def __init__(self, V, D, H, rng, dtype):
        self.embed = _embedding(rng, V, D, dtype)
        self.lstm = _lstm(rng, self._lstm_input(D, H), H, dtype, stateful=True)
        F = self._affine_input(H)
        self.affine = TimeAffine(_normal(rng, (F, V), F, dtype), np.zeros(V, dtype))
        self._collect(self.embed, self.lstm, self.affine)

    @staticmethod
    def _lstm_input(D, H):
        return D

    @staticmethod
    def _affine_input(H):
        return H

    def _start(self, h):
        self.lstm.set_state(h, np.zeros_like(h))

    def forward(self, xs, h):
        """ids xs (N, T) -> logits (N, T, V), the LSTM started from (h,
        zeros).  AttentionDecoder: h is the encoder's hs (N, S, H), and the
        LSTM starts from its last step."""
        self._start(h)
        return self._step(xs, h)

    def _step(self, xs, h):
        return self.affine.forward(self.lstm.forward(self.embed.forward(xs)))

    def backward(self, dscore):
        """-> dL/dh (N, H) of the encoder's state."""
        dout = self.lstm.backward(self.affine.backward(dscore))
        self.embed.backward(dout)
        return self.lstm.dh

    def generate(self, h, start_id, sample_size):
        """Greedy decoding: (N, sample_size) ids, one step per token."""
        self._start(h)
        x = np.full((h.shape[0], 1), start_id, dtype=np.intp)
        out = np.empty((h.shape[0], sample_size), dtype=np.intp)
        with packs_kept(self.lstm):         # its weights are packed once
            for t in range(sample_size):
                x = self._step(x, h).argmax(axis=2)
                out[:, t] = x[:, 0]
        return out


class PeekyDecoder(Decoder):
    """The encoder's h joins the LSTM's input [h, embed] and the affine's
    input [h, h_dec] at every step."""

    @staticmethod
    def _lstm_input(D, H):
        return H + D

    @staticmethod
    def _affine_input(H):
        return 2 * H

    def _step(self, xs, h):
        out = self.embed.forward(xs)
        N, T, _ = out.shape
        hs = np.broadcast_to(h[:, None, :], (N, T, h.shape[1]))
        out = self.lstm.forward(np.concatenate([hs, out], axis=2))
        return self.affine.forward(np.concatenate([hs, out], axis=2))

    def backward(self, dscore):
        """-> dL/dh (N, H) of the encoder's state: through the initial
        state and every step's peek."""
        H = self.lstm.hidden_size
        dout = self.affine.backward(dscore)
        dpeek = dout[:, :, :H].sum(axis=1)
        dout = self.lstm.backward(dout[:, :, H:])
        dpeek += dout[:, :, :H].sum(axis=1)
        self.embed.backward(dout[:, :, H:])
        return self.lstm.dh + dpeek


class AttentionDecoder(Decoder):
    """ids (N, T) and all encoder states (N, S, H) -> logits (N, T, V); the
    decoder starts from the encoder's last state and the affine reads
    [context, h_dec]."""

    def __init__(self, V, D, H, rng, dtype):
        super().__init__(V, D, H, rng, dtype)
        self.attention = TimeAttention()

    @staticmethod
    def _affine_input(H):
        return 2 * H

    # generate's encoder states while it runs: checked once, not at each step
    _checked_states = None

    def _start(self, enc_hs):
        super()._start(enc_hs[:, -1, :])

    def _step(self, xs, enc_hs):
        dec_hs = self.lstm.forward(self.embed.forward(xs))
        if enc_hs is self._checked_states:
            c = self.attention._forward(enc_hs, dec_hs)
        else:
            c = self.attention.forward(enc_hs, dec_hs)
        return self.affine.forward(np.concatenate([c, dec_hs], axis=2))

    def generate(self, enc_hs, start_id, sample_size):
        """Greedy decoding, as Decoder's; the encoder states (N, S, H),
        which no step changes, are checked before the first step only (the
        check of all N x S x H values at every step was 2.7 % of a
        64-row generate: docs/performance.md item 180)."""
        self._checked_states = self.attention._checked_encoder_states(enc_hs)
        try:
            return super().generate(self._checked_states, start_id, sample_size)
        finally:
            self._checked_states = None

    def backward(self, dscore):
        """-> dL/d(encoder states) (N, S, H)."""
        H = self.lstm.hidden_size
        dout = self.affine.backward(dscore)
        denc_hs, ddec_hs = self.attention.backward(dout[:, :, :H])
        ddec_hs += dout[:, :, H:]
        self.embed.backward(self.lstm.backward(ddec_hs))
        denc_hs[:, -1, :] += self.lstm.dh
        return denc_hs


# ------------------------------------------------------------------- models
class Seq2seq(Model):
    """Encoder-decoder with LSTMs (DLFS2 ch07).

    vocab_size V (shared by source and target), wordvec_size D (16 in the
    textbook), hidden_size H (128 in the textbook).
    ignore_label: targets ts[:, 1:] equal to it do not count in the loss;
        it pads the end of a row shorter than the others (the decoder then
        reads id 0 at those steps, whose predictions do not count).
    """
    _encoder, _decoder = Encoder, Decoder

    def __init__(self, vocab_size, wordvec_size=16, hidden_size=128, ignore_label=-1,
                 dtype=np.float32, random_state=None):
        V = check_int(vocab_size, "vocab_size")
        D = check_int(wordvec_size, "wordvec_size")
        H = check_int(hidden_size, "hidden_size")
        rng = self._setup(dict(vocab_size=V, wordvec_size=D, hidden_size=H,
                               ignore_label=ignore_label), dtype, random_state)
        self.encoder = self._encoder(V, D, H, rng, self.dtype)
        self.decoder = self._decoder(V, D, H, rng, self.dtype)
        self.loss_layer = TimeSoftmaxWithLoss(ignore_label=ignore_label)
        # No dropout; the LSTMs' eval() makes their forward inference
        # (nothing saved for a backward), as generate uses them.
        self.layers = [self.encoder.lstm, self.decoder.lstm]
        self._collect(self.encoder.params + self.decoder.params,
                      self.encoder.grads + self.decoder.grads)

    @property
    def vocab_size(self):
        """V, shared by source and target."""
        return self.encoder.embed.vocab_size

    def _check(self, xs, ts=None):
        xs = check_ids(xs, "xs", self.vocab_size, ("N", "S"))
        if xs.shape[1] == 0:     # the decoder starts from the encoder's last state
            raise ValueError(f"xs: expected shape (N, S) with at least one source step, "
                             f"got shape {xs.shape}")
        if ts is None:
            return xs
        ts = np.asarray(ts)
        if ts.ndim != 2 or ts.shape[0] != xs.shape[0] or ts.shape[1] < 2:
            raise ValueError(f"ts: expected shape ({xs.shape[0]}, T+1) with T+1 >= 2 "
                             f"(start id, then the targets), got shape {ts.shape}")
        # all of ts here, by its name, before the encoder runs (the decoder's
        # embedding would otherwise report its inputs as "ids")
        ts = check_int_targets(ts, "ts", ts.shape, self.vocab_size,
                                self.loss_layer.ignore_label)
        return xs, ts

    def forward(self, xs, ts):
        """Loss (float) for source ids xs (N, S) and targets ts (N, T+1)
        that start with the start id (teacher forcing).  Ids out of range,
        S == 0, T == 0 or ignore_label before a target in a row raise
        ValueError."""
        xs, ts = self._check(xs, ts)
        inputs = self._decoder_inputs(ts)       # may refuse ts: before any layer runs
        state = self.encoder.forward(xs)
        score = self.decoder.forward(inputs, state)
        return self.loss_layer.forward(score, ts[:, 1:])

    def _decoder_inputs(self, ts):
        """ts[:, :-1], the teacher-forced inputs, with the padding of rows
        shorter than the others (ignore_label) read as id 0: a step whose
        input is padding predicts padding, which the loss ignores, and a
        recurrent step's input never reaches an earlier step."""
        inputs = ts[:, :-1]
        pad = inputs == self.loss_layer.ignore_label
        if not pad.any():
            return inputs
        after = ts[:, 1:] != self.loss_layer.ignore_label
        if (pad & after).any():
            row = int(np.argmax((pad & after).any(axis=1)))
            raise ValueError(f"ts: ignore_label ({self.loss_layer.ignore_label}) may only pad "
                             f"the end of a row, got it before a target in row {row}: "
                             f"{ts[row].tolist()}")
        return np.where(pad, 0, inputs)

    def backward(self, dout=1.0):
        """Fills grads from the last forward (dL/dloss = dout); returns
        None.  RuntimeError unless a training forward came since the last
        backward."""
        self.encoder.backward(self.decoder.backward(self.loss_layer.backward(dout)))

    def generate(self, xs, start_id, sample_size):
        """Greedy decoding of `sample_size` ids for each source row.

        xs (N, S) -> (N, sample_size); xs (S,) -> (sample_size,).
        """
        xs = np.asarray(xs)
        single = xs.ndim == 1
        xs = self._check(xs.reshape(1, -1) if single else xs)
        check_ids([start_id], "start_id", self.vocab_size, (1,))
        sample_size = check_int(sample_size, "sample_size", minimum=0)
        with self._decoding():          # the decoder's LSTM carries the state
            out = self._in_eval(self._generate, xs, start_id, sample_size)
        return out[0] if single else out

    def _generate(self, xs, start_id, sample_size):
        return self.decoder.generate(self.encoder.forward(xs), start_id, sample_size)


class PeekySeq2seq(Seq2seq):
    """Seq2seq whose decoder peeks at the encoder's h at every step."""
    _decoder = PeekyDecoder


class AttentionSeq2seq(Seq2seq):
    """Seq2seq with dot-product attention over all encoder states (DLFS2 ch08).
    After a forward, decoder.attention.attention_weights is (N, T, S)."""
    _encoder, _decoder = AttentionEncoder, AttentionDecoder
