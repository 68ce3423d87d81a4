"""The compiled softmax of a loss's rows (src/_softmax.pxi, src/_cells.h
rf_softmax_row_f/_d; docs/performance.md item 118) against float64 NumPy:
row lengths around its 16 lanes, one class, no rows, logits far apart (the
clamped exp), and the same bytes at 1 and 2 threads."""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from rnnfast import _rnn
from rnnfast.losses import SoftmaxWithLoss, TimeSoftmaxWithLoss, picked_log_softmax


def _reference(x):
    x64 = x.astype(np.float64)
    top = x64.max(axis=1)
    e = np.exp(x64 - top[:, None])
    return e, e.sum(axis=1), top


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("R,V", [(1, 1), (3, 15), (4, 16), (5, 17), (7, 33), (64, 1000),
                                 (300, 2049)])
def test_softmax_rows_matches_numpy(dtype, R, V):
    rng = np.random.default_rng(R * 100 + V)
    x = (rng.standard_normal((R, V)) * 4).astype(dtype)
    e, z, top = np.empty_like(x), np.empty(R), np.empty(R, dtype)
    _rnn.softmax_rows(x, e, z, top)
    e_ref, z_ref, top_ref = _reference(x)
    tol = 2e-7 if dtype == np.float32 else 1e-14
    np.testing.assert_array_equal(top, top_ref.astype(dtype))
    np.testing.assert_allclose(e, e_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(z, z_ref, rtol=tol * 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_rows_far_apart_logits(dtype):
    # exp of x - max below the clamp: tiny or zero, never NaN, Inf or > 1
    x = np.array([[0.0, -50.0, -100.0, -1e4, -3e38 if dtype == np.float32 else -1e300,
                   7.0]], dtype)
    e, z, top = np.empty_like(x), np.empty(1), np.empty(1, dtype)
    _rnn.softmax_rows(x, e, z, top)
    assert top[0] == 7.0 and e[0, -1] == 1.0
    assert np.all(np.isfinite(e)) and np.all(e >= 0) and np.all(e <= 1)
    np.testing.assert_allclose(e[0, :2], np.exp([-7.0, -57.0]), rtol=1e-6)
    assert np.all(e[0, 2:5] < 1e-37)
    np.testing.assert_allclose(z[0], 1.0 + np.exp(-7.0), rtol=1e-7)


def test_softmax_rows_no_rows_and_bad_shapes():
    x = np.empty((0, 4), np.float32)
    _rnn.softmax_rows(x, np.empty_like(x), np.empty(0), np.empty(0, np.float32))
    x = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="softmax_rows: shapes"):
        _rnn.softmax_rows(x, np.empty((3, 5), np.float32), np.empty(3), np.empty(3, np.float32))
    with pytest.raises(ValueError, match="softmax_rows: shapes"):
        _rnn.softmax_rows(x, np.empty_like(x), np.empty(2), np.empty(3, np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_rows_same_bytes_at_one_and_two_threads(dtype):
    x = (np.random.default_rng(1).standard_normal((400, 1500)) * 3).astype(dtype)
    out = []
    for threads in (1, 2):
        with threadpool_limits(threads):
            e, z, top = np.empty_like(x), np.empty(400), np.empty(400, dtype)
            _rnn.softmax_rows(x, e, z, top)
            out.append((e, z, top))
    for a, b in zip(*out):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_picked_log_softmax_compiled_and_numpy_paths_agree(dtype):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((50, 300)) * 5).astype(dtype)
    cls = rng.integers(0, 300, 50)
    logp, e, z = picked_log_softmax(x, cls)
    logp_np, e_np, z_np = picked_log_softmax(np.asfortranarray(x), cls)  # NumPy path
    x64 = x.astype(np.float64)
    exact = x64[np.arange(50), cls] - x64.max(1) - np.log(
        np.exp(x64 - x64.max(1, keepdims=True)).sum(1))
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(logp, exact, rtol=tol, atol=tol)
    np.testing.assert_allclose(logp_np, exact, rtol=10 * tol, atol=10 * tol)
    np.testing.assert_allclose(e / z, e_np / z_np, rtol=10 * tol, atol=10 * tol)
    assert e.dtype == z.dtype == dtype and z.shape == (50, 1)


def test_loss_with_a_dominant_logit():
    xs = np.zeros((2, 5), np.float32)
    xs[0, 3] = xs[1, 0] = 1000.0
    loss = SoftmaxWithLoss(reduction="sum").forward(xs, np.array([3, 1]))
    assert loss == pytest.approx(1000.0)           # row 0 ~0, row 1 ~1000


def test_time_loss_gradient_is_softmax_minus_onehot():
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((2, 3, 40)).astype(np.float64)
    ts = rng.integers(0, 40, (2, 3))
    layer = TimeSoftmaxWithLoss()
    layer.forward(xs, ts)
    dx = layer.backward()
    p = np.exp(xs - xs.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    onehot = np.zeros_like(xs)
    np.put_along_axis(onehot, ts[..., None], 1.0, axis=-1)
    np.testing.assert_allclose(dx, (p - onehot) / 6, rtol=1e-12, atol=1e-15)
