"""A differential fuzzer of the models against PyTorch.

tests/test_models.py checks each model's backward by finite differences on
a few fixed configurations of 3 to 7 units.  Here every case draws a model
(RnnLM, SequenceClassifier, SequenceRegressor, SequenceTagger, Seq2seq,
PeekySeq2seq or AttentionSeq2seq), its cell and options (layers, directions, embedding or float features, tied
weights, the loss's reduction, Huber, dropout everywhere it is offered),
sizes up to the ones where the compiled affine, softmax and embedding
paths split over threads (a vocabulary of up to 4,000, batches of up to
~1,000 tokens), ragged lengths with padding ids, padding anywhere
(mask_zero, mask_value; a tagger's masked steps spread back), ignored
labels, a loss mask, sample weights (zeros among them), targets of an
encoder-decoder padded at their ends, float32 or float64, 1 or 2
threads.  A language model runs two chunks, the second from the state the first left
(truncated BPTT).  PyTorch in float64 is the twin: the same
weights in nn.Embedding, one single-layer nn.RNN / LSTM / GRU per layer
(packed when ragged), the dropout masks the model drew multiplied in
where the model applies them, a linear layer, the attention and the loss
written out.  Each case compares every training loss and every parameter
gradient, the evaluation scores (dropout off), a language model's
perplexity over streams read in chunks, greedy decoding in float64 (of a
language model and of an encoder-decoder), a language model's sampled
decoding in float64 (a random temperature, top_k, top_p and skip_ids;
PyTorch's logits filtered as Hugging Face's generate filters them and
drawn from the same seed), and a save and load of the
model, whose evaluation scores (decoded ids) must be bitwise the same;
then two steps of a random optimizer (clipped or not) on the model's
params against its torch.optim twin given the same gradients; then three
bad calls of the model (forward, predict, predict_scores, generate; one
argument made wrong), each of which must raise ValueError or TypeError
naming that argument first and leave the model as it was.

    python tests/fuzz_models.py [--cases N] [--minutes M] [--seed S]

prints one line a failing case with the seed that replays it alone
(`--seed S --cases 1`) and exits 1 if any failed.  tests/test_fuzz_models.py
runs a few fixed seeds in the suite.
"""
import copy
import os
import sys

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from rnnfast import _gru, _lstm, _rnn
from rnnfast.interop import to_torch_state_dict
from rnnfast.optim import clip_grads, global_norm
from rnnfast._layout import to_torch_weights
from rnnfast.models import (AttentionSeq2seq, PeekySeq2seq, RnnLM, Seq2seq,
                            SequenceClassifier, SequenceRegressor, SequenceTagger,
                            perplexity)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _torch_twin import TORCH_TWINS, grads_by_torch_name, torch_run  # noqa: E402
import fuzz_networks  # noqa: E402
from fuzz_networks import TOL, close, fuzz_main  # noqa: E402

KINDS = ("lm", "classifier", "regressor", "tagger", "seq2seq")
SEQ2SEQ = {"plain": Seq2seq, "peeky": PeekySeq2seq, "attention": AttentionSeq2seq}
TORCH_CELLS = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
F64 = torch.float64
WIDTHS = [1, 2, 3, 7, 8, 9, 16, 17, 31, 32, 33, 48, 64, 65, 100, 128, 129]
ROWS = [1, 2, 3, 5, 8, 9, 16, 17, 20, 32, 33]
MAX_TOKENS = 1200


def draw_case(rng):
    """One model, its options and its data's shape, from rng."""
    kind = KINDS[rng.integers(len(KINDS))]
    while True:
        N, T = int(rng.choice(ROWS)), int(rng.integers(1, 41))
        if N * T <= MAX_TOKENS:
            break
    H = int(rng.choice(WIDTHS))
    case = dict(kind=kind, cell=["rnn", "lstm", "gru"][rng.integers(3)],
                dtype=np.dtype(np.float32 if rng.random() < 0.6 else np.float64),
                N=N, T=T, H=H, layers=int(rng.choice([1, 1, 2, 3])),
                dropout=float(rng.choice([0.0, 0.0, 0.3])),
                threads=int(rng.integers(1, 3)), split_all=bool(rng.random() < 0.5))
    if kind == "lm":
        tie = bool(rng.random() < 0.3)
        case.update(V=int(rng.choice([2, 5, 17, 100, 257, 1000, 4000])),
                    D=H if tie or rng.random() < 0.5 else int(rng.choice(WIDTHS)),
                    tie_weights=tie, reduction=["mean", "sum_time"][rng.integers(2)],
                    init_scale=None if rng.random() < 0.6 else float(rng.choice([0.05, 0.1])),
                    embed_dropout=None if rng.random() < 0.6 else float(rng.choice([0.0, 0.2])),
                    output_dropout=None if rng.random() < 0.6 else float(rng.choice([0.0, 0.4])),
                    ignored=float(rng.choice([0.0, 0.0, 0.2, 1.0])),
                    loss_mask=bool(rng.random() < 0.3))
        return case
    if kind == "seq2seq":       # LSTMs of one layer, no dropout: the textbook's
        case.update(cell="lstm", layers=1, dropout=0.0,
                    variant=list(SEQ2SEQ)[rng.integers(len(SEQ2SEQ))],
                    V=int(rng.choice([3, 13, 100, 1000])), D=int(rng.choice(WIDTHS)),
                    S=int(rng.integers(1, 30)), T=int(rng.integers(1, 30)),
                    padded=bool(rng.random() < 0.5))
        return case
    ids = rng.random() < 0.5
    case.update(bidirectional=bool(rng.random() < 0.5), ids=bool(ids),
                V=int(rng.choice([2, 7, 50, 300])) if ids else None,
                D=int(rng.choice(WIDTHS)), ragged=bool(rng.random() < 0.6),
                weighted=bool(rng.random() < 0.4))
    if kind == "classifier":
        case["outputs"] = int(rng.choice([2, 3, 10, 40]))
    elif kind == "regressor":
        case.update(outputs=int(rng.choice([1, 1, 2, 5])),
                    loss=["squared_error", "huber"][rng.integers(2)],
                    huber_delta=float(rng.choice([0.1, 1.0])))
    else:
        case.update(outputs=int(rng.choice([2, 5, 17])),
                    ignored=float(rng.choice([0.0, 0.2])))
    # padding anywhere: id 0 (mask_zero) or steps of features all at
    # mask_value; drawn last
    if rng.random() < 0.4:
        if ids:
            case["mask_zero"] = True
        else:
            case["mask_value"] = float(rng.choice([0.0, -1.0]))
    return case


