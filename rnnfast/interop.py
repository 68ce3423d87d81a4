"""Weights to and from PyTorch's nn.RNN / nn.LSTM / nn.GRU (rnnfast's
networks) and nn.RNNCell / nn.LSTMCell / nn.GRUCell (rnnfast's cells);
rnnfast's Time layers go to a one-layer nn.RNN / nn.LSTM / nn.GRU.

PyTorch is not a dependency: `from_torch` reads a module's tensors through
numpy and `to_torch_state_dict` returns numpy arrays under PyTorch's names,
ready for `module.load_state_dict({k: torch.from_numpy(v) for k, v in d.items()})`;
`to_torch` builds that module (it imports torch when called).
The gate reordering and GRU's flipped z are in rnnfast._layout.
"""
import numpy as np

from ._layout import N_GATES, bias_shape, from_torch_weights, to_torch_weights
from .layers.recurrent import GRUCell, LSTMCell, RNNCell, TimeGRU, TimeLSTM, TimeRNN
from .networks import GRU, LSTM, RNN

_CELLS = {"RNN": "rnn", "LSTM": "lstm", "GRU": "gru"}
# one time step: torch's cell modules and rnnfast's cells
_STEP_CELLS = {"RNNCell": "rnn", "LSTMCell": "lstm", "GRUCell": "gru"}
_OUR_STEP_CELLS = (RNNCell, LSTMCell, GRUCell)
# a whole sequence, one layer and direction: torch.nn.RNN / LSTM / GRU's layer 0
_OUR_TIME_LAYERS = (TimeRNN, TimeLSTM, TimeGRU)


def _torch_name(kind, layer, direction):
    return f"{kind}_l{layer}" + ("_reverse" if direction else "")


def _torch_kind(module):
    """The name of the torch.nn class among _CELLS and _STEP_CELLS that
    `module` is (by name, since torch is not a dependency; rnnfast's own
    LSTM is not one); TypeError otherwise."""
    for c in type(module).__mro__:
        if c.__module__.startswith("torch.nn") and (c.__name__ in _CELLS
                                                    or c.__name__ in _STEP_CELLS):
            return c.__name__
    raise TypeError(f"module: expected torch.nn.RNN, LSTM or GRU, or torch.nn.RNNCell, "
                    f"LSTMCell or GRUCell, got "
                    f"{type(module).__module__}.{type(module).__qualname__}")


def _numpy_state(module):
    """module.state_dict() as numpy arrays: float32 or float64 and finite,
    else an error naming the tensor."""
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
    return state


def _layer_weights(state, sfx, cell, kind, module, rows_in, dtype):
    """(Wx, Wh, b) in rnnfast's layout from the tensors named *_{sfx} (sfx
    "" for a cell) of a layer taking rows_in inputs, after checking their
    shapes (a module whose tensors were replaced); absent biases read as
    zeros."""
    H = module.hidden_size
    G = N_GATES[cell] * H
    zeros = np.zeros(G, dtype)
    for name, cols in (("weight_ih", rows_in), ("weight_hh", H)):
        key = f"{name}_{sfx}" if sfx else name
        got = state[key].shape
        if got != (G, cols):
            raise ValueError(f"module.{key}: expected shape {(G, cols)} for a {kind}("
                             f"input_size={module.input_size}, hidden_size={H}), "
                             f"got {got}")
    for name in ("bias_ih", "bias_hh"):
        key = f"{name}_{sfx}" if sfx else name
        got = state.get(key, zeros).shape
        if got != (G,):
            raise ValueError(f"module.{key}: expected shape {(G,)}, got {got}")
    get = lambda name: state.get(f"{name}_{sfx}" if sfx else name, zeros)  # noqa: E731
    return from_torch_weights(cell, get("weight_ih"), get("weight_hh"), get("bias_ih"),
                              get("bias_hh"), reset_after=True, dtype=dtype)


def _cell_from_torch(module, kind):
    cell = _STEP_CELLS[kind]
    state = _numpy_state(module)
    Wx, Wh, b = _layer_weights(state, "", cell, kind, module, module.input_size,
                               state["weight_ih"].dtype)
    if cell == "rnn":
        return RNNCell(Wx, Wh, b, nonlinearity=module.nonlinearity).train(module.training)
    if cell == "lstm":
        return LSTMCell(Wx, Wh, b).train(module.training)
    return GRUCell(Wx, Wh, b, reset_after=True).train(module.training)


