"""Calls of one side-by-side case (rnnfast's alone) in a loop for a fixed
time, to be profiled from outside: prints the number of calls and their
median wall time.

    THREADS=2 SECS=8 env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        perf record -e cpu-clock -F 2000 -o lstm2.data \\
        python benchmarks/loop_calls.py lstm:train:medium
    perf report -i lstm2.data --sort pid,sym -n --stdio

A case is cell:mode:config, config a name of rnnfast.bench.CONFIGS or
N,T,D,H.  THREADS (1): rnnfast's threads (threadpoolctl's BLAS limit, which
the kernels follow); SECS (10): how long to loop.  Samples divided by
calls give each function's CPU time a call, comparable between thread
counts (docs/performance.md item 142); the first calls' page faults and
the setup's OpenBLAS threads (`blas_thread_server`) are in the samples too.
"""
import os
import sys
import time

import scipy.linalg  # noqa: F401  (loads the BLAS before threadpoolctl)
from threadpoolctl import threadpool_limits

from rnnfast.bench import CONFIGS, make_case


def parse_case(case):
    """(cell, mode, (N, T, D, H)) of cell:mode:config; SystemExit naming
    what is wrong otherwise."""
    parts = case.split(":")
    if len(parts) != 3:
        sys.exit(f"case: expected cell:mode:config, got {case!r}")
    cell, mode, cfg = parts
    if cell not in ("rnn", "lstm", "gru"):
        sys.exit(f"case: cell must be rnn, lstm or gru, got {cell!r}")
    if mode not in ("train", "infer"):
        sys.exit(f"case: mode must be train or infer, got {mode!r}")
    if cfg in CONFIGS:
        return cell, mode, CONFIGS[cfg]
    sizes = cfg.split(",")
    if len(sizes) != 4 or not all(v.isdigit() and int(v) > 0 for v in sizes):
        sys.exit(f"case: config must be one of {', '.join(CONFIGS)} or four positive "
                 f"integers N,T,D,H, got {cfg!r}")
    return cell, mode, tuple(int(v) for v in sizes)


def positive_env(name, default, kind):
    value = os.environ.get(name, default)
    try:
        out = kind(value)
    except ValueError:
        out = 0
    if not out > 0:
        sys.exit(f"{name}: expected a positive {kind.__name__}, got {value!r}")
    return out


def main(case):
    cell, mode, sizes = parse_case(case)
    threads = positive_env("THREADS", "1", int)
    secs = positive_env("SECS", "10", float)
    with threadpool_limits(threads):
        call = make_case("rnnfast", cell, mode, *sizes)
        for _ in range(3):
            call()
        times = []
        start = time.perf_counter()
        while time.perf_counter() - start < secs:
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
    times.sort()
    print(f"{case}, {threads} thread(s): {len(times)} calls, median "
          f"{times[len(times) // 2] * 1e3:.3f} ms")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
