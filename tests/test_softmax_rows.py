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


# ---------------------------------------------------------------- the loss's own pass
# src/_softmax.pxi softmax_loss_rows (forward: the targets' check, the
# softmax, the picked logit) and src/_rowops.pxi softmax_loss_grad (its
# gradient rows), docs/performance.md item 151.

def _loss_rows(x, ts, ignore_label=-1):
    R = x.shape[0]
    e, z, picked = np.empty_like(x), np.empty(R), np.empty(R)
    share, cls = np.empty(R, x.dtype), np.empty(R, np.intp)
    counted = _rnn.softmax_loss_rows(x, ts, ignore_label, e, z, picked, share, cls)
    return counted, e, z, picked, share, cls


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("R,V", [(1, 1), (5, 17), (64, 1000)])
def test_softmax_loss_rows_parts(dtype, R, V):
    rng = np.random.default_rng(R + V)
    x = (rng.standard_normal((R, V)) * 4).astype(dtype)
    ts = rng.integers(0, V, R).astype(np.intp)
    ts[::3] = -7                                   # ignored
    counted, e, z, picked, share, cls = _loss_rows(x, ts, ignore_label=-7)
    keep = ts != -7
    assert counted == keep.sum()
    e_ref, z_ref, top = _reference(x)
    tol = 2e-7 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(e, e_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(z, z_ref, rtol=tol * 4)
    np.testing.assert_array_equal(share, keep.astype(dtype))
    np.testing.assert_array_equal(cls, np.where(keep, ts, 0))
    # picked: x[r, t] - row max in double, exactly; 0 where the row does not count
    want = np.where(keep, x.astype(np.float64)[np.arange(R), np.where(keep, ts, 0)]
                    - top, 0.0)
    np.testing.assert_array_equal(picked, want)


def test_softmax_loss_rows_refuses_a_target_out_of_range_and_shapes():
    x = np.zeros((4, 3), np.float32)
    for bad, at in (([0, 2, 3, 1], 2), ([-2, 0, 0, 0], 0), ([0, 0, 0, 2 ** 40], 3)):
        counted = _loss_rows(x, np.array(bad, np.intp))[0]
        assert counted == -1 - at
    assert _loss_rows(np.zeros((0, 3), np.float32), np.zeros(0, np.intp))[0] == 0
    with pytest.raises(ValueError, match="softmax_loss_rows: shapes"):
        _rnn.softmax_loss_rows(x, np.zeros(3, np.intp), -1, np.empty_like(x), np.empty(4),
                               np.empty(4), np.empty(4, np.float32), np.empty(4, np.intp))
    with pytest.raises(ValueError, match="softmax_loss_rows: shapes"):
        _rnn.softmax_loss_rows(np.zeros((4, 0), np.float32), np.zeros(4, np.intp), -1,
                               np.empty((4, 0), np.float32), np.empty(4), np.empty(4),
                               np.empty(4, np.float32), np.empty(4, np.intp))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_loss_rows_and_grad_same_bytes_at_one_and_two_threads(dtype):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((400, 1500)) * 3).astype(dtype)
    ts = rng.integers(-1, 1500, 400).astype(np.intp)
    out = []
    for threads in (1, 2):
        with threadpool_limits(threads):
            counted, e, z, picked, share, cls = _loss_rows(x, ts)
            dx = np.empty_like(x)
            _rnn.softmax_loss_grad(e, z, share, cls, 0.25, dx)
            out.append((e, z, picked, share, cls, dx))
    for a, b in zip(*out):
        assert a.tobytes() == b.tobytes()


def test_first_bad_class_id_matches_numpys_test():
    rng = np.random.default_rng(7)
    for _ in range(200):
        n, V = int(rng.integers(0, 30)), int(rng.integers(1, 10))
        ignore = int(rng.choice([-1, -100, 0, V]))
        ts = rng.integers(-3, V + 3, n).astype(np.intp)
        bad = np.flatnonzero((ts != ignore) & ((ts < 0) | (ts >= V)))
        assert _rnn.first_bad_class_id(ts, V, ignore) == (bad[0] if bad.size else -1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ["plain", "ignored", "mask", "weights", "all ignored"])
