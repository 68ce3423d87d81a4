"""Cells (one time step) and Time layers (a whole sequence) for RNN, LSTM
and GRU, with the textbook layer protocol: `params` = [Wx, Wh, b] updated in
place by optimizers, `grads` of the same shapes overwritten by `backward`.

Both kinds run the same whole-sequence kernel (a cell is a sequence of one
step), through rnnfast._core.  Shapes and gate order: rnnfast._layout.
"""
import numpy as np

from .. import _core
from .._layout import N_GATES, bias_shape
from .._repr import weights_repr
from .._rnn import arrays_ready
from .._validation import check_array, check_lengths, check_live_arrays
from ._common import no_forward, sizes_from_config


def _weights_dtype(**arrays):
    """The dtype a layer takes from the weights it is given."""
    kinds = []
    for name, a in arrays.items():
        try:
            a = np.asarray(a)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name}: expected an array of real numbers, got "
                            f"{type(a).__name__} that is not one ({exc})") from exc
        if a.dtype.kind not in "fiub":
            raise TypeError(f"{name}: expected real numbers (float, int or bool), got "
                            f"dtype {a.dtype} (shape {a.shape})")
        kinds.append(a.dtype)
    if all(dt.kind == "f" for dt in kinds):
        dt = np.result_type(*kinds)
        return np.dtype(np.float64) if dt.itemsize > 4 else np.dtype(np.float32)
    return np.dtype(np.float64)


def _as_params(cell, Wx, Wh, b, reset_after=False):
    """[Wx, Wh, b] checked; the very arrays given when they already are
    C-contiguous floats of the layer's dtype, so shared weights stay shared."""
    dt = _weights_dtype(Wx=Wx, Wh=Wh, b=b)
    Wh = check_array(Wh, "Wh", dt, ("H", "G*H"))
    H = Wh.shape[0]
    G = N_GATES[cell] * H
    if Wh.shape[1] != G:
        raise ValueError(f"Wh: expected shape ({H}, {G}) for a {cell.upper()} with "
                         f"H={H} ({N_GATES[cell]} gate blocks), got shape {Wh.shape}")
    Wx = check_array(Wx, "Wx", dt, ("D", G))
    # As for the networks (input_size, hidden_size >= 1): the kernels take
    # the address of each buffer's first element.
    if H == 0 or Wx.shape[0] == 0:
        raise ValueError(f"Wx, Wh: input size D and hidden size H must be >= 1, got Wx "
                         f"of shape {Wx.shape} and Wh of shape {Wh.shape}")
    b = check_array(b, "b", dt, bias_shape(cell, H, reset_after))
    return [Wx, Wh, b]


