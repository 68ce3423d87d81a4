"""A few SGD steps of a small stacked network on fixed data: the workload
of the thread and determinism tests."""
import numpy as np

import rnnfast
from rnnfast.optim import SGD

NETWORKS = {"rnn": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU}


def train(seed, cell="lstm", steps=5, N=8, T=12, D=6, H=16, dtype=np.float32,
          bidirectional=True, dropout=0.3):
    """Returns (losses, params) after `steps` of SGD on a squared-error loss
    against a random target; everything seeded by `seed`."""
    rng = np.random.default_rng(seed)
    net = NETWORKS[cell](D, H, num_layers=2, bidirectional=bidirectional, dropout=dropout,
                         dtype=dtype, random_state=seed)
    xs = rng.standard_normal((N, T, D)).astype(dtype)
    target = rng.standard_normal((N, T, net.num_directions * H)).astype(dtype)
    lengths = rng.integers(1, T + 1, N)
    opt = SGD(lr=0.01)
    losses = []
    for _ in range(steps):
        hs, _ = net.forward(xs, lengths=lengths)
        diff = hs - target
        losses.append(float(0.5 * np.sum(diff * diff)))
        net.backward(diff)
        opt.update(net.params, net.grads)
    return losses, [p.copy() for p in net.params]
