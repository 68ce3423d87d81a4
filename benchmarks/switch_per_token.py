"""One of rnnfast._core's switches off against on, interleaved in one
process (1 thread unless THREADS says): us a token (median over rounds)
of a network's training step (forward + backward) or inference forward,
at several lengths.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/switch_per_token.py prefetch lstm,gru,rnn [train|infer]

SWITCH is the name after `use_` in rnnfast._core (prefetch, grad_chunks,
unpacked_b, wide_tiles, ...).  NDH=N,D,H sets the sizes (8,64,64), LENGTHS
the lengths (100,1000,10000), ROUNDS the rounds (7), THREADS the threads
(1).  Each round times every length
with the switch off, then on (about 50 ms of calls each); the ratio off/on
above 1 means the switch's default (on) is faster.
"""
import statistics
import sys
import time

from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import _core

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from time_per_token import make_cases, positive_ints  # noqa: E402


def main(argv):
    if len(argv) < 2 or not hasattr(_core, "use_" + argv[1]):
        sys.exit("expected a switch of rnnfast._core (use_<switch>), e.g. prefetch")
    switch = getattr(_core, "use_" + argv[1])
    cells = argv[2].split(",") if len(argv) > 2 else ["lstm", "gru", "rnn"]
    mode = argv[3] if len(argv) > 3 else "train"
    if not set(cells) <= {"rnn", "lstm", "gru"} or mode not in ("train", "infer"):
        sys.exit(f"expected cells among rnn,lstm,gru and a mode train|infer, got {argv[2:4]}")
    N, D, H = positive_ints("NDH", "8,64,64", 3)
    lengths = positive_ints("LENGTHS", "100,1000,10000")
    rounds, = positive_ints("ROUNDS", "7", 1)
    threads, = positive_ints("THREADS", "1", 1)
    with threadpool_limits(threads):
        for cell in cells:
            cls = {"rnn": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU}[cell]
            cases = make_cases(cls, mode, N, D, H, lengths)
            times = {(T, on): [] for T in lengths for on in (False, True)}
            try:
                for _ in range(rounds):
                    for T in lengths:
                        call, n = cases[T]
                        for on in (False, True):
                            switch(on)
                            t0 = time.perf_counter()
                            for _ in range(n):
                                call()
                            times[T, on].append((time.perf_counter() - t0) / n / (N * T) * 1e6)
            finally:
                switch(True)
            for T in lengths:
                off, on = (statistics.median(times[T, s]) for s in (False, True))
                print(f"{mode} {cell} N={N} D={D} H={H} T={T}: {argv[1]} off {off:.3f} "
                      f"on {on:.3f} us/token, off/on {off / on:.3f}", flush=True)


if __name__ == "__main__":
    main(sys.argv)
