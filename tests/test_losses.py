"""Losses: values against the plain formulas, reductions, ignore_label and
mask, gradients by finite differences (float64), stability, dtypes, errors."""
import numpy as np
import pytest

from rnnfast.losses import (HuberLoss, MSELoss, SoftmaxWithLoss, TimeSigmoidWithLoss,
                            TimeSoftmaxWithLoss)
from _fd import check_grad


@pytest.fixture
def rng():
    return np.random.default_rng(3)


def _nll(x, t):
    """-log softmax(x)[t] the long way (moderate logits only)."""
    p = np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True)
    return -np.log(np.take_along_axis(p, t[..., None], axis=-1)[..., 0])


@pytest.mark.parametrize("reduction", ["mean", "sum_time", "sum"])
def test_time_softmax_value_and_gradient(reduction, rng):
    x = rng.standard_normal((3, 4, 5))
    t = rng.integers(0, 5, (3, 4))
    t[0, 1] = -1                                   # ignored
    mask = np.ones((3, 4), bool)
    mask[2, 3] = False                             # masked
    counted = (t != -1) & mask
    nll = np.where(counted, _nll(x, np.where(t < 0, 0, t)), 0.0)
    denom = {"mean": counted.sum(), "sum_time": 3, "sum": 1}[reduction]
    layer = TimeSoftmaxWithLoss(reduction=reduction)
    assert layer.forward(x, t, mask) == pytest.approx(nll.sum() / denom, rel=1e-12)
    dx = layer.backward()
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dx[0, 1], 0)
    np.testing.assert_array_equal(dx[2, 3], 0)
    check_grad(lambda: TimeSoftmaxWithLoss(reduction=reduction).forward(x, t, mask),
               x, dx, "logits", n=40)


def test_time_softmax_stable_and_float32():
    x = np.array([[[1e4, 0.0, -1e4], [-3e4, 3e4, 0.0]]], np.float32)
    layer = TimeSoftmaxWithLoss()
    loss = layer.forward(x, np.array([[0, 0]]))
    assert np.isfinite(loss) and loss == pytest.approx((0 + 6e4) / 2, rel=1e-6)
    dx = layer.backward()
    assert dx.dtype == np.float32 and np.isfinite(dx).all()


def test_time_softmax_nothing_counts():
    layer = TimeSoftmaxWithLoss(ignore_label=9)
    loss = layer.forward(np.ones((1, 2, 3)), np.array([[9, 9]]))
    assert loss == 0 and np.copysign(1, loss) == 1            # 0.0, not -0.0
    np.testing.assert_array_equal(layer.backward(), 0)


def test_softmax_many_to_one(rng):
    x, t = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    layer = SoftmaxWithLoss()
    assert layer.forward(x, t) == pytest.approx(_nll(x, t).mean(), rel=1e-12)
    check_grad(lambda: SoftmaxWithLoss().forward(x, t), x, layer.backward(2.0) / 2, "x")


