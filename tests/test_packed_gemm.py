"""The packed micro-kernel of the per-step products (src/_gemm.h) against
numpy, over the edge cases of its tiling: rows not a multiple of the 6-row
tile, columns not a multiple of the 16-column panel, both layouts of B, and
overwrite vs accumulate.  Also: a whole layer gives the same results with the
packed kernel and with BLAS."""
import os

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import _core, _rnn


@pytest.fixture(autouse=True)
def _packed_on():
    yield
    _core.use_packed_gemm(True)
    _core.use_wide_tiles(True)
    _core.use_gemv_groups_of_8(None)
    _core.use_half_panels(True)
    _core.use_tall_tiles(True)


def _cpu_has_avx512f():
    try:
        with open("/proc/cpuinfo") as fh:
            return " avx512f" in fh.read()
    except OSError:
        return None


def test_packed_kernel_is_used_where_the_cpu_has_it():
    # Informative on any CPU; on the project's machines (AVX2+FMA) it is True.
    active = _core.use_packed_gemm(True)
    a = np.ones((4, 3), np.float32)
    assert _rnn.packed_matmul(a, np.ones((3, 5), np.float32), np.zeros((4, 5), np.float32),
                              False, False) is active


def _product_case(m, n, k, trans_b):
    """a (m, k), b (k, n) or, with trans_b, (n, k), and c0 (m, n): float32,
    seeded by the shape."""
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    return a, b, rng.standard_normal((m, n)).astype(np.float32)


@pytest.mark.parametrize("m", [1, 2, 3, 5, 6, 7, 12, 13, 32, 41, 97, 200])
@pytest.mark.parametrize("n,k", [(1, 1), (16, 8), (17, 3), (31, 64), (48, 33), (64, 7),
                                 (79, 5), (200, 130)])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("accumulate", [False, True])
def test_packed_matmul_matches_numpy(m, n, k, trans_b, accumulate):
    a, b, c0 = _product_case(m, n, k, trans_b)
    c = c0.copy()
    _rnn.packed_matmul(a, b, c, trans_b, accumulate)
    expected = a.astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    if accumulate:
        expected += c0
    np.testing.assert_allclose(c, expected, rtol=1e-5, atol=1e-5 * np.sqrt(k))


def test_wide_tiles_run_where_the_cpu_has_avx512():
    has = _cpu_has_avx512f()
    wide = _core.use_wide_tiles(True)
    if has is not None and os.environ.get("RNNFAST_NO_AVX512", "0") in ("", "0"):
        assert wide == (has and _core.use_packed_gemm(True))
    assert _core.use_wide_tiles(False) is False


def test_no_avx512_environment_variable_keeps_the_avx2_tiles():
    """RNNFAST_NO_AVX512=1 (read once, at the first product) keeps the AVX2
    tiles in a fresh process; 0 or unset leaves the choice to the CPU."""
    import subprocess
    import sys
    code = ("import numpy as np; from rnnfast import _core, _rnn; a = np.ones((3, 4), "
            "np.float32); _rnn.packed_matmul(a, np.ones((4, 40), np.float32), "
            "np.zeros((3, 40), np.float32), False, False); print(_core.kernel_name())")
    names = {}
    for value in ("1", "0"):
        env = dict(os.environ, RNNFAST_NO_AVX512=value)
        names[value] = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                      capture_output=True, text=True).stdout.strip()
    packed = _core.use_packed_gemm(True)
    assert names["1"] == ("AVX2 tiles" if packed else "BLAS")
    has = _cpu_has_avx512f()
    if has is not None:
        assert names["0"] == ("AVX-512 tiles" if has and packed else names["1"])


