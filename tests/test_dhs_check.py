"""A network's dhs check folded into its backward (src/_seq.pxd,
chunk_dout_finite): the last layer's first direction tests every column
of dhs as it reads it, all at once before its steps (a call that does not
go chunk by chunk) or chunk by chunk (a long call).  NaN or Inf anywhere
is refused with check_array's ValueError; the gradients and .dstate are
then as they were, even when the refusal comes chunks into the call, and
the forward is spent, as after any backward."""
import os

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import _core, _gru, _lstm, _rnn

NETS = {"rnn": (rnnfast.RNN, {}), "lstm": (rnnfast.LSTM, {}), "gru": (rnnfast.GRU, {}),
        "gru-reset-before": (rnnfast.GRU, {"reset_after": False})}
GATES = {"rnn": 1, "lstm": 4, "gru": 3, "gru-reset-before": 3}
N, D, H = 4, 16, 32
# T = 4000: every cell's backward goes chunk by chunk (asserted below);
# T = 60: all of dhs is tested before the steps.
SIZES = {"short": 60, "chunked": 4000}


def _places(T):
    """Where a bad value goes in dhs (N, T, 2H): the first and last value;
    the first and last time of a chunk's rows (the backward meets time T-1
    first and time 0 last, after every other chunk has added to the
    gradients); the second direction's columns, which the first direction
    tests for it; the middle of a row."""
    return [(0, 0, 0), (N - 1, T - 1, 2 * H - 1), (2, T - 1, 0), (1, 0, 5),
            (3, T // 2, H + 7), (0, T // 3, 20)]


def _data(T, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((N, T, D)).astype(dtype),
            rng.standard_normal((N, T, 2 * H)).astype(dtype))


def _snapshot(net):
    dstate = net.dstate if isinstance(net.dstate, tuple) else (net.dstate,)
    return [g.copy() for g in net.grads] + [s.copy() for s in dstate]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def _message(T):
    return rf"dhs: contains NaN or Inf \(shape \({N}, {T}, {2 * H}\)\); they would poison"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", NETS)
def test_nan_or_inf_anywhere_in_dhs_is_refused(name, size, dtype):
    """Refused wherever it is; grads and dstate left as the backward before
    left them; the forward spent; the next forward and backward give what
    they gave before."""
    T = SIZES[size]
    chunk = _rnn.grad_chunk_steps(N, T, GATES[name] * H, H, 0, np.dtype(dtype).itemsize)
    assert (chunk > 0) == (size == "chunked")
    cls, kw = NETS[name]
    net = cls(D, H, num_layers=2, bidirectional=True, dtype=dtype, random_state=0, **kw)
    xs, dhs = _data(T, dtype)
    lengths = np.array([T, T - 7, 1, T // 2])     # the first direction still chunks
    with threadpool_limits(1):                    # one thread: chunks when long
        _refuse_everywhere(net, xs, dhs, T, lengths)


def _refuse_everywhere(net, xs, dhs, T, lengths):
    for lens in (None, lengths):
        net.forward(xs, lengths=lens)
        net.backward(dhs)
        good = _snapshot(net)
        for i, place in enumerate(_places(T)):
            bad = dhs.copy()
            bad[place] = (np.nan, np.inf, -np.inf)[i % 3]
            net.forward(xs, lengths=lens)
            with pytest.raises(ValueError, match=_message(T)):
                net.backward(bad)
            _assert_same(good, _snapshot(net))
            with pytest.raises(RuntimeError, match="needs a forward"):
                net.backward(dhs)                     # spent
        net.forward(xs, lengths=lens)
        net.backward(dhs)
        _assert_same(good, _snapshot(net))


# N = 8, T = 525: the step loop splits over 2 threads (4 rows a thread
# or more), and the call is not long enough to go chunk by chunk: all of
# dhs (1.05 MB) is tested before the steps of either thread.
SPLIT_N, SPLIT_T = 8, 525


@pytest.mark.parametrize("name", NETS)
def test_whole_dhs_tested_before_a_split_step_loop(name, split_anything):
    """A bad value in either thread's rows, at either end of them, is
    refused before any step, and nothing is written."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs")
    n, T = SPLIT_N, SPLIT_T
    assert _rnn.grad_chunk_steps(n, T, GATES[name] * H, H, 0, 4) == 0
    cls, kw = NETS[name]
    net = cls(D, H, bidirectional=True, random_state=0, **kw)
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((n, T, D)).astype(np.float32)
    dhs = rng.standard_normal((n, T, 2 * H)).astype(np.float32)
    message = rf"dhs: contains NaN or Inf \(shape \({n}, {T}, {2 * H}\)\)"
    with threadpool_limits(2):
        assert _core.step_loop_threads() == 2
        net.forward(xs)
        net.backward(dhs)
        good = _snapshot(net)
        # rows 0-3 are the first thread's, rows 4-7 the second's
        for i, place in enumerate([(0, 0, 0), (3, T - 1, 2 * H - 1), (4, 0, 0),
                                   (7, T - 1, 2 * H - 1), (5, T // 2, H + 3)]):
            bad = dhs.copy()
            bad[place] = (np.nan, np.inf, -np.inf)[i % 3]
            net.forward(xs)
            with pytest.raises(ValueError, match=message):
                net.backward(bad)
            _assert_same(good, _snapshot(net))
        net.forward(xs)
        net.backward(dhs)
    _assert_same(good, _snapshot(net))


@pytest.mark.parametrize("name", NETS)
def test_refused_on_two_threads(name, split_anything):
    """Each thread tests its own rows' chunks; the gradients (summed from
    the threads' parts) are put back all the same."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs")
    T = SIZES["chunked"]
    cls, kw = NETS[name]
    net = cls(D, H, bidirectional=True, random_state=0, **kw)
    xs, dhs = _data(T, np.float32)
    with threadpool_limits(2):
        assert _core.step_loop_threads() == 2
        net.forward(xs)
        net.backward(dhs)
        good = _snapshot(net)
        for place in [(0, 0, 0), (N - 1, 0, 3), (1, T - 1, H)]:
            bad = dhs.copy()
            bad[place] = np.nan
            net.forward(xs)
            with pytest.raises(ValueError, match=_message(T)):
                net.backward(bad)
            _assert_same(good, _snapshot(net))
        net.forward(xs)
        net.backward(dhs)
    _assert_same(good, _snapshot(net))


@pytest.mark.parametrize("name", ["TimeRNN", "TimeLSTM", "TimeGRU"])
@pytest.mark.parametrize("size", SIZES)
def test_time_layers_refuse_it_the_same_way(name, size):
    T = SIZES[size]
    cell = name[4:].lower()
    G = GATES[cell] * H
    rng = np.random.default_rng(3)
    Wx, Wh = (0.1 * rng.standard_normal(s).astype(np.float32) for s in ((D, G), (H, G)))
    layer = getattr(rnnfast, name)(Wx, Wh, np.zeros(G, np.float32))
    xs, dhs = _data(T, np.float32)
    dhs = np.ascontiguousarray(dhs[:, :, :H])
    layer.forward(xs)
    layer.backward(dhs)
    good = [g.copy() for g in layer.grads]
    for place in [(0, 0, 0), (N - 1, T - 1, H - 1), (2, T // 2, 9)]:
        bad = dhs.copy()
        bad[place] = np.inf
        layer.forward(xs)
        with pytest.raises(ValueError, match=rf"dhs: contains NaN or Inf \(shape \({N}, {T}, "
                                             rf"{H}\)\)"):
            layer.backward(bad)
        _assert_same(good, layer.grads)
        with pytest.raises(RuntimeError, match="called before forward"):
            layer.backward(dhs)
    layer.forward(xs)
    layer.backward(dhs)
    _assert_same(good, layer.grads)


def test_finite_dhs_gives_bitwise_what_the_untested_backward_gives():
    """The test only reads dout: a chunked backward with it and without it
    (the kernel def's dout_name) writes the same bits."""
    T = SIZES["chunked"]
    net = rnnfast.LSTM(D, H, random_state=0)
    xs, dhs = _data(T, np.float32)
    dhs = np.ascontiguousarray(dhs[:, :, :H])
    Wx, Wh, b = net.params
    lengths = np.full(N, T)
    runs = []
    for name in ("dhs", None):
        h, c = np.zeros((N, H), np.float32), np.zeros((N, H), np.float32)
        out = np.empty((N, T, H), np.float32)
        with threadpool_limits(1):
            cache = _core.forward("lstm", xs, Wx, Wh, b, h, c, lengths, False, out, 0, True)
            dh, dc = np.zeros((N, H), np.float32), np.zeros((N, H), np.float32)
            grads = [np.full_like(p, 7.0) for p in net.params]
            dxs = np.empty((N, T, D), np.float32)
            _core.backward(cache, dhs, 0, dh, dc, *grads, dxs, False, dout_name=name)
        runs.append([dh, dc, dxs, *grads])
    _assert_same(*runs)


def test_kernels_without_the_test_get_dout_tested_before_the_call(kernels_in_use):
    """benchmarks/ab_inprocess.py runs an older build's kernel defs, which
    take no dout_name: the dispatcher then tests dout itself, before the
    call (the same error), finding it at its place in each cell's backward
    def, and never passes them the argument."""
    from types import SimpleNamespace
    seen = []

    def older(mod, name):                  # its backward without dout_name
        real = getattr(mod, f"{name}_backward")

        def backward(*args):
            seen.append(name)
            return real(*args)
        return SimpleNamespace(**{f"{name}_forward": getattr(mod, f"{name}_forward"),
                                  f"{name}_backward": backward})

    T = SIZES["short"]
    xs, dhs = _data(T, np.float32)
    dhs = np.ascontiguousarray(dhs[:, :, :H])
    bad = dhs.copy()
    bad[2, T - 1, H - 1] = np.nan
    message = rf"dhs: contains NaN or Inf \(shape \({N}, {T}, {H}\)\)"
    kernels_in_use(older(_rnn, "rnn"), older(_lstm, "lstm"), older(_gru, "gru"))
    for cls in (rnnfast.RNN, rnnfast.LSTM, rnnfast.GRU):
        net = cls(D, H, random_state=0)
        net.forward(xs)
        net.backward(dhs)
        net.forward(xs)
        with pytest.raises(ValueError, match=message):
            net.backward(bad)
    assert seen == ["rnn", "lstm", "gru"]      # the good calls only
    kernels_in_use(_rnn, _lstm, _gru)
    net = rnnfast.RNN(D, H, random_state=0)
    net.forward(xs)
    with pytest.raises(ValueError, match=message):
        net.backward(bad)


def test_this_builds_defs_are_called_as_they_are():
    """Only an older build's defs are wrapped (a Python call more a kernel
    call): this build's take check_xs and dout_name themselves."""
    from rnnfast import _dispatch
    for f in (_rnn.rnn_forward, _lstm.lstm_forward, _gru.gru_forward):
        assert _dispatch._with_xs_check(f) is f
    for f, at in ((_rnn.rnn_backward, 6), (_lstm.lstm_backward, 5), (_gru.gru_backward, 6)):
        assert _dispatch._with_dout_check(f, at) is f
