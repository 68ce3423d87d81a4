"""The compiled element-wise loops of a training step (src/_rowops.pxi):
an SGD step, a softmax loss's gradient rows, an embedding's gradient.
Each must give NumPy's bits, at 1 and 2 threads, and the layers that use
them must give what they gave with NumPy, falling back to NumPy for the
layouts the loops do not take."""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from rnnfast import _rnn, optim
from rnnfast.layers import Embedding, TimeEmbedding
from rnnfast.losses import TimeSoftmaxWithLoss

DTYPES = [np.float32, np.float64]
THREADS = [1, 2]
# around the split block (2^14 values) and the threads' minimum (2^17)
LENGTHS = [0, 1, 17, 16384, 16385, 1 << 17, (1 << 18) + 5]


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", LENGTHS)
def test_sgd_step_gives_numpys_bits(n, dtype, threads):
    rng = np.random.default_rng(n)
    p, g = (rng.standard_normal(n).astype(dtype) for _ in range(2))
    want = p.copy()
    want -= 0.37 * g
    with threadpool_limits(threads):
        _rnn.optimizer_step("sgd", p, g, p, p, (0.37,))
    np.testing.assert_array_equal(p, want)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0, 5), (3, 0), (1, 7), (33, 1000), (700, 2001)])
def test_softmax_loss_grad_gives_numpys_bits(shape, dtype, threads):
    """dx = e * (f / z), dx[r, cls] -= f with f = share * scale: the lines
    SoftmaxWithLoss.backward ran with NumPy, weights and zero shares too."""
    rng = np.random.default_rng(shape[0])
    R, V = shape
    e = rng.random(shape).astype(dtype)
    z = (e.sum(axis=1) + 1).astype(np.float64) * rng.uniform(0.5, 2, R)
    share = (rng.random(R) * (rng.random(R) < 0.8)).astype(dtype)
    share[:5] = 1
    cls = rng.integers(0, max(V, 1), R).astype(np.intp)
    scale = 1 / 37
    f = share * dtype(scale)
    want = e * (f / z.astype(dtype))[:, None]
    rows = np.flatnonzero(f) if V else np.zeros(0, np.intp)
    want[rows, cls[rows]] -= f[rows]
    dx = np.full(shape, np.nan, dtype)
    with threadpool_limits(threads):
        _rnn.softmax_loss_grad(e, z, share, cls, float(dtype(scale)), dx)
    assert dx.tobytes() == want.tobytes()