def test_kernel_name_follows_the_switches():
    packed = _core.use_packed_gemm(True)
    wide = _core.use_wide_tiles(True)
    assert _core.kernel_name() == ("AVX-512 tiles" if wide else
                                   "AVX2 tiles" if packed else "BLAS")
    _core.use_wide_tiles(False)
    assert _core.kernel_name() == ("AVX2 tiles" if packed else "BLAS")
    _core.use_packed_gemm(False)
    assert _core.kernel_name() == "BLAS"
    from rnnfast import _info
    assert _info.config()["float32_kernel"] == "BLAS"


def _products_switched(switch, settings, a, b, c0, trans_b, accumulate, repeat=1):
    """packed_matmul's result (from c0) under switch(s) for each setting s;
    asserts them bitwise equal and close to numpy's, and returns the first."""
    out = []
    for setting in settings:
        switch(setting)
        c = c0.copy()
        _rnn.packed_matmul(a, b, c, trans_b, accumulate, repeat=repeat)
        out.append(c)
    for c in out[1:]:
        np.testing.assert_array_equal(out[0], c)
    product = a.astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    expected = c0 + repeat * product if accumulate else product
    np.testing.assert_allclose(out[0], expected, rtol=1e-5,
                               atol=1e-5 * np.sqrt(a.shape[1]) * repeat)
    return out[0]


# The AVX-512 tiles (two 16-column panels a tile) do the AVX2 tiles' FMAs in
# the same order: bitwise the same results, over ragged rows and columns
# (an odd number of panels leaves one panel to the AVX2 tile); m = 1 is the
# GEMV (groups of 8 panels, then 4, then single panels: 200 columns are
# 13 panels, 8 + 4 + 1; 400 are 25, 3 x 8 + 1).
@pytest.mark.parametrize("m", [1, 2, 5, 6, 7, 13, 64, 200])
@pytest.mark.parametrize("n,k", [(1, 1), (16, 8), (17, 3), (31, 64), (32, 5), (33, 33),
                                 (48, 7), (79, 130), (256, 64), (200, 64), (400, 9)])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("accumulate", [False, True])
def test_wide_tiles_are_bitwise_the_avx2_tiles(m, n, k, trans_b, accumulate):
    a, b, c0 = _product_case(m, n, k, trans_b)
    _core.use_gemv_groups_of_8(True)      # the AVX-512 GEMV even where the CPU would not
    _products_switched(_core.use_wide_tiles, (False, True), a, b, c0, trans_b, accumulate)


# The two-panel AVX-512 tiles take up to 12 rows (rows split into tiles of
# near-equal height: 9-12 rows one tile, 13-24 two, 37 four of 9-10, 128
# eleven of 11-12); each element is the same FMA chain over k as on the
# 8-row tiles: bitwise the same, over ragged columns (a last single panel),
# both layouts of B and both C updates (docs/performance.md item 185).
@pytest.mark.parametrize("m", [9, 10, 11, 12, 13, 20, 23, 25, 37, 128])
@pytest.mark.parametrize("n,k", [(32, 5), (48, 33), (79, 130), (200, 64)])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("accumulate", [False, True])
def test_tall_tiles_are_bitwise_the_8_row_tiles(m, n, k, trans_b, accumulate):
    a, b, c0 = _product_case(m, n, k, trans_b)
    _products_switched(_core.use_tall_tiles, (False, True), a, b, c0, trans_b, accumulate)
    _products_switched(_core.use_tall_tiles, (False, True), a, b, c0, trans_b, accumulate,
                       repeat=3)


# The parameter gradients' tiles of packed A: up to 12 rows where the wide
# tiles run (every kind: a last panel of 9-16 columns on the one-panel
# AVX-512 tile, of 1-8 on the half-panel tile), blocks of 96 rows (m1 = 200:
# 96 + 96 + 8), the A^T rows 96 + 1 (m2 = 97), chunks of 512 rows of K (k =
# 600): bitwise the 6-row tiles, close to numpy.
@pytest.mark.parametrize("k", [7, 600])
@pytest.mark.parametrize("m1,m2", [(7, 0), (12, 11), (13, 25), (37, 97), (200, 9)])
@pytest.mark.parametrize("n", [8, 32, 40, 200, 300])
def test_tall_tiles_are_bitwise_the_6_row_tiles_for_dw(k, m1, m2, n):
    _dw_products_switched(_core.use_tall_tiles, k, m1, m2, n)


