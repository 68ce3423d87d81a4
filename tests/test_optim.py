"""Optimizers against steps worked out by hand (two steps for the stateful
ones), weight decay, in-place updates, clip_grads and the schedules."""
import math

import numpy as np
import pytest

from rnnfast.optim import (SGD, AdaGrad, Adam, AdamW, Momentum, Nesterov, ReduceOnPlateau,
                           RMSprop, StepDecay, clip_grads, global_norm)
from _torch_twin import TORCH_TWINS

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
    assert clip_grads([shared, shared[:]], 1.0) == pytest.approx(5.0)    # a view of it too
    np.testing.assert_allclose(shared, [0.6, 0.8], rtol=1e-5)            # and scaled once


def test_clip_grads_leaves_non_finite_grads_alone():
    """As the Trainer does: a non-finite norm is returned for the caller to
    see, and the grads are not scaled (max_norm/inf would make inf entries NaN)."""
    for bad in (np.inf, np.nan):
        g, h = np.array([bad, 1.0]), np.array([2.0])
        norm = clip_grads([g, h], 1.0)
        assert not math.isfinite(norm)
        np.testing.assert_array_equal(g, [bad, 1.0])
        np.testing.assert_array_equal(h, [2.0])


def test_clip_grads_float32_norm_past_float32_range():
    """A float32 gradient whose squares overflow float32 (entries ~1e20) has
    a finite norm: clip_grads scales it (as before global_norm, which summed
    the squares in float64), and the Trainer's global_norm says it is finite."""
    g = np.full(10, 1e20, np.float32)
    expected = math.sqrt(10) * 1e20
    assert global_norm([g]) == pytest.approx(expected, rel=1e-6)
    norm = clip_grads([g], 1.0)
    assert norm == pytest.approx(expected, rel=1e-6)
    assert float(np.sqrt(np.square(g, dtype=np.float64).sum())) == pytest.approx(1.0, rel=1e-5)
    many = np.full(10 ** 6, 1e17, np.float32)        # each square fits, their sum does not
    assert global_norm([many]) == pytest.approx(1e20, rel=1e-5)


def test_step_decay_zaremba():
    opt = SGD(lr=1.0)
    sched = StepDecay(opt, decay=0.5, start_epoch=4)
    lrs = [sched.step(epoch) for epoch in range(1, 8)]
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5, 0.25, 0.125]
    assert opt.lr == 0.125
    for bad in (0, -3, 2.5, True, "5"):                 # epochs count from 1
        with pytest.raises(ValueError, match=r"epoch: expected an integer >= 1"):
            sched.step(bad)
    assert opt.lr == 0.125


def test_reduce_on_plateau_textbook():
    opt = SGD(lr=20.0)
    sched = ReduceOnPlateau(opt, factor=0.25)
    improved = [sched.step(v) for v in (150.0, 140.0, 145.0, 130.0, 135.0)]
    assert improved == [True, True, False, True, False]
    assert opt.lr == 20.0 / 4 / 4
    assert sched.best == 130.0


# ------------------------------------------------ tied (shared) parameters
@pytest.mark.parametrize("name", list(TORCH_TWINS))
def test_tied_param_listed_twice_steps_once_on_the_summed_gradient(torch, name):
    make, make_torch = TORCH_TWINS[name]
    rng = np.random.default_rng(7)
    p0 = rng.standard_normal((3, 4))
    W, other = p0.copy(), np.ones(5)
    alias = W.reshape(3, 4)              # another view of exactly W's memory: also W
    opt = make()
    tw = torch.tensor(p0, requires_grad=True)
    topt = make_torch(torch, [tw])
    for _ in range(3):
        g1, g2, g3 = (rng.standard_normal((3, 4)) for _ in range(3))
        grads = [g1, np.zeros(5), g2, g3]
        saved = [g.copy() for g in grads]
        opt.update([W, other, W, alias], grads)       # W used three times (DLFS2 style)
        for g, s in zip(grads, saved):
            np.testing.assert_array_equal(g, s)        # grads are left alone
        tw.grad = torch.tensor(g1 + g2 + g3)
        topt.step()
        np.testing.assert_allclose(W, tw.detach().numpy(), rtol=1e-10, atol=1e-12)
    if opt.state is not None:
        assert len(opt.state) == 2                     # one state per distinct array


@pytest.mark.parametrize("cls", [SGD, Adam])
@pytest.mark.parametrize("bad, shown", [([1.0, 2.0], "list"), (np.float64(1.0), "float64"),
                                        (1.0, "float"), (np.array([1, 2]), "int64")])
def test_params_that_cannot_be_updated_in_place_are_refused(cls, bad, shown):
    good = np.zeros(2)
    opt = cls(lr=0.5)
    with pytest.raises(TypeError, match=rf"params\[1\]: .*{shown}"):
        opt.update([good, bad], [np.ones(2), np.ones(np.shape(bad))])
    np.testing.assert_array_equal(good, 0.0)           # nothing half done
    assert opt.t == 0 and opt.state is None


