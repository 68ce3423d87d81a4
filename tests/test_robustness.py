"""Numerics at extreme inputs, flat memory over many calls, and kernels
that release the GIL (two threads train two models with the results of
running them one after the other)."""
import threading
import time
import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import _reference
from rnnfast._layout import N_GATES

from _train_steps import train

CELLS = [("rnn", {}), ("lstm", {}), ("gru", {"reset_after": False}),
         ("gru", {"reset_after": True})]
TIME = {"rnn": rnnfast.TimeRNN, "lstm": rnnfast.TimeLSTM, "gru": rnnfast.TimeGRU}


# ------------------------------------------------------------------ numerics
@pytest.mark.parametrize("cls", [rnnfast.RNN, rnnfast.LSTM, rnnfast.GRU])
def test_float32_bias_gradient_over_many_rows_is_as_accurate_as_the_weights(cls):
    """db sums the gate gradients over all N*T rows: summed in one float32
    sequence over 48,000 rows it was 3e-6 off float64 (PyTorch's ~1.5e-7);
    in chunks of 512 rows, then the chunks, it is within dWh's accuracy."""
    rng = np.random.default_rng(0)
    N, T, D, H = 16, 3000, 16, 32
    n32 = cls(D, H, dtype=np.float32, random_state=0)
    n64 = cls(D, H, dtype=np.float64, random_state=0)
    for a, b in zip(n32.params, n64.params):
        b[...] = a
    xs = rng.standard_normal((N, T, D)).astype(np.float32)
    dhs = rng.standard_normal((N, T, H)).astype(np.float32)
    with threadpool_limits(1):
        n32.forward(xs)
        n32.backward(dhs)
        n64.forward(xs.astype(np.float64))
        n64.backward(dhs.astype(np.float64))
    rel = [np.abs(g32 - g64).max() / np.abs(g64).max()
           for g32, g64 in zip(n32.grads, n64.grads)]
    assert rel[2] < 1.2e-6, rel                         # db (was 2.7e-6 to 3.7e-6)
    assert rel[2] < 3 * rel[1], rel                     # ... and of dWh's order


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell,opts", CELLS, ids=["rnn", "lstm", "gru", "gru-reset-after"])
def test_saturated_activations_are_finite_and_silent(cell, opts, dtype):
    """Pre-activations spread over [-1e4, 1e4] (large inputs and weights):
    sigmoid and tanh saturate to finite values, forward and backward are
    finite, agree with the reference, and raise no floating-point warning."""
    rng = np.random.default_rng(0)
    N, T, D, H = 6, 5, 4, 3
    g = N_GATES[cell] * H
    Wx = rng.choice([-1.0, 1.0], (D, g)).astype(dtype) * 2500
    Wh = rng.choice([-1.0, 1.0], (H, g)).astype(dtype) * 1000
    b = rng.uniform(-1e4, 1e4, (2, g) if opts.get("reset_after") else (g,)).astype(dtype)
    xs = rng.uniform(-1, 1, (N, T, D)).astype(dtype)
    xs[0] = 1.0                                   # one row at the extreme: |a| ~ 1e4
    xs[1] = -1.0
    layer = TIME[cell](Wx, Wh, b, **opts)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        hs = layer.forward(xs)
        dxs = layer.backward(rng.standard_normal((N, T, H)).astype(dtype))
    for name, a in [("hs", hs), ("dxs", dxs)] + list(zip(("dWx", "dWh", "db"), layer.grads)):
        assert np.isfinite(a).all(), f"{name} is not finite"
    # the pre-activations really reach the 1e4 range
    a0 = xs[0, 0] @ Wx + np.asarray(b).reshape(-1, g)[0]
    assert np.abs(a0).max() > 5e3
    with np.errstate(over="ignore", under="ignore"):
        hs_ref = _reference.sequence_forward(
            cell, xs.astype(np.float64), Wx.astype(np.float64), Wh.astype(np.float64),
            b.astype(np.float64), np.zeros((N, H)), np.zeros((N, H)) if cell == "lstm" else None,
            **opts)[0]
    # saturated units are exactly +-1 or 0 and 1; the rest agree to float precision
    np.testing.assert_allclose(hs, hs_ref, rtol=0, atol=1e-3 if dtype == np.float32 else 1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_finite_state_stays_finite(dtype):
    """A state of 1e4 fed to LSTM/GRU cells: tanh/sigmoid of it are finite."""
    rng = np.random.default_rng(1)
    for cls, G in ((rnnfast.LSTMCell, 4), (rnnfast.GRUCell, 3)):
        Wx, Wh = (rng.standard_normal(s).astype(dtype) * 100 for s in ((2, 3 * G), (3, 3 * G)))
        cell = cls(Wx, Wh, np.zeros(3 * G, dtype))
        h = np.full((2, 3), 1e4, dtype)
        with warnings.catch_warnings(), np.errstate(all="raise"):
            warnings.simplefilter("error")
            out = cell.forward(np.full((2, 2), -1e4, dtype), h, *((h,) if G == 4 else ()))
            grads = cell.backward(*([np.ones((2, 3), dtype)] * (2 if G == 4 else 1)))
        for a in (out if isinstance(out, tuple) else (out,)) + tuple(grads):
            assert np.isfinite(a).all()


# -------------------------------------------------------------------- memory
def _rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/status"),
                    reason="needs /proc (Linux)")
