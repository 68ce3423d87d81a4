"""The language model's sampling by inverse CDF, compiled
(rnnfast._rnn.inverse_cdf_rows; rnnfast.models.lm._sample): the same ids,
bitwise, as NumPy's cumulative sum and count over it, for every row a
sampler can meet (zeros of skipped tokens, ties, all-zero and NaN rows,
draws at 0 and just under 1), and shapes that disagree refused by name."""
import numpy as np
import pytest

from rnnfast._rnn import inverse_cdf_rows
from rnnfast.models import lm as lm_module


def numpy_inverse_cdf(p, r):
    """What _sample computed before: np.cumsum, then the count of c <= u."""
    c = np.cumsum(p, axis=1)
    return np.minimum((c <= r[:, None] * c[:, -1:]).sum(axis=1), p.shape[1] - 1)


def compiled_inverse_cdf(p, r):
    out = np.empty(p.shape[0], np.intp)
    inverse_cdf_rows(p, r, out)
    return out


@pytest.mark.parametrize("V", [1, 2, 7, 64, 1000, 10007])
def test_the_same_ids_as_numpys_cumulative_sum(V):
    rng = np.random.default_rng(V)
    R = 200
    p = np.exp(rng.standard_normal((R, V)) * 3)
    p[rng.random((R, V)) < 0.3] = 0.0                   # skipped or cut tokens
    p[1] = 0.0                                          # all cut: no mass at all
    p[2] = 1.0                                          # ties everywhere
    p[3, :] = 0.0
    p[3, -1] = 1e-300                                   # the mass in the last one
    p[4] = np.nan                                       # a NaN logit's row
    p[5, V // 2] = np.nan
    r = rng.random(R)
    r[:8] = [0.0, np.nextafter(1.0, 0.0), 0.5, np.nextafter(1.0, 0.0), 0.3, 0.9, 0.0,
             np.nextafter(1.0, 0.0)]
    np.testing.assert_array_equal(compiled_inverse_cdf(p, r), numpy_inverse_cdf(p, r))


def test_no_rows_and_shapes_that_disagree():
    assert compiled_inverse_cdf(np.zeros((0, 5)), np.zeros(0)).shape == (0,)
    out = np.empty(3, np.intp)
    with pytest.raises(ValueError, match=r"shapes p \(3, 5\), r \(2,\), out \(3,\)"):
        inverse_cdf_rows(np.ones((3, 5)), np.zeros(2), out)
    with pytest.raises(ValueError, match=r"out \(2,\)"):
        inverse_cdf_rows(np.ones((3, 5)), np.zeros(3), np.empty(2, np.intp))
    with pytest.raises(ValueError, match="V >= 1"):
        inverse_cdf_rows(np.ones((3, 0)), np.zeros(3), out)


@pytest.mark.parametrize("options", [dict(temperature=1.0), dict(temperature=0.7, top_k=5),
                                     dict(temperature=1.3, top_p=0.8),
                                     dict(temperature=1e-3, top_k=3, top_p=0.9)])
def test_sample_draws_what_the_numpy_sampler_drew(options, monkeypatch):
    logits = np.random.default_rng(0).standard_normal((64, 500)).astype(np.float32) * 4
    skip = np.array([0, 7, 499])
    args = (options.get("temperature"), options.get("top_k"), skip)

    def draw():
        return lm_module._sample(logits, *args, np.random.default_rng(9), options.get("top_p"))

    ids = draw()
    assert not np.isin(ids, skip).any()

    def numpy_rows(p, r, out):
        out[...] = numpy_inverse_cdf(p, r)

    monkeypatch.setattr(lm_module, "inverse_cdf_rows", numpy_rows)
    np.testing.assert_array_equal(ids, draw())
