"""The fixed cost of small calls: best-of time of one network call at N = 8,
D = H = 64, float32, 1 thread, for T = 1 and T = 10, inference and a
training step (forward + backward), RNN, GRU and LSTM.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/call_cost.py

Best of 7 repeats of 5000 calls (2000 for training): the best filters out a
noisy machine's slow repeats.  To compare two trees, run it in each, a few
times alternately, with the tree first on the path:

    PYTHONPATH=/tmp/old python benchmarks/call_cost.py
"""
import timeit

import numpy as np
from threadpoolctl import threadpool_limits

import rnnfast

CELLS = {"rnn": rnnfast.RNN, "gru": rnnfast.GRU, "lstm": rnnfast.LSTM}


def main():
    print(f"rnnfast from {rnnfast.__file__}")
    rng = np.random.default_rng(0)
    with threadpool_limits(1):
        for cell, cls in CELLS.items():
            row = []
            for T in (1, 10):
                xs = rng.standard_normal((8, T, 64)).astype(np.float32)
                dys = np.ones((8, T, 64), np.float32)
                net = cls(64, 64, random_state=0).eval()
                best = min(timeit.repeat(lambda: net.forward(xs), number=5000, repeat=7))
                row.append(f"infer T={T} {best / 5000 * 1e6:.2f}")
                tnet = cls(64, 64, random_state=0)

                def step(tnet=tnet, xs=xs, dys=dys):
                    tnet.forward(xs)
                    tnet.backward(dys)
                best = min(timeit.repeat(step, number=2000, repeat=7))
                row.append(f"train T={T} {best / 2000 * 1e6:.2f}")
            print(f"{cell} us a call: " + " | ".join(row), flush=True)


if __name__ == "__main__":
    main()
