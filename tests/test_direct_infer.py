"""A network's common inference forward runs each direction straight
through its kernel module's compiled entry (_dispatch._infer_layers, with
gates and work in the scratch's block) instead of through `forward` and
the kernel defs.  It must give bitwise what the layers' path gives, refuse
what the defs refuse, give its block back whatever happens, and step aside
(the layers' path runs) where it does not apply."""
import threading
from types import SimpleNamespace

import numpy as np
import pytest

import rnnfast
from rnnfast import _core, _dispatch, _gru, _lstm, _rnn

CELLS = {"rnn": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU}


@pytest.fixture
def direct_switch():
    """use(on): the direct path on or off, on again after the test."""
    yield _core.use_direct_infer
    _core.use_direct_infer(True)


def both_paths(net, xs, use, **kwargs):
    """(output, final state) of net.forward(xs, **kwargs) by the direct
    path and by the layers' path, and the scratch's block after each (the
    direct path's: whether each ran as it should)."""
    results, blocks = [], []
    for on in (True, False):
        use(on)
        _core._SCRATCH.clear()
        out, state = net.forward(xs, **kwargs)
        results.append((out, state if isinstance(state, tuple) else (state,)))
        blocks.append(_core._SCRATCH.block_bytes)
    use(True)
    return results, blocks


