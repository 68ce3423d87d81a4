"""A training step split into its forward and its backward, against the
sgemm peak: for each cell and configuration, the forward in training mode,
the backward (a step minus its forward) and the inference forward, in ms,
GFLOP/s of their products (rnnfast.bench.gemm_flops: the forward a third
of a step's) and % of scipy's sgemm peak measured in the same process.
float32, 1 thread unless a thread count is given (the peak then measured at
that count); each figure the median over rounds of the best of 3 x 20
calls, the three timed in turn in each round.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/step_phases.py lstm small,zaremba-small [rounds [threads]]

Where a phase runs at ~100 % of the peak, only fewer FLOPs or a faster
product than sgemm's could make it faster (docs/performance.md item 69).
"""
import statistics
import sys
import time
import timeit

import numpy as np
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast.bench import CONFIGS, gemm_flops, sgemm_peak

CLASSES = {"rnn": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU}


def phase_times(cell, N, T, D, H, rounds):
    """Median seconds of (forward in training, backward, inference forward)."""
    net = CLASSES[cell](D, H, dtype=np.float32, random_state=0)
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((N, T, D)).astype(np.float32)
    dhs = rng.standard_normal((N, T, H)).astype(np.float32)

    def best(fn):
        return min(timeit.repeat(fn, number=20, repeat=3)) / 20

    def step():
        net.forward(xs)
        net.backward(dhs)

    times = [[], [], []]
    for _ in range(rounds):
        net.train()
        forward = best(lambda: net.forward(xs))
        times[0].append(forward)
        times[1].append(best(step) - forward)
        net.eval()
        times[2].append(best(lambda: net.forward(xs)))
    return [statistics.median(t) for t in times]


def main(argv):
    cells = argv[1].split(",") if len(argv) > 1 else ["lstm"]
    configs = argv[2].split(",") if len(argv) > 2 else ["small", "zaremba-small"]
    rounds = argv[3] if len(argv) > 3 else "7"
    threads = argv[4] if len(argv) > 4 else "1"
    unknown = [c for c in cells if c not in CLASSES] + [c for c in configs if c not in CONFIGS]
    if (unknown or not rounds.isdigit() or int(rounds) < 1
            or not threads.isdigit() or int(threads) < 1):
        sys.exit(f"expected cells among {sorted(CLASSES)}, configurations among "
                 f"{sorted(CONFIGS)}, rounds >= 1 and threads >= 1; got {argv[1:5]}")
    rounds, threads = int(rounds), int(threads)
    with threadpool_limits(threads):
        peak = sgemm_peak(threads)
        print(f"sgemm peak, {threads} thread(s): {peak:.1f} GFLOP/s")
        time.sleep(0.25)  # OpenBLAS's threads spin ~0.1 s after a product (item 117)
        for cell in cells:
            for config in configs:
                N, T, D, H = CONFIGS[config]
                forward, backward, infer = phase_times(cell, N, T, D, H, rounds)
                fwd_flops = gemm_flops(cell, "infer", N, T, D, H)
                parts = [("forward (training)", forward, fwd_flops),
                         ("backward", backward, 2 * fwd_flops),
                         ("step", forward + backward, 3 * fwd_flops),
                         ("forward (inference)", infer, fwd_flops)]
                for name, seconds, flops in parts:
                    gflops = flops / seconds / 1e9
                    print(f"{cell} {config} {name}: {seconds * 1e3:.3f} ms, "
                          f"{gflops:.1f} GFLOP/s, {100 * gflops / peak:.0f} % of peak")


if __name__ == "__main__":
    main(sys.argv)
