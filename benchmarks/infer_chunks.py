"""Inference with the gates buffer in chunks of steps against the whole
sequence, interleaved in one process: us per token (median over rounds)
for each chunk size, at each T, 1 thread.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/infer_chunks.py lstm 32,128,128 100,1000,10000 0,16,64,256

Arguments: cell, N,D,H, the lengths T, the chunk sizes (0: the whole
sequence, i.e. no chunks; rnnfast's defaults, `_core.infer_chunking()`,
are chunk_steps for long sequences and short_chunk_steps for shorter ones;
here both are set to the size measured).
A chunk size only applies when T > 2 * chunk; the size limit below which
rnnfast keeps the whole sequence (whole_max_bytes, long_whole_max_bytes)
is off here.
ROUNDS in the environment sets the rounds (5).
"""
import os
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import _core


def main(argv):
    if len(argv) != 5:
        sys.exit(__doc__)
    cell = argv[1]
    N, D, H = (int(v) for v in argv[2].split(","))
    lengths = [int(v) for v in argv[3].split(",")]
    chunks = [int(v) for v in argv[4].split(",")]
    rounds = int(os.environ.get("ROUNDS", "5"))
    cls = {"rnn": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU}[cell]
    net = cls(D, H, random_state=0).eval()
    rng = np.random.default_rng(0)
    default = _core.infer_chunking()
    _core.infer_chunking(whole_max_bytes=0, long_whole_max_bytes=0)
    try:
        with threadpool_limits(1):
            for T in lengths:
                xs = rng.standard_normal((N, T, D)).astype(np.float32)
                calls = max(1, int(0.2 / (N * T * 1e-6)))      # ~0.2 s at ~1 us a token
                per_token = {c: [] for c in chunks}
                for _ in range(rounds):
                    for c in chunks:
                        _core.infer_chunking(c if c > 0 else T, c if c > 0 else T)
                        net.forward(xs)
                        t0 = time.perf_counter()
                        for _ in range(calls):
                            net.forward(xs)
                        per_token[c].append((time.perf_counter() - t0) / calls / (N * T) * 1e6)
                print(f"{cell} N={N} D={D} H={H} T={T} us/token: " + "  ".join(
                    f"{'whole' if c == 0 else f'chunk {c}'} {statistics.median(per_token[c]):.3f}"
                    for c in chunks), flush=True)
    finally:
        _core.infer_chunking(*default)


if __name__ == "__main__":
    main(sys.argv)