@pytest.mark.parametrize("cls", [SGD, Momentum, Adam])
def test_a_refused_update_leaves_no_partial_step(cls):
    a, b = np.zeros(2), np.zeros(2)
    b.setflags(write=False)
    opt = cls(lr=0.1)
    with pytest.raises(ValueError, match=r"params\[1\]: .*read-only"):
        opt.update([a, b], [np.ones(2), np.ones(2)])
    np.testing.assert_array_equal(a, 0.0)
    assert opt.t == 0
    with pytest.raises(TypeError, match=r"grads\[1\]: .*list"):
        opt.update([a, np.zeros(2)], [np.ones(2), [1.0, 1.0]])
    np.testing.assert_array_equal(a, 0.0)
    assert opt.t == 0


def test_params_whose_shapes_change_under_state_are_named():
    opt = Adam()
    p = np.zeros((2, 3))
    opt.update([np.zeros(4), p], [np.ones(4), np.ones((2, 3))])
    with pytest.raises(ValueError, match=r"params\[1\]: shape \(2, 3\) .* now \(3, 2\).*"
                                         r"new optimizer"):
        opt.update([np.zeros(4), np.zeros((3, 2))], [np.ones(4), np.ones((3, 2))])
    p.shape = (6,)                                     # the same array, reshaped in place
    with pytest.raises(ValueError, match=r"params\[1\]: shape \(2, 3\) .* now \(6,\)"):
        opt.update([np.zeros(4), p], [np.ones(4), np.ones(6)])


def test_rates_are_converted_with_float_and_named():
    from fractions import Fraction
    assert SGD(lr=Fraction(1, 10)).lr == 0.1
    for bad in (10 ** 400, -(10 ** 400), "0.1", None, True):
        with pytest.raises(ValueError, match="^lr: expected a number > 0"):
            SGD(lr=bad)
    with pytest.raises(ValueError, match="^momentum: expected a number in"):
        Momentum(momentum=Fraction(1))


def test_reduce_on_plateau_nan_is_a_bad_epoch_never_the_best():
    opt = SGD(lr=1.0)
    sched = ReduceOnPlateau(opt, factor=0.5)
    improved = [sched.step(v) for v in (float("nan"), 5.0, 4.0, float("nan"), 3.0)]
    assert improved == [False, True, True, False, True]    # torch: best = inf at first
    assert opt.lr == 0.25 and sched.best == 3.0
    sched = ReduceOnPlateau(SGD(lr=1.0), factor=0.5)
    assert sched.step(float("inf")) is False               # inf is no improvement on inf
    assert sched.optimizer.lr == 0.5


def test_reduce_on_plateau_mode_max_cuts_lr_when_the_value_stops_rising():
    opt = SGD(lr=1.0)
    sched = ReduceOnPlateau(opt, factor=0.5, mode="max")
    improved = [sched.step(v) for v in (0.5, 0.6, 0.6, 0.7, float("nan"), 0.65, 0.8)]
    assert improved == [True, True, False, True, False, False, True]
    assert opt.lr == 0.125 and sched.best == 0.8
    sched = ReduceOnPlateau(SGD(lr=1.0), mode="max")
    assert sched.step(-float("inf")) is False              # -inf is no improvement on -inf
    with pytest.raises(ValueError, match="^mode: expected 'min' or 'max', got 'maximum'"):
        ReduceOnPlateau(SGD(lr=1.0), mode="maximum")


@pytest.mark.parametrize("mode", ["min", "max"])
def test_reduce_on_plateau_follows_torch(torch, mode):
    """The lr after each epoch as torch's ReduceLROnPlateau with patience 0
    and no threshold, on values that repeat, improve, worsen and are NaN."""
    rng = np.random.default_rng(3)
    values = rng.integers(0, 6, 40).astype(float)
    values[rng.random(40) < 0.1] = float("nan")
    opt = SGD(lr=1.0)
    sched = ReduceOnPlateau(opt, factor=0.5, min_lr=0.01, mode=mode)
    w = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([w], lr=1.0)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        topt, mode=mode, factor=0.5, patience=0, threshold=0.0, min_lr=0.01)
    for v in values:
        sched.step(v)
        tsched.step(v)
        assert opt.lr == topt.param_groups[0]["lr"], (mode, v)
    assert opt.lr < 1.0 and sched.best == tsched.best


def test_reduce_on_plateau_never_raises_the_lr():
    opt = SGD(lr=0.01)
    sched = ReduceOnPlateau(opt, factor=0.5, min_lr=0.1)
    sched.step(1.0)
    sched.step(2.0)
    assert opt.lr == 0.01
    opt.lr = 0.3
    sched.step(2.0)
    assert opt.lr == 0.15
    sched.step(2.0)
    assert opt.lr == 0.1                                   # floored at min_lr


