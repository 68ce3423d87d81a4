"""Peak memory of one training step, rnnfast vs PyTorch, each in a fresh
process: the rise of the peak resident set (ru_maxrss) over the first
training step, after inputs and model exist.

    python benchmarks/step_peak_memory.py [config]     # default: large
"""
import json
import subprocess
import sys

CHILD = r"""
import resource, sys, json
import numpy as np
from threadpoolctl import threadpool_limits
from rnnfast import bench
impl, cell, cfg = sys.argv[1:4]
N, T, D, H = bench.CONFIGS[cfg]
with threadpool_limits(1):
    call = bench.make_case(impl, cell, "train", N, T, D, H)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    call()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps((after - before) / 1024))
"""


def main(argv):
    cfg = argv[1] if len(argv) > 1 else "large"
    print(f"peak RSS rise over one training step, configuration {cfg} (MB)")
    print("cell  rnnfast  torch")
    for cell in ("lstm", "gru", "rnn"):
        mb = {}
        for impl in ("rnnfast", "torch"):
            out = subprocess.run([sys.executable, "-c", CHILD, impl, cell, cfg],
                                 capture_output=True, text=True, check=True).stdout
            mb[impl] = json.loads(out.strip().splitlines()[-1])
        print(f"{cell:5s} {mb['rnnfast']:8.1f} {mb['torch']:6.1f}")


if __name__ == "__main__":
    main(sys.argv)
