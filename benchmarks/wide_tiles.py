"""The packed kernel alone with the AVX-512 tiles against the AVX2 tiles,
interleaved in one process, 1 thread: GFLOP/s (median over rounds) of
`_rnn.packed_matmul` (B packed once, then the product repeated, as in a
step loop; the packing not counted) for each M,K,N.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/wide_tiles.py \\
        [M,K,N ...]

Default shapes: the per-step products of the configurations (batch x
hidden x gates), the hoisted projection of `medium` and a single row.
ROUNDS in the environment sets the rounds (7).  On a CPU without AVX-512F
both columns run the AVX2 tiles.
"""
import os
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from rnnfast import _core, _rnn

DEFAULT = ["8,64,256", "32,128,512", "20,200,800", "64,256,1024", "20,650,2600",
           "128,512,2048", "6400,64,1024", "1,256,1024"]


def gflops(a, b, c, repeat):
    """GFLOP/s of `repeat` products alone: a call of 2 * repeat products
    minus one of `repeat`, so that B's packing, which each call does once,
    is not counted (at 20,650,2600 it took as long as two products: the
    whole call read 73-81 GFLOP/s where its products run at 103-113)."""
    t0 = time.perf_counter()
    _rnn.packed_matmul(a, b, c, False, False, repeat)
    t1 = time.perf_counter()
    _rnn.packed_matmul(a, b, c, False, False, 2 * repeat)
    t2 = time.perf_counter()
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] * repeat / ((t2 - t1) - (t1 - t0)) / 1e9


def parse_shape(text):
    """"M,K,N" as three integers >= 1, else exit naming the argument."""
    values = text.split(",")
    if len(values) != 3 or not all(v.strip().isdigit() and int(v) > 0 for v in values):
        sys.exit(f"shape: expected M,K,N (three integers >= 1), got {text!r}")
    return tuple(int(v) for v in values)


def main(argv):
    shapes = [parse_shape(text) for text in argv[1:] or DEFAULT]
    rounds = os.environ.get("ROUNDS", "7")
    if not rounds.isdigit() or int(rounds) < 1:
        sys.exit(f"ROUNDS: expected an integer >= 1, got {rounds!r}")
    rounds = int(rounds)
    rng = np.random.default_rng(0)
    print(f"wide tiles available: {_core.use_wide_tiles(True)}")
    try:
        with threadpool_limits(1):
            for m, k, n in shapes:
                a = rng.standard_normal((m, k)).astype(np.float32)
                b = rng.standard_normal((k, n)).astype(np.float32)
                c = np.zeros((m, n), np.float32)
                repeat = max(2, int(4e8 / (2 * m * k * n)))      # ~2 ms at 200 GFLOP/s
                runs = {False: [], True: []}
                for _ in range(rounds):
                    for wide in (False, True):
                        _core.use_wide_tiles(wide)
                        runs[wide].append(gflops(a, b, c, repeat))
                avx2, wide = (statistics.median(runs[w]) for w in (False, True))
                print(f"{m},{k},{n}: AVX2 {avx2:.1f} GFLOP/s, AVX-512 {wide:.1f} "
                      f"({wide / avx2:.2f}x)", flush=True)
    finally:
        _core.use_wide_tiles(True)


if __name__ == "__main__":
    main(sys.argv)
