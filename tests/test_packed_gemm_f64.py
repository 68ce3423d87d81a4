"""The packed products in float64 (src/_gemm_d.h) against numpy, over the
edge cases of their tiling (rows not a multiple of the 6- or 8-row tiles,
columns not a multiple of the 8-double panel, both layouts of B, overwrite
and accumulate), the one-row GEMV against the one-row tiles (bitwise), and
the networks on them: the same results as on BLAS to
float64 rounding, bitwise the same on the AVX-512 and AVX2 tiles, on one
thread and two, and for any batch around a row.  The parameter-gradient
products (rf_gemm_tn_d) are tested with float32's in test_packed_gemm.py."""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import _core, _rnn

CELLS = [(rnnfast.RNN, {}), (rnnfast.LSTM, {}), (rnnfast.GRU, {}),
         (rnnfast.GRU, {"reset_after": False})]
CELL_IDS = ["rnn", "lstm", "gru", "gru-reset-before"]


@pytest.fixture(autouse=True)
def _switches_on():
    yield
    _core.use_packed_gemm(True)
    _core.use_wide_tiles(True)
    _core.use_dgemv(True)
    _core.use_gemv_groups_of_8(None)


@pytest.fixture
def packed():
    if not _core.use_packed_gemm(True):
        pytest.skip("this CPU or build has no packed kernel: float64 runs on BLAS")


def product_case(m, n, k, trans_b):
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a = rng.standard_normal((m, k))
    b = rng.standard_normal((n, k) if trans_b else (k, n))
    return a, b, rng.standard_normal((m, n))


@pytest.mark.parametrize("m", [1, 2, 5, 6, 7, 8, 9, 13, 64, 200, 385])
@pytest.mark.parametrize("n,k", [(1, 1), (8, 8), (9, 3), (16, 64), (17, 5), (24, 33),
                                 (40, 7), (79, 130), (256, 64)])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("accumulate", [False, True])
def test_float64_packed_matmul_matches_numpy_on_both_tiles(m, n, k, trans_b, accumulate,
                                                           packed):
    """m = 385: more than two row blocks of 192; n = 24, 40, 79: an odd
    number of panels, whose last one the AVX2 tile takes beside wide ones."""
    a, b, c0 = product_case(m, n, k, trans_b)
    expected = a @ (b.T if trans_b else b) + (c0 if accumulate else 0)
    out = []
    for wide in (True, False):
        _core.use_wide_tiles(wide)
        c = c0.copy()
        assert _rnn.packed_matmul(a, b, c, trans_b, accumulate)
        out.append(c)
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_allclose(out[0], expected, rtol=1e-13, atol=1e-13 * np.sqrt(k))


def test_float64_packed_matmul_rows_do_not_depend_on_the_batch(packed):
    """Each row is one FMA chain over k whatever the tile it falls in: any
    slice of rows gives bitwise the whole product's rows."""
    a, b, _ = product_case(50, 40, 70, False)
    whole = np.empty((50, 40))
    _rnn.packed_matmul(a, b, whole, False, False)
    for lo, hi in ((0, 1), (3, 10), (7, 8), (13, 50), (1, 49)):
        part = np.empty((hi - lo, 40))
        _rnn.packed_matmul(np.ascontiguousarray(a[lo:hi]), b, part, False, False)
        np.testing.assert_array_equal(part, whole[lo:hi])


# A product of one row runs on the GEMV (src/_gemm_d.h): groups of eight
# panels on the AVX-512 code (forced here: a Zen 4 takes groups of four for
# a small B), then of four, then single panels (n = 104 is 13 panels: 8 + 4
# + 1; 107 leaves 3 columns in the last), walked forwards and backwards on
# alternate calls.  It must give the one-row tiles' bits.
@pytest.mark.parametrize("n", [1, 7, 8, 24, 31, 32, 40, 64, 72, 96, 104, 107, 256])
@pytest.mark.parametrize("k", [1, 9, 64, 130])
@pytest.mark.parametrize("walk", ["groups-of-8", "default", "avx2"])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("accumulate", [False, True])
def test_float64_gemv_is_bitwise_the_one_row_tiles(n, k, walk, trans_b, accumulate, packed):
    a, b, c0 = product_case(1, n, k, trans_b)
    _core.use_wide_tiles(walk != "avx2")
    _core.use_gemv_groups_of_8(True if walk == "groups-of-8" else None)
    out = []
    for gemv in (True, False):
        _core.use_dgemv(gemv)
        for backward in (False, True):   # gemm_packed_dh takes float64 to gemm_packed
            if backward and not trans_b:
                continue
            c = c0.copy()
            # repeat=2 with accumulate: the second call (the other walk) adds again
            assert _rnn.packed_matmul(a, b, c, trans_b, accumulate, repeat=2,
                                      backward=backward)
            out.append(c)
    for c in out[1:]:
        np.testing.assert_array_equal(c, out[0])
    op_b = b.T if trans_b else b
    expected = 2 * (a @ op_b) + c0 if accumulate else a @ op_b
    np.testing.assert_allclose(out[0], expected, rtol=1e-13, atol=1e-13 * np.sqrt(k))