def _dw_products_switched(switch, k, m1, m2, n, n2=-1):
    """packed_matmul_tn (c1 = a1^T b, c2[:, :n2] = a2^T b[:, :n2]) of seeded
    float32 operands under switch(False) and switch(True): bitwise equal,
    and close to numpy's in float64 (c2's columns from n2 on left as they
    were)."""
    rng = np.random.default_rng(k + m1 + n)
    a1 = rng.standard_normal((k, m1)).astype(np.float32)
    a2 = rng.standard_normal((k, m2)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    out = []
    for on in (False, True):
        switch(on)
        c1 = np.full((m1, n), np.nan, np.float32)
        c2 = np.full((m2, n), 7.0, np.float32)
        _rnn.packed_matmul_tn(a1, a2, b, c1, c2, n2)
        out.append((c1, c2))
    for before, after in zip(*out):
        np.testing.assert_array_equal(before, after)
    cols = n if n2 < 0 else n2
    c1, c2 = out[1]
    tol = dict(rtol=1e-5, atol=1e-5 * np.sqrt(k))
    np.testing.assert_allclose(c1, a1.T.astype(np.float64) @ b.astype(np.float64), **tol)
    np.testing.assert_allclose(c2[:, :cols],
                               a2.T.astype(np.float64) @ b[:, :cols].astype(np.float64), **tol)
    assert (c2[:, cols:] == 7.0).all()


# The last panel of N on the half-panel tiles where it has 1-8 columns
# (N = 8, 24, 40, 56, 200, 600, 1) and on a whole panel's where it has
# 9-16 (N = 9, 31, 48); on a Zen 4 the wide tiles' last pair split into a
# panel and a half where its second panel has at most 8 columns (N = 24,
# 56, 600): bitwise the same with the switch on or off, in the per-step
# products (6- and 8-row tiles, every height) and the dW products.
@pytest.mark.parametrize("m", [1, 2, 5, 6, 7, 8, 13, 64])
@pytest.mark.parametrize("n", [1, 8, 9, 24, 31, 40, 48, 56, 200, 600])
@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_half_panels_are_bitwise_whole_panels(m, n, wide, trans_b):
    a, b, c0 = _product_case(m, n, 37, trans_b)
    _core.use_wide_tiles(wide)
    _products_switched(_core.use_half_panels, (True, False), a, b, c0, trans_b, True)


@pytest.mark.parametrize("k", [33, 600])
@pytest.mark.parametrize("m1,n", [(5, 8), (7, 200), (200, 200), (13, 40), (9, 24), (20, 600)])
@pytest.mark.parametrize("wide", [False, True])
def test_half_panels_are_bitwise_whole_panels_for_dw(k, m1, n, wide):
    rng = np.random.default_rng(k + m1 + n)
    a1 = rng.standard_normal((k, m1)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    _core.use_wide_tiles(wide)
    out = []
    for half in (True, False):
        _core.use_half_panels(half)
        c1 = np.full((m1, n), np.nan, np.float32)
        c2 = np.zeros((0, n), np.float32)
        _rnn.packed_matmul_tn(a1, np.zeros((k, 0), np.float32), b, c1, c2)
        out.append(c1)
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_allclose(out[0], a1.T.astype(np.float64) @ b.astype(np.float64),
                               rtol=1e-4, atol=1e-4 * np.sqrt(k))


def _amd_family():
    """The CPU family of an AMD x86-64 CPU from /proc/cpuinfo, else None."""
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
    except OSError:
        return None
    if "AuthenticAMD" not in text:
        return None
    for line in text.splitlines():
        if line.startswith("cpu family"):
            return int(line.split(":")[1])
    return None


def test_gemv_groups_of_8_follow_the_cpu_and_the_switch():
    """By default the AVX-512 GEMV walks groups of eight panels except where
    a 512-bit FMA runs as two halves (AMD family 0x19, a Zen 4); True and
    False force either."""
    default = _core.use_gemv_groups_of_8(None)
    if _cpu_has_avx512f() and _amd_family() is not None:
        assert default == (_amd_family() != 0x19)
    assert _core.use_gemv_groups_of_8(True) is True
    assert _core.use_gemv_groups_of_8(False) is False
    assert _core.use_gemv_groups_of_8(None) is default


# 13 panels are 8 + 4 + 1 in groups of eight, 4 + 4 + 4 + 1 in groups of four.
@pytest.mark.parametrize("n,k", [(16, 8), (64, 64), (200, 64), (256, 64), (400, 9),
                                 (512, 128)])
@pytest.mark.parametrize("accumulate", [False, True])
def test_gemv_in_groups_of_8_or_4_is_bitwise_the_same(n, k, accumulate):
    a, b, c0 = _product_case(1, n, k, False)
    _products_switched(_core.use_gemv_groups_of_8, (True, False), a, b, c0, False, accumulate,
                       repeat=3)                                      # both walks


@pytest.mark.parametrize("k", [1, 33, 513, 1100])
@pytest.mark.parametrize("m1,m2", [(5, 3), (96, 97)])
@pytest.mark.parametrize("n,n2", [(17, -1), (48, 32), (51, 17), (100, -1)])
def test_wide_tiles_are_bitwise_the_avx2_tiles_for_dw(k, m1, m2, n, n2):
    _dw_products_switched(_core.use_wide_tiles, k, m1, m2, n, n2)


def test_packed_matmul_refuses_disagreeing_shapes():
    a = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="do not agree"):
        _rnn.packed_matmul(a, np.ones((2, 5), np.float32), np.zeros((4, 5), np.float32),
                           False, False)
    with pytest.raises(ValueError, match="repeat: expected an integer >= 1, got 0"):
        _rnn.packed_matmul(a, np.ones((3, 5), np.float32), np.zeros((4, 5), np.float32),
                           False, False, 0)


def tn_tol(dtype, k):
    """assert_allclose's tolerances for a sum of k products (float32 on
    src/_gemm.h's tiles, float64 on src/_gemm_d.h's, or BLAS)."""
    eps = 1e-5 if dtype == np.float32 else 1e-13
    return {"rtol": eps, "atol": eps * np.sqrt(max(k, 1))}


# The parameter-gradient products dW = A^T @ B: rows (k) cut into chunks of
# 512 (RF_KC) and columns of A (m) into blocks of 96 (RF_MC), so the cases
# straddle both; two sources share one packing of B.
@pytest.mark.parametrize("k", [0, 1, 7, 31, 32, 33, 511, 512, 513, 1100])
@pytest.mark.parametrize("m1,m2", [(1, 0), (5, 3), (96, 97), (200, 0), (64, 256)])
@pytest.mark.parametrize("n", [1, 16, 17, 100])
@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packed_matmul_tn_matches_numpy(k, m1, m2, n, packed, dtype):
    _core.use_packed_gemm(packed)
    rng = np.random.default_rng(k * 7 + m1 * 11 + m2 * 13 + n)
    a1 = rng.standard_normal((k, m1)).astype(dtype)
    a2 = rng.standard_normal((k, m2)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c1 = np.full((m1, n), np.nan, dtype)      # overwritten, never read
    c2 = np.full((m2, n), np.nan, dtype)
    _rnn.packed_matmul_tn(a1, a2, b, c1, c2)
    tol = tn_tol(dtype, k)
    np.testing.assert_allclose(c1, a1.T.astype(np.float64) @ b, **tol)
    np.testing.assert_allclose(c2, a2.T.astype(np.float64) @ b, **tol)


@pytest.mark.parametrize("k", [0, 5, 40, 700])
@pytest.mark.parametrize("n,n2", [(48, 32), (30, 20), (51, 17), (16, 16)])
@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packed_matmul_tn_second_product_on_leading_columns(k, n, n2, packed, dtype):
    """GRU's dWh[:, :2H] = Hprev^T dA_zr shares the packing of dA with dWx:
    the second product uses B's first n2 columns (ragged panels too) and
    leaves C2's other columns alone."""
    _core.use_packed_gemm(packed)
    rng = np.random.default_rng(k + n + n2)
    a1 = rng.standard_normal((k, 7)).astype(dtype)
    a2 = rng.standard_normal((k, 13)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c1 = np.full((7, n), np.nan, dtype)
    c2 = np.full((13, n), 7.0, dtype)
    _rnn.packed_matmul_tn(a1, a2, b, c1, c2, n2)
    tol = tn_tol(dtype, k)
    np.testing.assert_allclose(c1, a1.T.astype(np.float64) @ b, **tol)
    np.testing.assert_allclose(c2[:, :n2], a2.T.astype(np.float64) @ b[:, :n2], **tol)
    np.testing.assert_array_equal(c2[:, n2:], 7.0)


@pytest.mark.parametrize("runs,run_len,stride", [(8, 64, 100), (8, 40, 40), (3, 200, 900),
                                                  (5, 7, 9), (2, 600, 601), (4, 1, 3)])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("a2_runs", ["same", "packed", "wider"])
def test_packed_matmul_tn_over_runs_of_rows(runs, run_len, stride, accumulate, packed, a2_runs,
                                           dtype):
    """The products over a chunk of steps of every batch row: only the rows
    of `runs` runs of run_len, `stride` apart (packing chunks of 512 rows
    that cross runs, and runs longer than a chunk), overwriting C or added
    to it; bias sums as numpy's.  The second source's runs may lie apart
    by a stride of their own: run_len (touching: RNN's chunk buffer of
    h_prev) or more."""
    _core.use_packed_gemm(packed)
    stride2 = {"same": stride, "packed": run_len, "wider": stride + 3}[a2_runs]
    rng = np.random.default_rng(runs * run_len + stride)
    a1 = rng.standard_normal((runs * stride, 19)).astype(dtype)
    a2 = rng.standard_normal((runs * stride2, 40)).astype(dtype)
    b = rng.standard_normal((runs * stride, 48)).astype(dtype)
    rows = np.concatenate([np.arange(r * stride, r * stride + run_len) for r in range(runs)])
    rows2 = np.concatenate([np.arange(r * stride2, r * stride2 + run_len)
                            for r in range(runs)])
    c1 = rng.standard_normal((19, 48)).astype(dtype)
    c2 = rng.standard_normal((40, 48)).astype(dtype)
    want1 = a1[rows].T.astype(np.float64) @ b[rows] + (c1 if accumulate else 0)
    want2 = a2[rows2].T.astype(np.float64) @ b[rows] + (c2 if accumulate else 0)
    _rnn.packed_matmul_tn(a1, a2, b, c1, c2, runs=runs, run_len=run_len,
                          accumulate=accumulate)
    tol = tn_tol(dtype, len(rows))
    np.testing.assert_allclose(c1, want1, **tol)
    np.testing.assert_allclose(c2, want2, **tol)


def test_packed_matmul_tn_refuses_disagreeing_shapes():
    a = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="do not agree"):
        _rnn.packed_matmul_tn(a, np.ones((5, 2), np.float32), np.ones((4, 6), np.float32),
                              np.zeros((3, 6), np.float32), np.zeros((2, 6), np.float32))
    for n2 in (0, -2, 7):
        with pytest.raises(ValueError, match="do not agree"):
            _rnn.packed_matmul_tn(a, np.ones((4, 2), np.float32), np.ones((4, 6), np.float32),
                                  np.zeros((3, 6), np.float32), np.zeros((2, 6), np.float32),
                                  n2)
    # over runs, a2's own runs must hold run_len rows
    with pytest.raises(ValueError, match="do not agree"):
        _rnn.packed_matmul_tn(np.ones((8, 3), np.float32), np.ones((6, 2), np.float32),
                              np.ones((8, 6), np.float32), np.zeros((3, 6), np.float32),
                              np.zeros((2, 6), np.float32), runs=2, run_len=4)


def _bidirectional_step(cls, kw, xs, dys, lengths):
    """[outputs, input gradients, *parameter gradients] of a training step of
    a fresh bidirectional float32 network (seed 0) on xs (N, T, D)."""
    net = cls(xs.shape[2], dys.shape[2] // 2, bidirectional=True, dtype=np.float32,
              random_state=0, **kw)
    ys, _ = net.forward(xs, lengths=lengths)
    dxs = net.backward(dys)
    return [ys, dxs] + [g.copy() for g in net.grads]


@pytest.mark.parametrize("cls,kw", [(rnnfast.RNN, {}), (rnnfast.LSTM, {}),
                                    (rnnfast.GRU, {}), (rnnfast.GRU, {"reset_after": False})])
def test_layer_same_with_packed_kernel_and_blas(cls, kw):
    """Forward and gradients of a bidirectional layer with ragged lengths
    (both the strided and the scratch paths of every kernel) agree between
    the packed kernel and BLAS to float32 rounding."""
    rng = np.random.default_rng(3)
    N, T, D, H = 7, 9, 5, 21            # 4H = 84: a ragged last panel
    xs = rng.standard_normal((N, T, D)).astype(np.float32)
    dys = rng.standard_normal((N, T, 2 * H)).astype(np.float32)
    lengths = np.array([9, 3, 9, 1, 5, 9, 2])
    results = []
    for on in (True, False):
        _core.use_packed_gemm(on)
        ys, dxs, *grads = _bidirectional_step(cls, kw, xs, dys, lengths)
        results.append((ys, dxs, grads))
    (y1, dx1, g1), (y2, dx2, g2) = results
    np.testing.assert_allclose(y1, y2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx1, dx2, rtol=1e-4, atol=1e-5)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cls,kw", [(rnnfast.RNN, {}), (rnnfast.LSTM, {}),
                                    (rnnfast.GRU, {}), (rnnfast.GRU, {"reset_after": False})])