def test_softmax_errors():
    layer = TimeSoftmaxWithLoss()
    with pytest.raises(ValueError, match=r"ts: expected shape \(2, 3\), got shape \(2, 4\)"):
        layer.forward(np.zeros((2, 3, 5)), np.zeros((2, 4), int))
    with pytest.raises(ValueError, match=r"ts: class ids must lie in 0\.\.4"):
        layer.forward(np.zeros((2, 3, 5)), np.full((2, 3), 5))
    with pytest.raises(TypeError, match="ts"):
        layer.forward(np.zeros((2, 3, 5)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"mask: expected shape \(2, 3\)"):
        layer.forward(np.zeros((2, 3, 5)), np.zeros((2, 3), int), mask=np.ones(3))
    with pytest.raises(ValueError, match=r"xs: expected shape \(N, T, V\)"):
        layer.forward(np.zeros((2, 5)), np.zeros((2,), int))
    for loss, xs in ((layer, np.zeros((2, 3, 0))), (SoftmaxWithLoss(), np.zeros((2, 0)))):
        with pytest.raises(ValueError, match=r"xs: a softmax needs at least one class"):
            loss.forward(xs, np.full(xs.shape[:-1], -1))
    with pytest.raises(ValueError, match="reduction"):
        TimeSoftmaxWithLoss(reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        SoftmaxWithLoss(reduction="sum_time")
    with pytest.raises(RuntimeError):
        TimeSoftmaxWithLoss().backward()


@pytest.mark.parametrize("shape", [(3, 4), (3, 4, 2)])
def test_sigmoid_value_and_gradient(shape, rng):
    x = rng.standard_normal(shape)
    t = rng.random(shape)                          # soft labels
    mask = np.ones(shape[:2], bool)
    mask[1, 2] = False
    p = 1 / (1 + np.exp(-x))
    bce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    w = mask if len(shape) == 2 else np.repeat(mask[:, :, None], 2, axis=2)
    layer = TimeSigmoidWithLoss()
    assert layer.forward(x, t, mask) == pytest.approx((bce * w).sum() / w.sum(), rel=1e-12)
    check_grad(lambda: TimeSigmoidWithLoss().forward(x, t, mask), x, layer.backward(),
               "x", n=20)
    layer = TimeSigmoidWithLoss(reduction="sum_time")
    assert layer.forward(x, t, mask) == pytest.approx((bce * w).sum() / 3, rel=1e-12)


def test_sigmoid_stable_and_errors():
    layer = TimeSigmoidWithLoss()
    x = np.array([[800.0, -800.0]], np.float32)
    assert layer.forward(x, np.array([[0.0, 1.0]])) == pytest.approx(800.0, rel=1e-6)
    assert np.isfinite(layer.backward()).all()
    with pytest.raises(ValueError, match=r"ts: targets must lie in \[0, 1\]"):
        layer.forward(x, np.array([[2.0, 0.0]]))
    with pytest.raises(ValueError, match=r"ts: expected shape \(1, 2\)"):
        layer.forward(x, np.zeros((1, 3)))


def test_mse_and_huber(rng):
    y, t = 2 * rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    mse = MSELoss()
    assert mse.forward(y, t) == pytest.approx(((y - t) ** 2).mean(), rel=1e-12)
    check_grad(lambda: MSELoss().forward(y, t), y, mse.backward(), "y")
    d = y - t
    huber = HuberLoss(delta=0.8)
    ref = np.where(np.abs(d) <= 0.8, 0.5 * d ** 2, 0.8 * (np.abs(d) - 0.4)).mean()
    assert huber.forward(y, t) == pytest.approx(ref, rel=1e-12)
    assert (np.abs(d) > 0.8).any() and (np.abs(d) <= 0.8).any()   # both branches used
    check_grad(lambda: HuberLoss(0.8).forward(y, t), y, huber.backward(), "y", n=15)
    assert MSELoss().forward(y.astype(np.float32), t) == pytest.approx(
        ((y - t) ** 2).mean(), rel=1e-5)
    with pytest.raises(ValueError, match=r"t: expected shape \(5, 3\), got shape \(5,\)"):
        mse.forward(y, t[:, 0])
    with pytest.raises(ValueError, match="delta"):
        HuberLoss(0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_picked_log_softmax_is_log_softmax_at_the_targets(dtype):
    """The one-exp form the loss and perplexity use: log p at the picked
    entries and the softmax e / z, against log_softmax, with rows whose
    scores are huge (1e4) and tiny (-1e4), so only the shift keeps it finite."""
    from rnnfast.losses import log_softmax, picked_log_softmax
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((6, 9)) * 3).astype(dtype)
    x[1] += 1e4
    x[2] -= 1e4
    cls = rng.integers(0, 9, 6)
    want = log_softmax(x.astype(np.float64))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    logp, e, z = picked_log_softmax(x, cls)
    assert logp.dtype == np.float64 and e.dtype == dtype and z.shape == (6, 1)
    np.testing.assert_allclose(logp, want[np.arange(6), cls], **tol)
    np.testing.assert_allclose(e / z, np.exp(want), **tol)
    rows = np.array([4, 1])
    logp, _, _ = picked_log_softmax(x, cls[rows], rows)
    np.testing.assert_allclose(logp, want[rows, cls[rows]], **tol)


# ------------------------------------------------------- sample weights
@pytest.mark.parametrize("reduction", ["mean", "sum_time", "sum"])
def test_time_softmax_sample_weight_value_gradient_and_repeats(reduction, rng):
    """Each counted target's loss times its sample's weight; "mean" divides
    by the counted targets' weight, "sum_time" by the batch's.  Integer
    weights equal repeating the samples (loss and summed gradients)."""
    x = rng.standard_normal((3, 4, 5))
    t = rng.integers(0, 5, (3, 4))
    t[0, 1] = -1
    mask = np.ones((3, 4), bool)
    mask[2, 3] = False
    w = np.array([2.0, 0.0, 3.0])
    counted = (t != -1) & mask
    nll = np.where(counted, _nll(x, np.where(t < 0, 0, t)), 0.0) * w[:, None]
    denom = {"mean": (counted * w[:, None]).sum(), "sum_time": w.sum(), "sum": 1}[reduction]
    layer = TimeSoftmaxWithLoss(reduction=reduction)
    assert layer.forward(x, t, mask, sample_weight=w) == pytest.approx(nll.sum() / denom,
                                                                       rel=1e-12)
    dx = layer.backward()
    np.testing.assert_array_equal(dx[1], 0)                     # weight 0
    check_grad(lambda: TimeSoftmaxWithLoss(reduction=reduction).forward(
        x, t, mask, sample_weight=w), x, dx, "logits", n=40)
    rep = np.repeat(np.arange(3), w.astype(int))
    layer2 = TimeSoftmaxWithLoss(reduction=reduction)
    assert layer2.forward(x[rep], t[rep], mask[rep]) == pytest.approx(
        nll.sum() / denom, rel=1e-12)
    dx2 = layer2.backward()
    for i in (0, 2):
        np.testing.assert_allclose(dx2[rep == i].sum(axis=0), dx[i], rtol=1e-12, atol=1e-15)


def test_sample_weight_of_ones_is_the_unweighted_loss_bitwise(rng):
    x = rng.standard_normal((5, 7)).astype(np.float32)
    t = rng.integers(0, 7, 5)
    a, b = SoftmaxWithLoss(), SoftmaxWithLoss()
    assert a.forward(x, t) == b.forward(x, t, sample_weight=np.ones(5))
    np.testing.assert_array_equal(a.backward(), b.backward())
    y, target = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    for cls in (MSELoss, lambda: HuberLoss(0.5)):
        a, b = cls(), cls()
        assert a.forward(y, target) == b.forward(y, target, sample_weight=np.ones(5))
        np.testing.assert_array_equal(a.backward(), b.backward())


@pytest.mark.parametrize("scale", [1.0, 0.05], ids=["weights", "weights-summing-below-1"])
@pytest.mark.parametrize("make", [MSELoss, lambda: HuberLoss(0.8)], ids=["mse", "huber"])
def test_regression_sample_weight_is_a_weighted_mean(make, scale, rng):
    # scale 0.05: the weights sum to 0.2 (0.6 with the 3 outputs), below 1,
    # where the gradient was once divided by 1 instead (tests/fuzz_models.py)
    y, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    w = np.array([1.0, 0.0, 2.5, 0.5]) * scale
    loss = make()
    value = loss.forward(y, t, sample_weight=w)
    rows = [make().forward(y[i:i + 1], t[i:i + 1]) for i in range(4)]   # mean of a row
    assert value == pytest.approx(np.dot(w, rows) / w.sum(), rel=1e-12)
    dy = loss.backward()
    np.testing.assert_array_equal(dy[1], 0)
    check_grad(lambda: make().forward(y, t, sample_weight=w), y, dy, "y")
    assert make().forward(y, t, sample_weight=np.zeros(4)) == 0


@pytest.mark.parametrize("weights,error,message", [
    ([1.0, 2.0], ValueError, r"sample_weight: expected shape \(3,\), one weight a sample, "
                             r"got shape \(2,\)"),
    ([1.0, -1.0, 2.0], ValueError, r"sample_weight: weights must be finite and >= 0, got "
                                   r"min -1.0"),
    ([1.0, np.nan, 2.0], ValueError, r"sample_weight: weights must be finite"),
    (["a", "b", "c"], TypeError, r"sample_weight: expected numbers of shape \(3,\)"),
])
def test_bad_sample_weight_is_refused_by_name(weights, error, message, rng):
    x, t = rng.standard_normal((3, 4)), rng.integers(0, 4, 3)
    with pytest.raises(error, match=message):
        SoftmaxWithLoss().forward(x, t, sample_weight=np.array(weights))
    with pytest.raises(error, match=message):
        MSELoss().forward(x, x + 1, sample_weight=np.array(weights))


@pytest.mark.parametrize("reduction", ["mean", "sum_time", "sum"])
@pytest.mark.parametrize("K", [None, 3])
def test_sigmoid_sample_weight_is_repeats_and_its_gradient(reduction, K, rng):
    shape = (3, 4) if K is None else (3, 4, K)
    x, t = rng.standard_normal(shape), rng.uniform(0, 1, shape)
    mask = np.ones((3, 4), bool)
    mask[2, 1] = False
    w = np.array([2.0, 0.0, 1.0])
    layer = TimeSigmoidWithLoss(reduction)
    value = layer.forward(x, t, mask, sample_weight=w)
    dx = layer.backward()
    np.testing.assert_array_equal(dx[1], 0)
    check_grad(lambda: TimeSigmoidWithLoss(reduction).forward(x, t, mask, sample_weight=w),
               x, dx, "logits", n=30)
    rep = np.repeat(np.arange(3), w.astype(int))
    again = TimeSigmoidWithLoss(reduction)
    assert again.forward(x[rep], t[rep], mask[rep]) == pytest.approx(value, rel=1e-12)
    ones = TimeSigmoidWithLoss(reduction)
    plain = TimeSigmoidWithLoss(reduction)
    assert ones.forward(x, t, mask, sample_weight=np.ones(3)) == pytest.approx(
        plain.forward(x, t, mask), rel=1e-15)
