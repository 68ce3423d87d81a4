"""A language model's sampled generate, its sampler against an earlier one,
in one process, interleaved (best of 3 calls each a round); the ids are
the same either way.  Prints the median of the per-round ratios earlier /
as built.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/lm_sampling.py [rows [vocabulary [rounds]]]
    OLD=/tmp/old env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/lm_sampling.py [rows [vocabulary [rounds]]]

The earlier sampler is NumPy's cumulative sum and count in place of the
compiled inverse CDF (docs/performance.md item 176); with OLD=<tree>, a
build in place as for benchmarks/ab_inprocess.py, it is the sampler as it
was before item 178 with that build's compiled rows, or, when that build
has item 178's scaled_logits_rows, the sampler as it is with that build's
compiled passes (item 179).  Defaults: 64 rows, 10,000 tokens, 7 rounds;
a 2-layer LSTM of 200 units sampling 30 tokens at temperature 1, 1
thread (THREADS=2 for two).  A second and third line time the samplers
alone on float32 logits of that shape (best of 3 x 10 calls a round), at
temperature 1 and 0 (greedy).
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


def numpy_rows(p, r, out):
    """The inverse CDF before item 176."""
    c = np.cumsum(p, axis=1)
    out[...] = np.minimum((c <= r[:, None] * c[:, -1:]).sum(axis=1), p.shape[1] - 1)


def sampler_before_178(rows):
    """rnnfast.models.lm._sample as it was before item 178 (a new array at
    each step of the scaling, greedy in float64), with `rows` for its
    inverse CDF."""
    def sample(logits, temperature, top_k, skip, rng, top_p=None):
        z = logits.astype(np.float64)
        z[:, skip] = -np.inf
        if top_k is not None:
            kth = np.partition(z, -top_k, axis=1)[:, -top_k][:, None]
            z[z < kth] = -np.inf
        if temperature == 0:
            return z.argmax(axis=1)
        with np.errstate(over="ignore"):
            z = (z - z.max(axis=1, keepdims=True)) / temperature
        p = np.exp(z)
        if top_p is not None and top_p < 1:
            p = lm_module._nucleus(p, top_p)
        ids = np.empty(z.shape[0], np.intp)
        rows(np.ascontiguousarray(p), rng.random(z.shape[0]), ids)
        return ids
    return sample


def sampler_with_numpy_rows(logits, temperature, top_k, skip, rng, top_p=None):
    """The sampler as built, NumPy's inverse CDF in place of the compiled."""
    compiled = lm_module.inverse_cdf_rows
    lm_module.inverse_cdf_rows = numpy_rows
    try:
        return as_built(logits, temperature, top_k, skip, rng, top_p)
    finally:
        lm_module.inverse_cdf_rows = compiled


def sampler_with_passes_of(module):
    """The sampler as built with `module`'s (an older build's _rnn)
    compiled inverse CDF and scaling."""
    def sample(*args, **kwargs):
        passes = lm_module.inverse_cdf_rows, lm_module.scaled_logits_rows
        lm_module.inverse_cdf_rows = module.inverse_cdf_rows
        lm_module.scaled_logits_rows = module.scaled_logits_rows
        try:
            return as_built(*args, **kwargs)
        finally:
            lm_module.inverse_cdf_rows, lm_module.scaled_logits_rows = passes
    return sample


as_built = lm_module._sample


def main(rows=64, vocabulary=10000, rounds=7):
    earlier, name = sampler_with_numpy_rows, "numpy rows"
    if os.environ.get("OLD"):
        try:                            # imported by asv (benchmarks.<name>)
            from .ab_inprocess import load_kernels
        except ImportError:             # run as a script
            from ab_inprocess import load_kernels
        old_rnn = load_kernels(os.environ["OLD"])["_rnn"]
        if hasattr(old_rnn, "scaled_logits_rows"):
            earlier, name = sampler_with_passes_of(old_rnn), "old build's passes"
        else:
            earlier = sampler_before_178(old_rnn.inverse_cdf_rows)
            name = "before item 178"
    lm = lm_module.RnnLM(vocabulary, 200, 200, num_layers=2, cell="lstm", random_state=0)
    ids = np.random.default_rng(1).integers(0, vocabulary, (rows, 5))

    def call():
        return lm.generate(ids, 30, temperature=1.0, random_state=0)

    line = interleaved_ab((("earlier", lambda: setattr(lm_module, "_sample", earlier)),
                           ("as built", lambda: setattr(lm_module, "_sample", as_built))),
                          call, rounds)
    lm_module._sample = as_built
    print(f"{rows} rows, V = {vocabulary}, {name} against as built: {line}")
    logits = (np.random.default_rng(0).standard_normal((rows, vocabulary)) * 3).astype(np.float32)
    skip = np.zeros(0, np.intp)
    for temperature in (1.0, 0.0):
        us = {"earlier": [], "as built": []}
        for _ in range(rounds):
            draws = []
            for which, sampler in (("earlier", earlier), ("as built", as_built)):
                def draw():
                    return sampler(logits, temperature, None, skip, np.random.default_rng(3))
                us[which].append(min(timeit.repeat(draw, number=10, repeat=3)) / 10 * 1e6)
                draws.append(draw())
            assert np.array_equal(draws[0], draws[1])
        ratio = statistics.median(a / b for a, b in zip(us["earlier"], us["as built"]))
        print(f"  the sampler alone, temperature {temperature}: {name} "
              f"{statistics.median(us['earlier']):.0f} us, as built "
              f"{statistics.median(us['as built']):.0f} us, median ratio {ratio:.3f}")


if __name__ == "__main__":
    with threadpool_limits(int(os.environ.get("THREADS", 1))):
        main(*(int(a) for a in sys.argv[1:4]))
