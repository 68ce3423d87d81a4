"""The shortcuts that cut the fixed cost of a call (docs/performance.md,
third session): they must keep every answer the slow paths gave."""
import numpy as np
import pytest

import rnnfast
from rnnfast import _core
from rnnfast._validation import _all_finite, check_array, check_lengths


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_agrees_with_isfinite(dtype):
    big = np.finfo(dtype).max / 4
    cases = [np.zeros(0, dtype), np.ones((3, 4), dtype),
             # the largest finite values, next to the all-ones exponent
             np.full((2, 5), big, dtype), np.array([big, -big, 1.0], dtype)]
    for bad in (np.nan, np.inf, -np.inf):
        for where in (0, 7, 19):
            a = np.ones(20, dtype)
            a[where] = bad
            cases.append(a)
        a = np.full(20, big, dtype)        # overflow and a NaN together
        a[3] = bad
        cases.append(a)
    for a in cases:
        assert _all_finite(a) == bool(np.isfinite(a).all()), a


def test_check_array_accepts_huge_finite_values_and_refuses_nan():
    big = np.full((1, 2, 3), 3e38, np.float32)
    assert check_array(big, "xs", np.float32, ("N", "T", 3)) is big
    big[0, 1, 2] = np.nan
    with pytest.raises(ValueError, match=r"xs: contains NaN or Inf \(shape \(1, 2, 3\)\)"):
        check_array(big, "xs", np.float32, ("N", "T", 3))


def test_default_lengths_are_shared_and_read_only():
    a = check_lengths(None, 3, 7)
    assert a is check_lengths(None, 3, 7)
    assert a.dtype == np.intp and a.tolist() == [7, 7, 7]
    with pytest.raises(ValueError):
        a[0] = 1
    assert check_lengths(None, 3, 8).tolist() == [8, 8, 8]


@pytest.mark.parametrize("cls", [rnnfast.LSTM, rnnfast.GRU, rnnfast.RNN])
def test_reused_buffer_sets_give_the_same_results(cls):
    """Each call takes its buffers as one set kept from an earlier call of
    the same shapes; training and inference sets are kept apart, and a
    set is not handed out twice while a cache still holds it."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    dy = rng.standard_normal((3, 5, 6)).astype(np.float32)
    net = cls(4, 6, random_state=0)
    _core._SCRATCH.clear()
    y1, _ = net.forward(x)
    dx1 = net.backward(dy)
    g1 = [g.copy() for g in net.grads]
    net.eval()
    y_eval, _ = net.forward(x)
    net.train()
    # Two forwards before one backward: the second must not get the first's set.
    y2, _ = net.forward(x)
    other = cls(4, 6, random_state=1)
    other.forward(x)
    dx2 = net.backward(dy)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(y1, y_eval)
    np.testing.assert_array_equal(dx1, dx2)
    for a, b in zip(g1, net.grads):
        np.testing.assert_array_equal(a, b)


def test_all_finite_of_other_float_types():
    a = np.ones(5, np.float16)
    assert _all_finite(a)
    a[2] = np.inf
    assert not _all_finite(a)


def test_all_finite_of_swapped_byte_order():
    a = np.ones(5, ">f4")
    assert _all_finite(a)
    a[1] = np.nan
    assert not _all_finite(a)


def test_compiled_all_finite_refuses_what_it_cannot_read():
    from rnnfast._rnn import all_finite
    with pytest.raises((TypeError, ValueError)):
        all_finite(np.ones(4, np.int32))              # not floats
    with pytest.raises((TypeError, ValueError)):
        all_finite(np.ones((2, 3), np.float32))       # not 1-D
    with pytest.raises((TypeError, ValueError)):
        all_finite(np.ones(8, np.float32)[::2])       # not contiguous
    assert all_finite(np.ones(0, np.float32))