def test_resident_memory_is_flat_over_10000_calls():
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((3, 4, 3)).astype(np.float32)
    dhs = rng.standard_normal((3, 4, 8)).astype(np.float32)
    nets = [rnnfast.LSTM(3, 4, num_layers=2, bidirectional=True, dropout=0.2, random_state=0),
            rnnfast.GRU(3, 4, bidirectional=True, stateful=True, random_state=1),
            rnnfast.RNN(3, 4, bidirectional=True, stateful=True, random_state=2)]
    time_layer = rnnfast.TimeLSTM(*(rng.standard_normal(s).astype(np.float32)
                                    for s in ((3, 16), (4, 16), (16,))), stateful=True)
    lengths = np.array([4, 2, 3])

    def call(i):
        net = nets[i % 3]
        net.forward(xs, lengths=lengths if i % 2 else None)
        net.backward(dhs)
        time_layer.forward(xs)
        time_layer.backward(dhs[:, :, :4])

    for i in range(1000):                        # warm-up: allocator pools, caches
        call(i)
    before = _rss_bytes()
    for i in range(10000):
        call(i)
    after = _rss_bytes()
    growth = (after - before) / before
    print(f"RSS before {before / 2**20:.1f} MiB, after 10000 calls {after / 2**20:.1f} MiB "
          f"({100 * growth:+.2f}%)")
    assert growth < 0.05, f"RSS grew from {before} to {after} bytes over 10000 calls"
    assert after - before < 4 * 2 ** 20, f"RSS grew by {after - before} bytes"


# ------------------------------------------------------------------- threads
def test_two_threads_train_like_one_after_the_other():
    """Two independent models trained in two threads give bitwise the
    results of training them one after the other."""
    jobs = [dict(seed=1, cell="lstm"), dict(seed=2, cell="gru")]
    sequential = [train(**job) for job in jobs]
    results = [None, None]

    def run(k):
        results[k] = train(**jobs[k])
    for _ in range(3):
        threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for (losses_s, params_s), (losses_t, params_t) in zip(sequential, results):
            assert losses_s == losses_t
            for a, b in zip(params_s, params_t):
                assert np.array_equal(a, b)


def test_kernels_release_the_gil():
    """While one thread runs a long kernel, another thread keeps running
    Python: its longest stall is much shorter than the kernel call (with
    the GIL held it would last the whole call)."""
    rng = np.random.default_rng(0)
    net = rnnfast.LSTM(32, 64, random_state=0).eval()
    xs = rng.standard_normal((8, 1500, 32)).astype(np.float32)
    with threadpool_limits(1):
        net.forward(xs)              # warm-up: a first call also allocates
        t0 = time.perf_counter()
        net.forward(xs)
        single = time.perf_counter() - t0
        reps = max(1, int(0.4 / single))           # ~0.4 s per kernel call in total
        xs_long = np.concatenate([xs] * reps, axis=1)
        done = threading.Event()
        span = []

        def worker():
            t = time.perf_counter()
            net.forward(xs_long)
            span.append(time.perf_counter() - t)
            done.set()
        th = threading.Thread(target=worker)
        last = time.perf_counter()
        longest = 0.0
        th.start()
        while not done.is_set():
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now
            sum(range(200))
        th.join()
    print(f"kernel call {span[0]:.3f} s, longest stall of the other thread {longest:.4f} s")
    assert span[0] > 0.1
    assert longest < 0.5 * span[0], (longest, span[0])


@pytest.mark.parametrize("cls", [rnnfast.RNN, rnnfast.LSTM, rnnfast.GRU])
def test_lengths_changed_between_forward_and_backward_do_not_change_the_gradients(cls):
    """A caller that reuses its lengths buffer for the next batch before
    the backward: the backward still runs the forward's lengths."""
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((3, 6, 4)).astype(np.float32)
    lengths = np.array([6, 4, 5], np.intp)
    net = cls(4, 5, bidirectional=True, random_state=0)
    hs, _ = net.forward(xs, lengths=lengths.copy())
    expected = net.backward(np.ones_like(hs)), [g.copy() for g in net.grads]
    reused = lengths.copy()
    hs, _ = net.forward(xs, lengths=reused)
    reused[:] = [2, 3, 1]
    got = net.backward(np.ones_like(hs)), net.grads
    np.testing.assert_array_equal(got[0], expected[0])
    for a, b in zip(got[1], expected[1]):
        np.testing.assert_array_equal(a, b)
