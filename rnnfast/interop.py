"""Weights to and from PyTorch's nn.RNN / nn.LSTM / nn.GRU (rnnfast's
networks) and nn.RNNCell / nn.LSTMCell / nn.GRUCell (rnnfast's cells);
rnnfast's Time layers go to a one-layer nn.RNN / nn.LSTM / nn.GRU.
And to and from Keras: keras.layers.SimpleRNN / LSTM / GRU (rnnfast's
Time layers) and SimpleRNNCell / LSTMCell / GRUCell (rnnfast's cells).

Neither PyTorch nor Keras is a dependency: `from_torch` reads a module's
tensors through numpy and `to_torch_state_dict` returns numpy arrays under
PyTorch's names, ready for
`module.load_state_dict({k: torch.from_numpy(v) for k, v in d.items()})`;
`to_torch` builds that module (it imports torch when called).  Likewise
`from_keras` reads a built Keras layer's `get_weights()`,
`to_keras_weights` returns the list its `set_weights` takes, and
`to_keras` builds the layer (it imports keras when called).
The gate reordering and GRU's flipped z are in rnnfast._layout.
"""
import numpy as np

from ._layout import (N_GATES, bias_shape, from_keras_weights, from_torch_weights,
                      to_keras_weights as _keras_arrays, to_torch_weights)
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


def _class_among(obj, package, names, argname, expected):
    """The name of the class in `obj`'s MRO that lives in `package` and is
    one of `names` (by name, since neither torch nor keras is a dependency;
    rnnfast's own LSTM is not one); TypeError naming `argname` otherwise."""
    for c in type(obj).__mro__:
        if c.__module__.startswith(package) and c.__name__ in names:
            return c.__name__
    raise TypeError(f"{argname}: expected {expected}, got "
                    f"{type(obj).__module__}.{type(obj).__qualname__}")


def _torch_kind(module):
    """The name of the torch.nn class among _CELLS and _STEP_CELLS that
    `module` is."""
    return _class_among(module, "torch.nn", {**_CELLS, **_STEP_CELLS}, "module",
                        "torch.nn.RNN, LSTM or GRU, or torch.nn.RNNCell, LSTMCell or GRUCell")


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


# ------------------------------------------------------------------ Keras
_KERAS_LAYERS = {"SimpleRNN": "rnn", "LSTM": "lstm", "GRU": "gru"}
_KERAS_CELLS = {"SimpleRNNCell": "rnn", "LSTMCell": "lstm", "GRUCell": "gru"}
_OUR_TIME_LAYER = {"rnn": TimeRNN, "lstm": TimeLSTM, "gru": TimeGRU}
_OUR_CELL = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}


def _keras_kind(layer):
    """The name of the Keras class among _KERAS_LAYERS and _KERAS_CELLS
    that `layer` is."""
    return _class_among(layer, "keras", {**_KERAS_LAYERS, **_KERAS_CELLS}, "layer",
                        "keras.layers.SimpleRNN, LSTM or GRU, or keras.layers.SimpleRNNCell, "
                        "LSTMCell or GRUCell")


def _activation_name(fn):
    return getattr(fn, "__name__", repr(fn))


