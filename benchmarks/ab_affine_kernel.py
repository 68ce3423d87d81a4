"""The fully connected layers' products on NumPy's BLAS ("numpy") or on
rnnfast's packed kernel and thread pool ("kernel", item 117), in one
process, interleaved round by round: a language model's training step
(forward + backward) at Zaremba small's sizes (V = 10,000, H = 200, two
LSTM layers, N = 20, T = 35, float32), and its TimeAffine alone (forward +
backward), at 1 and 2 threads.  Prints medians and the median of the
per-round ratios numpy / kernel.  Each turn starts after a 0.25 s pause, so
that OpenBLAS's threads, which spin ~0.1 s after the "numpy" turn's last
product, do not slow the "kernel" turn that follows (within a turn they
slow what they slow in real use).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/ab_affine_kernel.py [rounds]
"""
import sys

import numpy as np
from threadpoolctl import threadpool_limits

try:                                   # imported by asv (benchmarks.<name>)
    from .common import switch_ab
except ImportError:                    # run as a script
    from common import switch_ab

import rnnfast.layers.affine as affine
from rnnfast.layers import TimeAffine
from rnnfast.models import RnnLM

N, T, H, V = 20, 35, 200, 10_000
ON_KERNEL = affine._KERNEL_MIN_MACS


def use_kernel(on):
    affine._KERNEL_MIN_MACS = ON_KERNEL if on else float("inf")


def cases():
    rng = np.random.default_rng(0)
    model = RnnLM(V, H, H, num_layers=2, random_state=0)
    xs, ts = rng.integers(0, V, (N, T)), rng.integers(0, V, (N, T))
    h = rng.standard_normal((N, T, H)).astype(np.float32)
    dy = rng.standard_normal((N, T, V)).astype(np.float32)
    layer = TimeAffine((rng.standard_normal((H, V)) * 0.05).astype(np.float32),
                       np.zeros(V, np.float32))

    def lm_step():
        model.forward(xs, ts)
        model.backward()

    def affine_fb():
        layer.forward(h)
        layer.backward(dy)
    return {"LM step": lm_step, "TimeAffine f+b": affine_fb}


def main(rounds):
    print(f"threadpoolctl: {[(i['internal_api'], i.get('architecture')) for i in __import__('threadpoolctl').threadpool_info()]}")
    for threads in (1, 2):
        with threadpool_limits(threads):
            for name, call in cases().items():
                line = switch_ab(call, use_kernel, ('numpy', 'kernel'), rounds, pause=0.25)
                print(f"{threads} thr  {name:15s} {line}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 11)
