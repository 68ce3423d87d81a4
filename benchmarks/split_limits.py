"""The least work worth a thread, swept in one process: each case is timed
at 2 threads (wall clock) under the current limits and under others, in
interleaved rounds, and at 1 thread for reference; the median over rounds
is printed, with each setting's speed-up over 1 thread.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/split_limits.py lstm train tiny 0.5e6,5e6,32 [rounds]

The configuration is a name of rnnfast.bench.CONFIGS or "N,T,D,H"; each
further setting is "step_flops,grad_flops,grad_rows" (see split_limits()
in the kernel modules and src/_seq.pxd).
"""
import statistics
import sys

import numpy as np  # noqa: F401  (loads NumPy's BLAS before threadpoolctl)
import scipy.linalg  # noqa: F401
from threadpoolctl import threadpool_limits

from rnnfast import _gru, _lstm, _rnn
from rnnfast.bench import CONFIGS, make_case

try:                                   # imported by asv (benchmarks.<name>)
    from .common import median_wall_time
except ImportError:                    # run as a script
    from common import median_wall_time

MODULES = (_lstm, _gru, _rnn)


def set_limits(limits):
    for mod in MODULES:
        mod.split_limits(*limits)


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    cell, mode, cfg = argv[1:4]
    settings = [a for a in argv[4:] if "," in a]
    rounds = int(argv[-1]) if argv[-1].isdigit() else 7
    shape = CONFIGS[cfg] if cfg in CONFIGS else tuple(int(v) for v in cfg.split(","))
    default = _lstm.split_limits()
    limits = [default] + [tuple(int(float(v)) for v in s.split(",")) for s in settings]
    call = make_case("rnnfast", cell, mode, *shape)
    for _ in range(3):
        call()
    results = {("1 thr", None): []}
    results.update({("2 thr", lim): [] for lim in limits})
    for _ in range(rounds):
        with threadpool_limits(1):
            results[("1 thr", None)].append(median_wall_time(call))
        with threadpool_limits(2):
            for lim in limits:
                set_limits(lim)
                call()
                results[("2 thr", lim)].append(median_wall_time(call))
    set_limits(default)
    one = statistics.median(results[("1 thr", None)])
    print(f"{cell} {mode} {cfg} {shape}: 1 thread {1e3 * one:.3f} ms")
    for lim in limits:
        med = statistics.median(results[("2 thr", lim)])
        tag = " (current)" if lim == default else ""
        print(f"  2 threads, limits {lim}{tag}: {1e3 * med:.3f} ms, 1 thr / 2 thr {one / med:.2f}")


if __name__ == "__main__":
    main(sys.argv)
