"""An LSTM's narrow input (D <= H/2) taken into each step's product,
[x_t | h] @ [Wx; Wh] (src/_seq.pxd, NarrowInputs), against the projection
of all steps first (_core.use_narrow_inputs(False)) and against PyTorch;
and the small fully connected layers' rows summed alike in every batch
(rnnfast/layers/affine.py, _KERNEL_SMALL_W and, for float32,
_KERNEL_ONE_ROW_W)."""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import _core
from rnnfast.layers import Affine

torch = pytest.importorskip("torch")

RTOL = {np.float32: 2e-5, np.float64: 1e-12}


def _run(net, xs, lengths, h0):
    ys, state = net.forward(xs, state=h0, lengths=lengths)
    dxs = net.backward(np.cos(ys))
    out = [ys, *state, dxs, *net.grads]
    net.eval()
    out.append(net.forward(xs, state=h0, lengths=lengths)[0])
    net.train()
    return [np.array(a) for a in out]


def _both(fn):
    runs = []
    for on in (True, False):
        _core.use_narrow_inputs(on)
        try:
            runs.append(fn())
        finally:
            _core.use_narrow_inputs(True)
    return runs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("ragged", [False, True])
def test_narrow_inputs_agree_with_the_projection(dtype, threads, ragged):
    """Forward (training and evaluation), final states and backward of a
    2-layer bidirectional LSTM whose first layer's input is narrow (D = 5,
    H = 24): the same to rounding either way, from a given state."""
    N, T, D, H = 11, 26, 5, 24
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((N, T, D)).astype(dtype)
    lengths = rng.integers(1, T + 1, N) if ragged else None
    h0 = tuple(rng.standard_normal((4, N, H)).astype(dtype) for _ in range(2))

    def run():
        net = rnnfast.LSTM(D, H, num_layers=2, bidirectional=True, dtype=dtype,
                           random_state=0)
        with threadpool_limits(threads):
            return _run(net, xs, lengths, h0)
    narrow, projected = _both(run)
    for i, (a, b) in enumerate(zip(narrow, projected)):
        np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=RTOL[dtype],
                                   err_msg=f"array {i}")


