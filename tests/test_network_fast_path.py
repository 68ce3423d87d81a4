"""A network's common forward (no state, no lengths, no dropout in
training, not stateful) runs as one compiled call
(_dispatch.network_forward_common); everything else, and any xs or params
that need a conversion or an error, takes the checked Python path.  Both
must give the same results bitwise and the same errors."""
import numpy as np
import pytest

import rnnfast

CELLS = {"rnn": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU}


def zeros_like_state(net, N):
    shape = (net.num_layers * net.num_directions, N, net.hidden_size)
    h = np.zeros(shape, net.dtype)
    return (h, h.copy()) if net.cell == "lstm" else h


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)])
@pytest.mark.parametrize("training", [False, True])
def test_common_path_matches_the_checked_path_bitwise(cell, dtype, layers, bidirectional,
                                                      training, general_path_calls):
    rng = np.random.default_rng(1)
    nets = [CELLS[cell](5, 7, num_layers=layers, bidirectional=bidirectional, dtype=dtype,
                        random_state=3).train(training) for _ in range(2)]
    xs = rng.standard_normal((4, 6, 5)).astype(dtype)
    fast = nets[0].forward(xs)
    assert general_path_calls == []                  # the compiled call ran it
    checked = nets[1].forward(xs, state=zeros_like_state(nets[1], 4))
    assert general_path_calls == [1]
    np.testing.assert_array_equal(fast[0], checked[0])
    for a, b in zip(np.atleast_1d(fast[1]) if cell != "lstm" else fast[1],
                    np.atleast_1d(checked[1]) if cell != "lstm" else checked[1]):
        np.testing.assert_array_equal(a, b)
    if training:                                     # the caches serve the backward alike
        dhs = rng.standard_normal(fast[0].shape).astype(dtype)
        dxs = [net.backward(dhs) for net in nets]
        np.testing.assert_array_equal(dxs[0], dxs[1])
        for g0, g1 in zip(nets[0].grads, nets[1].grads):
            np.testing.assert_array_equal(g0, g1)
        np.testing.assert_array_equal(np.asarray(nets[0].dstate), np.asarray(nets[1].dstate))


def test_other_calls_take_the_checked_path(general_path_calls):
    rng = np.random.default_rng(2)
    xs = rng.standard_normal((3, 4, 5)).astype(np.float32)
    net = rnnfast.GRU(5, 6, random_state=0)
    net.forward(xs, lengths=[4, 2, 1])
    net.forward(xs.tolist())                                     # converted
    net.forward(xs.astype(np.float64))                           # converted
    net.forward(np.asfortranarray(xs))                           # made contiguous
    rnnfast.GRU(5, 6, num_layers=2, dropout=0.5, random_state=0).forward(xs)   # dropout
    stateful = rnnfast.GRU(5, 6, stateful=True, random_state=0)
    stateful.forward(xs)
    stateful.forward(xs)
    assert len(general_path_calls) == 7
    rnnfast.GRU(5, 6, num_layers=2, dropout=0.5, random_state=0).eval().forward(xs)
    assert len(general_path_calls) == 7                          # eval: no mask, common


def test_bad_input_is_refused_alike_on_the_common_path():
    net = rnnfast.LSTM(5, 6, random_state=0)
    xs = np.ones((2, 3, 5), np.float32)
    with pytest.raises(ValueError, match=r"xs: expected shape \(N, T, 5\), got shape \(2, 3, 4\)"):
        net.forward(np.ones((2, 3, 4), np.float32))
    xs[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="xs: contains NaN or Inf"):
        net.forward(xs)
    assert net._caches is None                       # nothing of the call was kept
    net.params[1] = net.params[1].T.copy()           # Wh replaced by one of another shape
    with pytest.raises(ValueError, match=r"params\[1\]"):
        net.forward(np.ones((2, 3, 5), np.float32))
