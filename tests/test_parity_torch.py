"""Parity with torch.nn.RNN / LSTM / GRU in float32: outputs, final states,
dx, dh0 (dc0) and every parameter gradient, within rtol 1e-4, atol 1e-5.
Ragged batches are compared with pack_padded_sequence(enforce_sorted=False)."""
import numpy as np
import pytest

import rnnfast
from rnnfast.interop import from_torch, to_torch, to_torch_state_dict
from _torch_twin import grads_by_torch_name, torch_run

RTOL, ATOL = 1e-4, 1e-5
N, T, D, H = 5, 7, 4, 6
LENGTHS = np.array([7, 3, 5, 1, 6])


def _assert_close(ours, theirs, what):
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL, err_msg=what)


TOL64 = dict(rtol=1e-10, atol=1e-10)


def _torch_module(torch, kind, *args, **kwargs):
    if kind == "RNN-relu":
        return torch.nn.RNN(*args, nonlinearity="relu", batch_first=True, **kwargs)
    return getattr(torch.nn, kind)(*args, batch_first=True, **kwargs)


def _assert_param_grads(net, module, kind, close, layer_map=None):
    """Every parameter gradient of `module` (named as torch names them; for a
    single-layer `module` standing for layer `layer_map` of net)."""
    ours = grads_by_torch_name(net)
    for name, p in module.named_parameters():
        ours_name = name if layer_map is None else name.replace("_l0", f"_l{layer_map}")
        if name.startswith("bias_hh") and kind != "GRU":
            # our single bias b = b_ih + b_hh: both have its gradient
            ours_name = ours_name.replace("bias_hh", "bias_ih")
        close(ours[ours_name], p.grad.numpy(), name)


def _check_parity(torch, kind, num_layers, bidirectional, lengths, dtype=None, n=N, t=T,
                  bias=True, close=None):
    close = close or _assert_close
    torch.manual_seed(num_layers * 10 + bidirectional)
    module = _torch_module(torch, kind, D, H, num_layers, bidirectional=bidirectional,
                           bias=bias)
    if dtype is not None:
        module = module.to(dtype)
    net = from_torch(module)
    dt = module.weight_ih_l0.dtype
    nd = 2 if bidirectional else 1
    x = torch.randn(n, t, D, dtype=dt, requires_grad=True)
    h0 = torch.randn(num_layers * nd, n, H, dtype=dt, requires_grad=True)
    c0 = torch.randn(num_layers * nd, n, H, dtype=dt, requires_grad=True)
    is_lstm = kind == "LSTM"
    out, fin = torch_run(module, x, (h0, c0) if is_lstm else h0, lengths)
    g_out = torch.randn_like(out)
    g_h = torch.randn(num_layers * nd, n, H, dtype=dt)
    g_c = torch.randn(num_layers * nd, n, H, dtype=dt)
    loss = (out * g_out).sum()
    if is_lstm:
        loss = loss + (fin[0] * g_h).sum() + (fin[1] * g_c).sum()
    else:
        loss = loss + (fin * g_h).sum()
    loss.backward()

    state = (h0.detach().numpy(), c0.detach().numpy()) if is_lstm else h0.detach().numpy()
    hs, our_fin = net.forward(x.detach().numpy(), state, lengths)
    assert hs.dtype == out.detach().numpy().dtype
    _compare_and_backward(net, close, is_lstm, (hs, our_fin), out,
                          fin if is_lstm else (fin, None), (g_out, g_h, g_c), (x, h0, c0))
    _assert_param_grads(net, module, kind, close)


def _compare_and_backward(net, close, is_lstm, ours, out, fins, douts, leaves):
    """Our outputs and final states against torch's, then our backward of
    the same dL/d(outputs, h_n, c_n) against torch's grads of x, h0 (c0)."""
    (hs, our_fin), (h_n, c_n), (g, g_h, g_c), (x, h0, c0) = ours, fins, douts, leaves
    close(hs, out.detach().numpy(), "outputs")
    if is_lstm:
        close(our_fin[0], h_n.detach().numpy(), "h_n")
        close(our_fin[1], c_n.detach().numpy(), "c_n")
        dxs = net.backward(g.numpy(), (g_h.numpy(), g_c.numpy()))
        close(net.dstate[0], h0.grad.numpy(), "dh0")
        close(net.dstate[1], c0.grad.numpy(), "dc0")
    else:
        close(our_fin, h_n.detach().numpy(), "h_n")
        dxs = net.backward(g.numpy(), g_h.numpy())
        close(net.dstate, h0.grad.numpy(), "dh0")
    close(dxs, x.grad.numpy(), "dx")


