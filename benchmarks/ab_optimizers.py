"""The optimizers' steps on NumPy's lines ("numpy", the code before items
124 and 126) or in one compiled pass over rnnfast's threads ("compiled"),
in one process, interleaved round by round: one update of a language
model's params (RnnLM at Zaremba small's sizes: V = 10,000, two LSTM
layers of 200, float32, 4.65 million values) with its gradients, at 1 and
2 threads.  Prints medians and the median of the per-round ratios
numpy / compiled, with quartiles.  Then AdamW's decay as a NumPy pass over
each param before the compiled Adam step ("apart", the code before item
139) against the decay in the compiled step's own pass ("fused").

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/ab_optimizers.py [rounds]
"""
import sys

import numpy as np
from threadpoolctl import threadpool_limits

try:                                   # imported by asv (benchmarks.<name>)
    from .common import switch_ab
except ImportError:                    # run as a script
    from common import switch_ab

from rnnfast import optim
from rnnfast.models import RnnLM

COMPILED = optim._compiled_steps


def use_compiled(on):
    optim._compiled_steps = COMPILED if on else (lambda kind, params, *a: range(len(params)))


FUSED = optim.AdamW._update


def _decay_apart(self, params, grads):
    shrink = 1 - self.lr * self.weight_decay
    for p in params:
        p *= shrink
    self._adam_steps(params, grads, None)


def fuse_adamw_decay(on):
    optim.AdamW._update = FUSED if on else _decay_apart


def main(rounds):
    rng = np.random.default_rng(0)
    model = RnnLM(10_000, 200, 200, num_layers=2, random_state=0)
    model.forward(rng.integers(0, 10_000, (20, 35)), rng.integers(0, 10_000, (20, 35)))
    model.backward()
    opts = {"SGD": optim.SGD(1e-3), "Momentum": optim.Momentum(1e-3),
            "Nesterov": optim.Nesterov(1e-3), "AdaGrad": optim.AdaGrad(1e-4),
            "RMSprop": optim.RMSprop(1e-4), "Adam": optim.Adam(1e-4),
            "AdamW": optim.AdamW(1e-4)}
    try:
        for threads in (1, 2):
            with threadpool_limits(threads):
                for name, opt in opts.items():
                    line = switch_ab(lambda: opt.update(model.params, model.grads), use_compiled,
                                     ("numpy", "compiled"), rounds, calls_a_turn=5)
                    print(f"{threads} thr  {name:9s} {line}", flush=True)
                opt = opts["AdamW"]
                line = switch_ab(lambda: opt.update(model.params, model.grads), fuse_adamw_decay,
                                 ("apart", "fused"), rounds, calls_a_turn=5)
                print(f"{threads} thr  AdamW's decay {line}", flush=True)
    finally:
        use_compiled(True)
        fuse_adamw_decay(True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 11)
