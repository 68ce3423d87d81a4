"""Inverted dropout: in training each element is kept with probability
1 - ratio and scaled by 1 / (1 - ratio), so evaluation is the identity."""
import numbers

import numpy as np

from .._repr import init_repr
from .._validation import check_array
from ._common import no_forward


def as_generator(random_state):
    """A numpy Generator from None, an int seed or a Generator (shared, not copied)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or (isinstance(random_state, numbers.Integral)
                                and not isinstance(random_state, bool)):
        return np.random.default_rng(random_state)
    raise TypeError(f"random_state: expected None, an int or a numpy Generator, "
                    f"got {random_state!r}")


class TimeDropout:
    """Dropout for arrays of any shape (e.g. (N, T, D) or (N, D)).

    ratio: probability of dropping an element, in [0, 1).
    random_state: None, an int seed or a numpy Generator (never the global RNG).
    A new layer is in training mode; eval() makes forward the identity.
    """

    __repr__ = init_repr

    def __init__(self, ratio=0.5, random_state=None):
        if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) \
                or not 0 <= ratio < 1:
            raise ValueError(f"ratio: expected a probability in [0, 1), got {ratio!r}")
        self.ratio = float(ratio)
        self.rng = as_generator(random_state)
        # an int seed is a constructor argument a saved layer can keep (as
        # Keras's Dropout keeps its seed); a Generator's stream is not saved
        self._seed = None if isinstance(random_state, np.random.Generator) \
            else random_state
        self.training = True
        self.params, self.grads = [], []
        self.mask = None
        self._ready = False
        self._shape = None          # forward's input shape: what backward takes
        self._dtype = None          # the dtype of the gradient it gives back

    def get_config(self):
        """{"ratio", "random_state"}: what rnnfast.io.save stores and
        TimeDropout(**config) rebuilds.  random_state is the int seed the
        layer was made with (the rebuilt layer draws the same masks from
        the start), or None when it was None or a Generator."""
        seed = self.__dict__.get("_seed")
        return {"ratio": self.ratio, "random_state": None if seed is None else int(seed)}

    def train(self, mode=True):
        """Training mode (mode=True, the default of a new layer): forward
        drops elements.  Returns self."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Evaluation mode: forward is the identity.  Returns self."""
        return self.train(False)

    def forward(self, xs):
        """xs (any shape) -> xs * mask in training (a new mask of 0 and
        1 / (1 - ratio), drawn from self.rng, kept in .mask for backward);
        in evaluation mode or with ratio 0, xs itself (np.asarray(xs), not
        a copy).  xs must hold real numbers (TypeError naming it; NaN and Inf
        pass through); a refused call leaves the layer as it was."""
        xs = np.asarray(xs)
        if xs.dtype.kind not in "biuf":
            raise TypeError(f"xs: expected an array of real numbers, got dtype {xs.dtype} "
                            f"(shape {xs.shape})")
        dt = xs.dtype if xs.dtype.kind == "f" else np.dtype(np.float64)
        if not self.training or self.ratio == 0:
            mask, out = None, xs
        else:
            keep = 1.0 - self.ratio
            mask = (self.rng.random(xs.shape) < keep).astype(dt) / dt.type(keep)
            out = xs * mask
        self.mask, self._shape, self._dtype, self._ready = mask, xs.shape, dt, True
        return out

    def backward(self, dout):
        """dL/dy -> dL/dx = dout * mask, or dout as it is (converted to
        forward's float dtype) when forward applied no mask, evaluation
        mode included.  dout must have forward's input shape and be finite
        (ValueError); one backward per forward (RuntimeError otherwise)."""
        if not self._ready:
            raise no_forward(self)
        self._ready = False
        # The shape forward saw, not one that merely broadcasts against the
        # mask (a (1, T, 1) dout would otherwise come back as (N, T, D)).
        dout = check_array(dout, "dout", self._dtype, self._shape)
        return dout if self.mask is None else dout * self.mask
