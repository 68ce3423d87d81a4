"""Instructions a training call (forward + backward) executes, or with
MODE=infer an inference forward (the network in eval mode), counted by
valgrind's callgrind: the fixed cost of a call in Python, the kernel entry
and packing, without the machine's timing noise (the count is the same
whatever else runs).  Two runs of the same script, `few` and `many` calls,
and the difference divided by `many - few`, so that start-up and imports
cancel out.  BLAS and the step loops run on one thread
(OPENBLAS_NUM_THREADS=1): an OpenBLAS worker spinning under valgrind added
30-40 k instructions a call at random.

    python benchmarks/call_instructions.py TREE lstm 1,1,64,64 [few many]

TREE is a source tree built in place (`python setup.py build_ext --inplace`,
e.g. a `git worktree` of an older commit, as for benchmarks/ab_builds.py).
Needs valgrind; takes a minute or two at N = 1, T = 1.
"""
import os
import re
import subprocess
import sys

CHILD = r"""
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import rnnfast
assert rnnfast.__file__.startswith(sys.argv[1]), rnnfast.__file__
cell, shape, calls = sys.argv[2], sys.argv[3], int(sys.argv[4])
N, T, D, H = (int(v) for v in shape.split(","))
rng = np.random.default_rng(0)
xs = rng.standard_normal((N, T, D)).astype(np.float32)
dhs = rng.standard_normal((N, T, H)).astype(np.float32)
net = {"lstm": rnnfast.LSTM, "gru": rnnfast.GRU, "rnn": rnnfast.RNN}[cell](
    D, H, random_state=0)
train = sys.argv[5] == "train"
net.train(train)
for _ in range(calls):
    net.forward(xs)
    if train:
        net.backward(dhs)
"""


def instructions(tree, cell, shape, calls, mode):
    # A fixed hash seed: with random ones, the dicts' layouts and probes
    # moved the count by +-3 k instructions a call from run to run.
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONHASHSEED="0")
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, "-c", CHILD, os.path.abspath(tree), cell, shape, str(calls), mode],
        capture_output=True, text=True, env=env, check=True).stderr
    match = re.search(r"Collected : ([\d,]+)", out)
    if match is None:
        raise SystemExit(f"no callgrind total in:\n{out[-2000:]}")
    return int(match.group(1).replace(",", ""))


def main(argv):
    if len(argv) not in (3, 5):
        raise SystemExit(__doc__)
    tree, cell, shape = argv[:3]
    few, many = (int(v) for v in argv[3:5]) if len(argv) == 5 else (200, 1200)
    if not 0 <= few < many:
        raise SystemExit(f"few, many: expected 0 <= few < many, got {few}, {many}")
    mode = os.environ.get("MODE", "train")
    if mode not in ("train", "infer"):
        raise SystemExit(f"MODE: expected train or infer, got {mode!r}")
    a = instructions(tree, cell, shape, few, mode)
    b = instructions(tree, cell, shape, many, mode)
    print(f"{tree} {cell} {shape} {mode}: {(b - a) / (many - few):,.0f} instructions a call")


if __name__ == "__main__":
    main(sys.argv[1:])