def _close64(ours, theirs, what):
    np.testing.assert_allclose(ours, theirs, err_msg=what, **TOL64)


@pytest.mark.parametrize("ragged", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("kind", ["RNN", "RNN-relu", "LSTM", "GRU"])
def test_parity(torch, kind, num_layers, bidirectional, ragged):
    _check_parity(torch, kind, num_layers, bidirectional, LENGTHS if ragged else None)


@pytest.mark.parametrize("lengths", [None, "ragged", "equal-short"])
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True), (3, False),
                                                      (3, True)],
                         ids=["1-uni", "2-bi", "3-uni", "3-bi"])
@pytest.mark.parametrize("kind", ["RNN", "RNN-relu", "LSTM", "GRU"])
def test_parity_float64(torch, kind, num_layers, bidirectional, lengths):
    """float64 at a tight tolerance: outputs, final states, dx, dh0 (dc0)
    and every parameter gradient; 3 layers; ragged and equal short lengths."""
    lengths = {None: None, "ragged": LENGTHS, "equal-short": np.full(N, 4)}[lengths]
    _check_parity(torch, kind, num_layers, bidirectional, lengths, torch.float64,
                  close=_close64)


@pytest.mark.parametrize("float64", [False, True], ids=["float32", "float64"])
@pytest.mark.parametrize("n,t,lengths,bias", [(1, 1, None, True), (1, 4, [2], True),
                                              (3, 1, [1, 1, 1], True), (N, T, LENGTHS, False)],
                         ids=["N1-T1", "N1-ragged", "T1-lengths", "no-bias"])
