"""The per-step product of RNN `zaremba-medium` (K = N = 650) in the shapes a
thread gets at 2 threads, timed at 1 thread on rnnfast's packed kernel:
M = 20 x N = 650 (all rows, 1 thread), M = 10 x N = 650 (a thread's rows
under the row split the step loops use), M = 20 x N = 325 (a thread's
columns under a split by units, docs/performance.md item 30).  Interleaved
rounds, median GFLOP/s of each (item 146).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/split_shapes.py [rounds]
"""
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from rnnfast import _rnn

SHAPES = [(20, 650, 650), (10, 650, 650), (20, 650, 325)]      # (M, K, N)


def main(rounds=9):
    rng = np.random.default_rng(0)
    cases = []
    for M, K, N in SHAPES:
        a = rng.random((M, K), dtype=np.float32)
        b = rng.random((K, N), dtype=np.float32)
        reps = max(1, int(0.3e9 / (2 * M * K * N)))          # ~3 ms of work a round
        cases.append(((M, K, N), a, b, np.empty((M, N), np.float32), reps))
    rates = {shape: [] for shape in SHAPES}
    with threadpool_limits(1):
        for _ in range(rounds):
            for (M, K, N), a, b, c, reps in cases:
                t0 = time.perf_counter()
                _rnn.packed_matmul(a, b, c, False, False, reps)   # B packed once
                rates[(M, K, N)].append(2 * M * K * N * reps / (time.perf_counter() - t0) / 1e9)
    for (M, K, N), r in rates.items():
        print(f"M={M:3d} K={K} N={N}: median {statistics.median(r):6.1f} GFLOP/s "
              f"(min {min(r):.1f}, max {max(r):.1f}, {rounds} rounds)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 9)
