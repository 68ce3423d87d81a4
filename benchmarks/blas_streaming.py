"""How much slower a row OpenBLAS's sgemm runs once its operands come from
memory: np.matmul of an (R, K) float32 matrix by a (K, K) one into a
preallocated output, for R rows from cache-sized to far beyond the L3.
The reference for rnnfast's time per token at long T (docs/performance.md,
item 72): the same shapes as an RNN step's products at D = H = K.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/blas_streaming.py [K] [rounds]

K defaults to 64, rounds to 9.  Each round times every R (best of 3 runs
of ~2 M rows each); the median over rounds is printed, one thread.
"""
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

ROWS = (800, 8000, 80_000, 800_000)


def main(argv):
    try:
        K = int(argv[1]) if len(argv) > 1 else 64
        rounds = int(argv[2]) if len(argv) > 2 else 9
    except ValueError:
        K = rounds = 0
    if K < 1 or rounds < 1:
        sys.exit(f"expected [K] [rounds], integers >= 1, got {argv[1:]}")
    rng = np.random.default_rng(0)
    W = rng.standard_normal((K, K)).astype(np.float32)
    A = {R: rng.standard_normal((R, K)).astype(np.float32) for R in ROWS}
    C = {R: np.empty((R, K), np.float32) for R in ROWS}
    per_row = {R: [] for R in ROWS}
    with threadpool_limits(1):
        kernels = sorted({i.get("architecture") for i in threadpool_info()} - {None})
        for _ in range(rounds):
            for R in ROWS:
                n = max(1, 2_000_000 // R)
                best = float("inf")
                for _ in range(3):
                    t0 = time.perf_counter()
                    for _ in range(n):
                        np.matmul(A[R], W, out=C[R])
                    best = min(best, (time.perf_counter() - t0) / (n * R))
                per_row[R].append(best * 1e9)
    print(f"np.matmul (R, {K}) @ ({K}, {K}) float32, 1 thread, BLAS kernel {kernels}")
    base = statistics.median(per_row[ROWS[0]])
    for R in ROWS:
        ns = statistics.median(per_row[R])
        print(f"R = {R:>7}  A {A[R].nbytes / 1e6:8.1f} MB  {ns:7.2f} ns a row  "
              f"x{ns / base:.2f}")


if __name__ == "__main__":
    main(sys.argv)
