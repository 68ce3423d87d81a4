"""The fully connected layers' products on rnnfast's packed kernel and
thread pool (src/_affine.pxi, docs/performance.md item 117): against
float64 NumPy over the edges of their blocking (columns not a multiple of
a panel or a 128-column block, sums longer than a 512-output chunk, few
rows), the same bytes at 1 and 2 threads, and the layers' NumPy path where
the kernel does not apply."""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from rnnfast import _core, _rnn
from rnnfast.layers import Affine, TimeAffine
import rnnfast.layers.affine as affine_module

needs_kernel = pytest.mark.skipif(not _core._packed_in_use(),
                                  reason="no packed kernel on this CPU")

SHAPES = [(1, 1, 1), (5, 7, 3), (37, 33, 50), (64, 200, 300), (40, 1030, 17),
          (97, 64, 1000), (700, 20, 129)]


def _rng(*shape):
    return np.random.default_rng(sum(s * 31 ** i for i, s in enumerate(shape)))


def _tol(dtype, k):
    return dict(rtol=1e-4 if dtype == np.float32 else 1e-12,
                atol=(1e-5 if dtype == np.float32 else 1e-12) * np.sqrt(k))


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_matmul_bias_matches_numpy(dtype, m, k, n, trans_b, with_bias):
    rng = _rng(m, k, n)
    a = rng.standard_normal((m, k)).astype(dtype)
    W = rng.standard_normal((k, n)).astype(dtype)
    bias = rng.standard_normal(n).astype(dtype) if with_bias else None
    c = np.full((m, n), np.nan, dtype)
    assert _rnn.matmul_bias(a, np.ascontiguousarray(W.T) if trans_b else W, bias, c, trans_b)
    expected = a.astype(np.float64) @ W.astype(np.float64)
    if with_bias:
        expected += bias
    np.testing.assert_allclose(c, expected, **_tol(dtype, k))


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("trans_b", [False, True])
def test_matmul_rows_matches_numpy(dtype, m, k, n, trans_b):
    # c (m, n) = a (m, k) @ op(b): k plays the layer's outputs (the long sum)
    rng = _rng(m, n, k)
    a = rng.standard_normal((m, k)).astype(dtype)
    B = rng.standard_normal((k, n)).astype(dtype)
    c = np.full((m, n), np.nan, dtype)
    assert _rnn.matmul_rows(a, np.ascontiguousarray(B.T) if trans_b else B, c, trans_b)
    np.testing.assert_allclose(c, a.astype(np.float64) @ B.astype(np.float64),
                               **_tol(dtype, k))


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows,m1,n", [(32, 1, 1), (33, 7, 50), (700, 200, 1000),
                                       (600, 300, 40), (1100, 17, 129),
                                       (300, 20, 2100)])   # blocks of 1024 columns, ragged
@pytest.mark.parametrize("with_sums", [False, True])
def test_matmul_tn_matches_numpy(dtype, rows, m1, n, with_sums):
    rng = _rng(rows, m1, n)
    a = rng.standard_normal((rows, m1)).astype(dtype)
    b = rng.standard_normal((rows, n)).astype(dtype)
    c = np.full((m1, n), np.nan, dtype)
    sums = np.full(n, np.nan, dtype) if with_sums else None
    assert _rnn.matmul_tn(a, b, c, sums)
    np.testing.assert_allclose(c, a.T.astype(np.float64) @ b.astype(np.float64),
                               **_tol(dtype, rows))
    if with_sums:
        np.testing.assert_allclose(sums, b.astype(np.float64).sum(axis=0), **_tol(dtype, rows))


def test_matmul_tn_leaves_few_rows_to_numpy():
    a, b = np.ones((31, 4), np.float32), np.ones((31, 5), np.float32)
    c = np.zeros((4, 5), np.float32)
    assert not _rnn.matmul_tn(a, b, c, None)
    assert not c.any()


