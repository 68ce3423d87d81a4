"""Property tests (hypothesis): random shapes from 1 up, memory layouts,
dtypes, ragged lengths and both directions; the networks and cells must
match the numpy reference twin (rnnfast._reference) forward and backward.

Hypothesis draws the structure (cell, sizes, layout, dtype, lengths) and a
seed; the values come from numpy with that seed, so they are continuous
(no exact ties at a ReLU kink).  The default test is small; the
`slow`-marked one runs 2,000 examples on tiny sizes (CI runs it).
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rnnfast
from rnnfast import _reference
from rnnfast._layout import N_GATES

TOL = {np.dtype(np.float32): dict(rtol=3e-4, atol=3e-5),
       np.dtype(np.float64): dict(rtol=1e-9, atol=1e-11)}
CELLS = [("rnn", {"nonlinearity": "tanh"}), ("rnn", {"nonlinearity": "relu"}),
         ("lstm", {}), ("gru", {"reset_after": False}), ("gru", {"reset_after": True})]
NETWORKS = {"rnn": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU}
LAYOUTS = ["C", "F", "strided", "negative", "readonly"]
INPUT_DTYPES = ["float32", "float64", "int16", "bool"]


def with_layout(a, layout):
    """The same values as `a`, in another memory layout."""
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":                       # every other element of each axis
        big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
        big[tuple(slice(None, None, 2) for _ in a.shape)] = a
        return big[tuple(slice(None, None, 2) for _ in a.shape)]
    if layout == "negative":                      # negative strides on every axis
        return np.ascontiguousarray(a[tuple(slice(None, None, -1) for _ in a.shape)])[
            tuple(slice(None, None, -1) for _ in a.shape)]
    if layout == "readonly":
        a = a.copy()
        a.setflags(write=False)
        return a
    return np.ascontiguousarray(a)


@st.composite
def problems(draw, max_size=4, max_T=5):
    cell, opts = draw(st.sampled_from(CELLS))
    return dict(
        cell=cell, opts=opts,
        N=draw(st.integers(1, max_size)), T=draw(st.integers(1, max_T)),
        D=draw(st.integers(1, max_size)), H=draw(st.integers(1, max_size)),
        dtype=np.dtype(draw(st.sampled_from(["float32", "float64"]))),
        input_dtype=draw(st.sampled_from(INPUT_DTYPES)),
        layout=draw(st.sampled_from(LAYOUTS)),
        bidirectional=draw(st.booleans()),
        ragged=draw(st.booleans()),
        with_state=draw(st.booleans()),
        seed=draw(st.integers(0, 2 ** 32 - 1)),
    )


def _inputs(rng, p):
    shape = (p["N"], p["T"], p["D"])
    kind = p["input_dtype"]
    if kind == "bool":
        xs = rng.random(shape) < 0.5
    elif kind.startswith("int"):
        xs = rng.integers(-2, 3, shape).astype(kind)
    else:
        xs = rng.standard_normal(shape).astype(kind)
    return xs


def check_network_against_reference(p):
    rng = np.random.default_rng(p["seed"])
    cell, opts, dt = p["cell"], p["opts"], p["dtype"]
    N, T, H = p["N"], p["T"], p["H"]
    net = NETWORKS[cell](p["D"], H, bidirectional=p["bidirectional"], dtype=dt,
                         random_state=int(rng.integers(2 ** 31)), **opts)
    for w in net.params:                         # larger than PyTorch's init: more signal
        w[...] = rng.uniform(-0.8, 0.8, w.shape)
    nd = net.num_directions
    xs = _inputs(rng, p)
    lengths = rng.integers(1, T + 1, N) if p["ragged"] else None
    h0 = rng.standard_normal((nd, N, H)).astype(dt) if p["with_state"] else np.zeros((nd, N, H), dt)
    c0 = rng.standard_normal((nd, N, H)).astype(dt) if p["with_state"] else np.zeros((nd, N, H), dt)
    state = None
    if p["with_state"]:
        state = (with_layout(h0, p["layout"]), c0) if cell == "lstm" else with_layout(h0, p["layout"])
    xs_given = with_layout(xs, p["layout"])
    xs_before = xs_given.copy()

    hs, final = net.forward(xs_given, state, lengths)
    assert np.array_equal(xs_given, xs_before), "forward modified its input"
    assert hs.dtype == dt and hs.shape == (N, T, nd * H)

    x = xs.astype(dt)
    L = np.full(N, T) if lengths is None else lengths
    tol = TOL[dt]
    refs = []
    for d in range(nd):
        Wx, Wh, b = net.layer_params(0, d)
        hs_r, h_r, c_r, caches = _reference.sequence_forward(
            cell, x, Wx, Wh, b, h0[d], c0[d] if cell == "lstm" else None, L, d == 1, **opts)
        refs.append(caches)
        np.testing.assert_allclose(hs[:, :, d * H:(d + 1) * H], hs_r, **tol, err_msg=f"hs dir {d}")
        h_n = final[0] if cell == "lstm" else final
        np.testing.assert_allclose(h_n[d], h_r, **tol, err_msg=f"h_n dir {d}")
        if cell == "lstm":
            np.testing.assert_allclose(final[1][d], c_r, **tol, err_msg=f"c_n dir {d}")

    dhs = rng.standard_normal((N, T, nd * H)).astype(dt)
    for n, length in enumerate(L):               # padding positions carry no gradient
        dhs[n, length:] = 0
    dh_n = rng.standard_normal((nd, N, H)).astype(dt)
    dc_n = rng.standard_normal((nd, N, H)).astype(dt)
    dstate = (dh_n, with_layout(dc_n, p["layout"])) if cell == "lstm" else with_layout(dh_n, p["layout"])
    dxs = net.backward(with_layout(dhs, p["layout"]), dstate)
    dxs_ref = np.zeros_like(x)
    for d in range(nd):
        dx_r, dh0_r, dc0_r, grads_r = _reference.sequence_backward(
            np.ascontiguousarray(dhs[:, :, d * H:(d + 1) * H]), dh_n[d],
            dc_n[d] if cell == "lstm" else None, refs[d])
        dxs_ref += dx_r
        dh0 = net.dstate[0] if cell == "lstm" else net.dstate
        np.testing.assert_allclose(dh0[d], dh0_r, **tol, err_msg=f"dh0 dir {d}")
        if cell == "lstm":
            np.testing.assert_allclose(net.dstate[1][d], dc0_r, **tol, err_msg=f"dc0 dir {d}")
        for name, ours, ref in zip(("dWx", "dWh", "db"), net.grads[3 * d:3 * d + 3], grads_r):
            np.testing.assert_allclose(ours, ref, **tol, err_msg=f"{name} dir {d}")
    np.testing.assert_allclose(dxs, dxs_ref, **tol, err_msg="dxs")
    for n, length in enumerate(L):
        assert not hs[n, length:].any(), "outputs past a sequence's length must be zero"


FAST = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(problems())
def test_network_matches_reference(p):
    check_network_against_reference(p)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(problems(max_size=3, max_T=4))
def test_network_matches_reference_many(p):
    check_network_against_reference(p)


@FAST
@given(cell_opts=st.sampled_from(CELLS), N=st.integers(1, 4), D=st.integers(1, 4),
       H=st.integers(1, 4), dtype=st.sampled_from([np.float32, np.float64]),
       layout=st.sampled_from(LAYOUTS), seed=st.integers(0, 2 ** 32 - 1))
def test_cells_match_reference_step(cell_opts, N, D, H, dtype, layout, seed):
    cell, opts = cell_opts
    rng = np.random.default_rng(seed)
    g = N_GATES[cell] * H
    ra = opts.get("reset_after", False)
    Wx, Wh = (rng.uniform(-0.8, 0.8, s).astype(dtype) for s in ((D, g), (H, g)))
    b = rng.uniform(-0.8, 0.8, (2, g) if ra else (g,)).astype(dtype)
    x, h, c = (rng.standard_normal(s).astype(dtype) for s in ((N, D), (N, H), (N, H)))
    dh_next, dc_next = rng.standard_normal((2, N, H)).astype(dtype)
    tol = TOL[np.dtype(dtype)]
    # weights in another layout are converted copies; values unchanged
    Wxl, Whl, bl = (with_layout(a, layout) for a in (Wx, Wh, b))
    if cell == "lstm":
        layer = rnnfast.LSTMCell(Wxl, Whl, bl)
        h_next, c_next = layer.forward(with_layout(x, layout), h, with_layout(c, layout))
        h_r, c_r, cache = _reference.lstm_step(x, h, c, Wx, Wh, b)
        np.testing.assert_allclose(c_next, c_r, **tol)
        dx, dh, dc = layer.backward(dh_next, with_layout(dc_next, layout))
        dx_r, dh_r, dc_r, *g_r = _reference.lstm_step_backward(dh_next, dc_next, cache)
        np.testing.assert_allclose(dc, dc_r, **tol)
    else:
        if cell == "gru":
            layer = rnnfast.GRUCell(Wxl, Whl, bl, reset_after=ra)
            h_r, cache = _reference.gru_step(x, h, Wx, Wh, b, reset_after=ra)
            back = _reference.gru_step_backward
        else:
            layer = rnnfast.RNNCell(Wxl, Whl, bl, **opts)
            h_r, cache = _reference.rnn_step(x, h, Wx, Wh, b, **opts)
            back = _reference.rnn_step_backward
        h_next = layer.forward(with_layout(x, layout), with_layout(h, layout))
        dx, dh = layer.backward(with_layout(dh_next, layout))
        dx_r, dh_r, *g_r = back(dh_next, cache)
    np.testing.assert_allclose(h_next, h_r, **tol)
    np.testing.assert_allclose(dx, dx_r, **tol)
    np.testing.assert_allclose(dh, dh_r, **tol)
    for ours, ref in zip(layer.grads, g_r):
        np.testing.assert_allclose(ours, ref, **tol)


@FAST
@given(cell=st.sampled_from(["rnn", "lstm", "gru"]), N=st.integers(1, 3),
       T1=st.integers(1, 4), T2=st.integers(1, 4), D=st.integers(1, 3), H=st.integers(1, 3),
       seed=st.integers(0, 2 ** 32 - 1))
def test_stateful_chunks_equal_one_run(cell, N, T1, T2, D, H, seed):
    """A stateful Time layer fed [0, T1) then [T1, T1+T2) gives, bit for bit,
    the outputs of one run over the whole sequence."""
    rng = np.random.default_rng(seed)
    g = N_GATES[cell] * H
    Wx, Wh, b = (rng.uniform(-0.8, 0.8, s) for s in ((D, g), (H, g), (g,)))
    cls = {"rnn": rnnfast.TimeRNN, "lstm": rnnfast.TimeLSTM, "gru": rnnfast.TimeGRU}[cell]
    xs = rng.standard_normal((N, T1 + T2, D))
    whole = cls(Wx, Wh, b).forward(xs)
    layer = cls(Wx, Wh, b, stateful=True)
    parts = np.concatenate([layer.forward(xs[:, :T1]), layer.forward(xs[:, T1:])], axis=1)
    np.testing.assert_allclose(parts, whole, rtol=1e-12, atol=1e-13)
