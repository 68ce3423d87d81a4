"""The step loops' prefetch of each row's next step (src/_seq.pxd) reads
ahead and writes nothing: networks give bitwise the same results with it
on and off, forward and backward, ragged, both directions, 1 and 2
threads, float32 and float64."""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import _core, _lstm, _rnn

# Long enough that every cell prefetches (checked below): 8 rows of 1100
# steps at H = 64 walk 4.5 MB (RNN) and more.
N, T, D, H = 8, 1100, 16, 64
CELLS = {"rnn": (rnnfast.RNN, {}), "lstm": (rnnfast.LSTM, {}), "gru": (rnnfast.GRU, {}),
         "gru-reset-before": (rnnfast.GRU, {"reset_after": False})}


def _steps_switched(switch, make_net, xs, lengths=None, threads=1):
    """[outputs, input gradients, *parameter gradients] of a training step
    of make_net() on xs, with `switch` (a _core.use_* function) on and then
    off; the switch is left on."""
    runs = []
    for on in (True, False):
        switch(on)
        try:
            net = make_net()
            with threadpool_limits(threads):
                ys, _ = net.forward(xs, lengths=lengths)
                dys = np.random.default_rng(2).standard_normal(ys.shape).astype(xs.dtype)
                runs.append([ys, net.backward(dys), *net.grads])
        finally:
            switch(True)
    return runs


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "gru-reset-before"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_networks_are_bitwise_the_same_with_and_without_prefetch(cell, threads, dtype):
    cls, kw = CELLS[cell]
    gates = {"rnn": 1, "lstm": 4}.get(cell, 3) * H
    assert _rnn.prefetch_applies(N, T, gates, H, np.dtype(dtype).itemsize)
    xs = np.random.default_rng(0).standard_normal((N, T, D)).astype(dtype)
    lengths = np.random.default_rng(1).integers(T // 2, T + 1, N)
    lengths[0] = T
    runs = _steps_switched(
        _core.use_prefetch,
        lambda: cls(D, H, bidirectional=True, dtype=dtype, random_state=3, **kw),
        xs, lengths, threads)
    for i, (a, b) in enumerate(zip(*runs)):
        np.testing.assert_array_equal(a, b, err_msg=f"array {i}")


def test_short_calls_do_not_prefetch():
    """Below the limit (N*T rows of gates and a state: 3 MB) the rows are
    in cache and a call does not prefetch; use_prefetch(False) turns it
    off everywhere."""
    assert not _rnn.prefetch_applies(8, 100, 4 * 64, 64)
    assert not _rnn.prefetch_applies(8, 700, 64, 64)          # RNN: 2.9e6 bytes
    # RNN at T = 1000 (4.1e6 bytes) takes the long path, rebuilt states too.
    assert _rnn.prefetch_applies(8, 1000, 64, 64)
    assert _rnn.states_rebuilt_applies(8, 1000, 64, 64)
    assert _rnn.prefetch_applies(8, 10_000, 4 * 64, 64)
    _core.use_prefetch(False)
    try:
        assert not _rnn.prefetch_applies(8, 10_000, 4 * 64, 64)
    finally:
        _core.use_prefetch(True)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "gru-reset-before"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("ragged", [False, True])
def test_gradients_by_chunks_of_steps_match_all_at_once(cell, threads, ragged):
    """A long backward interleaves its steps with the gradients of each
    chunk of steps (src/_seq.pxd, chunk_steps; the reverse direction of a
    ragged batch does not).  Its input and parameter gradients match those
    computed after all steps: float64 to rounding, float32 within the
    reordered sums' rounding; outputs are untouched.  Large batches of
    wide gates (a chunk of 16 steps beyond the cache) do not chunk."""
    assert _rnn.grad_chunk_steps(64, 100, 4 * 256, 256) == 0
    cls, kw = CELLS[cell]
    # sizes at which every cell chunks, in float32 and float64
    N, T, D, H = 8, 2200, 16, 32
    gates = {"rnn": 1, "lstm": 4}.get(cell, 3) * H
    rows = N // threads
    assert 0 < _rnn.grad_chunk_steps(N, T, gates, H, rows, 4) < T
    assert 0 < _rnn.grad_chunk_steps(N, T, gates, H, rows, 8) < T
    assert _rnn.grad_chunk_steps(N, T, gates, H, rows, 4, uniform=False) == 0
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 2e-4)):
        xs = np.random.default_rng(0).standard_normal((N, T, D)).astype(dtype)
        lengths = np.random.default_rng(1).integers(T // 2, T + 1, N) if ragged else None
        if ragged:
            lengths[0] = T
        runs = _steps_switched(
            _core.use_grad_chunks,
            lambda: cls(D, H, bidirectional=True, dtype=dtype, random_state=3, **kw),
            xs, lengths, threads)
        np.testing.assert_array_equal(runs[0][0], runs[1][0])
        for i, (a, b) in enumerate(zip(runs[0][1:], runs[1][1:])):
            scale = np.abs(b).max()
            np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale, err_msg=f"array {i + 1}")


