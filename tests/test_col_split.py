"""A forward step loop split by columns of its products (src/_seq.pxd,
run_forward_steps; src/_threads.h, rf_barrier): every part multiplies all
batch rows by its share of Wh's columns, the pass still splits by rows, and
the parts wait for each other twice a step.  The same products and passes
run either way, so the results must be bit for bit those of the split by
rows (and of one thread); the column path must actually run where asked,
and fall back to rows where the pool cannot run every part at once."""
import os
import sys
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import _core, _gru, _lstm, _rnn

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or (os.cpu_count() or 1) < 2,
    reason="parts that wait for each other need the Linux pool and 2 CPUs")

MODULES = {rnnfast.RNN: _rnn, rnnfast.LSTM: _lstm, rnnfast.GRU: _gru}
CELLS = [(rnnfast.RNN, {}), (rnnfast.RNN, {"nonlinearity": "relu"}), (rnnfast.LSTM, {}),
         (rnnfast.GRU, {}), (rnnfast.GRU, {"reset_after": False})]
CELL_IDS = ["rnn", "rnn-relu", "lstm", "gru", "gru-reset-before"]


@pytest.fixture(autouse=True)
def _defaults():
    yield
    _core.use_col_split(1)
    _core.use_thread_pool(True)


def _net(cls, opts, D, H, dtype, **kw):
    if opts.get("nonlinearity"):
        kw["nonlinearity"] = opts["nonlinearity"]
    if "reset_after" in opts:
        kw["reset_after"] = opts["reset_after"]
    return cls(D, H, dtype=dtype, random_state=3, **kw)


def _run(net, xs, lengths, training, mode, threads, state=None):
    """Outputs, final state (and with training, input and parameter
    gradients) of one call with use_col_split(mode) at `threads`."""
    _core.use_col_split(mode)
    with threadpool_limits(threads):
        net.train() if training else net.eval()
        ys, state = net.forward(xs, state, lengths=lengths)
        got = [np.array(ys, copy=True)]
        got += [np.array(s, copy=True) for s in (state if isinstance(state, tuple)
                                                  else (state,))]
        if training:
            dys = np.random.default_rng(5).standard_normal(ys.shape).astype(xs.dtype)
            got.append(np.array(net.backward(dys), copy=True))
            got += [g.copy() for g in net.grads]
    return got


def _runs(cls):
    return MODULES[cls].col_split_runs()


