"""Word- or character-level language model and its perplexity.

    ids (N, T) -> TimeEmbedding (V, D) -> [dropout] -> stacked RNN/LSTM/GRU
    (stateful: truncated BPTT, dropout between layers) -> [dropout]
    -> TimeAffine (H, V) -> TimeSoftmaxWithLoss

the textbook's Rnnlm/BetterRnnlm (DLFS2 ch06) and Zaremba et al. (2014).
"""
import contextlib
import math
import numbers

import numpy as np

from ..layers import TimeAffine, TimeDropout, TimeEmbedding
from ..layers.dropout import as_generator
from ..layers.embedding import check_ids
from ..losses import TimeSoftmaxWithLoss, picked_log_softmax
from .._core import packs_kept
from .._rnn import inverse_cdf_rows, nucleus_rows, scaled_logits_rows, top_k_rows
from .._validation import check_int, check_int_targets, check_mask
from ._base import CELLS, Model, check_cell, check_probability, child_rng, uniform_


class RnnLM(Model):
    """Recurrent language model.

    vocab_size V; wordvec_size D (default: hidden_size); hidden_size H;
    num_layers; cell "lstm", "gru" or "rnn".
    dropout: rate on every non-recurrent connection (Zaremba et al.): the
        embedding output, between layers and before the output layer.
        embed_dropout / output_dropout override it at the two ends.
    tie_weights: the output layer's W is E.T, a view of the embedding
        matrix E (V, H) (needs D == H; Press & Wolf 2017, BetterRnnlm);
        E appears once in params and its gradient is the sum of both uses.
    init_scale: when given, every parameter ~ U(-init_scale, init_scale)
        (Zaremba's 0.1, or 0.05 for the large model); otherwise the
        textbook's scales (embedding N(0, 0.01^2), output N(0, 1/H), zero
        output bias) and PyTorch's U(-1/sqrt(H), 1/sqrt(H)) for the network.
    reduction: of the loss, "mean" per token (exp(loss) = perplexity) or
        "sum_time" (Zaremba's: summed over time, averaged over the batch).

    forward(xs, ts) -> loss for ids xs, ts (N, T); backward(); the network
    carries its state between forwards until reset_state().
    """

    def __init__(self, vocab_size, wordvec_size=None, hidden_size=100, num_layers=1,
                 cell="lstm", dropout=0.0, embed_dropout=None, output_dropout=None,
                 tie_weights=False, init_scale=None, reduction="mean",
                 dtype=np.float32, random_state=None):
        V = check_int(vocab_size, "vocab_size")
        H = check_int(hidden_size, "hidden_size")
        D = H if wordvec_size is None else check_int(wordvec_size, "wordvec_size")
        if tie_weights and D != H:
            raise ValueError(f"wordvec_size: tie_weights needs wordvec_size == hidden_size "
                             f"(the embedding (V, D) is reused as the output (H, V)), got "
                             f"wordvec_size={D} and hidden_size={H}")
        dropout = check_probability(dropout, "dropout")
        p_in = dropout if embed_dropout is None else check_probability(embed_dropout,
                                                                      "embed_dropout")
        p_out = dropout if output_dropout is None else check_probability(output_dropout,
                                                                        "output_dropout")
        if init_scale is not None and (isinstance(init_scale, bool) or not isinstance(
                init_scale, numbers.Real) or not init_scale > 0):
            raise ValueError(f"init_scale: expected a positive number or None, "
                             f"got {init_scale!r}")
        rng = self._setup(dict(
            vocab_size=V, wordvec_size=wordvec_size, hidden_size=H, num_layers=num_layers,
            cell=check_cell(cell), dropout=dropout, embed_dropout=embed_dropout,
            output_dropout=output_dropout, tie_weights=bool(tie_weights),
            init_scale=init_scale, reduction=reduction), dtype, random_state)
        dt = self.dtype
        self.tie_weights = bool(tie_weights)
        E = (rng.standard_normal((V, D)) / 100).astype(dt)
        self.embed = TimeEmbedding(E)
        self.embed_dropout = TimeDropout(p_in, child_rng(rng))
        self.network = CELLS[cell](D, H, num_layers, dropout=dropout, stateful=True,
                                   dtype=dt, random_state=child_rng(rng))
        self.output_dropout = TimeDropout(p_out, child_rng(rng))
        W = self.embed.params[0].T if self.tie_weights else \
            (rng.standard_normal((H, V)) / np.sqrt(H)).astype(dt)
        self.affine = TimeAffine(W, np.zeros(V, dt))
        self.loss_layer = TimeSoftmaxWithLoss(reduction=reduction)
        self.layers = [self.embed, self.embed_dropout, self.network,
                       self.output_dropout, self.affine]
        own_W = [] if self.tie_weights else [0]
        self._collect(
            self.embed.params + self.network.params
            + [self.affine.params[i] for i in own_W] + [self.affine.params[1]],
            self.embed.grads + self.network.grads
            + [self.affine.grads[i] for i in own_W] + [self.affine.grads[1]])
        if init_scale is not None:
            uniform_(self.params, float(init_scale), rng)

    @property
    def vocab_size(self):
        """V, the rows of the embedding."""
        return self.embed.vocab_size

    def __setstate__(self, state):
        # pickle and deepcopy store the output layer's W = E.T as an array
        # of its own (numpy keeps no view across a copy): tie it to the
        # copy's embedding again, or the optimizer would update E alone.
        self.__dict__.update(state)
        if self.tie_weights:
            self.affine.params[0] = self.embed.params[0].T

    def reset_state(self):
        """Forget the network's carried state: the next forward starts
        from zeros (at a new text, or before evaluation)."""
        self.network.reset_state()

    def _scores(self, xs, last_only=False):
        """Logits (N, T, V) for ids xs (N, T); last_only: (N, 1, V), the
        last step's alone (generate reads no other: for a prompt of T0 ids
        the output layer, the call's largest product, ran T0 times over)."""
        out = self.embed_dropout.forward(self.embed.forward(xs))
        hs, _ = self.network.forward(out)
        if last_only:
            hs = hs[:, -1:]
        return self.affine.forward(self.output_dropout.forward(hs))

    def predict(self, xs):
        """Logits (N, T, V) for ids xs (N, T), in evaluation mode (no
        dropout).  Advances the carried state like forward."""
        xs = check_ids(xs, "xs", self.vocab_size, ("N", "T"))
        with self._decoding():
            return self._in_eval(self._scores, xs)

    def forward(self, xs, ts, mask=None):
        """Loss for ids xs and next-token targets ts, both (N, T); mask (N,
        T) of booleans drops targets (rnnfast.losses).  Every argument is
        checked before the network runs: a refused call leaves the carried
        state and the dropout draws as they were."""
        xs = check_ids(xs, "xs", self.vocab_size, ("N", "T"))
        ts = check_int_targets(ts, "ts", xs.shape, self.vocab_size,
                                self.loss_layer.ignore_label)
        mask = check_mask(mask, xs.shape)
        return self.loss_layer.forward(self._scores(xs), ts, mask)

    def backward(self, dout=1.0):
        """Fills grads from the last forward (dL/dloss = dout); returns
        None.  With tie_weights, E's gradient is the sum of both uses.
        RuntimeError unless a training forward came since the last
        backward."""
        d = self.loss_layer.backward(dout)
        # the softmax loss's gradient is finite by construction (its forward
        # refused NaN and Inf scores, its backward a dout that is not finite)
        known_finite = type(self.loss_layer) is TimeSoftmaxWithLoss
        d = self.output_dropout.backward(self.affine._backward(d, known_finite))
        d = self.embed_dropout.backward(self.network.backward(d))
        self.embed.backward(d)
        if self.tie_weights:
            # declared tie: the output layer used E.T, so dL/dE gains dL/dW.T
            self.embed.grads[0] += self.affine.grads[0].T

    def generate(self, start_ids, length, temperature=1.0, top_k=None,
                 random_state=None, skip_ids=None, top_p=None):
        """Sample `length` tokens after the prompt `start_ids`.

        start_ids: an id, a prompt (T0,) or a batch of prompts (N, T0).
        temperature: divides the logits; finite, 0 means greedy (argmax).
        top_k: sample among the k most likely tokens only.
        top_p: nucleus sampling (Holtzman et al. 2020, as Hugging Face's
            generate): sample among the most likely tokens whose
            probabilities, at this temperature and after skip_ids and top_k,
            add up to at least top_p (in (0, 1]; the likeliest token always
            stays).
        skip_ids: ids never produced (e.g. <unk>).
        random_state: None, an int seed or a Generator.
        Returns the prompt followed by the new ids, (T0 + length,) or
        (N, T0 + length).  Runs in evaluation mode from a zero state, one
        network call per generated token, and restores the model's mode
        and carried state afterwards.
        """
        ids = np.asarray(start_ids)
        single = ids.ndim < 2
        if ids.size == 0 or (ids.ndim and ids.shape[-1] == 0):
            # the next token is sampled from the prompt's last one: it needs one
            raise ValueError(f"start_ids: expected a prompt of at least one id, got shape "
                             f"{ids.shape}")
        ids = check_ids(ids.reshape(1, -1) if single else ids, "start_ids",
                        self.vocab_size, ("N", "T0"))
        length = check_int(length, "length", minimum=0)
        # inf would turn the masked -inf logits into NaN (inf / inf) and
        # "sample" id 0 every step, skipped or not
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) \
                or not (temperature >= 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature: expected a finite number >= 0, "
                             f"got {temperature!r}")
        if top_k is not None:
            top_k = min(check_int(top_k, "top_k"), self.vocab_size)
        if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, numbers.Real)
                                  or not 0 < top_p <= 1):
            raise ValueError(f"top_p: expected a probability in (0, 1], got {top_p!r}")
        skip = np.zeros(0, np.intp) if skip_ids is None else \
            check_ids(np.asarray(skip_ids).reshape(-1), "skip_ids", self.vocab_size, ("K",))
        if np.unique(skip).size >= self.vocab_size:
            raise ValueError("skip_ids: would exclude every token of the vocabulary")
        rng = as_generator(random_state)
        # The weights stay as they are: the network packs them once.
        with _from_zero_state(self), packs_kept(self.network):
            out = [ids]
            logits = self._scores(ids, last_only=True)[:, -1]
            for step in range(length):
                nxt = _sample(logits, temperature, top_k, skip, rng, top_p)
                out.append(nxt[:, None])
                if step + 1 < length:
                    logits = self._scores(nxt[:, None])[:, -1]
        result = np.concatenate(out, axis=1)
        return result[0] if single else result


