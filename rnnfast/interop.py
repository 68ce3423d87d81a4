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
# what a stack of recurrent layers comes in (-> an rnnfast network)
_KERAS_WRAPPERS = {"Bidirectional": None, "Sequential": None, "Functional": None}
_OUR_TIME_LAYER = {"rnn": TimeRNN, "lstm": TimeLSTM, "gru": TimeGRU}
_OUR_CELL = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
_OUR_NETWORK = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
_KERAS_NAME = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}
_KERAS_EXPECTED = ("keras.layers.SimpleRNN, LSTM or GRU (or keras.layers.RNN of one "
                   "SimpleRNNCell, LSTMCell or GRUCell), keras.layers.SimpleRNNCell, "
                   "LSTMCell or GRUCell, keras.layers.Bidirectional of one of the first, "
                   "or a keras.Sequential (or functional keras.Model) of them")


def _keras_kind(layer, argname="layer"):
    """The name of the Keras class among _KERAS_LAYERS, _KERAS_CELLS and
    _KERAS_WRAPPERS that `layer` is; a keras.layers.RNN of one cell reads
    as the layer of that cell (RNN(LSTMCell(...)) as an LSTM: the same
    weights, the same step)."""
    kind = _class_among(layer, "keras", {**_KERAS_LAYERS, **_KERAS_CELLS, **_KERAS_WRAPPERS,
                                         "RNN": None}, argname, _KERAS_EXPECTED)
    if kind != "RNN":
        return kind
    inner = _class_among(layer.cell, "keras", _KERAS_CELLS, f"{argname}.cell",
                         "one keras.layers.SimpleRNNCell, LSTMCell or GRUCell (a stack of "
                         "cells: a Sequential of layers)")
    return _KERAS_NAME[_KERAS_CELLS[inner]]


def _activation_name(fn):
    return getattr(fn, "__name__", repr(fn))


def _keras_step(layer, kind, argname):
    """What rnnfast needs of one built Keras recurrent layer or cell, checked:
    (cell, options, use_bias, (Wx, Wh, b) in rnnfast's layout)."""
    cell = _KERAS_LAYERS.get(kind) or _KERAS_CELLS[kind]
    step = layer if kind in _KERAS_CELLS else layer.cell
    if not layer.built:
        raise ValueError(f"{argname}: the {kind} is not built yet, so it has no weights; "
                         f"call it on data or build it (.build(input_shape)) first")
    activations = {"activation": ("tanh", "relu") if cell == "rnn" else ("tanh",)}
    if cell != "rnn":
        activations["recurrent_activation"] = ("sigmoid",)
    for name, allowed in activations.items():
        got = _activation_name(getattr(step, name))
        if got not in allowed:
            raise ValueError(f"{argname}: {name}={got!r} is not supported; rnnfast's {kind} "
                             f"uses {' or '.join(map(repr, allowed))}")
    weights = [np.asarray(w) for w in step.get_weights()]
    names = ["kernel", "recurrent_kernel", "bias"][:len(weights)]
    for name, w in zip(names, weights):
        if w.dtype not in (np.float32, np.float64):
            raise TypeError(f"{argname}: expected float32 or float64 weights, got {name} of "
                            f"dtype {w.dtype} and shape {w.shape}")
        if not np.isfinite(w).all():
            raise ValueError(f"{argname}: {name} (shape {w.shape}) contains NaN or Inf")
    H = step.units
    G = N_GATES[cell] * H
    reset_after = cell == "gru" and bool(step.reset_after)
    expected = {"kernel": (weights[0].shape[0], G), "recurrent_kernel": (H, G),
                "bias": bias_shape(cell, H, reset_after)}
    for name, w in zip(names, weights):
        if w.shape != expected[name]:
            raise ValueError(f"{argname}: {name} has shape {w.shape}, expected "
                             f"{expected[name]} for a {kind}(units={H})")
    use_bias = len(weights) == 3
    if not use_bias:                                # the zeros the kernels then run with
        weights.append(np.zeros(expected["bias"], weights[0].dtype))
    options = {}
    if cell == "rnn":
        options["nonlinearity"] = _activation_name(step.activation)
    if cell == "gru":
        options["reset_after"] = reset_after
    return cell, options, use_bias, from_keras_weights(cell, *weights)


