"""An estimator's training batch and its parts, at a scikit-learn user's
small sizes (RNNClassifier's loop: N = 32 rows a batch, T = 30 steps, D = 8
features, H = 32 units, 2 classes, Adam, alpha = 1e-4, clip_norm = 5),
1 thread, median us of

  - the model's forward (network, head, loss) and backward,
  - the L2 term (alpha) added to the grads and to the loss, as the
    estimator runs it and as NumPy's lines (the code before item 149),
  - clip_grads over the model's grads,
  - Adam's update,
  - a batch of RNNClassifier's own training loop (_fit_stochastic), as the
    time of an epoch over 8 batches (256 samples) over 8, so that a batch
    carries its share of the epoch's own costs,
  - PyTorch's same step (nn.LSTM/GRU, Linear on the last h, cross-entropy,
    Adam with the L2 as weight_decay, clip_grad_norm_), when installed.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/estimator_step_parts.py [cell] [H]

cell: lstm (default), gru or rnn; H: hidden units (32).  docs/performance.md
items 149 and 151 have the figures before and after the estimators' step was
trimmed.
"""
import statistics
import sys
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from rnnfast.models import SequenceClassifier
from rnnfast.optim import Adam, _add_scaled, _sum_squares, clip_grads
from rnnfast.sklearn import RNNClassifier

N, T, D = 32, 30, 8
ALPHA, CLIP, LR = 1e-4, 5.0, 0.01


def median_us(fn, calls=200, rounds=9):
    for _ in range(calls // 4):
        fn()
    per_call = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        per_call.append((time.perf_counter() - t0) / calls)
    return statistics.median(per_call) * 1e6


def estimator_batch(cell, H, X, y):
    """A batch of RNNClassifier's loop: one epoch of _fit_stochastic over
    X's 256 samples (8 batches of N), less the fit's set-up (a fitted
    estimator's loop re-entered with incremental=True), divided by 8."""
    est = RNNClassifier(cell=cell, hidden_size=H, alpha=ALPHA, clip_norm=CLIP,
                        learning_rate_init=LR, batch_size=N, random_state=0,
                        max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    from rnnfast.sklearn import _check_X
    batch = _check_X(est, X, np.float32, reset=False)
    y_enc = np.searchsorted(est.classes_, y)
    idx = np.arange(len(y))
    batches = len(y) // N

    def run():
        est._fit_stochastic(batch, y_enc, True, None, idx, None)
    return run, batches


def main(cell="lstm", H=32):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, T, D)).astype(np.float32)
    y = rng.integers(0, 2, N)
    model = SequenceClassifier(2, input_size=D, cell=cell, hidden_size=H, random_state=0)
    opt = Adam(lr=LR)
    model.forward(X, y)
    model.backward()

    def forward():
        model.forward(X, y)

    def forward_backward():
        model.forward(X, y)
        model.backward()

    def l2_numpy():
        # the estimator's lines before item 149
        decay = ALPHA / N
        for p, g in zip(model.params, model.grads):
            g += p.dtype.type(decay) * p
        return 0.5 * ALPHA * sum(float(np.square(p, dtype=np.float64).sum())
                                 for p in model.params)

    def l2():
        _add_scaled(model.grads, model.params, ALPHA / N)
        return 0.5 * ALPHA * _sum_squares(model.params)

    def clip():
        clip_grads(model.grads, CLIP)

    def adam():
        opt.update(model.params, model.grads)

    X256 = rng.standard_normal((8 * N, T, D)).astype(np.float32)
    epoch, batches = estimator_batch(cell, H, X256, rng.integers(0, 2, 8 * N))
    rows = [("forward", forward, 1), ("forward + backward", forward_backward, 1),
            ("L2 term, NumPy", l2_numpy, 1), ("L2 term (alpha)", l2, 1),
            ("clip_grads", clip, 1), ("Adam update", adam, 1),
            ("estimator batch", epoch, batches)]
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(1)
        torch.manual_seed(0)
        cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        net, fc = cls(D, H, batch_first=True), torch.nn.Linear(H, 2)
        params = list(net.parameters()) + list(fc.parameters())
        topt = torch.optim.Adam(params, lr=LR, weight_decay=ALPHA / N)
        tx, ty = torch.from_numpy(X), torch.from_numpy(y)

        def torch_step():
            topt.zero_grad()
            _, state = net(tx)
            h = state[0] if cell == "lstm" else state
            loss = torch.nn.functional.cross_entropy(fc(h[-1]), ty)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, CLIP)
            topt.step()
        rows.append(("PyTorch's step", torch_step, 1))
    print(f"{cell}, N={N} T={T} D={D} H={H}, 1 thread: median us")
    with threadpool_limits(1):
        for name, fn, per in rows:
            print(f"  {name:20s} {median_us(fn, calls=max(10, 200 // per)) / per:9.1f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "lstm",
         int(sys.argv[2]) if len(sys.argv) > 2 else 32)