def assert_same(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    assert len(a[1]) == len(b[1])
    for x, y in zip(a[1], b[1]):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("make", [
    lambda dt: rnnfast.RNN(5, 7, dtype=dt, random_state=0),
    lambda dt: rnnfast.RNN(5, 7, nonlinearity="relu", num_layers=3, dtype=dt, random_state=0),
    lambda dt: rnnfast.LSTM(5, 7, num_layers=2, bidirectional=True, dtype=dt, random_state=0),
    lambda dt: rnnfast.GRU(5, 7, bidirectional=True, dtype=dt, random_state=0),
    lambda dt: rnnfast.GRU(5, 7, num_layers=2, reset_after=False, dtype=dt, random_state=0),
], ids=["rnn", "rnn-relu-3-layers", "lstm-2-bidir", "gru-bidir", "gru-reset-before-2"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,T", [(1, 1), (4, 6), (9, 40)])
def test_direct_path_matches_the_layers_path_bitwise(make, dtype, N, T, direct_switch):
    net = make(dtype).eval()
    xs = np.random.default_rng(N * T).standard_normal((N, T, 5)).astype(dtype)
    (direct, layers), blocks = both_paths(net, xs, direct_switch)
    assert blocks[0] > 0 and blocks[1] == 0          # each path ran as asked
    assert_same(direct, layers)


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_checked_path_inference_goes_direct_too(cell, dtype, direct_switch):
    """A given state, ragged lengths, a stateful network: the network's
    checked path (network_forward) takes the direct path as well."""
    kw = dict(nonlinearity="relu") if cell == "rnn" else {}
    net = CELLS[cell](5, 6, num_layers=2, bidirectional=True, dtype=dtype, random_state=0,
                      **kw).eval()
    rng = np.random.default_rng(4)
    xs = rng.standard_normal((4, 7, 5)).astype(dtype)
    h = rng.standard_normal((4, 4, 6)).astype(dtype)
    state = (h, 2 * h) if cell == "lstm" else h
    for kwargs in (dict(state=state), dict(lengths=[7, 1, 4, 6]),
                   dict(state=state, lengths=[2, 7, 7, 5])):
        (direct, layers), blocks = both_paths(net, xs, direct_switch, **kwargs)
        assert blocks[0] > 0 and blocks[1] == 0
        assert_same(direct, layers)
    stateful = [CELLS[cell](5, 6, stateful=True, dtype=dtype, random_state=0).eval()
                for _ in range(2)]
    outs = []
    for net, on in zip(stateful, (True, False)):
        direct_switch(on)
        outs.append([net.forward(xs)[0] for _ in range(3)])   # the state carried
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


def test_states_and_lengths_not_as_the_kernel_reads_them_step_aside(direct_switch):
    """network_forward is an internal entry: an xs, a state or lengths that
    a caller did not make as the kernel reads them take the layers' path
    (with the defs' checks), never the kernel unchecked."""
    from rnnfast._dispatch import network_forward
    net = rnnfast.LSTM(3, 4, random_state=0).eval()
    xs = np.ones((2, 5, 3), np.float32)
    full = np.full(2, 5, np.intp)
    h, c = np.zeros((1, 2, 4), np.float32), np.zeros((1, 2, 4), np.float32)
    for bad_h, bad_c, lengths in ((h[:, :1], c, full),                  # wrong shape
                                  (np.zeros((1, 4, 2), np.float32).transpose(0, 2, 1), c,
                                   full),                               # not contiguous
                                  (h.astype(np.float64), c, full),      # wrong type
                                  (h, c, full.astype(np.int32))):       # lengths' type
        _core._SCRATCH.clear()
        with pytest.raises((ValueError, TypeError)):
            network_forward("lstm", xs, net.params, bad_h, bad_c, lengths, 1, 1, 4, False,
                            False, False, None, True)
        assert _core._SCRATCH.block_bytes == 0
    for bad_xs in (xs.astype(np.float64), np.asfortranarray(np.ones((2, 5, 3), np.float32)),
                   np.ones((2, 5, 3), np.int32)):
        _core._SCRATCH.clear()
        with pytest.raises((ValueError, TypeError), match="^(xs|Wx): expected"):
            network_forward("lstm", bad_xs, net.params, h, c, full, 1, 1, 4, False,
                            False, False, None, True)
        assert _core._SCRATCH.block_bytes == 0
    read_only = h.copy()
    read_only.flags.writeable = False
    _core._SCRATCH.clear()
    with pytest.raises(ValueError, match="h: is read-only"):
        network_forward("lstm", xs, net.params, read_only, c, full, 1, 1, 4, False, False,
                        False, None, True)
    assert _core._SCRATCH.block_bytes == 0


def test_long_chunked_inference_matches(direct_switch):
    """Gates in chunks of 16 steps in the block (whole_max_bytes small)."""
    saved = _dispatch.infer_chunking()
    try:
        _dispatch.infer_chunking(whole_max_bytes=1 << 12)
        net = rnnfast.LSTM(3, 16, bidirectional=True, random_state=0).eval()
        xs = np.random.default_rng(0).standard_normal((3, 300, 3)).astype(np.float32)
        (direct, layers), blocks = both_paths(net, xs, direct_switch)
        assert blocks[0] == (3 * 16 * 64 + 3 * 64) * 4    # a chunk's gates, then work
        assert_same(direct, layers)
    finally:
        _dispatch.infer_chunking(*saved)


def test_nonfinite_xs_is_refused_and_the_block_given_back():
    net = rnnfast.GRU(4, 5, num_layers=2, random_state=0).eval()
    xs = np.ones((2, 3, 4), np.float32)
    xs[1, 2, 0] = np.inf
    _core._SCRATCH.clear()
    with pytest.raises(ValueError, match=r"^xs: contains NaN or Inf \(shape \(2, 3, 4\)\); "
                                         r"they would poison every later step$"):
        net.forward(xs)
    assert _core._SCRATCH.block_bytes > 0            # given back by the finally
    xs[1, 2, 0] = 0                                  # and the next call runs
    out, _ = net.forward(xs)
    assert np.isfinite(out).all()


def test_steps_aside_where_it_does_not_apply(direct_switch):
    """An empty batch or sequence, and a block over max_block_bytes, take
    the layers' path, with the same results."""
    net = rnnfast.LSTM(3, 4, random_state=0).eval()
    for shape in ((0, 5, 3), (2, 0, 3)):
        (direct, layers), blocks = both_paths(net, np.zeros(shape, np.float32), direct_switch)
        assert blocks == [0, 0]
        assert_same(direct, layers)
    scratch = _core._SCRATCH
    saved = scratch.max_block_bytes
    try:
        scratch.max_block_bytes = 100
        xs = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
        (direct, layers), blocks = both_paths(net, xs, direct_switch)
        assert blocks == [0, 0] and scratch._free     # a buffer set instead
        assert_same(direct, layers)
    finally:
        scratch.max_block_bytes = saved


def test_another_builds_kernels_go_through_their_defs(kernels_in_use):
    """Modules other than rnnfast's own (benchmarks/ab_inprocess.py) have no
    entry the dispatcher may trust: their defs run."""
    called = []

    def spy(module, name):
        real = getattr(module, name)

        def wrapped(*args):
            called.append(name)
            return real(*args)
        return wrapped
    mods = [SimpleNamespace(**{n: getattr(m, n) for n in dir(m) if not n.startswith("__")})
            for m in (_rnn, _lstm, _gru)]
    mods[0].rnn_forward = spy(_rnn, "rnn_forward")
    kernels_in_use(*mods)
    net = rnnfast.RNN(3, 4, random_state=0).eval()
    _core._SCRATCH.clear()
    net.forward(np.ones((2, 3, 3), np.float32))
    assert called == ["rnn_forward"] and _core._SCRATCH.block_bytes == 0


def test_concurrent_calls_each_get_their_own_block():
    """Threads call at once (the kernels run without the GIL): each call
    takes the block or a block of its own, never one in use."""
    nets = [CELLS[c](6, 32, random_state=i).eval() for i, c in enumerate(["rnn", "gru"] * 2)]
    xss = [np.random.default_rng(i).standard_normal((5 + i, 50, 6)).astype(np.float32)
           for i in range(4)]
    expected = [net.forward(xs)[0] for net, xs in zip(nets, xss)]
    failures = []

    def run(i):
        for _ in range(30):
            if not np.array_equal(nets[i].forward(xss[i])[0], expected[i]):
                failures.append(i)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []



def unaligned_copy(a):
    """A writable copy of `a` whose data sits one byte past an aligned
    address."""
    buf = np.zeros(a.nbytes + 1, np.uint8)
    out = buf[1:].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned and out.flags.c_contiguous
    return out


@pytest.mark.parametrize("training", [False, True])
def test_unaligned_xs_is_copied_and_unaligned_params_refused(training, general_path_calls):
    """The kernels read aligned arrays only: an unaligned xs is not taken
    by the compiled call (its pointers would reach the kernel unchecked)
    but copied by the checked path; an unaligned parameter is refused
    there, as the kernel's def words it."""
    net = rnnfast.LSTM(4, 3, random_state=0).train(training)
    xs = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32)
    want = net.forward(xs)[0]
    assert general_path_calls == []
    got = net.forward(unaligned_copy(xs))[0]
    assert general_path_calls == [1]
    np.testing.assert_array_equal(got, want)
    net.params[0] = unaligned_copy(net.params[0])
    with pytest.raises(ValueError, match=r"^Wx: expected an aligned array \(shape \(4, 12\)\)$"):
        net.forward(xs)