class _Recurrent:
    """What cells and Time layers share: parameters, options, checks."""
    cell = None
    _pack_epoch = 0     # inference's pack epoch (rnnfast._core.packs_kept), 0: none

    def __init__(self, Wx, Wh, b, relu=False, reset_after=False):
        self.params = _as_params(self.cell, Wx, Wh, b, reset_after)
        self.grads = [np.zeros_like(p) for p in self.params]
        # params and grads are public lists: kept to check them before each kernel.
        self._dtype = self.params[0].dtype
        self._shapes = [p.shape for p in self.params]
        self._relu = relu
        self._reset_after = reset_after
        self._cache = None
        self.training = True

    def __setstate__(self, state):
        # pickle and deepcopy: a copy made inside a packs_kept block is not
        # in the block (its weights are others, and may change).
        self.__dict__.update(state)
        self.__dict__.pop("_pack_epoch", None)

    def __repr__(self):
        options = [("stateful", True)] if getattr(self, "stateful", False) else []
        if self.cell == "rnn" and self._relu:
            options.append(("nonlinearity", "relu"))
        if self.cell == "gru" and self._reset_after:
            options.append(("reset_after", True))
        # the sizes the layer was built with, as its checks use them
        return weights_repr(self, lambda s: (s.input_size, s.hidden_size), options)

    # As a network's (rnnfast.networks): in evaluation mode forward saves
    # nothing for a backward and runs the kernels' inference, straight from
    # the layer into the kernel's run (docs/performance.md item 98).
    def train(self, mode=True):
        """Training mode (mode=True, the default of a new layer): forward
        saves what backward needs.  Returns self."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Evaluation mode: forward runs inference and saves nothing, so
        backward raises until a forward in training mode.  Returns self."""
        return self.train(False)

    def _no_forward(self):
        """The error of a backward with no forward's activations to read."""
        if not self.training:
            return RuntimeError(f"{type(self).__name__}.backward: the layer is in evaluation "
                                "mode, whose forward saves nothing for a backward; call "
                                "train() before the forward")
        return no_forward(self)

    @property
    def dtype(self):
        """float32 or float64, from the weights given (float64 unless all
        are floats of at most 4 bytes)."""
        return self._dtype

    def _options(self):
        """The constructor's keyword arguments of this layer's options."""
        options = {}
        if self.cell == "rnn":
            options["nonlinearity"] = self.nonlinearity
        if self.cell == "gru":
            options["reset_after"] = self.reset_after
        if hasattr(self, "stateful"):
            options["stateful"] = self.stateful
        return options

    def get_config(self):
        """Sizes, dtype and options as a JSON-able dict: what rnnfast.io.save
        stores beside `params`, and `from_config` rebuilds.  A stateful
        Time layer's carried state (.h, .c) is not part of it, as PyTorch's
        state_dict holds no hidden state: a loaded layer starts from zeros."""
        return dict(input_size=self.input_size, hidden_size=self.hidden_size,
                    dtype=self._dtype.name, **self._options())

    @classmethod
    def from_config(cls, config):
        """A layer of `config`'s sizes, dtype and options (get_config's
        keys) with zero weights, for rnnfast.io.load to copy params into."""
        (D, H), dtype, options = sizes_from_config(cls, config, ("input_size", "hidden_size"))
        reset_after = options.get("reset_after", False)
        if not isinstance(reset_after, (bool, np.bool_)):
            raise TypeError(f"reset_after: expected True or False, got {reset_after!r}")
        G = N_GATES[cls.cell] * H
        return cls(np.zeros((D, G), dtype), np.zeros((H, G), dtype),
                   np.zeros(bias_shape(cls.cell, H, reset_after), dtype), **options)

    def _live_params(self):
        """params, checked as a kernel call checks them: an array replaced
        by one of another shape, dtype or layout is refused, by name
        (rnnfast.interop reads them)."""
        check_live_arrays(self.params, ("[0] (Wx)", "[1] (Wh)", "[2] (b)"), self._shapes,
                          self._dtype, f"{type(self).__name__}.params")
        return self.params

    @property
    def input_size(self):
        """D, the rows of Wx."""
        return self._shapes[0][0]

    @property
    def hidden_size(self):
        """H, the rows of Wh."""
        return self._shapes[1][0]

    # The per-call paths below read _dtype and _shapes rather than the
    # properties: a property lookup is a function call.
    def _state(self, value, name, N):
        return check_array(value, name, self._dtype, (N, self._shapes[1][0])).copy()

    def _run_forward(self, xs, h, c, check_xs=False):
        """check_xs: the kernel refuses xs with a NaN or Inf as it projects
        it (rnnfast.networks, forward)."""
        N, T, _ = xs.shape
        dtype, shapes, params = self._dtype, self._shapes, self.params
        # The compiled test first: the owner's name is only needed to word an error.
        if not arrays_ready(params, shapes, dtype):
            check_live_arrays(params, ("[0] (Wx)", "[1] (Wh)", "[2] (b)"), shapes, dtype,
                              f"{type(self).__name__}.params")
        lengths = check_lengths(None, N, T)
        if not self.training:
            self._cache = None      # a backward never reads an older forward's
            # A network of one layer and direction: h[None] (1, N, H) is a
            # view, so the final state is written into h (and c) as below.
            out, _, _ = _core.network_forward(
                self.cell, xs, params, h[None], None if c is None else c[None], lengths, 1, 1,
                shapes[1][0], False, self._relu, self._reset_after, None, check_xs,
                self._pack_epoch)
            return out
        out = _core.empty_output(N, T, shapes[1][0], dtype)
        Wx, Wh, b = params
        self._cache = _core.forward(self.cell, xs, Wx, Wh, b, h, c, lengths, False, out, 0,
                                    True, self._relu, self._reset_after, check_xs=check_xs)
        return out

    def _run_backward(self, dout, dh, dc, dout_name=None):
        """dout_name: the kernel refuses a dout with a NaN or Inf as it
        reads it, by that name (rnnfast.networks, backward)."""
        if self._cache is None:
            raise self._no_forward()
        dtype, shapes, grads = self._dtype, self._shapes, self.grads
        if not arrays_ready(grads, shapes, dtype, True):         # as in _run_forward
            check_live_arrays(grads, ("[0] (dWx)", "[1] (dWh)", "[2] (db)"), shapes, dtype,
                              f"{type(self).__name__}.grads", writable=True)
        cache, self._cache = self._cache, None
        N, T, _ = cache.xs.shape
        dxs = _core.empty_output(N, T, shapes[0][0], dtype)
        dWx, dWh, db = grads
        _core.backward(cache, dout, 0, dh, dc, dWx, dWh, db, dxs, False, dout_name=dout_name)
        return dxs


