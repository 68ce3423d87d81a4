"""Models: backward against finite differences (float64, sampled entries),
declared weight tying, truncated BPTT, seeded generation, perplexity,
ragged batches, get_config round trips, dtypes and bad input."""
import json
import os

import numpy as np
import pytest

from rnnfast.models import (AttentionSeq2seq, PeekySeq2seq, RnnLM, Seq2seq,
                            SequenceClassifier, SequenceRegressor, SequenceTagger,
                            perplexity)
from rnnfast.optim import SGD
from _fd import check_grad

F64 = np.float64


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def _reseed(model):
    """Fixed dropout masks, so that repeated forwards define one function."""
    for owner, attr in ((getattr(model, "embed_dropout", None), "rng"),
                        (getattr(model, "output_dropout", None), "rng"),
                        (getattr(model, "head_dropout", None), "rng"),
                        (getattr(model, "network", None), "_dropout_rng")):
        if owner is not None:
            setattr(owner, attr, np.random.default_rng(99))


def _check_model(model, run, n=6):
    """run() -> loss from a fresh forward; compares model.grads after one
    backward with central differences for every parameter array."""
    run()
    model.backward()
    grads = [g.copy() for g in model.grads]
    assert len(grads) == len(model.params)
    assert len({id(p) for p in model.params}) == len(model.params)
    for i, (p, g) in enumerate(zip(model.params, grads)):
        assert p.shape == g.shape and p.dtype == F64
        check_grad(run, p, g, f"params[{i}] {p.shape}", n=n, seed=i)


# ----------------------------------------------------------------- RnnLM
@pytest.mark.parametrize("options", [
    dict(cell="lstm", num_layers=2, tie_weights=True, dropout=0.3),
    dict(cell="gru", wordvec_size=3, reduction="sum_time"),
    dict(cell="rnn", num_layers=2, init_scale=0.5, embed_dropout=0.2),
])
def test_rnnlm_gradients(options, rng):
    model = RnnLM(7, hidden_size=4, dtype=F64, random_state=0, **options)
    xs, ts = rng.integers(0, 7, (3, 5)), rng.integers(0, 7, (3, 5))
    ts[1, 2] = -1                                           # ignore_label

    def run():
        model.reset_state()
        _reseed(model)
        return model.forward(xs, ts)
    _check_model(model, run)


def test_rnnlm_tied_weights_are_declared_and_summed(rng):
    tied = RnnLM(9, hidden_size=4, num_layers=1, tie_weights=True, dtype=F64,
                 random_state=1)
    E = tied.embed.params[0]
    W = tied.affine.params[0]
    assert W.base is E and np.shares_memory(W, E)
    assert sum(p is E for p in tied.params) == 1
    assert not any(p is W for p in tied.params)
    # the same weights untied: E's gradient must be the sum of both uses
    untied = RnnLM(9, hidden_size=4, num_layers=1, dtype=F64, random_state=1)
    for p_u, p_t in zip(untied.embed.params + untied.network.params,
                        tied.embed.params + tied.network.params):
        p_u[...] = p_t
    untied.affine.params[0][...] = E.T
    untied.affine.params[1][...] = tied.affine.params[1]
    xs, ts = rng.integers(0, 9, (2, 6)), rng.integers(0, 9, (2, 6))
    assert tied.forward(xs, ts) == pytest.approx(untied.forward(xs, ts), rel=1e-12)
    tied.backward()
    untied.backward()
    np.testing.assert_allclose(tied.grads[0],
                               untied.embed.grads[0] + untied.affine.grads[0].T,
                               rtol=1e-12, atol=1e-14)
    SGD(lr=0.5).update(tied.params, tied.grads)             # still shared after a step
    np.testing.assert_array_equal(tied.affine.params[0], tied.embed.params[0].T)
    with pytest.raises(ValueError, match="wordvec_size.*tie_weights"):
        RnnLM(9, wordvec_size=3, hidden_size=4, tie_weights=True)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_rnnlm_tie_survives_deepcopy_and_pickle(rng, how):
    """Pickle and deepcopy store the output layer's W = E.T as an array of
    its own; the copy must tie it to its embedding again, or training
    updates E alone and the copy's output layer keeps the old W."""
    import copy
    import pickle
    model = RnnLM(9, hidden_size=4, tie_weights=True, random_state=1)
    xs, ts = rng.integers(0, 9, (2, 6)), rng.integers(0, 9, (2, 6))
    twin = copy.deepcopy(model) if how == "deepcopy" else pickle.loads(pickle.dumps(model))
    assert twin.affine.params[0].base is twin.embed.params[0]
    assert not np.shares_memory(twin.embed.params[0], model.embed.params[0])
    for m in (model, twin):
        for _ in range(2):
            m.forward(xs, ts)
            m.backward()
            SGD(lr=0.5).update(m.params, m.grads)
    np.testing.assert_array_equal(twin.affine.params[0], twin.embed.params[0].T)
    assert twin.forward(xs, ts) == model.forward(xs, ts)


