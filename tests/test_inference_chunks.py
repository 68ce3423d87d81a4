"""Inference of a long sequence projects its inputs chunk by chunk of steps
into a gates buffer of chunk_steps steps (src/_seq.pxd,
rnnfast._core._gates_steps, infer_chunking).  On the packed kernel
(float32) every step's arithmetic is the one of the whole-sequence buffer,
so outputs and final states must be bitwise those of a buffer of all T
steps, for every chunk size, direction, ragged lengths, cell and thread
count.  On BLAS (float64)
a product's rounding may depend on its number of rows: equal to rounding."""
import os

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import _core, _gru, _lstm, _rnn

NETS = [(rnnfast.RNN, {}), (rnnfast.RNN, {"nonlinearity": "relu"}), (rnnfast.LSTM, {}),
        (rnnfast.GRU, {}), (rnnfast.GRU, {"reset_after": False})]
IDS = ["rnn", "rnn-relu", "lstm", "gru", "gru-reset-before"]


@pytest.fixture
def chunking():
    """_core.infer_chunking, with the limits restored after the test."""
    saved = _core.infer_chunking()
    yield _core.infer_chunking
    _core.infer_chunking(*saved)


def _infer(net, xs, lengths, chunk, chunking):
    """Inference with a gates buffer of `chunk` steps (chunk = T: the whole
    sequence), checked to be what the call really keeps."""
    # A chunk at any size, the whole sequence at any size: with a byte limit
    # left at its default (whole_max_bytes for T <= 2 * chunk,
    # long_whole_max_bytes beyond) these small calls keep all T steps, and
    # the "chunked" run is the whole-sequence path again.
    limit = 1 << 40 if chunk == xs.shape[1] else 0
    chunking(chunk_steps=chunk, whole_max_bytes=limit, long_whole_max_bytes=limit)
    N, T = xs.shape[:2]
    G = net.params[0].shape[1]                          # Wx of layer 0: (D, G)
    assert _core._gates_steps(N, T, G, np.dtype(net.dtype).itemsize, False) == chunk
    ys, state = net.forward(xs, lengths=lengths)
    return [ys] + [np.asarray(s) for s in (state if isinstance(state, tuple) else (state,))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls,kw", NETS, ids=IDS)
def test_chunked_inference_is_bitwise_the_whole_sequence(cls, kw, dtype, chunking):
    rng = np.random.default_rng(0)
    N, T, D, H = 9, 23, 5, 16
    xs = rng.standard_normal((N, T, D)).astype(dtype)
    lengths = rng.integers(1, T + 1, N)
    lengths[0] = T
    net = cls(D, H, bidirectional=True, dtype=dtype, random_state=0, **kw).eval()
    for lens in (None, lengths):
        whole = _infer(net, xs, lens, T, chunking)        # T <= 2 * chunk: one buffer
        for chunk in (1, 2, 3, 7, 11):
            got = _infer(net, xs, lens, chunk, chunking)
            for a, b in zip(whole, got):
                if dtype == np.float32 and _core._packed_in_use():
                    np.testing.assert_array_equal(a, b, err_msg=f"chunk {chunk}")
                else:       # BLAS: its rounding depends on a product's row count
                    tol = 1e-12 if dtype == np.float64 else 1e-5
                    np.testing.assert_allclose(a, b, rtol=tol, atol=tol / 100,
                                               err_msg=f"chunk {chunk}")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls,kw", NETS, ids=IDS)
def test_chunks_of_a_wide_input_projected_step_by_step(cls, kw, dtype, threads, chunking):
    """Over 1 MB of Wx (src/_seq.pxd, PROJECT_BY_STEP_BYTES), a chunk whose
    rows all run it whole and number at least its steps is projected one
    product per step over the rows (xs rows T*D apart) instead of one per
    row: the same outputs, both directions, every chunk size, and ragged
    rows (the product per row) beside uniform ones."""
    if threads == 2 and (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs")
    rng = np.random.default_rng(2)
    H, itemsize = 32, np.dtype(dtype).itemsize
    G = {rnnfast.RNN: 1, rnnfast.LSTM: 4, rnnfast.GRU: 3}[cls] * H
    D = (1 << 20) // (G * itemsize) + 1                 # Wx just over 1 MB
    N, T = 14, 23
    xs = rng.standard_normal((N, T, D)).astype(dtype) / np.sqrt(D)
    ragged = np.full(N, T)
    ragged[3] = 5
    net = cls(D, H, bidirectional=True, dtype=dtype, random_state=0, **kw).eval()
    with threadpool_limits(threads):
        for lens in (None, ragged):
            whole = _infer(net, xs, lens, T, chunking)
            for chunk in (1, 2, 7, 11):   # 7 and 11 <= rows a thread at 2 threads
                got = _infer(net, xs, lens, chunk, chunking)
                for a, b in zip(whole, got):
                    if dtype == np.float32 and _core._packed_in_use():
                        np.testing.assert_array_equal(a, b, err_msg=f"chunk {chunk}")
                    else:   # BLAS: sums of D ~ 1000-8000 products, rounded by row count
                        tol = 1e-12 if dtype == np.float64 else 1e-5
                        np.testing.assert_allclose(a, b, rtol=tol, atol=tol,
                                                   err_msg=f"chunk {chunk}")


@pytest.mark.parametrize("cls,kw", NETS, ids=IDS)
def test_chunked_inference_at_two_threads(cls, kw, chunking):
    """Split over batch rows, each thread projects its own rows' chunks."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs")
    if not _core.use_packed_gemm(True):
        pytest.skip("the step loop splits over threads with the packed kernel only")
    rng = np.random.default_rng(1)
    N, T, D, H = 24, 300, 16, 128
    xs = rng.standard_normal((N, T, D)).astype(np.float32)
    lengths = rng.integers(1, T + 1, N)
    lengths[0] = T
    net = cls(D, H, bidirectional=True, random_state=0, **kw).eval()
    with threadpool_limits(1):
        whole = _infer(net, xs, lengths, T, chunking)
    with threadpool_limits(2):
        assert _core.step_loop_threads() == 2
        got = _infer(net, xs, lengths, 32, chunking)
    for a, b in zip(whole, got):
        np.testing.assert_array_equal(a, b)


def test_long_inference_keeps_only_a_chunk_of_gates(chunking):
    """The point of it: the gates buffer of inference does not grow with T,
    while training keeps all T steps for backward."""
    chunking(chunk_steps=16, whole_max_bytes=1 << 20)
    N, G = 4, 256                                  # 4 KB a step in float32
    assert _core._gates_steps(N, 32, G, 4, False) == 32          # T <= 2 chunks
    assert _core._gates_steps(N, 256, G, 4, False) == 256        # 1 MB: whole
    assert _core._gates_steps(N, 257, G, 4, False) == 16
    assert _core._gates_steps(N, 5000, G, 4, False) == 16
    assert _core._gates_steps(N, 5000, G, 4, True) == 5000       # training: all T
    assert _core._buffer_shapes("lstm", N, 5000, 16, 64, G, False)[0] == (N, 16, G)
    # through the public API: a long inference keeps only a chunk, as a
    # buffer set (the layers' path) or in the scratch's block (the direct
    # path: a chunk's gates, then the work rows (N, G))
    net = rnnfast.LSTM(3, 64, random_state=0).eval()
    try:
        for direct in (False, True):
            _core.use_direct_infer(direct)
            _core._SCRATCH.clear()
            net.forward(np.zeros((N, 5000, 3), np.float32))
            kept = [bufs for stack in _core._SCRATCH._free.values() for _, bufs in stack]
            if direct:
                assert kept == []
                assert _core._SCRATCH.block_bytes == (N * 16 * G + N * G) * 4
            else:
                assert [b[0].shape for b in kept] == [(N, 16, G)]
                assert _core._SCRATCH.block_bytes == 0
    finally:
        _core.use_direct_infer(True)


@pytest.mark.parametrize("training", [False, True])
def test_kernels_check_the_steps_of_the_gates_buffer(training):
    """A chunk is for inference only; training needs all T steps, and no
    buffer may have more than T or fewer than 1."""
    N, T, D, H = 2, 6, 3, 4
    f = np.float32
    xs = np.zeros((N, T, D), f)
    lengths = np.full(N, T, np.intp)
    out = np.zeros((N, T, H), f)
    for mod, G, extra in ((_rnn, H, ()), (_lstm, 4 * H, ()), (_gru, 3 * H, ())):
        for steps in (0, 2, T + 1) if training else (0, T + 1):
            gates = np.zeros((N, steps, G), f)
            saved = np.zeros((N, T, H), f)
            work = np.zeros((N, 4 * H if mod is _gru else G), f)
            Wx, Wh = np.zeros((D, G), f), np.zeros((H, G), f)
            h = np.zeros((N, H), f)
            with pytest.raises(ValueError, match=rf"gates: expected {T} steps"):
                if mod is _rnn:
                    _rnn.rnn_forward(xs, Wx, Wh, np.zeros(G, f), h, lengths, False, False, out,
                                     0, gates, saved, work, training)
                elif mod is _lstm:
                    _lstm.lstm_forward(xs, Wx, Wh, np.zeros(G, f), h, h.copy(), lengths, False,
                                       out, 0, gates, saved, saved, saved, work, training)
                else:
                    _gru.gru_forward(xs, Wx, Wh, np.zeros(G, f), h, lengths, False, False, out,
                                     0, gates, saved, saved, work, training)


@pytest.mark.parametrize("cls,kw", NETS, ids=IDS)
def test_training_forward_is_bitwise_chunked_inference(cls, kw, chunking):
    """A training forward projects all T steps of its rows in one product
    and keeps them; inference through a 7-step chunk buffer projects 7 at
    a time: on the packed kernel the outputs must be bitwise the same."""
    if not _core._packed_in_use():
        pytest.skip("bitwise only on the packed kernel (float32)")
    rng = np.random.default_rng(2)
    N, T, D, H = 5, 150, 6, 16
    xs = rng.standard_normal((N, T, D)).astype(np.float32)
    lengths = np.array([150, 64, 65, 1, 131])
    net = cls(D, H, bidirectional=True, random_state=0, **kw)
    ys_train, _ = net.forward(xs, lengths=lengths)
    net.eval()
    got = _infer(net, xs, lengths, 7, chunking)
    np.testing.assert_array_equal(ys_train, got[0])


def test_shorter_inference_over_the_limit_takes_short_chunks(chunking):
    """Sequences of at most 2 * chunk_steps steps whose gates exceed
    the limit are projected short_chunk_steps steps at a time (when T
    is over twice that); long ones keep chunk_steps."""
    defaults = chunking()
    chunking(chunk_steps=256, short_chunk_steps=16, whole_max_bytes=1 << 20)
    N, G = 64, 1024                                # 256 KB a step in float32
    assert _core._gates_steps(N, 4, G, 4, False) == 4            # 1 MB: whole
    assert _core._gates_steps(N, 32, G, 4, False) == 32          # T <= 2 short chunks
    assert _core._gates_steps(N, 33, G, 4, False) == 16
    assert _core._gates_steps(N, 100, G, 4, False) == 16         # `medium`
    assert _core._gates_steps(N, 512, G, 4, False) == 16
    assert _core._gates_steps(N, 513, G, 4, False) == 256
    assert _core._gates_steps(N, 100, G, 4, True) == 100         # training: all T
    # the default limit leaves the smaller configurations whole
    chunking(*defaults)
    assert _core._gates_steps(32, 35, 512, 4, False) == 35       # `small` LSTM
    assert _core._gates_steps(20, 35, 2600, 4, False) == 35      # `zaremba-medium`
    assert _core._gates_steps(64, 100, 1024, 4, False) == 16     # `medium` LSTM


def test_long_inference_over_its_own_limit_takes_chunks(chunking):
    """Sequences of more than 2 * chunk_steps steps are chunked from
    long_whole_max_bytes (1 MB) of gates on, not from whole_max_bytes."""
    assert chunking()[3] == 1 << 20                              # the default
    assert _core._gates_steps(8, 1000, 192, 4, False) == 256     # GRU, 6 MB
    assert _core._gates_steps(8, 513, 64, 4, False) == 256       # 1.002 MB
    assert _core._gates_steps(8, 512, 64, 4, False) == 512       # not long: 1 MB whole
    assert _core._gates_steps(2, 1000, 64, 4, False) == 1000     # 512 KB: whole
    assert _core._gates_steps(8, 1000, 192, 4, True) == 1000     # training: all T
    chunking(long_whole_max_bytes=8 << 20)
    assert _core._gates_steps(8, 1000, 192, 4, False) == 1000
    assert _core._gates_steps(8, 2000, 192, 4, False) == 256     # 12 MB


def test_infer_chunking_refuses_bad_limits(chunking):
    with pytest.raises(TypeError, match="chunk_steps: expected an integer >= 1"):
        chunking(chunk_steps=2.5)
    with pytest.raises(ValueError, match="short_chunk_steps: expected an integer >= 1"):
        chunking(short_chunk_steps=0)
    with pytest.raises(ValueError, match="^whole_max_bytes: expected an integer >= 0"):
        chunking(whole_max_bytes=-1)
    with pytest.raises(ValueError, match="long_whole_max_bytes: expected an integer >= 0"):
        chunking(long_whole_max_bytes=-3)
    assert chunking(whole_max_bytes=0)[2] == 0