@pytest.mark.parametrize("H", [21, 40])
def test_layer_bitwise_the_same_with_wide_and_avx2_tiles(cls, kw, H):
    """A training step of a bidirectional layer with ragged lengths: outputs,
    input gradients and parameter gradients bit for bit the same whether
    the products run on the AVX-512 or the AVX2 tiles."""
    rng = np.random.default_rng(4)
    N, T, D = 13, 11, 37
    xs = rng.standard_normal((N, T, D)).astype(np.float32)
    dys = rng.standard_normal((N, T, 2 * H)).astype(np.float32)
    lengths = rng.integers(1, T + 1, N)
    results = []
    for wide in (True, False):
        _core.use_wide_tiles(wide)
        results.append(_bidirectional_step(cls, kw, xs, dys, lengths))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def _two_cpus_and_threadpoolctl():
    if not _core.use_packed_gemm(True):
        pytest.skip("rnnfast's threads run with its packed kernel only (this CPU or "
                    "build lacks it: BLAS threads the products itself)")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs")
    return threadpoolctl


def _threaded_case(seed, N=24, T=30, D=16, H=128):
    """Inputs (N, T, D), output gradients of a bidirectional layer (N, T,
    2H) and ragged lengths (one full), large enough that 2 threads split."""
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((N, T, D)).astype(np.float32)
    dys = rng.standard_normal((N, T, 2 * H)).astype(np.float32)
    lengths = rng.integers(1, T + 1, N)
    lengths[0] = T
    return xs, dys, lengths