def from_torch(module):
    """An rnnfast network with the weights of a torch.nn.RNN, LSTM or GRU,
    or an rnnfast cell (RNNCell, LSTMCell, GRUCell with reset_after=True)
    with those of a torch.nn.RNNCell, LSTMCell or GRUCell.  The result
    takes the module's dtype (float32 or float64) and training mode."""
    kind = _torch_kind(module)
    if kind in _STEP_CELLS:
        return _cell_from_torch(module, kind)
    if getattr(module, "proj_size", 0):
        raise ValueError("module: LSTM with proj_size > 0 is not supported")
    state = _numpy_state(module)
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
            rows_in = net.layer_params(layer, d)[0].shape[0]
            Wx, Wh, b = _layer_weights(state, sfx, cell, kind, module, rows_in, dtype)
            # zip: without biases layer_params is [Wx, Wh] (b is then zero)
            for target, value in zip(net.layer_params(layer, d), (Wx, Wh, b)):
                target[...] = value
    return net


def _cell_state_dict(cell):
    """An rnnfast cell's weights under torch.nn.*Cell's names (always with
    biases: a cell has its b, zeros or not)."""
    w_ih, w_hh, b_ih, b_hh = to_torch_weights(cell.cell, *cell._live_params())
    return {"weight_ih": w_ih, "weight_hh": w_hh, "bias_ih": b_ih, "bias_hh": b_hh}


def to_torch_state_dict(net):
    """{name: numpy array} under PyTorch's parameter names for `net`: an
    rnnfast network (no bias_* entries for one built with bias=False, as in
    PyTorch), a cell (torch.nn.RNNCell / LSTMCell / GRUCell's names) or a
    Time layer (a one-layer torch.nn.RNN / LSTM / GRU's names, *_l0)."""
    if isinstance(net, _OUR_STEP_CELLS):
        return _cell_state_dict(net)
    if isinstance(net, _OUR_TIME_LAYERS):
        return {f"{name}_l0": value for name, value in _cell_state_dict(net).items()}
    if not all(hasattr(net, a) for a in ("cell", "num_layers", "num_directions",
                                         "layer_params")):
        raise TypeError(f"net: expected an rnnfast.RNN, LSTM or GRU network, an "
                        f"rnnfast.RNNCell, LSTMCell or GRUCell, or an rnnfast.TimeRNN, "
                        f"TimeLSTM or TimeGRU, got {type(net).__name__}")
    if isinstance(net, (RNN, LSTM, GRU)):
        net._live_params()      # a replaced array is refused, not exported
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
    dtype, dropout and bias) holding `net`'s weights: from_torch's inverse;
    for an rnnfast cell, a torch.nn.RNNCell, LSTMCell or GRUCell; for a
    Time layer, a one-layer torch.nn.RNN, LSTM or GRU (batch_first=True)
    computing the layer's forward from a zero state (a stateful layer's
    carried state stays with the layer).  Needs PyTorch (imported here
    only).  A GRU with reset_after=False has no PyTorch equivalent
    (ValueError, as to_torch_state_dict)."""
    state = to_torch_state_dict(net)            # checks net, refuses what torch lacks
    import torch
    extra = {"nonlinearity": net.nonlinearity} if net.cell == "rnn" else {}
    if isinstance(net, _OUR_STEP_CELLS):
        kind = {"rnn": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell,
                "gru": torch.nn.GRUCell}[net.cell]
        module = kind(net.input_size, net.hidden_size, bias=True, **extra)
    else:
        kind = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[net.cell]
        if isinstance(net, _OUR_TIME_LAYERS):       # one layer and direction, biases
            shape = dict(num_layers=1, bias=True)
        else:
            shape = dict(num_layers=net.num_layers, bias=getattr(net, "bias", True),
                         dropout=net.dropout if net.num_layers > 1 else 0.0,
                         bidirectional=net.bidirectional)
        module = kind(net.input_size, net.hidden_size, batch_first=True, **shape, **extra)
    module = module.to({"float32": torch.float32, "float64": torch.float64}[
        np.dtype(net.dtype).name])
    module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v))
                            for k, v in state.items()})
    module.train(net.training)
    return module