def test_narrow_inputs_match_torch_in_float64():
    """The narrow path against PyTorch's LSTM: outputs, final states, dL/dx
    and the weights' gradients."""
    N, T, D, H = 13, 30, 3, 20
    rng = np.random.default_rng(4)
    xs = rng.standard_normal((N, T, D))
    dys = rng.standard_normal((N, T, H))
    net = rnnfast.LSTM(D, H, dtype=np.float64, random_state=2)
    ys, (h, c) = net.forward(xs)
    dxs = net.backward(dys)
    mod = torch.nn.LSTM(D, H, batch_first=True).double()
    with torch.no_grad():
        for name, value in rnnfast.interop.to_torch_state_dict(net).items():
            getattr(mod, name).copy_(torch.from_numpy(value))
    x = torch.from_numpy(xs).requires_grad_(True)
    ty, (th, tc) = mod(x)
    ty.backward(torch.from_numpy(dys))
    np.testing.assert_allclose(ys, ty.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(h, th.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(c, tc.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dxs, x.grad.numpy(), rtol=1e-11, atol=1e-12)
    # the gradients in PyTorch's layout: a network holding them as weights
    grads = rnnfast.LSTM(D, H, dtype=np.float64, random_state=2)
    for p, g in zip(grads.params, net.grads):
        p[...] = g
    theirs = rnnfast.interop.to_torch_state_dict(grads)
    for name in ("weight_ih_l0", "weight_hh_l0"):
        np.testing.assert_allclose(theirs[name], getattr(mod, name).grad.numpy(),
                                   rtol=1e-11, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("D,H,T,dtype,taken", [
    (5, 24, 16, np.float32, True), (12, 24, 30, np.float32, True),
    (13, 24, 30, np.float32, False), (24, 24, 30, np.float32, False),
    (5, 24, 1, np.float32, False), (5, 24, 15, np.float32, False),
    (200, 400, 24, np.float32, True),      # [Wx; Wh] 3.7 MB
    (200, 400, 24, np.float64, False),     # 7.3 MB: more than 6 MB
    (300, 600, 24, np.float32, False)])    # 8.2 MB
def test_narrow_inputs_taken_where_documented(D, H, T, dtype, taken):
    """D <= H/2, T >= 16 and [Wx; Wh] of at most 6 MB: the outputs' rounding
    shows which path ran (the sums come in another order); elsewhere
    bitwise the projection's."""
    xs = np.random.default_rng(D * T).standard_normal((16, T, D)).astype(dtype)

    def run():
        return np.array(rnnfast.LSTM(D, H, dtype=dtype, random_state=1).forward(xs)[0])
    narrow, projected = _both(run)
    assert np.array_equal(narrow, projected) is not taken
    np.testing.assert_allclose(narrow, projected, rtol=1e-5, atol=1e-6)


def test_narrow_inputs_refuse_nan():
    """xs is tested on the narrow path too: a NaN at the last step of the
    last row is refused, naming xs, before anything is kept."""
    xs = np.random.default_rng(0).standard_normal((9, 24, 4)).astype(np.float32)
    xs[-1, -1, -1] = np.nan
    net = rnnfast.LSTM(4, 16, random_state=0)
    with pytest.raises(ValueError, match="xs: contains NaN or Inf"):
        net.forward(xs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N", [1, 2, 9])
def test_narrow_first_step_from_zero_skips_only_zeros(dtype, N):
    """From a zero state the first step multiplies x_0 by Wx alone (Wx
    packed alone); a row whose state is zero among rows whose state is not
    runs the whole [x_0 | 0] [Wx; Wh].  Its outputs, final state and
    gradients are bitwise the same either way, in both directions."""
    D, H, T = 3, 40, 17
    rng = np.random.default_rng(N)
    xs = rng.standard_normal((N + 1, T, D)).astype(dtype)
    dys = rng.standard_normal((N + 1, T, 2 * H)).astype(dtype)
    h0 = tuple(rng.standard_normal((2, N + 1, H)).astype(dtype) for _ in range(2))
    for s in h0:
        s[:, :N] = 0                      # rows 0..N-1 from zero, row N not
    net = rnnfast.LSTM(D, H, bidirectional=True, dtype=dtype, random_state=5)
    for threads in (1, 2):
        with threadpool_limits(threads):
            runs = []
            for x, dy, state in ((xs[:N], dys[:N], None),
                                 (xs, dys, h0)):
                ys, (h, c) = net.forward(x, state=state)
                dxs = net.backward(dy)
                runs.append([np.array(ys[:N]), np.array(h[:, :N]), np.array(c[:, :N]),
                             np.array(dxs[:N])])
            for i, (alone, mixed) in enumerate(zip(*runs)):
                np.testing.assert_array_equal(alone, mixed, err_msg=f"array {i}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_narrow_lstm_rows_alone_are_the_batchs(dtype):
    """A row's outputs alone are bitwise its outputs in a batch (one and two
    threads)."""
    net = rnnfast.LSTM(2, 16, num_layers=2, dtype=dtype, random_state=0).eval()
    xs = np.random.default_rng(1).standard_normal((21, 25, 2)).astype(dtype)
    for threads in (1, 2):
        with threadpool_limits(threads):
            whole = net.forward(xs)[0]
            for rows in (slice(0, 1), slice(20, 21), slice(3, 12)):
                np.testing.assert_array_equal(net.forward(xs[rows])[0], whole[rows])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M", [1, 3])
def test_small_affine_rows_alone_are_the_batchs(dtype, M):
    """A small fully connected layer (an estimator's head) gives a row alone
    bitwise what it gives it in a batch of 20 (NumPy's BLAS did not, at
    float32 rounding)."""
    rng = np.random.default_rng(M)
    layer = Affine(rng.standard_normal((32, M)).astype(dtype),
                   rng.standard_normal(M).astype(dtype))
    x = rng.standard_normal((20, 32)).astype(dtype)
    whole = layer.forward(x)
    for n in range(20):
        np.testing.assert_array_equal(layer.forward(x[n:n + 1]), whole[n:n + 1])


@pytest.mark.skipif(not rnnfast._rnn.reads_w_unpacked(),
                    reason="this CPU has no AVX-512 tiles to read W as it lies")
@pytest.mark.parametrize("D,M,rows", [(128, 250, 1), (200, 2000, 4), (64, 3000, 5)])
def test_float32_affine_rows_alone_are_the_batchs(D, M, rows):
    """Where the kernel reads a float32 W as it lies, a head larger than
    4096 weights also gives rows alone (up to 32,768 weights any rows, four
    rows and more at any size) bitwise what they get in batches of 20, 64 and
    100 (unpacked at up to 64 rows, packed above), at 1 and 2 threads."""
    rng = np.random.default_rng(D + M)
    layer = Affine(rng.standard_normal((D, M)).astype(np.float32),
                   rng.standard_normal(M).astype(np.float32))
    x = rng.standard_normal((100, D)).astype(np.float32)
    for threads in (1, 2):
        with threadpool_limits(threads):
            for batch in (20, 64, 100):
                whole = layer.forward(x[:batch])
                for n0 in (0, batch - rows):
                    np.testing.assert_array_equal(layer.forward(x[n0:n0 + rows]),
                                                  whole[n0:n0 + rows])

