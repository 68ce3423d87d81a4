"""Time per token from T = 10 to T = 10,000, one thread, float32.

The four lengths run interleaved in rounds (each round times every T once,
about 50 ms of calls each), and the median over rounds is printed, with the
ratio of the slowest to the fastest length ("max/min").  Beside it, "per
round": each round's times divided by the same round's time at the length
with the lowest median, the median of those ratios over rounds for each
length, and their max/min: the issue's way of comparing (medians of ratios
measured side by side), which the machine's drift between rounds moves
less than a ratio of medians taken minutes apart.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        python benchmarks/time_per_token.py lstm,gru,rnn [train|infer]

NDH=N,D,H sets the batch and sizes (default 8,64,64); ROUNDS the rounds (7);
LENGTHS the lengths (default 10,100,1000,10000), e.g. LENGTHS=100,200,400,
1000,1024,2000 for how the time grows with the working set.
"""
import os
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

import rnnfast



def positive_ints(name, default, count=None):
    """The environment variable `name` (else `default`) as comma-separated
    integers >= 1, `count` of them when given; else exit naming it."""
    text = os.environ.get(name, default)
    values = text.split(",")
    if (not all(v.strip().isdigit() and int(v) > 0 for v in values)
            or (count is not None and len(values) != count)):
        want = f"{count} " if count else ""
        sys.exit(f"{name}: expected {want}comma-separated integers >= 1, got {text!r}")
    return tuple(int(v) for v in values)


LENGTHS = positive_ints("LENGTHS", "10,100,1000,10000")


def make_cases(cls, mode, N, D, H, lengths):
    """{T: (call, n)} for each length: a float32 network of class cls and
    its fixed-seed data, `call` one training step (mode "train") or
    inference forward, n the calls that take about 50 ms (after two
    calls: the buffers' first use)."""
    cases = {}
    for T in lengths:
        net = cls(D, H, dtype=np.float32, random_state=0)
        rng = np.random.default_rng(0)
        xs = rng.standard_normal((N, T, D)).astype(np.float32)
        dhs = rng.standard_normal((N, T, H)).astype(np.float32)
        if mode == "train":
            def call(net=net, xs=xs, dhs=dhs):
                net.forward(xs)
                net.backward(dhs)
        else:
            net.eval()

            def call(net=net, xs=xs):
                net.forward(xs)
        call()
        t0 = time.perf_counter()
        call()
        cases[T] = (call, max(1, int(0.05 / (time.perf_counter() - t0))))
    return cases


def main(argv):
    cells = argv[1].split(",") if len(argv) > 1 else ["lstm", "gru", "rnn"]
    mode = argv[2] if len(argv) > 2 else "train"
    if not set(cells) <= {"rnn", "lstm", "gru"} or mode not in ("train", "infer"):
        sys.exit(f"expected cells among rnn,lstm,gru and a mode train|infer, got "
                 f"{argv[1:3]}")
    N, D, H = positive_ints("NDH", "8,64,64", 3)
    rounds, = positive_ints("ROUNDS", "7", 1)
    with threadpool_limits(1):
        for cell in cells:
            cls = {"rnn": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU}[cell]
            cases = make_cases(cls, mode, N, D, H, LENGTHS)
            per_token = {T: [] for T in LENGTHS}
            for _ in range(rounds):
                for T in LENGTHS:
                    call, n = cases[T]
                    t0 = time.perf_counter()
                    for _ in range(n):
                        call()
                    per_token[T].append((time.perf_counter() - t0) / n / (N * T) * 1e6)
            med = [statistics.median(per_token[T]) for T in LENGTHS]
            ref = per_token[LENGTHS[med.index(min(med))]]
            paired = [statistics.median(a / b for a, b in zip(per_token[T], ref))
                      for T in LENGTHS]
            print(f"{mode} {cell} N={N} D={D} H={H} us/token: "
                  + " ".join(f"T={T}: {m:.3f}" for T, m in zip(LENGTHS, med))
                  + f"  max/min {max(med) / min(med):.2f}"
                  + f"  per round {max(paired) / min(paired):.2f} ("
                  + " ".join(f"{r:.3f}" for r in paired) + ")", flush=True)


if __name__ == "__main__":
    main(sys.argv)