def build_model(case, seed):
    common = dict(cell=case["cell"], hidden_size=case["H"], num_layers=case["layers"],
                  dropout=case["dropout"], dtype=case["dtype"], random_state=seed)
    if case["kind"] == "lm":
        return RnnLM(case["V"], wordvec_size=case["D"], tie_weights=case["tie_weights"],
                     reduction=case["reduction"], init_scale=case["init_scale"],
                     embed_dropout=case["embed_dropout"],
                     output_dropout=case["output_dropout"], **common)
    if case["kind"] == "seq2seq":
        return SEQ2SEQ[case["variant"]](case["V"], wordvec_size=case["D"],
                                        hidden_size=case["H"], dtype=case["dtype"],
                                        random_state=seed)
    features = dict(vocab_size=case["V"], embedding_size=case["D"]) if case["ids"] \
        else dict(input_size=case["D"])
    common.update(bidirectional=case["bidirectional"], **features)
    if case.get("mask_zero"):
        common["mask_zero"] = True
    if case.get("mask_value") is not None:
        common["mask_value"] = case["mask_value"]
    if case["kind"] == "classifier":
        return SequenceClassifier(case["outputs"], **common)
    if case["kind"] == "regressor":
        return SequenceRegressor(case["outputs"], loss=case["loss"],
                                 huber_delta=case["huber_delta"], **common)
    return SequenceTagger(case["outputs"], **common)


# ------------------------------------------------------------ PyTorch's twin
def t64(array):
    """A float64 leaf tensor holding array (a copy)."""
    return torch.tensor(np.asarray(array, np.float64), dtype=F64)


class TorchNetwork:
    """The model's network as one single-layer torch module per layer (so
    that dropout masks can go in between), float64, the same weights."""

    def __init__(self, net):
        self.net = net
        state = to_torch_state_dict(net)
        nd = net.num_directions
        self.layers = []
        for layer in range(net.num_layers):
            D = net.input_size if layer == 0 else nd * net.hidden_size
            m = TORCH_CELLS[net.cell](D, net.hidden_size, 1, bidirectional=nd == 2,
                                      batch_first=True, dtype=F64)
            with torch.no_grad():
                for name, p in m.named_parameters():
                    p.copy_(t64(state[name.replace("_l0", f"_l{layer}")]))
            self.layers.append(m)

    def __call__(self, x, lengths=None, masks=None, state=None):
        """x (N, T, D) -> (outputs, h_n, c_n or None); masks[l]: the mask
        on layer l's input (None: none); state: (h0, c0 or None) tensors."""
        nd, lstm = self.net.num_directions, self.net.cell == "lstm"
        h_n, c_n = [], []
        for layer, m in enumerate(self.layers):
            if masks is not None and masks[layer] is not None:
                x = x * t64(masks[layer])
            rows = slice(layer * nd, (layer + 1) * nd)
            st = None if state is None else \
                ((state[0][rows], state[1][rows]) if lstm else state[0][rows])
            x, fin = torch_run(m, x, st, lengths)
            h_n.append(fin[0] if lstm else fin)
            c_n.append(fin[1] if lstm else None)
        return x, torch.cat(h_n), (torch.cat(c_n) if lstm else None)

    def zero_grad(self):
        for m in self.layers:
            m.zero_grad(set_to_none=True)

    def grads_against(self, tol, failures, where):
        """The network's gradients (rnnfast's) against the torch layers'."""
        ours = grads_by_torch_name(self.net)
        for layer, m in enumerate(self.layers):
            for name, p in m.named_parameters():
                ours_name = name.replace("_l0", f"_l{layer}")
                if name.startswith("bias_hh") and self.net.cell != "gru":
                    ours_name = ours_name.replace("bias_hh", "bias_ih")  # b = b_ih + b_hh
                close(f"network {ours_name}{where}", ours[ours_name], p.grad.numpy(), tol,
                      failures)


def picked_nll(logits, targets, counted):
    """-log softmax(logits)[target] where counted (else 0), elementwise."""
    logp = torch.log_softmax(logits, dim=-1)
    safe = torch.tensor(np.where(counted, targets, 0))
    return -logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1) * t64(counted)


