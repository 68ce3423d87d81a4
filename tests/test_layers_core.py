"""Cells, Time layers and networks: protocol, state handling, dtypes,
memory orders, stateful chunks, dropout and initialisation."""
import numpy as np
import pytest

import rnnfast
from rnnfast import _reference


def _lstm_weights(rng, D=3, H=4, dtype=np.float64):
    return [(rng.standard_normal(s) * 0.5).astype(dtype)
            for s in ((D, 4 * H), (H, 4 * H), (4 * H,))]


def test_params_are_the_arrays_given(rng):
    Wx, Wh, b = _lstm_weights(rng)
    layer = rnnfast.TimeLSTM(Wx, Wh, b)
    assert layer.params[0] is Wx and layer.params[1] is Wh and layer.params[2] is b
    cell = rnnfast.LSTMCell(Wx, Wh, b)
    assert cell.params[0] is Wx          # shared weights stay shared
    assert [g.shape for g in layer.grads] == [p.shape for p in layer.params]


def test_params_converted_when_not_c_contiguous_float(rng):
    Wx, Wh, b = _lstm_weights(rng)
    layer = rnnfast.TimeLSTM(np.asfortranarray(Wx), Wh.astype(np.float32), b)
    assert layer.params[0].flags.c_contiguous
    assert layer.dtype == np.float64     # result type of the weights given


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_follows_weights(dtype, rng):
    layer = rnnfast.TimeGRU(*[w.astype(dtype) for w in (
        rng.standard_normal((3, 6)), rng.standard_normal((2, 6)), rng.standard_normal(6))])
    hs = layer.forward(rng.standard_normal((2, 3, 3)))        # float64 input converted
    assert hs.dtype == dtype
    dxs = layer.backward(np.ones_like(hs))
    assert dxs.dtype == dtype and all(g.dtype == dtype for g in layer.grads)


@pytest.mark.parametrize("make", [
    lambda a: np.asfortranarray(a),
    lambda a: (lambda buf: (buf.__setitem__((Ellipsis, slice(None, None, 2)), a), buf)[1])(
        np.zeros(a.shape[:2] + (2 * a.shape[2],)))[:, :, ::2],
    lambda a: np.ascontiguousarray(a[::-1])[::-1],
    lambda a: np.ascontiguousarray(a[:, ::-1])[:, ::-1],
    lambda a: (lambda v: (v.setflags(write=False), v)[1])(a.copy()),
    lambda a: a.astype(np.float32),
], ids=["fortran", "strided", "double-reversed", "negative-stride", "read-only", "float32"])
def test_memory_orders_give_the_same_result(make, rng):
    net = rnnfast.LSTM(3, 4, dtype=np.float64, random_state=0)
    xs = rng.standard_normal((2, 5, 3))
    made = make(xs)
    # each case is another memory layout, dtype or flag than xs's own
    assert (made.strides, made.dtype, made.flags.writeable) != (xs.strides, xs.dtype, True)
    if made.dtype == np.float32:
        xs = xs.astype(np.float32).astype(np.float64)
    ref, _ = net.forward(xs)
    got, _ = net.forward(make(xs))
    np.testing.assert_array_equal(got, ref)


def test_integer_and_bool_inputs_are_converted(rng):
    net = rnnfast.GRU(2, 3, random_state=0)
    xi = rng.integers(-2, 3, (2, 4, 2))
    np.testing.assert_array_equal(net.forward(xi)[0], net.forward(xi.astype(np.float32))[0])
    xb = xi > 0
    np.testing.assert_array_equal(net.forward(xb)[0], net.forward(xb.astype(np.float32))[0])


@pytest.mark.parametrize("cls", [rnnfast.TimeRNN, rnnfast.TimeLSTM, rnnfast.TimeGRU])
def test_stateful_chunks_equal_the_whole_sequence(cls, rng):
    H, D = 4, 3
    G = {rnnfast.TimeRNN: 1, rnnfast.TimeLSTM: 4, rnnfast.TimeGRU: 3}[cls] * H
    W = [rng.standard_normal(s) * 0.5 for s in ((D, G), (H, G), (G,))]
    xs = rng.standard_normal((2, 12, D))
    whole = cls(*W).forward(xs)
    chunked = cls(*W, stateful=True)
    parts = [chunked.forward(xs[:, i:i + k]) for i, k in ((0, 5), (5, 4), (9, 3))]
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, rtol=1e-12, atol=1e-12)
    # a non-stateful layer starts every forward from zeros
    fresh = cls(*W)
    fresh.forward(xs[:, :5])
    np.testing.assert_allclose(fresh.forward(xs[:, 5:9]), cls(*W).forward(xs[:, 5:9]))


