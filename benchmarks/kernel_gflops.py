"""GFLOP/s of rnnfast's packed kernel against SciPy's sgemm on the shapes of
the per-step products (M = batch, K = H, N = G*H for the forward product),
one thread, float32.  The packed kernel packs B once and runs the product
`reps` times, as a step loop does; sgemm repacks B at every call.

Then the parameter-gradient products of an LSTM training step, dWx = X^T dA
and dWh = Hprev^T dA over all N*T rows (rf_gemm_tn_f against two BLAS
sgemm calls, switched by use_packed_gemm(dw=...), interleaved, median of
the per-round ratios).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/kernel_gflops.py
"""
import time

import numpy as np
from scipy.linalg.blas import sgemm
from threadpoolctl import threadpool_limits

from rnnfast import _core, _rnn, bench

SHAPES = [(1, 64, 256), (32, 128, 512), (20, 200, 800), (64, 256, 1024), (20, 650, 2600),
          (128, 512, 2048)]        # tiny .. large, LSTM forward (N = 4H)


def best(fn, rounds=5):
    out = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - t0)
    return out


def main():
    rng = np.random.default_rng(0)
    with threadpool_limits(1):
        print(f"sgemm peak (square 1536): {bench.sgemm_peak(1):.1f} GFLOP/s")
        for M, K, N in SHAPES:
            a = rng.random((M, K), dtype=np.float32)
            b = rng.random((K, N), dtype=np.float32)
            c = np.empty((M, N), np.float32)
            reps = max(1, int(2e9 / (2 * M * K * N)))
            own = best(lambda: _rnn.packed_matmul(a, b, c, False, False, reps)) / reps
            af, bf = np.asfortranarray(a), np.asfortranarray(b)
            blas = best(lambda: [sgemm(1.0, af, bf) for _ in range(reps)]) / reps
            flops = 2 * M * K * N
            print(f"M={M:4d} K={K:4d} N={N:5d}: packed kernel {flops / own / 1e9:6.1f} GFLOP/s, "
                  f"sgemm {flops / blas / 1e9:6.1f} GFLOP/s")
        print("dWx, dWh of an LSTM training step (A^T B, K = N*T rows):")
        for name, (N, T, D, H) in bench.CONFIGS.items():
            K, G = N * T, 4 * H
            x = rng.standard_normal((K, D), dtype=np.float32)
            h = rng.standard_normal((K, H), dtype=np.float32)
            da = rng.standard_normal((K, G), dtype=np.float32)
            dwx, dwh = np.empty((D, G), np.float32), np.empty((H, G), np.float32)
            flops = 2 * K * (D + H) * G
            reps = max(3, int(2e9 / flops))
            times = {True: [], False: []}
            for _ in range(7):
                for packed in (True, False):
                    _core.use_packed_gemm(True, dw=packed)
                    t0 = time.perf_counter()
                    for _ in range(reps):
                        _rnn.packed_matmul_tn(x, h, da, dwx, dwh)
                    times[packed].append((time.perf_counter() - t0) / reps)
            _core.use_packed_gemm(True)
            own, blas = np.median(times[True]), np.median(times[False])
            ratio = np.median(np.array(times[False]) / np.array(times[True]))
            print(f"{name:15s} K={K:5d} M={D}+{H} N={G:5d}: packed {flops / own / 1e9:6.1f} "
                  f"GFLOP/s, BLAS {flops / blas / 1e9:6.1f} GFLOP/s, BLAS/packed {ratio:.2f}")


if __name__ == "__main__":
    main()
