"""A loss's softmax on NumPy ("numpy", the code before item 118) or
compiled, rows over rnnfast's threads ("compiled"), in one process,
interleaved round by round: TimeSoftmaxWithLoss forward + backward over a
language model's logits (N = 20, T = 35, V = 10,000, float32), and an RnnLM
training step at Zaremba small's sizes (two LSTM layers, H = 200), at 1 and
2 threads.  Prints medians and the median of the per-round ratios numpy /
compiled, with quartiles.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/ab_softmax_rows.py [rounds]
"""
import sys

import numpy as np
from threadpoolctl import threadpool_limits

try:                                   # imported by asv (benchmarks.<name>)
    from .common import switch_ab
except ImportError:                    # run as a script
    from common import switch_ab

import rnnfast.losses as losses
from rnnfast.models import RnnLM

N, T, H, V = 20, 35, 200, 10_000


def use_compiled(on):
    losses._COMPILED_SOFTMAX = on


def cases():
    rng = np.random.default_rng(0)
    model = RnnLM(V, H, H, num_layers=2, random_state=0)
    ids, ts = rng.integers(0, V, (N, T)), rng.integers(0, V, (N, T))
    xs = (rng.standard_normal((N, T, V)) * 3).astype(np.float32)
    loss = losses.TimeSoftmaxWithLoss()

    def loss_fb():
        loss.forward(xs, ts)
        loss.backward()

    def lm_step():
        model.forward(ids, ts)
        model.backward()
    return {"loss f+b": loss_fb, "LM step": lm_step}


def main(rounds):
    for threads in (1, 2):
        with threadpool_limits(threads):
            for name, call in cases().items():
                line = switch_ab(call, use_compiled, ('numpy', 'compiled'), rounds, pause=0.0)
                print(f"{threads} thr  {name:15s} {line}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 11)
