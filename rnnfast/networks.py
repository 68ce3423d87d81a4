"""Stacked, optionally bidirectional recurrent networks with PyTorch-like
construction: rnnfast.RNN, rnnfast.LSTM, rnnfast.GRU.

Composition, not new kernels: each layer runs the one-direction kernel once
per direction (the reverse one with reverse=True, which handles each
sequence's own length inside the kernel), both writing into one (N, T, 2H)
output, forward half first; dropout sits between layers in training mode.

Parameters are [Wx, Wh, b] per layer and direction ([Wx, Wh] with
bias=False), in the order layer 0 forward, layer 0 reverse, layer 1
forward, ...  States follow PyTorch: h_n (num_layers * num_directions, N,
H), and (h_n, c_n) for LSTM.
"""
import numbers

import numpy as np

from ._core import network_backward, network_forward, network_forward_common, zero_state
from ._layout import N_GATES, bias_shape
from ._rnn import array_ready, arrays_ready
from ._validation import (check_array, check_int, check_lengths, check_live_arrays,
                          float_dtype)


def _rng(random_state):
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2 ** 31))
    if random_state is None or isinstance(random_state, numbers.Integral):
        return np.random.default_rng(random_state)
    raise TypeError(f"random_state: expected None, an int or a numpy Generator, "
                    f"got {random_state!r}")