@pytest.mark.parametrize("cls,kw", [(rnnfast.RNN, {}), (rnnfast.LSTM, {}),
                                    (rnnfast.GRU, {}), (rnnfast.GRU, {"reset_after": False})])
def test_threaded_step_loop_is_bitwise_the_serial_one(cls, kw):
    """Inference with 2 BLAS threads splits the step loop over batch rows
    (src/_threads.h); every row's arithmetic is the same, so the outputs
    are bitwise those of 1 thread, with ragged lengths in both directions."""
    threadpoolctl = _two_cpus_and_threadpoolctl()
    xs, _, lengths = _threaded_case(5)
    N, T, D = xs.shape
    H = 128
    net = cls(D, H, bidirectional=True, dtype=np.float32, random_state=0, **kw)
    net.eval()
    outs = []
    for threads in (1, 2):
        with threadpoolctl.threadpool_limits(threads):
            assert _core.step_loop_threads() == threads
            ys, state = net.forward(xs, lengths=lengths)
        outs.append((ys, state))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    for a, b in zip(np.atleast_1d(outs[0][1]), np.atleast_1d(outs[1][1])):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls,kw", [(rnnfast.RNN, {}), (rnnfast.LSTM, {}),
                                    (rnnfast.GRU, {}), (rnnfast.GRU, {"reset_after": False})])
