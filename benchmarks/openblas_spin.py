"""How long an rnnfast call at 2 threads is slowed by OpenBLAS's threads
spinning after a threaded NumPy/SciPy product (docs/performance.md item 117).

Times an LSTM training step at `zaremba-small` (N=20, T=20, D=H=200, float32,
2 threads) call after call for ~1 s, after nothing ("none"), after the
2-thread sgemm peak of `rnnfast bench` ("peak") or after one 600 x 600 NumPy
product ("numpy"), and prints the median time a call by time since the start.
OpenBLAS's workers spin for its THREAD_TIMEOUT (2^28 cycles, ~0.1 s) after
a threaded call; OPENBLAS_THREAD_TIMEOUT=4 (read when OpenBLAS loads) all but
turns that off, for comparison.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/openblas_spin.py none|peak|numpy
"""
import sys
import time

import numpy as np

from rnnfast.bench import gemm_peak, make_case, thread_limit


def main(before):
    call = make_case("rnnfast", "lstm", "train", 20, 20, 200, 200)
    with thread_limit(2):
        for _ in range(5):
            call()
        time.sleep(0.3)                     # whatever spun before, sleeps now
        if before == "peak":
            gemm_peak(2)
        elif before == "numpy":
            a = np.ones((600, 600), np.float32)
            a @ a
        elif before != "none":
            raise SystemExit(f"expected none, peak or numpy, got {before!r}")
        times, start = [], time.perf_counter()
        for _ in range(300):
            t0 = time.perf_counter()
            call()
            times.append((t0 - start, (time.perf_counter() - t0) * 1e3))
    times = np.array(times)
    for lo, hi in [(0, 0.05), (0.05, 0.1), (0.1, 0.2), (0.2, 0.4), (0.4, 10)]:
        sel = (times[:, 0] >= lo) & (times[:, 0] < hi)
        if sel.any():
            print(f"after {before}: {lo}-{hi} s: {sel.sum():3d} calls, "
                  f"median {np.median(times[sel, 1]):.3f} ms")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "numpy")
