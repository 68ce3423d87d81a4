"""Parity with torch.nn.RNN / LSTM / GRU in float32: outputs, final states,
dx, dh0 (dc0) and every parameter gradient, within rtol 1e-4, atol 1e-5.
Ragged batches are compared with pack_padded_sequence(enforce_sorted=False)."""
import numpy as np
import pytest

from rnnfast.interop import from_torch, to_torch_state_dict

RTOL, ATOL = 1e-4, 1e-5
N, T, D, H = 5, 7, 4, 6
LENGTHS = np.array([7, 3, 5, 1, 6])


def _assert_close(ours, theirs, what):
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL, err_msg=what)


def _grads_by_torch_name(net):
    """Our gradients mapped to PyTorch's names and layout."""
    class _GradView:
        cell, num_layers, num_directions = net.cell, net.num_layers, net.num_directions

        @staticmethod
        def layer_params(layer, d):
            i = 3 * (layer * net.num_directions + d)
            return net.grads[i:i + 3]
    return to_torch_state_dict(_GradView)


@pytest.mark.parametrize("ragged", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("kind", ["RNN", "RNN-relu", "LSTM", "GRU"])
def test_parity(torch, kind, num_layers, bidirectional, ragged):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    torch.manual_seed(num_layers * 10 + bidirectional)
    if kind == "RNN-relu":
        module = torch.nn.RNN(D, H, num_layers, nonlinearity="relu",
                              bidirectional=bidirectional, batch_first=True)
    else:
        module = getattr(torch.nn, kind)(D, H, num_layers, bidirectional=bidirectional,
                                         batch_first=True)
    net = from_torch(module)
    nd = 2 if bidirectional else 1
    x = torch.randn(N, T, D, requires_grad=True)
    h0 = torch.randn(num_layers * nd, N, H, requires_grad=True)
    c0 = torch.randn(num_layers * nd, N, H, requires_grad=True)
    is_lstm = kind == "LSTM"
    if ragged:
        packed = pack_padded_sequence(x, torch.tensor(LENGTHS), batch_first=True,
                                      enforce_sorted=False)
        out, fin = module(packed, (h0, c0) if is_lstm else h0)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
    else:
        out, fin = module(x, (h0, c0) if is_lstm else h0)
    g_out = torch.randn_like(out)
    g_h = torch.randn(num_layers * nd, N, H)
    g_c = torch.randn(num_layers * nd, N, H)
    loss = (out * g_out).sum()
    if is_lstm:
        loss = loss + (fin[0] * g_h).sum() + (fin[1] * g_c).sum()
    else:
        loss = loss + (fin * g_h).sum()
    loss.backward()

    state = (h0.detach().numpy(), c0.detach().numpy()) if is_lstm else h0.detach().numpy()
    hs, our_fin = net.forward(x.detach().numpy(), state, LENGTHS if ragged else None)
    _assert_close(hs, out.detach().numpy(), "outputs")
    if is_lstm:
        _assert_close(our_fin[0], fin[0].detach().numpy(), "h_n")
        _assert_close(our_fin[1], fin[1].detach().numpy(), "c_n")
        dxs = net.backward(g_out.numpy(), (g_h.numpy(), g_c.numpy()))
        _assert_close(net.dstate[0], h0.grad.numpy(), "dh0")
        _assert_close(net.dstate[1], c0.grad.numpy(), "dc0")
    else:
        _assert_close(our_fin, fin.detach().numpy(), "h_n")
        dxs = net.backward(g_out.numpy(), g_h.numpy())
        _assert_close(net.dstate, h0.grad.numpy(), "dh0")
    _assert_close(dxs, x.grad.numpy(), "dx")
    ours = _grads_by_torch_name(net)
    for name, p in module.named_parameters():
        if name.startswith("bias_hh") and kind != "GRU":
            # our single bias b = b_ih + b_hh: both have its gradient
            _assert_close(ours[name.replace("bias_hh", "bias_ih")], p.grad.numpy(), name)
        else:
            _assert_close(ours[name], p.grad.numpy(), name)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_state_dict_round_trip(torch, kind):
    torch.manual_seed(0)
    module = getattr(torch.nn, kind)(D, H, 2, bidirectional=True, batch_first=True)
    net = from_torch(module)
    exported = to_torch_state_dict(net)
    other = getattr(torch.nn, kind)(D, H, 2, bidirectional=True, batch_first=True)
    other.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()})
    x = torch.randn(N, T, D)
    with torch.no_grad():
        np.testing.assert_allclose(other(x)[0].numpy(), module(x)[0].numpy(),
                                   rtol=RTOL, atol=ATOL)


def test_float64_module(torch):
    torch.manual_seed(1)
    module = torch.nn.LSTM(D, H, batch_first=True).double()
    net = from_torch(module)
    assert net.dtype == np.float64
    x = torch.randn(N, T, D, dtype=torch.float64)
    with torch.no_grad():
        ref = module(x)[0].numpy()
    np.testing.assert_allclose(net.forward(x.numpy())[0], ref, rtol=1e-12, atol=1e-12)


def test_reset_before_gru_has_no_torch_equivalent():
    import rnnfast
    net = rnnfast.GRU(D, H, reset_after=False)
    with pytest.raises(ValueError, match="reset_after=False"):
        to_torch_state_dict(net)


def test_from_torch_refuses_other_modules(torch):
    with pytest.raises(TypeError, match="module"):
        from_torch(torch.nn.Linear(3, 4))


@pytest.mark.parametrize("name,shape", [("weight_ih_l0", (12, 5)), ("weight_hh_l1_reverse", (12, 3)),
                                        ("bias_ih_l1", (11,))])
def test_from_torch_names_a_replaced_tensor_of_another_shape(torch, name, shape):
    module = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True)
    setattr(module, name, torch.nn.Parameter(torch.zeros(shape)))
    with pytest.raises(ValueError, match=rf"module\.{name}: expected shape"):
        from_torch(module)
