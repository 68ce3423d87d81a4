"""A language model's generate with the prompt's logits for its last step
alone (RnnLM._scores(..., last_only=True)) against the output layer over
every prompt step (before docs/performance.md item 177), in one process,
interleaved: each round times each case's call (best of 3) both ways, and
the median of the per-round ratios all steps / last step is printed (the
ids checked equal).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/lm_prompt_scores.py [threads [rounds]]

Cases: a 2-layer LSTM language model (V = 10,000, D = H = 200) generating
30 tokens greedily after prompts of 5 and 50 ids, for 1 and 64 rows.
"""
import sys

import numpy as np
from threadpoolctl import threadpool_limits

from rnnfast.models.lm import RnnLM

try:                                   # imported by asv (benchmarks.<name>)
    from .common import interleaved_ab
except ImportError:                    # run as a script
    from common import interleaved_ab


def main(threads=1, rounds=7):
    lm = RnnLM(10000, 200, 200, num_layers=2, cell="lstm", random_state=0)
    last_step = lm._scores

    def all_steps(xs, last_only=False):
        return last_step(xs)

    ways = (("all steps", lambda: setattr(lm, "_scores", all_steps)),
            ("last step", lambda: setattr(lm, "_scores", last_step)))
    with threadpool_limits(threads):
        for rows in (1, 64):
            for prompt in (5, 50):
                ids = np.random.default_rng(1).integers(0, 10000, (rows, prompt))
                line = interleaved_ab(ways, lambda: lm.generate(ids, 30, temperature=0), rounds)
                print(f"{rows:3d} rows, prompt {prompt:2d}: {line}")
    lm._scores = last_step


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
