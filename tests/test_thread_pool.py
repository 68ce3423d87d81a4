"""The kernels' thread pool (src/_threads.h): workers kept between calls,
none lost or leaked, correct after a fork and when two Python threads split
calls at the same time (one of them then creates its own threads)."""
import os
import sys
import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import _core

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or (os.cpu_count() or 1) < 2,
    reason="the pool is Linux's (futexes); splitting needs 2 CPUs")


def _case(seed, N=24, T=30, D=16, H=128):
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((N, T, D)).astype(np.float32)
    dys = rng.standard_normal((N, T, H)).astype(np.float32)
    return xs, dys


def _train_step(cls, xs, dys, seed=0):
    """Outputs, input gradients and parameter gradients of one training step
    (at the caller's thread count: large enough that 2 threads split both
    the forward and the backward step loops)."""
    net = cls(xs.shape[2], dys.shape[2], random_state=seed)
    ys, _ = net.forward(xs)
    dxs = net.backward(dys)
    return [ys, dxs] + [g.copy() for g in net.grads]


def _tasks():
    return len(os.listdir("/proc/self/task"))


def test_workers_are_kept_between_calls_and_not_multiplied():
    xs, dys = _case(0)
    with threadpool_limits(2):
        for cls in (rnnfast.LSTM, rnnfast.GRU, rnnfast.RNN):
            _train_step(cls, xs, dys)      # each kernel module starts its worker
        before = _tasks()
        for _ in range(50):
            for cls in (rnnfast.LSTM, rnnfast.GRU, rnnfast.RNN):
                _train_step(cls, xs, dys)
        assert _tasks() == before


@pytest.mark.parametrize("cls", [rnnfast.LSTM, rnnfast.GRU, rnnfast.RNN])
def test_a_forked_child_splits_calls_like_its_parent(cls):
    """The parent's workers do not exist in a forked child; the child must
    start its own, not wait forever for the parent's."""
    xs, dys = _case(1)
    with threadpool_limits(2):
        expected = _train_step(cls, xs, dys)          # the pool now has a worker
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:                                   # child
            code = 1
            try:
                os.close(read_end)
                got = _train_step(cls, xs, dys)
                same = all(np.array_equal(a, b) for a, b in zip(expected, got))
                os.write(write_end, b"same" if same else b"different")
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        deadline = time.monotonic() + 60
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("the forked child hung in a split kernel call")
            time.sleep(0.01)
        answer = os.read(read_end, 64)
        os.close(read_end)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    assert answer == b"same", answer


def test_two_python_threads_splitting_at_once_get_their_own_results():
    """While one Python thread holds a module's pool, another one's split
    call creates its own threads: each must get, bit for bit, the results
    it gets alone (no call changes the thread count another one reads)."""
    cases = [_case(2), _case(3)]
    with threadpool_limits(2):
        alone = [_train_step(rnnfast.LSTM, xs, dys) for xs, dys in cases]
        results = [[], []]

        def run(k):
            for _ in range(20):
                results[k].append(_train_step(rnnfast.LSTM, *cases[k]))
        threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for k in range(2):
        assert len(results[k]) == 20
        for got in results[k]:
            for a, b in zip(alone[k], got):
                np.testing.assert_array_equal(a, b)


def test_calls_leave_the_blas_thread_count_alone():
    """BLAS's thread count is the whole process's (numpy's and SciPy's
    calls in other Python threads read it too): a training step at 2
    threads must not change it, not even for its own duration."""
    get = _core._GET_BLAS_THREADS
    if get is None:
        pytest.skip("this BLAS's thread count cannot be read")
    xs, dys = _case(5, N=32, T=100)
    seen = set()
    with threadpool_limits(2):
        done = threading.Event()

        def train():
            for cls in (rnnfast.LSTM, rnnfast.GRU, rnnfast.RNN):
                for _ in range(3):
                    _train_step(cls, xs, dys)
            done.set()
        worker = threading.Thread(target=train)
        worker.start()
        polls = 0
        while not done.is_set():        # ctypes drops the GIL for each call
            seen.add(get())
            polls += 1
        worker.join()
    assert polls > 100
    assert seen == {2}


