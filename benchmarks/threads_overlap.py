"""Do two threads training two independent models overlap in time?

The kernels run without the GIL, so with BLAS limited to one thread each,
two Python threads should take about the time of one (on two free cores),
not the sum.  Prints the wall time of the two trainings run one after the
other and in two threads, and their ratio (2.0 = perfect overlap, 1.0 =
none).  Not an asv benchmark (asv collects nothing from this module).

    python benchmarks/threads_overlap.py [--steps 20]
"""
import argparse
import threading
import time

import numpy as np
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast.optim import SGD


def make_job(seed, N=32, T=100, D=64, H=128):
    rng = np.random.default_rng(seed)
    net = rnnfast.LSTM(D, H, random_state=seed)
    xs = rng.standard_normal((N, T, D)).astype(np.float32)
    target = rng.standard_normal((N, T, H)).astype(np.float32)
    return net, xs, target


def train(job, steps):
    net, xs, target = job
    opt = SGD(lr=1e-3)
    for _ in range(steps):
        hs, _ = net.forward(xs)
        net.backward(hs - target)
        opt.update(net.params, net.grads)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    with threadpool_limits(1):
        train(make_job(0), 2)                              # warm-up
        jobs = [make_job(1), make_job(2)]
        t0 = time.perf_counter()
        for job in jobs:
            train(job, args.steps)
        sequential = time.perf_counter() - t0

        jobs = [make_job(1), make_job(2)]
        threads = [threading.Thread(target=train, args=(job, args.steps)) for job in jobs]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        threaded = time.perf_counter() - t0
    print(f"two trainings of {args.steps} steps (LSTM 64->128, N=32, T=100, BLAS threads=1)")
    print(f"  one after the other: {sequential:.3f} s")
    print(f"  in two threads:      {threaded:.3f} s")
    print(f"  speed-up:            {sequential / threaded:.2f}x  (2.00 = full overlap)")


if __name__ == "__main__":
    main()
