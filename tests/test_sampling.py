"""The language model's sampling, compiled (rnnfast._rnn.inverse_cdf_rows
and scaled_logits_rows; rnnfast.models.lm._sample): the same ids,
bitwise, as NumPy's cumulative sum and count over it, for every row a
sampler can meet (zeros of skipped tokens, ties, all-zero and NaN rows,
draws at 0 and just under 1); the same scaled logits as NumPy's cast,
max, difference and quotient; shapes that disagree refused by name."""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from rnnfast._rnn import inverse_cdf_rows, nucleus_rows, scaled_logits_rows, top_k_rows
from rnnfast.models import lm as lm_module


def numpy_inverse_cdf(p, r):
    """What _sample computed before: np.cumsum, then the count of c <= u."""
    c = np.cumsum(p, axis=1)
    with np.errstate(invalid="ignore"):             # 0 * inf: a NaN u
        return np.minimum((c <= r[:, None] * c[:, -1:]).sum(axis=1), p.shape[1] - 1)


def compiled_inverse_cdf(p, r):
    out = np.empty(p.shape[0], np.intp)
    inverse_cdf_rows(p, r, out)
    return out


@pytest.mark.parametrize("threads", [1, 2])           # 2: rows split where V > 1000
@pytest.mark.parametrize("V", [1, 2, 7, 64, 1000, 10007])
def test_the_same_ids_as_numpys_cumulative_sum(V, threads):
    rng = np.random.default_rng(V)
    R = 203                     # 25 groups of 8 rows (a pass's lanes) and 3 more
    p = np.exp(rng.standard_normal((R, V)) * 3)
    p[rng.random((R, V)) < 0.3] = 0.0                   # skipped or cut tokens
    for at in (0, 9, 196):      # in the first group, the middle, over the last and past it
        p[at + 1] = 0.0                                 # all cut: no mass at all
        p[at + 2] = 1.0                                 # ties everywhere
        p[at + 3, :] = 0.0
        p[at + 3, -1] = 1e-300                          # the mass in the last one
        p[at + 4] = np.nan                              # a NaN logit's row
        p[at + 5, V // 2] = np.nan
        p[at + 6, V // 3] = np.inf                      # an overflowed exp: u = inf
    r = rng.random(R)
    for at in (0, 195):
        r[at:at + 8] = [0.0, np.nextafter(1.0, 0.0), 0.5, np.nextafter(1.0, 0.0), 0.3, 0.9,
                        0.0, np.nextafter(1.0, 0.0)]
    with threadpool_limits(threads):
        ids = compiled_inverse_cdf(p, r)
    np.testing.assert_array_equal(ids, numpy_inverse_cdf(p, r))


def test_no_rows_and_shapes_that_disagree():
    assert compiled_inverse_cdf(np.zeros((0, 5)), np.zeros(0)).shape == (0,)
    out = np.empty(3, np.intp)
    with pytest.raises(ValueError, match=r"shapes p \(3, 5\), r \(2,\), out \(3,\)"):
        inverse_cdf_rows(np.ones((3, 5)), np.zeros(2), out)
    with pytest.raises(ValueError, match=r"out \(2,\)"):
        inverse_cdf_rows(np.ones((3, 5)), np.zeros(3), np.empty(2, np.intp))
    with pytest.raises(ValueError, match="V >= 1"):
        inverse_cdf_rows(np.ones((3, 0)), np.zeros(3), out)


def sorted_nucleus(p, top_p):
    """What _nucleus computed before item 181: each row sorted (stable, so
    ties in index order), kept while the mass before a token is under
    top_p x the row's."""
    order = np.argsort(-p, axis=1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=1)
    before = np.cumsum(ranked, axis=1) - ranked
    keep = np.zeros(p.shape, bool)
    np.put_along_axis(keep, order, before < top_p * ranked.sum(axis=1, keepdims=True), axis=1)
    return np.where(keep, p, 0.0)


def numpy_sample(logits, temperature, top_k, skip, rng, top_p=None):
    """The sampler before items 176 and 178, all NumPy, in float64."""
    z = logits.astype(np.float64)
    z[:, skip] = -np.inf
    if top_k is not None:
        kth = np.partition(z, -top_k, axis=1)[:, -top_k][:, None]
        z[z < kth] = -np.inf
    if temperature == 0:
        return z.argmax(axis=1)
    with np.errstate(over="ignore"):
        z = (z - z.max(axis=1, keepdims=True)) / temperature
    p = np.exp(z)
    if top_p is not None and top_p < 1:
        p = sorted_nucleus(p, top_p)
    return numpy_inverse_cdf(p, rng.random(z.shape[0]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", [dict(temperature=1.0), dict(temperature=0.7, top_k=5),
                                     dict(temperature=1.3, top_p=0.8),
                                     dict(temperature=1e-3, top_k=3, top_p=0.9),
                                     dict(temperature=0), dict(temperature=0, top_k=4)])
@pytest.mark.parametrize("skip", [[0, 7, 499], []])     # masked in a copy, or read as given
def test_sample_draws_what_the_numpy_sampler_drew(options, dtype, skip):
    logits = (np.random.default_rng(0).standard_normal((64, 500)) * 4).astype(dtype)
    logits[3, 10] = np.nan                              # a NaN row draws id 0 / its argmax
    logits[5, :] = 2.5                                  # ties: the first id for greedy
    skip = np.array(skip, np.intp)
    args = (options.get("temperature"), options.get("top_k"), skip)
    before = logits.copy()
    ids = lm_module._sample(logits, *args, np.random.default_rng(9), options.get("top_p"))
    np.testing.assert_array_equal(logits, before)       # the caller's logits untouched
    assert not np.isin(np.delete(ids, 3), skip).any()
    np.testing.assert_array_equal(
        ids, numpy_sample(logits, *args, np.random.default_rng(9), options.get("top_p")))


def numpy_scaled(x, temperature):
    """What _sample computed before item 178."""
    z = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return (z - z.max(axis=1, keepdims=True)) / temperature


@pytest.mark.parametrize("threads", [1, 2])           # 2: rows split at V = 50,007
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("V", [1, 2, 7, 15, 16, 17, 1000, 10007, 50007])
def test_scaled_logits_are_numpys(dtype, V, threads):
    rng = np.random.default_rng(V)
    R = 12
    x = (rng.standard_normal((R, V)) * 30).astype(dtype)
    x[rng.random((R, V)) < 0.2] = -np.inf               # skipped or cut tokens
    x[1] = -np.inf                                      # nothing left: NaN
    x[2, V // 2] = np.nan                               # a NaN logit: NaN
    x[3, 0] = np.nan                                    # the first one NaN
    x[4, -1] = np.nan                                   # the last one (a loop's tail)
    x[5] = 7.0                                          # ties
    x[6, -1] = 1e4                                      # the max in the last one
    for temperature in (1.0, 0.7, 1e-3, 1e-300, 1e300):
        out = np.full((R, V), -1.0)
        with threadpool_limits(threads):
            scaled_logits_rows(x, temperature, out)
        # equal (a zero's sign aside, which exp maps to 1 either way), NaN where NaN
        np.testing.assert_array_equal(out, numpy_scaled(x, temperature))


def test_scaled_logits_refuse_shapes_that_disagree():
    with pytest.raises(ValueError, match=r"shapes x \(3, 5\) and out \(3, 4\) differ"):
        scaled_logits_rows(np.ones((3, 5), np.float32), 1.0, np.empty((3, 4)))
    with pytest.raises(ValueError, match=r"out \(2, 5\)"):
        scaled_logits_rows(np.ones((3, 5)), 1.0, np.empty((2, 5)))
    with pytest.raises(ValueError, match="V >= 1"):
        scaled_logits_rows(np.ones((3, 0)), 1.0, np.empty((3, 0)))
    out = np.empty((0, 5))
    scaled_logits_rows(np.ones((0, 5), np.float32), 1.0, out)      # no rows: nothing to do


def nucleus_cases(rng):
    """(name, rows) a nucleus can meet: smooth and peaked, Dirichlet, small
    integers (ties and zeros), rounded exponentials (many ties at many
    values), half zeros; a row all 1 and a row with a NaN in each."""
    for V in (1, 2, 3, 8, 97, 1000, 4099):
        for name, p in (("lognormal", np.exp(rng.standard_normal((13, V)) * 3)),
                        ("dirichlet", rng.dirichlet(np.full(V, 0.3), size=13)),
                        ("integers", rng.integers(0, 4, (13, V)).astype(float)),
                        ("rounded", np.exp(-rng.exponential(5, (13, V)).round(1))),
                        ("half zeros", rng.random((13, V)) * (rng.random((13, V)) < 0.5))):
            p[0] = 1.0
            p[1, V // 2] = np.nan
            p[2] = 0.0
            p[2, -1] = 0.25                             # the mass in the last one
            yield f"{name}, V = {V}", p


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("top_p", [1e-9, 0.1, 0.5, 0.9, 0.999])
def test_nucleus_rows_keep_what_sorting_kept(top_p, threads):
    for name, p in nucleus_cases(np.random.default_rng(int(top_p * 1e3))):
        kept = p.copy()
        with threadpool_limits(threads):
            nucleus_rows(kept, top_p)
        np.testing.assert_array_equal(kept, sorted_nucleus(p, top_p), err_msg=name)


def test_nucleus_rows_at_top_p_1_and_arguments_refused():
    p = np.exp(np.random.default_rng(0).standard_normal((5, 50)))
    p[1, 3] = np.nan
    kept = p.copy()
    nucleus_rows(kept, 1.0)                                 # every token kept
    np.testing.assert_array_equal(kept, p)
    nucleus_rows(np.empty((0, 5)), 0.5)                     # no rows
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"^nucleus_rows: top_p must be in \(0, 1\]"):
            nucleus_rows(p.copy(), bad)


def partition_top_k(z, k):
    """What _sample did before item 182."""
    out = z.copy()
    out[out < np.partition(out, -k, axis=1)[:, -k][:, None]] = -np.inf
    return out


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top_k_rows_mask_what_np_partition_masked(dtype, threads):
    rng = np.random.default_rng(3)
    for V in (1, 2, 3, 8, 97, 1000, 20011):
        z = (rng.standard_normal((11, V)) * 3).astype(dtype)
        z[1] = 2.0                                          # all tied
        z[2] = rng.integers(0, 3, V)                        # few values, many ties
        z[3, rng.random(V) < 0.3] = -np.inf                 # skipped ids
        z[4, V // 2] = np.nan                               # NaNs: the largest
        z[5, rng.random(V) < 0.5] = np.nan
        z[6, ::2] = -0.0                                    # -0 and 0 tied
        z[6, 1::2] = 0.0
        for k in sorted({min(k, V) for k in (1, 2, 3, V // 2 + 1, V - 1, V)} - {0}):
            out = z.copy()
            with threadpool_limits(threads):
                top_k_rows(out, k)
            np.testing.assert_array_equal(out, partition_top_k(z, k), err_msg=f"V={V} k={k}")
    with pytest.raises(ValueError,
                       match=r"^top_k_rows: k must be in 1\.\.5 \(z has shape \(2, 5\)\), got 6"):
        top_k_rows(np.zeros((2, 5), dtype), 6)
    with pytest.raises(ValueError, match="got 0"):
        top_k_rows(np.zeros((2, 5), dtype), 0)
