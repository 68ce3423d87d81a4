"""The packed kernel on the per-step shapes, alone and in two Python threads
at once (each its own operands; packed_matmul releases the GIL), GFLOP/s
per thread: how much a second busy core slows the first, which bounds what
a 2-thread step loop can gain (it splits the rows: two such products at
once, on half the rows each).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/two_at_once.py [rounds]
"""
import statistics
import sys
import threading
import time

import numpy as np
import scipy.linalg  # noqa: F401  (loads the BLAS before threadpoolctl)
from threadpoolctl import threadpool_limits

from rnnfast import _rnn

# (M, K, N): half the batch of small, medium, zaremba-medium and large,
# LSTM forward (N = 4H), and small's whole batch
SHAPES = [(16, 128, 512), (32, 128, 512), (32, 256, 1024), (10, 650, 2600), (64, 512, 2048)]


def gflops(M, K, N, reps, out, rng):
    a = rng.random((M, K), dtype=np.float32)
    b = rng.random((K, N), dtype=np.float32)
    c = np.empty((M, N), np.float32)
    t0 = time.perf_counter()
    _rnn.packed_matmul(a, b, c, False, False, reps)
    out.append(2 * M * K * N * reps / (time.perf_counter() - t0) / 1e9)


def main(argv):
    rounds = int(argv[1]) if len(argv) > 1 else 5
    rng = np.random.default_rng(0)
    with threadpool_limits(1):
        for M, K, N in SHAPES:
            reps = max(1, int(1e9 / (2 * M * K * N)))
            alone, together = [], []
            for _ in range(rounds):
                gflops(M, K, N, reps, alone, rng)
                pair = []
                threads = [threading.Thread(target=gflops, args=(M, K, N, reps, pair,
                                                                 np.random.default_rng(i)))
                           for i in range(2)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                together.append(statistics.mean(pair))
            print(f"M={M:3d} K={K:4d} N={N:5d}: alone {statistics.median(alone):6.1f} GFLOP/s, "
                  f"two at once {statistics.median(together):6.1f} each "
                  f"(rounds {[round(g) for g in together]}), "
                  f"{statistics.median(together) / statistics.median(alone):.2f} of alone",
                  flush=True)


if __name__ == "__main__":
    main(sys.argv)