def _keras_directions(layer, kind, argname):
    """[(cell, options, use_bias, weights, stateful)] of a recurrent layer
    (one direction) or a Bidirectional (forward, then backward)."""
    if kind in _KERAS_LAYERS:
        if getattr(layer, "go_backwards", False):
            raise ValueError(f"{argname}: go_backwards=True is not supported (a {kind} "
                             f"reading the sequence backwards alone); reverse xs along the "
                             f"time axis, or use keras.layers.Bidirectional")
        return [_keras_step(layer, kind, argname) + (bool(layer.stateful),)]
    if layer.merge_mode != "concat":
        raise ValueError(f"{argname}: a Bidirectional with merge_mode={layer.merge_mode!r} is "
                         f"not supported; rnnfast concatenates the directions (merge_mode="
                         f"'concat', forward half first)")
    out = []
    for which, backwards in (("forward_layer", False), ("backward_layer", True)):
        sub = getattr(layer, which)
        sub_kind = _keras_kind(sub, f"{argname}.{which}")
        if sub_kind not in _KERAS_LAYERS or bool(sub.go_backwards) != backwards:
            raise ValueError(f"{argname}.{which}: expected a SimpleRNN, LSTM or GRU with "
                             f"go_backwards={backwards}, got a {sub_kind} with "
                             f"go_backwards={getattr(sub, 'go_backwards', None)}")
        out.append(_keras_step(sub, sub_kind, f"{argname}.{which}")
                   + (bool(sub.stateful),))
    return out


def _network_from_keras(layers, dropout, argname):
    """An rnnfast network from [(the directions of each layer)]; every
    layer and direction must be of one cell, options and use_bias."""
    def settings(direction, n_directions):
        cell, options, use_bias, (_, Wh, _), stateful = direction
        return dict(cell=cell, units=Wh.shape[0], dtype=Wh.dtype.name,
                    directions=n_directions, use_bias=use_bias, stateful=stateful, **options)
    first = settings(layers[0][0], len(layers[0]))
    for i, directions in enumerate(layers):
        for d, direction in enumerate(directions):
            these = settings(direction, len(directions))
            if these != first:
                raise ValueError(
                    f"{argname}: an rnnfast network has one cell, size and set of options "
                    f"for all its layers; layer {i} (direction {d}) has {these}, layer 0 "
                    f"{first}")
    cell, options, use_bias, (Wx, Wh, _), stateful = layers[0][0]
    net = _OUR_NETWORK[cell](Wx.shape[0], Wh.shape[0], num_layers=len(layers),
                             bidirectional=len(layers[0]) == 2, dropout=dropout,
                             stateful=stateful, dtype=Wx.dtype, bias=use_bias, **options)
    for i, directions in enumerate(layers):
        for d, (*_, weights, _) in enumerate(directions):
            targets = net.layer_params(i, d)
            if targets[0].shape != weights[0].shape:
                raise ValueError(f"{argname}: layer {i} has a kernel of shape "
                                 f"{weights[0].shape}; after layer {i - 1}, an rnnfast "
                                 f"network's layer {i} takes {targets[0].shape}")
            # zip: without biases layer_params is [Wx, Wh] (b is then zero)
            for target, value in zip(targets, weights):
                target[...] = value
    return net


def _keras_name(obj):
    """The class name of a Keras object (its first class from keras), or None."""
    for c in type(obj).__mro__:
        if c.__module__.startswith("keras"):
            return c.__name__
    return None