@pytest.mark.parametrize("cls, opts", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("N, T, D, H, dtype, training, ragged, bidirectional", [
    (20, 6, 24, 300, np.float32, False, False, False),
    (20, 6, 24, 300, np.float32, True, True, True),
    (1, 9, 5, 200, np.float32, False, False, True),
    (3, 7, 33, 129, np.float64, True, True, False),
    (5, 4, 8, 64, np.float32, True, False, False),
    (8, 30, 16, 96, np.float64, False, True, True),
    # 3 rows: part 0 projects one row's inputs, part 1 two, so part 0's
    # first products (which add into every row's projected gates: RNN,
    # LSTM) would run before part 1's projection without inputs_done; a
    # state, since a first step from zeros skips its product
    (3, 300, 256, 128, np.float32, False, False, False),
    (3, 300, 256, 128, np.float32, True, False, False),
])
def test_by_columns_gives_the_bits_of_by_rows(cls, opts, N, T, D, H, dtype, training, ragged,
                                             bidirectional):
    rng = np.random.default_rng(N * 1000 + H)
    xs = rng.standard_normal((N, T, D)).astype(dtype)
    lengths = rng.integers(1, T + 1, N) if ragged else None
    if ragged:
        lengths[0] = T
    net = _net(cls, opts, D, H, dtype, bidirectional=bidirectional)
    state = None
    if N == 3:
        shape = (2 if bidirectional else 1, N, H)
        h0 = rng.standard_normal(shape).astype(dtype) * 0.5
        state = (h0, h0.copy()) if cls is rnnfast.LSTM else h0
    rows = _run(net, xs, lengths, training, 0, 2, state)
    one = _run(net, xs, lengths, training, 0, 1, state)
    before = _runs(cls)
    cols = _run(net, xs, lengths, training, 2, 2, state)
    reset_before = opts.get("reset_after") is False
    if reset_before:
        assert _runs(cls) == before       # two products a step: by rows only
    else:
        assert _runs(cls) > before        # the column path ran
    n_grads = len(net.grads) if training else 0
    for i, (a, b) in enumerate(zip(rows, cols)):
        if i >= len(rows) - n_grads and N < 8:
            # by rows one thread sums every row's gradients; by columns two
            # parts sum their own rows', then add: another order
            scale = float(np.abs(a).max())
            np.testing.assert_allclose(a, b, rtol=1e-12 if dtype == np.float64 else 1e-4,
                                       atol=(1e-13 if dtype == np.float64 else 1e-5) * scale)
        else:
            np.testing.assert_array_equal(a, b)
    # one thread: the same forward; the gradients' sums over rows go in
    # parts a thread at two threads, added in another order
    forward_items = len(one) - (1 + len(net.grads) if training else 0)
    for a, c in zip(rows[:forward_items], one[:forward_items]):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("cls", [rnnfast.RNN, rnnfast.LSTM, rnnfast.GRU])
def test_by_columns_matches_float64(cls):
    """Against the float64 call at one thread: the split computes the right
    thing, not just the same thing twice."""
    rng = np.random.default_rng(11)
    xs = rng.standard_normal((4, 12, 20)).astype(np.float32)
    net32 = cls(20, 160, dtype=np.float32, random_state=2)
    net64 = cls(20, 160, dtype=np.float64, random_state=2)
    before = _runs(cls)
    got = _run(net32, xs, None, True, 2, 2)
    assert _runs(cls) == before + 2       # the forward and the backward
    want = _run(net64, xs.astype(np.float64), None, True, 0, 1)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("cls, N, H, expected", [
    (rnnfast.GRU, 20, 650, True),     # 10 rows a thread, Wh 5 MB
    (rnnfast.LSTM, 20, 650, True),
    (rnnfast.RNN, 20, 650, False),    # Wh 1.7 MB: under COL_SPLIT_BYTES
    (rnnfast.GRU, 64, 650, False),    # 32 rows a thread
    (rnnfast.LSTM, 1, 256, True),     # one row: by rows, one thread idle
    (rnnfast.RNN, 4, 512, True),
    (rnnfast.RNN, 1, 256, False),     # Wh 256 KB: under COL_SPLIT_FEW_BYTES
    (rnnfast.LSTM, 1, 64, False),     # `tiny`
])
def test_the_rule_takes_the_column_path_where_measured_to_pay(cls, N, H, expected):
    # D = H: an LSTM's narrow input (D = 32 here) would put the inputs in
    # the step's product, which splits by rows (src/_seq.pxd, NarrowInputs)
    xs = np.random.default_rng(0).standard_normal((N, 20, H)).astype(np.float32)
    net = cls(H, H, random_state=0)
    net.eval()
    _core.use_col_split(1)
    before = _runs(cls)
    with threadpool_limits(2):
        net.forward(xs)
    assert (_runs(cls) > before) == expected
    with threadpool_limits(1):            # one thread: never
        before = _runs(cls)
        net.forward(xs)
        assert _runs(cls) == before


@pytest.mark.parametrize("cls, N, H, forward, backward", [
    (rnnfast.GRU, 20, 650, True, False),   # rows keep both threads busy: by rows
    (rnnfast.LSTM, 20, 650, True, False),
    (rnnfast.LSTM, 2, 256, True, True),    # 1 row a thread, Wh^T 1 MB
    (rnnfast.RNN, 4, 512, True, True),
    (rnnfast.GRU, 4, 256, True, False),    # Wh^T 768 KB: under COL_SPLIT_BWD_BYTES
    (rnnfast.RNN, 2, 256, False, False),
])
def test_the_rule_for_a_training_step(cls, N, H, forward, backward):
    xs = np.random.default_rng(0).standard_normal((N, 20, H)).astype(np.float32)
    net = cls(H, H, random_state=0)
    net.train()
    _core.use_col_split(1)
    with threadpool_limits(2):
        before = _runs(cls)
        ys, _ = net.forward(xs)
        assert _runs(cls) - before == forward
        net.backward(np.ones_like(ys))
        assert _runs(cls) - before == forward + backward


@pytest.mark.parametrize("cls", [rnnfast.LSTM, rnnfast.GRU, rnnfast.RNN])
def test_without_the_pool_the_loop_splits_by_rows(cls):
    """Threads created per call cannot promise to run at once (a part may
    run on the caller after its own): rf_run_together refuses, and the loop
    splits by rows with the same results."""
    xs = np.random.default_rng(1).standard_normal((6, 10, 12)).astype(np.float32)
    net = cls(12, 192, random_state=1)
    want = _run(net, xs, None, True, 0, 2)
    _core.use_thread_pool(False)
    before = _runs(cls)
    got = _run(net, xs, None, True, 2, 2)
    assert _runs(cls) == before
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)


