"""A refused call between a forward and its backward changes nothing: the
backward then gives bitwise the gradients (and dx) it gives without the
refused call, for every layer, cell, network, loss and model with a
backward.  (The models once ran part of a refused call first, keeping its
ids or caches for the backward: docs/robustness.md, the models' fuzzer.)"""
import copy

import numpy as np
import pytest

import rnnfast
from rnnfast import layers as L
from rnnfast import losses, models

F64 = np.float64
N, T, D, H = 3, 4, 5, 6
rng = np.random.default_rng(0)
x, h, c = rng.standard_normal((N, D)), rng.standard_normal((N, H)), rng.standard_normal((N, H))
xs, dhs = rng.standard_normal((N, T, D)), rng.standard_normal((N, T, H))
ids = rng.integers(0, 10, (N, T))
E = rng.standard_normal((10, D))
Wa, ba = rng.standard_normal((D, 7)), rng.standard_normal(7)
scores, labels = rng.standard_normal((N, T, 7)), rng.integers(0, 7, (N, T))
hs_enc, hs_dec = rng.standard_normal((N, 5, H)), rng.standard_normal((N, T, H))


def weights(gates):
    return (rng.standard_normal((D, gates * H)), rng.standard_normal((H, gates * H)),
            rng.standard_normal(gates * H))


W1, W4, W3 = weights(1), weights(4), weights(3)
NETS = {"RNN": rnnfast.RNN, "LSTM": rnnfast.LSTM, "GRU": rnnfast.GRU}


def net(name):
    return NETS[name](D, H, 2, bidirectional=True, dropout=0.3, dtype=F64, random_state=0)


def bad_state(name):
    h0 = np.zeros((3, N, H))                   # 3 layer-directions where 4 are expected
    return (h0, h0) if name == "LSTM" else h0


def lm():
    return models.RnnLM(10, hidden_size=H, num_layers=2, dropout=0.3, dtype=F64,
                        random_state=0)


def head(**kw):
    return models.SequenceClassifier(3, hidden_size=H, dropout=0.3, dtype=F64,
                                     random_state=0, **kw)