def test_threaded_training_step_matches_the_serial_one(cls, kw):
    """A training step at 2 threads splits the step loops and the parameter
    gradients over batch rows (per-thread partial sums, BLAS at one thread
    meanwhile).  Outputs are bitwise those of 1 thread; gradients agree to
    float32 rounding (the partial sums add in another order); the BLAS
    thread count is restored."""
    threadpoolctl = _two_cpus_and_threadpoolctl()
    xs, dys, lengths = _threaded_case(6)
    N, T, D = xs.shape
    H = 128
    results = []
    for threads in (1, 2):
        net = cls(D, H, bidirectional=True, dtype=np.float32, random_state=0, **kw)
        with threadpoolctl.threadpool_limits(threads):
            ys, _ = net.forward(xs, lengths=lengths)
            dxs = net.backward(dys)
            assert _core.step_loop_threads() == threads
        results.append((ys, dxs, [g.copy() for g in net.grads]))
    (y1, dx1, g1), (y2, dx2, g2) = results
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_allclose(dx1, dx2, rtol=1e-5, atol=1e-6)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cls,kw", [(rnnfast.RNN, {}), (rnnfast.LSTM, {}),
                                    (rnnfast.GRU, {}), (rnnfast.GRU, {"reset_after": False})])
def test_few_sequences_split_their_gradients_over_threads(cls, kw):
    """With too few batch rows to split the step loop (N = 2 at 2 threads),
    the gradients split over the N*T rows instead (grad_threads in
    src/_seq.pxd): dX is bitwise that of 1 thread, dWx, dWh, db agree to
    float32 rounding, and differ bitwise somewhere (the partial sums add in
    another order), which shows that the split ran."""
    threadpoolctl = _two_cpus_and_threadpoolctl()
    rng = np.random.default_rng(3)
    N, T, D, H = 2, 300, 96, 128
    xs = rng.standard_normal((N, T, D)).astype(np.float32)
    dys = rng.standard_normal((N, T, H)).astype(np.float32)
    lengths = np.array([T, T - 17])
    results = []
    for threads in (1, 2):
        net = cls(D, H, dtype=np.float32, random_state=0, **kw)
        with threadpoolctl.threadpool_limits(threads):
            ys, _ = net.forward(xs, lengths=lengths)
            dxs = net.backward(dys)
        results.append((ys, dxs, [g.copy() for g in net.grads]))
    (y1, dx1, g1), (y2, dx2, g2) = results
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(dx1, dx2)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    if _core._packed_in_use():
        assert any(not np.array_equal(a, b) for a, b in zip(g1, g2))


