"""A/B of a switch of the packed kernel's choices, in one process,
interleaved turn by turn (benchmarks/common.py, switch_ab), on whole calls:

    segments  the backward's GEMV by segments of K against one sum over K
              (_core.use_gemv_segments; docs/performance.md item 128)
    groups    the AVX-512 GEMV in groups of eight panels always, against
              the default, which takes groups of four where a 512-bit FMA
              runs as two halves (_core.use_gemv_groups_of_8; item 129)
    half      the last panel of a ragged N on a whole panel's tile against
              the half-panel tiles where it has at most 8 columns
              (_core.use_half_panels; item 130)
    dgemv     float64: a batch of one's products on the one-row tiles
              against their GEMV (_core.use_dgemv; item 154)
    wide      the AVX2-width tiles (16 columns) against the AVX-512 wide
              tiles (32 columns; _core.use_wide_tiles; items 39, 159)
    narrow    LSTM: an input of D <= H/2 projected for all steps first
              against taken into each step's product
              (_core.use_narrow_inputs; item 168)
    repack    inference: the weights packed in full into any buffer
              against into the buffer that packed them last, storing only
              what changed (_core.use_repack; item 172)
    tall      the AVX-512 two-panel tiles at 8 rows at most against 12
              (_core.use_tall_tiles; item 185)
    prefetch  the step loops' rows never prefetched against one step ahead
              in long calls (_core.use_prefetch; items 60, 186)
    align     the scratch sets' buffers (gates, saved states) where np.empty
              puts them against on 64-byte lines
              (_core.use_aligned_scratch; item 187)
    cols      forward step loops on several threads split by batch rows
              against by columns of their products wherever the pool can
              (_core.use_col_split 0 / 2; item 191; THREADS=2)
    colrule   by rows against the default rule (_core.use_col_split 0 / 1)

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/ab_kernel_switches.py groups lstm:train:tiny lstm:infer:1,1,256,256 [rounds]

A case is cell:mode:config, config a name of rnnfast.bench.CONFIGS or
N,T,D,H.  One thread (THREADS=2 in the environment for two), float32
(dgemv, or DTYPE=float64 in the environment: float64); rounds default 41, each turn ~2 ms of calls.  Prints each case's
medians and the median per-round ratio (before / after, > 1: the default
is faster) with its quartiles.
"""
import os
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from rnnfast import _core, bench

try:                                   # imported by asv (benchmarks.<name>)
    from .common import switch_ab
except ImportError:                    # run as a script
    from common import switch_ab

SWITCHES = {
    "segments": (_core.use_gemv_segments, ("one sum", "segments")),
    "groups": (lambda on: _core.use_gemv_groups_of_8(None if on else True),
               ("groups of 8", "default")),
    "half": (_core.use_half_panels, ("whole panel", "half panel")),
    "dgemv": (_core.use_dgemv, ("one-row tiles", "GEMV")),
    "wide": (_core.use_wide_tiles, ("16 columns", "32 columns")),
    "narrow": (_core.use_narrow_inputs, ("projected", "in the step")),
    "repack": (_core.use_repack, ("full pack", "repack")),
    "tall": (_core.use_tall_tiles, ("8 rows", "12 rows")),
    "prefetch": (_core.use_prefetch, ("none", "prefetch")),
    "align": (_core.use_aligned_scratch, ("np.empty", "64-byte")),
    "cols": (lambda on: _core.use_col_split(2 if on else 0), ("by rows", "by columns")),
    "colrule": (lambda on: _core.use_col_split(1 if on else 0), ("by rows", "the rule")),
}


def parse_case(text):
    try:
        cell, mode, config = text.split(":")
        shape = (bench.CONFIGS[config] if config in bench.CONFIGS
                 else tuple(int(v) for v in config.split(",")))
    except ValueError:
        cell = mode = None
        shape = ()
    if (cell not in ("rnn", "lstm", "gru") or mode not in ("train", "infer") or len(shape) != 4
            or min(shape) < 1):
        raise SystemExit(f"ab_kernel_switches.py: case {text!r}: expected cell:mode:config, cell "
                         f"rnn, lstm or gru, mode train or infer, config a name of "
                         f"{sorted(bench.CONFIGS)} or N,T,D,H")
    return cell, mode, shape


def main(argv):
    if len(argv) < 3 or argv[1] not in SWITCHES:
        raise SystemExit(__doc__)
    switch, labels = SWITCHES[argv[1]]
    rounds = int(argv[-1]) if argv[-1].isdigit() else 41
    cases = [parse_case(c) for c in argv[2:] if not c.isdigit()]
    if not _core.use_wide_tiles(True) and argv[1] == "groups":
        print("(no AVX-512 tiles here: both sides run the AVX2 GEMV)")
    with threadpool_limits(int(os.environ.get("THREADS", "1"))):
        for cell, mode, (N, T, D, H) in cases:
            dtype = (np.float64 if argv[1] == "dgemv" or os.environ.get("DTYPE") == "float64"
                     else np.float32)
            call = bench.make_case("rnnfast", cell, mode, N, T, D, H, dtype=dtype)
            call()
            t0 = time.perf_counter()
            call()
            n = max(1, int(2e-3 / max(time.perf_counter() - t0, 1e-7)))   # ~2 ms a turn
            line = switch_ab(lambda: [call() for _ in range(n)], switch, labels, rounds)
            print(f"{cell} {mode} {N},{T},{D},{H} (x{n} a turn): {line}", flush=True)


if __name__ == "__main__":
    main(sys.argv)