def test_rnnlm_truncated_bptt_carries_state(rng):
    model = RnnLM(8, hidden_size=5, num_layers=2, random_state=2, dtype=F64)
    xs = rng.integers(0, 8, (3, 7))
    whole = model.predict(xs)
    model.reset_state()
    parts = np.concatenate([model.predict(xs[:, :4]), model.predict(xs[:, 4:])], axis=1)
    np.testing.assert_allclose(parts, whole, rtol=1e-12)
    model.reset_state()
    model.predict(xs[:, :4])
    model.reset_state()
    assert not np.allclose(model.predict(xs[:, 4:]), whole[:, 4:])


def test_rnnlm_generate_seeded(rng):
    model = RnnLM(20, hidden_size=6, random_state=3)
    model.predict(rng.integers(0, 20, (2, 3)))              # a carried state
    state, training = model.network.state, model.training
    a = model.generate([1, 2], 30, random_state=5)
    b = model.generate([1, 2], 30, random_state=5)
    c = model.generate([1, 2], 30, random_state=6)
    assert a.shape == (32,) and list(a[:2]) == [1, 2]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert model.network.state is state and model.training == training
    g1 = model.generate(4, 10, temperature=0, random_state=1)
    g2 = model.generate(4, 10, top_k=1, random_state=2)
    np.testing.assert_array_equal(g1, g2)                   # both greedy
    batch = model.generate([[1, 2], [3, 4]], 25, top_k=3, skip_ids=[0, 5],
                           random_state=7)
    assert batch.shape == (2, 27)
    assert not np.isin(batch[:, 2:], [0, 5]).any()
    with pytest.raises(ValueError, match="start_ids"):
        model.generate([25], 3)
    with pytest.raises(ValueError, match="skip_ids"):
        model.generate([1], 3, skip_ids=np.arange(20))


def test_rnnlm_generate_scores_only_the_prompts_last_step(rng, monkeypatch):
    # the oracle: predict's logits for the whole prompt, then one id at a time
    model = RnnLM(30, wordvec_size=5, hidden_size=7, num_layers=2, random_state=2, dtype=F64)
    prompt = rng.integers(0, 30, (3, 9))
    model.eval()
    model.reset_state()
    ids = [prompt]
    logits = model.predict(prompt)[:, -1]
    for _ in range(6):
        ids.append(logits.argmax(axis=1)[:, None])
        logits = model.predict(ids[-1])[:, -1]
    expected = np.concatenate(ids, axis=1)
    model.train()
    # the output layer sees one step a call: the prompt's others are not scored
    steps = []
    forward = type(model.affine).forward
    monkeypatch.setattr(type(model.affine), "forward",
                        lambda layer, x: steps.append(x.shape[1]) or forward(layer, x))
    np.testing.assert_array_equal(model.generate(prompt, 6, temperature=0), expected)
    assert steps == [1] * 6