def test_softmax_loss_compiled_and_numpy_paths_agree(dtype, case, monkeypatch):
    """The loss's value and gradient on the compiled pass and on NumPy's
    lines (_COMPILED_SOFTMAX off) against float64 formulas, for each way a
    target can count or not."""
    import rnnfast.losses as losses
    rng = np.random.default_rng(8)
    N, T, V = 5, 7, 40
    xs = (rng.standard_normal((N, T, V)) * 3).astype(dtype)
    ts = rng.integers(0, V, (N, T))
    mask = sample_weight = None
    if case == "ignored":
        ts[rng.random((N, T)) < 0.3] = -1
    elif case == "all ignored":
        ts[...] = -1
    elif case == "mask":
        mask = rng.random((N, T)) < 0.6
    elif case == "weights":
        sample_weight = np.array([0.0, 1.5, 2.0, 0.25, 1.0])
    counts = (ts != -1) & (True if mask is None else mask)
    w = np.ones(N) if sample_weight is None else sample_weight
    share = counts * w[:, None]
    x64 = xs.astype(np.float64)
    logp = x64 - x64.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    picked = np.take_along_axis(logp, np.where(counts, ts, 0)[..., None], -1)[..., 0]
    denom = share.sum() if share.sum() > 0 else 1
    want_loss = -(picked * share).sum() / denom
    onehot = np.zeros_like(x64)
    np.put_along_axis(onehot, np.where(counts, ts, 0)[..., None], 1.0, axis=-1)
    want_dx = (np.exp(logp) - onehot) * (share / denom)[..., None] * 0.5
    tol = 2e-6 if dtype == np.float32 else 1e-12
    for compiled in (True, False):
        monkeypatch.setattr(losses, "_COMPILED_SOFTMAX", compiled)
        layer = TimeSoftmaxWithLoss()
        loss = layer.forward(xs, ts, mask=mask, sample_weight=sample_weight)
        dx = layer.backward(0.5)
        assert dx.dtype == dtype and dx.shape == xs.shape
        assert loss == pytest.approx(want_loss, rel=tol, abs=tol)
        np.testing.assert_allclose(dx, want_dx, rtol=10 * tol, atol=tol)


def test_softmax_loss_backward_reads_its_own_copy_of_the_targets():
    """The caller's targets changed between forward and backward (here to
    values out of range) change nothing of the gradient."""
    rng = np.random.default_rng(9)
    xs = rng.standard_normal((6, 9)).astype(np.float32)
    ts = rng.integers(0, 9, 6).astype(np.intp)
    layer = SoftmaxWithLoss()
    layer.forward(xs, ts)
    want = layer.backward()
    layer.forward(xs, ts)
    ts[:] = 10 ** 9
    np.testing.assert_array_equal(layer.backward(), want)


def test_softmax_loss_refuses_a_bad_target_as_before():
    layer = SoftmaxWithLoss()
    with pytest.raises(ValueError, match=r"ts: class ids must lie in 0\.\.3 \(or equal "
                                         r"ignore_label=-1\), got 4"):
        layer.forward(np.zeros((3, 4), np.float32), np.array([0, 4, 9]))
    assert layer._cache is None


@pytest.mark.parametrize("label", [2 ** 62 + 1, 2 ** 70])
def test_softmax_loss_refuses_an_ignore_label_past_int64_by_name(label):
    """The compiled pass compares ignore_label with intp targets: a label
    beyond 2**62 is refused when the layer is built, not an OverflowError
    at the first forward."""
    with pytest.raises(ValueError, match=r"ignore_label: expected an integer in "):
        SoftmaxWithLoss(ignore_label=label)
    assert TimeSoftmaxWithLoss(ignore_label=2 ** 62).forward(
        np.zeros((1, 2, 3)), np.array([[0, 2]])) > 0