def test_a_stateful_layers_public_state_is_checked_like_set_state(rng):
    """.h and .c are attributes a user may assign: a state set by hand is
    checked as set_state checks it, and a list works as an array."""
    H, D = 4, 3
    W = [rng.standard_normal(s) * 0.5 for s in ((D, 4 * H), (H, 4 * H), (4 * H,))]
    xs = rng.standard_normal((2, 5, D))
    layer = rnnfast.TimeLSTM(*W, stateful=True)
    layer.forward(xs)
    h, c = layer.h.copy(), layer.c.copy()
    expected = layer.forward(xs)
    layer.h, layer.c = h.tolist(), c
    np.testing.assert_array_equal(layer.forward(xs), expected)
    layer.c = None
    with pytest.raises(ValueError, match="c: a stateful LSTM carries h and c"):
        layer.forward(xs)
    layer.h, layer.c = np.zeros((2, H + 1)), c
    with pytest.raises(ValueError, match=r"h: expected shape \(N, 4\)"):
        layer.forward(xs)
    layer.reset_state()
    layer.forward(xs)


@pytest.mark.parametrize("cls", [rnnfast.TimeRNN, rnnfast.TimeLSTM, rnnfast.TimeGRU])
def test_stateful_gradients_stop_at_the_chunk_boundary(cls, rng):
    """Backward of chunk 2 equals the backward of a fresh layer started from the
    carried state, and does not reach the inputs of chunk 1."""
    H, D = 3, 2
    G = {rnnfast.TimeRNN: 1, rnnfast.TimeLSTM: 4, rnnfast.TimeGRU: 3}[cls] * H
    W = [rng.standard_normal(s) * 0.5 for s in ((D, G), (H, G), (G,))]
    xs = rng.standard_normal((2, 8, D))
    layer = cls(*W, stateful=True)
    layer.forward(xs[:, :4])
    h, c = layer.h.copy(), None if layer.c is None else layer.c.copy()
    hs2 = layer.forward(xs[:, 4:])
    g = rng.standard_normal(hs2.shape)
    dxs2 = layer.backward(g)
    grads = [p.copy() for p in layer.grads]

    other = cls(*W, stateful=True)
    other.set_state(h, c)
    np.testing.assert_allclose(other.forward(xs[:, 4:]), hs2)
    np.testing.assert_allclose(other.backward(g), dxs2)
    for a, b in zip(grads, other.grads):
        np.testing.assert_allclose(a, b)
    assert dxs2.shape == (2, 4, D)        # nothing flows into chunk 1


def test_stateful_network_carries_each_sequences_last_state(rng):
    net = rnnfast.LSTM(3, 4, stateful=True, dtype=np.float64, random_state=1)
    xs = rng.standard_normal((2, 6, 3))
    whole = rnnfast.LSTM(3, 4, dtype=np.float64, random_state=1).forward(xs)[0]
    a, _ = net.forward(xs[:, :2])
    b, _ = net.forward(xs[:, 2:])
    np.testing.assert_allclose(np.concatenate([a, b], axis=1), whole, atol=1e-12)
    net.reset_state()
    np.testing.assert_allclose(net.forward(xs[:, :2])[0], a)


def test_cells_match_the_reference(rng):
    D, H, N = 3, 4, 2
    x, h, c = rng.standard_normal((N, D)), rng.standard_normal((N, H)), rng.standard_normal((N, H))
    W = _lstm_weights(rng, D, H)
    hn, cn = rnnfast.LSTMCell(*W).forward(x, h, c)
    rh, rc, _ = _reference.lstm_step(x, h, c, *W)
    np.testing.assert_allclose(hn, rh, atol=1e-12)
    np.testing.assert_allclose(cn, rc, atol=1e-12)
    Wg = [rng.standard_normal(s) for s in ((D, 3 * H), (H, 3 * H), (2, 3 * H))]
    np.testing.assert_allclose(rnnfast.GRUCell(*Wg, reset_after=True).forward(x, h),
                               _reference.gru_step(x, h, *Wg, reset_after=True)[0], atol=1e-12)
    Wr = [rng.standard_normal(s) for s in ((D, H), (H, H), (H,))]
    np.testing.assert_allclose(rnnfast.RNNCell(*Wr, nonlinearity="relu").forward(x, h),
                               _reference.rnn_step(x, h, *Wr, nonlinearity="relu")[0], atol=1e-12)


