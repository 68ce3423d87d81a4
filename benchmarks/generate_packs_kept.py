"""Generate loops with and without a pack epoch (rnnfast._core.packs_kept),
in one process, interleaved: each round times every case's generate call
(best of 3) with the models' block replaced by a no-op, then as built, and
the median of the per-round ratios without / with is printed.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/generate_packs_kept.py [threads [rounds]]

Cases: greedy seq2seq decoding (vocabulary 13, 7 source ids, 30 steps) of
N = 32, 64, 128 rows at H = 256 and 32 rows at H = 512, and a 2-layer
language model (vocabulary 1000, D = H = 256) sampling 30 tokens greedily
after prompts of 5 ids for 32 rows (docs/performance.md item 174).
"""
import contextlib
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

import rnnfast.models.lm as lm_module
import rnnfast.models.seq2seq as seq2seq_module


def cases():
    """(name, zero-argument call) of each case."""
    out = []
    for N, H in ((32, 256), (64, 256), (128, 256), (32, 512)):
        model = seq2seq_module.Seq2seq(13, 16, H, random_state=0)
        xs = np.random.default_rng(0).integers(0, 13, (N, 7))
        out.append((f"seq2seq N={N} H={H}", lambda m=model, xs=xs: m.generate(xs, 6, 30)))
    for cell in ("lstm", "gru", "rnn"):
        lm = lm_module.RnnLM(1000, 256, 256, num_layers=2, cell=cell, random_state=0)
        ids = np.random.default_rng(1).integers(0, 1000, (32, 5))
        out.append((f"lm {cell} N=32 H=256, 2 layers",
                    lambda lm=lm, ids=ids: lm.generate(ids, 30, temperature=0)))
    return out


def use_blocks(on, kept=seq2seq_module.packs_kept):
    """The models' generate with their pack epoch (on) or a no-op block."""
    block = kept if on else (lambda *layers: contextlib.nullcontext())
    seq2seq_module.packs_kept = block
    lm_module.packs_kept = block


def best_of(call, n=3):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(threads=1, rounds=7):
    with threadpool_limits(threads):
        for name, call in cases():
            ms = {False: [], True: []}
            for _ in range(rounds):
                for on in (False, True):
                    use_blocks(on)
                    call()                      # untimed: the buffer cache settles
                    ms[on].append(best_of(call))
            use_blocks(True)
            ratio = statistics.median(a / b for a, b in zip(ms[False], ms[True]))
            print(f"{threads} thread(s) {name}: without {1e3 * statistics.median(ms[False]):.2f}"
                  f" ms, with {1e3 * statistics.median(ms[True]):.2f} ms,"
                  f" median ratio {ratio:.3f}", flush=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
