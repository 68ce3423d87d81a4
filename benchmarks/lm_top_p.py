"""A language model's generate with top_p, the nucleus found by selection
(rnnfast._rnn.nucleus_rows, docs/performance.md item 181) against each
row sorted (NumPy's stable argsort and cumulative sum, before item 181),
in one process, interleaved (best of 3 calls each a round; the ids
checked equal).  Prints the median of the per-round ratios sorted /
selection, and the same for the nucleus alone on (rows, V) probabilities;
then generate with top_k = 50, the k-th largest found by selection
(top_k_rows, item 182) against np.partition.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/lm_top_p.py [rows [vocabulary [rounds]]]

Defaults: 64 rows, 10,000 tokens, 5 rounds; a 2-layer LSTM of 200 units
sampling 30 tokens at temperature 1 with top_p = 0.9, 1 thread
(THREADS=2 for two).
"""
import os
import statistics
import sys
import timeit

import numpy as np
from threadpoolctl import threadpool_limits

import rnnfast.models.lm as lm_module

try:                                   # imported by asv (benchmarks.<name>)
    from .common import interleaved_ab
except ImportError:                    # run as a script
    from common import interleaved_ab


def sorted_nucleus_rows(p, top_p):
    """The nucleus as found before item 181, in place as nucleus_rows."""
    order = np.argsort(-p, axis=1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=1)
    before = np.cumsum(ranked, axis=1) - ranked
    keep = np.zeros(p.shape, bool)
    np.put_along_axis(keep, order, before < top_p * ranked.sum(axis=1, keepdims=True), axis=1)
    p[~keep] = 0.0


def partition_top_k_rows(z, k):
    """top_k's mask as made before item 182, in place as top_k_rows."""
    z[z < np.partition(z, -k, axis=1)[:, -k][:, None]] = -np.inf


def put(name, rows_fn):
    """A function that puts rows_fn in rnnfast.models.lm's `name`."""
    return lambda: setattr(lm_module, name, rows_fn)


def generate_ab(name, old, new, lm, ids, rounds, **sampling):
    """interleaved_ab's line for lm.generate (30 tokens, temperature 1) with
    lm_module's `name` set to old's and then new's (label, function)."""
    return interleaved_ab(
        tuple((label, put(name, fn)) for label, fn in (old, new)),
        lambda: lm.generate(ids, 30, temperature=1.0, random_state=0, **sampling),
        rounds, warm=False)


def main(rows=64, vocabulary=10000, rounds=5):
    selection, top_k = lm_module.nucleus_rows, lm_module.top_k_rows
    lm = lm_module.RnnLM(vocabulary, 200, 200, num_layers=2, cell="lstm", random_state=0)
    ids = np.random.default_rng(1).integers(0, vocabulary, (rows, 5))
    try:
        line = generate_ab("nucleus_rows", ("sorted", sorted_nucleus_rows),
                           ("selection", selection), lm, ids, rounds, top_p=0.9)
        print(f"{rows} rows, V = {vocabulary}, generate: {line}")
        p = np.exp(np.random.default_rng(0).standard_normal((rows, vocabulary)))
        ways = (("sorted", sorted_nucleus_rows), ("selection", selection))
        us = {name: [] for name, _ in ways}
        for _ in range(rounds):
            for name, rows_fn in ways:
                us[name].append(min(timeit.repeat(lambda: rows_fn(p.copy(), 0.9), number=3,
                                                  repeat=3)) / 3 * 1e6)
        ratio = statistics.median(a / b for a, b in zip(us["sorted"], us["selection"]))
        print(f"  the nucleus alone (with a copy of p): sorted "
              f"{statistics.median(us['sorted']):.0f} us, selection "
              f"{statistics.median(us['selection']):.0f} us, median ratio {ratio:.3f}")
        line = generate_ab("top_k_rows", ("partition", partition_top_k_rows),
                           ("selection", top_k), lm, ids, rounds, top_k=50)
        print(f"{rows} rows, V = {vocabulary}, generate with top_k = 50: {line}")
    finally:
        lm_module.nucleus_rows, lm_module.top_k_rows = selection, top_k


if __name__ == "__main__":
    with threadpool_limits(int(os.environ.get("THREADS", 1))):
        main(*(int(a) for a in sys.argv[1:4]))