# (name, make, valid forward, refused forward, backward)
CASES = [
    ("RNNCell", lambda: rnnfast.RNNCell(*W1), lambda o: o.forward(x, h),
     lambda o: o.forward(x, h[:, :2]), lambda o: o.backward(h)),
    ("LSTMCell", lambda: rnnfast.LSTMCell(*W4), lambda o: o.forward(x, h, c),
     lambda o: o.forward(x, h, c[:2]), lambda o: o.backward(h, c)),
    ("GRUCell", lambda: rnnfast.GRUCell(*W3), lambda o: o.forward(x, h),
     lambda o: o.forward(x, np.full_like(h, np.nan)), lambda o: o.backward(h)),
    ("TimeLSTM", lambda: rnnfast.TimeLSTM(*W4), lambda o: o.forward(xs),
     lambda o: o.forward(np.full_like(xs, np.nan)), lambda o: o.backward(dhs)),
    ("TimeRNN-stateful", lambda: rnnfast.TimeRNN(*W1, stateful=True),
     lambda o: o.forward(xs), lambda o: o.forward(xs[..., :2]), lambda o: o.backward(dhs)),
    ("TimeGRU", lambda: rnnfast.TimeGRU(*W3), lambda o: o.forward(xs),
     lambda o: o.forward(xs[:, :, :1]), lambda o: o.backward(dhs)),
    *[(f"{n}-lengths", lambda n=n: net(n), lambda o: o.forward(xs, lengths=[4, 2, 3]),
       lambda o: o.forward(xs, lengths=[4, 9, 3]), lambda o: o.backward(np.ones((N, T, 2 * H))))
      for n in NETS],
    *[(f"{n}-state", lambda n=n: net(n), lambda o: o.forward(xs),
       lambda o, n=n: o.forward(xs, state=bad_state(n)),
       lambda o: o.backward(np.ones((N, T, 2 * H)))) for n in NETS],
    ("TimeEmbedding", lambda: L.TimeEmbedding(E.copy()), lambda o: o.forward(ids),
     lambda o: o.forward(ids + 10), lambda o: o.backward(np.ones((N, T, D)))),
    ("Embedding", lambda: L.Embedding(E.copy()), lambda o: o.forward(ids[0]),
     lambda o: o.forward(ids[0] - 20), lambda o: o.backward(np.ones((T, D)))),
    ("TimeAffine", lambda: L.TimeAffine(Wa.copy(), ba.copy()), lambda o: o.forward(xs),
     lambda o: o.forward(np.full_like(xs, np.nan)), lambda o: o.backward(np.ones((N, T, 7)))),
    ("Affine", lambda: L.Affine(Wa.copy(), ba.copy()), lambda o: o.forward(x),
     lambda o: o.forward(x[:, :2]), lambda o: o.backward(np.ones((N, 7)))),
    ("TimeDropout", lambda: L.TimeDropout(0.5, 0), lambda o: o.forward(xs),
     lambda o: o.forward(np.array(["a"])), lambda o: o.backward(np.ones_like(xs))),
    ("TimeAttention", lambda: L.TimeAttention(), lambda o: o.forward(hs_enc, hs_dec),
     lambda o: o.forward(hs_enc, hs_dec[..., :2]), lambda o: o.backward(np.ones((N, T, H)))),
    ("TimeSoftmaxWithLoss", lambda: losses.TimeSoftmaxWithLoss(),
     lambda o: o.forward(scores, labels),
     lambda o: o.forward(scores, labels, sample_weight=-np.ones(N)), lambda o: o.backward()),
    ("SoftmaxWithLoss", lambda: losses.SoftmaxWithLoss(),
     lambda o: o.forward(scores[:, 0], labels[:, 0]),
     lambda o: o.forward(scores[:, 0], labels[:, 0] + 9), lambda o: o.backward()),
    ("MSELoss", lambda: losses.MSELoss(), lambda o: o.forward(x, x + 1),
     lambda o: o.forward(x, x + 2, sample_weight=[-1, 1, 1]), lambda o: o.backward()),
    ("HuberLoss", lambda: losses.HuberLoss(), lambda o: o.forward(x, x + 1),
     lambda o: o.forward(x, np.full_like(x, np.nan)), lambda o: o.backward()),
    ("TimeSigmoidWithLoss", lambda: losses.TimeSigmoidWithLoss(),
     lambda o: o.forward(scores, (scores > 0).astype(F64)),
     lambda o: o.forward(scores, scores * 5), lambda o: o.backward()),
    ("RnnLM", lm, lambda o: o.forward(ids, labels % 10),
     lambda o: o.forward(ids, labels % 10, np.ones((N, T + 1), bool)), lambda o: o.backward()),
    ("SequenceClassifier-ids", lambda: head(vocab_size=10),
     lambda o: o.forward(ids, [0, 1, 2], lengths=[4, 2, 3]),
     lambda o: o.forward(ids[::-1], [0, 1, 5], lengths=[4, 2, 3]), lambda o: o.backward()),
    ("PeekySeq2seq", lambda: models.PeekySeq2seq(10, 4, H, dtype=F64, random_state=0),
     lambda o: o.forward(ids, ids % 10),
     lambda o: o.forward(ids[::-1], np.where(np.arange(T) == 1, -1, ids)),
     lambda o: o.backward()),
]


def _arrays(value):
    if value is None:
        return []
    if isinstance(value, tuple):
        return [np.asarray(v) for v in value]
    return [np.asarray(value)]


@pytest.mark.parametrize("name, make, valid, refused, backward", CASES,
                         ids=[case[0] for case in CASES])
def test_a_refused_call_between_forward_and_backward_changes_nothing(
        name, make, valid, refused, backward):
    obj = make()
    valid(obj)
    untouched = copy.deepcopy(obj)
    with pytest.raises((ValueError, TypeError)):
        refused(obj)
    ours, theirs = _arrays(backward(obj)), _arrays(backward(untouched))
    for a, b in zip(ours + list(getattr(obj, "grads", [])),
                    theirs + list(getattr(untouched, "grads", []))):
        np.testing.assert_array_equal(a, b)
