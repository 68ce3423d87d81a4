"""The training call's internal buffers and how their gradients come back
together (docs/performance.md items 187-188):

- the scratch sets (gates, saved states, work) start on 64-byte lines
  (_dispatch.aligned_empty), and the results do not depend on it;
- on 2 threads the per-thread parts of dWx, dWh and db are added on both
  threads when large (src/_seq.pxd, add_grad_parts): the gradients agree
  with one thread's, in float32 and float64, for every cell, with the
  blocks straddling the dWx / dWh / db boundaries.
"""
import os

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import _core, _dispatch

CELLS = {"rnn": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU}


@pytest.mark.parametrize("shape", [(64, 100, 1024), (3, 5, 7), (1,), (0, 3), (2, 0, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_aligned_empty_is_a_writable_c_array_on_a_line(shape, dtype):
    a = _dispatch.aligned_empty(shape, dtype)
    assert a.shape == shape and a.dtype == dtype
    assert a.flags.c_contiguous and a.flags.writeable
    if a.size:
        assert a.ctypes.data % 64 == 0
        a[...] = 1.5                     # the whole view is usable memory
        assert float(a.sum()) == 1.5 * a.size


def test_aligned_empty_takes_an_int_or_a_list_as_np_empty_does():
    assert _dispatch.aligned_empty(5, np.float32).shape == (5,)
    assert _dispatch.aligned_empty([2, np.int64(3)], "f8").shape == (2, 3)


@pytest.mark.parametrize("shape", [(-1, 4), (3, -2), -1])
def test_aligned_empty_refuses_a_negative_size(shape):
    with pytest.raises(ValueError, match=r"aligned_empty: shape: expected sizes >= 0"):
        _dispatch.aligned_empty(shape, np.float32)


@pytest.mark.parametrize("shape", [(2.5,), "ab", (None, 2), 1.0])
def test_aligned_empty_refuses_a_shape_of_non_integers(shape):
    with pytest.raises(TypeError, match=r"aligned_empty: shape: expected an integer"):
        _dispatch.aligned_empty(shape, np.float32)


def test_aligned_empty_refuses_objects_and_sizes_too_big():
    with pytest.raises(TypeError, match=r"aligned_empty: dtype: expected a dtype without"):
        _dispatch.aligned_empty((2,), object)
    with pytest.raises(ValueError, match=r"aligned_empty: shape \(1099511627776, "
                                         r"1099511627776\) of float32"):
        _dispatch.aligned_empty((2 ** 40, 2 ** 40), np.float32)


def _step(cell, xs, dys, seed=0):
    net = CELLS[cell](xs.shape[2], dys.shape[2], dtype=xs.dtype, random_state=seed)
    ys, _ = net.forward(xs)
    # the backward clears its caches' fields: the buffers are taken first
    buffers = [b for c in net._caches[0]
               for b in (c.gates, c.h_prev, c.c_prev, c.tanh_c, c.extra)
               if b is not None and b.size]
    dxs = net.backward(dys)
    return buffers, [ys, dxs] + [g.copy() for g in net.grads]


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_training_buffers_start_on_a_line_and_results_do_not_depend_on_it(cell):
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((16, 40, 32)).astype(np.float32)
    dys = rng.standard_normal((16, 40, 128)).astype(np.float32)
    with threadpool_limits(1):
        try:
            _core.use_aligned_scratch(False)
            _, unaligned = _step(cell, xs, dys)
            _core.use_aligned_scratch(True)
            buffers, aligned = _step(cell, xs, dys)
        finally:
            _core.use_aligned_scratch(True)
    assert len(buffers) == {"rnn": 2, "lstm": 4, "gru": 3}[cell]
    assert all(b.ctypes.data % 64 == 0 for b in buffers)
    for a, b in zip(unaligned, aligned):
        np.testing.assert_array_equal(a, b)


# (D + H) * G elements of at least 1 MB in float32 (ADD_SPLIT_BYTES) for
# every cell; D * G not a multiple of the 4096-element block.
D_WIDE, H_WIDE = 70, 512


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="splitting needs 2 CPUs")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_gradient_parts_added_on_two_threads_match_one_thread(cell, dtype):
    rng = np.random.default_rng(4)
    xs = rng.standard_normal((12, 24, D_WIDE)).astype(dtype)
    dys = rng.standard_normal((12, 24, H_WIDE)).astype(dtype)
    with threadpool_limits(1):
        _, one = _step(cell, xs, dys)
    with threadpool_limits(2):
        _, two = _step(cell, xs, dys)
        _, again = _step(cell, xs, dys)
    rtol, atol = (2e-4, 1e-4) if dtype == np.float32 else (1e-11, 1e-11)
    names = ["ys", "dxs"] + [f"grad {i}" for i in range(len(one) - 2)]
    for name, a, b, c in zip(names, one, two, again):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol, err_msg=name)
        np.testing.assert_array_equal(b, c, err_msg=name)   # deterministic


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_a_set_goes_back_to_the_pool_it_came_from_when_the_switch_flips_between(cell):
    """A set taken with the switch on and given back with it off (and the
    other way round) goes back where it came from: the aligned pool never
    hands out an unaligned set."""
    rng = np.random.default_rng(5)
    xs = rng.standard_normal((16, 40, 32)).astype(np.float32)
    dys = rng.standard_normal((16, 40, 128)).astype(np.float32)
    net = CELLS[cell](32, 128, random_state=0)
    try:
        with threadpool_limits(1):
            _dispatch.SCRATCH.clear()
            _core.use_aligned_scratch(False)
            net.forward(xs)                          # an unaligned set ...
            _core.use_aligned_scratch(True)
            net.backward(dys)                        # ... given back with the switch on
            for _ in range(3):
                net.forward(xs)
                assert all(b.ctypes.data % 64 == 0
                           for c in net._caches[0]
                           for b in (c.gates, c.h_prev, c.c_prev, c.tanh_c, c.extra)
                           if b is not None and b.size)
                net.backward(dys)
    finally:
        _core.use_aligned_scratch(True)
