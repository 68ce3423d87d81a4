"""The kernels' thread pool against threads created per call, at 2 threads
(wall clock), interleaved in one process: the median over rounds of each
and of the per-round ratio (per call / pool), for each case.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/ab_pool.py lstm:train:small gru:infer:small [rounds]

A case is cell:mode:config, config a name of rnnfast.bench.CONFIGS or
N,T,D,H.
"""
import statistics
import sys

import numpy as np  # noqa: F401
import scipy.linalg  # noqa: F401  (loads the BLAS before threadpoolctl)
from threadpoolctl import threadpool_limits

from rnnfast import _core
from rnnfast.bench import CONFIGS, make_case

try:                                   # imported by asv (benchmarks.<name>)
    from .common import median_wall_time
except ImportError:                    # run as a script
    from common import median_wall_time


def main(argv):
    cases = [a for a in argv[1:] if ":" in a]
    if not cases:
        sys.exit(__doc__)
    rounds = int(argv[-1]) if argv[-1].isdigit() else 7
    try:
        with threadpool_limits(2):
            for case in cases:
                cell, mode, cfg = case.split(":")
                shape = CONFIGS[cfg] if cfg in CONFIGS else tuple(int(v) for v in cfg.split(","))
                call = make_case("rnnfast", cell, mode, *shape)
                times = {True: [], False: []}
                for _ in range(rounds):
                    for on in (True, False):
                        _core.use_thread_pool(on)
                        call()
                        times[on].append(median_wall_time(call))
                ratios = [off / on for on, off in zip(times[True], times[False])]
                print(f"{cell} {mode} {cfg}: pool {1e3 * statistics.median(times[True]):.3f} ms, "
                      f"per call {1e3 * statistics.median(times[False]):.3f} ms, per call / pool "
                      f"{statistics.median(ratios):.3f} (rounds {[round(r, 2) for r in ratios]})",
                      flush=True)
    finally:
        _core.use_thread_pool(True)


if __name__ == "__main__":
    main(sys.argv)
