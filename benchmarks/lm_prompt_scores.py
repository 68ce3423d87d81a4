"""A language model's generate with the prompt's logits for its last step
alone (RnnLM._scores(..., last_only=True)) against the output layer over
every prompt step (before docs/performance.md item 177), in one process,
interleaved: each round times each case's call (best of 3) both ways, and
the median of the per-round ratios all steps / last step is printed.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/lm_prompt_scores.py [threads [rounds]]

Cases: a 2-layer LSTM language model (V = 10,000, D = H = 200) generating
30 tokens greedily after prompts of 5 and 50 ids, for 1 and 64 rows.
"""
import statistics
import sys

import numpy as np
from threadpoolctl import threadpool_limits

from rnnfast.models.lm import RnnLM

try:                                   # imported by asv (benchmarks.<name>)
    from .common import best_time_and_output
except ImportError:                    # run as a script
    from common import best_time_and_output


def main(threads=1, rounds=7):
    lm = RnnLM(10000, 200, 200, num_layers=2, cell="lstm", random_state=0)
    last_step = lm._scores

    def all_steps(xs, last_only=False):
        return last_step(xs)

    with threadpool_limits(threads):
        for rows in (1, 64):
            for prompt in (5, 50):
                ids = np.random.default_rng(1).integers(0, 10000, (rows, prompt))
                ms = {"all": [], "last": []}
                for _ in range(rounds):
                    outs = []
                    for name, scores in (("all", all_steps), ("last", last_step)):
                        lm._scores = scores
                        lm.generate(ids, 30, temperature=0)
                        t, out = best_time_and_output(lambda: lm.generate(ids, 30, temperature=0))
                        ms[name].append(t)
                        outs.append(out)
                    same = np.array_equal(*outs)
                ratio = statistics.median(a / b for a, b in zip(ms["all"], ms["last"]))
                print(f"{rows:3d} rows, prompt {prompt:2d}: all steps "
                      f"{1e3 * statistics.median(ms['all']):7.1f} ms, last step "
                      f"{1e3 * statistics.median(ms['last']):7.1f} ms, median ratio "
                      f"{ratio:.3f}, same ids {same}")
    lm._scores = last_step


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
