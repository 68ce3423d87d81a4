"""Optimizers against steps worked out by hand (two steps for the stateful
ones), weight decay, in-place updates, clip_grads and the schedules."""
import math

import numpy as np
import pytest

from rnnfast.optim import (SGD, AdaGrad, Adam, Momentum, Nesterov, ReduceOnPlateau,
                           RMSprop, StepDecay, clip_grads)

G1, G2 = 0.5, 0.2          # the gradients of step 1 and step 2; p starts at 1.0


def _two_steps(opt, dtype=np.float64):
    p = np.array([1.0, 1.0], dtype)
    view = p[:1]                                   # an in-place update reaches views
    g = np.array([G1, G1], dtype)
    opt.update([p], [g])
    np.testing.assert_array_equal(g, G1)           # grads are left alone
    p1 = float(p[0])
    assert view[0] == p1
    opt.update([p], [np.array([G2, G2], dtype)])
    return p1, float(p[0])


# Each expected value below is the optimizer's rule written out with the
# numbers of this test, independently of rnnfast.optim.
EXPECTED = {
    "sgd": (SGD(lr=0.1), 1 - 0.05, 1 - 0.05 - 0.02),
    # v1 = -0.05, v2 = 0.9 * -0.05 - 0.02 = -0.065
    "momentum": (Momentum(lr=0.1, momentum=0.9), 0.95, 0.95 - 0.065),
    # p += 0.9 v - lr g: 1 - 0.045 - 0.05;  then + 0.9 * -0.065 - 0.02
    "nesterov": (Nesterov(lr=0.1, momentum=0.9), 0.905, 0.905 - 0.0585 - 0.02),
    # h1 = 0.25, h2 = 0.29
    "adagrad": (AdaGrad(lr=0.1, eps=1e-12), 1 - 0.05 / 0.5,
                1 - 0.1 - 0.02 / math.sqrt(0.29)),
    # h1 = 0.1 * 0.25 = 0.025, h2 = 0.9 * 0.025 + 0.1 * 0.04 = 0.0265
    "rmsprop": (RMSprop(lr=0.1, decay_rate=0.9, eps=1e-12), 1 - 0.05 / math.sqrt(0.025),
                1 - 0.05 / math.sqrt(0.025) - 0.02 / math.sqrt(0.0265)),
    # m1 = 0.05, v1 = 0.00025 -> m_hat 0.5, v_hat 0.25: step 0.1
    # m2 = 0.065, v2 = 0.00028975 -> m_hat 0.065/0.19, v_hat 0.00028975/0.001999
    "adam": (Adam(lr=0.1, beta1=0.9, beta2=0.999, eps=1e-12), 0.9,
             0.9 - 0.1 * (0.065 / 0.19) / math.sqrt(0.00028975 / (1 - 0.999 ** 2))),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_two_steps_by_hand(name):
    opt, p1, p2 = EXPECTED[name]
    got1, got2 = _two_steps(opt)
    assert got1 == pytest.approx(p1, rel=1e-9)
    assert got2 == pytest.approx(p2, rel=1e-9)


@pytest.mark.parametrize("cls", [SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam])
def test_float32_stays_float32_in_place(cls):
    p = np.ones((2, 3), np.float32)
    ident = id(p)
    cls(lr=0.01).update([p], [np.full((2, 3), 0.5, np.float32)])
    assert id(p) == ident and p.dtype == np.float32 and (p < 1).all()


def test_weight_decay_is_added_to_the_gradient():
    p = np.array([2.0])
    SGD(lr=0.1, weight_decay=0.01).update([p], [np.array([0.5])])
    assert p[0] == pytest.approx(2.0 - 0.1 * (0.5 + 0.01 * 2.0), rel=1e-12)
    p = np.array([2.0])
    Adam(lr=0.1, weight_decay=0.5, eps=1e-12).update([p], [np.array([-1.0])])
    # g = -1 + 0.5 * 2 = 0: Adam's first step is 0 / (0 + eps) = 0
    assert p[0] == pytest.approx(2.0, abs=1e-9)


def test_optimizer_errors():
    opt = Momentum()
    with pytest.raises(ValueError, match=r"grads\[0\]: expected shape \(2,\)"):
        opt.update([np.zeros(2)], [np.zeros(3)])
    with pytest.raises(ValueError, match="grads: expected 1 arrays"):
        opt.update([np.zeros(2)], [])
    opt.update([np.zeros(2)], [np.zeros(2)])
    with pytest.raises(ValueError, match="params"):
        opt.update([np.zeros(2), np.zeros(2)], [np.zeros(2), np.zeros(2)])
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="lr"):
            SGD(lr=bad)
    with pytest.raises(ValueError, match="momentum"):
        Momentum(momentum=1.0)


def test_clip_grads():
    a, b = np.array([3.0, 0.0]), np.array([[4.0]])
    norm = clip_grads([a, b], max_norm=1.0)
    assert norm == pytest.approx(5.0)
    assert math.sqrt((a ** 2).sum() + (b ** 2).sum()) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(a, [0.6, 0.0], rtol=1e-5)
    c = np.array([0.3, 0.4], np.float32)
    assert clip_grads([c], 1.0) == pytest.approx(0.5, rel=1e-6)
    np.testing.assert_array_equal(c, np.array([0.3, 0.4], np.float32))   # untouched
    shared = np.array([3.0, 4.0])
    assert clip_grads([shared, shared], 10.0) == pytest.approx(5.0)      # counted once


def test_step_decay_zaremba():
    opt = SGD(lr=1.0)
    sched = StepDecay(opt, decay=0.5, start_epoch=4)
    lrs = [sched.step(epoch) for epoch in range(1, 8)]
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5, 0.25, 0.125]
    assert opt.lr == 0.125


def test_reduce_on_plateau_textbook():
    opt = SGD(lr=20.0)
    sched = ReduceOnPlateau(opt, factor=0.25)
    improved = [sched.step(v) for v in (150.0, 140.0, 145.0, 130.0, 135.0)]
    assert improved == [True, True, False, True, False]
    assert opt.lr == 20.0 / 4 / 4
    assert sched.best == 130.0
