"""The kernel modules' def functions refuse arrays whose shapes disagree
(they are importable, so a direct call must not read out of bounds)."""
import numpy as np
import pytest

from rnnfast import _gru, _lstm, _rnn

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
