"""A/B of two builds of rnnfast on DLFS2's Rnnlm training step
(benchmarks/dlfs2_rnnlm_vs_torch.py's model: V = 10,000, embedding 100,
one LSTM of 100, N = 20, T = 35, SGD with global-norm clip 0.25, float32,
the Trainer's train_step on random ids).  Each round runs one process per
build, alternating which goes first; each process takes 5 untimed steps,
then prints the median of `steps` timed steps (wall clock).  Printed: each
round's pair, the median of each side, and the median of the per-round
ratios old/new.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/ab_lm_builds.py OLD_TREE NEW_TREE [rounds] [steps] [threads]

rounds (9), steps (40) a process, threads (1).  A worktree of an older
commit serves as OLD_TREE:
    git worktree add /tmp/old <commit> && (cd /tmp/old && python setup.py build_ext --inplace)
"""
import json
import os
import statistics
import subprocess
import sys

CHILD = r'''
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
import rnnfast
assert rnnfast.__file__.startswith(sys.argv[1]), rnnfast.__file__
from threadpoolctl import threadpool_limits
from rnnfast.models import RnnLM
from rnnfast.optim import SGD
from rnnfast.trainer import Trainer
V, D, H, N, T = 10_000, 100, 100, 20, 35
corpus = np.random.default_rng(0).integers(0, V, N * T * 50 + 1)
model = RnnLM(V, D, H, random_state=0)
trainer = Trainer(model, SGD(lr=20.0), clip_norm=0.25, carry_state=True, verbose=False)
trainer.fit(corpus, epochs=1, batch_size=N, time_size=T, max_batches=1)
batcher = trainer.batcher
with threadpool_limits(int(sys.argv[3])):
    for _ in range(5):
        trainer.train_step(batcher.next_batch())
    times = []
    for _ in range(int(sys.argv[2])):
        batch = batcher.next_batch()
        t0 = time.perf_counter()
        trainer.train_step(batch)
        times.append(time.perf_counter() - t0)
print(json.dumps(statistics.median(times) * 1e3))
'''


def run(tree, steps, threads):
    out = subprocess.run([sys.executable, "-c", CHILD, tree, str(steps), str(threads)],
                         capture_output=True, text=True, cwd="/")
    if out.returncode:
        sys.exit(f"the process of {tree} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    old, new = (os.path.abspath(tree) for tree in sys.argv[1:3])
    for name, tree in (("OLD_TREE", old), ("NEW_TREE", new)):
        if not os.path.isdir(os.path.join(tree, "rnnfast")):
            sys.exit(f"{name}: {tree} is not a source tree of rnnfast (no rnnfast/ in it)")
    given = [int(v) for v in sys.argv[3:6]]
    rounds, steps, threads = given + [9, 40, 1][len(given):]
    ratios, t_old, t_new = [], [], []
    for r in range(rounds):
        if r % 2:
            b = run(new, steps, threads)
            a = run(old, steps, threads)
        else:
            a = run(old, steps, threads)
            b = run(new, steps, threads)
        t_old.append(a)
        t_new.append(b)
        ratios.append(a / b)
        print(f"round {r}: old {a:.2f} ms, new {b:.2f} ms, old/new {a / b:.4f}", flush=True)
    print(f"{threads} thread(s): median old {statistics.median(t_old):.2f} ms, new "
          f"{statistics.median(t_new):.2f} ms a step; median of old/new "
          f"{statistics.median(ratios):.4f}")


if __name__ == "__main__":
    main()