def _functional_chain(model, argname):
    """[(index in model.layers, layer)] of a functional keras.Model that is
    a chain: one input, one output, each layer called once, on the
    previous layer's output (what a Sequential is); ValueError otherwise."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"{argname}: a functional Model of {len(model.inputs)} inputs and "
                         f"{len(model.outputs)} outputs; rnnfast converts a chain of layers "
                         f"from one input to one output")
    chain, tensor = [], model.outputs[0]
    while tensor is not model.inputs[0]:
        layer, node_index = tensor._keras_history[:2]
        node = layer._inbound_nodes[node_index]
        if _keras_name(layer) == "InputLayer" or len(node.input_tensors) != 1 \
                or len(node.output_tensors) != 1:
            raise ValueError(f"{argname}: its {_keras_name(layer)} {layer.name!r} takes "
                             f"{len(node.input_tensors)} inputs and gives "
                             f"{len(node.output_tensors)} outputs; rnnfast converts a chain "
                             f"of layers, each on the previous layer's output")
        chain.append(layer)
        tensor = node.input_tensors[0]
    chain.reverse()
    layers = [sub for sub in model.layers if _keras_name(sub) != "InputLayer"]
    if len(chain) != len(layers) or any(a is not b for a, b in zip(chain, layers)):
        raise ValueError(f"{argname}: its layers {[sub.name for sub in layers]} are not one "
                         f"chain from its input to its output (the chain is "
                         f"{[sub.name for sub in chain]})")
    return [(model.layers.index(sub), sub) for sub in chain]


def _parse_sequential(model, argname):
    """What a keras.Sequential (or a functional keras.Model of a chain of
    layers) holds, in rnnfast's terms:
    (embedding weights (V, E) or None, [the directions of each recurrent
    layer], the dropout rate, the Dense layer or None, whether the last
    recurrent layer returns sequences).  Recurrent layers (Bidirectional
    or not), one Dropout at most in each gap between them and before the
    Dense, all of one rate (a gap without one is rate 0), an Embedding
    first and a Dense last optionally."""
    items = (_functional_chain(model, argname) if _keras_name(model) == "Functional"
             else list(enumerate(model.layers)))
    for i, sub in items:
        if not sub.built:
            raise ValueError(f"{argname}.layers[{i}]: the {_keras_name(sub)} is not built yet, "
                             f"so it has no weights; build the model (keras.Input first, or "
                             f"call it on data) first")
    embedding = dense = None
    masking = {}                # a sequence model's mask_zero or mask_value
    if items and _keras_name(items[0][1]) == "Embedding":
        i, sub = items.pop(0)
        if getattr(sub, "mask_zero", False):
            masking = dict(mask_zero=True)
        (embedding,) = [np.asarray(w) for w in sub.get_weights()]
    elif items and _keras_name(items[0][1]) == "Masking":
        i, sub = items.pop(0)
        value = float(sub.mask_value)
        if not np.isfinite(value):
            # Keras compares x != mask_value: a NaN masks no step, and an
            # Inf only steps of Infs, which rnnfast's inputs never hold
            raise ValueError(f"{argname}.layers[{i}]: a Masking of mask_value={value}; "
                             f"rnnfast's features are finite, so it reads a finite "
                             f"mask_value only (a NaN one masks no step in Keras: drop "
                             f"the layer)")
        masking = dict(mask_value=value)
    if items and _keras_name(items[-1][1]) == "Dense":
        dense = items.pop()[1]
    elif (items and _keras_name(items[-1][1]) == "TimeDistributed"
          and _keras_name(items[-1][1].layer) == "Dense"):
        dense = items.pop()[1].layer    # what a Dense on (N, T, F) does in Keras 3 too
    layers, gaps, pending = [], [], None
    for i, sub in items:
        name = f"{argname}.layers[{i}]"
        if _keras_name(sub) == "Dropout":
            if not layers or pending is not None:
                raise ValueError(f"{name}: a Dropout at position {i}; rnnfast drops out "
                                 f"only between recurrent layers and before the output layer, "
                                 f"once in each gap")
            pending = float(sub.rate)
            continue
        if _keras_name(sub) == "Masking":
            raise ValueError(f"{name}: a Masking at position {i}; rnnfast reads a Masking "
                             f"layer only first, on the model's float features")
        kind = _keras_kind(sub, name)
        if kind not in _KERAS_LAYERS and kind != "Bidirectional":
            raise ValueError(f"{name}: a {kind} in a Sequential; expected an Embedding "
                             f"first, SimpleRNN, LSTM or GRU layers (Bidirectional or not) "
                             f"with Dropout between them, and a Dense last")
        if layers:              # (Keras builds no stack on a layer returning one step)
            gaps.append(pending or 0.0)
            pending = None
        returns_sequences = bool(sub.return_sequences)
        layers.append(_keras_directions(sub, kind, name))
    if not layers:
        raise ValueError(f"{argname}: the Sequential holds no recurrent layer")
    if dense is None and pending is not None:
        raise ValueError(f"{argname}: a Dropout after the last layer; rnnfast drops out "
                         f"only between recurrent layers and before the output layer")
    if dense is not None:
        gaps.append(pending or 0.0)
    if len(set(gaps)) > 1:
        raise ValueError(f"{argname}: dropout rates {gaps} between the layers (0.0 where "
                         f"there is no Dropout); rnnfast has one rate for every gap")
    return embedding, masking, layers, gaps[0] if gaps else 0.0, dense, returns_sequences


def _model_from_keras(embedding, masking, layers, dropout, dense, returns_sequences,
                      argname):
    """An rnnfast SequenceClassifier (a Dense with softmax, or a sigmoid
    Dense of one unit: two classes) or SequenceRegressor (a linear Dense)
    holding a Keras model's weights; a SequenceTagger when the last
    recurrent layer returns sequences (a softmax or one-unit sigmoid Dense
    on every step).  An Embedding's mask_zero=True gives the model's
    mask_zero=True, a Masking layer first its mask_value (`masking`)."""
    from .models import SequenceClassifier, SequenceRegressor, SequenceTagger
    activation = _activation_name(dense.activation)
    if returns_sequences:
        heads = {"softmax": SequenceTagger, "sigmoid": SequenceTagger}
        if activation not in heads:
            raise ValueError(f"{argname}: the last recurrent layer has return_sequences=True "
                             f"and the Dense activation={activation!r}; rnnfast converts a "
                             f"tagger of every step (a softmax Dense, or a sigmoid one of "
                             f"one unit: SequenceTagger) and many-to-one models "
                             f"(return_sequences=False before the Dense)")
    else:
        heads = {"softmax": SequenceClassifier, "sigmoid": SequenceClassifier,
                 "linear": SequenceRegressor}
    if activation not in heads:
        raise ValueError(f"{argname}: a Dense with activation={activation!r}; expected "
                         f"'softmax' or a one-unit 'sigmoid' (a classifier) or 'linear' (a "
                         f"regressor)")
    net = _network_from_keras(layers, dropout, argname)
    defaults = dict(nonlinearity="tanh", reset_after=True, bias=True, stateful=False)
    for name, value in defaults.items():
        if getattr(net, name, value) != value:
            raise ValueError(f"{argname}: rnnfast's sequence models use {name}={value!r}; "
                             f"the recurrent layers have {name}={getattr(net, name)!r}")
    kernel, *bias = [np.asarray(w) for w in dense.get_weights()]
    for what, w in (("the Embedding's weights", embedding), ("the Dense's kernel", kernel)):
        if w is not None and w.dtype != net.dtype:
            raise TypeError(f"{argname}: {what} are {w.dtype} and the recurrent layers' "
                            f"{np.dtype(net.dtype).name}; an rnnfast model has one dtype")
    F = net.num_directions * net.hidden_size
    if kernel.shape[0] != F:
        raise ValueError(f"{argname}: the Dense has a kernel of shape {kernel.shape}; after "
                         f"the recurrent layers it takes {F} features")
    n_out = kernel.shape[1]
    if activation == "softmax" and n_out < 2:
        what = "tagger needs 2 tags" if returns_sequences else "classifier needs 2 classes"
        raise ValueError(f"{argname}: a softmax Dense of {n_out} unit; a {what} or more")
    if activation == "sigmoid" and n_out != 1:
        raise ValueError(f"{argname}: a sigmoid Dense of {n_out} units (independent labels); "
                         f"rnnfast converts a sigmoid Dense of one unit (two classes) and "
                         f"softmax ones")
    inputs = (dict(input_size=net.input_size) if embedding is None else
              dict(vocab_size=embedding.shape[0], embedding_size=embedding.shape[1]))
    n_head = 2 if activation == "sigmoid" else n_out
    inputs.update(masking)
    model = heads[activation](n_head, cell=net.cell, hidden_size=net.hidden_size,
                              num_layers=net.num_layers, bidirectional=net.bidirectional,
                              dropout=dropout, dtype=net.dtype, **inputs)
    for ours, theirs in zip(model.network.params, net.params):
        ours[...] = theirs
    if embedding is not None:
        if not np.isfinite(embedding).all():
            raise ValueError(f"{argname}: the Embedding's weights contain NaN or Inf")
        model.embed.params[0][...] = embedding
    bias = bias[0] if bias else np.zeros(n_out, kernel.dtype)
    if not (np.isfinite(kernel).all() and np.isfinite(bias).all()):
        raise ValueError(f"{argname}: the Dense's weights contain NaN or Inf")
    if activation == "sigmoid":
        # sigmoid(z) is softmax([0, z])'s second entry: class 0 scores 0
        kernel = np.concatenate([np.zeros_like(kernel), kernel], axis=1)
        bias = np.concatenate([np.zeros_like(bias), bias])
    model.affine.params[0][...] = kernel
    model.affine.params[1][...] = bias
    return model.eval()


def from_keras(layer):
    """rnnfast's counterpart of a built Keras recurrent layer, with its
    weights:

    - keras.layers.SimpleRNN, LSTM or GRU, or keras.layers.RNN of one
      of their cells -> an rnnfast Time layer (TimeRNN, TimeLSTM,
      TimeGRU; the layer's stateful flag kept);
    - keras.layers.SimpleRNNCell, LSTMCell or GRUCell -> an rnnfast cell;
    - keras.layers.Bidirectional(LSTM(...)) (merge_mode='concat'), or a
      keras.Sequential of such layers with Dropout layers between them ->
      an rnnfast network (RNN, LSTM, GRU; bidirectional, num_layers,
      dropout and bias as given);
    - a keras.Sequential of an Embedding (optional), such layers, the
      last with return_sequences=False, and a Dense last -> an rnnfast
      SequenceClassifier (the Dense's activation 'softmax': predict_proba
      gives what Keras predicts; or 'sigmoid' of one unit: two classes,
      predict_proba[:, 1] is what Keras predicts) or SequenceRegressor
      ('linear'), in evaluation mode; one dropout rate in every gap (0
      where Keras has no Dropout); the Embedding's mask_zero=True gives
      the model's mask_zero=True (id 0 is padding wherever it lies), a
      Masking layer first (float features) its mask_value;
    - the same with the last recurrent layer's return_sequences=True and
      a softmax Dense (or TimeDistributed(Dense)) scoring every step ->
      an rnnfast SequenceTagger (predict_proba (N, T, n_tags); behind
      Keras's masking, a masked step's too, as Keras gives it);
    - a functional keras.Model whose layers are such a chain (one input,
      each layer called once on the previous one's output) -> as the
      Sequential of those layers.

    The result takes the weights' dtype (float32 or float64), GRU's
    reset_after and SimpleRNN's activation (tanh or relu), and computes what
    the Keras layer computes with return_sequences=True.  Keras's dropout
    and recurrent_dropout inside a layer act in training only and are not
    carried over.  Refused, naming the setting: another activation or
    recurrent activation than rnnfast's (tanh, sigmoid), go_backwards
    outside a Bidirectional, another merge_mode, a layer not built yet,
    weights that are not float32 or float64, or not finite, layers of a
    Sequential that differ in cell or options, a functional Model that is
    not one chain of layers, a sigmoid Dense of several units, and a
    Masking layer elsewhere than first or with no Dense."""
    kind = _keras_kind(layer)
    if kind in ("Sequential", "Functional"):
        embedding, masking, layers, dropout, dense, returns_sequences = _parse_sequential(
            layer, "layer")
        if dense is not None:
            return _model_from_keras(embedding, masking, layers, dropout, dense,
                                     returns_sequences, "layer")
        if "mask_value" in masking:
            raise ValueError(f"layer: a {kind} with a Masking layer and no Dense; rnnfast "
                             f"masks padding in a sequence model (a Dense last), a network "
                             f"takes lengths")
        if embedding is not None:
            raise ValueError(f"layer: a {kind} with an Embedding and no Dense; rnnfast "
                             f"converts an Embedding as part of a sequence model (a Dense "
                             f"last)")
        return _network_from_keras(layers, dropout, "layer")
    if kind == "Bidirectional":
        return _network_from_keras([_keras_directions(layer, kind, "layer")], 0.0, "layer")
    if kind in _KERAS_CELLS:
        cell, options, _, weights = _keras_step(layer, kind, "layer")
        return _OUR_CELL[cell](*weights, **options)
    (cell, options, _, weights, stateful), = _keras_directions(layer, kind, "layer")
    return _OUR_TIME_LAYER[cell](*weights, stateful=stateful, **options)


def to_keras_weights(layer):
    """[kernel, recurrent_kernel, bias] of an rnnfast cell or Time layer in
    Keras's layout, for `set_weights` of the Keras layer or cell of the
    same sizes (use_bias=True; a GRU's reset_after as the layer's)."""
    if not isinstance(layer, _OUR_STEP_CELLS + _OUR_TIME_LAYERS):
        raise TypeError(f"layer: expected an rnnfast.RNNCell, LSTMCell or GRUCell, or an "
                        f"rnnfast.TimeRNN, TimeLSTM or TimeGRU, got {type(layer).__name__} "
                        f"(a network goes whole through to_keras)")
    return _keras_arrays(layer.cell, *layer._live_params())


def _keras_options(obj):
    options = dict(dtype=np.dtype(obj.dtype).name)
    if obj.cell == "rnn":
        options["activation"] = obj.nonlinearity
    if obj.cell == "gru":
        options["reset_after"] = obj.reset_after
    return options


def _is_sequence_model(obj):
    from .models import SequenceClassifier, SequenceRegressor, SequenceTagger
    return type(obj) in (SequenceClassifier, SequenceRegressor, SequenceTagger)


def _recurrent_keras_layers(net, keras, last_returns_sequences=True):
    """The Keras layers of `net`'s layers, Dropout between them."""
    options = _keras_options(net)
    cls = getattr(keras.layers, _KERAS_NAME[net.cell])
    layers = []
    for i in range(net.num_layers):
        if i and net.dropout:
            layers.append(keras.layers.Dropout(net.dropout, dtype=options["dtype"]))
        sequences = last_returns_sequences or i < net.num_layers - 1
        one = cls(net.hidden_size, return_sequences=sequences, use_bias=net.bias, **options)
        layers.append(keras.layers.Bidirectional(one, dtype=options["dtype"])
                      if net.bidirectional else one)
    return layers


def _set_recurrent_weights(net, model):
    """Copy `net`'s weights into the recurrent layers of a Sequential."""
    recurrent = [m for m in model.layers
                 if _keras_name(m) in ("Bidirectional",) + tuple(_KERAS_LAYERS)]
    for i, m in enumerate(recurrent):
        parts = ([m.forward_layer, m.backward_layer] if net.bidirectional else [m])
        for d, part in enumerate(parts):
            Wx, Wh, *b = net.layer_params(i, d)
            zeros = [np.zeros(bias_shape(net.cell, net.hidden_size,
                                         getattr(net, "reset_after", False)), Wh.dtype)]
            arrays = _keras_arrays(net.cell, Wx, Wh, *(b or zeros))
            part.set_weights(arrays if net.bias else arrays[:2])


def _network_to_keras(net, keras):
    """A keras.Sequential computing `net`'s outputs hs (N, T, H or 2H)."""
    net._live_params()                  # a replaced array is refused, not exported
    dtype = np.dtype(net.dtype).name
    model = keras.Sequential([keras.Input((None, net.input_size), dtype=dtype)]
                             + _recurrent_keras_layers(net, keras))
    _set_recurrent_weights(net, model)
    return model


def _model_to_keras(model, keras):
    """A keras.Sequential predicting what a SequenceClassifier's or
    SequenceTagger's predict_proba (or a SequenceRegressor's
    predict_scores) gives."""
    from . import io
    from .models import SequenceRegressor, SequenceTagger
    # the check io.save makes: params of the shapes and dtype the model was
    # built with, finite (a replaced array is refused by name, not exported)
    specs = io._rebuilt_param_specs(type(model), io.get_config(model))
    why = io._params_problem(model.params, [f"params[{i}]" for i in range(len(model.params))],
                             specs, type(model).__name__)
    if why is not None:
        raise ValueError(f"layer: {why}")
    net = model.network
    net._live_params()
    # as io.save, from model.params: [embedding,] the network's, W, b
    embedding = model.params[0] if model.embed is not None else None
    W, b = model.params[-2:]
    dtype = np.dtype(model.dtype).name
    if embedding is None:
        layers = [keras.Input((None, net.input_size), dtype=dtype)]
        if model.mask_value is not None:
            layers.append(keras.layers.Masking(model.mask_value, dtype=dtype))
    else:
        V, E = embedding.shape
        layers = [keras.Input((None,), dtype="int64"),
                  keras.layers.Embedding(V, E, mask_zero=model.mask_zero, dtype=dtype)]
    # a tagger scores every step: its Dense acts on (N, T, F)
    layers += _recurrent_keras_layers(net, keras, last_returns_sequences=isinstance(
        model, SequenceTagger))
    if net.dropout:
        layers.append(keras.layers.Dropout(net.dropout, dtype=dtype))
    activation = "linear" if isinstance(model, SequenceRegressor) else "softmax"
    layers.append(keras.layers.Dense(W.shape[1], activation=activation, dtype=dtype))
    out = keras.Sequential(layers)
    _set_recurrent_weights(net, out)
    if embedding is not None:
        out.layers[0].set_weights([embedding])
    out.layers[-1].set_weights([W, b])
    return out


def to_keras(layer):
    """Keras's counterpart of an rnnfast object, built and holding its
    weights (from_keras' inverse, in its dtype; needs Keras, imported here
    only):

    - a Time layer -> keras.layers.SimpleRNN, LSTM or GRU
      (return_sequences=True);
    - a cell -> keras.layers.SimpleRNNCell, LSTMCell or GRUCell;
    - a network -> a keras.Sequential of its layers (each wrapped in
      Bidirectional when it is bidirectional, Dropout layers between them
      when it has dropout), computing its outputs hs;
    - a SequenceClassifier, SequenceTagger or SequenceRegressor -> a
      keras.Sequential (Embedding for token ids, its layers, Dropout, a
      Dense with softmax or linear; a tagger's last layer returns
      sequences) predicting what its predict_proba or predict_scores give.

    A stateful layer or network gives Keras layers with stateful=False:
    Keras's stateful layers need the batch size when built (build one
    with stateful=True and a batch_shape, then set_weights with
    to_keras_weights)."""
    if isinstance(layer, (RNN, LSTM, GRU)):
        import keras
        return _network_to_keras(layer, keras)
    if _is_sequence_model(layer):
        import keras
        return _model_to_keras(layer, keras)
    if not isinstance(layer, _OUR_STEP_CELLS + _OUR_TIME_LAYERS):
        raise TypeError(f"layer: expected an rnnfast cell, Time layer, network (RNN, LSTM, "
                        f"GRU), SequenceClassifier, SequenceTagger or SequenceRegressor, "
                        f"got {type(layer).__name__}")
    weights = to_keras_weights(layer)           # checks the layer
    import keras
    options = _keras_options(layer)
    name = _KERAS_NAME[layer.cell]
    if isinstance(layer, _OUR_STEP_CELLS):
        out = getattr(keras.layers, name + "Cell")(layer.hidden_size, **options)
        out.build((None, layer.input_size))
    else:
        out = getattr(keras.layers, name)(layer.hidden_size, return_sequences=True,
                                          **options)
        out.build((None, None, layer.input_size))
    out.set_weights(weights)
    return out