def test_two_python_threads_at_once_get_their_own_results():
    """One holds the pool (by columns), the other finds it busy (by rows,
    threads of its own); both must finish with their own results."""
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((2, 40, 16)).astype(np.float32) for _ in range(2)]
    nets = [rnnfast.GRU(16, 256, random_state=i) for i in range(2)]
    want = [_run(n, x, None, False, 0, 1) for n, x in zip(nets, xs)]
    _core.use_col_split(2)
    errors = []

    def worker(i):
        try:
            with threadpool_limits(2):
                for _ in range(30):
                    ys, _ = nets[i].forward(xs[i])
                    np.testing.assert_array_equal(ys, want[i][0])
        except Exception as exc:              # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a call never returned"
    assert not errors, errors


def test_many_short_calls_pass_every_barrier():
    """Calls of one to three steps, one row, by columns: two barriers a step
    and a wake of the worker a call, many times over; a lost wake-up would
    hang here."""
    net = rnnfast.LSTM(8, 64, random_state=0)
    net.eval()
    rng = np.random.default_rng(3)
    _core.use_col_split(2)
    before = _runs(rnnfast.LSTM)
    with threadpool_limits(2):
        for i in range(300):
            xs = rng.standard_normal((1, 1 + i % 3, 8)).astype(np.float32)
            ys, _ = net.forward(xs)
            assert np.isfinite(ys).all()
    assert _runs(rnnfast.LSTM) > before


@pytest.mark.parametrize("mode", [3, -1, 1.5, 1.0, "2", None])
def test_use_col_split_refuses_other_modes(mode):
    with pytest.raises(ValueError, match=r"use_col_split: mode: expected 0, 1 or 2, got"):
        _core.use_col_split(mode)
    for mod in (_rnn, _lstm, _gru):
        with pytest.raises(ValueError, match=r"use_col_split: mode: expected 0, 1 or 2"):
            mod.use_col_split(mode)


@pytest.mark.parametrize("cls, T", [(rnnfast.RNN, 50), (rnnfast.LSTM, 50), (rnnfast.GRU, 50),
                                    (rnnfast.LSTM, 1000), (rnnfast.GRU, 1000)])
def test_a_bad_dhs_is_refused_by_columns_and_leaves_the_gradients(cls, T):
    """By columns dhs is tested all before the steps, even in a call long
    enough to go chunk by chunk (T = 3000): a part that stopped at a
    chunk's test would leave the other waiting at the barrier.  The
    refusal leaves the gradients as they were."""
    gates = {rnnfast.RNN: 1, rnnfast.LSTM: 4, rnnfast.GRU: 3}[cls]
    # a part's one row goes chunk by chunk at T = 1000 (by rows it would)
    assert (_rnn.grad_chunk_steps(2, T, gates * 128, 128, 1, 4) > 0) == (T == 1000)
    rng = np.random.default_rng(6)
    xs = rng.standard_normal((2, T, 128)).astype(np.float32)   # D = H: not narrow
    dhs = rng.standard_normal((2, T, 128)).astype(np.float32)
    net = cls(128, 128, random_state=0)
    _core.use_col_split(2)
    with threadpool_limits(2):
        net.forward(xs)
        net.backward(dhs)
        good = [g.copy() for g in net.grads]
        for place in [(0, 0, 0), (1, T - 1, 127), (0, T // 2, 3)]:
            bad = dhs.copy()
            bad[place] = np.nan
            before = _runs(cls)
            net.forward(xs)
            with pytest.raises(ValueError, match="dhs: contains NaN or Inf"):
                net.backward(bad)
            assert _runs(cls) == before + 1       # the forward; the backward refused first
            for g, w in zip(net.grads, good):
                np.testing.assert_array_equal(g, w)
        before = _runs(cls)
        net.forward(xs)
        net.backward(dhs)
        assert _runs(cls) == before + 2
        for g, w in zip(net.grads, good):
            np.testing.assert_array_equal(g, w)
