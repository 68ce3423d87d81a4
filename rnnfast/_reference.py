"""NumPy twins of the kernels: the textbook formulas, one time step at a time.

They are the oracle of the test suite and the baseline of the benchmarks,
so they favour plain, readable numpy over speed (a Python loop over time
steps is fine here and nowhere else).  Conventions are those of
``rnnfast._layout``: row-vector weights ``x @ Wx + h @ Wh + b``, gate order
LSTM f, g, i, o and GRU z, r, h~.
"""
import numpy as np


def sigmoid(x):
    # exp of a non-positive number only: finite and warning-free for any x
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


# ---------------------------------------------------------------- one step
def rnn_step(x, h, Wx, Wh, b, nonlinearity="tanh"):
    a = x @ Wx + h @ Wh + b
    h_next = np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0)
    return h_next, (x, h, h_next, Wx, Wh, nonlinearity)


def rnn_step_backward(dh_next, cache):
    x, h, h_next, Wx, Wh, nonlinearity = cache
    if nonlinearity == "tanh":
        da = dh_next * (1 - h_next ** 2)
    else:
        da = dh_next * (h_next > 0)
    return da @ Wx.T, da @ Wh.T, x.T @ da, h.T @ da, da.sum(axis=0)


def lstm_step(x, h, c, Wx, Wh, b):
    H = h.shape[1]
    a = x @ Wx + h @ Wh + b
    f = sigmoid(a[:, :H])
    g = np.tanh(a[:, H:2 * H])
    i = sigmoid(a[:, 2 * H:3 * H])
    o = sigmoid(a[:, 3 * H:])
    c_next = f * c + g * i
    h_next = o * np.tanh(c_next)
    return h_next, c_next, (x, h, c, f, g, i, o, c_next, Wx, Wh)


def lstm_step_backward(dh_next, dc_next, cache):
    x, h, c, f, g, i, o, c_next, Wx, Wh = cache
    tc = np.tanh(c_next)
    ds = dc_next + dh_next * o * (1 - tc ** 2)
    da = np.hstack([ds * c * f * (1 - f), ds * i * (1 - g ** 2),
                    ds * g * i * (1 - i), dh_next * tc * o * (1 - o)])
    return (da @ Wx.T, da @ Wh.T, ds * f, x.T @ da, h.T @ da, da.sum(axis=0))


def gru_step(x, h, Wx, Wh, b, reset_after=False):
    H = h.shape[1]
    if reset_after:
        ax = x @ Wx + b[0]
        ah = h @ Wh + b[1]
        z = sigmoid(ax[:, :H] + ah[:, :H])
        r = sigmoid(ax[:, H:2 * H] + ah[:, H:2 * H])
        hh = np.tanh(ax[:, 2 * H:] + r * ah[:, 2 * H:])
        hn = ah[:, 2 * H:]
    else:
        ax = x @ Wx + b
        z = sigmoid(ax[:, :H] + h @ Wh[:, :H])
        r = sigmoid(ax[:, H:2 * H] + h @ Wh[:, H:2 * H])
        hh = np.tanh(ax[:, 2 * H:] + (r * h) @ Wh[:, 2 * H:])
        hn = None
    h_next = (1 - z) * h + z * hh
    return h_next, (x, h, z, r, hh, hn, Wx, Wh, reset_after)


def gru_step_backward(dh_next, cache):
    x, h, z, r, hh, hn, Wx, Wh, reset_after = cache
    H = h.shape[1]
    dz = dh_next * (hh - h)
    dah = dh_next * z * (1 - hh ** 2)
    daz = dz * z * (1 - z)
    dh = dh_next * (1 - z)
    if reset_after:
        dar = dah * hn * r * (1 - r)
        dax = np.hstack([daz, dar, dah])
        dahh = np.hstack([daz, dar, dah * r])
        dh = dh + dahh @ Wh.T
        db = np.stack([dax.sum(axis=0), dahh.sum(axis=0)])
        dWh = h.T @ dahh
    else:
        drh = dah @ Wh[:, 2 * H:].T
        dar = drh * h * r * (1 - r)
        dax = np.hstack([daz, dar, dah])
        dh = dh + drh * r + np.hstack([daz, dar]) @ Wh[:, :2 * H].T
        db = dax.sum(axis=0)
        dWh = np.hstack([h.T @ np.hstack([daz, dar]), (r * h).T @ dah])
    return dax @ Wx.T, dh, x.T @ dax, dWh, db


# ------------------------------------------------------- whole sequences
def _step_rows(k, lengths, reverse):
    """Rows active at loop step k and the time index each of them is at."""
    rows = np.nonzero(k < lengths)[0]
    t = lengths[rows] - 1 - k if reverse else np.full(rows.shape, k)
    return rows, t


def sequence_forward(cell, xs, Wx, Wh, b, h0, c0=None, lengths=None,
                     reverse=False, **options):
    """Run `cell` ('rnn', 'lstm', 'gru') over xs (N, T, D).

    Returns hs (N, T, H) with zeros past each length, the final h (and c),
    and the caches for `sequence_backward`."""
    N, T, _ = xs.shape
    lengths = np.full(N, T) if lengths is None else np.asarray(lengths)
    h = h0.copy()
    c = None if c0 is None else c0.copy()
    hs = np.zeros((N, T, h0.shape[1]), dtype=xs.dtype)
    caches = []
    for k in range(T):
        rows, t = _step_rows(k, lengths, reverse)
        x = xs[rows, t]
        if cell == "lstm":
            h_new, c_new, cache = lstm_step(x, h[rows], c[rows], Wx, Wh, b)
            c[rows] = c_new
        elif cell == "gru":
            h_new, cache = gru_step(x, h[rows], Wx, Wh, b, **options)
        else:
            h_new, cache = rnn_step(x, h[rows], Wx, Wh, b, **options)
        h[rows] = h_new
        hs[rows, t] = h_new
        caches.append((rows, t, cache))
    return hs, h, c, (cell, xs.shape, caches)


def sequence_backward(dhs, dh_final, dc_final, caches):
    """BPTT through `sequence_forward`: returns dxs, dh0, dc0, (dWx, dWh, db)."""
    cell, shape, steps = caches
    dxs = np.zeros(shape, dtype=dhs.dtype)
    dh = dh_final.copy()
    dc = None if dc_final is None else dc_final.copy()
    grads = None
    for rows, t, cache in reversed(steps):
        dh_next = dhs[rows, t] + dh[rows]
        if cell == "lstm":
            dx, dh_r, dc_r, *g = lstm_step_backward(dh_next, dc[rows], cache)
            dc[rows] = dc_r
        elif cell == "gru":
            dx, dh_r, *g = gru_step_backward(dh_next, cache)
        else:
            dx, dh_r, *g = rnn_step_backward(dh_next, cache)
        dh[rows] = dh_r
        dxs[rows, t] = dx
        grads = g if grads is None else [a + d for a, d in zip(grads, g)]
    return dxs, dh, dc, grads
