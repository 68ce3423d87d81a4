"""Where a short call's fixed cost sits, layer by layer: us a call of an
inference forward at T = 1, 10 and 100 (N = 8, D = H = 64, float32, 1
thread) through the cell's kernel def (every buffer given), through
`_dispatch.forward` (its buffers from the scratch cache), `network_forward`
(its zero state and output made, as `net.forward` makes them) and
`net.forward`, and T = 10's rate a token over T = 100's at each layer.
Best of 3 blocks of calls, median over ROUNDS rounds (7).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/call_layers.py [rnn|lstm|gru]
"""
import os
import statistics
import sys
import timeit

import numpy as np
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import _gru, _lstm, _rnn
from rnnfast._dispatch import buffer_shapes, forward, network_forward, zero_state
from rnnfast._validation import check_lengths

N, D, H = 8, 64, 64
LENGTHS = (1, 10, 100)


def layer_calls(cell, T):
    """{layer: call} of one inference forward at length T."""
    cls = {"rnn": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU}[cell]
    net = cls(D, H, random_state=0).eval()
    xs = np.random.default_rng(0).standard_normal((N, T, D)).astype(np.float32)
    p, lengths, dt = net.params, check_lengths(None, N, T), np.dtype(np.float32)
    pair = cell == "lstm"
    h = np.zeros((N, H), np.float32)
    c = np.zeros((N, H), np.float32) if pair else None
    out = np.empty((N, T, H), np.float32)
    gates, work = (np.empty(shape, np.float32)     # G = Wh's columns
                   for shape in buffer_shapes(cell, N, T, T, H, p[1].shape[1], False))
    none = np.empty((0, 0, 0), np.float32)      # what inference saves: nothing
    if cell == "rnn":
        def kernel():
            _rnn.rnn_forward(xs, p[0], p[1], p[2], h, lengths, False, False, out, 0, gates,
                             none, work, False, 1, False)
    elif cell == "lstm":
        def kernel():
            _lstm.lstm_forward(xs, p[0], p[1], p[2], h, c, lengths, False, out, 0, gates,
                               none, none, none, work, False, 1, False)
    else:
        def kernel():
            _gru.gru_forward(xs, p[0], p[1], p[2].reshape(-1), h, lengths, False, True, out, 0,
                             gates, none, none, work, False, 1, False)

    def network():
        state = zero_state(1, N, H, dt, pair)
        h_n, c_n = state if pair else (state, None)
        return network_forward(cell, xs, p, h_n, c_n, lengths, 1, 1, H, False, False, False,
                               None, True)
    return {"kernel def": kernel,
            "_dispatch.forward": lambda: forward(cell, xs, p[0], p[1], p[2], h, c, lengths,
                                                 False, out, 0, False),
            "network_forward": network,
            "net.forward": lambda: net.forward(xs)}


def main(argv):
    cell = argv[1] if len(argv) > 1 else "rnn"
    if cell not in ("rnn", "lstm", "gru"):
        sys.exit(f"expected a cell rnn, lstm or gru, got {cell!r}")
    rounds = int(os.environ.get("ROUNDS", "7"))
    with threadpool_limits(1):
        calls = {T: layer_calls(cell, T) for T in LENGTHS}
        times = {}
        for _ in range(rounds):
            for T in LENGTHS:
                n = 20000 if T < 100 else 3000
                for layer, call in calls[T].items():
                    best = min(timeit.repeat(call, number=n, repeat=3)) / n * 1e6
                    times.setdefault((layer, T), []).append(best)
    for layer in calls[LENGTHS[0]]:
        m = {T: statistics.median(times[layer, T]) for T in LENGTHS}
        print(f"{cell} {layer:18s} " + " ".join(f"T={T}: {m[T]:.3f} us" for T in LENGTHS)
              + f"  T=10/T=100 a token {m[10] / 10 / (m[100] / 100):.3f}", flush=True)


if __name__ == "__main__":
    main(sys.argv)