@pytest.mark.parametrize("kind", ["RNN", "RNN-relu", "LSTM", "GRU"])
def test_parity_edge_cases(torch, kind, n, t, lengths, bias, float64):
    """A batch of one row, sequences of one step, and torch modules with
    bias=False (from_torch gives zero biases) on a 2-layer bidirectional net."""
    _check_parity(torch, kind, 2, True, lengths, torch.float64 if float64 else None, n, t,
                  bias, _close64 if float64 else None)


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


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_bias_false_moves_both_ways_and_trains_no_bias(torch, kind):
    """A torch module built with bias=False becomes a network without
    biases (none in params, none learned), whose state dict loads strictly
    back into such a module; a bias=False network built here does too."""
    from rnnfast.optim import SGD
    torch.manual_seed(0)
    module = getattr(torch.nn, kind)(D, H, 2, bidirectional=True, bias=False,
                                     batch_first=True)
    net = from_torch(module)
    assert net.bias is False and len(net.params) == 2 * 2 * 2      # Wx, Wh per direction
    assert [p.shape for p in net.layer_params(1, 1)] == [
        (2 * H, net.params[0].shape[1]), (H, net.params[0].shape[1])]
    x = torch.randn(N, T, D)
    hs, _ = net.forward(x.numpy())
    net.backward(np.ones_like(hs))
    SGD(lr=0.1).update(net.params, net.grads)       # a training step: Wx and Wh only
    exported = to_torch_state_dict(net)
    assert not any(k.startswith("bias") for k in exported)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()})  # strict
    with torch.no_grad():
        np.testing.assert_allclose(net.forward(x.numpy())[0], module(x)[0].numpy(),
                                   rtol=RTOL, atol=ATOL)
    ours = getattr(rnnfast, kind)(D, H, num_layers=2, bias=False, random_state=1)
    other = getattr(torch.nn, kind)(D, H, 2, bias=False, batch_first=True)
    other.load_state_dict({k: torch.from_numpy(v)
                           for k, v in to_torch_state_dict(ours).items()})
    with torch.no_grad():
        np.testing.assert_allclose(ours.forward(x.numpy())[0], other(x)[0].numpy(),
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


# ---------------------------------------------------- cells and Time layers
def _close_for(dtype_name):
    return _close64 if dtype_name == "float64" else _assert_close


def _ours_from_torch(module, cell, has_bias=True):
    """(Wx, Wh, b) of a torch cell or single-layer module (reset_after GRU)."""
    from rnnfast._layout import from_torch_weights
    sfx = "" if hasattr(module, "weight_ih") else "_l0"
    get = lambda n: getattr(module, n + sfx).detach().numpy()    # noqa: E731
    w_ih = get("weight_ih")
    zeros = np.zeros(w_ih.shape[0], w_ih.dtype)
    return from_torch_weights(cell, w_ih, get("weight_hh"),
                              get("bias_ih") if has_bias else zeros,
                              get("bias_hh") if has_bias else zeros, reset_after=True)


def _assert_layer_param_grads(layer, module, cell, close, has_bias=True):
    from rnnfast._layout import to_torch_weights
    sfx = "" if hasattr(module, "weight_ih") else "_l0"
    w_ih, w_hh, b_ih, b_hh = to_torch_weights(cell, *layer.grads)
    close(w_ih, getattr(module, "weight_ih" + sfx).grad.numpy(), "weight_ih")
    close(w_hh, getattr(module, "weight_hh" + sfx).grad.numpy(), "weight_hh")
    if has_bias:
        close(b_ih, getattr(module, "bias_ih" + sfx).grad.numpy(), "bias_ih")
        # RNN and LSTM: our one bias is b_ih + b_hh, both have its gradient
        close(b_hh if cell == "gru" else b_ih, getattr(module, "bias_hh" + sfx).grad.numpy(),
              "bias_hh")


CELL_KINDS = ["RNN", "RNN-relu", "LSTM", "GRU"]


def _our_options(kind):
    return ({"nonlinearity": "relu"} if kind == "RNN-relu"
            else {"reset_after": True} if kind == "GRU" else {})


def _torch_cell(torch, kind, bias):
    """torch.nn.RNNCell (tanh or relu), LSTMCell or GRUCell (D -> H) for a
    kind of CELL_KINDS."""
    if kind.startswith("RNN"):
        return torch.nn.RNNCell(D, H, bias=bias, nonlinearity=_our_options(kind).get(
            "nonlinearity", "tanh"))
    return getattr(torch.nn, kind + "Cell")(D, H, bias=bias)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_cell_parity(torch, kind, dtype, bias):
    """RNNCell / LSTMCell / GRUCell (reset_after=True) against torch's cells:
    h' (c'), dx, dh (dc) and every parameter gradient."""
    torch.manual_seed(7)
    cell = kind.split("-")[0].lower()
    tdt = getattr(torch, dtype)
    module = _torch_cell(torch, kind, bias).to(tdt)
    ours = {"rnn": rnnfast.RNNCell, "lstm": rnnfast.LSTMCell, "gru": rnnfast.GRUCell}[cell](
        *_ours_from_torch(module, cell, bias), **_our_options(kind))
    close = _close_for(dtype)
    x, h, c = (torch.randn(N, s, dtype=tdt, requires_grad=True) for s in (D, H, H))
    g_h, g_c = torch.randn(N, H, dtype=tdt), torch.randn(N, H, dtype=tdt)
    if cell == "lstm":
        h1, c1 = module(x, (h, c))
        ((h1 * g_h).sum() + (c1 * g_c).sum()).backward()
        oh, oc = ours.forward(x.detach().numpy(), h.detach().numpy(), c.detach().numpy())
        close(oc, c1.detach().numpy(), "c_next")
        dx, dh, dc = ours.backward(g_h.numpy(), g_c.numpy())
        close(dc, c.grad.numpy(), "dc_prev")
    else:
        h1 = module(x, h)
        (h1 * g_h).sum().backward()
        oh = ours.forward(x.detach().numpy(), h.detach().numpy())
        dx, dh = ours.backward(g_h.numpy())
    assert oh.dtype == np.dtype(dtype)
    close(oh, h1.detach().numpy(), "h_next")
    close(dx, x.grad.numpy(), "dx")
    close(dh, h.grad.numpy(), "dh_prev")
    _assert_layer_param_grads(ours, module, cell, close, bias)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_cells_from_and_to_torch(torch, kind, dtype, bias):
    """interop on one time step: from_torch(torch.nn.LSTMCell ...) is the
    rnnfast cell of the same step (h', c'; dtype, options and mode kept);
    to_torch of it is a torch cell of the same step again, whose tensors are
    to_torch_state_dict's, and whose weights are the first module's
    exactly (reordered and, for GRU's z, negated twice)."""
    torch.manual_seed(3)
    cell = kind.split("-")[0].lower()
    tdt = getattr(torch, dtype)
    module = _torch_cell(torch, kind, bias).to(tdt).eval()
    ours = from_torch(module)
    assert type(ours) is {"rnn": rnnfast.RNNCell, "lstm": rnnfast.LSTMCell,
                          "gru": rnnfast.GRUCell}[cell]
    assert ours.dtype == np.dtype(dtype) and not ours.training
    assert (ours.input_size, ours.hidden_size) == (D, H)
    if cell == "gru":
        assert ours.reset_after
    if cell == "rnn":
        assert ours.nonlinearity == module.nonlinearity
    back = to_torch(ours)
    assert type(back) is type(module) and back.bias and not back.training
    assert all(p.dtype == tdt for p in back.parameters())
    close = _close_for(dtype)
    x, h, c = (torch.randn(N, s, dtype=tdt) for s in (D, H, H))
    with torch.no_grad():
        if cell == "lstm":
            expected, again = module(x, (h, c)), back(x, (h, c))
            got = ours.forward(x.numpy(), h.numpy(), c.numpy())
        else:
            expected, again, got = (module(x, h),), (back(x, h),), (ours.forward(
                x.numpy(), h.numpy()),)
    for e, a, g, name in zip(expected, again, got, ("h_next", "c_next")):
        close(g, e.numpy(), name)
        close(a.numpy(), e.numpy(), name + " of to_torch")
    state = to_torch_state_dict(ours)
    assert sorted(state) == ["bias_hh", "bias_ih", "weight_hh", "weight_ih"]
    for name, tensor in back.state_dict().items():
        np.testing.assert_array_equal(tensor.numpy(), state[name], err_msg=name)
    for name in ("weight_ih", "weight_hh"):
        np.testing.assert_array_equal(state[name], getattr(module, name).detach().numpy())
    if cell == "gru" and bias:
        for name in ("bias_ih", "bias_hh"):
            np.testing.assert_array_equal(state[name], getattr(module, name).detach().numpy())
    elif not bias:
        assert not state["bias_ih"].any() and not state["bias_hh"].any()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_time_layer_parity_stateful_chunks(torch, kind, dtype):
    """TimeRNN / TimeLSTM / TimeGRU(reset_after=True), stateful, against a
    one-layer torch module run chunk by chunk with the state detached
    between chunks (truncated BPTT): hs, last states, dxs, .dh (.dc) and
    every parameter gradient of each chunk; the first chunk from a given
    state (set_state), the second from the carried one."""
    torch.manual_seed(11)
    cell = kind.split("-")[0].lower()
    tdt = getattr(torch, dtype)
    module = _torch_module(torch, kind, D, H).to(tdt)
    layer = {"rnn": rnnfast.TimeRNN, "lstm": rnnfast.TimeLSTM, "gru": rnnfast.TimeGRU}[cell](
        *_ours_from_torch(module, cell), stateful=True, **_our_options(kind))
    close = _close_for(dtype)
    is_lstm = cell == "lstm"
    xs = torch.randn(N, T, D, dtype=tdt)
    h, c = torch.randn(N, H, dtype=tdt), torch.randn(N, H, dtype=tdt)
    layer.set_state(h.numpy(), c.numpy() if is_lstm else None)
    for chunk in (xs[:, :3], xs[:, 3:]):
        x = chunk.clone().requires_grad_(True)
        h = h.detach().requires_grad_(True)
        c = c.detach().requires_grad_(True)
        module.zero_grad()
        out, fin = module(x, (h[None], c[None]) if is_lstm else h[None])
        g = torch.randn_like(out)
        (out * g).sum().backward()
        hs = layer.forward(x.detach().numpy())
        close(hs, out.detach().numpy(), "hs")
        close(layer.h, (fin[0] if is_lstm else fin)[0].detach().numpy(), "h")
        if is_lstm:
            close(layer.c, fin[1][0].detach().numpy(), "c")
        close(layer.backward(g.numpy()), x.grad.numpy(), "dxs")
        close(layer.dh, h.grad.numpy(), "dh")
        if is_lstm:
            close(layer.dc, c.grad.numpy(), "dc")
        _assert_layer_param_grads(layer, module, cell, close)
        h, c = ((fin[0][0], fin[1][0]) if is_lstm else (fin[0], c))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_time_layers_to_torch(torch, kind, dtype):
    """to_torch of a Time layer is a one-layer torch module (batch_first,
    the layer's dtype, nonlinearity and mode) of the same forward from a
    zero state, whose tensors are to_torch_state_dict's (*_l0), and
    from_torch of that module is a network with the layer's weights bit
    for bit.  A stateful layer's carried state stays with the layer."""
    rng = np.random.default_rng(12)
    cell = kind.split("-")[0].lower()
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell] * H
    b = rng.standard_normal((2, G) if cell == "gru" else G)
    cls = {"rnn": rnnfast.TimeRNN, "lstm": rnnfast.TimeLSTM, "gru": rnnfast.TimeGRU}[cell]
    layer = cls(rng.standard_normal((D, G)).astype(dtype),
                (rng.standard_normal((H, G)) / 3).astype(dtype), b.astype(dtype),
                stateful=True, **_our_options(kind))
    xs = rng.standard_normal((N, T, D)).astype(dtype)
    layer.forward(xs[:, :2])                     # it now carries a state
    module = to_torch(layer.eval())
    assert type(module) is getattr(torch.nn, cell.upper())
    assert module.batch_first and module.num_layers == 1 and not module.bidirectional
    assert module.bias and not module.training
    assert all(p.dtype == getattr(torch, dtype) for p in module.parameters())
    if cell == "rnn":
        assert module.nonlinearity == layer.nonlinearity
    state = to_torch_state_dict(layer)
    assert sorted(state) == ["bias_hh_l0", "bias_ih_l0", "weight_hh_l0", "weight_ih_l0"]
    for name, tensor in module.state_dict().items():
        np.testing.assert_array_equal(tensor.numpy(), state[name], err_msg=name)
    with torch.no_grad():
        ref = module(torch.from_numpy(xs))[0].numpy()
    layer.reset_state()
    _close_for(dtype)(layer.forward(xs), ref, "hs")
    net = from_torch(module)
    for ours, again in zip(layer.params, net.params):
        np.testing.assert_array_equal(ours, again)
    with pytest.raises(ValueError, match="reset_after=False has no PyTorch equivalent"):
        to_torch(rnnfast.TimeGRU(np.zeros((D, 3 * H)), np.zeros((H, 3 * H)), np.zeros(3 * H)))