@pytest.mark.parametrize("cls,kw", CELLS, ids=CELL_IDS)
def test_float64_batch_of_one_is_bitwise_on_the_gemv_and_the_tiles(cls, kw, packed):
    """A batch of one sequence: every step's product, forward and backward,
    is one row; on the GEMV or on the one-row tiles, the same bits."""
    runs = []
    for gemv in (True, False):
        _core.use_dgemv(gemv)
        runs.append(bidirectional_step(cls, kw, 6, N=1, T=9, D=13, H=70))
    for i, (a, b) in enumerate(zip(*runs)):
        np.testing.assert_array_equal(a, b, err_msg=f"array {i}")


def test_float64_packed_matmul_refuses_mixed_types():
    with pytest.raises((TypeError, ValueError)):
        _rnn.packed_matmul(np.ones((2, 3)), np.ones((3, 4), np.float32),
                           np.zeros((2, 4)), False, False)


def bidirectional_step(cls, kw, seed, N=9, T=11, D=13, H=21, threads=1):
    """[outputs, input gradients, *parameter gradients, inference outputs]
    of a float64 bidirectional network's training step with ragged lengths
    (4H = 84: a ragged last panel)."""
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((N, T, D))
    dys = rng.standard_normal((N, T, 2 * H))
    lengths = rng.integers(1, T + 1, N)
    lengths[0] = T
    net = cls(D, H, bidirectional=True, dtype=np.float64, random_state=0, **kw)
    with threadpool_limits(threads):
        ys, _ = net.forward(xs, lengths=lengths)
        dxs = net.backward(dys)
        grads = [g.copy() for g in net.grads]
        infer, _ = net.eval().forward(xs, lengths=lengths)
    return [ys, dxs] + grads + [infer]


@pytest.mark.parametrize("cls,kw", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("switch,exact", [(_core.use_packed_gemm, False),
                                          (_core.use_wide_tiles, True)],
                         ids=["kernel-vs-blas", "wide-vs-avx2-tiles"])
def test_float64_networks_across_the_product_switches(cls, kw, switch, exact, packed):
    """The packed kernel against BLAS: the same to float64 rounding; the
    AVX-512 tiles against the AVX2 ones: bitwise the same."""
    runs = []
    for on in (True, False):
        switch(on)
        runs.append(bidirectional_step(cls, kw, 1))
    for i, (a, b) in enumerate(zip(*runs)):
        if exact:
            np.testing.assert_array_equal(a, b, err_msg=f"array {i}")
        else:
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12, err_msg=f"array {i}")


@pytest.mark.parametrize("cls,kw", CELLS, ids=CELL_IDS)
def test_float64_inference_on_two_threads_is_bitwise_one_threads(cls, kw, packed):
    """Inference splits its step loop over batch rows on rnnfast's threads
    in float64 too (as in float32): every row's arithmetic is the same."""
    runs = [bidirectional_step(cls, kw, 3, N=24, T=30, D=16, H=128, threads=t)[-1]
            for t in (1, 2)]
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("cls,kw", CELLS, ids=CELL_IDS)
def test_float64_training_on_two_threads_matches_one(cls, kw, packed):
    """A float64 training step on two threads splits its step loops and
    its parameter gradients over batch rows, as float32's does: outputs
    bitwise one thread's, gradients the same to float64 rounding (the
    threads' partial sums add in another order)."""
    one, two = (bidirectional_step(cls, kw, 4, N=24, T=30, D=16, H=64, threads=t)
                for t in (1, 2))
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[-1], two[-1])
    for i, (a, b) in enumerate(zip(one[1:-1], two[1:-1])):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12, err_msg=f"array {i + 1}")


@pytest.mark.parametrize("cls,kw", CELLS, ids=CELL_IDS)
def test_float64_predictions_of_a_subset_are_the_whole_batchs(cls, kw, packed):
    """What scikit-learn's subset and sample-order checks ask of an
    estimator, at the network: a row's output does not depend on the rows
    beside it (BLAS's blocking made it, at float64 rounding)."""
    net = cls(7, 40, num_layers=2, dtype=np.float64, random_state=0, **kw).eval()
    xs = np.random.default_rng(5).standard_normal((37, 12, 7))
    whole, _ = net.forward(xs)
    for rows in (slice(0, 1), slice(5, 17), slice(30, 37), [36, 2, 11]):
        part, _ = net.forward(np.ascontiguousarray(xs[rows]))
        np.testing.assert_array_equal(part, whole[rows])


def test_float64_kernel_name():
    from rnnfast import _info
    assert _info.config()["float64_kernel"] == _core.kernel_name()
    _core.use_packed_gemm(False)
    assert _info.config()["float64_kernel"] == "BLAS"
