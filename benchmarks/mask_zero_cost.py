"""What mask_zero's reading costs a prediction.

A SequenceClassifier with mask_zero=True on Keras-style 'pre'-padded ids
(zeros first, pad_sequences' default) against the same weights without
masking on the same sequences right-padded, given their lengths: the work
the network does is the same, so the difference is the moving of each
row's ids before its padding (a stable argsort of an (N, T) mask and one
gather).  One thread, 15 alternating calls each, medians.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/mask_zero_cost.py
"""
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from rnnfast.models import SequenceClassifier


def main(N=256, T=100, V=10000, rounds=15):
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, T + 1, N)
    right, pre = np.zeros((N, T), np.int64), np.zeros((N, T), np.int64)
    for i, n in enumerate(lengths):
        ids = rng.integers(1, V, n)
        right[i, :n] = ids
        pre[i, T - n:] = ids
    options = dict(vocab_size=V, embedding_size=64, hidden_size=128, random_state=0)
    masked = SequenceClassifier(2, mask_zero=True, **options).eval()
    plain = SequenceClassifier(2, **options).eval()
    for p, q in zip(plain.params, masked.params):
        p[...] = q
    np.testing.assert_allclose(masked.predict_scores(pre), plain.predict_scores(right, lengths),
                               rtol=1e-5, atol=1e-6)
    times = {"mask_zero": [], "lengths": []}
    with threadpool_limits(1):
        for _ in range(rounds):
            for name, call in (("mask_zero", lambda: masked.predict_scores(pre)),
                               ("lengths", lambda: plain.predict_scores(right, lengths))):
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    a, b = (statistics.median(times[k]) * 1e3 for k in ("mask_zero", "lengths"))
    print(f"N={N} T={T} V={V}: mask_zero on pre-padded ids {a:.2f} ms, the same sequences "
          f"with lengths {b:.2f} ms; ratio {a / b:.3f}")


if __name__ == "__main__":
    main()
