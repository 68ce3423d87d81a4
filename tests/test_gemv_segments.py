"""The backward's one-row product by segments of K (src/_gemm.h,
rf_gemm_packed_dh_f): dh (+)= dA_t @ Wh^T for a batch of one, its K cut into
16 KB segments summed apart and added in a fixed order, walked forwards and
backwards on alternate calls.  Checked against numpy in float64, for the same
bits whichever way a call walked, and, in whole networks, for the same
gradients at every call and within float32 rounding of one sum over K."""
import numpy as np
import pytest

import rnnfast
from rnnfast import _core, _rnn

pytestmark = pytest.mark.skipif(not _core.use_packed_gemm(True),
                                reason="the packed kernel needs AVX2 and FMA")


@pytest.fixture(autouse=True)
def _defaults_after():
    yield
    _core.use_gemv_segments(True)
    _core.use_wide_tiles(True)


def _case(n, k, seed=0):
    rng = np.random.default_rng(seed + 7 * n + k)
    a = rng.standard_normal((1, k)).astype(np.float32)
    wh = rng.standard_normal((n, k)).astype(np.float32)      # Wh^T is (k, n)
    return a, wh, rng.standard_normal((1, n)).astype(np.float32)


# n: one group of four panels, ragged (50, 79, 112) or not (64); 48 (three
# single panels) and 128 (two groups, or one wide 8-group) keep the GEMV.
# k: 1 and 64 are one segment, 65 and 127 a ragged second, 1024 sixteen
# (the most), 1100 more than that (the plain GEMV).
@pytest.mark.parametrize("n", [48, 50, 64, 79, 112, 128])
@pytest.mark.parametrize("k", [1, 64, 65, 127, 192, 256, 300, 1024, 1100])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("wide", [False, True])
def test_segments_match_numpy_and_not_the_walk(n, k, accumulate, wide):
    _core.use_wide_tiles(wide)
    a, wh, c0 = _case(n, k)
    results = []
    for _ in range(3):                  # the thread's call parity alternates
        c = c0.copy()
        _rnn.packed_matmul(a, wh, c, True, accumulate, backward=True)
        results.append(c)
    expected = a.astype(np.float64) @ wh.T.astype(np.float64) + (c0 if accumulate else 0)
    np.testing.assert_allclose(results[0], expected, rtol=1e-5, atol=1e-5 * np.sqrt(k))
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])
    # A repeat of 2 after one packing walks both ways within one call.
    c = c0.copy() if accumulate else np.zeros_like(c0)
    _rnn.packed_matmul(a, wh, c, True, True, repeat=2, backward=True)
    once = results[0] - (c0 if accumulate else 0)
    np.testing.assert_allclose(c, (c0 if accumulate else 0) + 2 * once.astype(np.float64),
                               rtol=1e-5, atol=1e-5 * np.sqrt(k))


@pytest.mark.parametrize("k", [192, 256])
def test_segments_run_where_they_apply_and_switch_off(k):
    """At n = 64 the segmented sums differ in bits from one sum over K (so
    the segments ran); switched off, backward=True is the forward's GEMV
    bit for bit."""
    a, wh, c0 = _case(64, k, seed=1)
    plain, segmented, off = c0.copy(), c0.copy(), c0.copy()
    _rnn.packed_matmul(a, wh, plain, True, True)
    _rnn.packed_matmul(a, wh, segmented, True, True, backward=True)
    _core.use_gemv_segments(False)
    _rnn.packed_matmul(a, wh, off, True, True, backward=True)
    assert not np.array_equal(plain, segmented)
    np.testing.assert_array_equal(plain, off)
    np.testing.assert_allclose(segmented, plain, rtol=1e-5, atol=1e-5)


def test_backward_refuses_an_untransposed_b():
    a, wh, c0 = _case(64, 192)
    with pytest.raises(ValueError, match="backward=True needs trans_b=True"):
        _rnn.packed_matmul(a, wh.T.copy(), c0, False, True, backward=True)


def _train_once(net, xs, dhs):
    net.forward(xs)
    dxs = net.backward(dhs)
    return dxs.copy(), [g.copy() for g in net.grads]


@pytest.mark.parametrize("cls,kw", [(rnnfast.LSTM, {}), (rnnfast.GRU, {}),
                                    (rnnfast.GRU, {"reset_after": False})])
@pytest.mark.parametrize("T", [1, 2, 37])
def test_a_batch_of_one_trains_to_the_same_bits_at_every_call(cls, kw, T):
    """N = 1, H = 64: every backward step runs the segmented GEMV.  Calls
    that start on either parity of the walk (an extra one-step inference
    between them shifts it) give the same bits; one sum over K gives the
    same within float32 rounding."""
    rng = np.random.default_rng(T)
    D, H = 24, 64
    net = cls(D, H, dtype=np.float32, random_state=0, **kw)
    xs = rng.standard_normal((1, T, D)).astype(np.float32)
    dhs = rng.standard_normal((1, T, H)).astype(np.float32)
    first = _train_once(net, xs, dhs)
    net.eval()
    net.forward(xs[:, :1])                   # one more forward GEMV call
    net.train()
    second = _train_once(net, xs, dhs)
    for got, want in zip([second[0]] + second[1], [first[0]] + first[1]):
        np.testing.assert_array_equal(got, want)
    _core.use_gemv_segments(False)
    plain = _train_once(net, xs, dhs)
    for got, want in zip([plain[0]] + plain[1], [first[0]] + first[1]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
