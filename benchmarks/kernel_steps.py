"""A cell's inference kernel def alone (every buffer given, no Python layer
above it) at several lengths T: us a call and us a step, median over
ROUNDS rounds (7) of the lengths interleaved, 1 thread, float32, N = 8,
D = H = 64 unless NDH says.  Shows where a step costs more at some T than
at others (docs/performance.md item 94: the unpacked tiles up to T = 16).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/kernel_steps.py rnn 1,8,10,16,17,20,100
"""
import os
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import _gru, _lstm, _rnn
from rnnfast._dispatch import buffer_shapes
from rnnfast._validation import check_lengths


def kernel_call(cell, N, T, D, H):
    """One inference run of `cell`'s kernel def from a zero state."""
    cls = {"rnn": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU}[cell]
    p = cls(D, H, random_state=0).params
    xs = np.random.default_rng(0).standard_normal((N, T, D)).astype(np.float32)
    h, c = np.zeros((N, H), np.float32), np.zeros((N, H), np.float32)
    out = np.empty((N, T, H), np.float32)
    gates, work = (np.empty(shape, np.float32)
                   for shape in buffer_shapes(cell, N, T, T, H, p[1].shape[1], False))
    none = np.empty((0, 0, 0), np.float32)      # inference saves nothing
    lengths = check_lengths(None, N, T)

    def call():
        h[...] = 0
        c[...] = 0
        if cell == "rnn":
            _rnn.rnn_forward(xs, p[0], p[1], p[2], h, lengths, False, False, out, 0, gates,
                             none, work, False, 1, False)
        elif cell == "lstm":
            _lstm.lstm_forward(xs, p[0], p[1], p[2], h, c, lengths, False, out, 0, gates,
                               none, none, none, work, False, 1, False)
        else:
            _gru.gru_forward(xs, p[0], p[1], p[2].reshape(-1), h, lengths, False, True, out,
                             0, gates, none, none, work, False, 1, False)
    return call


def main(argv):
    if len(argv) != 3 or argv[1] not in ("rnn", "lstm", "gru"):
        sys.exit(__doc__)
    lengths = [int(t) for t in argv[2].split(",")]
    N, D, H = (int(v) for v in os.environ.get("NDH", "8,64,64").split(","))
    rounds = int(os.environ.get("ROUNDS", "7"))
    calls = {T: kernel_call(argv[1], N, T, D, H) for T in lengths}
    times = {T: [] for T in lengths}
    with threadpool_limits(1):
        for _ in range(rounds):
            for T in lengths:
                n = max(20, 30000 // T)
                t0 = time.perf_counter()
                for _ in range(n):
                    calls[T]()
                times[T].append((time.perf_counter() - t0) / n * 1e6)
    for T in lengths:
        m = statistics.median(times[T])
        print(f"{argv[1]} N={N} D={D} H={H} T={T}: {m:.2f} us a call, {m / T:.3f} us a step",
              flush=True)


if __name__ == "__main__":
    main(sys.argv)