def test_products_a_kernel_thread_would_send_to_blas_run_on_the_packed_kernel():
    """In a part of a threaded region, src/_blas.pxd's gemm runs the
    product on the packed kernel: bit for bit the packed kernel's result
    (BLAS's would differ in the last bits), and numpy's to rounding."""
    from rnnfast import _core, _rnn
    if not _core.use_packed_gemm(True):
        pytest.skip("needs rnnfast's packed kernel (AVX2+FMA), which this CPU or build lacks")
    rng = np.random.default_rng(6)
    # m: the rows of A^T B's sum; (40, ...) takes the packed_matmul_tn check below
    for m, k, n in [(10, 37, 50), (24, 5, 33), (7, 64, 16), (40, 37, 50)]:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        for accumulate in (False, True):
            c0 = rng.standard_normal((m, n)).astype(np.float32)
            got, packed = c0.copy(), c0.copy()
            _rnn.threaded_matmul(a, b, got, False, False, accumulate)
            assert _rnn.packed_matmul(a, b, packed, False, accumulate)
            np.testing.assert_array_equal(got, packed)
            np.testing.assert_allclose(got, a @ b + (c0 if accumulate else 0),
                                       rtol=1e-4, atol=1e-4)
        bn = rng.standard_normal((n, k)).astype(np.float32)
        got, packed = np.empty((m, n), np.float32), np.empty((m, n), np.float32)
        _rnn.threaded_matmul(a, bn, got, False, True, False)
        assert _rnn.packed_matmul(a, bn, packed, True, False)
        np.testing.assert_array_equal(got, packed)
        np.testing.assert_allclose(got, a @ bn.T, rtol=1e-4, atol=1e-4)
        # A^T B (the parameter gradients), also below the 32 rows that go
        # to BLAS outside threads
        bt = rng.standard_normal((m, n)).astype(np.float32)
        got, packed = np.empty((k, n), np.float32), np.empty((k, n), np.float32)
        _rnn.threaded_matmul(a, bt, got, True, False, False)
        np.testing.assert_allclose(got, a.T @ bt, rtol=1e-4, atol=1e-4)
        if m >= 32:
            _rnn.packed_matmul_tn(a, np.empty((m, 0), np.float32), bt, packed,
                                  np.empty((0, n), np.float32))
            np.testing.assert_array_equal(got, packed)
    with pytest.raises(ValueError, match="threaded_matmul: shapes"):
        _rnn.threaded_matmul(np.ones((4, 3), np.float32), np.ones((2, 5), np.float32),
                             np.ones((4, 5), np.float32), False, False, False)


@pytest.mark.parametrize("cls", [rnnfast.LSTM, rnnfast.GRU, rnnfast.RNN])
def test_split_steps_with_few_rows_a_thread_match_float64(cls):
    """N = 8, T = 3: each of 2 threads sums its 12 rows' gradients, fewer
    than the 32 below which gemm_tn would call BLAS; in a thread they run
    on the packed kernel.  Against the same step in float64 at 1 thread."""
    xs, dys = _case(7, N=8, T=3, D=40, H=256)
    with threadpool_limits(2):
        got = _train_step(cls, xs, dys)
    with threadpool_limits(1):
        net = cls(xs.shape[2], dys.shape[2], dtype=np.float64, random_state=0)
        ys, _ = net.forward(xs.astype(np.float64))
        want = [ys, net.backward(dys.astype(np.float64))] + list(net.grads)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("cls", [rnnfast.LSTM, rnnfast.GRU, rnnfast.RNN])
@pytest.mark.parametrize("switch", [_core.use_thread_pool, _core.use_pool_spread],
                         ids=["pool", "spread"])