# ------------------------------------------------------------------- cases
def run_case(case, seed):
    """A list of what differs from PyTorch's twin (empty: the case passed)."""
    rng = np.random.default_rng(seed)
    model = build_model(case, int(rng.integers(2 ** 31)))
    scale_weights(model, rng)
    failures = []
    with threadpool_limits(case["threads"]):
        limits = [m.split_limits() for m in (_rnn, _lstm, _gru)]
        if case["split_all"]:
            for m in (_rnn, _lstm, _gru):
                m.split_limits(1, 1, 1)
        try:
            if case["kind"] == "lm":
                lm_failures(case, model, rng, failures)
            elif case["kind"] == "seq2seq":
                seq2seq_failures(case, model, rng, failures)
            else:
                head_failures(case, model, rng, failures)
            optimizer_failures(case, model, rng, failures)
            bad_input_failures(case, model, rng, failures)
        finally:
            for m, lim in zip((_rnn, _lstm, _gru), limits):
                m.split_limits(*lim)
    return failures


def scale_weights(model, rng):
    """Weights that make every value and gradient of order 1: the models'
    own (embeddings of 0.01, zero biases, N(0, 1/fan_in)) give logits near
    zero and gradients of 1e-3, where the comparison's absolute tolerance
    (2e-4 in float32) would let a 10 % error through.  Matrices U(+-1.5 /
    sqrt(rows)), embeddings U(+-1), biases U(+-0.5)."""
    embeds = [part.embed for part in (model, getattr(model, "encoder", None),
                                      getattr(model, "decoder", None))
              if getattr(part, "embed", None) is not None]
    embed_ids = {id(e.params[0]) for e in embeds}
    for p in model.params:
        if id(p) in embed_ids:
            a = 1.0
        elif p.ndim == 2 and p.shape[0] > 2:
            a = 1.5 / np.sqrt(p.shape[0])
        else:                               # b (G,), or a GRU's b (2, G)
            a = 0.5
        p[...] = rng.uniform(-a, a, p.shape)


def reference_draw(logits, temperature, top_k, top_p, skip, draws):
    """One id per row of logits (a torch (N, V) tensor in double) the way
    Hugging Face's generate filters them (skip_ids, top-k, temperature,
    top-p: sorted ascending, the tokens whose cumulative probability is at
    most 1 - top_p removed, the likeliest kept), then drawn by inverse CDF
    with u = draws.random(N) times the kept mass, as RnnLM.generate draws."""
    z = logits.clone()
    z[:, list(skip)] = -torch.inf
    if top_k is not None:
        z[z < torch.topk(z, min(top_k, z.shape[1])).values[:, -1:]] = -torch.inf
    probs = torch.softmax(z / temperature, dim=-1)
    if top_p is not None:
        ascending, order = torch.sort(probs, dim=-1)
        removed = torch.cumsum(ascending, dim=-1) <= 1 - top_p
        removed[:, -1] = False
        probs = probs.scatter(1, order, ascending.masked_fill(removed, 0.0))
    cdf = torch.cumsum(probs, dim=-1).numpy()
    u = draws.random(cdf.shape[0])[:, None] * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=1), cdf.shape[1] - 1)


