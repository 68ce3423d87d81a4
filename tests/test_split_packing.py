"""A call packs its large weight matrices on the threads of its step loop
(src/_seq.pxd, pack_b_split: B's rows, or its panels for a transposed B,
each thread a share).  The packed matrix is the same bytes as one thread's,
so networks give bitwise the same results with the split on and off:
forward and backward (Wx, Wh and their transposes), ragged panels (H not a
multiple of 16), ragged lengths, both directions, float32 and float64."""
import numpy as np
import pytest

from rnnfast import _core, _rnn

from test_prefetch import CELLS, _steps_switched

# H = 523: Wh (523 x 523 floats, 1.09 MB) and every larger matrix split;
# 523 = 32 * 16 + 11 leaves a ragged last panel.
N, T, D, H = 8, 3, 300, 523


def test_these_sizes_split_the_packing_and_small_ones_do_not():
    assert _rnn.split_packing_threads(2, N, T, 2 * H * H, H, H) == 2
    assert _rnn.split_packing_threads(1, N, T, 2 * H * H, H, H) == 1
    assert _rnn.split_packing_threads(2, N, T, 2 * H * H, 256, 256) == 2   # 256 KB
    assert _rnn.split_packing_threads(2, N, T, 2 * H * H, 256, 255) == 1   # < 256 KB
    _core.use_split_packing(False)
    try:
        assert _rnn.split_packing_threads(2, N, T, 2 * H * H, H, H) == 1
    finally:
        _core.use_split_packing(True)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_networks_are_bitwise_the_same_with_and_without_split_packing(cell, dtype):
    cls, kw = CELLS[cell]
    xs = np.random.default_rng(0).standard_normal((N, T, D)).astype(dtype)
    lengths = np.array([T, 2, 3, 1, 3, 2, 3, 3])
    runs = _steps_switched(
        _core.use_split_packing,
        lambda: cls(D, H, bidirectional=True, dtype=dtype, random_state=3, **kw),
        xs, lengths, threads=2)
    for i, (a, b) in enumerate(zip(*runs)):
        np.testing.assert_array_equal(a, b, err_msg=f"array {i}")