def _sample(logits, temperature, top_k, skip, rng, top_p=None):
    """One id per row of logits (N, V)."""
    z = np.ascontiguousarray(logits)
    if skip.size or top_k is not None:  # masked in a copy, in the logits' dtype
        z = z.copy()
        z[:, skip] = -np.inf
        if top_k is not None:           # below the k-th largest: out (compiled)
            top_k_rows(z, top_k)
    if temperature == 0:
        return z.argmax(axis=1)
    # p = exp((z - max) / temperature) in double, the max subtracted before
    # dividing: a tiny temperature then sends the others to -inf (greedy in
    # the limit) instead of overflowing the max to inf and making inf - inf
    # = NaN.  Compiled, in place of NumPy's cast and the two arrays it made
    # (docs/performance.md item 178).
    p = np.empty(z.shape, np.float64)
    scaled_logits_rows(z, temperature, p)
    np.exp(p, out=p)
    if top_p is not None and top_p < 1:
        nucleus_rows(p, top_p)          # p is this call's own: in place
    # inverse CDF: the first index whose cumulative mass exceeds u, a draw
    # in [0, 1) times the row's mass (compiled: np.cumsum and the count over
    # it took a quarter of a batch's generate at V = 10,000)
    ids = np.empty(z.shape[0], np.intp)
    inverse_cdf_rows(np.ascontiguousarray(p), rng.random(z.shape[0]), ids)
    return ids


