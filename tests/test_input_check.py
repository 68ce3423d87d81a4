"""A network's input check folded into its projection (src/_seq.pxd,
check_rows): the kernel tests xs block by block just before it projects
them, and the network raises check_array's ValueError.  NaN or Inf
anywhere in xs is refused, on every path that projects (whole sequence on
the packed kernel, by blocks; on BLAS, float64; chunked inference, whose
padding is never projected), and the network is left as it was.  Finite
inputs give bitwise what the projection in one product gives."""
import os

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import _core

NETS = {"rnn": (rnnfast.RNN, {}), "lstm": (rnnfast.LSTM, {}), "gru": (rnnfast.GRU, {}),
        "gru-reset-before": (rnnfast.GRU, {"reset_after": False})}
MESSAGE = r"xs: contains NaN or Inf \(shape \(3, 140, 64\)\); they would poison"


@pytest.fixture
def chunking():
    """_core.infer_chunking, with the limits restored after the test."""
    saved = _core.infer_chunking()
    yield _core.infer_chunking
    _core.infer_chunking(*saved)


def _xs(dtype, T=140):
    # 3 x 140 rows of 64: several of the projection's blocks (96 rows of
    # float32, 48 of float64) and a partial one.
    return np.random.default_rng(0).standard_normal((3, T, 64)).astype(dtype)


# Where a bad value goes: the first and last value, the first value of a
# float32 block (rows 96 and 192 of the 420), a row's padding (lengths
# below), the middle of a row.
PLACES = [(0, 0, 0), (2, 139, 63), (0, 96, 0), (1, 52, 0), (0, 130, 17), (1, 77, 40)]
LENGTHS = np.array([120, 140, 60])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["train", "infer", "infer-chunked"])
@pytest.mark.parametrize("name", NETS)
def test_nan_or_inf_anywhere_in_xs_is_refused(name, mode, dtype, chunking):
    cls, kw = NETS[name]
    net = cls(64, 32, num_layers=2, bidirectional=True, dtype=dtype, random_state=0, **kw)
    if mode != "train":
        net.eval()
    xs = _xs(dtype)
    if mode == "infer-chunked":                         # project 16 steps at a time
        # both byte limits at 0: at the default long_whole_max_bytes (1 MB)
        # these gates (<= 430 KB) would be projected whole, as in "infer"
        chunking(chunk_steps=16, whole_max_bytes=0, long_whole_max_bytes=0)
        G = net.params[0].shape[1]                      # Wx of layer 0: (64, G)
        assert _core._gates_steps(3, 140, G, np.dtype(dtype).itemsize, False) == 16
    for lengths in (None, LENGTHS):
        for place in PLACES:
            for bad in (np.nan, np.inf, -np.inf):
                ys = xs.copy()
                ys[place] = bad
                with pytest.raises(ValueError, match=MESSAGE):
                    net.forward(ys, lengths=lengths)
        net.forward(xs, lengths=lengths)                 # finite: runs


def test_a_refused_xs_leaves_the_network_as_it_was():
    """The state of a stateful network and the last forward's saved
    activations are those of the call before: its backward still runs and
    gives what it gave without the refused call in between."""
    xs = _xs(np.float32)
    bad = xs.copy()
    bad[1, 100, 3] = np.nan
    dys = np.random.default_rng(1).standard_normal((3, 140, 32)).astype(np.float32)
    runs = []
    for refuse in (False, True):
        net = rnnfast.LSTM(64, 32, stateful=True, random_state=0)
        net.forward(xs)
        ys, state = net.forward(xs)
        if refuse:
            with pytest.raises(ValueError, match=MESSAGE):
                net.forward(bad)
        runs.append([ys, *state, *net.state, net.backward(dys), *net.grads])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", NETS)
def test_the_projection_by_blocks_is_bitwise_one_product(name, threads, split_anything):
    """The tested path (blocks) against the untested one (one product) of
    the same kernel, training, ragged, both directions."""
    if threads == 2 and (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs")
    cls, kw = NETS[name]
    xs = _xs(np.float32, T=500)
    net = cls(64, 32, bidirectional=True, random_state=0, **kw)
    lengths = np.array([500, 333, 41])
    runs = []
    for check in (True, False):
        Wx, Wh, b = net.params[:3]
        out = np.zeros((3, 500, 32), np.float32)
        h = np.zeros((3, 32), np.float32)
        c = np.zeros((3, 32), np.float32) if name == "lstm" else None
        with threadpool_limits(threads):
            _core.forward(net.cell, xs, Wx, Wh, b, h, c, lengths, False, out, 0, False,
                          reset_after=kw.get("reset_after", True), check_xs=check)
        runs.append([out, h])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["TimeRNN", "TimeLSTM", "TimeGRU"])
def test_time_layers_refuse_it_the_same_way(name):
    """A Time layer's forward has the same test; a stateful layer keeps the
    state it had."""
    cell = name[4:].lower()
    H, G = 32, {"rnn": 1, "lstm": 4, "gru": 3}[cell] * 32
    rng = np.random.default_rng(3)
    Wx, Wh = (0.1 * rng.standard_normal(s).astype(np.float32) for s in ((64, G), (H, G)))
    b = np.zeros(G, np.float32)
    layer = getattr(rnnfast, name)(Wx, Wh, b, stateful=True)
    xs = _xs(np.float32)
    layer.forward(xs)
    before = [np.copy(s) for s in (layer.h, layer.c) if s is not None]
    for place in PLACES:
        bad = xs.copy()
        bad[place] = np.inf
        with pytest.raises(ValueError, match=MESSAGE):
            layer.forward(bad)
    for a, b in zip(before, [s for s in (layer.h, layer.c) if s is not None]):
        np.testing.assert_array_equal(a, b)


def test_kernels_without_the_test_get_xs_tested_before_the_call(kernels_in_use):
    """benchmarks/ab_inprocess.py runs an older build's kernel defs, which
    take no check_xs: the dispatcher then tests xs itself, before the call
    (the same error), and never passes them the argument."""
    from rnnfast import _gru, _lstm, _rnn
    seen = []

    class OlderRNN:                      # an older build's _rnn: no check_xs
        rnn_backward = staticmethod(_rnn.rnn_backward)

        @staticmethod
        def rnn_forward(xs, Wx, Wh, b, h, lengths, reverse, relu, out, out_offset, gates,
                        h_prev, work, training, threads=1):
            seen.append(xs.shape)
            return _rnn.rnn_forward(xs, Wx, Wh, b, h, lengths, reverse, relu, out,
                                    out_offset, gates, h_prev, work, training, threads)

    xs = _xs(np.float32)
    bad = xs.copy()
    bad[2, 139, 63] = np.nan
    kernels_in_use(OlderRNN, _lstm, _gru)
    for cls in (rnnfast.RNN, rnnfast.LSTM):
        net = cls(64, 32, random_state=0)
        net.forward(xs)
        with pytest.raises(ValueError, match=MESSAGE):
            net.forward(bad)
    kernels_in_use(_rnn, _lstm, _gru)
    assert seen == [xs.shape]            # the RNN's good call only
    with pytest.raises(ValueError, match=MESSAGE):
        rnnfast.RNN(64, 32, random_state=0).forward(bad)
