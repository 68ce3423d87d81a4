"""Finite-difference gradient checks in float64 for every cell, Time layer
and network option: every parameter gradient, dx, dh0 and dc0."""
import numpy as np
import pytest

import rnnfast
from rnnfast._layout import N_GATES, bias_shape
from tests._gradcheck import assert_grad_close, numerical_grad

N, T, D, H = 3, 4, 3, 2

CELL_OPTIONS = [
    ("rnn", {"nonlinearity": "tanh"}),
    ("rnn", {"nonlinearity": "relu"}),
    ("lstm", {}),
    ("gru", {"reset_after": False}),
    ("gru", {"reset_after": True}),
]
IDS = ["rnn-tanh", "rnn-relu", "lstm", "gru-reset-before", "gru-reset-after"]


def _weights(rng, cell, opts, d_in=D):
    G = N_GATES[cell] * H
    return [rng.standard_normal(s) * 0.6 for s in
            ((d_in, G), (H, G), bias_shape(cell, H, opts.get("reset_after", False)))]


# ------------------------------------------------------------------ cells
@pytest.mark.parametrize("cell,opts", CELL_OPTIONS, ids=IDS)
def test_cell_gradients(cell, opts, rng):
    cls = {"rnn": rnnfast.RNNCell, "lstm": rnnfast.LSTMCell, "gru": rnnfast.GRUCell}[cell]
    layer = cls(*_weights(rng, cell, opts), **opts)
    x = rng.standard_normal((N, D))
    h = rng.standard_normal((N, H))
    c = rng.standard_normal((N, H))
    gh = rng.standard_normal((N, H))
    gc = rng.standard_normal((N, H))

    def loss():
        if cell == "lstm":
            hn, cn = layer.forward(x, h, c)
            return np.sum(hn * gh) + np.sum(cn * gc)
        return np.sum(layer.forward(x, h) * gh)

    loss()
    if cell == "lstm":
        dx, dh, dc = layer.backward(gh, gc)
        assert_grad_close(dc, numerical_grad(loss, c), "c_prev")
    else:
        dx, dh = layer.backward(gh)
    grads = [g.copy() for g in layer.grads]
    assert_grad_close(dx, numerical_grad(loss, x), "x")
    assert_grad_close(dh, numerical_grad(loss, h), "h_prev")
    for name, p, g in zip(("Wx", "Wh", "b"), layer.params, grads):
        assert_grad_close(g, numerical_grad(loss, p), name)


# ------------------------------------------------------------ Time layers
@pytest.mark.parametrize("stateful", [False, True], ids=["fresh", "stateful"])
@pytest.mark.parametrize("cell,opts", CELL_OPTIONS, ids=IDS)
def test_time_layer_gradients(cell, opts, stateful, rng):
    cls = {"rnn": rnnfast.TimeRNN, "lstm": rnnfast.TimeLSTM, "gru": rnnfast.TimeGRU}[cell]
    layer = cls(*_weights(rng, cell, opts), stateful=stateful, **opts)
    xs = rng.standard_normal((N, T, D))
    h0 = rng.standard_normal((N, H))
    c0 = rng.standard_normal((N, H))
    g = rng.standard_normal((N, T, H))

    def loss():
        if stateful:   # the state a previous chunk left behind
            layer.set_state(h0, c0 if cell == "lstm" else None)
        return np.sum(layer.forward(xs) * g)

    loss()
    dxs = layer.backward(g)
    grads = [p.copy() for p in layer.grads]
    dh0 = layer.dh.copy()
    assert_grad_close(dxs, numerical_grad(loss, xs), "xs")
    for name, p, gr in zip(("Wx", "Wh", "b"), layer.params, grads):
        assert_grad_close(gr, numerical_grad(loss, p), name)
    if stateful:
        assert_grad_close(dh0, numerical_grad(loss, h0), "h0")
        if cell == "lstm":
            assert_grad_close(layer.dc, numerical_grad(loss, c0), "c0")


