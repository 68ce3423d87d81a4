"""A language model's output-layer products (x (700, 200) @ W (200, 10,000),
dx = dy @ W.T, dW = x.T @ dy with db; Zaremba small's N*T = 700 rows,
float32) on NumPy's BLAS and on rnnfast's kernel (src/_affine.pxi), at 1 and
2 threads: median of 9 calls each, GFLOP/s.  A 0.25 s pause before each
measurement lets OpenBLAS's threads, which spin ~0.1 s after a threaded
product, go to sleep first (benchmarks/openblas_spin.py).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/affine_products.py
"""
import time

import numpy as np
from threadpoolctl import threadpool_limits

from rnnfast import _rnn

M, K, V = 700, 200, 10_000


def median_ms(f, n=9):
    time.sleep(0.25)
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)) * 1e3


def main():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((M, K), dtype=np.float32)
    W = rng.standard_normal((K, V), dtype=np.float32)
    b = np.zeros(V, np.float32)
    dy = rng.standard_normal((M, V), dtype=np.float32)
    y, dx = np.empty((M, V), np.float32), np.empty((M, K), np.float32)
    dW, db = np.empty((K, V), np.float32), np.empty(V, np.float32)
    flops = 2 * M * K * V
    for threads in (1, 2):
        with threadpool_limits(threads):
            cases = {
                "forward": (lambda: np.add(np.matmul(x, W, out=y), b, out=y),
                            lambda: _rnn.matmul_bias(x, W, b, y, False)),
                "dx": (lambda: np.matmul(dy, W.T, out=dx),
                       lambda: _rnn.matmul_rows(dy, W, dx, True)),
                "dW, db": (lambda: (np.matmul(x.T, dy, out=dW), dy.sum(0)),
                           lambda: _rnn.matmul_tn(x, dy, dW, db)),
            }
            for name, (numpy_call, kernel_call) in cases.items():
                numpy_call()
                kernel_call()
                tn, tk = median_ms(numpy_call), median_ms(kernel_call)
                print(f"{threads} thr {name:8s} numpy {tn:6.2f} ms ({flops / tn / 1e6:4.0f} GFLOP/s)"
                      f"  kernel {tk:6.2f} ms ({flops / tk / 1e6:4.0f} GFLOP/s)", flush=True)


if __name__ == "__main__":
    main()