# The finiteness check folded into the row pass (docs/performance.md item
# 163): a row's sum is NaN exactly when the row holds a NaN or Inf, so the
# loss needs no scan of its own over the logits.
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("V", [1, 15, 16, 17, 40])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_softmax_rows_sum_is_nan_exactly_in_a_row_with_a_nan_or_inf(dtype, V, bad):
    rng = np.random.default_rng(V)
    R = 6
    x = (rng.standard_normal((R, V)) * 3).astype(dtype)
    rows = {1: 0, 3: V - 1, 4: V // 2}     # first, last (the tail past 16 lanes), middle
    for r, j in rows.items():
        x[r, j] = bad
    e, z, top = np.empty_like(x), np.empty(R), np.empty(R, dtype)
    _rnn.softmax_rows(x, e, z, top)
    assert np.isnan(z[list(rows)]).all()
    finite = [r for r in range(R) if r not in rows]
    np.testing.assert_allclose(z[finite], _reference(x[finite])[1], rtol=1e-6)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_softmax_losses_refuse_a_nan_or_inf_logit(compiled, dtype, bad, monkeypatch):
    """On both paths: NonFiniteError naming xs, the logit anywhere (a row's
    first value, its tail past 16 lanes, a row whose target is ignored), in
    logits as they lie or converted (Fortran order), the layer's cache
    untouched."""
    import rnnfast.losses as losses
    from rnnfast._validation import NonFiniteError
    monkeypatch.setattr(losses, "_COMPILED_SOFTMAX", compiled)
    rng = np.random.default_rng(3)
    for where in [(0, 0, 0), (1, 2, 16), (2, 3, 19)]:
        xs = rng.standard_normal((3, 4, 20)).astype(dtype)
        ts = rng.integers(0, 20, (3, 4))
        ts[2, 3] = -1                                   # the third place's row is ignored
        xs[where] = bad
        for logits in (xs, np.asfortranarray(xs)):
            layer = TimeSoftmaxWithLoss()
            with pytest.raises(NonFiniteError, match=r"xs: contains NaN or Inf \(shape "
                                                     r"\(3, 4, 20\)\)"):
                layer.forward(logits, ts)
            assert layer._cache is None
        layer = SoftmaxWithLoss()
        with pytest.raises(NonFiniteError, match=r"xs: contains NaN or Inf \(shape "
                                                 r"\(4, 20\)\)"):
            layer.forward(xs[where[0]], ts[where[0]])
        assert layer._cache is None


@pytest.mark.parametrize("make", ["softmax", "time softmax", "sigmoid", "mse", "huber"])
def test_loss_backward_refuses_a_dout_that_is_not_a_finite_number(make):
    from rnnfast.losses import HuberLoss, MSELoss, TimeSigmoidWithLoss
    rng = np.random.default_rng(4)
    xs = rng.standard_normal((3, 4)).astype(np.float32)
    layer, args = {
        "softmax": (SoftmaxWithLoss(), (xs, np.array([0, 1, 3]))),
        "time softmax": (TimeSoftmaxWithLoss(), (xs[:, :, None].repeat(2, -1),
                                                 np.zeros((3, 4), int))),
        "sigmoid": (TimeSigmoidWithLoss(), (xs, (xs > 0).astype(np.float32))),
        "mse": (MSELoss(), (xs, xs * 0)),
        "huber": (HuberLoss(), (xs, xs * 0)),
    }[make]
    layer.forward(*args)
    want = layer.backward()
    # 1e300: past float32 once scaled; 10**400: past float64 itself
    for dout in (np.nan, np.inf, -np.inf, 1e300, 10 ** 400, np.float64(np.nan)):
        with pytest.raises(ValueError, match=r"dout: expected a finite number whose "
                                             r"quotient by the loss's denominator"):
            layer.backward(dout)
    for dout in ("1", None, [1.0], True, np.ones(2)):
        with pytest.raises(TypeError, match=r"dout: expected a real number \(dL/dloss\)"):
            layer.backward(dout)
    # a number of any real kind, a 0-d array included, scales the gradient
    for dout in (2, 2.0, np.float32(2), np.int64(2), np.array(2.0)):
        np.testing.assert_allclose(layer.backward(dout), 2 * want, rtol=1e-6)