def test_products_refuse_mismatched_shapes_without_writing():
    a, b = np.ones((40, 8), np.float32), np.ones((8, 9), np.float32)
    c = np.zeros((40, 10), np.float32)
    assert not _rnn.matmul_bias(a, b, None, c, False)
    assert not _rnn.matmul_rows(a, b, c, False)
    assert not _rnn.matmul_bias(a, b, np.ones(10, np.float32), np.zeros((40, 9), np.float32),
                                False)
    assert not c.any()


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_products_are_the_same_bytes_at_one_and_two_threads(dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 150)).astype(dtype)
    W = rng.standard_normal((150, 2100)).astype(dtype)
    b = rng.standard_normal(2100).astype(dtype)
    dy = rng.standard_normal((300, 2100)).astype(dtype)
    old = _rnn.split_limits()
    _rnn.split_limits(grad_flops=1)          # let even these products split
    try:
        results = []
        for threads in (1, 2):
            with threadpool_limits(threads):
                y = np.empty((300, 2100), dtype)
                dx = np.empty((300, 150), dtype)
                dW, db = np.empty((150, 2100), dtype), np.empty(2100, dtype)
                dE = np.empty((2100, 150), dtype)
                assert _rnn.matmul_bias(x, W, b, y, False)
                assert _rnn.matmul_rows(dy, W, dx, True)
                assert _rnn.matmul_tn(x, dy, dW, db)
                assert _rnn.matmul_tn(dy, x, dE, None)
                results.append((y, dx, dW, db, dE))
    finally:
        _rnn.split_limits(*old)
    for one, two in zip(*results):
        assert one.tobytes() == two.tobytes()


def _layer_case(tied, dtype=np.float32, N=6, T=40, D=48, M=300):
    rng = np.random.default_rng(3)
    if tied:
        E = rng.standard_normal((M, D)).astype(dtype)
        W = E.T                                   # F-contiguous view, as RnnLM ties
    else:
        W = rng.standard_normal((D, M)).astype(dtype)
    b = rng.standard_normal(M).astype(dtype)
    x = rng.standard_normal((N, T, D)).astype(dtype)
    dy = rng.standard_normal((N, T, M)).astype(dtype)
    return W, b, x, dy


def _run_layer(W, b, x, dy):
    layer = TimeAffine(W, b)
    if not W.flags.c_contiguous:                  # a tied layer's gradient in E's layout
        layer.grads[0] = np.zeros(W.T.shape, W.dtype).T
    y = layer.forward(x)
    dx = layer.backward(dy)
    return y, dx, layer.grads[0].copy(), layer.grads[1].copy()


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_on_the_kernel_matches_numpy_path(monkeypatch, tied, dtype):
    W, b, x, dy = _layer_case(tied, dtype)
    kernel = _run_layer(W, b, x, dy)
    monkeypatch.setattr(affine_module, "_KERNEL_MIN_MACS", float("inf"))
    numpy_path = _run_layer(W, b, x, dy)
    k = max(x.shape[-1], dy.shape[-1], x.shape[0] * x.shape[1])
    for got, want in zip(kernel, numpy_path):
        np.testing.assert_allclose(got, want, **_tol(dtype, k))


def test_layer_with_packed_kernel_off_takes_numpy_path():
    W, b, x, dy = _layer_case(False)
    expected = _run_layer(W, b, x, dy)
    _core.use_packed_gemm(False)
    try:
        assert not _rnn.matmul_bias(np.ones((4, 4), np.float32), np.ones((4, 4), np.float32),
                                    None, np.zeros((4, 4), np.float32), False)
        got = _run_layer(W, b, x, dy)
    finally:
        _core.use_packed_gemm(True)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-3)


