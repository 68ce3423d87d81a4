"""Which rows of `rnnfast bench --markdown` a machine's FMA ceiling rules out.

`rnnfast bench` prints, for each row, the ratio rnnfast would reach at 100 %
of OpenBLAS's measured sgemm peak ("bound": the measured ratio scaled from
rnnfast's time to the time of its GEMM flops at that peak).  A product can beat OpenBLAS,
but not the cores' FMA peak, which benchmarks/c/fma_peak.c measures.  For
each row not met in every run given, this prints the measured ratios and
the bound at the FMA peak: below the target in a run means that run's
PyTorch time is out of reach on these cores whatever the kernels do.

    gcc -O2 -mavx512f -mfma -pthread -o /tmp/fma_peak benchmarks/c/fma_peak.c
    /tmp/fma_peak        # GFLOP/s at 1 and 2 threads
    python benchmarks/fma_bound.py 116 230 run1.md run2.md
"""
import sys

from rnnfast.bench import COLUMNS      # the table's column names


def read_rows(path):
    """{(cell, mode, config, threads): (ratio, torch ms, GFLOP a call, target,
    verdict, rnnfast ms)} of one bench table in Markdown; columns found by
    name."""
    rows, at = {}, None
    with open(path) as f:
        for line in f:
            c = [x.strip() for x in line.split("|")[1:-1]]
            if tuple(c) == COLUMNS:
                at = {name: i for i, name in enumerate(COLUMNS)}
                continue
            if at is None or len(c) != len(COLUMNS) or c[0] == "---":
                continue
            if "-" in (c[at["torch ms"]], c[at["target"]]):
                continue            # no PyTorch time or no target: nothing to bound
            ms, gflops = float(c[at["rnnfast ms"]]), float(c[at["GFLOP/s"]])
            rows[c[0], c[1], c[2], int(c[at["thr"]])] = (
                float(c[at["torch/rnnfast"]]), float(c[at["torch ms"]]),
                gflops * ms * 1e-3, float(c[at["target"]]), c[at["verdict"]], ms)
    return rows


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    try:
        peak = {1: float(argv[1]), 2: float(argv[2])}
    except ValueError:
        sys.exit(f"expected the FMA peaks (GFLOP/s) at 1 and 2 threads, got {argv[1:3]}")
    runs = [read_rows(path) for path in argv[3:]]
    if not all(runs):
        sys.exit("a file holds no bench table (rnnfast bench --markdown)")
    print("| cell | mode | config | thr | ratio (runs) | bound at FMA peak (runs) "
          "| target | verdicts |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for key in runs[0]:
        found = [run[key] for run in runs if key in run]
        if all(row[4] == "met" for row in found):
            continue
        # The time at the FMA peak is GFLOP / peak; the paired ratio scaled
        # from rnnfast's time to it is the best ratio these cores allow (as
        # rnnfast.bench's own bound, at the sgemm peak).
        bounds = [ratio * ms * 1e-3 / (gflop / peak[key[3]])
                  for ratio, _, gflop, _, _, ms in found]
        print(f"| {' | '.join(map(str, key))} "
              f"| {' / '.join(f'{row[0]:.2f}' for row in found)} "
              f"| {' / '.join(f'{b:.2f}' for b in bounds)} | {found[0][3]:.1f} "
              f"| {' / '.join(row[4] for row in found)} |")


if __name__ == "__main__":
    main(sys.argv)
