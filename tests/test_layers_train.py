"""Embedding, Affine, TimeDropout and TimeAttention: values, gradients by
finite differences (float64), dtypes, shared weights and bad input."""
import numpy as np
import pytest

from rnnfast.layers import (Affine, Embedding, TimeAffine, TimeAttention, TimeDropout,
                            TimeEmbedding)
from _fd import check_grad


@pytest.fixture
def rng():
    return np.random.default_rng(7)


# ---------------------------------------------------------------- embedding
@pytest.mark.parametrize("cls, shape", [(Embedding, (5,)), (TimeEmbedding, (3, 4))])
def test_embedding_forward_backward(cls, shape, rng):
    W = rng.standard_normal((6, 3))
    ids = rng.integers(0, 6, shape)
    ids.reshape(-1)[:2] = 2                      # a repeated id must accumulate
    layer = cls(W)
    assert layer.params[0] is W
    out = layer.forward(ids)
    np.testing.assert_array_equal(out, W[ids])
    R = rng.standard_normal(out.shape)
    layer.backward(R)
    expected = np.zeros_like(W)
    for i, r in zip(ids.reshape(-1), R.reshape(-1, 3)):   # the plain definition
        expected[i] += r
    np.testing.assert_allclose(layer.grads[0], expected, rtol=1e-12, atol=1e-12)
    check_grad(lambda: float((layer.forward(ids) * R).sum()), W, expected, "W", n=18)


def test_embedding_dtype_and_errors(rng):
    layer = TimeEmbedding(rng.standard_normal((6, 3)).astype(np.float32))
    assert layer.forward([[0, 5]]).dtype == np.float32
    with pytest.raises(ValueError, match=r"ids.*0\.\.5.*6"):
        layer.forward([[0, 6]])
    with pytest.raises(ValueError, match=r"ids.*0\.\.5"):
        layer.forward([[-1, 0]])
    with pytest.raises(TypeError, match="ids"):
        layer.forward(np.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"ids: expected shape \(N, T\), got shape \(2,\)"):
        layer.forward([0, 1])
    with pytest.raises(RuntimeError):
        TimeEmbedding(np.zeros((2, 2))).backward(np.zeros((1, 1, 2)))
    # a huge unsigned id is reported as it is, not wrapped to -1 by the cast
    with pytest.raises(ValueError, match="got min 18446744073709551615"):
        layer.forward(np.array([[2 ** 64 - 1]], np.uint64))


# ------------------------------------------------------------------- affine
@pytest.mark.parametrize("D,M", [(0, 3), (4, 0)])
def test_affine_of_zero_inputs_or_outputs_works_as_torchs_linear(D, M):
    """torch.nn.Linear(0, 3) gives its bias for every row; reshape(-1, 0)
    could not infer the rows."""
    layer = TimeAffine(np.zeros((D, M), np.float32), np.arange(M, dtype=np.float32))
    y = layer.forward(np.ones((2, 3, D), np.float32))
    np.testing.assert_array_equal(y, np.broadcast_to(np.arange(M, dtype=np.float32), (2, 3, M)))
    assert layer.backward(np.ones((2, 3, M))).shape == (2, 3, D)
    np.testing.assert_array_equal(layer.grads[1], np.full(M, 6.0))

@pytest.mark.parametrize("cls, xshape", [(Affine, (4, 3)), (TimeAffine, (2, 5, 3))])
def test_affine_gradients(cls, xshape, rng):
    W, b = rng.standard_normal((3, 4)), rng.standard_normal(4)
    x = rng.standard_normal(xshape)
    layer = cls(W, b)
    y = layer.forward(x)
    np.testing.assert_allclose(y, np.einsum("...d,dm->...m", x, W) + b, rtol=1e-12)
    R = rng.standard_normal(y.shape)
    dx = layer.backward(R)

    def loss():
        return float((cls(W, b).forward(x) * R).sum())
    check_grad(loss, W, layer.grads[0], "W")
    check_grad(loss, b, layer.grads[1], "b")
    check_grad(loss, x, dx, "x")


def test_affine_keeps_a_transposed_view_shared(rng):
    E = rng.standard_normal((7, 3)).astype(np.float32)       # an embedding (V, D)
    layer = TimeAffine(E.T, np.zeros(7, np.float32))
    assert layer.params[0].base is E
    x = rng.standard_normal((1, 2, 3)).astype(np.float32)
    before = layer.forward(x)
    E *= 2                                                    # an optimizer's in-place step
    np.testing.assert_allclose(layer.forward(x), 2 * before, rtol=1e-6)
    assert layer.forward(x).dtype == np.float32


def test_affine_errors(rng):
    layer = TimeAffine(np.zeros((3, 4)), np.zeros(4))
    with pytest.raises(ValueError, match=r"x: expected shape \(N, T, 3\), got shape \(2, 5, 2\)"):
        layer.forward(np.zeros((2, 5, 2)))
    with pytest.raises(ValueError, match=r"b: expected shape \(4,\), got shape \(3,\)"):
        TimeAffine(np.zeros((3, 4)), np.zeros(3))
    with pytest.raises(TypeError, match="x"):
        layer.forward(np.array([["a"]]))
    with pytest.raises(RuntimeError):
        layer.backward(np.zeros((2, 5, 4)))


