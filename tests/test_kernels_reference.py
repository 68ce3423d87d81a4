"""The Cython kernels against their numpy reference twin, float32 and
float64, for every cell, both directions, full and ragged batches."""
import numpy as np
import pytest

from rnnfast import _core, _reference, _rnn
from rnnfast._layout import N_GATES, bias_shape

TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}
CELLS = [("rnn", {}), ("rnn", {"nonlinearity": "relu"}), ("lstm", {}),
         ("gru", {"reset_after": False}), ("gru", {"reset_after": True})]
IDS = ["rnn-tanh", "rnn-relu", "lstm", "gru-reset-before", "gru-reset-after"]


def run_both(cell, opts, dtype, reverse, lengths, rng, N=4, T=6, D=5, H=3, scale=0.5,
             state="random", tol=None):
    """state: the initial h is "random", all "zero" (the forward kernels then
    skip the first step's recurrent product) or zero but for "one-unit"
    (the last unit of the last row).  tol: assert_allclose's, else TOL's."""
    G = N_GATES[cell] * H
    reset_after = opts.get("reset_after", False)
    xs = rng.standard_normal((N, T, D)).astype(dtype)
    Wx = (rng.standard_normal((D, G)) * scale).astype(dtype)
    Wh = (rng.standard_normal((H, G)) * scale).astype(dtype)
    b = (rng.standard_normal(bias_shape(cell, H, reset_after)) * 0.5).astype(dtype)
    h0 = rng.standard_normal((N, H)).astype(dtype)
    if state != "random":
        h0[...] = 0
        h0[-1, -1] = 1 if state == "one-unit" else 0
    c0 = rng.standard_normal((N, H)).astype(dtype) if cell == "lstm" else None
    lengths = np.full(N, T, np.intp) if lengths is None else np.asarray(lengths, np.intp)
    hs_ref, h_ref, c_ref, caches = _reference.sequence_forward(
        cell, xs, Wx, Wh, b, h0, c0, lengths, reverse, **opts)
    out = np.empty((N, T, H), dtype)
    h = h0.copy()
    c = None if c0 is None else c0.copy()
    cache = _core.forward(cell, xs, Wx, Wh, b, h, c, lengths, reverse, out, 0, True,
                          relu=opts.get("nonlinearity") == "relu", reset_after=reset_after)
    tol = tol or TOL[dtype]
    np.testing.assert_allclose(out, hs_ref, **tol, err_msg="hs")
    np.testing.assert_allclose(h, h_ref, **tol, err_msg="h_n")
    if cell == "lstm":
        np.testing.assert_allclose(c, c_ref, **tol, err_msg="c_n")

    dhs = rng.standard_normal((N, T, H)).astype(dtype)
    dhT = rng.standard_normal((N, H)).astype(dtype)
    dcT = rng.standard_normal((N, H)).astype(dtype) if cell == "lstm" else None
    dxs_ref, dh0_ref, dc0_ref, (dWx_ref, dWh_ref, db_ref) = \
        _reference.sequence_backward(dhs, dhT, dcT, caches)
    dh = dhT.copy()
    dc = None if dcT is None else dcT.copy()
    dWx, dWh, db, dxs = (np.empty_like(a) for a in (Wx, Wh, b, xs))
    _core.backward(cache, dhs, 0, dh, dc, dWx, dWh, db, dxs, False)
    for name, ours, ref in [("dxs", dxs, dxs_ref), ("dh0", dh, dh0_ref), ("dWx", dWx, dWx_ref),
                            ("dWh", dWh, dWh_ref), ("db", db, db_ref)]:
        np.testing.assert_allclose(ours, ref, **tol, err_msg=name)
    if cell == "lstm":
        np.testing.assert_allclose(dc, dc0_ref, **tol, err_msg="dc0")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lengths", [None, [6, 2, 5, 1]], ids=["full", "ragged"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell,opts", CELLS, ids=IDS)
def test_kernel_matches_reference(cell, opts, reverse, lengths, dtype, rng):
    run_both(cell, opts, dtype, reverse, lengths, rng)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lengths", [None, [150, 70, 129, 1, 64, 65]], ids=["full", "ragged"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell,opts", CELLS, ids=IDS)
