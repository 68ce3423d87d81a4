"""The loss's compiled softmax pass alone (rnnfast._rnn.softmax_rows) on a
language model's logits: R = 700 rows (N = 20, T = 35) of V = 10,000
float32, 1 thread, the logits pushed out of the caches (64 MB written)
before each of 40 calls, as they come from memory in a training step.
Prints the median and the fastest call.  TREE (optional) is a source tree
built in place, for an A/B of two builds run one after the other:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/softmax_rows_time.py [TREE]
"""
import os
import statistics
import sys
import time

R, V = 700, 10_000


def import_rnn(tree):
    """rnnfast._rnn from `tree` (a source tree built in place), or the one
    installed when tree is None.  Nothing runs at import: asv imports every
    module of benchmarks/ to discover its suite."""
    if tree is not None:
        tree = os.path.abspath(tree)
        if not os.path.isdir(os.path.join(tree, "rnnfast")):
            sys.exit(f"TREE: {tree!r} is not a source tree of rnnfast (no rnnfast/ in it)")
        sys.path.insert(0, tree)
    from rnnfast import _rnn
    if tree is not None and not _rnn.__file__.startswith(tree + os.sep):
        sys.exit(f"TREE: {tree} has no built rnnfast._rnn (python setup.py build_ext "
                 f"--inplace there); it imported {_rnn.__file__}")
    return _rnn


def main():
    _rnn = import_rnn(sys.argv[1] if len(sys.argv) > 1 else None)
    import numpy as np
    from threadpoolctl import threadpool_limits
    x = np.random.default_rng(0).standard_normal((R, V)).astype(np.float32)
    e, z, top = np.empty_like(x), np.empty(R), np.empty(R, np.float32)
    junk = np.ones(16 * 2 ** 20, np.float32)
    times = []
    with threadpool_limits(1):
        for _ in range(40):
            junk += 1
            t0 = time.perf_counter()
            _rnn.softmax_rows(x, e, z, top)
            times.append(time.perf_counter() - t0)
    print(f"{_rnn.__file__}: median {statistics.median(times) * 1e3:.3f} ms, "
          f"fastest {min(times) * 1e3:.3f} ms a call")


if __name__ == "__main__":
    main()
