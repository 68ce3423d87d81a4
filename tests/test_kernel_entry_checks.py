"""The kernel modules' def functions refuse arrays whose shapes disagree
(they are importable, so a direct call must not read out of bounds)."""
import numpy as np
import pytest

from rnnfast import _core, _gru, _lstm, _rnn

N, T, D, H = 3, 4, 5, 6
f32 = np.float32


def _lstm_fwd_args(**over):
    G = 4 * H
    args = dict(xs=np.zeros((N, T, D), f32), Wx=np.zeros((D, G), f32), Wh=np.zeros((H, G), f32),
                b=np.zeros(G, f32), h=np.zeros((N, H), f32), c=np.zeros((N, H), f32),
                lengths=np.full(N, T, np.intp), reverse=False, out=np.zeros((N, T, H), f32),
                out_offset=0, gates=np.zeros((N, T, G), f32), h_prev=np.zeros((N, T, H), f32),
                c_prev=np.zeros((N, T, H), f32), tanh_c=np.zeros((N, T, H), f32),
                work=np.zeros((N, G), f32), training=True)
    args.update(over)
    return list(args.values())


def test_consistent_arrays_run():
    _lstm.lstm_forward(*_lstm_fwd_args())


@pytest.mark.parametrize("over,match", [
    ({"Wx": np.zeros((D + 1, 4 * H), f32)}, "Wx"),
    ({"Wh": np.zeros((H, 4 * H + 1), f32)}, "Wh"),
    ({"b": np.zeros(3, f32)}, "b"),
    ({"h": np.zeros((N + 1, H), f32)}, "h"),
    ({"gates": np.zeros((N, T, 4), f32)}, "gates"),
    ({"tanh_c": np.zeros((N, T - 1, H), f32)}, "tanh_c"),
    ({"work": np.zeros((1, 4 * H), f32)}, "work"),
    ({"lengths": np.full(N + 1, T, np.intp)}, "lengths"),
    ({"lengths": np.array([T, T + 1, 1], np.intp)}, r"lengths\[1\]"),
    ({"lengths": np.array([T, 0, 1], np.intp)}, r"lengths\[1\]"),
    ({"out_offset": 1}, "offset"),
])
def test_lstm_forward_refuses_disagreeing_arrays(over, match):
    with pytest.raises(ValueError, match=match):
        _lstm.lstm_forward(*_lstm_fwd_args(**over))


def test_rnn_and_gru_forward_refuse_a_wrong_recurrent_matrix():
    xs, h = np.zeros((N, T, D), f32), np.zeros((N, H), f32)
    lengths, out = np.full(N, T, np.intp), np.zeros((N, T, H), f32)
    with pytest.raises(ValueError, match="Wh"):
        _rnn.rnn_forward(xs, np.zeros((D, H), f32), np.zeros((H, H + 2), f32), np.zeros(H, f32),
                         h, lengths, False, False, out, 0, np.zeros((N, T, H), f32),
                         np.zeros((N, T, H), f32), np.zeros((N, H), f32), True)
    G = 3 * H
    with pytest.raises(ValueError, match="b"):
        _gru.gru_forward(xs, np.zeros((D, G), f32), np.zeros((H, G), f32), np.zeros(G, f32),
                         h, lengths, False, True, out, 0, np.zeros((N, T, G), f32),
                         np.zeros((N, T, H), f32), np.zeros((N, T, H), f32),
                         np.zeros((N, 4 * H), f32), True)


def test_backward_refuses_a_wrong_gradient_buffer():
    G = 4 * H
    z = lambda *s: np.zeros(s, f32)  # noqa: E731
    with pytest.raises(ValueError, match="dWh"):
        _lstm.lstm_backward(z(N, T, D), z(D, G), z(H, G), np.full(N, T, np.intp), False,
                            z(N, T, H), 0, z(N, H), z(N, H), z(N, T, G), z(N, T, H), z(N, T, H),
                            z(N, T, H), z(D, G), z(H + 1, G), z(G), z(N, T, D), False, z(N, G))


# The kernels take plain objects and check each array themselves
# (src/_arrays.pxd): what a typed memoryview argument used to enforce must
# still be refused, with the argument named.
def _misaligned(shape):
    raw = np.zeros(int(np.prod(shape)) * 4 + 1, np.uint8)
    a = raw[1:].view(f32).reshape(shape)
    assert not a.flags.aligned
    return a