def test_default_initialisation_is_pytorch_like():
    net = rnnfast.GRU(10, 25, num_layers=2, bidirectional=True, random_state=0)
    assert len(net.params) == 2 * 2 * 3
    assert net.params[2].shape == (2, 75)      # reset_after bias rows
    assert net.params[6].shape == (50, 75)     # layer 1 reads both directions
    bound = 1 / np.sqrt(25)
    for p in net.params:
        assert p.dtype == np.float32
        assert np.abs(p).max() <= bound and np.abs(p).max() > 0.9 * bound
    same = rnnfast.GRU(10, 25, num_layers=2, bidirectional=True, random_state=0)
    for a, b in zip(net.params, same.params):
        np.testing.assert_array_equal(a, b)


def test_dropout_between_layers_only_in_training(rng):
    xs = rng.standard_normal((3, 5, 4)).astype(np.float32)
    net = rnnfast.LSTM(4, 6, num_layers=2, dropout=0.5, random_state=0)
    plain = rnnfast.LSTM(4, 6, num_layers=2, dropout=0.0, random_state=0)
    a, _ = net.forward(xs)
    b, _ = net.forward(xs)
    assert not np.allclose(a, b)               # fresh masks each training forward
    net.eval()
    plain.eval()
    np.testing.assert_array_equal(net.forward(xs)[0], plain.forward(xs)[0])
    with pytest.raises(RuntimeError, match="training mode"):
        net.backward(np.ones((3, 5, 6), np.float32))
    one_layer = rnnfast.LSTM(4, 6, dropout=0.5, random_state=0)
    np.testing.assert_array_equal(one_layer.forward(xs)[0], one_layer.forward(xs)[0])


def test_dropout_gradient_uses_the_same_mask(rng):
    net = rnnfast.GRU(3, 4, num_layers=2, dropout=0.3, dtype=np.float64, random_state=5)
    xs = rng.standard_normal((2, 4, 3))
    start = net._dropout_rng.bit_generator.state

    def loss(x):        # replays the same dropout masks
        net._dropout_rng.bit_generator.state = start
        return np.sum(net.forward(x)[0] * g)

    g = rng.standard_normal((2, 4, 4))
    loss(xs)
    dxs = net.backward(g)
    d = rng.standard_normal(xs.shape)
    eps = 1e-6
    numeric = (loss(xs + eps * d) - loss(xs - eps * d)) / (2 * eps)
    np.testing.assert_allclose(numeric, np.sum(dxs * d), rtol=1e-6)


def test_lengths_zero_outputs_and_freeze_state(rng):
    net = rnnfast.GRU(2, 3, bidirectional=True, dtype=np.float64, random_state=0)
    xs = rng.standard_normal((2, 5, 2))
    hs, h_n = net.forward(xs, lengths=[5, 2])
    assert np.all(hs[1, 2:] == 0)
    short, h_short = net.forward(xs[1:, :2])
    np.testing.assert_allclose(hs[1, :2], short[0], atol=1e-12)
    np.testing.assert_allclose(h_n[:, 1], h_short[:, 0], atol=1e-12)


def test_empty_batch_and_zero_steps():
    net = rnnfast.LSTM(3, 4, random_state=0)
    hs, (h, c) = net.forward(np.zeros((0, 5, 3)))
    assert hs.shape == (0, 5, 4) and h.shape == (1, 0, 4)
    assert net.backward(np.zeros((0, 5, 4))).shape == (0, 5, 3)
    hs, (h, c) = net.forward(np.zeros((2, 0, 3)))
    assert hs.shape == (2, 0, 4) and np.all(h == 0)
    assert net.backward(np.zeros((2, 0, 4))).shape == (2, 0, 3)


def test_backward_twice_is_refused(rng):
    layer = rnnfast.TimeRNN(*[rng.standard_normal(s) for s in ((2, 3), (3, 3), (3,))])
    hs = layer.forward(rng.standard_normal((1, 2, 2)))
    layer.backward(np.ones_like(hs))
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones_like(hs))