@pytest.mark.parametrize("m", [1, 2, 3, 7, 8, 9, 13, 64, 200])
@pytest.mark.parametrize("n,k", [(1, 1), (16, 8), (17, 3), (31, 64), (32, 5), (48, 33),
                                 (80, 20), (79, 5), (256, 64), (200, 81)])
@pytest.mark.parametrize("accumulate", [False, True])
def test_unpacked_b_is_bitwise_the_packed_product(m, n, k, accumulate):
    """B read as it lies by the wide tiles (masked to a ragged last tile's
    columns) gives bitwise the packed tiles' product."""
    a, b, c0 = _product_case(m, n, k, False)
    got, want = c0.copy(), c0.copy()
    _rnn.packed_matmul(a, b, got, False, accumulate, unpacked=True)
    _rnn.packed_matmul(a, b, want, False, accumulate)
    np.testing.assert_array_equal(got, want)
    if _cpu_has_avx512f() and _core.use_packed_gemm(True) and \
            os.environ.get("RNNFAST_NO_AVX512", "0") in ("", "0"):
        assert _rnn.unpacked_b_applies(m, m, k, n) == (
            m >= 2 and (m <= 16 or (k * n <= 4096 and m <= 128)))
        # B met by several products (steps) of a few rows: only when small
        assert _rnn.unpacked_b_applies(2 * m, m, k, n) == (
            m >= 2 and k * n <= 4096 and 2 * m <= 128)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "gru-reset-before"])