class _Network:
    """What RNN, LSTM and GRU share (the module doc has the layout).

    forward(xs (N, T, input_size), state=None, lengths=None) -> (hs, final)
        hs (N, T, num_directions * hidden_size), forward half first;
        final h_n (num_layers * num_directions, N, hidden_size), or the
        pair (h_n, c_n) for LSTM.  state: the initial state in that layout
        (None: zeros, or the carried state when stateful).  lengths (N,):
        ints in 1..T; steps past a sequence's length leave its state as it
        was and output zeros.
    backward(dhs, dstate=None) -> dxs (N, T, input_size); fills grads and
        sets .dstate to dL/d(initial state).  One backward per training
        forward.
    params / grads: [Wx, Wh, b] per layer and direction (layer_params),
        every array ~ U(-1/sqrt(H), 1/sqrt(H)) at first, as PyTorch's.
    bias: False builds no biases, as torch's bias=False: params are then
        [Wx, Wh] per layer and direction, and the gates have no b.
    dropout: on the inputs of layers 2.. in training mode only.
    stateful: each forward starts from the previous one's final state
        (truncated BPTT) until reset_state().
    train() / eval(): evaluation mode applies no dropout and saves nothing
        for a backward.  dtype: np.float32 (default) or np.float64.
    random_state: None, an int, a numpy Generator or RandomState (weights
        and dropout masks; never numpy's global state).
    """
    _pack_epoch = 0     # inference's pack epoch (rnnfast._core.packs_kept), 0: none
    cell = None
    _has_c = False          # an LSTM's state is a pair (h, c)

    def __init__(self, input_size, hidden_size, num_layers=1, bidirectional=False,
                 dropout=0.0, stateful=False, dtype=np.float32, random_state=None,
                 bias=True, _relu=False, _reset_after=False):
        self.input_size = check_int(input_size, "input_size")
        self.hidden_size = check_int(hidden_size, "hidden_size")
        self.num_layers = check_int(num_layers, "num_layers")
        self.bidirectional = bool(bidirectional)
        if not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        self.stateful = bool(stateful)
        if not isinstance(bias, (bool, np.bool_)):
            # bool() would read "False" or 0.5 as True: no biases asked, biases built
            raise TypeError(f"bias: expected True or False, got {bias!r}")
        self.bias = bool(bias)
        self.dtype = float_dtype(dtype)
        self._relu, self._reset_after = _relu, _reset_after
        rng = _rng(random_state)
        # PyTorch's default: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H)).
        bound = 1.0 / np.sqrt(self.hidden_size)
        G = N_GATES[self.cell] * self.hidden_size
        b_shape = bias_shape(self.cell, self.hidden_size, _reset_after)
        self.params = []
        for layer in range(self.num_layers):
            d_in = self.input_size if layer == 0 else self.hidden_size * self.num_directions
            for _ in range(self.num_directions):
                for shape in ((d_in, G), (self.hidden_size, G), b_shape)[:self._per_direction]:
                    self.params.append(rng.uniform(-bound, bound, shape).astype(self.dtype))
        self.grads = [np.zeros_like(p) for p in self.params]
        # params and grads are public lists: kept to check them before each kernel.
        self._shapes = [p.shape for p in self.params]
        self._make_bias_stand_ins()
        self._dropout_rng = np.random.default_rng(rng.integers(2 ** 63))
        self.training = True
        self.state = None          # carried between forwards when stateful
        self.dstate = None
        self._caches = None

    def _make_bias_stand_ins(self):
        """Without biases the kernels still take one per direction: zeros,
        read-only, stand in for it, and a scratch array takes its gradient."""
        b_shape = bias_shape(self.cell, self.hidden_size, self._reset_after)
        directions = self.num_layers * self.num_directions
        self._zero_biases = [np.zeros(b_shape, self.dtype) for _ in range(directions)]
        for b in self._zero_biases:
            b.flags.writeable = False
        self._bias_grad_scratch = [np.zeros(b_shape, self.dtype) for _ in range(directions)]
        self._kernel_shapes = self._with_biases(self._shapes, [b_shape] * directions)

    def __setstate__(self, state):
        # pickle and deepcopy give writable copies of the read-only zero
        # biases (numpy keeps no writeable flag), and a network pickled
        # before bias=False existed has neither `bias` nor the stand-ins:
        # made anew here (they hold nothing but zeros).  A copy made inside
        # a packs_kept block is not in the block: its weights are others,
        # and may change.
        self.__dict__.update(state)
        self.__dict__.pop("_pack_epoch", None)
        self.__dict__.setdefault("bias", True)
        self._make_bias_stand_ins()

    # -------------------------------------------------------------- modes
    @property
    def num_directions(self):
        """2 when bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    def train(self, mode=True):
        """Training mode (mode=True, the default of a new network): dropout
        on, forward saves what backward needs.  Returns self."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Evaluation mode: no dropout, nothing saved for a backward.
        Returns self."""
        return self.train(False)

    def reset_state(self):
        """Forget the state a stateful network carries: the next forward
        starts from zeros."""
        self.state = None

    def layer_params(self, layer, direction=0):
        """[Wx, Wh, b] of one layer and direction ([Wx, Wh] with bias=False):
        the arrays of .params."""
        per = self._per_direction
        i = per * (layer * self.num_directions + direction)
        return self.params[i:i + per]

    @property
    def _per_direction(self):
        return 3 if self.bias else 2

    def _with_biases(self, arrays, biases):
        """The kernels' list, [Wx, Wh, b] per direction, from params or
        grads: `arrays` itself with biases, else with `biases` put in.  For
        a list of the wrong length, [None], which no check passes (so the
        forward's own checks then name the problem)."""
        if self.bias:
            return arrays
        if len(arrays) != 2 * len(biases):
            return [None]
        out = []
        for k, b in enumerate(biases):
            out += [arrays[2 * k], arrays[2 * k + 1], b]
        return out

    # -------------------------------------------------------------- checks
    def _check_layout(self, arrays, name):
        """The kernels index `arrays` ([Wx, Wh, b] per layer and direction)
        by num_layers and directions without a check: a list that does not
        fit (bias, num_layers or bidirectional set after construction) is
        refused here, not read out of bounds."""
        directions = 2 if self.bidirectional else 1
        if len(arrays) != 3 * self.num_layers * directions:
            raise ValueError(
                f"{type(self).__name__}.{name}: {len(self._shapes)} arrays do not fit "
                f"bias={self.bias}, num_layers={self.num_layers}, bidirectional="
                f"{self.bidirectional}; these are fixed when the network is built "
                f"(changed since?): build a new network")

    def _live_params(self):
        """params, checked as forward checks them: an array replaced by one
        of another shape, dtype or layout is refused, by name
        (rnnfast.interop reads them)."""
        check_live_arrays(self.params, lambda: self._param_names(""), self._shapes,
                          self.dtype, f"{type(self).__name__}.params")
        return self.params

    def _param_names(self, prefix):
        per = self._per_direction
        return [f"[{i}] ({prefix}{('Wx', 'Wh', 'b')[i % per]} of layer "
                f"{i // per // self.num_directions}"
                f"{', reverse' if (i // per) % self.num_directions else ''})"
                for i in range(len(self._shapes))]

    def _check_state(self, state, N, name="state"):
        shape = (self.num_layers * self.num_directions, N, self.hidden_size)
        if self._has_c:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise TypeError(f"{name}: an LSTM state is a pair (h, c), each of shape "
                                f"{shape}, got {type(state).__name__}")
            return (check_array(state[0], f"{name}[0] (h)", self.dtype, shape),
                    check_array(state[1], f"{name}[1] (c)", self.dtype, shape))
        return check_array(state, name, self.dtype, shape)

    # ------------------------------------------------------------ forward
    def forward(self, xs, state=None, lengths=None):
        """xs (N, T, input_size) -> (hs (N, T, num_directions*H), final state).

        In training the backward reads xs again (for dL/dWx): xs is kept
        by reference, not copied, so it must not be changed in place before
        `backward` (a float32 C-order xs is the caller's own array).
        lengths is copied."""
        training = self.training
        if (state is None and lengths is None and not self.stateful
                and not (training and self.dropout > 0)):
            # The common call: its checks, zero state and layers in one
            # compiled call; None when xs or params need the checks below
            # (a conversion, or the error's wording).
            # (the bias test inline: this call's fixed cost is ~2 us)
            done = network_forward_common(
                self.cell, xs, self.params if self.bias else
                self._with_biases(self.params, self._zero_biases),
                self._kernel_shapes, self.dtype, self.input_size,
                self.num_layers, 2 if self.bidirectional else 1, self.hidden_size,
                training, self._relu, self._reset_after, self._has_c, self._pack_epoch)
            if done is not None:
                x, final, caches, masks = done
                self._caches = (caches, masks, xs.shape) if training else None
                return x, final
        dtype = self.dtype
        # NaN and Inf in xs are refused by the kernel, which tests xs as it
        # projects it (so that a long xs is read from memory once): the
        # same ValueError, raised before anything of the call is kept.
        expected = ("N", "T", self.input_size)
        if not array_ready(xs, dtype, expected, True):      # check_array's compiled test
            xs = check_array(xs, "xs", dtype, expected, allow_nonfinite=True)
        N, T, _ = xs.shape
        lengths = check_lengths(lengths, N, T)
        params = self.params
        # The compiled test first: the names and the owner are only needed
        # to word an error, and building them is most of the check's cost.
        if not arrays_ready(params, self._shapes, dtype):
            check_live_arrays(params, lambda: self._param_names(""), self._shapes, dtype,
                              f"{type(self).__name__}.params")
        if not self.bias:
            params = self._with_biases(params, self._zero_biases)
        self._check_layout(params, "params")
        if state is None and self.stateful and self.state is not None:
            if self._state_batch(self.state) != N:
                raise ValueError(f"xs: this stateful network carries a state of batch "
                                 f"size {self._state_batch(self.state)}, got xs of shape "
                                 f"{xs.shape}; call reset_state() first")
            state = self.state
        # h_n, c_n: the kernels overwrite them with the final state, so they
        # are fresh arrays (a zero state needs no copy).  The property
        # num_directions is not read here: a call each, on every call.
        directions, has_c = 2 if self.bidirectional else 1, self._has_c
        if state is None:
            state = zero_state(self.num_layers * directions, N, self.hidden_size, dtype, has_c)
        else:
            state = self._check_state(state, N)
            state = (state[0].copy(), state[1].copy()) if has_c else state.copy()
        h_n, c_n = state if has_c else (state, None)
        mask = self._dropout_mask if training and self.dropout > 0 else None
        x, caches, masks = network_forward(self.cell, xs, params, h_n, c_n, lengths,
                                           self.num_layers, directions,
                                           self.hidden_size, training, self._relu,
                                           self._reset_after, mask, True,
                                           self._pack_epoch)
        final = (h_n, c_n) if has_c else h_n
        if self.stateful:
            self.state = final
        self._caches = (caches, masks, xs.shape) if training else None
        return x, final

    def _dropout_mask(self, x):
        """The inverted-dropout mask of a layer's input x (training)."""
        keep = 1.0 - self.dropout
        return (self._dropout_rng.random(x.shape) < keep).astype(self.dtype) / keep

    @staticmethod
    def _state_batch(state):
        return (state[0] if isinstance(state, tuple) else state).shape[1]

    # ----------------------------------------------------------- backward
    def backward(self, dhs, dstate=None):
        """dhs (N, T, num_directions*H) -> dxs (N, T, input_size); fills
        grads and sets .dstate to dL/d(initial state) in the state's layout.
        A dhs with a NaN or Inf is refused (ValueError) as the kernel reads
        it: grads and .dstate are then left as they were, and the forward
        is spent, as after any backward."""
        if self._caches is None:
            raise RuntimeError(f"{type(self).__name__}.backward needs a forward in "
                               "training mode first (and one backward per forward)")
        caches, masks, (N, T, _) = self._caches
        # Attributes, not the num_directions property: a call more on every
        # call (as in forward).
        H, dtype, grads, has_c = self.hidden_size, self.dtype, self.grads, self._has_c
        D = 2 if self.bidirectional else 1
        if not arrays_ready(grads, self._shapes, dtype, True):      # as in forward
            check_live_arrays(grads, lambda: self._param_names("d"), self._shapes, dtype,
                              f"{type(self).__name__}.grads", writable=True)
        expected = (N, T, D * H)
        # NaN and Inf: the kernel tests dhs as it reads it (check_dhs below).
        dout = dhs if array_ready(dhs, dtype, expected, True) else check_array(
            dhs, "dhs", dtype, expected, allow_nonfinite=True)
        if dstate is None:
            dstate = zero_state(self.num_layers * D, N, H, dtype, has_c)
        else:
            dstate = self._check_state(dstate, N, "dstate")
            dstate = (dstate[0].copy(), dstate[1].copy()) if has_c else dstate.copy()
        dh0, dc0 = dstate if has_c else (dstate, None)
        self._caches = None
        if not self.bias:
            grads = self._with_biases(grads, self._bias_grad_scratch)
        self._check_layout(grads, "grads")
        dxs = network_backward(caches, masks, dout, dh0, dc0, grads, self.input_size,
                               self.num_layers, D, H, True)
        self.dstate = (dh0, dc0) if has_c else dh0
        return dxs

    __call__ = forward

    def __repr__(self):
        # as PyTorch's: the sizes, then the options that differ from the defaults
        options = [("num_layers", self.num_layers)]
        for name, default in (("bidirectional", False), ("dropout", 0.0),
                              ("nonlinearity", "tanh"), ("stateful", False),
                              ("bias", True), ("reset_after", True)):
            value = getattr(self, name, default)
            if value != default:
                options.append((name, value))
        args = ", ".join(f"{k}={v!r}" for k, v in options)
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}, {args}, "
                f"dtype={self.dtype.name})")