# --------------------------------------------------------------- networks
NET_OPTIONS = [
    dict(),
    dict(reverse_lengths=True),
    dict(lengths=[4, 2, 3]),
    dict(num_layers=2),
    dict(bidirectional=True),
    dict(bidirectional=True, num_layers=2, lengths=[1, 4, 3]),
    dict(num_layers=3),
    dict(lengths=[2, 2, 2]),
    dict(num_layers=2, lengths=[3, 1, 4]),
    dict(bias=False, bidirectional=True, num_layers=2, lengths=[2, 4, 3]),
]
NET_IDS = ["plain", "full-lengths", "lengths", "2-layers", "bidirectional",
           "bi-2-layers-lengths", "3-layers", "equal-short-lengths", "2-layers-lengths",
           "no-bias-bi-2-layers-lengths"]


def _network(cell, opts, net_opts):
    cls = {"rnn": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU}[cell]
    kwargs = dict(num_layers=net_opts.get("num_layers", 1),
                  bidirectional=net_opts.get("bidirectional", False),
                  bias=net_opts.get("bias", True), dtype=np.float64, random_state=3)
    net = cls(D, H, **kwargs, **opts)
    for p in net.params:     # larger than the default init, to exercise the gates
        p *= 1.5 * np.sqrt(H)
    return net


@pytest.mark.parametrize("net_opts", NET_OPTIONS, ids=NET_IDS)
@pytest.mark.parametrize("cell,opts", CELL_OPTIONS, ids=IDS)
def test_network_gradients(cell, opts, net_opts, rng):
    net = _network(cell, opts, net_opts)
    lengths = net_opts.get("lengths")
    if net_opts.get("reverse_lengths"):
        lengths = [T] * N
    xs, state, g, gh, gc = _random_problem(rng, net, cell)
    _check_network(net, cell, xs, state, lengths, g, gh, gc)


def _check_network(net, cell, xs, state, lengths, g, gh, gc, replay=lambda: None,
                   initial=None):
    """Every gradient of sum(hs*g) + sum(h_n*gh) (+ sum(c_n*gc)) against central
    differences: xs, the initial state (h0, c0) and every parameter.  replay()
    runs before each forward (e.g. to fix the dropout masks, or to set a
    stateful network's carried state); `initial` is the state the forward
    starts from when it is not `state` (a carried one: forward gets None)."""
    initial = state if initial is None else initial
    def loss():
        replay()
        hs, fin = net.forward(xs, state, lengths)
        if cell == "lstm":
            return np.sum(hs * g) + np.sum(fin[0] * gh) + np.sum(fin[1] * gc)
        return np.sum(hs * g) + np.sum(fin * gh)

    loss()
    dxs = net.backward(g, (gh, gc) if cell == "lstm" else gh)
    grads = [p.copy() for p in net.grads]
    dstate = net.dstate
    assert_grad_close(dxs, numerical_grad(loss, xs), "xs")
    if cell == "lstm":
        assert_grad_close(dstate[0], numerical_grad(loss, initial[0]), "h0")
        assert_grad_close(dstate[1], numerical_grad(loss, initial[1]), "c0")
    else:
        assert_grad_close(dstate, numerical_grad(loss, initial), "h0")
    for i, (p, gr) in enumerate(zip(net.params, grads)):
        assert_grad_close(gr, numerical_grad(loss, p), f"params[{i}]")


def _random_problem(rng, net, cell, n=N, t=T):
    nd, L = net.num_directions, net.num_layers * net.num_directions
    xs = rng.standard_normal((n, t, D))
    h0, c0 = rng.standard_normal((L, n, H)), rng.standard_normal((L, n, H))
    state = (h0, c0) if cell == "lstm" else h0
    return (xs, state, rng.standard_normal((n, t, nd * H)), rng.standard_normal((L, n, H)),
            rng.standard_normal((L, n, H)))


# Dropout between layers in training: with the masks fixed (the network's
# dropout generator replayed before each forward) the network is one function.
@pytest.mark.parametrize("net_opts", [dict(num_layers=2),
                                      dict(num_layers=3, bidirectional=True, lengths=[4, 1, 3])],
                         ids=["2-layers", "bi-3-layers-lengths"])
