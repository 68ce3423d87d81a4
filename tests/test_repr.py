"""Reprs as PyTorch's and scikit-learn's: a network's and an optimizer's
evaluate back to an equal object; layers built from weights show their
sizes, options and dtype; a layer whose public params were replaced by
junk still has one."""
import numpy as np
import pytest

import rnnfast
from rnnfast import losses, optim
from rnnfast.layers import (Affine, TimeAffine, TimeAttention, TimeDropout, TimeEmbedding)

NAMES = {"RNN": rnnfast.RNN, "LSTM": rnnfast.LSTM, "GRU": rnnfast.GRU,
         "float32": np.float32, "float64": np.float64}


@pytest.mark.parametrize("cls, options", [
    (rnnfast.LSTM, {}),
    (rnnfast.LSTM, dict(num_layers=3, bidirectional=True, dropout=0.25, dtype=np.float64)),
    (rnnfast.RNN, dict(nonlinearity="relu", stateful=True)),
    (rnnfast.GRU, dict(reset_after=False, bias=False, num_layers=2)),
    (rnnfast.GRU, dict(bidirectional=True, stateful=True, dtype=np.float64)),
])
def test_a_networks_repr_builds_the_same_network(cls, options):
    net = cls(5, 7, **options)
    text = repr(net)
    again = eval(text, NAMES)
    assert type(again) is cls and repr(again) == text
    for name in ("input_size", "hidden_size", "num_layers", "bidirectional", "dropout",
                 "stateful", "bias", "dtype", "nonlinearity", "reset_after"):
        assert getattr(again, name, None) == getattr(net, name, None), name
    assert [p.shape for p in again.params] == [p.shape for p in net.params]


def test_a_default_network_shows_only_its_sizes():
    assert repr(rnnfast.GRU(3, 4)) == "GRU(3, 4, num_layers=1, dtype=float32)"
    assert repr(rnnfast.RNN(3, 4, nonlinearity="relu")) == \
        "RNN(3, 4, num_layers=1, nonlinearity='relu', dtype=float32)"


def _weights(cell, D, H, dtype, reset_after=False):
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell] * H
    b = np.zeros((2, G) if reset_after else G, dtype)
    return np.zeros((D, G), dtype), np.zeros((H, G), dtype), b


@pytest.mark.parametrize("make, expected", [
    (lambda: rnnfast.TimeLSTM(*_weights("lstm", 4, 8, np.float32)),
     "TimeLSTM(4, 8, dtype=float32)"),
    (lambda: rnnfast.TimeGRU(*_weights("gru", 4, 8, np.float64, True), stateful=True,
                             reset_after=True),
     "TimeGRU(4, 8, stateful=True, reset_after=True, dtype=float64)"),
    (lambda: rnnfast.TimeRNN(*_weights("rnn", 2, 3, np.float32), nonlinearity="relu"),
     "TimeRNN(2, 3, nonlinearity='relu', dtype=float32)"),
    (lambda: rnnfast.LSTMCell(*_weights("lstm", 4, 8, np.float64)),
     "LSTMCell(4, 8, dtype=float64)"),
    (lambda: rnnfast.GRUCell(*_weights("gru", 6, 2, np.float32)),
     "GRUCell(6, 2, dtype=float32)"),
    (lambda: TimeAffine(np.zeros((8, 3), np.float32), np.zeros(3, np.float32)),
     "TimeAffine(8, 3, dtype=float32)"),
    (lambda: TimeEmbedding(np.zeros((50, 16))), "TimeEmbedding(50, 16, dtype=float64)"),
    (lambda: TimeDropout(0.3, random_state=0), "TimeDropout(ratio=0.3)"),
    (lambda: TimeAttention(), "TimeAttention()"),
    (lambda: losses.SoftmaxWithLoss(ignore_label=-100),
     "SoftmaxWithLoss(ignore_label=-100, reduction='mean')"),
    (lambda: losses.TimeSigmoidWithLoss("sum"), "TimeSigmoidWithLoss(reduction='sum')"),
    (lambda: losses.HuberLoss(0.5), "HuberLoss(delta=0.5)"),
    (lambda: optim.StepDecay(optim.SGD(lr=1.0), 0.5, 5),
     "StepDecay(optimizer=SGD(lr=1.0, weight_decay=0.0), decay=0.5, start_epoch=5, lr0=1.0)"),
    (lambda: optim.ReduceOnPlateau(optim.SGD(), mode="max"),
     "ReduceOnPlateau(optimizer=SGD(lr=0.01, weight_decay=0.0), factor=0.25, min_lr=0.0, "
     "mode='max')"),
])
def test_layers_losses_and_schedules_show_their_settings(make, expected):
    assert repr(make()) == expected


@pytest.mark.parametrize("opt", [
    optim.SGD(lr=0.5), optim.Momentum(lr=0.1, momentum=0.5), optim.Nesterov(weight_decay=0.1),
    optim.AdaGrad(eps=1e-6), optim.RMSprop(lr=2e-3, decay_rate=0.95),
    optim.Adam(beta2=0.98), optim.AdamW(weight_decay=0.05)])
def test_an_optimizers_repr_builds_an_equal_optimizer(opt):
    again = eval(repr(opt), vars(optim))
    assert type(again) is type(opt) and vars(again) == vars(opt)


def test_a_layer_with_junk_in_its_params_still_has_a_repr():
    layer = Affine(np.zeros((2, 3)), np.zeros(3))
    layer.params[0] = None
    assert repr(layer).startswith("<rnnfast.layers.affine.Affine object at ")
