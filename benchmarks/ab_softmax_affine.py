"""A language model's output layer, before and after item 114, in one
process, interleaved: the softmax cross-entropy (forward + backward) and the
TimeAffine (forward + backward) at Zaremba small's sizes (N=20, T=35, H=200,
V=10,000, float32).  "old" is the code before item 114, written out here.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/ab_softmax_affine.py [rounds]
"""
import statistics
import sys
import time

import numpy as np

from rnnfast.layers import TimeAffine
from rnnfast.losses import TimeSoftmaxWithLoss, log_softmax

def old_loss_fb(xs, ts):
    """Item 114's before: log_softmax (two exps, four arrays of xs's size)."""
    V = xs.shape[-1]
    logp = log_softmax(xs.reshape(-1, V))
    rows = np.arange(logp.shape[0]); cls = ts.reshape(-1)
    loss = float(-logp[rows, cls].sum(dtype=np.float64) / rows.size)
    dx = np.exp(logp); dx[rows, cls] -= 1; dx *= logp.dtype.type(1.0 / rows.size)
    return loss, dx.reshape(xs.shape)

def new_loss_fb(layer, xs, ts):
    loss = layer.forward(xs, ts)
    return loss, layer.backward()

def old_affine_fb(x, W, b, dout, gW):
    """Item 114's before: x @ W + b, dW through a temporary."""
    y = (x.reshape(-1, W.shape[0]) @ W + b)
    x2, d2 = x.reshape(-1, W.shape[0]), dout.reshape(-1, W.shape[1])
    gW[...] = x2.T @ d2
    d2.sum(0)
    d2 @ W.T
    return y

def main(rounds):
    rng = np.random.default_rng(0)
    N, T, H, V = 20, 35, 200, 10000
    xs = rng.standard_normal((N, T, V)).astype(np.float32)
    ts = rng.integers(0, V, (N, T))
    h = rng.standard_normal((N, T, H)).astype(np.float32)
    W = (rng.standard_normal((H, V)) * 0.05).astype(np.float32)
    b = np.zeros(V, np.float32)
    layer, aff, gW = TimeSoftmaxWithLoss(), TimeAffine(W, b), np.zeros_like(W)
    l0, d0 = old_loss_fb(xs, ts)
    l1, d1 = new_loss_fb(layer, xs, ts)
    print("loss diff", abs(l0 - l1), "dx max diff", np.abs(d0 - d1).max())
    res = {k: [] for k in ("loss_old", "loss_new", "aff_old", "aff_new")}
    for r in range(rounds):
        t = time.perf_counter()
        old_loss_fb(xs, ts)
        res["loss_old"].append(time.perf_counter() - t)
        t = time.perf_counter()
        new_loss_fb(layer, xs, ts)
        res["loss_new"].append(time.perf_counter() - t)
        t = time.perf_counter()
        old_affine_fb(h, W, b, xs, gW)
        res["aff_old"].append(time.perf_counter() - t)
        t = time.perf_counter()
        aff.forward(h)
        aff.backward(xs)
        res["aff_new"].append(time.perf_counter() - t)
    for k, v in res.items():
        print(f"{k}: median {1e3*statistics.median(v):.2f} ms  min {1e3*min(v):.2f}")
    for part in ("loss", "aff"):
        ratios = [a / b for a, b in zip(res[f"{part}_old"], res[f"{part}_new"])]
        print(f"{part} old/new median ratio {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