@pytest.mark.parametrize("cls, nesterov", [(Momentum, False), (Nesterov, True)])
def test_momentum_matches_torch_after_lr_change_only_with_rescaled_velocity(torch, cls,
                                                                           nesterov):
    """The documented difference and its documented workaround."""
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal(4)
    grads = [rng.standard_normal(4) for _ in range(6)]
    for rescale in (False, True):
        p, opt = p0.copy(), cls(lr=0.1, momentum=0.9)
        t = torch.tensor(p0, requires_grad=True)
        topt = torch.optim.SGD([t], lr=0.1, momentum=0.9, nesterov=nesterov)
        for i, g in enumerate(grads):
            if i == 3:                                   # a schedule cuts lr
                if rescale:
                    for (v,) in opt.state:
                        v *= 0.01 / opt.lr
                opt.lr = topt.param_groups[0]["lr"] = 0.01
            opt.update([p], [g])
            t.grad = torch.tensor(g)
            topt.step()
        close = np.allclose(p, t.detach().numpy(), rtol=1e-12, atol=1e-14)
        assert close == rescale
    assert "torch" in cls.__doc__ and "lr" in cls.__doc__



@pytest.mark.parametrize("cls", [SGD, Adam])
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_pickled_or_copied_optimizer_holds_its_state_not_the_params(cls, how):
    """The grouping cache of the last params list (arrays kept alive by
    reference) is not part of an optimizer's state: a copy made alone
    would otherwise carry a copy of every parameter (an SGD as large as
    the model) and ids that mean nothing in the copy.  The copy steps a
    copy of the params as the original steps them."""
    import copy
    import pickle
    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((100, 100)), rng.standard_normal(100)
    params = [W, b, W]                            # W tied: listed twice
    grads = [rng.standard_normal(p.shape) for p in params]
    opt = cls(lr=0.1)
    opt.update(params, grads)
    state_bytes = 0 if opt.state is None else sum(a.nbytes for s in opt.state for a in s)
    assert len(pickle.dumps(opt)) < state_bytes + 4096
    twin = copy.deepcopy(opt) if how == "deepcopy" else pickle.loads(pickle.dumps(opt))
    assert twin._layout_params is None
    W2, b2 = W.copy(), b.copy()
    twin.update([W2, b2, W2], grads)
    opt.update(params, grads)
    np.testing.assert_array_equal(W2, W)
    np.testing.assert_array_equal(b2, b)


def test_adamw_decays_the_params_not_the_gradient_as_torch(torch, tmp_path):
    """AdamW's weight decay shrinks the params (decoupled), unlike Adam's
    (added to the gradient); against torch.optim.AdamW over 6 steps with an
    lr change, and its state through a checkpoint."""
    import rnnfast
    import rnnfast.io as rio
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal((3, 4))
    p, q = p0.copy(), p0.copy()
    opt, coupled = AdamW(lr=0.1, weight_decay=0.05), Adam(lr=0.1, weight_decay=0.05)
    tp = torch.tensor(p0, requires_grad=True)
    topt = torch.optim.AdamW([tp], lr=0.1, weight_decay=0.05)
    for k in range(6):
        g = rng.standard_normal((3, 4))
        if k == 3:
            opt.lr = topt.param_groups[0]["lr"] = 0.02
        opt.update([p], [g])
        coupled.update([q], [g])
        tp.grad = torch.tensor(g)
        topt.step()
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert np.abs(p - q).max() > 1e-3                  # not Adam's coupled L2
    # through a checkpoint: a fresh AdamW (other lr and weight decay, no
    # state) given the saved one's state steps on exactly as torch's does
    net = rnnfast.RNN(3, 4, dtype=np.float64, random_state=0)     # params[0]: (3, 4)
    net.params[0][...] = p
    rio.save_checkpoint(tmp_path / "adamw.npz", net, opt)
    back = rnnfast.RNN(3, 4, dtype=np.float64, random_state=1)
    resumed = AdamW(lr=0.5, weight_decay=0.3)
    rio.load_checkpoint(tmp_path / "adamw.npz", back, resumed)
    assert (resumed.lr, resumed.weight_decay, resumed.t) == (0.02, 0.05, 6)
    p = back.params[0]
    np.testing.assert_array_equal(p, net.params[0])
    for k in range(3):
        g = rng.standard_normal((3, 4))
        resumed.update([p], [g])
        tp.grad = torch.tensor(g)
        topt.step()
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert AdamW().weight_decay == 0.01 == torch.optim.AdamW([tp]).defaults["weight_decay"]


@pytest.mark.parametrize("bad, shown", [([1.0, 2.0], "list"), (np.array([1, 2]), "dtype int64"),
                                        (3.0, "float")])
def test_global_norm_and_clip_grads_refuse_what_is_not_a_float_array(bad, shown):
    from rnnfast.optim import global_norm
    good = np.ones(3)
    for fn in (global_norm, lambda g: clip_grads(g, 1.0)):
        with pytest.raises(TypeError, match=rf"grads\[1\]: expected a floating-point numpy "
                                            rf"array, got {shown}"):
            fn([good, bad])
    np.testing.assert_array_equal(good, 1.0)            # nothing scaled