def test_kernel_matches_reference_on_long_sequences(cell, opts, reverse, lengths,
                                                        dtype, rng):
    """A long sequence: T = 150 (the packed kernel's row blocks of A are
    192 rows, its K chunks 512; tiles see many steps), with rows ending
    at, before and after T = 64.  Weights of scale 0.25 keep a ReLU state
    of 150 steps from blowing up."""
    run_both(cell, opts, dtype, reverse, lengths, rng, N=6, T=150, D=5, H=8, scale=0.25)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell,opts,H", [("rnn", {}, 64), ("rnn", {"nonlinearity": "relu"}, 64),
                                         ("lstm", {}, 32)], ids=["rnn-tanh", "rnn-relu", "lstm"])
def test_long_calls_with_rebuilt_states_match_reference(cell, opts, H, reverse, ragged, dtype):
    """A long RNN or LSTM call saves only the first step's state, and its
    backward rebuilds the others from the activations (src/_seq.pxd,
    states_rebuilt), chunk by chunk where it chunks (the reverse direction
    of a ragged batch does not): against the numpy reference, which keeps
    them all."""
    N, T, D = 8, 1100, 4
    G = N_GATES[cell] * H
    assert _rnn.states_rebuilt_applies(N, T, G, H, np.dtype(dtype).itemsize)
    rng = np.random.default_rng(5)
    lengths = None
    if ragged:
        lengths = rng.integers(T // 2, T + 1, N)
        lengths[0] = T
    # Wh scaled to a spectral radius ~0.5: rounding does not grow over the
    # steps; the parameter gradients sum 8800 rows (float32: ~1e-4 apart at
    # values ~50), where a wrong saved state moves them by ~0.1.
    tol = dict(rtol=2e-4, atol=1e-3) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    run_both(cell, opts, dtype, reverse, lengths, rng, N=N, T=T, D=D, H=H, scale=0.06,
             tol=tol)


@pytest.mark.parametrize("cell,opts", CELLS, ids=IDS)
def test_kernel_single_row_single_step(cell, opts, rng):
    run_both(cell, opts, np.float64, False, None, rng, N=1, T=1, D=1, H=1)
    run_both(cell, opts, np.float64, True, None, rng, N=1, T=3, D=2, H=1)


def test_bidirectional_offset_and_accumulate(rng):
    """Two directions writing halves of one output and summing into one dx."""
    N, T, D, H = 3, 5, 2, 4
    cell = "lstm"
    Wx = [rng.standard_normal((D, 4 * H)) * 0.5 for _ in range(2)]
    Wh = [rng.standard_normal((H, 4 * H)) * 0.5 for _ in range(2)]
    b = [rng.standard_normal(4 * H) * 0.5 for _ in range(2)]
    xs = rng.standard_normal((N, T, D))
    lengths = np.array([5, 2, 4], np.intp)
    out = np.empty((N, T, 2 * H))
    caches, refs = [], []
    for d in range(2):
        h, c = np.zeros((N, H)), np.zeros((N, H))
        caches.append(_core.forward(cell, xs, Wx[d], Wh[d], b[d], h, c, lengths, d == 1,
                                    out, d * H, True))
        refs.append(_reference.sequence_forward(cell, xs, Wx[d], Wh[d], b[d], np.zeros((N, H)),
                                                np.zeros((N, H)), lengths, d == 1))
    np.testing.assert_allclose(out[:, :, :H], refs[0][0], atol=1e-12)
    np.testing.assert_allclose(out[:, :, H:], refs[1][0], atol=1e-12)
    dout = rng.standard_normal((N, T, 2 * H))
    dxs = np.empty_like(xs)
    expected = np.zeros_like(xs)
    for d in range(2):
        dh, dc = np.zeros((N, H)), np.zeros((N, H))
        _core.backward(caches[d], dout, d * H, dh, dc, np.empty_like(Wx[d]),
                       np.empty_like(Wh[d]), np.empty_like(b[d]), dxs, d == 1)
        expected += _reference.sequence_backward(dout[:, :, d * H:(d + 1) * H],
                                                 np.zeros((N, H)), np.zeros((N, H)),
                                                 refs[d][3])[0]
    np.testing.assert_allclose(dxs, expected, atol=1e-12)


def test_float32_lstm_unit_accuracy(rng):
    """The float LSTM pass (src/_cells.h, rf_lstm_unit_f: polynomial exp and
    tanh, five quotients folded into two divisions) against float64 math,
    on pre-activations from -45 to 45 (past the clamps) and cells up to
    +-10.  Wx is four permutation matrices, so each gate's pre-activation
    is exactly one input value."""
    N, H = 64, 256
    xs = rng.uniform(-45, 45, (N, 1, H)).astype(np.float32)
    xs[0, 0, :8] = [-45, -40, -8, -1e-3, 0, 1e-3, 8, 45]
    perms = [rng.permutation(H) for _ in range(4)]
    eye = np.eye(H, dtype=np.float32)
    Wx = np.ascontiguousarray(np.concatenate([eye[:, p] for p in perms], axis=1))
    Wh = np.zeros((H, 4 * H), np.float32)
    b = np.zeros(4 * H, np.float32)
    c0 = rng.uniform(-10, 10, (N, H)).astype(np.float32)
    for training in (False, True):
        h, c = np.zeros((N, H), np.float32), c0.copy()
        out = np.empty((N, 1, H), np.float32)
        _core.forward("lstm", xs, Wx, Wh, b, h, c, np.ones(N, np.intp), False, out, 0,
                      training)
        x = xs[:, 0, :].astype(np.float64)
        f, g, i, o = (x[:, p] for p in perms)
        sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
        c_ref = sig(f) * c0 + np.tanh(g) * sig(i)
        h_ref = sig(o) * np.tanh(c_ref)
        assert (np.abs(c - c_ref) <= 5e-7 * (1 + np.abs(c_ref))).all(), training
        assert np.abs(h - h_ref).max() <= 1e-6, training
        np.testing.assert_array_equal(out[:, 0, :], h)


@pytest.mark.parametrize("reset_after", [False, True])
def test_float32_gru_unit_accuracy(reset_after, rng):
    """The float GRU pass against float64 math, pre-activations from -45 to 45.  As above, Wx is
    three permutation matrices; Wh is zero but for an identity in the
    candidate's block and the biases are zero, so with either reset
    h' = (1 - z) h + z tanh(x_h + r h)."""
    N, H = 64, 256
    xs = rng.uniform(-45, 45, (N, 1, H)).astype(np.float32)
    perms = [rng.permutation(H) for _ in range(3)]
    eye = np.eye(H, dtype=np.float32)
    Wx = np.ascontiguousarray(np.concatenate([eye[:, p] for p in perms], axis=1))
    Wh = np.zeros((H, 3 * H), np.float32)
    Wh[:, 2 * H:] = eye
    b = np.zeros(bias_shape("gru", H, reset_after), np.float32)
    h0 = rng.uniform(-1, 1, (N, H)).astype(np.float32)
    for training in (False, True):
        h = h0.copy()
        out = np.empty((N, 1, H), np.float32)
        _core.forward("gru", xs, Wx, Wh, b, h, None, np.ones(N, np.intp), False, out, 0,
                      training, reset_after=reset_after)
        x = xs[:, 0, :].astype(np.float64)
        z, r = (1 / (1 + np.exp(-x[:, p])) for p in perms[:2])
        h_ref = (1 - z) * h0 + z * np.tanh(x[:, perms[2]] + r * h0)
        assert np.abs(h - h_ref).max() <= 1e-6, training
        np.testing.assert_array_equal(out[:, 0, :], h)


def float64_activations(x, training):
    """(tanh(x), sigmoid(x)) as the float64 kernels compute them, x (N, H):
    tanh is an RNN's output from an identity Wx; sigmoid is an LSTM's new
    cell from an identity forget-gate block, c = 1 and g = tanh(0) = 0, so
    c' = sigmoid(x) * 1 + 0 exactly."""
    N, H = x.shape
    xs = np.ascontiguousarray(x[:, None, :])
    eye, zero = np.eye(H), np.zeros((H, H))
    lengths = np.ones(N, np.intp)
    h, out = np.zeros((N, H)), np.empty((N, 1, H))
    _core.forward("rnn", xs, eye, zero, np.zeros(H), h, None, lengths, False, out, 0, training)
    tanh = out[:, 0].copy()
    Wx = np.ascontiguousarray(np.concatenate([eye, zero, zero, zero], axis=1))
    h, c = np.zeros((N, H)), np.ones((N, H))
    _core.forward("lstm", xs, Wx, np.zeros((H, 4 * H)), np.zeros(4 * H), h, c, lengths, False,
                  out, 0, training)
    return tanh, c


def ulps(got, x, fn):
    """|got - fn(x)| in units in the last place of fn(x), with fn in long
    double (80-bit on x86-64: 11 more bits than double), where
    |fn(x)| > 1e-300."""
    with np.errstate(over="ignore"):
        ref = fn(x.astype(np.longdouble))
    ok = np.abs(ref) > 1e-300
    err = np.abs(got.astype(np.longdouble) - ref)[ok]
    return (err / np.spacing(np.abs(ref[ok]).astype(np.float64))).astype(np.float64)


def test_float64_activations_are_accurate(rng):
    """The float64 passes' branch-free exp, sigmoid and tanh (src/_cells.h,
    rf_exp_in_range_d, rf_sigmoid_d, rf_tanh_d), against long double, over
    both of tanh's branches (|x| <= 0.625 and above, and the switch between
    them), tiny and large values: within 4 ulp (measured: 2.25 for each,
    where libm's tanh and exp-based sigmoid are within 1.2 and 2.0).
    Training and inference run the same functions."""
    H = 256
    x = np.concatenate([rng.uniform(-1, 1, (32, H)), rng.uniform(-30, 30, (32, H)),
                        rng.standard_normal((16, H)) * 1e-4,
                        rng.uniform(0.6, 0.65, (16, H)) * rng.choice([-1, 1], (16, H)),
                        rng.uniform(-800, 800, (16, H))])
    tanh, sig = float64_activations(x, False)
    assert ulps(tanh, x, np.tanh).max() <= 4
    assert ulps(sig, x, lambda v: 1 / (1 + np.exp(-v))).max() <= 4
    for a, b in zip((tanh, sig), float64_activations(x, True)):
        np.testing.assert_array_equal(a, b)


def test_float64_activations_at_the_extremes():
    """Saturation, and the clamps: sigmoid below -708 gives exp(-708) =
    3.3e-308 instead of smaller (absolute error < 3.4e-308) and is 1.0 from
    40 on, tanh is +-1 exactly past 19.1, both are exact around 0, and NaN
    stays NaN."""
    x = np.array([[-1e308, -800, -708, -40, -20, -1e-300, 0, 1e-300, 20, 40, 708, 800, 1e308],
                  [np.nan] * 13])      # (a NaN row: the projection spreads it over the row)
    tanh, sig = float64_activations(x, False)
    np.testing.assert_array_equal(tanh[0], [-1, -1, -1, -1, -1, -1e-300, 0, 1e-300,
                                            1, 1, 1, 1, 1])
    with np.errstate(over="ignore"):
        exact = 1 / (1 + np.exp(-x[0, 2:].astype(np.longdouble)))
    np.testing.assert_allclose(sig[0, 2:], exact.astype(np.float64), rtol=1e-15, atol=0)
    np.testing.assert_array_equal(sig[0, 5:8], 0.5)
    np.testing.assert_array_equal(sig[0, 9:], 1.0)
    assert (sig[0, :2] > 0).all() and (sig[0, :2] < 3.4e-308).all()
    assert np.isnan(tanh[1]).all() and np.isnan(sig[1]).all()


@pytest.mark.parametrize("state", ["zero", "one-unit"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lengths", [None, [6, 2, 5, 1]], ids=["full", "ragged"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell,opts", CELLS, ids=IDS)
def test_kernel_matches_reference_from_a_zero_state(cell, opts, reverse, lengths, dtype, state,
                                                    rng):
    """A zero initial state skips the first step's recurrent product
    (src/_seq.pxd, state_product); a state zero but for one unit must not."""
    run_both(cell, opts, dtype, reverse, lengths, rng, state=state)


def test_pass_clone_is_named_and_shown_by_info():
    """`rnnfast info` names the clone of the element-wise passes in use
    (src/_cells.h, rf_pass_clone): on an x86-64 CPU with AVX-512F the
    default build runs the AVX-512 clone; .ci/variant_build.sh avx2-passes
    runs the rest of this file on the AVX2 (x86-64-v3) one."""
    import io
    import platform

    from rnnfast import _info, _rnn
    clone = _rnn.pass_clone()
    assert clone in ("x86-64-v4", "avx512f", "x86-64-v3", "avx2", "default", "none")
    out = io.StringIO()
    _info.show_config(out)
    assert f"element-wise passes: the {clone} clone" in out.getvalue()
    if platform.machine() == "x86_64" and clone != "none":
        with open("/proc/cpuinfo") as fh:
            flags = next((line.split() for line in fh if line.startswith("flags")), [])
        from rnnfast import _build_info
        expected = ("x86-64-v3", "avx2") if "avx2" in flags and "fma" in flags else ("default",)
        v4 = {"avx512f", "avx512vl", "avx512bw", "avx512dq", "avx512cd"} <= set(flags)
        if v4 and "RNNFAST_PASS_NO_AVX512" not in _build_info.CFLAGS:
            expected = ("x86-64-v4", "avx512f")     # "avx512f": built by GCC < 12
        assert clone in expected, (clone, expected, _build_info.CFLAGS)
