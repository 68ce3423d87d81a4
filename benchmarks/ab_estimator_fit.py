"""A/B of two builds of rnnfast on a scikit-learn user's fit: RNNClassifier
(and RNNRegressor) with its defaults (Adam, alpha = 1e-4, clip_norm = 5,
batches of 32) on small synthetic sequences, 1 thread.  Each round runs one
process per build, alternating; each process times its fits (median of 3
after one untimed) and the median of the per-round ratios old/new is
printed with the medians.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/ab_estimator_fit.py OLD_TREE NEW_TREE [rounds] [kinds]

kinds: a comma-separated choice of classifier, regressor, digits (all).

A worktree of an older commit serves as OLD_TREE:
    git worktree add /tmp/old <commit> && (cd /tmp/old && python setup.py build_ext --inplace)
Cases: (estimator, cell, samples, T, D, hidden units, epochs); "digits" is
docs/sklearn.md's real-data example (scikit-learn's digits as 8 steps of 8
pixels, a GRU of 64, 20 epochs, 5-fold cross_val_score: one run a process,
its mean accuracy as the score).
"""
import statistics
import subprocess
import sys

CASES = [("classifier", "lstm", 2000, 30, 8, 32, 3),
         ("classifier", "gru", 2000, 30, 8, 32, 3),
         ("classifier", "rnn", 2000, 30, 8, 32, 3),
         ("classifier", "lstm", 256, 20, 4, 32, 5),    # benchmarks/bench_recurrent.py's Estimator
         ("regressor", "rnn", 2000, 30, 8, 32, 3),
         ("digits", "gru", 1797, 8, 8, 64, 20)]

CHILD = r"""
import sys, time, warnings
sys.path.insert(0, sys.argv[1])
import numpy as np
import rnnfast
assert rnnfast.__file__.startswith(sys.argv[1]), rnnfast.__file__
from threadpoolctl import threadpool_limits
from rnnfast.sklearn import RNNClassifier, RNNRegressor
threadpool_limits(1)
warnings.simplefilter("ignore")
kind, cell = sys.argv[2:4]
n, T, D, H, epochs = (int(v) for v in sys.argv[4:9])
if kind == "digits":
    from sklearn.datasets import load_digits
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler
    X, y = load_digits(return_X_y=True)
    pipe = make_pipeline(StandardScaler(),
                         FunctionTransformer(np.reshape, kw_args={"shape": (-1, T, D)}),
                         RNNClassifier(cell=cell, hidden_size=H, max_iter=epochs, random_state=0))
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    t0 = time.perf_counter()
    scores = cross_val_score(pipe, X, y, cv=cv)
    print(time.perf_counter() - t0, scores.mean())
    sys.exit()
rng = np.random.default_rng(0)
X = rng.standard_normal((n, T, D)).astype(np.float32)
s = X[:, :, 0].sum(axis=1)
make = RNNClassifier if kind == "classifier" else RNNRegressor
y = (s > 0).astype(int) if kind == "classifier" else s
times = []
for i in range(4):
    est = make(cell=cell, hidden_size=H, max_iter=epochs, random_state=0, n_iter_no_change=10**6)
    t0 = time.perf_counter()
    est.fit(X, y)
    times.append(time.perf_counter() - t0)
print(sorted(times[1:])[1], est.score(X, y))
"""


def run(tree, case):
    out = subprocess.run([sys.executable, "-c", CHILD, tree] + [str(v) for v in case],
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def main(old, new, rounds=5, kinds=None):
    for case in CASES:
        if kinds is not None and case[0] not in kinds:
            continue
        times = {old: [], new: []}
        scores = {}
        for _ in range(rounds):
            for tree in (old, new):
                t, scores[tree] = run(tree, case)
                times[tree].append(t)
        ratios = [a / b for a, b in zip(times[old], times[new])]
        print(f"{case[0]:10s} {case[1]:4s} n={case[2]} T={case[3]} D={case[4]} H={case[5]} "
              f"epochs={case[6]}: old {statistics.median(times[old]) * 1e3:7.1f} ms, new "
              f"{statistics.median(times[new]) * 1e3:7.1f} ms, old/new "
              f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}); "
              f"score old {scores[old]:.4f} new {scores[new]:.4f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 5,
         sys.argv[4].split(",") if len(sys.argv) > 4 else None)