def from_keras(layer):
    """An rnnfast Time layer (TimeRNN, TimeLSTM, TimeGRU) with the weights
    of a built keras.layers.SimpleRNN, LSTM or GRU, or an rnnfast cell
    (RNNCell, LSTMCell, GRUCell) with those of a Keras cell.  The result
    takes the weights' dtype (float32 or float64), GRU's reset_after,
    SimpleRNN's activation (tanh or relu) and a layer's stateful flag; it
    computes what the Keras layer computes with return_sequences=True.
    Keras's dropout and recurrent_dropout act in training only and are
    not carried over.  Refused, naming the setting: another activation
    or recurrent activation than rnnfast's (tanh, sigmoid), go_backwards,
    a layer not built yet, weights that are not float32 or float64, or
    not finite."""
    kind = _keras_kind(layer)
    cell = _KERAS_LAYERS.get(kind) or _KERAS_CELLS[kind]
    step = layer if kind in _KERAS_CELLS else layer.cell
    if not layer.built:
        raise ValueError(f"layer: the {kind} is not built yet, so it has no weights; call "
                         f"it on data or build it (layer.build(input_shape)) first")
    activations = {"activation": ("tanh", "relu") if cell == "rnn" else ("tanh",)}
    if cell != "rnn":
        activations["recurrent_activation"] = ("sigmoid",)
    for name, allowed in activations.items():
        got = _activation_name(getattr(step, name))
        if got not in allowed:
            raise ValueError(f"layer: {name}={got!r} is not supported; rnnfast's {kind} "
                             f"uses {' or '.join(map(repr, allowed))}")
    if getattr(layer, "go_backwards", False):
        raise ValueError(f"layer: go_backwards=True is not supported (a {kind} reading the "
                         f"sequence backwards); reverse xs along the time axis instead")
    weights = [np.asarray(w) for w in step.get_weights()]
    names = ["kernel", "recurrent_kernel", "bias"][:len(weights)]
    for name, w in zip(names, weights):
        if w.dtype not in (np.float32, np.float64):
            raise TypeError(f"layer: expected float32 or float64 weights, got {name} of "
                            f"dtype {w.dtype} and shape {w.shape}")
        if not np.isfinite(w).all():
            raise ValueError(f"layer: {name} (shape {w.shape}) contains NaN or Inf")
    H = step.units
    G = N_GATES[cell] * H
    reset_after = cell == "gru" and bool(step.reset_after)
    expected = {"kernel": (weights[0].shape[0], G), "recurrent_kernel": (H, G),
                "bias": bias_shape(cell, H, reset_after)}
    for name, w in zip(names, weights):
        if w.shape != expected[name]:
            raise ValueError(f"layer: {name} has shape {w.shape}, expected "
                             f"{expected[name]} for a {kind}(units={H})")
    if len(weights) == 2:                           # use_bias=False: zeros
        weights.append(np.zeros(expected["bias"], weights[0].dtype))
    Wx, Wh, b = from_keras_weights(cell, *weights)
    options = {}
    if cell == "rnn":
        options["nonlinearity"] = _activation_name(step.activation)
    if cell == "gru":
        options["reset_after"] = reset_after
    if kind in _KERAS_CELLS:
        return _OUR_CELL[cell](Wx, Wh, b, **options)
    return _OUR_TIME_LAYER[cell](Wx, Wh, b, stateful=bool(layer.stateful), **options)


def to_keras_weights(layer):
    """[kernel, recurrent_kernel, bias] of an rnnfast cell or Time layer in
    Keras's layout, for `set_weights` of the Keras layer or cell of the
    same sizes (use_bias=True; a GRU's reset_after as the layer's)."""
    if not isinstance(layer, _OUR_STEP_CELLS + _OUR_TIME_LAYERS):
        raise TypeError(f"layer: expected an rnnfast.RNNCell, LSTMCell or GRUCell, or an "
                        f"rnnfast.TimeRNN, TimeLSTM or TimeGRU, got {type(layer).__name__} "
                        f"(a network's layers: TimeLSTM(*net.layer_params(layer, 0)) ...)")
    return _keras_arrays(layer.cell, *layer._live_params())


def to_keras(layer):
    """A new, built keras.layers.SimpleRNN, LSTM or GRU (return_sequences=True)
    holding an rnnfast Time layer's weights, or a Keras cell holding a
    cell's: from_keras' inverse, in the layer's dtype.  Needs Keras
    (imported here only).  A stateful layer gives a Keras layer with
    stateful=False: Keras's stateful layers need the batch size when built
    (build one with stateful=True and a batch_shape, then set_weights
    with to_keras_weights)."""
    weights = to_keras_weights(layer)           # checks the layer
    import keras
    options = dict(dtype=np.dtype(layer.dtype).name)
    if layer.cell == "rnn":
        options["activation"] = layer.nonlinearity
    if layer.cell == "gru":
        options["reset_after"] = layer.reset_after
    name = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}[layer.cell]
    if isinstance(layer, _OUR_STEP_CELLS):
        out = getattr(keras.layers, name + "Cell")(layer.hidden_size, **options)
        out.build((None, layer.input_size))
    else:
        out = getattr(keras.layers, name)(layer.hidden_size, return_sequences=True,
                                          **options)
        out.build((None, None, layer.input_size))
    out.set_weights(weights)
    return out
