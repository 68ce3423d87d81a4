"""A/B of two builds of rnnfast (two source trees, each built in place with
`python setup.py build_ext --inplace`), for changes no runtime switch can
turn off.  Each round runs one process per build, alternating, and each
process times the call (CPU time, median over ~1 s) and counts the minor
page faults per call (getrusage); the median of the per-round ratios
old/new is printed with every pair.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/ab_builds.py OLD_TREE NEW_TREE lstm train zaremba-small [rounds]

The configuration is a name of rnnfast.bench.CONFIGS or "N,T,D,H".  One
thread, timed on the CPU clock; THREADS=2 in the environment runs at 2
threads, timed on the wall clock (CPU time would add the threads up);
DTYPE=float64 times the calls in double.
A worktree of an older commit serves as OLD_TREE:
    git worktree add /tmp/old <commit> && (cd /tmp/old && python setup.py build_ext --inplace)
"""
import os
import statistics
import subprocess
import sys

CHILD = r"""
import resource, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
import rnnfast
assert rnnfast.__file__.startswith(sys.argv[1]), rnnfast.__file__
import scipy.linalg  # noqa: F401  (loads the BLAS before threadpool_limits)
from threadpoolctl import threadpool_limits
from rnnfast.bench import CONFIGS, make_case
threads = int(sys.argv[5])
threadpool_limits(threads)
clock = time.process_time if threads == 1 else time.perf_counter
cell, mode, cfg = sys.argv[2:5]
shape = CONFIGS[cfg] if cfg in CONFIGS else tuple(int(v) for v in cfg.split(","))
call = make_case("rnnfast", cell, mode, *shape, dtype=np.dtype(sys.argv[6]))
for _ in range(3):
    call()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
times, end = [], time.perf_counter() + 1.0
while len(times) < 5 or time.perf_counter() < end:
    t0 = clock()
    call()
    times.append(clock() - t0)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / len(times)
print(sorted(times)[len(times) // 2], faults)
"""


def run(tree, cell, mode, cfg):
    threads = os.environ.get("THREADS", "1")
    out = subprocess.run([sys.executable, "-c", CHILD, tree, cell, mode, cfg, threads,
                          os.environ.get("DTYPE", "float32")],
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def main(argv):
    if len(argv) < 6:
        sys.exit(__doc__)
    old, new, cell, mode, cfg = argv[1:6]
    rounds = int(argv[6]) if len(argv) > 6 else 5
    if os.environ.get("DTYPE", "float32") not in ("float32", "float64"):
        sys.exit(f"DTYPE: expected float32 or float64, got {os.environ['DTYPE']!r}")
    pairs = [(run(old, cell, mode, cfg), run(new, cell, mode, cfg)) for _ in range(rounds)]
    ratios = [o[0] / n[0] for o, n in pairs]
    print(f"{cell} {mode} {cfg} ({os.environ.get('DTYPE', 'float32')}): old {1e3 * statistics.median(o[0] for o, _ in pairs):.3f} ms, "
          f"new {1e3 * statistics.median(n[0] for _, n in pairs):.3f} ms, "
          f"old/new {statistics.median(ratios):.3f} (pairs {[round(r, 2) for r in ratios]}); "
          f"minor page faults a call: old {statistics.median(o[1] for o, _ in pairs):.0f}, "
          f"new {statistics.median(n[1] for _, n in pairs):.0f}")


if __name__ == "__main__":
    main(sys.argv)