def test_perplexity(rng):
    model = RnnLM(13, hidden_size=4, random_state=4, dtype=F64)
    corpus = rng.integers(0, 13, 61)
    # one chunk of 4 x 15: perplexity is exp of the per-token mean loss
    model.eval()
    model.reset_state()
    xs = corpus[:60].reshape(4, 15)
    ts = corpus[1:61].reshape(4, 15)
    assert perplexity(model, corpus, 4, 15) == pytest.approx(
        np.exp(model.forward(xs, ts)), rel=1e-10)
    # chunking must not change it (the state is carried across chunks)
    assert perplexity(model, corpus, 4, 4) == pytest.approx(
        perplexity(model, corpus, 4, 15), rel=1e-10)
    model.affine.params[0][...] = 0                          # uniform predictions
    model.affine.params[1][...] = 0
    assert perplexity(model, corpus, 3, 5) == pytest.approx(13.0, rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rnnlm_dtypes(dtype, rng):
    model = RnnLM(10, hidden_size=4, num_layers=2, dropout=0.2, dtype=dtype,
                  random_state=0, tie_weights=True)
    xs = rng.integers(0, 10, (2, 3))
    assert np.isfinite(model.forward(xs, xs))
    model.backward()
    assert all(p.dtype == dtype and g.dtype == dtype
               for p, g in zip(model.params, model.grads))
    assert model.predict(xs).dtype == dtype


def test_rnnlm_init_scale():
    model = RnnLM(30, hidden_size=10, num_layers=2, init_scale=0.1, random_state=0)
    for p in model.params:
        assert np.abs(p).max() <= 0.1 and np.abs(p).max() > 0.05


def test_rnnlm_bad_input():
    model = RnnLM(5, hidden_size=3)
    with pytest.raises(ValueError, match=r"ids.*0\.\.4"):
        model.forward([[0, 7]], [[0, 1]])
    with pytest.raises(ValueError, match=r"ts: expected shape \(1, 2\), got shape \(1, 3\)"):
        model.forward([[0, 1]], [[0, 1, 2]])
    with pytest.raises(ValueError, match="cell"):
        RnnLM(5, cell="transformer")
    with pytest.raises(RuntimeError):
        RnnLM(5, hidden_size=3).backward()


# --------------------------------------------------------------- seq2seq
@pytest.mark.parametrize("cls", [Seq2seq, PeekySeq2seq, AttentionSeq2seq])
def test_seq2seq_gradients(cls, rng):
    model = cls(8, wordvec_size=3, hidden_size=4, dtype=F64, random_state=0)
    xs, ts = rng.integers(0, 8, (3, 5)), rng.integers(0, 8, (3, 4))
    _check_model(model, lambda: model.forward(xs, ts))


@pytest.mark.parametrize("cls", [Seq2seq, PeekySeq2seq, AttentionSeq2seq])
def test_seq2seq_generate_batched(cls, rng):
    model = cls(11, random_state=1)
    xs = rng.integers(0, 11, (4, 6))
    out = model.generate(xs, start_id=2, sample_size=5)
    assert out.shape == (4, 5)
    for i in range(4):                    # batching does not change a row's decoding
        np.testing.assert_array_equal(model.generate(xs[i], 2, 5), out[i])
    with pytest.raises(ValueError, match="ts: expected shape"):
        model.forward(xs, xs[:, :1])
    with pytest.raises(ValueError, match="xs"):
        model.forward(xs[0], xs)


def test_seq2seq_float32(rng):
    model = AttentionSeq2seq(9, random_state=0)
    xs, ts = rng.integers(0, 9, (2, 4)), rng.integers(0, 9, (2, 3))
    assert np.isfinite(model.forward(xs, ts))
    model.backward()
    assert all(g.dtype == np.float32 for g in model.grads)
    assert model.decoder.attention.attention_weights.shape == (2, 2, 4)


def test_attention_generate_checks_the_encoder_states_once(rng, monkeypatch):
    """The same ids as the step-by-step forward (the states checked at each
    step); the check of the (N, S, H) states runs once a generate; a NaN in
    them still refuses the call by name."""
    from rnnfast.layers import TimeAttention
    model = AttentionSeq2seq(11, 6, 8, random_state=1, dtype=F64)
    xs = rng.integers(0, 11, (3, 5))
    enc_hs = model.encoder.forward(xs)
    model.decoder._start(enc_hs)
    x, expected = np.full((3, 1), 2), []
    for _ in range(7):                          # the checked path, step by step
        x = model.decoder._step(x, enc_hs).argmax(axis=2)
        expected.append(x[:, 0])
    checks = []
    check = TimeAttention._checked_encoder_states
    monkeypatch.setattr(TimeAttention, "_checked_encoder_states",
                        staticmethod(lambda hs: checks.append(hs.shape) or check(hs)))
    np.testing.assert_array_equal(model.generate(xs, 2, 7), np.stack(expected, axis=1))
    assert checks == [(3, 5, 8)]
    assert model.decoder._checked_states is None    # nothing kept after the call
    model.encoder.lstm.params[0][0, 0] = np.nan
    with pytest.raises(ValueError, match="hs_enc: contains NaN"):
        model.generate(xs, 2, 7)


# ------------------------------------------------------ sequence heads
CASES = [
    (SequenceClassifier, dict(n_classes=3, input_size=2, num_layers=2, bidirectional=True,
                              dropout=0.25), "float", "class"),
    (SequenceClassifier, dict(n_classes=2, vocab_size=6, embedding_size=3, cell="gru"),
     "ids", "class"),
    (SequenceRegressor, dict(n_outputs=2, input_size=2, cell="rnn", loss="huber",
                             huber_delta=0.3), "float", "real"),
    (SequenceRegressor, dict(vocab_size=6, bidirectional=True), "ids", "real1"),
    (SequenceTagger, dict(n_tags=4, vocab_size=6, bidirectional=True, num_layers=2),
     "ids", "tags"),
    (SequenceTagger, dict(n_tags=3, input_size=2, cell="gru"), "float", "tags"),
    (SequenceClassifier, dict(n_classes=3, vocab_size=6, mask_zero=True, num_layers=2,
                              bidirectional=True, dropout=0.25), "ids", "class"),
    (SequenceRegressor, dict(vocab_size=6, cell="rnn", mask_zero=True), "ids", "real1"),
    (SequenceRegressor, dict(n_outputs=2, input_size=2, mask_value=0.0, cell="gru",
                             num_layers=2, dropout=0.25), "float", "real"),
    (SequenceTagger, dict(n_tags=3, vocab_size=6, mask_zero=True, num_layers=2,
                          dropout=0.25), "ids", "tags"),
]


def _data(kind, target, rng, N=4, T=5):
    X = rng.standard_normal((N, T, 2)) if kind == "float" else rng.integers(0, 6, (N, T))
    if kind == "float":     # all-zero steps: mask_value=0.0's padding, rows of it only too
        X[1, 0] = X[3, 0] = X[0, 2] = 0
    y = {"class": lambda: rng.integers(0, 2, N), "real": lambda: rng.standard_normal((N, 2)),
         "real1": lambda: rng.standard_normal(N), "tags": lambda: rng.integers(0, 3, (N, T))}
    return X, y[target]()


@pytest.mark.parametrize("cls, options, kind, target", CASES)
def test_sequence_heads_gradients(cls, options, kind, target, rng):
    model = cls(hidden_size=3, dtype=F64, random_state=0, **options)
    X, y = _data(kind, target, rng)
    lengths = np.array([5, 2, 4, 1])

    def run():
        _reseed(model)
        return model.forward(X, y, lengths)
    _check_model(model, run)


@pytest.mark.parametrize("cls, options, kind, target", CASES)
def test_sequence_heads_config_round_trip(cls, options, kind, target, rng):
    model = cls(hidden_size=3, random_state=0, **options)
    config = json.loads(json.dumps(model.get_config()))
    clone = cls(**config)
    for p, q in zip(clone.params, model.params):
        p[...] = q
    X, y = _data(kind, target, rng)
    np.testing.assert_array_equal(clone.predict_scores(X), model.predict_scores(X))
    _reseed(model)
    _reseed(clone)
    assert clone.forward(X, y) == model.forward(X, y)


@pytest.mark.parametrize("cls, options, kind, target", CASES)
def test_sequence_heads_no_lengths_as_lengths_of_all_t(cls, options, kind, target, rng):
    """lengths=None (the network's compiled common path, docs/performance.md
    item 151) and lengths of all T (its general path): the same loss,
    gradients and scores."""
    model = cls(hidden_size=3, dtype=F64, random_state=0, **options)
    X, y = _data(kind, target, rng)
    full = np.full(X.shape[0], X.shape[1])
    out = []
    for lengths in (None, full):
        _reseed(model)
        loss = model.forward(X, y, lengths)
        model.backward()
        out.append((loss, [g.copy() for g in model.grads],
                    model.predict_scores(X, lengths)))
    (loss_a, grads_a, scores_a), (loss_b, grads_b, scores_b) = out
    assert loss_a == pytest.approx(loss_b, rel=1e-12)
    for a, b in zip(grads_a, grads_b):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(scores_a, scores_b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("lengths", [None, [5, 5, 3, 5]])
def test_token_model_keeps_its_own_copy_of_the_ids(lengths, rng):
    """Ids changed in place between forward and backward change nothing of
    the embedding's gradient (the model copies them, with or without
    lengths)."""
    model = SequenceClassifier(2, vocab_size=6, hidden_size=3, dtype=F64, random_state=0)
    X, y = rng.integers(0, 6, (4, 5)), rng.integers(0, 2, 4)
    model.forward(X, y, lengths)
    model.backward()
    want = [g.copy() for g in model.grads]
    model.forward(X, y, lengths)
    X[...] = 0
    model.backward()
    for g, w in zip(model.grads, want):
        np.testing.assert_array_equal(g, w)


def test_classifier_refuses_class_ids_of_any_integer_type(rng):
    """y's range test (compiled) sees every value: negative, too large, and
    unsigned ones past int64 (which a cast to intp would wrap)."""
    model = SequenceClassifier(3, input_size=2, hidden_size=2)
    X = np.zeros((3, 4, 2))
    for y in ([0, 1, -1], [0, 3, 1], np.array([0, 1, 2 ** 63 + 1], np.uint64),
              np.array([0, 1, 2 ** 64 - 1], np.uint64), np.array([2, 1, 255], np.uint8)):
        with pytest.raises(ValueError, match=r"y: class ids must lie in 0\.\.2"):
            model.forward(X, y)
    assert np.isfinite(model.forward(X, np.array([0, 2, 1], np.uint8)))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_classifier_padding_is_ignored(cell, rng):
    model = SequenceClassifier(3, input_size=2, hidden_size=4, bidirectional=True,
                               num_layers=2, cell=cell, dtype=F64, random_state=5)
    X = rng.standard_normal((3, 6, 2))
    lengths = np.array([6, 3, 1])
    padded = model.predict_scores(X, lengths)
    for i, n in enumerate(lengths):
        alone = model.predict_scores(X[i:i + 1, :n])
        np.testing.assert_allclose(padded[i], alone[0], rtol=1e-10, atol=1e-12)
    proba = model.predict_proba(X, lengths)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("inputs", ["ids", "features"])
def test_masking_reads_padding_wherever_it_lies(cell, inputs, rng):
    """mask_zero=True (ids) and mask_value (features): a sequence's
    prediction is the unmasked model's on its other steps alone (leading,
    inner and trailing padding skipped, steps past `lengths` too; a step
    with only some features at mask_value is no padding); a sequence of
    padding only gets zero features (the output layer's bias, Keras's
    initial state); the gradients, with such a sequence and dropout in the
    batch, are central differences' (float64), and with ids, id 0's
    embedding row gets none."""
    options = dict(hidden_size=4, num_layers=2, bidirectional=True, cell=cell, dtype=F64,
                   random_state=2)
    if inputs == "ids":
        options.update(vocab_size=7, embedding_size=3)
        masking, pad = dict(mask_zero=True), 0
        X = rng.integers(1, 7, (5, 6))
    else:
        options.update(input_size=2)
        masking, pad = dict(mask_value=-0.5), -0.5
        X = rng.standard_normal((5, 6, 2))
        X[4, 0, 0] = pad                      # one feature only: a step to read
    masked = SequenceClassifier(3, dropout=0.3, **masking, **options)
    plain = SequenceClassifier(3, **options).eval()
    for p, q in zip(plain.params, masked.params):
        p[...] = q
    X[0, :2] = pad
    X[1, 1::2] = pad
    X[2, 4:] = pad
    X[3] = pad
    X[4, 1] = pad
    lengths = np.array([6, 6, 6, 6, 3])
    scores = masked.predict_scores(X, lengths)
    for i in (0, 1, 2, 4):
        steps = X[i, :lengths[i]]
        is_pad = steps == pad if inputs == "ids" else (steps == pad).all(axis=1)
        alone = plain.predict_scores(steps[~is_pad][None])
        np.testing.assert_allclose(scores[i], alone[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(scores[3], masked.affine.params[1])
    # no padding anywhere: masking changes nothing
    full = X[[4, 4], :1]
    np.testing.assert_array_equal(masked.predict_scores(full), plain.predict_scores(full))
    y = np.array([0, 1, 2, 1, 0])

    def run():
        _reseed(masked)
        return masked.forward(X, y, lengths)
    _check_model(masked, run)
    if inputs == "ids":
        run()
        masked.backward()
        assert not masked.grads[0][0].any() and masked.grads[0][1:].any()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_tagger_masking_gives_masked_steps_what_keras_gives(cell, bidirectional, rng):
    """A masked tagger: each real step's scores are the unmasked tagger's on
    the row's real steps alone; a masked step's are the previous real
    step's (the output layer's bias before the first), or the bias when
    bidirectional; the loss is the unmasked tagger's on the real steps
    (masked labels do not count, out-of-range ones there are not refused),
    and the gradients central differences' (float64, dropout, lengths)."""
    options = dict(vocab_size=7, embedding_size=3, hidden_size=4, num_layers=2, cell=cell,
                   bidirectional=bidirectional, dtype=F64, random_state=3)
    masked = SequenceTagger(3, mask_zero=True, dropout=0.3, **options)
    plain = SequenceTagger(3, **options).eval()
    for p, q in zip(plain.params, masked.params):
        p[...] = q
    X = rng.integers(1, 7, (4, 6))
    X[0, :2] = 0
    X[1, 1::2] = 0
    X[3] = 0
    lengths = np.array([6, 6, 4, 6])
    X[2, 4:] = -1                                   # past its length: anything
    y = rng.integers(0, 3, (4, 6))
    y[X == 0] = 99                                  # masked labels: never counted
    scores = masked.predict_scores(X, lengths)
    bias = masked.affine.params[1]
    for i in range(4):
        real = [t for t in range(lengths[i]) if X[i, t] != 0]
        alone = plain.predict_scores(X[i, real][None])[0] if real else None
        previous = None
        for t in range(lengths[i]):
            if t in real:
                previous = alone[real.index(t)]
                np.testing.assert_allclose(scores[i, t], previous, rtol=1e-10, atol=1e-12)
            else:
                want = bias if bidirectional or previous is None else previous
                np.testing.assert_allclose(scores[i, t], want, rtol=1e-10, atol=1e-12)
    real_y = np.where(X == 0, -1, y)[:3]
    compressed = [X[i, [t for t in range(lengths[i]) if X[i, t] != 0]] for i in range(3)]
    width = max(map(len, compressed))
    Xc = np.array([np.pad(c, (0, width - len(c))) for c in compressed])
    yc = np.array([np.pad(real_y[i, [t for t in range(lengths[i]) if X[i, t] != 0]],
                          (0, width - len(compressed[i])), constant_values=-1)
                   for i in range(3)])
    masked.eval(), plain.eval()                     # no dropout: one function each
    assert masked.forward(X[:3], y[:3], lengths[:3]) == pytest.approx(
        plain.forward(Xc, yc, np.array([len(c) for c in compressed])), rel=1e-12)

    def run():
        _reseed(masked)
        return masked.forward(X, y, lengths)
    masked.train()
    _check_model(masked, run)


def test_token_padding_and_tagger_labels_past_lengths(rng):
    model = SequenceTagger(3, vocab_size=6, hidden_size=4, dtype=F64, random_state=0)
    X, y = rng.integers(0, 6, (2, 5)), rng.integers(0, 3, (2, 5))
    lengths = [5, 2]
    loss = model.forward(X, y, lengths)
    X2, y2 = X.copy(), y.copy()
    X2[1, 2:], y2[1, 2:] = -1, 99                 # padding of any value
    assert model.forward(X2, y2, lengths) == pytest.approx(loss, rel=1e-12)
    assert model.forward(X2, y2, lengths) != pytest.approx(model.forward(X, y))


def test_tagger_predict_proba_is_each_steps_softmax(rng):
    """(N, T, n_tags) probabilities: softmax over the tags of each step's
    scores, summing to one; with lengths, a sequence's own steps are what
    it gets alone (padding after it changes nothing)."""
    model = SequenceTagger(3, input_size=2, hidden_size=4, bidirectional=True, dtype=F64,
                           random_state=0)
    X, lengths = rng.standard_normal((2, 5, 2)), np.array([5, 3])
    scores = model.predict_scores(X, lengths)
    proba = model.predict_proba(X, lengths)
    assert proba.shape == (2, 5, 3)
    np.testing.assert_allclose(proba.sum(axis=2), 1.0, rtol=1e-12)
    e = np.exp(scores - scores.max(axis=2, keepdims=True))
    np.testing.assert_allclose(proba, e / e.sum(axis=2, keepdims=True), rtol=1e-12)
    alone = model.predict_proba(X[1:, :3])
    np.testing.assert_allclose(proba[1, :3], alone[0], rtol=1e-10)


def test_rnnlm_and_seq2seq_config_round_trip(rng):
    for model, args in ((RnnLM(7, hidden_size=3, tie_weights=True, num_layers=2,
                               cell="gru", random_state=3), (rng.integers(0, 7, (2, 4)),) * 2),
                        (PeekySeq2seq(7, 3, 4, random_state=2),
                         (rng.integers(0, 7, (2, 4)), rng.integers(0, 7, (2, 3))))):
        clone = type(model)(**json.loads(json.dumps(model.get_config())))
        assert [p.shape for p in clone.params] == [p.shape for p in model.params]
        for p, q in zip(clone.params, model.params):
            p[...] = q
        assert clone.forward(*args) == model.forward(*args)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sequence_heads_dtypes(dtype, rng):
    model = SequenceRegressor(1, input_size=2, hidden_size=3, dtype=dtype, random_state=0)
    X = rng.standard_normal((3, 4, 2))                 # float64 input is converted
    assert np.isfinite(model.forward(X, np.zeros(3)))
    model.backward()
    assert model.predict_scores(X).dtype == dtype
    assert all(g.dtype == dtype for g in model.grads)


def test_sequence_heads_bad_input(rng):
    with pytest.raises(ValueError, match="input_size, vocab_size"):
        SequenceClassifier(2)
    with pytest.raises(ValueError, match="input_size, vocab_size"):
        SequenceClassifier(2, input_size=3, vocab_size=4)
    model = SequenceClassifier(2, input_size=3, hidden_size=2)
    with pytest.raises(ValueError, match=r"X: expected shape \(N, T, 3\), got shape \(2, 4, 2\)"):
        model.forward(np.zeros((2, 4, 2)), [0, 1])
    with pytest.raises(ValueError, match=r"y: expected shape \(2,\), got shape \(3,\)"):
        model.forward(np.zeros((2, 4, 3)), [0, 1, 1])
    with pytest.raises(ValueError, match=r"lengths"):
        model.forward(np.zeros((2, 4, 3)), [0, 1], lengths=[0, 4])
    with pytest.raises(ValueError, match=r"y: class ids must lie in 0\.\.1"):
        model.forward(np.zeros((2, 4, 3)), [0, 2])
    reg = SequenceRegressor(2, input_size=3, hidden_size=2)
    with pytest.raises(ValueError, match=r"y: expected shape \(2, 2\), got shape \(2,\)"):
        reg.forward(np.zeros((2, 4, 3)), [0.0, 1.0])
    with pytest.raises(ValueError, match="loss"):
        SequenceRegressor(1, input_size=3, loss="l1")
    tagger = SequenceTagger(2, vocab_size=4, hidden_size=2)
    with pytest.raises(ValueError, match=r"X: expected token ids of shape \(N, T\)"):
        tagger.forward(np.zeros((2, 4, 3), int), np.zeros((2, 4), int))


def test_rnnlm_learns_a_cycle():
    """120 Adam steps of truncated BPTT learn the cycle 0, 1, ..., 9, 0, ..."""
    from rnnfast.optim import Adam, clip_grads
    corpus = np.tile(np.arange(10), 31)
    xs, ts = corpus[:300].reshape(5, 60), corpus[1:301].reshape(5, 60)
    model = RnnLM(10, hidden_size=16, num_layers=2, dropout=0.1, tie_weights=True,
                  random_state=0)
    opt = Adam(0.03)
    before = perplexity(model, corpus, 5, 10)
    for _ in range(20):
        model.reset_state()
        for s in range(0, 60, 10):
            model.forward(xs[:, s:s + 10], ts[:, s:s + 10])
            model.backward()
            clip_grads(model.grads, 1.0)
            opt.update(model.params, model.grads)
    assert before > 9 and perplexity(model, corpus, 5, 10) < 1.5
    np.testing.assert_array_equal(model.generate([3], 12, temperature=0),
                                  (np.arange(3, 16)) % 10)


def test_rnnlm_generate_temperature_extremes():
    import warnings
    model = RnnLM(20, hidden_size=8, random_state=0)
    for bad in (float("inf"), float("-inf"), float("nan")):
        with pytest.raises(ValueError, match="temperature: expected a finite number"):
            model.generate([1, 2], 3, temperature=bad)
    greedy = model.generate([1, 2], 12, temperature=0)
    skip = [int(greedy[2])]
    greedy_skip = model.generate([1, 2], 12, temperature=0, skip_ids=skip)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # no RuntimeWarning either
        for tiny in (1e-320, 1e-300, 1e-30):               # the limit of sampling: greedy
            np.testing.assert_array_equal(
                model.generate([1, 2], 12, temperature=tiny, random_state=0), greedy)
            out = model.generate([1, 2], 12, temperature=tiny, skip_ids=skip,
                                 top_k=3, random_state=0)
            np.testing.assert_array_equal(out, greedy_skip)
            assert skip[0] not in out[2:]


def _nucleus_reference(probs, top_p):
    """Hugging Face's TopPLogitsWarper, row by row: sorted ascending, the
    tokens whose cumulative mass is at most 1 - top_p are removed, the
    likeliest always kept."""
    keep = np.zeros(probs.shape, bool)
    for row, p in zip(keep, probs / probs.sum(axis=1, keepdims=True)):
        order = np.argsort(p)
        removed = np.cumsum(p[order]) <= 1 - top_p
        removed[-1] = False
        row[order[~removed]] = True
    return keep


def test_nucleus_keeps_what_hugging_faces_top_p_keeps(rng):
    from rnnfast.models.lm import _nucleus
    for top_p in (1e-6, 0.1, 0.5, 0.9, 0.999):
        probs = rng.dirichlet(np.full(30, 0.3), size=40) * rng.uniform(0.5, 2, (40, 1))
        kept = _nucleus(probs, top_p)
        assert np.array_equal(kept > 0, _nucleus_reference(probs, top_p)), top_p
        assert np.array_equal(kept[kept > 0], probs[kept > 0])   # the kept mass untouched


def test_generate_with_top_p_samples_only_the_nucleus(rng):
    from rnnfast.models.lm import _nucleus
    model = RnnLM(12, hidden_size=6, random_state=3, dtype=F64)
    prompt = np.repeat([[3, 1]], 400, axis=0)       # 400 draws of the same first token
    scores = model.predict(prompt[:1])[0, -1]     # its log-probabilities
    for temperature, top_p in ((1.0, 0.5), (0.7, 0.8), (2.0, 0.3)):
        p = np.exp((scores - scores.max()) / temperature)[None]
        nucleus = np.flatnonzero(_nucleus(p, top_p)[0])
        assert 1 < nucleus.size < 12                  # a cut that removes something
        first = model.generate(prompt, 1, temperature=temperature, top_p=top_p,
                               random_state=0)[:, -1]
        assert set(first) == set(nucleus)              # every kept token drawn, no other
    # top_p=1 is no cut at all (the same draws); a tiny one is greedy
    np.testing.assert_array_equal(model.generate([3, 1], 20, top_p=1.0, random_state=4),
                                  model.generate([3, 1], 20, random_state=4))
    np.testing.assert_array_equal(model.generate([3, 1], 20, top_p=1e-9, random_state=4),
                                  model.generate([3, 1], 20, temperature=0))
    for bad in (0, -0.5, 1.5, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match=r"^top_p: expected a probability in \(0, 1\]"):
            model.generate([1], 3, top_p=bad)


@pytest.mark.parametrize("prompt", [np.zeros((2, 0), np.int64), np.zeros(0, np.int64), []])
def test_rnnlm_generate_refuses_an_empty_prompt_by_name(prompt):
    with pytest.raises(ValueError, match=r"start_ids: expected a prompt of at least one id"):
        RnnLM(20, hidden_size=8, random_state=0).generate(prompt, 3)


@pytest.mark.parametrize("cls", [Seq2seq, PeekySeq2seq, AttentionSeq2seq])
def test_seq2seq_targets_padded_with_ignore_label(cls):
    """A row shorter than the others, padded with ignore_label: its loss and
    gradients are those of the row alone (the loss a mean over the targets
    that count), and ignore_label before a target is refused by name."""
    xs = np.array([[1, 2, 3], [4, 5, 6]])
    ts = np.array([[0, 3, 4, 5, 6], [0, 7, 8, -1, -1]])
    model = cls(9, 4, 5, dtype=np.float64, random_state=0)
    loss = model.forward(xs, ts)
    model.backward()
    grads = [g.copy() for g in model.grads]
    parts = []
    for x, t in ((xs[:1], ts[:1]), (xs[1:], ts[1:, :3])):
        parts.append((model.forward(x, t), [g.copy() for g in (model.backward() or model.grads)],
                      t.shape[1] - 1))
    n = sum(k for _, _, k in parts)
    np.testing.assert_allclose(loss, sum(l * k for l, _, k in parts) / n, rtol=1e-12)
    for i, g in enumerate(grads):
        np.testing.assert_allclose(g, sum(gs[i] * k for _, gs, k in parts) / n,
                                   rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match=r"ts: ignore_label \(-1\) may only pad the end"):
        model.forward(xs, np.array([[0, 3, -1, 5, 6], [0, 7, 8, 1, 2]]))


def test_sequence_tagger_names_y_in_its_errors():
    from rnnfast.models import SequenceTagger
    X = np.zeros((2, 3, 2), np.float32)
    tagger = SequenceTagger(3, input_size=2, hidden_size=4, random_state=0)
    with pytest.raises(TypeError, match=r"y: expected integer tag ids of shape \(2, 3\)"):
        tagger.forward(X, np.zeros((2, 3)), [3, 1])
    with pytest.raises(ValueError, match=r"y: tag ids must lie in 0\.\.2"):
        tagger.forward(X, np.array([[0, 1, 3], [0, 0, 0]]), [3, 1])
    # past a row's length anything goes: padding is never checked
    tagger.forward(X, np.array([[0, 1, 2], [0, 9, 9]]), [3, 1])


def test_predict_scores_from_two_threads_keeps_the_training_mode(rng):
    """Two threads in predict_scores of one model at once, the first
    leaving first: each runs in evaluation mode to its end, and the model
    is back in training mode after both (the second used to take the
    first's evaluation mode for the one to restore, and leave it)."""
    import threading
    model = SequenceClassifier(2, input_size=3, hidden_size=4, dropout=0.5, random_state=0)
    X = rng.standard_normal((2, 5, 3)).astype(np.float32)
    inside = [threading.Event(), threading.Event()]
    first_out = threading.Event()
    modes = []
    real = model._scores

    def scores(X, lengths):
        me = int(threading.current_thread().name)
        inside[me].set()
        if me == 0:
            inside[1].wait(5)
        else:
            first_out.wait(5)
        modes.append((me, model.training, model.network.training))
        return real(X, lengths)

    model._scores = scores

    def run(me):
        model.predict_scores(X)
        if me == 0:
            first_out.set()

    threads = [threading.Thread(target=run, args=(i,), name=str(i)) for i in (0, 1)]
    threads[0].start()
    inside[0].wait(5)
    threads[1].start()
    for t in threads:
        t.join(10)
    assert sorted(modes) == [(0, False, False), (1, False, False)]
    assert model.training and model.network.training and model.head_dropout.training


@pytest.mark.parametrize("make", [
    lambda: RnnLM(13, hidden_size=6, num_layers=2, random_state=0),
    lambda: Seq2seq(13, 5, 6, random_state=0),
    lambda: AttentionSeq2seq(13, 5, 6, random_state=0)], ids=["RnnLM", "Seq2seq",
                                                               "AttentionSeq2seq"])
def test_threads_decoding_with_one_model_get_their_own_results(make):
    """Decoding keeps its state on the model's layers, and the kernels
    release the GIL: threads sharing one model take turns (a lock a model),
    so each gets what it would alone.  A pause after every recurrent call
    hands the GIL over mid-decoding, where the states would mix."""
    import threading
    import time
    model = make()
    rng = np.random.default_rng(1)
    prompts = [rng.integers(0, 13, (2, 4)) for _ in range(4)]

    def decode(x):
        if isinstance(model, RnnLM):
            return model.generate(x, 6, temperature=0)
        return model.generate(x, 1, 6)
    alone = [decode(x) for x in prompts]
    recurrent = model.network if isinstance(model, RnnLM) else model.decoder.lstm
    real = recurrent.forward

    def forward_then_pause(*args, **kwargs):
        out = real(*args, **kwargs)
        time.sleep(0.001)
        return out
    recurrent.forward = forward_then_pause
    got = [None] * 4

    def run(i):
        got[i] = [decode(prompts[i]) for _ in range(3)]
    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i in range(4):
        for result in got[i]:
            np.testing.assert_array_equal(result, alone[i])
    assert model.training


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_fork_while_another_thread_decodes_leaves_the_child_free_to_decode():
    """A fork copies the locks a thread holds as held, for good: the child
    (which has only the forking thread) must get free ones, not hang."""
    import signal
    import threading
    model = RnnLM(13, hidden_size=6, random_state=0)
    want = model.generate([1, 2, 3], 4, temperature=0)
    inside, release = threading.Event(), threading.Event()
    real = model.network.forward

    def held(*args, **kwargs):
        inside.set()
        release.wait(30)
        return real(*args, **kwargs)
    model.network.forward = held
    thread = threading.Thread(target=model.generate, args=([4, 5], 3))
    thread.start()
    try:
        assert inside.wait(30)                      # the thread holds the decoding lock
        pid = os.fork()
        if pid == 0:                                # the child: exit 0 when it decodes
            code = 1
            try:
                signal.alarm(20)                    # a hang ends the child
                model.network.forward = real
                got = model.generate([1, 2, 3], 4, temperature=0)
                code = 0 if np.array_equal(got, want) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    finally:
        release.set()
        thread.join(30)