def sampled_generate_failures(model, lm_logits, prompt, length, rng, failures):
    """generate with a random temperature, top_k, top_p and skip_ids against
    PyTorch's logits drawn by reference_draw from the same seed (float64
    only: a draw's u can fall between two rounded cumulative sums)."""
    V = model.vocab_size
    options = dict(temperature=float(rng.choice([0.5, 1.0, 2.0])),
                   top_k=int(rng.integers(1, V + 1)) if rng.random() < 0.5 else None,
                   top_p=float(rng.uniform(0.3, 1.0)) if rng.random() < 0.5 else None)
    skip = rng.choice(V, int(rng.integers(0, V // 2 + 1)), replace=False)
    seed = int(rng.integers(2 ** 31))
    ids = model.generate(prompt, length, skip_ids=skip, random_state=seed, **options)
    draws, ref_ids = np.random.default_rng(seed), prompt
    for _ in range(length):             # the whole prefix again: no state to carry
        nxt = reference_draw(lm_logits(ref_ids)[:, -1], options["temperature"],
                             options["top_k"], options["top_p"], skip, draws)
        ref_ids = np.concatenate([ref_ids, nxt[:, None]], axis=1)
    if not np.array_equal(ids, ref_ids):
        failures.append(f"generate (sampled): {int((ids != ref_ids).sum())} of {ids.size} "
                        f"ids differ from PyTorch's logits drawn the same way ({options}, "
                        f"{skip.size} ids skipped)")


def lm_failures(case, model, rng, failures):
    """Two training chunks (the state carried, each chunk's loss and
    gradients), then evaluation scores from a zero state, then a save and
    load."""
    N, T, V, tol = case["N"], case["T"], case["V"], TOL[case["dtype"]]
    twin = TorchNetwork(model.network)
    E = t64(model.embed.params[0]).requires_grad_()
    W = None if case["tie_weights"] else t64(model.affine.params[0]).requires_grad_()
    b = t64(model.affine.params[1]).requires_grad_()
    lstm = model.network.cell == "lstm"
    state = None
    chunks = []
    for chunk in range(2):
        xs = rng.integers(0, V, (N, T))
        ts = rng.integers(0, V, (N, T))
        ts[rng.random((N, T)) < case["ignored"]] = -1
        mask = rng.random((N, T)) < 0.7 if case["loss_mask"] else None
        chunks.append(xs)
        loss = model.forward(xs, ts, mask)
        masks = model.network._caches[1]
        e_mask, o_mask = model.embed_dropout.mask, model.output_dropout.mask
        model.backward()

        for t in (E, W, b):
            if t is not None:
                t.grad = None
        twin.zero_grad()
        x = E[torch.tensor(xs)]
        if e_mask is not None:
            x = x * t64(e_mask)
        hs, h_n, c_n = twin(x, masks=masks, state=state)
        state = (h_n.detach(), c_n.detach() if lstm else None)
        if o_mask is not None:
            hs = hs * t64(o_mask)
        logits = hs @ (E.T if W is None else W) + b
        counted = ts != -1 if mask is None else (ts != -1) & mask
        total = picked_nll(logits, ts, counted).sum()
        denom = int(counted.sum()) if case["reduction"] == "mean" else N
        ref = total / max(denom, 1)
        ref.backward()
        where = f" (chunk {chunk})"
        close("loss" + where, loss, ref.item(), tol, failures)
        close("embedding grad" + where, model.embed.grads[0], E.grad.numpy(), tol, failures)
        if W is not None:
            close("output W grad" + where, model.affine.grads[0], W.grad.numpy(), tol,
                  failures)
        close("output b grad" + where, model.affine.grads[1], b.grad.numpy(), tol, failures)
        twin.grads_against(tol, failures, where)

    # evaluation: no dropout, from a zero state; predict advances the state
    model.reset_state()
    scores = model.predict(chunks[0])
    with torch.no_grad():
        hs, _, _ = twin(E[torch.tensor(chunks[0])])
        ref = hs @ (E.T if W is None else W) + b
    close("predict (eval)", scores, ref.numpy(), tol, failures)

    def lm_logits(ids):
        with torch.no_grad():
            hs, _, _ = twin(E[torch.tensor(ids)])
            return hs @ (E.T if W is None else W) + b

    # perplexity: contiguous streams read in chunks, the state carried
    batch, steps = int(rng.integers(1, 6)), int(rng.integers(1, 9))
    corpus = rng.integers(0, V, batch * int(rng.integers(1, 25)) + 1)
    L = (corpus.size - 1) // batch
    logits = lm_logits(corpus[:batch * L].reshape(batch, L))
    targets = corpus[1:batch * L + 1].reshape(batch, L)
    nll = picked_nll(logits, targets, np.ones_like(targets, bool)).mean()
    close("perplexity", perplexity(model, corpus, batch, steps), np.exp(nll.item()), tol,
          failures)
    if case["dtype"] == np.float64:     # float32's argmax may break a near tie otherwise
        prompt = rng.integers(0, V, (N, int(rng.integers(1, 5))))
        length = int(rng.integers(1, 6))
        ids = model.generate(prompt, length, temperature=0)
        ref_ids = prompt
        for _ in range(length):         # the whole prefix again: no state to carry
            nxt = lm_logits(ref_ids)[:, -1].argmax(-1).numpy()
            ref_ids = np.concatenate([ref_ids, nxt[:, None]], axis=1)
        if not np.array_equal(ids, ref_ids):
            failures.append(f"generate: {int((ids != ref_ids).sum())} of {ids.size} ids "
                            f"differ from PyTorch's greedy decoding")
        sampled_generate_failures(model, lm_logits, prompt, length, rng, failures)

    def reloaded_scores(m):
        m.reset_state()
        return m.predict(chunks[1])
    save_load_failures(model, reloaded_scores, failures)


def head_inputs(case, model, rng):
    N, T = case["N"], case["T"]
    lengths = rng.integers(1, T + 1, N) if case["ragged"] else None
    if case["ids"]:
        X = rng.integers(0, case["V"], (N, T))
        if case.get("mask_zero"):               # padding anywhere, rows of it only too
            X[rng.random((N, T)) < rng.choice([0.1, 0.5, 0.9])] = 0
        if lengths is not None:                  # padding past a length: any id
            X[np.arange(T) >= lengths[:, None]] = -1
    else:
        X = rng.standard_normal((N, T, case["D"])).astype(case["dtype"])
        if case.get("mask_value") is not None:  # masked steps anywhere, rows of them only
            X[rng.random((N, T)) < rng.choice([0.1, 0.5, 0.9])] = case["mask_value"]
            X[rng.random((N, T)) < 0.2, 0] = case["mask_value"]   # one feature: read
    K = case["outputs"]
    if case["kind"] == "classifier":
        y = rng.integers(0, K, N)
    elif case["kind"] == "regressor":
        y = rng.standard_normal((N, K)).astype(case["dtype"])
        if K == 1 and rng.random() < 0.5:
            y = y[:, 0]                          # (N,) when n_outputs == 1
    else:
        y = rng.integers(0, K, (N, T))
        y[rng.random((N, T)) < case["ignored"]] = -1
    weights = None
    if case["weighted"]:
        weights = rng.uniform(0, 2, N)
        weights[rng.random(N) < 0.2] = 0.0
    return X, y, lengths, weights


def skip_padding(X, lengths, pad):
    """Masking's reading of ids X (N, T) (pad 0) or features X (N, T, D)
    (pad: mask_value), row by row: each row's steps other than padding
    (within its length) at its front, and their counts as the lengths ->
    (X (N, the longest count or 1[, D]), lengths (a row of padding only
    gets 1), that row's mark: its features are the zero initial state's,
    the (N, T) steps kept)."""
    N, T = X.shape[:2]
    kept = np.zeros((N, T), bool)
    for i in range(N):
        for t in range(T if lengths is None else lengths[i]):
            kept[i, t] = X[i, t] != pad if X.ndim == 2 else (X[i, t] != pad).any()
    rows = [X[i][kept[i]] for i in range(N)]
    counts = np.array([len(row) for row in rows])
    out = np.zeros((N, max(counts.max(), 1)) + X.shape[2:], X.dtype)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out, np.maximum(counts, 1), counts == 0, kept


def spread_back(hs, kept, bidirectional):
    """A masked tagger's features at the original steps, step by step as
    Keras gives them: a kept step its own, a masked one the previous kept
    step's (zeros before the first), or zeros when bidirectional."""
    N, T = kept.shape
    index = np.full((N, T), -1)
    for i in range(N):
        last = -1
        for t in range(T):
            if kept[i, t]:
                last += 1
                index[i, t] = last
            elif not bidirectional:
                index[i, t] = last
    picked = hs[torch.arange(N)[:, None], torch.tensor(np.maximum(index, 0))]
    return picked * t64(index >= 0)[:, :, None]


def head_reference(case, twin, E, W, b, X, y, lengths, weights, masks, head_mask):
    """PyTorch's scores and loss of a sequence head (float64)."""
    empty = kept = None
    if case.get("mask_zero"):
        X, lengths, empty, kept = skip_padding(X, lengths, 0)
    elif case.get("mask_value") is not None:
        X, lengths, empty, kept = skip_padding(X, lengths, case["mask_value"])
    N, T = X.shape[:2]
    nd = twin.net.num_directions
    if case["ids"]:
        valid = np.ones((N, T), bool) if lengths is None else np.arange(T) < lengths[:, None]
        x = E[torch.tensor(np.where(valid, X, 0))]
    else:
        x = t64(X)
    hs, h_n, _ = twin(x, lengths, masks)
    if case["kind"] == "tagger":
        feats = hs if kept is None else spread_back(hs, kept, nd == 2)
    else:
        feats = torch.cat(list(h_n[-nd:]), dim=1)
        if empty is not None:
            feats = feats * t64(~empty)[:, None]
    if head_mask is not None:
        feats = feats * t64(head_mask)
    scores = feats @ W + b
    w = t64(np.ones(N) if weights is None else weights)
    if case["kind"] == "classifier":
        nll = picked_nll(scores, y, np.ones(N, bool))
        loss = (w * nll).sum() / (w.sum() if w.sum() > 0 else 1.0)
    elif case["kind"] == "regressor":
        d = scores - t64(y.reshape(N, -1))
        if case["loss"] == "squared_error":
            el = d * d
        else:
            delta = case["huber_delta"]
            el = torch.where(d.abs() <= delta, 0.5 * d * d, delta * (d.abs() - 0.5 * delta))
        denom = w.sum() * el.shape[1]
        loss = (w[:, None] * el).sum() / (denom if denom > 0 else 1.0)
    else:
        if kept is not None:            # masked steps' labels do not count
            valid = kept
        else:
            valid = np.ones((N, T), bool) if lengths is None else np.arange(T) < lengths[:, None]
        counted = valid & (y != -1)
        nll = picked_nll(scores, y, counted)
        denom = (w[:, None] * t64(counted)).sum()
        loss = (w[:, None] * nll).sum() / (denom if denom > 0 else 1.0)
    return scores, loss


def head_failures(case, model, rng, failures):
    """A training forward and backward (loss, every gradient), evaluation
    scores, a save and load."""
    tol = TOL[case["dtype"]]
    X, y, lengths, weights = head_inputs(case, model, rng)
    loss = model.forward(X, y, lengths, sample_weight=weights)
    masks, head_mask = model.network._caches[1], model.head_dropout.mask
    model.backward()

    twin = TorchNetwork(model.network)
    E = t64(model.embed.params[0]).requires_grad_() if model.embed is not None else None
    W = t64(model.affine.params[0]).requires_grad_()
    b = t64(model.affine.params[1]).requires_grad_()
    _, ref = head_reference(case, twin, E, W, b, X, y, lengths, weights, masks, head_mask)
    ref.backward()
    close("loss", loss, ref.item(), tol, failures)
    if E is not None:
        close("embedding grad", model.embed.grads[0], E.grad.numpy(), tol, failures)
    close("output W grad", model.affine.grads[0], W.grad.numpy(), tol, failures)
    close("output b grad", model.affine.grads[1], b.grad.numpy(), tol, failures)
    twin.grads_against(tol, failures, "")

    scores = model.predict_scores(X, lengths)
    with torch.no_grad():
        ref_scores, _ = head_reference(case, twin, E, W, b, X, y, lengths, weights, None, None)
    close("predict_scores (eval)", scores, ref_scores.numpy(), tol, failures)
    save_load_failures(model, lambda m: m.predict_scores(X, lengths), failures)


class TorchTimeLSTM:
    """A TimeLSTM's weights in a float64 torch.nn.LSTM, and its gradients
    compared with the layer's."""

    def __init__(self, layer):
        self.layer = layer
        D, G = layer.params[0].shape
        self.module = torch.nn.LSTM(D, G // 4, batch_first=True, dtype=F64)
        names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
        with torch.no_grad():
            for name, w in zip(names, to_torch_weights("lstm", *layer.params)):
                getattr(self.module, name).copy_(t64(w))

    def __call__(self, x, h0):
        """x (N, T, D), h0 (N, H) (c0 zeros) -> outputs (N, T, H)."""
        return self.module(x, (h0[None], torch.zeros_like(h0)[None]))[0]

    def grads_against(self, tol, failures, name):
        names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
        ours = to_torch_weights("lstm", *self.layer.grads)
        ours[3] = ours[2]                       # b = b_ih + b_hh: both have its gradient
        for n, g in zip(names, ours):
            close(f"{name} {n}", g, getattr(self.module, n).grad.numpy(), tol, failures)


def seq2seq_reference(case, twins, xs, dec_in):
    """PyTorch's logits (N, T, V) of an encoder-decoder (float64)."""
    (Ee, enc), (Ed, dec), (Wa, ba) = twins
    enc_hs = enc(Ee[torch.tensor(xs)], torch.zeros(xs.shape[0], case["H"], dtype=F64))
    h = enc_hs[:, -1]
    y = Ed[torch.tensor(dec_in)]
    if case["variant"] == "peeky":
        peek = h[:, None, :].expand(-1, y.shape[1], -1)
        out = dec(torch.cat([peek, y], dim=2), h)
        feats = torch.cat([peek, out], dim=2)
    elif case["variant"] == "attention":
        out = dec(y, h)
        a = torch.softmax(out @ enc_hs.transpose(1, 2), dim=-1)        # (N, T, S)
        feats = torch.cat([a @ enc_hs, out], dim=2)
    else:
        feats = dec(y, h)
    return feats @ Wa + ba


def seq2seq_failures(case, model, rng, failures):
    """A teacher-forced training step (loss, every gradient), and for
    float64 the greedy decoding; a save and load."""
    N, S, T, V, tol = case["N"], case["S"], case["T"], case["V"], TOL[case["dtype"]]
    xs = rng.integers(0, V, (N, S))
    ts = rng.integers(0, V, (N, T + 1))
    if case["padded"]:                      # rows ending early: ignore_label to the end
        ends = rng.integers(2, T + 2, N)
        ts[np.arange(T + 1) >= ends[:, None]] = -1
    loss = model.forward(xs, ts)
    model.backward()

    enc, dec = model.encoder, model.decoder
    Ee, Ed = (t64(part.embed.params[0]).requires_grad_() for part in (enc, dec))
    Wa, ba = (t64(p).requires_grad_() for p in dec.affine.params)
    twins = ((Ee, TorchTimeLSTM(enc.lstm)), (Ed, TorchTimeLSTM(dec.lstm)), (Wa, ba))
    dec_in = np.where(ts[:, :-1] == -1, 0, ts[:, :-1])
    logits = seq2seq_reference(case, twins, xs, dec_in)
    counted = ts[:, 1:] != -1
    ref = picked_nll(logits, ts[:, 1:], counted).sum() / max(int(counted.sum()), 1)
    ref.backward()
    close("loss", loss, ref.item(), tol, failures)
    close("encoder embedding grad", enc.embed.grads[0], Ee.grad.numpy(), tol, failures)
    close("decoder embedding grad", dec.embed.grads[0], Ed.grad.numpy(), tol, failures)
    close("output W grad", dec.affine.grads[0], Wa.grad.numpy(), tol, failures)
    close("output b grad", dec.affine.grads[1], ba.grad.numpy(), tol, failures)
    twins[0][1].grads_against(tol, failures, "encoder")
    twins[1][1].grads_against(tol, failures, "decoder")

    length = int(rng.integers(1, 8))
    if case["dtype"] == np.float64:         # float32's argmax may break a near tie otherwise
        ids = model.generate(xs, 0, length)
        with torch.no_grad():
            ref_ids = np.zeros((N, 0), np.int64)
            for _ in range(length):         # the whole prefix again: no state to carry
                prefix = np.concatenate([np.zeros((N, 1), np.int64), ref_ids], axis=1)
                nxt = seq2seq_reference(case, twins, xs, prefix)[:, -1].argmax(-1)
                ref_ids = np.concatenate([ref_ids, nxt.numpy()[:, None]], axis=1)
        if not np.array_equal(ids, ref_ids):
            failures.append(f"generate: {int((ids != ref_ids).sum())} of {ids.size} ids "
                            f"differ from PyTorch's greedy decoding")
    save_load_failures(model, lambda m: m.generate(xs, 0, length), failures)


def optimizer_failures(case, model, rng, failures):
    """Two steps of an optimizer on the model's params (each distinct array
    once, a tied E included) from the last backward's gradients, clipped
    to half their norm one time in two, against its torch.optim twin given
    the same gradients: the compiled steps at a model's sizes (up to 4000 x
    129 values, two threads)."""
    names = list(TORCH_TWINS)
    if case["dtype"] == np.float32 and "adam" in names:
        # Adam's L2 term adds weight_decay * p to g; where the two cancel to
        # within ~eps (1e-8), float32's rounding of the sum (~1e-10) moves
        # g / (|g| + eps) by ~1e-2, so the step is lr * 1e-2 off float64's
        # (seed 104018: 4.4e-4 at lr 0.1).  Ill-conditioned, not wrong:
        # float64 runs it.
        names.remove("adam")
    name = names[rng.integers(len(names))]
    make, make_torch = TORCH_TWINS[name]
    opt, tol = make(), TOL[case["dtype"]]
    params = [t64(p).requires_grad_() for p in model.params]
    topt = make_torch(torch, params)
    max_norm = 0.5 * global_norm(model.grads) if rng.random() < 0.5 else None
    for step in range(2):
        grads = [g * (1.0 - 0.3 * step) for g in model.grads]  # another gradient each step
        for t, g in zip(params, grads):
            t.grad = t64(g)
        if max_norm:
            clip_grads(grads, max_norm)
            torch.nn.utils.clip_grad_norm_(params, max_norm)
        opt.update(model.params, grads)
        topt.step()
    for i, (p, t) in enumerate(zip(model.params, params)):
        close(f"{name} step params[{i}]{' (clipped)' if max_norm else ''}", p,
              t.detach().numpy(), tol, failures)


def save_load_failures(model, scores_of, failures):
    """model through rnnfast.io.save and load (fuzz_networks.saved_and_loaded:
    the same class, config and params bitwise), and scores_of(loaded)
    bitwise equal to scores_of(model)."""
    loaded = fuzz_networks.saved_and_loaded(model, failures)
    if loaded is not None and not np.array_equal(scores_of(loaded), scores_of(model)):
        failures.append("load: evaluation scores differ from the saved model's")


# ---------------------------------------------------------------- bad input
def bad_calls(case, model, rng):
    """[(what, argument name, call)]: a valid call of the model (forward,
    and predict, predict_scores or generate) with one argument made wrong."""
    N, T, V = case["N"], case["T"], case["V"]
    kind = case["kind"]
    calls = []
    if kind in ("lm", "seq2seq"):
        S = T if kind == "lm" else case["S"]
        xs = rng.integers(0, V, (N, S))
        ts = rng.integers(0, V, (N, T + (kind == "seq2seq")))
        fwd = model.forward

        def with_(xs=xs, ts=ts, **kw):
            return lambda: fwd(xs, ts, **kw)
        out_of_range = xs.copy()
        out_of_range[rng.integers(N), rng.integers(S)] = [V, -1, -7, 2 ** 40][rng.integers(4)]
        calls += [("xs id out of range", "xs", with_(xs=out_of_range)),
                  ("xs of floats", "xs", with_(xs=xs + 0.5)),
                  ("xs of one dimension", "xs", with_(xs=xs[0])),
                  ("xs of three dimensions", "xs", with_(xs=xs[..., None])),
                  ("ts of another batch", "ts", with_(ts=np.concatenate([ts, ts]))),
                  ("ts of floats", "ts", with_(ts=ts + 0.5))]
        bad_t = ts.copy()
        bad_t[rng.integers(N), -1] = V + int(rng.integers(3))
        calls.append(("ts id out of range", "ts", with_(ts=bad_t)))
        if kind == "lm":
            calls += [("ts of another length", "ts", with_(ts=ts[:, :-1] if T > 1 else
                                                           np.concatenate([ts, ts], 1))),
                      ("mask of another shape", "mask",
                       with_(mask=np.ones((N, T + 1), bool))),
                      ("predict's xs out of range", "xs",
                       lambda: model.predict(out_of_range)),
                      ("generate's prompt out of range", "start_ids",
                       lambda: model.generate(out_of_range, 3)),
                      ("generate's empty prompt", "start_ids",
                       lambda: model.generate(xs[:, :0], 3)),
                      ("generate's length negative", "length",
                       lambda: model.generate(xs, -1)),
                      ("generate's temperature NaN", "temperature",
                       lambda: model.generate(xs, 3, temperature=float("nan"))),
                      ("generate's top_k of 0", "top_k",
                       lambda: model.generate(xs, 3, top_k=0)),
                      ("generate's top_p of 0", "top_p",
                       lambda: model.generate(xs, 3, top_p=0.0)),
                      ("generate's skip_ids out of range", "skip_ids",
                       lambda: model.generate(xs, 3, skip_ids=[V])),
                      ("generate skipping every id", "skip_ids",
                       lambda: model.generate(xs, 3, skip_ids=np.arange(V)))]
        else:
            calls += [("generate's xs out of range", "xs",
                       lambda: model.generate(out_of_range, 0, 3)),
                      ("generate's start_id out of range", "start_id",
                       lambda: model.generate(xs, V, 3)),
                      ("generate's sample_size negative", "sample_size",
                       lambda: model.generate(xs, 0, -2)),
                      ("ts without a target", "ts", with_(ts=ts[:, :1])),
                      ("xs without a step", "xs", with_(xs=xs[:, :0]))]
            if T >= 2:
                mid = ts.copy()
                mid[0, 1] = -1                  # ignore_label before a target
                calls.append(("ts padded before a target", "ts", with_(ts=mid)))
        return calls
    X, y, lengths, weights = head_inputs(case, model, rng)
    fwd = model.forward

    def with_(X=X, y=y, lengths=lengths, sample_weight=weights):
        return lambda: fwd(X, y, lengths, sample_weight=sample_weight)
    if case["ids"]:
        bad = np.where(X < 0, 0, X)
        bad[rng.integers(N), 0] = [V, -3][rng.integers(2)]
        calls += [("X id out of range", "X", with_(X=bad)),
                  ("X of three dimensions", "X", with_(X=X[..., None]))]
    else:
        nan = X.copy()
        nan[rng.integers(N), rng.integers(T), rng.integers(case["D"])] = [np.nan, np.inf][
            rng.integers(2)]
        calls += [("X with NaN or Inf", "X", with_(X=nan)),
                  ("X of another width", "X", with_(X=np.concatenate([X, X[..., :1]], 2))),
                  ("X of two dimensions", "X", with_(X=X[..., 0]))]
    calls += [("predict_scores's lengths past T", "lengths",
               lambda: model.predict_scores(X, np.full(N, T + 1))),
              ("predict_scores's X of another batch than lengths", "lengths",
               lambda: model.predict_scores(X, np.ones(N + 1, int))),
              ("lengths of 0", "lengths", with_(lengths=np.full(N, 0))),
              ("lengths past T", "lengths", with_(lengths=np.full(N, T + 1))),
              ("lengths of another batch", "lengths", with_(lengths=np.ones(N + 1, int))),
              ("lengths of floats", "lengths", with_(lengths=np.full(N, 1.0))),
              ("y of another batch", "y", with_(y=np.concatenate([y, y]))),
              ("sample_weight negative", "sample_weight", with_(sample_weight=-np.ones(N))),
              ("sample_weight of another batch", "sample_weight",
               with_(sample_weight=np.ones(N + 1))),
              ("sample_weight NaN", "sample_weight", with_(sample_weight=np.full(N, np.nan)))]
    if kind == "regressor":
        calls.append(("y with NaN", "y", with_(y=np.full_like(y, np.nan))))
    else:
        calls.append(("y of floats", "y", with_(y=y + 0.5)))
        # a masked tagger's labels at padding never count and are not
        # checked (as past a length): out of range is bad only where a step counts
        pad = 0 if case.get("mask_zero") else case.get("mask_value")
        if kind != "tagger" or pad is None or skip_padding(X, lengths, pad)[3].any():
            calls.append(("y id out of range", "y", with_(y=np.full_like(y, case["outputs"]))))
    return calls


def bad_input_failures(case, model, rng, failures):
    """A few bad calls of the model, each between a valid training forward
    and its backward: each must raise ValueError or TypeError whose message
    starts with the argument's name, and leave the model as it was: the
    backward then gives bitwise the gradients it gives on a copy taken
    before the bad call (not a mix of two calls' caches), and the next
    valid forward bitwise the same loss (for a language model, from the
    same carried state)."""
    calls = bad_calls(case, model, rng)
    picked = rng.choice(len(calls), size=min(3, len(calls)), replace=False)
    valid, after = valid_call(case, rng), valid_call(case, rng)
    for what, name, call in (calls[i] for i in picked):
        valid(model)
        before = copy.deepcopy(model)
        try:
            call()
        except (ValueError, TypeError) as exc:
            msg = str(exc)
            if not (msg.startswith(name + ":") or msg.startswith(name + "[")):
                failures.append(f"bad input ({what}): {type(exc).__name__} does not start "
                                f"with {name!r}: {msg[:200]}")
        except Exception as exc:            # noqa: BLE001 (any other error is the failure)
            failures.append(f"bad input ({what}): {type(exc).__name__}: {str(exc)[:200]}")
        else:
            failures.append(f"bad input ({what}): accepted")
        try:
            model.backward()
        except Exception as exc:            # noqa: BLE001
            failures.append(f"bad input ({what}): the backward after it raised "
                            f"{type(exc).__name__}: {str(exc)[:200]}")
        else:
            before.backward()
            if not all(np.array_equal(g, h) for g, h in zip(model.grads, before.grads)):
                failures.append(f"bad input ({what}): the backward after it gives other "
                                f"gradients")
        if after(model) != after(before):
            failures.append(f"bad input ({what}): the model changed (another loss after it)")


def valid_call(case, rng):
    """model -> the loss of one fixed valid training forward."""
    N, T, V = case["N"], case["T"], case["V"]
    if case["kind"] == "lm":
        xs, ts = rng.integers(0, V, (N, T)), rng.integers(0, V, (N, T))
        return lambda m: m.forward(xs, ts)
    if case["kind"] == "seq2seq":
        xs, ts = rng.integers(0, V, (N, case["S"])), rng.integers(0, V, (N, T + 1))
        return lambda m: m.forward(xs, ts)
    X, y, lengths, weights = head_inputs(case, None, rng)
    return lambda m: m.forward(X, y, lengths, sample_weight=weights)


def describe(case):
    skip = ("kind",)
    return f"{case['kind']} " + " ".join(f"{k}={v}" for k, v in case.items() if k not in skip)


def main(argv=None):
    torch.set_num_threads(1)
    return fuzz_main(argv, __doc__.split("\n\n")[0], lambda rng: draw_case(rng),
                     lambda case, seed: run_case(case, seed), lambda case: describe(case),
                     stream=2, cases=100)


if __name__ == "__main__":
    sys.exit(main())
