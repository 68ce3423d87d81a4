"""A language model's sampled generate with the compiled inverse CDF
(rnnfast._rnn.inverse_cdf_rows) against NumPy's cumulative sum and count,
in one process, interleaved (best of 3 calls each a round); the ids are the same either
way.  Prints the median of the per-round ratios numpy / compiled.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/lm_sampling.py [rows [vocabulary [rounds]]]

Defaults: 64 rows, 10,000 tokens, 7 rounds; a 2-layer LSTM of 200 units
sampling 30 tokens at temperature 1, 1 thread (docs/performance.md item
176).
"""
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

import rnnfast.models.lm as lm_module


def numpy_rows(p, r, out):
    """The sampler before item 176."""
    c = np.cumsum(p, axis=1)
    out[...] = np.minimum((c <= r[:, None] * c[:, -1:]).sum(axis=1), p.shape[1] - 1)


def main(rows=64, vocabulary=10000, rounds=7):
    compiled = lm_module.inverse_cdf_rows
    lm = lm_module.RnnLM(vocabulary, 200, 200, num_layers=2, cell="lstm", random_state=0)
    ids = np.random.default_rng(1).integers(0, vocabulary, (rows, 5))

    def call():
        return lm.generate(ids, 30, temperature=1.0, random_state=0)

    ms = {"numpy": [], "compiled": []}
    with threadpool_limits(1):
        for _ in range(rounds):
            outs = []
            for name, rows_fn in (("numpy", numpy_rows), ("compiled", compiled)):
                lm_module.inverse_cdf_rows = rows_fn
                call()
                best = float("inf")
                for _ in range(3):
                    t0 = time.perf_counter()
                    out = call()
                    best = min(best, time.perf_counter() - t0)
                outs.append(out)
                ms[name].append(best)
            assert np.array_equal(outs[0], outs[1])
    lm_module.inverse_cdf_rows = compiled
    ratio = statistics.median(a / b for a, b in zip(ms["numpy"], ms["compiled"]))
    print(f"{rows} rows, V = {vocabulary}: numpy {1e3 * statistics.median(ms['numpy']):.1f} ms,"
          f" compiled {1e3 * statistics.median(ms['compiled']):.1f} ms, median ratio {ratio:.3f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
