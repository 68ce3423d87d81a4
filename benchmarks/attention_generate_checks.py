"""An attention encoder-decoder's greedy generate with its encoder states
checked once (AttentionDecoder.generate, docs/performance.md item 180)
against a check at every step (Decoder.generate, as before), in one
process, interleaved: each round times each case's call (best of 3) both
ways, and the median of the per-round ratios every step / once is printed.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/attention_generate_checks.py [threads [rounds]]

Cases: AttentionSeq2seq (vocabulary 13, D = 16) of H = 256 and 128
decoding 30 ids from 29 source ids, for N = 32, 64 and 128 rows.
"""
import sys

import numpy as np
from threadpoolctl import threadpool_limits

from rnnfast.models import AttentionSeq2seq
from rnnfast.models.seq2seq import AttentionDecoder, Decoder

try:                                   # imported by asv (benchmarks.<name>)
    from .common import interleaved_ab
except ImportError:                    # run as a script
    from common import interleaved_ab


def main(threads=1, rounds=7):
    once = AttentionDecoder.generate
    ways = (("every step", lambda: setattr(AttentionDecoder, "generate", Decoder.generate)),
            ("once", lambda: setattr(AttentionDecoder, "generate", once)))
    with threadpool_limits(threads):
        for H in (256, 128):
            model = AttentionSeq2seq(13, 16, H, random_state=0)
            for N in (32, 64, 128):
                xs = np.random.default_rng(0).integers(0, 13, (N, 29))
                line = interleaved_ab(ways, lambda: model.generate(xs, 6, 30), rounds)
                print(f"H = {H}, N = {N:3d}: {line}")
    AttentionDecoder.generate = once


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
