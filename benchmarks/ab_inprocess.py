"""A/B of two builds of rnnfast's kernels in one process: the kernel
modules (_rnn, _lstm, _gru) of OLD_TREE, built in place, are loaded beside
this checkout's and swapped into rnnfast._core and its compiled dispatcher
(_dispatch.use_kernels) call by call; each round
times both, interleaved, and the median of the per-round ratios old/new is
printed.  Far less disturbed by a noisy machine than benchmarks/
ab_builds.py's alternating processes (whose pairs here spread 0.6-1.9 on
the same build), for changes inside the kernels; the Python layer is this
checkout's for both.

    git worktree add /tmp/old <commit> && (cd /tmp/old && python setup.py build_ext --inplace)
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/ab_inprocess.py /tmp/old lstm:train:small gru:infer:medium [rounds]

rounds: at least 2 (default 11).

A case is cell:mode:config, config a name of rnnfast.bench.CONFIGS or
N,T,D,H; or kernel:M,K,N, the packed kernel alone (`_rnn.packed_matmul`:
B packed once, then the product repeated, as in a step loop).  One thread,
wall clock (THREADS=2 for two); float32 (DTYPE=float64 for the cases'
calls in double).  Both builds' inference goes through the
kernel defs (_core.use_direct_infer(False)): the direct path takes
rnnfast's own kernels only, and would time the dispatcher with them.
"""
import glob
import importlib.util
import os
import statistics
import sys

import numpy as np
import scipy.linalg  # noqa: F401  (loads the BLAS before threadpoolctl)
from threadpoolctl import threadpool_limits

from rnnfast import _core, _dispatch
from rnnfast.bench import CONFIGS, make_case

try:                                   # imported by asv (benchmarks.<name>)
    from .common import median_wall_time
except ImportError:                    # run as a script
    from common import median_wall_time

KERNELS = ("_rnn", "_lstm", "_gru")


def load_kernels(tree):
    """The kernel modules built in place in `tree`, as modules of their own
    (a second copy of each extension, with its own statics)."""
    mods = {}
    for name in KERNELS:
        found = glob.glob(os.path.join(tree, "rnnfast", f"{name}.cpython-*.so"))
        if not found:
            sys.exit(f"{tree}: no rnnfast/{name}.*.so; build it in place first")
        spec = importlib.util.spec_from_file_location(f"rnnfast.{name}", found[0])
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mods[name] = mod
    return mods


def valid_case(case):
    """cell:mode:config or kernel:M,K,N, as the docstring says."""
    def ints(text, n):
        values = text.split(",")
        return len(values) == n and all(v.isdigit() and int(v) > 0 for v in values)
    parts = case.split(":")
    if parts[0] == "kernel":
        return len(parts) == 2 and ints(parts[1], 3)
    return (len(parts) == 3 and parts[0] in ("rnn", "lstm", "gru")
            and parts[1] in ("train", "infer") and (parts[2] in CONFIGS or ints(parts[2], 4)))


def kernel_calls(old, new, M, K, N):
    """packed_matmul of each build on the same operands, B packed once and
    the product repeated ~10 ms worth, as in a step loop."""
    rng = np.random.default_rng(0)
    a = rng.random((M, K), dtype=np.float32)
    b = rng.random((K, N), dtype=np.float32)
    reps = max(1, int(1e9 / (2 * M * K * N)))
    calls = {}
    for label, mods in (("old", old), ("new", new)):
        c = np.empty((M, N), np.float32)
        calls[label] = (lambda mod=mods["_rnn"], c=c:
                        mod.packed_matmul(a, b, c, False, False, reps))
    return calls


def use(mods):
    for name, mod in mods.items():
        setattr(_core, name, mod)
    _dispatch.use_kernels(mods["_rnn"], mods["_lstm"], mods["_gru"])


def main(argv):
    cases = [a for a in argv[2:] if ":" in a]
    if len(argv) < 3 or not cases:
        sys.exit(__doc__)
    rounds = int(argv[-1]) if argv[-1].isdigit() else 11
    if rounds < 2:
        sys.exit(f"rounds: expected an integer >= 2 (the quartiles of the per-round "
                 f"ratios need two rounds), got {rounds}")
    for case in cases:
        if not valid_case(case):
            sys.exit(f"case {case!r}: expected cell:mode:config (rnn|lstm|gru, train|infer, "
                     f"one of {sorted(CONFIGS)} or N,T,D,H) or kernel:M,K,N")
    new = {name: getattr(_core, name) for name in KERNELS}
    old = load_kernels(argv[1])
    assert all(old[n].__file__ != new[n].__file__ for n in KERNELS)
    threads = int(os.environ.get("THREADS", "1"))
    dtype = np.dtype(os.environ.get("DTYPE", "float32"))
    if dtype not in (np.float32, np.float64):
        sys.exit(f"DTYPE: expected float32 or float64, got {dtype}")
    _core.use_direct_infer(False)
    try:
        with threadpool_limits(threads):
            for case in cases:
                cell, mode = case.split(":")[:2]
                if cell == "kernel":
                    calls = kernel_calls(old, new, *(int(v) for v in mode.split(",")))
                    mode, cfg = "M,K,N =", mode
                else:
                    cfg = case.split(":")[2]
                    shape = CONFIGS[cfg] if cfg in CONFIGS else tuple(int(v) for v in cfg.split(","))
                    call = make_case("rnnfast", cell, mode, *shape, dtype=dtype)
                    calls = {"old": call, "new": call}
                times = {"old": [], "new": []}
                for _ in range(rounds):
                    for label, mods in (("old", old), ("new", new)):
                        use(mods)
                        calls[label]()
                        times[label].append(median_wall_time(calls[label]))
                ratios = [o / n for o, n in zip(times["old"], times["new"])]
                q = statistics.quantiles(ratios)
                print(f"{cell} {mode} {cfg} ({threads} thr{'' if cell == 'kernel' else ', ' + dtype.name}): old "
                      f"{1e3 * statistics.median(times['old']):.3f} ms, new "
                      f"{1e3 * statistics.median(times['new']):.3f} ms, old/new "
                      f"{statistics.median(ratios):.3f} (quartiles {q[0]:.2f}, {q[2]:.2f})",
                      flush=True)
    finally:
        use(new)
        _core.use_direct_infer(True)


if __name__ == "__main__":
    main(sys.argv)
