"""The output pool (src/_outpool.h): a call's large outputs take memory the
caller has dropped, never memory of an array still alive, and give the same
results as numpy's allocator."""
import gc

import numpy as np
import pytest
from numpy._core.multiarray import get_handler_name

import rnnfast
from rnnfast import _core
from rnnfast.layers import TimeAffine
from rnnfast.losses import TimeSoftmaxWithLoss

# 8 x 600 x 64 float32: 1.2 MB an output, over the pool's 1 MB.
N, T, D, H = 8, 600, 64, 64
POOL = "rnnfast_output_pool"


@pytest.fixture(autouse=True)
def pool_on_and_empty():
    _core.use_output_pool(True)
    _core.clear_output_pool()
    yield
    _core.use_output_pool(True)
    _core.clear_output_pool()


def _data():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((N, T, D)).astype(np.float32),
            rng.standard_normal((N, T, H)).astype(np.float32))


@pytest.mark.parametrize("cls", [rnnfast.RNN, rnnfast.LSTM, rnnfast.GRU])
def test_large_outputs_come_from_the_pool_and_are_reused_once_dropped(cls):
    xs, dys = _data()
    net = cls(D, H, dtype=np.float32, random_state=0)
    ys, _ = net.forward(xs)
    dxs = net.backward(dys)
    assert get_handler_name(ys) == POOL and get_handler_name(dxs) == POOL
    before = _core.output_pool_stats()
    addresses = {ys.ctypes.data, dxs.ctypes.data}
    del ys, dxs
    gc.collect()
    assert _core.output_pool_stats()["blocks"] == before["blocks"] + 2
    ys, _ = net.forward(xs)
    dxs = net.backward(dys)
    assert {ys.ctypes.data, dxs.ctypes.data} == addresses
    assert _core.output_pool_stats()["hits"] == before["hits"] + 2


def test_small_outputs_and_the_switch_off_use_numpys_allocator():
    xs, _ = _data()
    net = rnnfast.RNN(D, H, dtype=np.float32, random_state=0)
    ys, _ = net.forward(xs[:, :10])                      # 20 KB
    assert get_handler_name(ys) != POOL
    _core.use_output_pool(False)
    ys, _ = net.forward(xs)
    assert get_handler_name(ys) != POOL


@pytest.mark.parametrize("cls", [rnnfast.RNN, rnnfast.LSTM, rnnfast.GRU])
def test_outputs_held_by_the_caller_are_never_handed_out_again(cls):
    """Keep every call's outputs alive: each new one must be fresh memory,
    and the kept ones must still hold what their call wrote."""
    xs, dys = _data()
    net = cls(D, H, num_layers=2, bidirectional=True, dtype=np.float32, random_state=0)
    dys2 = np.concatenate([dys, dys[:, ::-1]], axis=-1)        # both directions
    net.forward(xs)                     # outputs dropped at once: the pool
    net.backward(dys2)                  # holds blocks to hand out below
    gc.collect()
    assert _core.output_pool_stats()["blocks"] >= 2
    kept = []
    for i in range(4):
        ys, _ = net.forward(xs * (i + 1))
        dxs = net.backward(dys2 * (i + 1))
        kept.append((ys, ys.copy(), dxs, dxs.copy()))
    addresses = [a.ctypes.data for ys, _, dxs, _ in kept for a in (ys, dxs)]
    assert len(set(addresses)) == len(addresses)
    for ys, ys_copy, dxs, dxs_copy in kept:
        np.testing.assert_array_equal(ys, ys_copy)
        np.testing.assert_array_equal(dxs, dxs_copy)


@pytest.mark.parametrize("cls", [rnnfast.RNN, rnnfast.LSTM, rnnfast.GRU])
def test_pool_on_and_off_give_bitwise_the_same_step(cls):
    xs, dys = _data()
    runs = []
    for on in (True, False, True):         # the last: out of reused blocks
        _core.use_output_pool(on)
        net = cls(D, H, bidirectional=True, dtype=np.float32, random_state=0)
        ys, _ = net.forward(xs)
        runs.append([ys, net.backward(np.concatenate([dys, -dys], axis=-1)), *net.grads])
    for other in runs[1:]:
        for i, (a, b) in enumerate(zip(runs[0], other)):
            np.testing.assert_array_equal(a, b, err_msg=f"array {i}")


def test_time_layers_take_their_outputs_from_the_pool():
    xs, dys = _data()
    Wx, Wh, b = rnnfast.LSTM(D, H, dtype=np.float32, random_state=0).layer_params(0)
    layer = rnnfast.TimeLSTM(Wx, Wh, b)
    ys = layer.forward(xs)
    assert get_handler_name(ys) == POOL
    assert get_handler_name(layer.backward(dys)) == POOL