def test_softmax_loss_grad_refuses_shapes_that_disagree():
    e = np.zeros((3, 4), np.float32)
    args = np.ones(3), np.ones(3, np.float32), np.zeros(3, np.intp)
    with pytest.raises(ValueError, match=r"shapes e \(3, 4\), z \(2,\)"):
        _rnn.softmax_loss_grad(e, np.ones(2), *args[1:], 1.0, np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"dx \(3, 5\) do not agree"):
        _rnn.softmax_loss_grad(e, *args, 1.0, np.zeros((3, 5), np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_scatter_add_rows_gives_np_add_at_bits_with_repeated_ids(dtype):
    rng = np.random.default_rng(0)
    V, D, R = 50, 33, 700                       # each id ~14 times
    W = rng.standard_normal((V, D)).astype(dtype)
    ids = rng.integers(0, V, R).astype(np.intp)
    rows = rng.standard_normal((R, D)).astype(dtype) * 1e3
    want = W.copy()
    np.add.at(want, ids, rows)
    _rnn.scatter_add_rows(ids, rows, W)
    np.testing.assert_array_equal(W, want)


def test_scatter_add_rows_checks_every_id_before_changing_w():
    W = np.zeros((4, 3), np.float32)
    rows = np.ones((3, 3), np.float32)
    for bad in (4, -1):
        with pytest.raises(ValueError, match=rf"ids\[2\] = {bad} is outside 0..3"):
            _rnn.scatter_add_rows(np.array([0, 1, bad], np.intp), rows, W)
        assert not W.any()
    with pytest.raises(ValueError, match=r"rows \(3, 3\), W \(4, 2\) do not agree"):
        _rnn.scatter_add_rows(np.array([0, 1, 2], np.intp), rows, np.zeros((4, 2), np.float32))


def _numpy_lines_only(kind, params, *args):
    """optim._compiled_steps leaving every position to the NumPy lines."""
    return range(len(params))


def _compiled_positions(monkeypatch):
    """Record, at each call of _rnn.optimizer_steps, the sizes of the
    params it took (not left to the NumPy lines)."""
    taken = []
    real = _rnn.optimizer_steps

    def recording(kind, params, *args):
        left = real(kind, params, *args)
        taken.extend(params[i].size for i in range(len(params)) if i not in left)
        return left
    monkeypatch.setattr(_rnn, "optimizer_steps", recording)
    return taken


def _sgd_steps(params, grads, compiled, monkeypatch):
    """Two SGD steps on copies of params; NumPy's path only unless compiled."""
    params = [p.copy(order="K") for p in params]
    with monkeypatch.context() as m:
        if not compiled:
            m.setattr(optim, "_compiled_steps", _numpy_lines_only)
        opt = optim.SGD(lr=0.3)
        for _ in range(2):
            opt.update(params, grads)
    return params


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_compiled_and_numpy_steps_are_the_same_bits(dtype, threads, monkeypatch):
    """C- and F-ordered params (a tied W = E.T is F-ordered), a small one,
    grads in another order or dtype (NumPy's path)."""
    rng = np.random.default_rng(1)
    E = rng.standard_normal((3000, 40)).astype(dtype)
    params = [E, np.asfortranarray(E[:, :30]), rng.standard_normal(10).astype(dtype),
              rng.standard_normal((100, 90)).astype(dtype)]
    grads = [rng.standard_normal(E.shape).astype(dtype),
             np.asfortranarray(rng.standard_normal((3000, 30)).astype(dtype)),
             rng.standard_normal(10).astype(dtype),
             rng.standard_normal((100, 90)).astype(np.float32 if dtype == np.float64
                                                    else np.float64)]
    with threadpool_limits(threads):
        fast = _sgd_steps(params, grads, True, monkeypatch)
        slow = _sgd_steps(params, grads, False, monkeypatch)
    for i, (a, b) in enumerate(zip(fast, slow)):
        np.testing.assert_array_equal(a, b, err_msg=f"param {i}")
        assert not np.array_equal(a, params[i]), f"param {i} unchanged"


def test_sgd_takes_the_compiled_path_only_where_it_can(monkeypatch):
    taken = _compiled_positions(monkeypatch)
    big = np.ones((100, 100), np.float32)
    cases = [(big.copy(), np.ones((100, 100), np.float32), True),
             (big.copy(), np.asfortranarray(np.ones((100, 100), np.float32)), False),
             (big.copy(), np.ones((100, 100), np.float64), False),
             (np.ones(100, np.float32), np.ones(100, np.float32), True),
             (np.ones((), np.float32), np.ones((), np.float32), True)]
    for p, g, compiled in cases:
        taken.clear()
        optim.SGD(lr=0.5).update([p], [g])
        assert bool(taken) == compiled
        np.testing.assert_array_equal(p, 0.5)
    for p, g in [(np.ones(10_000, np.float32), None),           # g is p
                 (np.ones(10_000, np.float32), "view")]:        # g a view of p's memory
        g = p if g is None else p.view()
        taken.clear()
        optim.SGD(lr=0.25).update([p], [g])      # NumPy's path: p -= 0.25 * p
        assert not taken
        np.testing.assert_array_equal(p, 0.75)
    p = np.ones(10_000, np.float32)
    p_ro = np.ones(10, np.float32)
    p_ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[1\]: the array is read-only"):
        optim.SGD(lr=0.25).update([p, p_ro], [p.copy(), p_ro.copy()])
    np.testing.assert_array_equal(p, 1.0)        # refused: nothing changed


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")     # np.matrix
def test_sgd_with_matrix_params_or_a_numpy_lr_steps_as_numpy_does():
    """np.matrix params or grads, and an lr set to a NumPy float64 (which
    makes NumPy's step in double), take NumPy's line: its result, bit for
    bit, as before the compiled step."""
    rng = np.random.default_rng(5)
    p0 = rng.standard_normal((100, 100)).astype(np.float32)
    g = rng.standard_normal((100, 100)).astype(np.float32)
    for p_type, g_type in ((np.asarray, np.asmatrix), (np.asmatrix, np.asarray)):
        p = p_type(p0.copy())
        optim.SGD(lr=0.5).update([p], [g_type(g)])
        np.testing.assert_array_equal(np.asarray(p), p0 - np.float32(0.5) * g)
    opt = optim.SGD(lr=0.1)
    opt.lr = np.float64(0.1)
    p = p0.copy()
    opt.update([p], [g])
    want = p0.copy()
    want -= np.float64(0.1) * g
    np.testing.assert_array_equal(p, want)


OPTIMIZERS = [(optim.Momentum, {"lr": 0.1, "momentum": 0.9}),
              (optim.Nesterov, {"lr": 0.1, "momentum": 0.9}),
              (optim.AdaGrad, {"lr": 0.1}),
              (optim.RMSprop, {"lr": 0.01, "decay_rate": 0.95}),
              (optim.Adam, {"lr": 0.01}),
              (optim.Adam, {"lr": 0.01, "weight_decay": 0.1}),
              (optim.AdamW, {"lr": 0.01})]


def _steps(cls, kwargs, params, grad_sets, compiled, monkeypatch):
    """Three steps of cls(**kwargs) on copies of params; NumPy's lines only
    unless compiled.  Returns the params and the optimizer's state."""
    params = [p.copy(order="K") for p in params]
    with monkeypatch.context() as m:
        if not compiled:
            m.setattr(optim, "_compiled_steps", _numpy_lines_only)
        opt = cls(**kwargs)
        for grads in grad_sets:
            opt.update(params, grads)
    return params, [a for entry in opt.state for a in entry]


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls,kwargs", OPTIMIZERS)
def test_optimizer_compiled_and_numpy_steps_are_the_same_bits(cls, kwargs, dtype, threads,
                                                              monkeypatch):
    """Momentum, Nesterov, AdaGrad, RMSprop, Adam (with coupled and
    decoupled weight decay):
    three steps on C- and F-ordered params, one of more than 2^17 values a
    thread (split over the threads), a small one; the params and the state
    agree bit for bit with the NumPy lines' (NaN signs aside: none are made
    here)."""
    rng = np.random.default_rng(6)
    params = [rng.standard_normal((600, 500)).astype(dtype),
              np.asfortranarray(rng.standard_normal((300, 70)).astype(dtype)),
              rng.standard_normal(50).astype(dtype)]
    grad_sets = [[np.asarray(rng.standard_normal(p.shape).astype(dtype), order="K")
                  if p.flags.c_contiguous else
                  np.asfortranarray(rng.standard_normal(p.shape).astype(dtype))
                  for p in params] for _ in range(3)]
    taken = _compiled_positions(monkeypatch)
    with threadpool_limits(threads):
        fast, fast_state = _steps(cls, kwargs, params, grad_sets, True, monkeypatch)
        slow, slow_state = _steps(cls, kwargs, params, grad_sets, False, monkeypatch)
    assert sorted(taken) == [50] * 3 + [21000] * 3 + [300000] * 3   # all compiled
    for i, (a, b) in enumerate(zip(fast + fast_state, slow + slow_state)):
        np.testing.assert_array_equal(a, b, err_msg=f"array {i}")
    for i, (a, p) in enumerate(zip(fast, params)):
        assert not np.array_equal(a, p), f"param {i} unchanged"


def test_optimizer_steps_fall_back_where_the_loop_cannot_go(monkeypatch):
    """A grad of another memory order or dtype, a NumPy float64
    hyperparameter, NumPy's errors set to raise: NumPy's lines (the
    compiled loop not run); a small param takes the loop."""
    taken = _compiled_positions(monkeypatch)
    big = np.ones((100, 100), np.float32)
    for g in (np.ones((100, 100), np.float32), np.asfortranarray(np.ones((100, 100), np.float32)),
              np.ones((100, 100), np.float64)):
        taken.clear()
        optim.Adam(lr=0.01).update([big.copy()], [g])
        assert bool(taken) == (g.dtype == np.float32 and g.flags.c_contiguous)
    taken.clear()
    optim.RMSprop(lr=0.01).update([np.ones(100, np.float32)], [np.ones(100, np.float32)])
    assert taken == [100]
    taken.clear()
    opt = optim.Momentum(lr=0.1)
    opt.momentum = np.float64(0.9)
    opt.update([big.copy()], [np.ones((100, 100), np.float32)])
    assert not taken
    with np.errstate(over="raise"):
        optim.SGD(lr=0.1).update([big.copy()], [np.ones((100, 100), np.float32)])
    assert not taken


def test_optimizer_steps_leave_a_state_of_another_layout_to_numpy(monkeypatch):
    """A state array (set by hand, or loaded) read-only, F-ordered against
    a C-ordered param, or sharing the param's memory: that param takes the
    NumPy lines (which raise for the read-only one, as before), the others
    the loop."""
    taken = _compiled_positions(monkeypatch)
    rng = np.random.default_rng(9)
    params = [rng.standard_normal((20, 30)).astype(np.float32) for _ in range(3)]
    grads = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
    opt = optim.Momentum(lr=0.1)
    opt.update(params, grads)                   # builds the state
    taken.clear()
    opt.state[1] = (np.asfortranarray(opt.state[1][0]),)
    want = [p.copy() for p in params]
    ref = optim.Momentum(lr=0.1)
    ref.state = [(v.copy(),) for (v,) in opt.state]
    ref.t = opt.t
    with monkeypatch.context() as m:
        m.setattr(optim, "_compiled_steps", _numpy_lines_only)
        ref.update(want, grads)
    opt.update(params, grads)
    assert sorted(taken) == [600, 600]
    for a, b in zip(params, want):
        np.testing.assert_array_equal(a, b)
    v = opt.state[2][0]
    v.flags.writeable = False
    taken.clear()
    with pytest.raises(ValueError, match="read-only"):
        opt.update(params, grads)
    assert taken == [600]      # param 0 by the loop, 1 by NumPy's lines, then 2 raises
    opt.state[1] = (np.ascontiguousarray(opt.state[1][0]),)
    opt.state[2] = (params[2],)                 # the state is the param itself
    taken.clear()
    opt.update(params, grads)
    assert sorted(taken) == [600, 600]
def test_optimizer_steps_raise_under_errstate_and_refuse_misshapen_state():
    """np.errstate(over="raise") makes the NumPy lines run, which raise on
    an overflowing gradient; a state array of another shape than its
    param is refused as the NumPy lines refuse it."""
    g = np.full((100, 100), 1e30, np.float32)
    with np.errstate(over="raise"):
        with pytest.raises(FloatingPointError):
            optim.Adam(lr=0.01).update([np.ones((100, 100), np.float32)], [g])
    opt = optim.Adam(lr=0.01)
    p = np.ones((80, 60), np.float32)
    opt.update([p], [np.ones((80, 60), np.float32)])
    opt.state = [(opt.state[0][0], np.zeros((60, 80), np.float32))]
    with pytest.raises(ValueError, match="broadcast"):
        opt.update([p], [np.ones((80, 60), np.float32)])


def test_optimizer_step_refuses_bad_arguments_naming_them():
    a = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match=r"kind must be one of \['adam', 'adamw', 'axpy', "
                                         r"'momentum', 'nesterov', 'rmsprop', 'sgd'\], got "
                                         r"'adagrad'"):
        _rnn.optimizer_step("adagrad", a, a.copy(), a.copy(), a.copy(), (1.0, 1.0))
    with pytest.raises(ValueError, match=r"optimizer_steps: kind must be one of .* got 'x'"):
        _rnn.optimizer_steps("x", [a], [a.copy()], [()], (1.0,))
    with pytest.raises(ValueError, match="optimizer_steps: sgd takes 1 scalars, got 2"):
        _rnn.optimizer_steps("sgd", [a], [a.copy()], [()], (1.0, 2.0))
    with pytest.raises(ValueError, match="lengths params 1, grads 2, state 1 differ"):
        _rnn.optimizer_steps("sgd", [a], [a.copy(), a.copy()], [()], (1.0,))
    with pytest.raises(ValueError, match="adam takes 7 scalars, got 2"):
        _rnn.optimizer_step("adam", a, a.copy(), a.copy(), a.copy(), (1.0, 1.0))
    with pytest.raises(ValueError, match="adamw takes 8 scalars, got 7"):
        _rnn.optimizer_step("adamw", a, a.copy(), a.copy(), a.copy(), (1.0,) * 7)
    with pytest.raises(ValueError, match="lengths p 5, g 4, s1 5, s2 5 differ"):
        _rnn.optimizer_step("momentum", a, np.zeros(4, np.float32), a.copy(), a.copy(),
                            (0.9, 0.1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_backward_sums_rows_per_id_as_np_add_at(dtype):
    rng = np.random.default_rng(2)
    V, D = 60, 24
    layer = TimeEmbedding(rng.standard_normal((V, D)).astype(dtype))
    ids = rng.integers(0, V, (8, 35))
    dout = rng.standard_normal((8, 35, D)).astype(dtype)
    layer.forward(ids)
    layer.grads[0][...] = 7                    # backward overwrites the grads
    layer.backward(dout)
    want = np.zeros((V, D), dtype)
    np.add.at(want, ids.reshape(-1), dout.reshape(-1, D))
    np.testing.assert_array_equal(layer.grads[0], want)


def test_embedding_backward_falls_back_for_an_f_ordered_grad():
    rng = np.random.default_rng(3)
    layer = Embedding(rng.standard_normal((20, 6)).astype(np.float32))
    layer.grads[0] = np.asfortranarray(layer.grads[0])
    ids = np.array([3, 3, 19, 0, 3])
    dout = rng.standard_normal((5, 6)).astype(np.float32)
    layer.forward(ids)
    layer.backward(dout)
    want = np.zeros((20, 6), np.float32)
    np.add.at(want, ids, dout)
    np.testing.assert_array_equal(layer.grads[0], want)


@pytest.mark.parametrize("threads", THREADS)
def test_softmax_loss_gradient_rows_are_numpys(threads, monkeypatch):
    """The loss's backward on the compiled rows and on NumPy's multiply,
    from the same forward: the same bits, ignored targets included."""
    import rnnfast.losses as losses
    rng = np.random.default_rng(4)
    xs = rng.standard_normal((6, 30, 1500)).astype(np.float32) * 3
    ts = rng.integers(0, 1500, (6, 30))
    ts[0, :5] = -1
    loss = TimeSoftmaxWithLoss()
    with threadpool_limits(threads):
        loss.forward(xs, ts)
        compiled = loss.backward(0.5)
        monkeypatch.setattr(losses, "_COMPILED_SOFTMAX", False)
        numpy_rows = loss.backward(0.5)
    np.testing.assert_array_equal(compiled, numpy_rows)
    assert not compiled[0, :5].any() and compiled[0, 5:].any()


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", LENGTHS)
def test_axpy_step_gives_numpys_bits(n, dtype, threads):
    """The L2 penalty's gradient g += a * w (rnnfast.sklearn's alpha)."""
    rng = np.random.default_rng(n + 1)
    g, w = (rng.standard_normal(n).astype(dtype) for _ in range(2))
    want = g.copy()
    want += dtype(3.7e-5) * w
    with threadpool_limits(threads):
        assert _rnn.optimizer_steps("axpy", [g], [w], [()], (3.7e-5,)) == []
    np.testing.assert_array_equal(g, want)


def test_add_scaled_takes_numpys_line_for_other_layouts():
    rng = np.random.default_rng(4)
    w = [rng.standard_normal((30, 20)).astype(np.float32),
         rng.standard_normal(7).astype(">f4"),                  # byte-swapped
         np.asfortranarray(rng.standard_normal((5, 6)))]
    g = [rng.standard_normal((30, 20)).astype(np.float32),
         rng.standard_normal(7).astype(">f4"),
         rng.standard_normal((5, 6))]                          # C against F
    want = [a.copy() for a in g]
    for a, b in zip(want, w):
        a += a.dtype.type(0.25) * b
    optim._add_scaled(g, w, 0.25)
    for a, b in zip(g, want):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_sum_squares_in_double_for_every_layout():
    """Contiguous float32/float64 in the loop, the rest (strided, swapped,
    unaligned, integer) left to NumPy; float32 values whose squares
    overflow float32 still sum to a finite norm."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal(100_003).astype(np.float32)
    raw = np.zeros(4 * 50 + 1, np.uint8)[1:].view(np.float32)    # unaligned
    raw[:] = 1.5
    arrays = [x, x.astype(np.float64), np.asfortranarray(rng.standard_normal((9, 7))),
              x[::3], x[:11].astype(">f4"), raw, np.arange(5), np.float32([3e19, 4e19])]
    total, left = _rnn.sum_squares(arrays)
    assert left == [3, 4, 5, 6]
    want = sum(float(np.square(a, dtype=np.float64).sum()) for a in arrays)
    assert optim._sum_squares(arrays) == pytest.approx(want, rel=1e-12)
    assert optim.global_norm([np.float32([3e19, 4e19])]) == pytest.approx(5e19, rel=1e-7)


def test_distinct_positions_finds_listings_of_the_same_memory():
    a = np.ones((3, 4), np.float32)
    e = np.ones(0, np.float32)
    arrays = [a, a[:, :], a.T, e, e, a.view(), a[:1], a.view(np.int32), a.astype(">f4")]
    assert _rnn.distinct_positions(arrays) == ([0, 2, 3, 4, 6, 7, 8],
                                               [[1, 5], [], [], [], [], [], []])
    assert _rnn.distinct_positions([a, a.T, e, e]) is None
    with pytest.raises(TypeError, match=r"arrays\[1\] is not a numpy array"):
        _rnn.distinct_positions([a, [1.0]])


def test_optimizer_steps_refuse_byte_swapped_and_unaligned_arrays(monkeypatch):
    """Adam on a big-endian param and on an unaligned one: NumPy's lines
    (a loop over the raw bytes would compute garbage), the same values."""
    taken = _compiled_positions(monkeypatch)
    rng = np.random.default_rng(3)
    swapped = rng.standard_normal(40).astype(">f4")
    unaligned = np.zeros(4 * 40 + 1, np.uint8)[1:].view(np.float32)
    unaligned[:] = rng.standard_normal(40)
    for p in (swapped, unaligned):
        g = rng.standard_normal(40).astype(p.dtype)
        want = p.astype(np.float32)
        ref = optim.Adam(lr=0.1)
        with monkeypatch.context() as m:
            m.setattr(optim, "_compiled_steps", _numpy_lines_only)
            ref.update([want], [g.astype(np.float32)])
        taken.clear()
        optim.Adam(lr=0.1).update([p], [g])
        assert not taken
        np.testing.assert_array_equal(p.astype(np.float32), want)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_an_estimators_fit_is_the_same_bits_with_numpy_lines(solver, monkeypatch):
    """RNNClassifier with the L2 term and clipping on: the compiled steps
    (optimizer and the alpha term) against NumPy's lines for everything,
    the same weights and loss curve bit for bit."""
    from rnnfast.sklearn import RNNClassifier
    rng = np.random.default_rng(11)
    X = rng.standard_normal((96, 12, 3)).astype(np.float32)
    y = (X[:, :, 0].sum(axis=1) > 0).astype(int)

    def fit():
        est = RNNClassifier(cell="gru", hidden_size=8, max_iter=3, alpha=1e-2, clip_norm=0.5,
                            solver=solver, random_state=0)
        with pytest.warns(Warning):                 # ConvergenceWarning: 3 epochs
            est.fit(X, y)
        return est
    taken = _compiled_positions(monkeypatch)
    fast = fit()
    assert taken                                    # the loops ran
    with monkeypatch.context() as m:
        m.setattr(optim, "_compiled_steps", _numpy_lines_only)
        slow = fit()
    assert fast.loss_curve_ == slow.loss_curve_
    for a, b in zip(fast.model_.params, slow.model_.params):
        np.testing.assert_array_equal(a, b)


def test_optimizer_steps_leave_non_arrays_and_odd_state_to_the_caller():
    """Anything but arrays of the param's kind, at any place, is left (its
    position returned, nothing written): a list as grad, None or a list
    as state, a state tuple of the wrong length, an integer param."""
    p = np.ones(8, np.float32)
    g = np.ones(8, np.float32)
    v = np.zeros(8, np.float32)
    cases = [([p], [list(g)], [(v,)]),
             ([p], [g], [(None,)]),
             ([p], [g], [[v]]),
             ([p], [g], [(v, v)]),
             ([np.ones(8, np.int64)], [g], [(v,)]),
             ([list(p)], [g], [(v,)])]
    for params, grads, state in cases:
        assert _rnn.optimizer_steps("momentum", params, grads, state, (0.9, 0.1)) == [0]
        np.testing.assert_array_equal(p, 1.0)
        np.testing.assert_array_equal(v, 0.0)
    assert _rnn.optimizer_steps("momentum", [p], [g], [(v,)], (0.9, 0.1)) == []
    assert not np.array_equal(p, 1.0)
