"""A language model's training step and its parts outside the recurrent
layers, at Zaremba small's sizes (RnnLM, V = 10,000, 2 LSTM layers of 200,
N = 20, T = 35, float32), at 1 and 2 threads: median ms of

  - SGD's update over the model's params (after one backward),
  - a TimeEmbedding's forward + backward (700 ids, W 10,000 x 200),
  - the softmax loss's forward, and its forward + backward,
  - check_array's NaN/Inf test of the 28 MB logits,
  - the whole step as the examples' Trainer runs it (forward, backward,
    clip_grads at 5, SGD), over batches of random ids.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/lm_step_parts.py [seconds]

`seconds` (3): how long the whole step is timed at each thread count.
docs/performance.md item 124 has the figures before and after the
compiled loops of src/_rowops.pxi.
"""
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from rnnfast._validation import check_array
from rnnfast.layers import TimeEmbedding
from rnnfast.losses import TimeSoftmaxWithLoss
from rnnfast.models import RnnLM
from rnnfast.optim import SGD, clip_grads

N, T, H, V = 20, 35, 200, 10_000


def median_ms(fn, calls=30):
    fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main(seconds):
    rng = np.random.default_rng(0)
    model = RnnLM(V, H, H, num_layers=2, random_state=0)
    opt = SGD(lr=1.0)
    batches = rng.integers(0, V, (50, N, T + 1))
    emb = TimeEmbedding(rng.standard_normal((V, H)).astype(np.float32))
    ids = rng.integers(0, V, (N, T))
    dout = rng.standard_normal((N, T, H)).astype(np.float32)
    logits = (rng.standard_normal((N, T, V)) * 3).astype(np.float32)
    loss = TimeSoftmaxWithLoss()

    def embedding_fb():
        emb.forward(ids)
        emb.backward(dout)

    def loss_fb():
        loss.forward(logits, ids)
        loss.backward()

    def step(batch):
        model.forward(batch[:, :-1], batch[:, 1:])
        model.backward()
        clip_grads(model.grads, 5.0)
        opt.update(model.params, model.grads)

    for threads in (1, 2):
        with threadpool_limits(threads):
            model.forward(batches[0][:, :-1], batches[0][:, 1:])
            model.backward()
            saved = [p.copy() for p in model.params]
            parts = {
                "SGD update": lambda: opt.update(model.params, model.grads),
                "embedding f+b": embedding_fb,
                "loss forward": lambda: loss.forward(logits, ids),
                "loss f+b": loss_fb,
                "NaN test of the logits": lambda: check_array(
                    logits, "xs", np.dtype(np.float32), ("N", "T", "V")),
            }
            for name, fn in parts.items():
                print(f"{threads} thr  {name:24s} {median_ms(fn):8.3f} ms", flush=True)
            for p, s in zip(model.params, saved):
                p[...] = s
            times, i = [], 0
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                step(batches[i % len(batches)])
                times.append(time.perf_counter() - t0)
                i += 1
            print(f"{threads} thr  {'training step':24s} {statistics.median(times[3:]) * 1e3:8.3f}"
                  f" ms  ({len(times)} steps)", flush=True)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