# ------------------------------------------------------------------ networks
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("num_layers,bidirectional,ragged", [(1, False, False), (2, False, True),
                                                             (2, True, True)],
                         ids=["1-uni", "2-uni-lengths", "2-bi-lengths"])
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_stateful_network_parity(torch, kind, num_layers, bidirectional, ragged, dtype):
    """A stateful network over two chunks against torch with the final state
    of chunk 1 (each sequence's own last step when ragged) detached and fed
    to chunk 2: outputs, final states, dxs, dstate (= dL/d carried state)
    and every parameter gradient of each chunk."""
    torch.manual_seed(13)
    tdt = getattr(torch, dtype)
    module = _torch_module(torch, kind, D, H, num_layers, bidirectional=bidirectional).to(tdt)
    net = from_torch(module)
    net.stateful = True
    close = _close_for(dtype)
    is_lstm = kind == "LSTM"
    chunk_lengths = ([[3, 1, 2, 3, 2], [4, 4, 1, 2, 3]] if ragged else [None, None])
    xs = torch.randn(N, T, D, dtype=tdt)
    state = None
    for x, lengths in zip((xs[:, :3], xs[:, 3:]), chunk_lengths):
        x = x.clone().requires_grad_(True)
        if state is not None:
            state = (tuple(s.detach().requires_grad_(True) for s in state) if is_lstm
                     else state.detach().requires_grad_(True))
        module.zero_grad()
        out, fin = torch_run(module, x, state, lengths)
        g = torch.randn_like(out)
        (out * g).sum().backward()
        hs, our_fin = net.forward(x.detach().numpy(), lengths=lengths)
        close(hs, out.detach().numpy(), "outputs")
        for a, b in zip(our_fin if is_lstm else (our_fin,), fin if is_lstm else (fin,)):
            close(a, b.detach().numpy(), "final state")
        close(net.backward(g.numpy()), x.grad.numpy(), "dxs")
        if state is not None:
            for a, b in zip(net.dstate if is_lstm else (net.dstate,),
                            state if is_lstm else (state,)):
                close(a, b.grad.numpy(), "dstate")
        _assert_param_grads(net, module, kind, close)
        state = fin


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("num_layers,bidirectional,ragged", [(2, False, False), (3, True, True)],
                         ids=["2-uni", "3-bi-lengths"])
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_dropout_parity(torch, kind, num_layers, bidirectional, ragged, dtype):
    """Dropout between layers.  Training: the network's masks (recorded)
    applied between one-layer torch modules holding its layers' weights;
    outputs, final states, dxs, dh0 (dc0) and every parameter gradient.
    Evaluation: the whole torch module in eval() (no dropout)."""
    torch.manual_seed(17)
    tdt = getattr(torch, dtype)
    module = _torch_module(torch, kind, D, H, num_layers, bidirectional=bidirectional,
                           dropout=0.4).to(tdt)
    net = from_torch(module)
    assert net.dropout == 0.4 and net.training
    masks, draw = [], net._dropout_mask
    net._dropout_mask = lambda x: masks.append(draw(x)) or masks[-1]
    close = _close_for(dtype)
    is_lstm = kind == "LSTM"
    nd = 2 if bidirectional else 1
    lengths = LENGTHS if ragged else None
    x = torch.randn(N, T, D, dtype=tdt, requires_grad=True)
    h0 = torch.randn(num_layers * nd, N, H, dtype=tdt, requires_grad=True)
    c0 = torch.randn(num_layers * nd, N, H, dtype=tdt, requires_grad=True)
    state = (h0.detach().numpy(), c0.detach().numpy()) if is_lstm else h0.detach().numpy()
    hs, our_fin = net.forward(x.detach().numpy(), state, lengths)
    assert len(masks) == num_layers - 1 and all((m == 0).any() for m in masks)

    layers, inp, h_n, c_n = [], x, [], []
    for layer in range(num_layers):
        one = _torch_module(torch, kind, D if layer == 0 else nd * H, H,
                            bidirectional=bidirectional).to(tdt)
        with torch.no_grad():
            for name, p in one.named_parameters():
                p.copy_(getattr(module, name.replace("_l0", f"_l{layer}")))
        layers.append(one)
        if layer:
            inp = inp * torch.from_numpy(masks[layer - 1])
        rows = slice(layer * nd, (layer + 1) * nd)
        inp, fin = torch_run(one, inp, (h0[rows], c0[rows]) if is_lstm else h0[rows], lengths)
        h_n.append(fin[0] if is_lstm else fin)
        c_n.append(fin[1] if is_lstm else fin)
    h_n, c_n = torch.cat(h_n), torch.cat(c_n)
    g, g_h, g_c = torch.randn_like(inp), torch.randn_like(h_n), torch.randn_like(c_n)
    loss = (inp * g).sum() + (h_n * g_h).sum()
    if is_lstm:
        loss = loss + (c_n * g_c).sum()
    loss.backward()
    _compare_and_backward(net, close, is_lstm, (hs, our_fin), inp, (h_n, c_n),
                          (g, g_h, g_c), (x, h0, c0))
    for layer, one in enumerate(layers):
        _assert_param_grads(net, one, kind, close, layer_map=layer)

    net.eval()
    module.eval()
    with torch.no_grad():
        ref, ref_fin = torch_run(module, x, (h0, c0) if is_lstm else h0, lengths)
    hs, our_fin = net.forward(x.detach().numpy(), state, lengths)
    close(hs, ref.numpy(), "eval outputs")
    close(our_fin[0] if is_lstm else our_fin, (ref_fin[0] if is_lstm else ref_fin).numpy(),
          "eval h_n")