@pytest.mark.parametrize("threads", [1, 2])
def test_networks_with_unpacked_weights_are_bitwise_the_packed(cell, threads):
    """Forward (training and inference) and backward of networks whose Wx
    and Wh are small enough to go unpacked: bitwise the same as with them
    packed, ragged and reversed, one and two threads, one-step calls too."""
    cls = {"rnn": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU,
           "gru-reset-before": rnnfast.GRU}[cell]
    kw = {"reset_after": False} if cell == "gru-reset-before" else {}
    rng = np.random.default_rng(5)
    runs = []
    for unpacked in (True, False):
        _core.use_unpacked_b(unpacked)
        try:
            out = []
            # the last: one step whose loop splits over 2 threads, B large
            for N, T, D, H in ((9, 7, 5, 20), (3, 1, 6, 36), (12, 40, 8, 16),
                               (16, 1, 40, 200)):
                net = cls(D, H, num_layers=2, bidirectional=True, random_state=1, **kw)
                xs = np.random.default_rng(N * T).standard_normal((N, T, D)).astype(np.float32)
                lengths = np.random.default_rng(T).integers(1, T + 1, N)
                lengths[0] = T
                with threadpool_limits(threads):
                    ys, _ = net.forward(xs, lengths=lengths)
                    out += [ys, net.backward(np.ones_like(ys)), *net.grads]
                    out.append(net.eval().forward(xs, lengths=lengths)[0])
            runs.append(out)
        finally:
            _core.use_unpacked_b(True)
    for i, (a, b) in enumerate(zip(*runs)):
        np.testing.assert_array_equal(a, b, err_msg=f"array {i}")
    if _cpu_has_avx512f() and _core.use_packed_gemm(True) and \
            os.environ.get("RNNFAST_NO_AVX512", "0") in ("", "0"):
        # the cases above do take the unpacked path: N*T = 63 rows, 9 a step
        assert _rnn.unpacked_b_applies(9 * 7, 9, 20, 4 * 20)
        assert _rnn.unpacked_b_applies(3, 3, 36, 4 * 36)
        assert _rnn.unpacked_b_applies(16, 16, 200, 4 * 200)
