"""A fully connected layer's products on two builds of rnnfast._rnn in one
process, interleaved, 11 rounds of 3 calls each, at a language model's
output layer (N*T = 700 rows, 10,000 outputs, H inputs): "dw" the weight
gradient (matmul_tn: dW = x^T dy with db; docs/performance.md item 140) or
"forward" (matmul_bias: y = x W + b; item 141).  Prints the median ms of
each build and the median per-round ratio old/new, with quartiles; the two
builds' results must be bitwise the same.

    git worktree add /tmp/old <commit> && (cd /tmp/old && python setup.py build_ext --inplace)
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        python benchmarks/ab_affine_builds.py /tmp/old dw|forward [threads [H [dtype]]]

threads 1 (default) or more, H 200 (default), dtype float32 (default) or
float64.
"""
import glob
import importlib.util
import os
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from rnnfast import _core, _rnn

ROWS, V, ROUNDS, CALLS = 700, 10_000, 11, 3


def load_rnn(tree):
    """`tree`'s rnnfast._rnn, built in place, as a module of its own."""
    found = glob.glob(os.path.join(tree, "rnnfast", "_rnn.cpython-*.so"))
    if not found:
        sys.exit(f"{tree}: no rnnfast/_rnn.*.so; build it in place first")
    spec = importlib.util.spec_from_file_location("rnnfast._rnn", found[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.set_blas_threads_getter(_core._GET_BLAS_THREADS)
    return mod


def main(tree, product, threads=1, H=200, dtype="float32"):
    old = load_rnn(tree)
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((ROWS, H)).astype(dtype)
    if product == "dw":
        dy = rng.standard_normal((ROWS, V)).astype(dtype)
        out = [(np.empty((H, V), dtype), np.empty(V, dtype)) for _ in range(2)]

        def call(mod, dW, db):
            return mod.matmul_tn(x, dy, dW, db)
    elif product == "forward":
        W = rng.standard_normal((H, V)).astype(dtype)
        b = rng.standard_normal(V).astype(dtype)
        out = [(np.empty((ROWS, V), dtype),) for _ in range(2)]

        def call(mod, y):
            return mod.matmul_bias(x, W, b, y, False)
    else:
        sys.exit(f"product: expected dw or forward, got {product!r}")
    rounds = []
    with threadpool_limits(threads):
        for _ in range(ROUNDS):
            times = []
            for mod, arrays in zip((old, _rnn), out):
                time.sleep(0.05)            # another pool's spinning threads idle
                t0 = time.perf_counter()
                for _ in range(CALLS):
                    if not call(mod, *arrays):
                        sys.exit(f"{product}: the kernel did not apply (no packed kernel here)")
                times.append((time.perf_counter() - t0) / CALLS)
            rounds.append(times)
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)
    ratios = [a / b for a, b in rounds]
    q = statistics.quantiles(ratios, n=4)
    print(f"{product} {dtype} H={H} {threads} thr: old "
          f"{statistics.median(a for a, _ in rounds) * 1e3:.2f} ms, new "
          f"{statistics.median(b for _, b in rounds) * 1e3:.2f} ms, old/new "
          f"{statistics.median(ratios):.3f} (quartiles {q[0]:.3f}-{q[2]:.3f}), bitwise the same")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], *(int(v) for v in sys.argv[3:5]), *sys.argv[5:6])
