"""A product of one row (a batch of one's per-step product) on the packed
kernel, timed alone: B packed once, then the product repeated
(`_rnn.packed_matmul(..., repeat=...)`), median us a product over 9 rounds,
for B from 32 KB to 8 MB:

    groups of 8   the AVX-512 GEMV, eight panels a group (forced)
    groups of 4   the AVX2 GEMV, four panels a group (the AVX2 tiles)
    8/4           their ratio: where it is above 1, groups of four are faster
                  (src/_gemm.h rf_gemv8_in_use, src/_gemm_d.h rf_dgemv8_in_use)
    tiles         float64 only: the one-row tiles, two accumulator chains,
                  which ran these products before the GEMV (_core.use_dgemv)

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/gemv_groups.py [float32|float64]

One thread; float64 by default.  docs/performance.md item 154 has a Zen 4's
figures.
"""
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from rnnfast import _core, _rnn

SHAPES = [(64, 64), (256, 64), (32, 128), (64, 128), (128, 128), (64, 192), (64, 256),
          (96, 384), (128, 256), (128, 512), (200, 800), (256, 1024), (512, 2048)]


def product_us(k, n, dtype, repeat):
    rng = np.random.default_rng(k * 10007 + n)
    a = rng.standard_normal((1, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c = np.zeros((1, n), dtype)
    times = []
    for _ in range(9):
        t0 = time.perf_counter()
        _rnn.packed_matmul(a, b, c, False, True, repeat=repeat)
        times.append((time.perf_counter() - t0) / repeat * 1e6)
    return statistics.median(times)


def with_settings(wide, groups_of_8, dgemv, fn):
    _core.use_wide_tiles(wide)
    _core.use_gemv_groups_of_8(groups_of_8)
    _core.use_dgemv(dgemv)
    try:
        return fn()
    finally:
        _core.use_wide_tiles(True)
        _core.use_gemv_groups_of_8(None)
        _core.use_dgemv(True)


def main(argv):
    name = argv[1] if len(argv) > 1 else "float64"
    if name not in ("float32", "float64"):
        raise SystemExit(__doc__)
    dtype = np.dtype(name)
    if not _core.use_packed_gemm(True):
        raise SystemExit("gemv_groups.py: no packed kernel on this CPU or build")
    wide = _core.use_wide_tiles(True)
    if not wide:
        print("(no AVX-512 tiles here: 'groups of 8' runs the AVX2 GEMV too)")
    print(f"{name}, 1 thread, us a product (best of two interleaved medians)")
    with threadpool_limits(1):
        for k, n in SHAPES:
            repeat = max(50, int(200000 / (k * n / 64)))
            kinds = {"groups of 8": (True, True, True), "groups of 4": (False, None, True)}
            if dtype == np.float64:
                kinds["tiles"] = (True, None, False)
            best = {kind: float("inf") for kind in kinds}
            for _ in range(2):                      # interleaved, twice
                for kind, (w, g8, dg) in kinds.items():
                    t = with_settings(w and wide, g8, dg,
                                      lambda: product_us(k, n, dtype, repeat))
                    best[kind] = min(best[kind], t)
            kb = (k + 1) * n * dtype.itemsize / 1024
            line = "  ".join(f"{kind} {t:8.3f}" for kind, t in best.items())
            print(f"k={k:4d} n={n:5d} B {kb:6.0f} KB: {line}  "
                  f"8/4 {best['groups of 8'] / best['groups of 4']:.3f}", flush=True)


if __name__ == "__main__":
    main(sys.argv)