# ------------------------------------------------------------------ dropout
def test_dropout_seeded_inverted_and_local(rng):
    x = np.ones((50, 40), np.float32)
    global_state = np.random.get_state()[1].copy()
    a = TimeDropout(0.3, random_state=1).forward(x)
    b = TimeDropout(0.3, random_state=1).forward(x)
    c = TimeDropout(0.3, random_state=2).forward(x)
    np.testing.assert_array_equal(np.random.get_state()[1], global_state)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32
    kept = a != 0
    np.testing.assert_allclose(a[kept], 1 / 0.7, rtol=1e-6)      # inverted scaling
    assert abs(kept.mean() - 0.7) < 0.05


def test_dropout_backward_and_eval(rng):
    layer = TimeDropout(0.5, random_state=3)
    x = rng.standard_normal((3, 4, 5))
    y = layer.forward(x)
    R = rng.standard_normal(y.shape)
    dx = layer.backward(R)
    np.testing.assert_allclose(dx, R * (y / x))                # same mask as forward
    layer.eval()
    np.testing.assert_array_equal(layer.forward(x), x)
    np.testing.assert_array_equal(layer.backward(R), R)
    with pytest.raises(ValueError, match="ratio"):
        TimeDropout(1.0)
    with pytest.raises(TypeError, match="random_state"):
        TimeDropout(0.5, random_state="seed")


@pytest.mark.parametrize("training", [True, False])
def test_dropout_backward_refuses_a_dout_of_another_shape(training):
    """A dout that only broadcasts against the mask, or (in evaluation)
    any array at all, came back as a gradient of the wrong shape."""
    layer = TimeDropout(0.5, random_state=0).train(training)
    layer.forward(np.ones((2, 3, 4), np.float32))
    for bad in (np.ones((1, 3, 1)), np.ones(4), np.ones((2, 3, 5))):
        with pytest.raises(ValueError, match=r"dout: expected shape \(2, 3, 4\)"):
            layer.backward(bad)
        layer.forward(np.ones((2, 3, 4), np.float32))
    dx = layer.backward(np.ones((2, 3, 4)))
    assert dx.shape == (2, 3, 4) and dx.dtype == np.float32


# ---------------------------------------------------------------- attention
def _attention_loop(hs_enc, hs_dec):
    """The textbook's per-step attention (DLFS2 AttentionWeight + WeightSum)."""
    out = np.empty_like(hs_dec)
    for t in range(hs_dec.shape[1]):
        s = (hs_enc * hs_dec[:, t:t + 1, :]).sum(axis=2)         # (N, S)
        a = np.exp(s - s.max(axis=1, keepdims=True))
        a /= a.sum(axis=1, keepdims=True)
        out[:, t] = (hs_enc * a[:, :, None]).sum(axis=1)
    return out


def test_attention_over_no_encoder_steps_is_refused():
    with pytest.raises(ValueError, match=r"hs_enc: attention needs at least one encoder step"):
        TimeAttention().forward(np.ones((2, 0, 4)), np.ones((2, 3, 4)))


def test_attention_matches_per_step_and_gradients(rng):
    hs_enc, hs_dec = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 4, 3))
    layer = TimeAttention()
    c = layer.forward(hs_enc, hs_dec)
    np.testing.assert_allclose(c, _attention_loop(hs_enc, hs_dec), rtol=1e-12)
    np.testing.assert_allclose(layer.attention_weights.sum(axis=2), 1.0)
    R = rng.standard_normal(c.shape)
    denc, ddec = layer.backward(R)

    def loss():
        return float((TimeAttention().forward(hs_enc, hs_dec) * R).sum())
    check_grad(loss, hs_enc, denc, "hs_enc", n=30)
    check_grad(loss, hs_dec, ddec, "hs_dec", n=24)
    with pytest.raises(ValueError, match=r"hs_dec: expected shape \(2, T, 3\)"):
        layer.forward(hs_enc, np.zeros((2, 4, 2)))


def test_dropout_refuses_non_numbers_and_keeps_its_last_mask():
    """A refused forward (strings) names xs and changes nothing: the mask
    and shape a pending backward needs are the last good forward's."""
    drop = TimeDropout(0.5, random_state=0)
    x = np.ones((4, 3))
    y = drop.forward(x)
    mask = drop.mask.copy()
    with pytest.raises(TypeError, match=r"xs: expected an array of real numbers, got "
                                        r"dtype <U1 \(shape \(2,\)\)"):
        drop.forward(np.array(["a", "b"]))
    np.testing.assert_array_equal(drop.mask, mask)
    np.testing.assert_array_equal(drop.backward(np.ones((4, 3))), y)
    nan = np.full((2, 2), np.nan)
    assert np.isnan(TimeDropout(0.5, random_state=0).eval().forward(nan)).all()
