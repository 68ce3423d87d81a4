"""Cells and Time layers in evaluation mode against training mode, in one
process, interleaved: a one-step forward of each Time layer (N = 8, D = H
= 64), and greedy decoding of the seq2seq models (the textbook's addition
task: V = 59, D = 16, H = 128, a batch of 128, 29 source ids, 4 ids
out), whose generate runs its LSTMs in evaluation mode; "training" holds
them in training mode (their train() made a no-op for the turn), as
before they had one.  Median over rounds of each round's ratio
training/eval, float32, one thread:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/layer_eval.py [rounds]
"""
import statistics
import sys
import timeit

import numpy as np
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast.layers.recurrent import _Recurrent
from rnnfast.models.seq2seq import AttentionSeq2seq, PeekySeq2seq, Seq2seq


def ratio(fn, set_mode, rounds, number):
    """(median training/eval ratio, eval seconds a call)."""
    ratios, evals = [], []
    for _ in range(rounds):
        t = {}
        for training in (True, False):
            set_mode(training)
            t[training] = min(timeit.repeat(fn, number=number, repeat=3)) / number
        ratios.append(t[True] / t[False])
        evals.append(t[False])
    return statistics.median(ratios), statistics.median(evals)


def main(rounds):
    rng = np.random.default_rng(0)
    for cls, k in ((rnnfast.TimeRNN, 1), (rnnfast.TimeLSTM, 4), (rnnfast.TimeGRU, 3)):
        W = [rng.standard_normal(s).astype(np.float32) / 8 for s in ((64, k * 64),
                                                                      (64, k * 64), (k * 64,))]
        layer = cls(*W)
        x = rng.standard_normal((8, 1, 64)).astype(np.float32)
        r, t = ratio(lambda: layer.forward(x), layer.train, rounds, 2000)
        print(f"{cls.__name__} one step: eval {t * 1e6:.2f} us, training/eval {r:.3f}",
              flush=True)
    real_train = _Recurrent.train
    for cls in (Seq2seq, PeekySeq2seq, AttentionSeq2seq):
        model = cls(59, 16, 128, random_state=0)
        xs = rng.integers(0, 59, (128, 29))

        def hold(training):
            _Recurrent.train = (lambda self, mode=True: self) if training else real_train
        try:
            r, t = ratio(lambda: model.generate(xs, 6, 4), hold, rounds, 20)
        finally:
            _Recurrent.train = real_train
        print(f"{cls.__name__}.generate: eval {t * 1e3:.3f} ms, training/eval {r:.3f}",
              flush=True)


if __name__ == "__main__":
    with threadpool_limits(1):
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