def test_pool_switches_change_no_bits(cls, switch):
    """The pool (against threads per call) and moving a worker off its
    caller's CPU (rf_move_off_cpu) only change which threads run the parts,
    and where, not the parts."""
    xs, dys = _case(4)
    results = []
    try:
        for on in (True, False):
            assert switch(on) == on
            with threadpool_limits(2):
                results.append(_train_step(cls, xs, dys))
    finally:
        switch(True)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_split_limits_refuse_what_is_not_a_positive_integer():
    from rnnfast import _gru, _lstm, _rnn
    for mod in (_lstm, _gru, _rnn):
        before = mod.split_limits()
        for kw, err in (({"step_flops": 0}, ValueError), ({"grad_rows": -3}, ValueError),
                        ({"grad_flops": 2 ** 70}, ValueError), ({"grad_rows": 1.5}, TypeError),
                        ({"step_flops": "2e6"}, TypeError), ({"grad_rows": True}, TypeError)):
            name = next(iter(kw))
            with pytest.raises(err, match=rf"{name}: expected an integer >= 1 or None"):
                mod.split_limits(**kw)
        assert mod.split_limits() == before           # nothing half-set
        assert mod.split_limits(grad_rows=64)[2] == 64
        mod.split_limits(*before)


def _worker_affinities():
    """CPU sets of this process's threads other than the main one."""
    main = str(threading.get_native_id())
    return {t: os.sched_getaffinity(int(t)) for t in os.listdir("/proc/self/task")
            if t != main}


def test_workers_stay_within_the_cpus_the_process_allowed():
    # A worker that moves off its caller's CPU narrows its own set, never
    # beyond what it was created with, and never to nothing.
    allowed = os.sched_getaffinity(0)
    xs, dys = _case(6)
    with threadpool_limits(2):
        for _ in range(20):
            for cls in (rnnfast.LSTM, rnnfast.GRU, rnnfast.RNN):
                _train_step(cls, xs, dys)
    for tid, cpus in _worker_affinities().items():
        assert cpus and cpus <= allowed, (tid, cpus, allowed)


@pytest.mark.parametrize("cls", [rnnfast.LSTM, rnnfast.GRU, rnnfast.RNN])
def test_workers_take_the_callers_flush_to_zero(cls):
    """A library built with -ffast-math sets flush-to-zero (and
    denormals-are-zero) on the calling thread, after the pool's worker
    exists: the worker's part must still round as the caller's does
    (src/_threads.h, rf_fpmode).  Oracles: threads created for the call,
    which inherit the caller's mode (every array), and one thread (the
    outputs and input gradients, which are row by row; the parameter
    gradients' parts add up in another order)."""
    from rnnfast import _rnn
    try:
        was = _rnn.flush_subnormals(False)  # put back at the end
    except NotImplementedError:
        pytest.skip("flush_subnormals is x86-64's")
    # Inputs and weights of ~1e-20: the products (~1e-40) are subnormal in
    # float32, flushed to zero under FTZ/DAZ, kept otherwise.
    xs, dys = _case(4)
    xs *= np.float32(1e-20)
    dys *= np.float32(1e-20)

    def step(threads):
        net = cls(xs.shape[2], dys.shape[2], random_state=4)
        for p in net.params:
            p *= np.float32(1e-20)
        with threadpool_limits(threads):
            ys, _ = net.forward(xs)
            dxs = net.backward(dys)
        return [ys.copy(), dxs.copy()] + [g.copy() for g in net.grads]

    plain = step(2)                         # the pool's workers exist from here on
    _rnn.flush_subnormals(True)
    try:
        pooled = step(2)
        one = step(1)
        assert _core.use_thread_pool(False) is False
        try:
            spawned = step(2)
        finally:
            _core.use_thread_pool(True)
    finally:
        _rnn.flush_subnormals(was)
    assert any(not np.array_equal(a, b) for a, b in zip(plain, pooled)), \
        "the case has no subnormals: FTZ changed nothing"
    for a, b in zip(pooled, spawned):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(pooled[:2], one[:2]):
        np.testing.assert_array_equal(a, b)