@pytest.mark.parametrize("cell,opts", CELL_OPTIONS, ids=IDS)
def test_network_gradients_with_dropout(cell, opts, net_opts, rng):
    net = _network(cell, opts, net_opts)
    net.dropout = 0.4
    start = net._dropout_rng.bit_generator.state

    def replay():
        net._dropout_rng.bit_generator.state = start

    xs, state, g, gh, gc = _random_problem(rng, net, cell)
    replay()
    hs, _ = net.forward(xs, state, net_opts.get("lengths"))
    replay()
    assert not np.array_equal(hs, _network(cell, opts, net_opts).forward(
        xs, state, net_opts.get("lengths"))[0]), "the dropout masks changed nothing"
    _check_network(net, cell, xs, state, net_opts.get("lengths"), g, gh, gc, replay)


# Stateful networks (truncated BPTT): the second chunk starts from the state
# the first left behind; its dstate is dL/d(that carried state).
@pytest.mark.parametrize("net_opts", [dict(), dict(num_layers=2, bidirectional=True)],
                         ids=["plain", "bi-2-layers"])
@pytest.mark.parametrize("cell,opts", CELL_OPTIONS, ids=IDS)
def test_stateful_network_gradients(cell, opts, net_opts, rng):
    net = _network(cell, opts, net_opts)
    net.stateful = True
    lengths = [2, 4, 3] if net_opts else None
    xs, _, g, gh, gc = _random_problem(rng, net, cell)
    net.forward(rng.standard_normal((N, 3, D)), lengths=[3, 1, 2] if lengths else None)
    carried = (net.state[0].copy(), net.state[1].copy()) if cell == "lstm" else net.state.copy()

    def replay():
        net.state = carried       # the carried state, perturbed in place by the check
    _check_network(net, cell, xs, None, lengths, g, gh, gc, replay, initial=carried)


# Batch of one row and sequences of one step.
@pytest.mark.parametrize("n,t,lengths", [(1, 1, None), (1, 3, [2]), (3, 1, [1, 1, 1])],
                         ids=["N1-T1", "N1-ragged", "T1-lengths"])
@pytest.mark.parametrize("cell,opts", CELL_OPTIONS, ids=IDS)
def test_network_gradients_tiny_shapes(cell, opts, n, t, lengths, rng):
    net = _network(cell, opts, dict(num_layers=2, bidirectional=True))
    xs, state, g, gh, gc = _random_problem(rng, net, cell, n, t)
    _check_network(net, cell, xs, state, lengths, g, gh, gc)


@pytest.mark.parametrize("cell,opts", CELL_OPTIONS, ids=IDS)
def test_cell_and_time_layer_gradients_one_row(cell, opts, rng):
    """N = 1 (and T = 1 for the Time layer), from a given state."""
    tcls = {"rnn": rnnfast.TimeRNN, "lstm": rnnfast.TimeLSTM, "gru": rnnfast.TimeGRU}[cell]
    layer = tcls(*_weights(rng, cell, opts), stateful=True, **opts)
    xs, h0, c0 = (rng.standard_normal(s) for s in ((1, 1, D), (1, H), (1, H)))
    g = rng.standard_normal((1, 1, H))

    def loss():
        layer.set_state(h0, c0 if cell == "lstm" else None)
        return np.sum(layer.forward(xs) * g)

    loss()
    dxs = layer.backward(g)
    grads = [p.copy() for p in layer.grads]
    dh0, dc0 = layer.dh.copy(), None if layer.dc is None else layer.dc.copy()
    assert_grad_close(dxs, numerical_grad(loss, xs), "xs")
    assert_grad_close(dh0, numerical_grad(loss, h0), "h0")
    if cell == "lstm":
        assert_grad_close(dc0, numerical_grad(loss, c0), "c0")
    for name, p, gr in zip(("Wx", "Wh", "b"), layer.params, grads):
        assert_grad_close(gr, numerical_grad(loss, p), name)