@pytest.mark.parametrize("over,error,match", [
    ({"Wx": np.zeros((D, 4 * H))}, TypeError, r"Wx: expected dtype float32"),
    ({"xs": np.zeros((N, T, D), np.int32)}, TypeError, r"xs: expected a float32 or float64"),
    ({"xs": np.zeros((N, T, D)).tolist()}, TypeError, r"xs: expected a numpy\.ndarray"),
    ({"h": [[0.0] * H] * N}, TypeError, r"h: expected a numpy\.ndarray, got list"),
    ({"lengths": np.full(N, T, np.int32)}, TypeError, r"lengths: expected dtype intp"),
    ({"Wh": np.zeros((H, 4 * H), f32).astype(">f4")}, TypeError, r"Wh: expected dtype float32 "
                                                                r"\(native byte order\)"),
    ({"b": np.zeros((1, 4 * H), f32)}, ValueError, r"b: expected 1 dimensions"),
    ({"gates": np.zeros((N, 2 * T, 4 * H), f32)[:, ::2]}, ValueError,
     r"gates: expected a C-contiguous array"),
    ({"Wx": np.asfortranarray(np.zeros((D, 4 * H), f32))}, ValueError,
     r"Wx: expected a C-contiguous array"),
    ({"c": _misaligned((N, H))}, ValueError, r"c: expected an aligned array"),
])
def test_lstm_forward_refuses_arrays_of_the_wrong_kind(over, error, match):
    with pytest.raises(error, match=match):
        _lstm.lstm_forward(*_lstm_fwd_args(**over))


@pytest.mark.parametrize("name", ["h", "c", "out", "gates", "h_prev", "work"])
def test_lstm_forward_refuses_a_read_only_output(name):
    a = np.zeros(dict(zip(["h", "c", "out", "gates", "h_prev", "work"],
                          [(N, H), (N, H), (N, T, H), (N, T, 4 * H), (N, T, H),
                           (N, 4 * H)]))[name], f32)
    a.flags.writeable = False
    with pytest.raises(ValueError, match=rf"{name}: is read-only"):
        _lstm.lstm_forward(*_lstm_fwd_args(**{name: a}))


def test_read_only_inputs_are_taken():
    """Inputs the kernels only read may be read-only (a typed memoryview
    declared const accepted them too)."""
    args = dict(zip(["xs", "Wx", "Wh", "b"], _lstm_fwd_args()[:4]))
    for a in args.values():
        a.flags.writeable = False
    _lstm.lstm_forward(*_lstm_fwd_args(**args))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_kernel_refuses_a_mixed_precision_gradient(dtype):
    """The version run is the one of xs's dtype; each other array must match."""
    other = np.float64 if dtype == np.float32 else np.float32
    z = lambda *s, t=dtype: np.zeros(s, t)  # noqa: E731
    lens = np.full(N, T, np.intp)
    with pytest.raises(TypeError, match="dWh: expected dtype"):
        _rnn.rnn_backward(z(N, T, D), z(D, H), z(H, H), lens, False, False, z(N, T, H), 0,
                          z(N, H), z(N, T, H), z(N, T, H), z(D, H), z(H, H, t=other), z(H),
                          z(N, T, D), False, z(N, H))
    G = 3 * H
    with pytest.raises(TypeError, match="dxs: expected dtype"):
        _gru.gru_backward(z(N, T, D), z(D, G), z(H, G), lens, False, True, z(N, T, H), 0,
                          z(N, H), z(N, T, G), z(N, T, H), z(N, T, H), z(D, G), z(H, G),
                          z(2 * G), z(N, T, D, t=other), False, z(N, 4 * H))
    G = 4 * H
    with pytest.raises(TypeError, match="tanh_c: expected dtype"):
        _lstm.lstm_backward(z(N, T, D), z(D, G), z(H, G), lens, False, z(N, T, H), 0,
                            z(N, H), z(N, H), z(N, T, G), z(N, T, H), z(N, T, H),
                            z(N, T, H, t=other), z(D, G), z(H, G), z(G), z(N, T, D), False,
                            z(N, G))


def test_zero_state_refuses_a_type_for_a_dtype():
    """zero_state reads the dtype's type number: a type object (np.float32
    rather than np.dtype(np.float32)) was read as one, and the call failed
    with a SystemError."""
    with pytest.raises(TypeError):
        _core.zero_state(1, 2, 3, np.float32, False)
    h, c = _core.zero_state(1, 2, 3, np.dtype(np.float32), True)
    assert h.shape == c.shape == (1, 2, 3) and not h.any() and not c.any()


def test_dispatcher_refuses_an_unknown_cell_by_name():
    """The dispatcher's cell codes index three-entry tables of kernels: a
    name outside them is a ValueError naming it, not an index."""
    from rnnfast import _dispatch
    assert _dispatch.buffer_shapes("gru", N, T, T, H, 3 * H, False)[1] == (N, 4 * H)
    with pytest.raises(ValueError, match="'bogus'"):
        _dispatch.buffer_shapes("bogus", N, T, T, H, H, False)
