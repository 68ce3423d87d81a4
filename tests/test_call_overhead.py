"""The shortcuts that cut the fixed cost of a call (docs/performance.md,
third session): they must keep every answer the slow paths gave."""
import numpy as np
import pytest

import rnnfast
from rnnfast import _core
from rnnfast._validation import finite_array, check_array, check_lengths


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_agrees_with_isfinite(dtype):
    big = np.finfo(dtype).max / 4
    cases = [np.zeros(0, dtype), np.ones((3, 4), dtype),
             # the largest finite values, next to the all-ones exponent
             np.full((2, 5), big, dtype), np.array([big, -big, 1.0], dtype)]
    for bad in (np.nan, np.inf, -np.inf):
        # lengths past the AVX-512 loop's 16 / 8 values a vector, and tails
        for n in (20, 67, 1000):
            for where in (0, 7, 19, n // 2 + 1, n - 1):
                a = np.ones(n, dtype)
                a[where] = bad
                cases.append(a)
        a = np.full(20, big, dtype)        # overflow and a NaN together
        a[3] = bad
        cases.append(a)
    for a in cases:
        assert finite_array(a) == bool(np.isfinite(a).all()), a


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
    assert finite_array(a)
    a[2] = np.inf
    assert not finite_array(a)


def test_all_finite_of_swapped_byte_order():
    a = np.ones(5, ">f4")
    assert finite_array(a)
    a[1] = np.nan
    assert not finite_array(a)


def test_compiled_all_finite_refuses_what_it_cannot_read():
    from rnnfast._rnn import all_finite
    with pytest.raises((TypeError, ValueError)):
        all_finite(np.ones(4, np.int32))              # not floats
    with pytest.raises((TypeError, ValueError)):
        all_finite(np.ones((2, 3), np.float32))       # not 1-D
    with pytest.raises((TypeError, ValueError)):
        all_finite(np.ones(8, np.float32)[::2])       # not contiguous
    assert all_finite(np.ones(0, np.float32))


# ------------------------------------------------------------------
# The compiled fast paths of check_array and check_live_arrays
# (rnnfast._rnn.array_ready, arrays_ready) against the Python checks alone.

def _outcome(fn, *args, **kwargs):
    """What a check does: (error type, message) or ("ok", result)."""
    try:
        return "ok", fn(*args, **kwargs)
    except Exception as exc:                       # noqa: BLE001 - compared below
        return type(exc), str(exc)


def _slow_only(monkeypatch):
    from rnnfast import _validation
    monkeypatch.setattr(_validation, "array_ready", lambda *a: False)
    monkeypatch.setattr(_validation, "arrays_ready", lambda *a: False)


class _Sub(np.ndarray):
    pass


def _check_array_cases():
    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
    good = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    nan, inf = good.copy(), good.astype(np.float64)
    nan[1, 2, 3] = np.nan
    inf[0, 0, 0] = -np.inf
    ro = good.copy()
    ro.flags.writeable = False
    return [
        (good, f32, ("N", "T", 4), False),
        (good, f32, (2, 3, 4), False),
        (good.astype(np.float64), f64, ("N", 3, 4), False),
        (good, f32, ("N", "T", 5), False),               # wrong size
        (good, f32, ("N", 4), False),                    # wrong rank
        (good, f32, [2, 3, 4], False),                   # expected given as a list
        (good, f32, (np.int64(5), "T", 4), False),       # a numpy int is a name, as before
        (good, f64, ("N", "T", 4), False),               # wrong dtype: converted
        (good, np.float32, ("N", "T", 4), False),        # a type, not a dtype object
        (good.astype(">f4"), f32, ("N", "T", 4), False),  # other byte order
        (good.astype(np.int32), f32, ("N", "T", 4), False),
        (good.astype(np.complex64), f32, ("N", "T", 4), False),
        (good.transpose(1, 0, 2), f32, ("N", "T", 4), False),  # not contiguous
        (good[:, :, ::2], f32, ("N", "T", 2), False),
        (nan, f32, ("N", "T", 4), False),
        (nan, f32, ("N", "T", 4), True),
        (inf, f64, ("N", "T", 4), False),
        (inf, f32, ("N", "T", 4), False),
        (np.full((2, 3, 4), 1e39), f32, ("N", "T", 4), False),   # Inf by the cast
        (ro, f32, ("N", "T", 4), False),                 # read-only inputs are fine
        (good.view(_Sub), f32, ("N", "T", 4), False),    # a subclass: the Python path
        (good.tolist(), f32, ("N", "T", 4), False),
        (np.zeros((0, 3, 4), np.float32), f32, ("N", "T", 4), False),
        (np.float32(1.5), f32, (), False),
        ("abc", f32, ("N",), False),
    ]


@pytest.mark.parametrize("case", range(len(_check_array_cases())))
def test_check_array_fast_path_agrees_with_python_checks(case, monkeypatch):
    value, dtype, expected, allow = _check_array_cases()[case]
    fast = _outcome(check_array, value, "xs", dtype, expected, allow)
    _slow_only(monkeypatch)
    slow = _outcome(check_array, value, "xs", dtype, expected, allow)
    if fast[0] == "ok":
        assert slow[0] == "ok"
        assert (fast[1] is value) == (slow[1] is value)
        assert type(fast[1]) is type(slow[1]) and fast[1].dtype == slow[1].dtype
        np.testing.assert_array_equal(fast[1], slow[1])
    else:
        assert fast == slow


def test_array_ready_says_yes_only_to_arrays_passed_as_they_are():
    from rnnfast._rnn import array_ready
    f32 = np.dtype(np.float32)
    a = np.ones((2, 3), np.float32)
    assert array_ready(a, f32, ("N", 3))
    assert not array_ready(a, f32, (2, 4))
    assert not array_ready(a.T, f32, (3, 2))
    assert not array_ready(a, np.dtype(np.float64), (2, 3))
    a[1, 1] = np.nan
    assert not array_ready(a, f32, (2, 3))
    assert array_ready(a, f32, (2, 3), True)
    b = np.ones(4, np.float32)
    b.shape = (2, 2)                     # in place, same object
    assert not array_ready(b, f32, (4,))


def _live_cases():
    shapes = [(3, 8), (2, 8), (8,)]
    f32 = np.dtype(np.float32)

    def arrays(**over):
        a = [np.zeros(s, np.float32) for s in shapes]
        for i, v in over.items():
            a[int(i[1:])] = v
        return a

    reshaped = arrays()
    reshaped[1].shape = (8, 2)           # in place: same object, new shape
    ro = arrays()
    ro[2].flags.writeable = False
    ro_view = arrays(_0=np.zeros((3, 8), np.float32))
    ro_view[0] = np.broadcast_to(np.float32(0), (3, 8))   # read-only, not contiguous
    restrided = arrays()
    restrided[0] = np.zeros((3, 16), np.float32)[:, ::2]
    return [
        (arrays(), shapes, f32, False),
        (arrays(), shapes, f32, True),
        (tuple(arrays()), shapes, f32, True),              # a tuple: the Python path
        (arrays()[:2], shapes, f32, False),
        (arrays() + [np.zeros(1, np.float32)], shapes, f32, False),
        (arrays(_1=np.zeros((8, 2), np.float32)), shapes, f32, False),
        (arrays(_1=np.zeros((2, 8), np.float64)), shapes, f32, False),
        (arrays(_1=np.zeros((2, 8), ">f4")), shapes, f32, False),
        (arrays(_1=np.zeros((8, 2), np.float32).T), shapes, f32, False),
        (arrays(_2=np.zeros(8, np.float32).tolist()), shapes, f32, False),
        (arrays(_0=np.zeros((3, 8), np.float32).view(_Sub)), shapes, f32, True),
        (restrided, shapes, f32, False),
        (reshaped, shapes, f32, False),
        (ro, shapes, f32, False),
        (ro, shapes, f32, True),
        (ro_view, shapes, f32, False),
        (arrays(), shapes, np.dtype(np.float64), False),
        (arrays(), [list(s) for s in shapes], f32, False),   # shapes as lists
        (arrays(), [(3, 8.0), (2, 8), (8,)], f32, False),      # a float size
    ]


@pytest.mark.parametrize("case", range(len(_live_cases())))
def test_check_live_arrays_fast_path_agrees_with_python_checks(case, monkeypatch):
    from rnnfast._validation import check_live_arrays
    arrays, shapes, dtype, writable = _live_cases()[case]
    names = ["[0] (Wx)", "[1] (Wh)", "[2] (b)"]
    fast = _outcome(check_live_arrays, arrays, names, shapes, dtype, "L.params", writable)
    _slow_only(monkeypatch)
    slow = _outcome(check_live_arrays, arrays, names, shapes, dtype, "L.params", writable)
    assert fast == slow


@pytest.mark.parametrize("cls", [rnnfast.LSTM, rnnfast.GRU, rnnfast.RNN])
def test_params_reshaped_in_place_between_calls_are_refused(cls):
    """No answer is kept between calls: the same array object, reshaped in
    place or made read-only after a call that passed, is refused."""
    net = cls(3, 4, random_state=0)
    x = np.ones((2, 5, 3), np.float32)
    _, _ = net.forward(x)
    net.backward(np.ones((2, 5, 4), np.float32))
    w = net.params[1]
    shape = w.shape
    w.shape = (w.size,)
    with pytest.raises(ValueError, match=r"params\[1\] \(Wh of layer 0\): expected shape"):
        net.forward(x)
    w.shape = shape
    net.forward(x)
    net.grads[2].flags.writeable = False
    with pytest.raises(ValueError, match=r"grads\[2\] \(db of layer 0\): is read-only"):
        net.backward(np.ones((2, 5, 4), np.float32))


def test_step_loop_threads_is_blas_thread_count_now():
    """The compiled getter answers what the ctypes call to OpenBLAS does, at
    each call (so threadpool_limits between calls is followed), and 1 when
    there is no BLAS to ask."""
    from rnnfast import _rnn
    if _core._GET_BLAS_THREADS is None:
        assert _core.step_loop_threads() == 1
        return
    assert _core.step_loop_threads() == max(1, _core._GET_BLAS_THREADS())
    threadpoolctl = pytest.importorskip("threadpoolctl")
    for n in (1, 2):
        with threadpoolctl.threadpool_limits(n):
            assert _core.step_loop_threads() == max(1, _core._GET_BLAS_THREADS())
    try:
        _rnn.set_blas_threads_getter(None)
        assert _core.step_loop_threads() == 1
    finally:
        _rnn.set_blas_threads_getter(_core._GET_BLAS_THREADS)
    assert _core.step_loop_threads() == max(1, _core._GET_BLAS_THREADS())


def test_blas_threads_getter_refuses_what_is_not_an_int_function():
    """A bare address or a function of another signature would crash the
    next kernel call; it is refused, and the getter in use is kept."""
    import ctypes
    from rnnfast import _rnn
    before = _core.step_loop_threads()
    libc = ctypes.CDLL(None)
    wrong_type = libc.getpid
    wrong_type.restype, wrong_type.argtypes = ctypes.c_double, []
    takes_args = ctypes.CDLL(None).abs
    takes_args.restype, takes_args.argtypes = ctypes.c_int, [ctypes.c_int]
    for bad in (0, 12345, "openblas", wrong_type, takes_args):
        with pytest.raises(TypeError, match="getter: expected None or a ctypes function"):
            _rnn.set_blas_threads_getter(bad)
    assert _core.step_loop_threads() == before


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_inputs_are_tested_for_nan_without_the_gil_too(dtype):
    """check_array's compiled test scans 65536 values and more without the
    GIL: the same answer, NaN or Inf anywhere refused."""
    a = np.ones((4, 200, 100), dtype)                  # 80,000 values
    assert check_array(a, "xs", np.dtype(dtype), ("N", "T", 100)) is a
    for where, bad in (((0, 0, 0), np.nan), ((3, 199, 99), np.inf), ((2, 50, 7), -np.inf)):
        b = a.copy()
        b[where] = bad
        with pytest.raises(ValueError, match=r"xs: contains NaN or Inf"):
            check_array(b, "xs", np.dtype(dtype), ("N", "T", 100))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_very_large_inputs_are_tested_over_the_threads_alike(dtype, threads):
    """From 2^20 values a thread the test splits over rnnfast's threads in
    blocks of 65536: a NaN or Inf in the first, a middle or the last block,
    either side of a block's edge, is refused at 1 and 2 threads."""
    from threadpoolctl import threadpool_limits
    n = (1 << 21) + 7                                   # two parts, a short last block
    a = np.ones(n, dtype)
    with threadpool_limits(threads):
        assert check_array(a, "xs", np.dtype(dtype), (n,)) is a
        for where in (0, 65535, 65536, 1 << 20, n - 1):
            for bad in (np.nan, np.inf, -np.inf):
                a[where] = bad
                with pytest.raises(ValueError, match=r"xs: contains NaN or Inf"):
                    check_array(a, "xs", np.dtype(dtype), (n,))
                a[where] = 1


def test_a_consumed_direction_cache_is_refused():
    """_core.backward consumes a forward's cache (its buffers go back for
    reuse); a second backward on it is refused by name, not run on freed
    buffers."""
    rng = np.random.default_rng(0)
    N, T, D, H = 2, 3, 4, 5
    Wx, Wh, b = (rng.standard_normal(s).astype(np.float32) for s in ((D, H), (H, H), (H,)))
    xs = rng.standard_normal((N, T, D)).astype(np.float32)
    out = np.empty((N, T, H), np.float32)
    cache = _core.forward("rnn", xs, Wx, Wh, b, np.zeros((N, H), np.float32), None,
                          check_lengths(None, N, T), False, out, 0, True)
    grads = [np.empty_like(a) for a in (Wx, Wh, b)]
    dxs = np.empty_like(xs)
    _core.backward(cache, np.ones_like(out), 0, np.zeros((N, H), np.float32), None,
                   *grads, dxs, False)
    with pytest.raises(RuntimeError, match="already consumed"):
        _core.backward(cache, np.ones_like(out), 0, np.zeros((N, H), np.float32), None,
                       *grads, dxs, False)
