"""Short inference calls with the direct path (`_core.use_direct_infer`)
off against on, interleaved in one process, 1 thread, N = 8, D = H = 64,
float32: the common call at T = 1 (network_forward_common), and two calls
of the network's checked path (network_forward): a stateful network at
T = 1 (its state carried, as in text generation) and ragged lengths at
T = 10.  us a call, best of 3 blocks of 5000 calls, median over ROUNDS
rounds (11), and the median of the per-round ratios off/on.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/direct_infer_calls.py
"""
import os
import statistics
import sys

import numpy as np
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import _core

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import best_us_a_call  # noqa: E402

N, D, H = 8, 64, 64
LENGTHS = [10, 9, 8, 7, 10, 5, 10, 3]


def cases():
    """{name: call} for each cell."""
    found = {}
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((N, 1, D)).astype(np.float32)
    x10 = rng.standard_normal((N, 10, D)).astype(np.float32)
    for cell, cls in (("rnn", rnnfast.RNN), ("lstm", rnnfast.LSTM), ("gru", rnnfast.GRU)):
        net = cls(D, H, random_state=0).eval()
        stateful = cls(D, H, stateful=True, random_state=0).eval()
        found[f"{cell} common T=1"] = lambda net=net: net.forward(x1)
        found[f"{cell} stateful T=1"] = lambda net=stateful: net.forward(x1)
        found[f"{cell} lengths T=10"] = lambda net=net: net.forward(x10, lengths=LENGTHS)
    return found


def main():
    rounds = int(os.environ.get("ROUNDS", "11"))
    calls = cases()
    times = {}
    try:
        with threadpool_limits(1):
            for _ in range(rounds):
                for name, call in calls.items():
                    for on in (False, True):
                        _core.use_direct_infer(on)
                        times.setdefault((name, on), []).append(best_us_a_call(call, 5000))
    finally:
        _core.use_direct_infer(True)
    for name in calls:
        off, on = times[name, False], times[name, True]
        ratio = statistics.median([a / b for a, b in zip(off, on)])
        print(f"{name:18s} off {statistics.median(off):.2f} us, on "
              f"{statistics.median(on):.2f} us, off/on {ratio:.3f}", flush=True)


if __name__ == "__main__":
    main()
