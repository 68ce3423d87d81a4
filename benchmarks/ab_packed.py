"""A/B of rnnfast's packed per-step kernel against BLAS, in one process.

The two variants of each case run interleaved (A..A B..B, rounds), switched
by rnnfast._core.use_packed_gemm, and the median over rounds of the per-round
ratio is printed (the ratio is what the noisy, shared machines give reliably).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        python benchmarks/ab_packed.py rnn,gru,lstm train,infer tiny,small,medium [rounds]

THR=2 runs at two threads (BLAS and rnnfast's step loops alike).  AB=dw
compares the parameter-gradient products alone: everything packed against
everything packed but dWx, dWh on BLAS (the column is still called "blas").
"""
import os
import statistics
import sys

from threadpoolctl import threadpool_info, threadpool_limits

from rnnfast import _core, bench


def main(argv):
    cells, modes, configs = (a.split(",") for a in argv[1:4])
    rounds = int(argv[4]) if len(argv) > 4 else 9
    threads = int(os.environ.get("THR", "1"))
    dw_only = os.environ.get("AB") == "dw"
    print("BLAS kernels:", [i.get("architecture") for i in threadpool_info()], "threads:", threads,
          "A/B of the dW products alone" if dw_only else "")
    with threadpool_limits(threads):
        for cell in cells:
            for mode in modes:
                for cfg in configs:
                    N, T, D, H = bench.CONFIGS[cfg]
                    call = bench.make_case("rnnfast", cell, mode, N, T, D, H)
                    calls = {"packed": lambda: (_core.use_packed_gemm(True), call()),
                             "blas": lambda: (_core.use_packed_gemm(dw_only, dw=False), call())}
                    t = bench.time_interleaved(calls, repeats=rounds, min_time=0.05)
                    ratio = statistics.median(b / a for a, b in zip(t["packed"], t["blas"]))
                    print(f"{cell:5s} {mode:5s} {cfg:15s} "
                          f"packed {1e3 * statistics.median(t['packed']):8.3f} ms  "
                          f"blas {1e3 * statistics.median(t['blas']):8.3f} ms  "
                          f"blas/packed {ratio:.3f}", flush=True)
    _core.use_packed_gemm(True)


if __name__ == "__main__":
    main(sys.argv)