def test_two_layer_network_with_dropout_by_chunks_matches_all_at_once():
    """Chunks in a stacked network: the second layer's input is the first
    layer's output (with a dropout mask between them), its input gradient
    the first layer's output gradient."""
    N, T, D, H = 8, 2200, 16, 32
    xs = np.random.default_rng(0).standard_normal((N, T, D))
    runs = _steps_switched(
        _core.use_grad_chunks,
        lambda: rnnfast.LSTM(D, H, num_layers=2, dropout=0.3, bidirectional=True,
                             dtype=np.float64, random_state=3), xs)
    assert _rnn.grad_chunk_steps(N, T, 4 * H, H, N, 8) > 0
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    for i, (a, b) in enumerate(zip(runs[0][1:], runs[1][1:])):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * np.abs(b).max(),
                                   err_msg=f"array {i + 1}")


@pytest.mark.parametrize("args,name", [((8, 100, 0, 64), "G"), ((0, 100, 4, 4), "N"),
                                       ((8, 0, 4, 4), "T"), ((8, 100, 4, -1), "H"),
                                       ((8, 100, 4, 4, 2, 3), "itemsize")])
def test_the_size_helpers_refuse_bad_sizes(args, name):
    """The inspection helpers name the bad size instead of dividing by
    it (G = 0 once crashed the interpreter with a floating-point trap)."""
    for fn in (_rnn.grad_chunk_steps, _rnn.prefetch_applies, _rnn.states_rebuilt_applies):
        full = args if fn is _rnn.grad_chunk_steps or len(args) == 4 else args[:4] + args[5:]
        with pytest.raises(ValueError, match=f"{name}: expected"):
            fn(*full)
    with pytest.raises(ValueError, match="rows: expected 0..N=8"):
        _rnn.grad_chunk_steps(8, 100, 4, 4, 9)


def test_product_over_runs_refuses_runs_that_do_not_fit():
    a = np.ones((12, 3), np.float32)
    b, c1, c2 = np.ones((12, 4), np.float32), np.zeros((3, 4), np.float32), \
        np.zeros((3, 4), np.float32)
    for runs, run_len in ((0, 1), (3, 5), (3, 0), (5, 3)):
        with pytest.raises(ValueError, match="do not agree"):
            _rnn.packed_matmul_tn(a, a, b, c1, c2, runs=runs, run_len=run_len)


def _poison_kept_buffers():
    """Every internal buffer kept for reuse (_core._SCRATCH) filled with
    NaN, as if an earlier call had left garbage in it, and the chunk
    buffers RNN's backward allocates filled so from now on."""
    for stack in _core._SCRATCH._free.values():
        for _, bufs in stack:
            for buf in bufs:
                buf.fill(np.nan)
    _rnn.poison_chunk_buffers(True)
    _lstm.poison_chunk_buffers(True)


@pytest.mark.parametrize("cell", ["rnn-tanh", "rnn-relu", "lstm"])
@pytest.mark.parametrize("chunks", [True, False])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_reads_no_state_it_did_not_write(dtype, ragged, threads, chunks, cell):
    """A long RNN or LSTM call's forward saves the first step's state only;
    its backward rebuilds each later one from the activations it is about
    to overwrite, into the chunk's own buffer or into h_prev (src/_seq.pxd,
    states_rebuilt).  Whatever the reused buffers held before must not
    reach the results: a training step after every kept buffer (and each
    chunk buffer) was filled with NaN equals, bitwise, the same step on
    clean buffers, bidirectional (the reverse direction of a ragged batch
    does not chunk), with the backward by chunks or not."""
    N, T, D = 8, 1100, 16
    H = 32 if cell == "lstm" else 64
    G = 4 * H if cell == "lstm" else H
    itemsize = np.dtype(dtype).itemsize
    assert 0 < _rnn.grad_chunk_steps(N, T, G, H, N // threads, itemsize) < T
    assert _rnn.states_rebuilt_applies(N, T, G, H, itemsize)
    assert not _rnn.states_rebuilt_applies(64, 100, 256, 256)    # `medium`: every state saved
    xs = np.random.default_rng(0).standard_normal((N, T, D)).astype(dtype)
    lengths = None
    if ragged:
        lengths = np.random.default_rng(1).integers(T // 2, T + 1, N)
        lengths[0] = T
    if cell == "lstm":
        make = lambda: rnnfast.LSTM(D, H, bidirectional=True, dtype=dtype,  # noqa: E731
                                    random_state=3)
    else:
        make = lambda: rnnfast.RNN(D, H, bidirectional=True, dtype=dtype,  # noqa: E731
                                   nonlinearity=cell[4:], random_state=3)
    results = []
    _core.use_grad_chunks(chunks)
    try:
        for poison in (False, True):
            _core._SCRATCH.clear()
            _steps_switched(_core.use_prefetch, make, xs, lengths, threads)  # fills the cache
            if poison:
                _poison_kept_buffers()
            results.append(_steps_switched(_core.use_prefetch, make, xs, lengths, threads)[0])
    finally:
        _core.use_grad_chunks(True)
        _rnn.poison_chunk_buffers(False)
        _lstm.poison_chunk_buffers(False)
    for i, (clean, poisoned) in enumerate(zip(*results)):
        assert np.isfinite(clean).all()
        np.testing.assert_array_equal(poisoned, clean, err_msg=f"array {i}")