class RNN(_Network):
    """RNN(input_size, hidden_size, num_layers=1, bidirectional=False,
    dropout=0.0, nonlinearity="tanh", stateful=False, dtype=np.float32,
    random_state=None, bias=True): Elman network, h' = tanh(x Wx + h Wh + b) ("relu":
    ReLU); torch.nn.RNN's arguments.  Forward, backward and the other
    arguments: see _Network (help(rnnfast.networks._Network))."""
    cell = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, bidirectional=False,
                 dropout=0.0, nonlinearity="tanh", stateful=False, dtype=np.float32,
                 random_state=None, bias=True):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dropout,
                         stateful, dtype, random_state, bias, _relu=nonlinearity == "relu")


class LSTM(_Network):
    """LSTM(input_size, hidden_size, num_layers=1, bidirectional=False,
    dropout=0.0, stateful=False, dtype=np.float32, random_state=None,
    bias=True): gates f, g, i, o (rnnfast._layout); states are pairs (h_n, c_n).
    Forward, backward and the arguments: see _Network
    (help(rnnfast.networks._Network))."""
    cell = "lstm"
    _has_c = True

    def __init__(self, input_size, hidden_size, num_layers=1, bidirectional=False,
                 dropout=0.0, stateful=False, dtype=np.float32, random_state=None,
                 bias=True):
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dropout,
                         stateful, dtype, random_state, bias)


class GRU(_Network):
    """GRU(input_size, hidden_size, num_layers=1, bidirectional=False,
    dropout=0.0, stateful=False, dtype=np.float32, random_state=None,
    reset_after=True, bias=True): gates z, r, h~.  reset_after=True is PyTorch's and
    cuDNN's variant (b (2, 3H): input row, recurrent row); False the
    textbook's (b (3H,)).  Forward, backward and the other arguments: see
    _Network (help(rnnfast.networks._Network))."""
    cell = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, bidirectional=False,
                 dropout=0.0, stateful=False, dtype=np.float32, random_state=None,
                 reset_after=True, bias=True):
        self.reset_after = bool(reset_after)
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dropout,
                         stateful, dtype, random_state, bias,
                         _reset_after=self.reset_after)
