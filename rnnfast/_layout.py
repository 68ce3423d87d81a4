"""The layout of rnnfast's weights, said once.

Sequences are batch-major: xs (N, T, D), outputs (N, T, H), or (N, T, 2H) for a
bidirectional layer (forward half first); states (N, H).

Weights are row vectors, as in the textbooks:  a = x @ Wx + h @ Wh + b  with

    Wx (D, G*H)    Wh (H, G*H)    b (G*H,)      G = 1 RNN, 4 LSTM, 3 GRU
    GRU with reset_after=True: b (2, G*H) = [input bias row, recurrent bias row]

Gate blocks along the G*H axis, in order:
    LSTM  f, g, i, o     c' = f*c + g*i,  h' = o*tanh(c')
    GRU   z, r, h~       h' = (1-z)*h + z*h~
          reset_after=False:  h~ = tanh(x Wx_h + (r*h) Wh_h + b_h)
          reset_after=True:   h~ = tanh(x Wx_h + b_x,h + r*(h Wh_h + b_h,h))

PyTorch stores W (G*H, D) with gates LSTM i, f, g, o and GRU r, z, n, with
z meaning the opposite (h' = (1-z)*n + z*h), and two biases b_ih, b_hh.
Keras stores row vectors as we do, kernel (D, G*H), recurrent_kernel
(H, G*H), bias (G*H,) or, for GRU with reset_after=True, (2, G*H), with
gates LSTM i, f, c, o and GRU z, r, h, z meaning the opposite as in
PyTorch (h' = z*h + (1-z)*hh).
The converters below map one layout onto the other.
"""
import numpy as np

N_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
GATE_ORDER = {"rnn": ("h",), "lstm": ("f", "g", "i", "o"), "gru": ("z", "r", "h~")}

# For each of our gate blocks, the index of the same gate in PyTorch's order.
_TORCH_INDEX = {"rnn": [0], "lstm": [1, 2, 0, 3], "gru": [1, 0, 2]}
# GRU's z is flipped between the conventions: sigmoid(-a) = 1 - sigmoid(a).
_TORCH_SIGN = {"rnn": [1], "lstm": [1, 1, 1, 1], "gru": [-1, 1, 1]}
# The same for Keras (its z flipped too).
_KERAS_INDEX = {"rnn": [0], "lstm": [1, 2, 0, 3], "gru": [0, 1, 2]}
_KERAS_SIGN = _TORCH_SIGN


def bias_shape(cell, hidden_size, reset_after=False):
    """The shape of b: (G*H,), or (2, G*H) for a GRU with reset_after."""
    G = N_GATES[cell] * hidden_size
    return (2, G) if (cell == "gru" and reset_after) else (G,)


def _ours_from_torch_rows(cell, M, index=_TORCH_INDEX, sign=_TORCH_SIGN):
    """(G*H, ...) in torch's gate order (or another's, by its index and
    sign tables) -> same shape in ours, signs applied."""
    H = M.shape[0] // N_GATES[cell]
    blocks = [s * M[i * H:(i + 1) * H] for i, s in zip(index[cell], sign[cell])]
    return np.concatenate(blocks, axis=0)


def _torch_rows_from_ours(cell, M, index=_TORCH_INDEX, sign=_TORCH_SIGN):
    H = M.shape[0] // N_GATES[cell]
    blocks = [None] * N_GATES[cell]
    for ours, (i, s) in enumerate(zip(index[cell], sign[cell])):
        blocks[i] = s * M[ours * H:(ours + 1) * H]
    return np.concatenate(blocks, axis=0)


def from_torch_weights(cell, w_ih, w_hh, b_ih, b_hh, reset_after=True, dtype=None):
    """PyTorch tensors as numpy arrays -> (Wx, Wh, b) in rnnfast's layout."""
    dtype = dtype or w_ih.dtype
    Wx = np.ascontiguousarray(_ours_from_torch_rows(cell, w_ih).T, dtype=dtype)
    Wh = np.ascontiguousarray(_ours_from_torch_rows(cell, w_hh).T, dtype=dtype)
    bi = _ours_from_torch_rows(cell, b_ih)
    bh = _ours_from_torch_rows(cell, b_hh)
    if cell == "gru" and reset_after:
        b = np.stack([bi, bh])
    elif cell == "gru":
        raise ValueError("PyTorch's GRU is the reset_after=True variant; "
                         "it has no exact reset_after=False equivalent")
    else:
        b = bi + bh
    return Wx, Wh, np.ascontiguousarray(b, dtype=dtype)


def to_torch_weights(cell, Wx, Wh, b):
    """(Wx, Wh, b) in rnnfast's layout -> (w_ih, w_hh, b_ih, b_hh) for PyTorch."""
    if cell == "gru" and b.ndim == 1:
        raise ValueError("a GRU with reset_after=False has no PyTorch equivalent "
                         "(torch.nn.GRU applies the reset gate after the matmul)")
    w_ih = _torch_rows_from_ours(cell, Wx.T)
    w_hh = _torch_rows_from_ours(cell, Wh.T)
    if b.ndim == 2:
        b_ih, b_hh = _torch_rows_from_ours(cell, b[0]), _torch_rows_from_ours(cell, b[1])
    else:
        b_ih, b_hh = _torch_rows_from_ours(cell, b), np.zeros_like(b)
    return [np.ascontiguousarray(a) for a in (w_ih, w_hh, b_ih, b_hh)]


def from_keras_weights(cell, kernel, recurrent_kernel, bias):
    """Keras's (kernel, recurrent_kernel, bias) as numpy arrays -> (Wx, Wh,
    b) in rnnfast's layout: the same row vectors, the gate blocks (the last
    axis) reordered and GRU's z negated.  A GRU's bias of shape (2, 3H) is
    reset_after=True's, as ours."""
    def ours(M):
        return np.ascontiguousarray(
            _ours_from_torch_rows(cell, M.T, _KERAS_INDEX, _KERAS_SIGN).T)
    return ours(kernel), ours(recurrent_kernel), ours(bias)


def to_keras_weights(cell, Wx, Wh, b):
    """(Wx, Wh, b) in rnnfast's layout -> [kernel, recurrent_kernel, bias]
    for a Keras layer's set_weights (from_keras_weights' inverse)."""
    def keras(M):
        return np.ascontiguousarray(
            _torch_rows_from_ours(cell, M.T, _KERAS_INDEX, _KERAS_SIGN).T)
    return [keras(Wx), keras(Wh), keras(b)]