def _nucleus(p, top_p):
    """p (N, V) unnormalised probabilities with all but each row's nucleus
    set to 0, in a new array: the likeliest tokens, in order, until their
    mass reaches top_p of the row's (a token is kept when the mass before
    it falls short; ties in index order).  Compiled, by selection
    (nucleus_rows: docs/performance.md item 181)."""
    out = np.array(p, dtype=np.float64, order="C")
    nucleus_rows(out, top_p)
    return out


def perplexity(model, corpus, batch_size=10, time_size=35):
    """exp(mean negative log-likelihood per token) of `model` (an RnnLM)
    over a 1-D corpus of ids, read as `batch_size` contiguous streams in
    chunks of `time_size` steps with the state carried across chunks.

    Runs in evaluation mode from a zero state; restores the model's mode
    and carried state afterwards.
    """
    corpus = check_ids(np.asarray(corpus).reshape(-1), "corpus", model.vocab_size, ("L",))
    N = check_int(batch_size, "batch_size")
    T = check_int(time_size, "time_size")
    L = (corpus.size - 1) // N
    if L < 1:
        raise ValueError(f"corpus: needs more than batch_size={N} ids, got {corpus.size}")
    xs = corpus[:N * L].reshape(N, L)
    ts = corpus[1:N * L + 1].reshape(N, L)
    total = 0.0
    with _from_zero_state(model):           # the state is carried across chunks
        for s in range(0, L, T):            # chunks of T steps, not single steps
            scores = model._scores(xs[:, s:s + T])
            logp_t, _, _ = picked_log_softmax(scores.reshape(-1, scores.shape[-1]),
                                              ts[:, s:s + T].reshape(-1))
            total -= logp_t.sum()
    return float(np.exp(total / (N * L)))


@contextlib.contextmanager
def _from_zero_state(model):
    """Run the block in evaluation mode from a zero state, under the
    model's decoding lock, then give back its carried state and mode
    (generate and perplexity)."""
    with model._decoding():
        saved, was_training = model.network.state, model.training
        model.eval()
        model.reset_state()
        try:
            yield
        finally:
            model.network.state = saved
            model.train(was_training)