# ------------------------------------------------------------------ cells
class _Cell(_Recurrent):
    def _check_step(self, x, h_prev):
        x = check_array(x, "x", self._dtype, ("N", self._shapes[0][0]))
        N = x.shape[0]
        return x, self._state(h_prev, "h_prev", N)

    def _check_dh(self, dh_next, name="dh_next"):
        if self._cache is None:
            raise self._no_forward()
        N = self._cache.xs.shape[0]
        return check_array(dh_next, name, self._dtype, (N, self._shapes[1][0]))


class RNNCell(_Cell):
    """h_next = tanh(x Wx + h_prev Wh + b)  (or ReLU).  x (N, D), h (N, H)."""
    cell = "rnn"

    def __init__(self, Wx, Wh, b, nonlinearity="tanh"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(Wx, Wh, b, relu=nonlinearity == "relu")

    def forward(self, x, h_prev):
        """x (N, D), h_prev (N, H) -> h_next (N, H)."""
        x, h = self._check_step(x, h_prev)
        return self._run_forward(x[:, None, :], h, None)[:, 0]

    def backward(self, dh_next):
        """dh_next (N, H) -> (dx (N, D), dh_prev (N, H)); fills grads."""
        dh_next = self._check_dh(dh_next)
        dh = np.zeros_like(dh_next)
        dx = self._run_backward(dh_next[:, None, :], dh, None)[:, 0]
        return dx, dh


class LSTMCell(_Cell):
    """(h_next, c_next) from x (N, D), h_prev, c_prev (N, H); gates f, g, i, o."""
    cell = "lstm"

    def forward(self, x, h_prev, c_prev):
        """x (N, D), h_prev, c_prev (N, H) -> (h_next, c_next) (N, H)."""
        x, h = self._check_step(x, h_prev)
        c = self._state(c_prev, "c_prev", x.shape[0])
        h_next = self._run_forward(x[:, None, :], h, c)[:, 0]
        return h_next, c

    def backward(self, dh_next, dc_next):
        """dh_next, dc_next (N, H) -> (dx (N, D), dh_prev, dc_prev (N, H));
        fills grads."""
        dh_next = self._check_dh(dh_next)
        dc = self._check_dh(dc_next, "dc_next").copy()
        dh = np.zeros_like(dh_next)
        dx = self._run_backward(dh_next[:, None, :], dh, dc)[:, 0]
        return dx, dh, dc


class GRUCell(_Cell):
    """h_next from x (N, D), h_prev (N, H); gates z, r, h~ (see rnnfast._layout)."""
    cell = "gru"

    def __init__(self, Wx, Wh, b, reset_after=False):
        self.reset_after = bool(reset_after)
        super().__init__(Wx, Wh, b, reset_after=self.reset_after)

    forward = RNNCell.forward
    backward = RNNCell.backward


# ------------------------------------------------------------ Time layers
class _TimeLayer(_Recurrent):
    """forward(xs (N, T, D)) -> hs (N, T, H); backward(dhs) -> dxs.

    stateful=True is truncated BPTT: each forward starts from the last state
    of the previous one and backward stops at the chunk boundary.  With
    stateful=False every forward starts from zeros.  After backward, .dh
    (and .dc for LSTM) hold dL/d(initial state)."""
    _has_c = False

    def __init__(self, Wx, Wh, b, stateful=False, **options):
        super().__init__(Wx, Wh, b, **options)
        self.stateful = bool(stateful)
        self.h = self.c = None
        self.dh = self.dc = None

    def set_state(self, h, c=None):
        """Set the state a stateful layer starts its next forward from:
        h (N, H), and c (N, H) for an LSTM (copied)."""
        h = check_array(h, "h", self.dtype, ("N", self.hidden_size))
        if self._has_c:
            if c is None:
                raise ValueError("c: an LSTM state needs both h and c")
            c = check_array(c, "c", self.dtype, h.shape)
            self.c = c.copy()
        elif c is not None:
            raise ValueError(f"c: a {self.cell.upper()} has no cell state")
        self.h = h.copy()

    def reset_state(self):
        """Forget the carried state: the next forward starts from zeros."""
        self.h = self.c = None

    def forward(self, xs):
        """xs (N, T, D) -> hs (N, T, H); .h (and .c) become the last
        state."""
        dtype, H = self._dtype, self._shapes[1][0]
        # NaN and Inf: the kernel's test (_run_forward), as a network's.
        xs = check_array(xs, "xs", dtype, ("N", "T", self._shapes[0][0]), allow_nonfinite=True)
        N = xs.shape[0]
        if not self.stateful or self.h is None:
            h = np.zeros((N, H), dtype)
            c = np.zeros((N, H), dtype) if self._has_c else None
        else:
            # .h and .c are public: checked as set_state checks them.
            h = check_array(self.h, "h", dtype, ("N", H))
            if h.shape[0] != N:
                raise ValueError(f"xs: a stateful layer carries a state of batch size "
                                 f"{h.shape[0]}, got xs of shape {xs.shape}; call "
                                 "reset_state() to start a new batch size")
            h = h.copy()
            c = None
            if self._has_c:
                if self.c is None:
                    raise ValueError("c: a stateful LSTM carries h and c, and c is None; "
                                     "set both with set_state(h, c) or call reset_state()")
                c = check_array(self.c, "c", dtype, h.shape).copy()
        hs = self._run_forward(xs, h, c, check_xs=True)
        self.h, self.c = h, c
        return hs

    def backward(self, dhs):
        """dhs (N, T, H) -> dxs (N, T, D); fills grads, sets .dh (and .dc),
        dL/d(initial state).  One backward per training forward."""
        if self._cache is None:
            raise self._no_forward()
        N, T, _ = self._cache.xs.shape
        H = self._shapes[1][0]
        dhs = check_array(dhs, "dhs", self._dtype, (N, T, H), allow_nonfinite=True)
        dh = np.zeros((N, H), self._dtype)
        dc = np.zeros_like(dh) if self._has_c else None
        dxs = self._run_backward(dhs, dh, dc, dout_name="dhs")
        self.dh, self.dc = dh, dc
        return dxs


class TimeRNN(_TimeLayer):
    """TimeRNN(Wx (D, H), Wh (H, H), b (H,), stateful=False,
    nonlinearity="tanh"): h_t = tanh(x_t Wx + h_{t-1} Wh + b) ("relu":
    ReLU) over a whole sequence.  Protocol: see _TimeLayer."""
    cell = "rnn"

    def __init__(self, Wx, Wh, b, stateful=False, nonlinearity="tanh"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(Wx, Wh, b, stateful, relu=nonlinearity == "relu")


class TimeLSTM(_TimeLayer):
    """TimeLSTM(Wx (D, 4H), Wh (H, 4H), b (4H,), stateful=False): gates f,
    g, i, o over a whole sequence; .c and .dc beside .h and .dh.
    Protocol: see _TimeLayer."""
    cell = "lstm"
    _has_c = True


class TimeGRU(_TimeLayer):
    """TimeGRU(Wx (D, 3H), Wh (H, 3H), b, stateful=False, reset_after=False):
    gates z, r, h~ over a whole sequence; b (3H,) for the textbook's
    variant (the default), (2, 3H) with reset_after=True (PyTorch's).
    Protocol: see _TimeLayer."""
    cell = "gru"

    def __init__(self, Wx, Wh, b, stateful=False, reset_after=False):
        self.reset_after = bool(reset_after)
        super().__init__(Wx, Wh, b, stateful, reset_after=self.reset_after)
