"""What mask_zero's reading costs.

Models with mask_zero=True on Keras-style 'pre'-padded ids (zeros first,
pad_sequences' default) against the same weights without masking on the
same sequences right-padded, given their lengths: the network's work is the
same, so the difference is the moving of each row's ids before its padding
(a stable argsort of an (N, T) mask and one gather) and, for a tagger, the
spreading of its outputs back to the original steps (and of the kept
steps' gradients to the moved ones).  A classifier's prediction, a tagger's
prediction and a tagger's training step (forward and backward); one
thread, alternating calls, medians.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/mask_zero_cost.py
"""
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from rnnfast.models import SequenceClassifier, SequenceTagger


def batches(N, T, V, rng):
    """(pre-padded ids, right-padded ids, lengths, pre-padded tags,
    right-padded tags; -1 where there is no token)."""
    lengths = rng.integers(10, T + 1, N)
    right, pre = np.zeros((N, T), np.int64), np.zeros((N, T), np.int64)
    tags_right, tags_pre = np.full((N, T), -1), np.full((N, T), -1)
    for i, n in enumerate(lengths):
        ids, tags = rng.integers(1, V, n), rng.integers(0, 5, n)
        right[i, :n], pre[i, T - n:] = ids, ids
        tags_right[i, :n], tags_pre[i, T - n:] = tags, tags
    return pre, right, lengths, tags_pre, tags_right


def twins(cls, n_out, V):
    """A mask_zero model and an unmasked one with its weights."""
    options = dict(vocab_size=V, embedding_size=64, hidden_size=128, random_state=0)
    masked, plain = cls(n_out, mask_zero=True, **options), cls(n_out, **options)
    for p, q in zip(plain.params, masked.params):
        p[...] = q
    return masked, plain


def timed(calls, rounds):
    """Median seconds of each call, the calls alternating."""
    times = [[] for _ in calls]
    for _ in range(rounds):
        for t, call in zip(times, calls):
            start = time.perf_counter()
            call()
            t.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main(N=256, T=100, V=10000, rounds=15):
    pre, right, lengths, tags_pre, tags_right = batches(N, T, V, np.random.default_rng(0))
    classifier, classifier_plain = twins(SequenceClassifier, 2, V)
    tagger, tagger_plain = twins(SequenceTagger, 5, V)
    classifier.eval(), classifier_plain.eval()
    np.testing.assert_allclose(classifier.predict_scores(pre),
                               classifier_plain.predict_scores(right, lengths),
                               rtol=1e-5, atol=1e-6)
    assert abs(tagger.forward(pre, tags_pre)
               - tagger_plain.forward(right, tags_right, lengths)) < 1e-4

    def step(model, *args):
        model.forward(*args)
        model.backward()
    cases = [("classifier predict", lambda: classifier.predict_scores(pre),
              lambda: classifier_plain.predict_scores(right, lengths)),
             ("tagger predict", lambda: tagger.predict_scores(pre),
              lambda: tagger_plain.predict_scores(right, lengths)),
             ("tagger training step", lambda: step(tagger, pre, tags_pre),
              lambda: step(tagger_plain, right, tags_right, lengths))]
    print(f"N={N} T={T} V={V}, H=128, 1 thread: mask_zero on pre-padded ids against "
          f"lengths on right-padded ones")
    with threadpool_limits(1):
        for name, masked, plain in cases:
            a, b = (t * 1e3 for t in timed([masked, plain], rounds))
            print(f"  {name:22s} {a:7.2f} ms against {b:7.2f} ms, ratio {a / b:.3f}")


if __name__ == "__main__":
    main()