def _output_layer_step(V):
    """A language model's output layer and loss over (N, T, V) logits:
    the logits, the loss, dL/dlogits, dL/dx and the layer's grads."""
    rng = np.random.default_rng(1)
    W = rng.standard_normal((H, V)).astype(np.float32) * 0.1
    layer = TimeAffine(W, np.zeros(V, np.float32))
    loss = TimeSoftmaxWithLoss()
    hs = rng.standard_normal((N, T // 10, H)).astype(np.float32)
    logits = layer.forward(hs)
    value = loss.forward(logits, rng.integers(0, V, (N, T // 10)))
    dlogits = loss.backward()
    dhs = layer.backward(dlogits)
    return [logits, np.float32(value), dlogits, dhs, *layer.grads]


def _handler(a):
    """The allocator of the array owning a's memory (a may be a view)."""
    while a.base is not None:
        a = a.base
    return get_handler_name(a)


def test_output_layer_and_loss_take_their_large_arrays_from_the_pool():
    """TimeAffine's output, the loss's softmax (kept for its backward) and
    its gradient: 8 x 60 x 1000 float32, 1.9 MB each.  The same bits as
    with numpy's allocator."""
    before = _core.output_pool_stats()
    pooled = _output_layer_step(1000)
    assert _handler(pooled[0]) == POOL and _handler(pooled[2]) == POOL
    # logits, softmax and gradient: three blocks asked of the pool
    taken = _core.output_pool_stats()
    assert (taken["hits"] + taken["misses"]) - (before["hits"] + before["misses"]) == 3
    _core.use_output_pool(False)
    plain = _output_layer_step(1000)
    assert _handler(plain[0]) != POOL and _handler(plain[2]) != POOL
    for i, (a, b) in enumerate(zip(pooled, plain)):
        np.testing.assert_array_equal(a, b, err_msg=f"array {i}")


def test_pooled_arrays_resize_pickle_and_clear_like_any_other():
    import pickle
    xs, _ = _data()
    net = rnnfast.RNN(D, H, dtype=np.float32, random_state=0)
    ys, _ = net.forward(xs)
    want = ys.copy()
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(ys)), want)
    ys.resize((2 * N, T, H), refcheck=False)      # grows: realloc in the pool
    np.testing.assert_array_equal(ys[:N], want)
    ys.resize((N // 2, T, H), refcheck=False)     # shrinks in place
    np.testing.assert_array_equal(ys, want[:N // 2])
    del ys
    gc.collect()
    assert _core.output_pool_stats()["blocks"] >= 1
    _core.clear_output_pool()
    assert _core.output_pool_stats() == {**_core.output_pool_stats(), "blocks": 0, "bytes": 0}


def test_pool_is_safe_across_threads_and_fork():
    """Python threads dropping and taking pooled outputs at once get the
    results one thread gets, and a forked child (the pool's lock released
    for it) can use the pool too."""
    import multiprocessing
    import threading
    xs, dys = _data()
    net = rnnfast.GRU(D, H, dtype=np.float32, random_state=0)
    net.eval()
    want = net.forward(xs)[0].copy()
    errors = []

    def work():
        try:
            own = rnnfast.GRU(D, H, dtype=np.float32, random_state=0)
            own.eval()
            for _ in range(10):
                ys, _ = own.forward(xs)
                if not np.array_equal(ys, want):
                    errors.append("different outputs")
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(repr(exc))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _core.output_pool_stats()["hits"] > 0
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        sums = pool.apply(_forward_sum_twice, (xs,))
    assert sums[0] == sums[1] == float(want.sum(dtype=np.float64))


def _forward_sum_twice(xs):
    net = rnnfast.GRU(D, H, dtype=np.float32, random_state=0)
    net.eval()
    return [float(net.forward(xs)[0].sum(dtype=np.float64)) for _ in range(2)]


@pytest.mark.parametrize("args,error,match", [
    ((2, 3, 4, np.int32), TypeError, "dtype: expected float32 or float64, got int32"),
    ((2, -3, 4, np.float32), ValueError, r"sizes >= 0, got shape \(2, -3, 4\)"),
])
def test_empty_output_refuses_bad_arguments_naming_them(args, error, match):
    with pytest.raises(error, match=match):
        _core.empty_output(*args)


def test_empty_output_gives_the_shape_and_dtype_asked():
    for dtype in (np.float32, np.float64):
        for shape in ((0, 3, 4), (2, 3, 4), (8, 600, 64)):
            arr = _core.empty_output(*shape, dtype)
            assert arr.shape == shape and arr.dtype == dtype and arr.flags.c_contiguous
