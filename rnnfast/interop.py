"""Weights to and from PyTorch's nn.RNN / nn.LSTM / nn.GRU.

PyTorch is not a dependency: `from_torch` reads a module's tensors through
numpy and `to_torch_state_dict` returns numpy arrays under PyTorch's names,
ready for `module.load_state_dict({k: torch.from_numpy(v) for k, v in d.items()})`;
`to_torch` builds that module (it imports torch when called).
The gate reordering and GRU's flipped z are in rnnfast._layout.
"""
import numpy as np

from ._layout import bias_shape, from_torch_weights, to_torch_weights
from .networks import GRU, LSTM, RNN

_CELLS = {"RNN": "rnn", "LSTM": "lstm", "GRU": "gru"}


def _torch_name(kind, layer, direction):
    return f"{kind}_l{layer}" + ("_reverse" if direction else "")


def from_torch(module):
    """An rnnfast network with the weights of a torch.nn.RNN, LSTM or GRU."""
    # by name, since torch is not a dependency; rnnfast's own LSTM is not one
    kinds = [c.__name__ for c in type(module).__mro__
             if c.__module__.startswith("torch.nn") and c.__name__ in _CELLS]
    if not kinds:
        raise TypeError(f"module: expected torch.nn.RNN, LSTM or GRU, got "
                        f"{type(module).__module__}.{type(module).__qualname__}")
    kind = kinds[0]
    if getattr(module, "proj_size", 0):
        raise ValueError("module: LSTM with proj_size > 0 is not supported")
    tensors = module.state_dict()
    for name, t in tensors.items():
        # before .numpy(), which cannot convert bfloat16 and names no tensor
        if str(t.dtype) not in ("torch.float32", "torch.float64"):
            raise TypeError(f"module: expected float32 or float64 weights, got {name} "
                            f"of dtype {t.dtype} and shape {tuple(t.shape)}")
    state = {k: v.detach().cpu().numpy() for k, v in tensors.items()}
    for name, value in state.items():
        if not np.isfinite(value).all():
            raise ValueError(f"module: {name} (shape {value.shape}) contains NaN or Inf")
    dtype = state["weight_ih_l0"].dtype
    common = dict(num_layers=module.num_layers, bidirectional=module.bidirectional,
                  dropout=module.dropout, dtype=dtype, bias=bool(module.bias))
    if kind == "RNN":
        net = RNN(module.input_size, module.hidden_size,
                  nonlinearity=module.nonlinearity, **common)
    elif kind == "LSTM":
        net = LSTM(module.input_size, module.hidden_size, **common)
    else:
        net = GRU(module.input_size, module.hidden_size, reset_after=True, **common)
    cell = _CELLS[kind]
    for layer in range(net.num_layers):
        for d in range(net.num_directions):
            sfx = _torch_name("", layer, d)[1:]
            G = net.layer_params(layer, d)[0].shape[1]
            zeros = np.zeros(G, dtype)
            for name, H_in in (("weight_ih", net.layer_params(layer, d)[0].shape[0]),
                               ("weight_hh", net.hidden_size)):
                got = state[f"{name}_{sfx}"].shape
                if got != (G, H_in):      # a module whose tensors were replaced
                    raise ValueError(f"module.{name}_{sfx}: expected shape {(G, H_in)} for "
                                     f"a {kind}(input_size={module.input_size}, hidden_size="
                                     f"{module.hidden_size}), got {got}")
            for name in ("bias_ih", "bias_hh"):
                got = state.get(f"{name}_{sfx}", zeros).shape
                if got != (G,):
                    raise ValueError(f"module.{name}_{sfx}: expected shape {(G,)}, got {got}")
            Wx, Wh, b = from_torch_weights(
                cell, state[f"weight_ih_{sfx}"], state[f"weight_hh_{sfx}"],
                state.get(f"bias_ih_{sfx}", zeros), state.get(f"bias_hh_{sfx}", zeros),
                reset_after=True, dtype=dtype)
            # zip: without biases layer_params is [Wx, Wh] (b is then zero)
            for target, value in zip(net.layer_params(layer, d), (Wx, Wh, b)):
                target[...] = value
    return net


def to_torch_state_dict(net):
    """{name: numpy array} under PyTorch's parameter names for `net` (no
    bias_* entries for a network built with bias=False, as in PyTorch)."""
    if not all(hasattr(net, a) for a in ("cell", "num_layers", "num_directions",
                                         "layer_params")):
        raise TypeError(f"net: expected an rnnfast.RNN, LSTM or GRU network, "
                        f"got {type(net).__name__}")
    out = {}
    for layer in range(net.num_layers):
        for d in range(net.num_directions):
            sfx = _torch_name("", layer, d)[1:]
            Wx, Wh, *b = net.layer_params(layer, d)
            has_bias = bool(b)
            if not has_bias:        # bias=False: the zeros the kernels run with
                b = [np.zeros(bias_shape(net.cell, Wh.shape[0],
                                         getattr(net, "reset_after", True)), Wh.dtype)]
            w_ih, w_hh, b_ih, b_hh = to_torch_weights(net.cell, Wx, Wh, *b)
            out[f"weight_ih_{sfx}"] = w_ih
            out[f"weight_hh_{sfx}"] = w_hh
            if has_bias:
                out[f"bias_ih_{sfx}"] = b_ih
                out[f"bias_hh_{sfx}"] = b_hh
    return out


def to_torch(net):
    """A new torch.nn.RNN, LSTM or GRU (batch_first=True, `net`'s sizes,
    dtype, dropout and bias) holding `net`'s weights: from_torch's inverse.
    Needs PyTorch (imported here only).  A GRU with reset_after=False has
    no PyTorch equivalent (ValueError, as to_torch_state_dict)."""
    state = to_torch_state_dict(net)            # checks net, refuses what torch lacks
    import torch
    kind = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[net.cell]
    extra = {"nonlinearity": net.nonlinearity} if net.cell == "rnn" else {}
    module = kind(net.input_size, net.hidden_size, num_layers=net.num_layers,
                  bias=getattr(net, "bias", True), batch_first=True,
                  dropout=net.dropout if net.num_layers > 1 else 0.0,
                  bidirectional=net.bidirectional, **extra)
    module = module.to({"float32": torch.float32, "float64": torch.float64}[
        np.dtype(net.dtype).name])
    module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v))
                            for k, v in state.items()})
    module.train(net.training)
    return module