def test_layer_with_strided_bias_and_replaced_gradients():
    # A bias that is a strided view, and gradients replaced by arrays of
    # another layout: the layer falls back to NumPy, with the same numbers.
    W, b, x, dy = _layer_case(False)
    b2 = np.repeat(b, 2)[::2]
    assert not b2.flags.c_contiguous
    layer = TimeAffine(W, b2)
    layer.grads[0] = np.asfortranarray(np.zeros_like(W))
    layer.grads[1] = np.zeros(2 * b.size, b.dtype)[::2]
    y = layer.forward(x)
    dx = layer.backward(dy)
    ref = _run_layer(W, b, x, dy)
    np.testing.assert_allclose(y, ref[0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dx, ref[1], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(layer.grads[0], ref[2], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(layer.grads[1], ref[3], rtol=1e-5, atol=1e-4)


def test_two_dimensional_affine_on_the_kernel():
    rng = np.random.default_rng(5)
    W = rng.standard_normal((64, 130)).astype(np.float32)
    b = rng.standard_normal(130).astype(np.float32)
    x = rng.standard_normal((70, 64)).astype(np.float32)
    dy = rng.standard_normal((70, 130)).astype(np.float32)
    assert 70 * 64 * 130 >= affine_module._KERNEL_MIN_MACS
    layer = Affine(W, b)
    y = layer.forward(x)
    dx = layer.backward(dy)
    np.testing.assert_allclose(y, x.astype(np.float64) @ W + b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dx, dy.astype(np.float64) @ W.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.grads[0], x.T.astype(np.float64) @ dy, rtol=1e-4,
                               atol=1e-3)
    np.testing.assert_allclose(layer.grads[1], dy.astype(np.float64).sum(0), rtol=1e-4,
                               atol=1e-4)


def test_replaced_gradients_of_a_wrong_shape_are_refused_as_before():
    # A gradient replaced by an array of another rank: the kernel's path
    # steps aside and NumPy's assignment raises its usual error.
    W, b, x, dy = _layer_case(False)
    layer = TimeAffine(W, b)
    layer.grads[0] = np.zeros(W.size, W.dtype)
    layer.forward(x)
    with pytest.raises(ValueError):
        layer.backward(dy)
    layer = TimeAffine(W, b)
    layer.grads[1] = np.zeros((1, b.size), b.dtype)
    layer.forward(x)
    layer.backward(dy)                              # broadcasts into (1, M), as before
    np.testing.assert_allclose(layer.grads[1][0], dy.reshape(-1, b.size).sum(0), rtol=1e-4,
                               atol=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_few_rows_stay_with_numpy(monkeypatch, dtype):
    # A language model's generate multiplies one row a call by a large W:
    # NumPy's GEMV was faster than the kernel there, packed or not
    # (docs/performance.md items 117, 171); and a backward of few rows
    # stays with NumPy, as does a float64 forward of a few rows.
    def refuse(*args):
        raise AssertionError("the kernel ran for a few rows")
    monkeypatch.setattr(affine_module._rnn, "matmul_rows", refuse)
    monkeypatch.setattr(affine_module._rnn, "matmul_tn", refuse)
    rng = np.random.default_rng(9)
    W = rng.standard_normal((200, 2000)).astype(dtype)
    b = rng.standard_normal(2000).astype(dtype)
    layer = Affine(W, b)
    rows = 3 if dtype == np.float32 else affine_module._KERNEL_MIN_ROWS - 1
    x = rng.standard_normal((rows, 200)).astype(dtype)
    with monkeypatch.context() as patched:
        patched.setattr(affine_module._rnn, "matmul_bias", refuse)
        y = layer.forward(x)
    layer.forward(rng.standard_normal((affine_module._KERNEL_MIN_ROWS - 1, 200)).astype(dtype))
    layer.backward(np.ones((affine_module._KERNEL_MIN_ROWS - 1, 2000), dtype))
    np.testing.assert_allclose(y, x.astype(np.float64) @ W + b, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("replace", ["b_other_dtype", "b_row", "b_byteswapped", "W_byteswapped",
                                     "W_other_dtype_after_forward"])
def test_replaced_parameters_of_another_kind_take_numpy_path(replace):
    # A parameter replaced by an array the kernel cannot take (a bias of
    # another dtype or of shape (1, M), a non-native byte order): the layer
    # computes as NumPy's path did before the kernel (y += b casts and
    # broadcasts), instead of raising Cython's buffer errors.
    W, b, x, dy = _layer_case(False)
    layer = TimeAffine(W.copy(), b.copy())
    if replace == "b_other_dtype":
        layer.params[1] = b.astype(np.float64)
    elif replace == "b_row":
        layer.params[1] = b.reshape(1, -1).copy()
    elif replace == "b_byteswapped":
        layer.params[1] = b.astype(b.dtype.newbyteorder())
    elif replace == "W_byteswapped":
        layer.params[0] = W.astype(W.dtype.newbyteorder())
    y = layer.forward(x)
    if replace == "W_other_dtype_after_forward":
        layer.params[0] = W.astype(np.float64)
    dx = layer.backward(dy)
    ref = _run_layer(W, b, x, dy)
    np.testing.assert_allclose(y, ref[0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dx, ref[1], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(layer.grads[0], ref[2], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(layer.grads[1], ref[3], rtol=1e-5, atol=1e-4)