@pytest.mark.parametrize("make", [
    lambda: rnnfast.LSTM(D, H, num_layers=2, bidirectional=True, dropout=0.25,
                         random_state=0),
    lambda: rnnfast.RNN(D, H, nonlinearity="relu", dtype=np.float64, random_state=1),
    lambda: rnnfast.GRU(D, H, num_layers=2, bias=False, random_state=2)],
    ids=["lstm-bi-dropout", "rnn-relu-float64", "gru-no-bias"])
def test_to_torch_builds_the_module_from_torch_reads_back(torch, make):
    net = make()
    module = to_torch(net)
    assert isinstance(module, getattr(torch.nn, type(net).__name__)) and module.batch_first
    assert module.training and module.bias == net.bias
    assert module.dropout == net.dropout and module.num_layers == net.num_layers
    back = from_torch(module)
    for ours, again in zip(net.params, back.params):
        np.testing.assert_array_equal(ours, again)          # the same weights, bit for bit
    net.eval(), module.eval()
    x = np.random.default_rng(0).standard_normal((N, T, D)).astype(net.dtype)
    with torch.no_grad():
        ref = module(torch.from_numpy(x))[0].numpy()
    close = _close64 if net.dtype == np.float64 else _assert_close
    close(net.forward(x)[0], ref, "outputs")
