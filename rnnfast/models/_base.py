"""What every model shares: the parameter lists, training/evaluation
mode, get_config, and the helpers that build networks and weights."""
import numbers
import os
import threading

import numpy as np

from .. import networks
from .._validation import float_dtype
from ..layers.dropout import as_generator

# Guards the mode switches of _in_eval (held for the switch, not the call).
_EVAL_LOCK = threading.Lock()


def _new_locks_in_child():
    # A fork copies a lock held by another thread as held, for good: the
    # child (which has only the forking thread) starts with a free one.
    global _EVAL_LOCK
    _EVAL_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_locks_in_child)

CELLS = {"rnn": networks.RNN, "lstm": networks.LSTM, "gru": networks.GRU}


def check_cell(cell):
    """`cell` if it is 'rnn', 'lstm' or 'gru', else a ValueError naming it."""
    if cell not in CELLS:
        raise ValueError(f"cell: expected one of {tuple(CELLS)}, got {cell!r}")
    return cell


def check_probability(value, name):
    """`value` as a float in [0, 1) (a dropout rate), else a ValueError
    naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name}: expected a probability in [0, 1), got {value!r}")
    return float(value)


def seed_for_config(random_state):
    """An int seed is kept in get_config; a Generator cannot be, so None."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state)
    return None


def child_rng(rng):
    """An independent Generator drawn from `rng` (for a dropout layer)."""
    return np.random.default_rng(rng.integers(2 ** 63))


class Model:
    """Base class.  Subclasses set self.layers (everything with a
    train/eval mode or parameters) and call self._collect(...) with the
    layers whose params and grads they own, in order."""

    def _setup(self, config, dtype, random_state):
        self._config = dict(config)
        self._config["dtype"] = float_dtype(dtype).name
        self._config["random_state"] = seed_for_config(random_state)
        self.dtype = float_dtype(dtype)
        self.training = True
        return as_generator(random_state)

    def _collect(self, params, grads):
        seen = set()
        for p in params:
            if id(p) in seen:
                raise AssertionError("a parameter is listed twice")
            seen.add(id(p))
        self.params, self.grads = list(params), list(grads)

    def train(self, mode=True):
        """Training mode (mode=True) or evaluation mode (False) for the
        model and every layer that has modes (dropout on or off; the
        networks save what backward needs only in training).  Returns self."""
        self.training = bool(mode)
        for layer in self.layers:
            if hasattr(layer, "train"):
                layer.train(mode)
        return self

    def eval(self):
        """Evaluation mode: train(False).  Returns self."""
        return self.train(False)

    def get_config(self):
        """The constructor's arguments as a JSON-able dict: cls(**config)
        rebuilds the model (then copy params in order)."""
        return dict(self._config)

    def __getstate__(self):
        # A copy made while a thread predicts: the copy has no such thread
        # (its mode is the evaluation mode of that moment).
        state = self.__dict__.copy()
        state.pop("_eval_users", None)
        state.pop("_eval_restore", None)
        state.pop("_decode_lock", None)         # a lock cannot be pickled; made anew
        return state

    def _decoding(self):
        """The lock of the calls that keep a decoding state on the model's
        layers (generate, RnnLM.predict, perplexity): one at a time per
        model.  The kernels release the GIL, so two threads decoding with
        one model would otherwise interleave their states and get wrong
        ids.  (Other predictions need no lock: a network's evaluation
        forward keeps no state.)  Made on first use."""
        pid, lock = self.__dict__.get("_decode_lock", (None, None))
        if pid != os.getpid():              # none yet, or the parent's before a fork
            with _EVAL_LOCK:
                pid, lock = self.__dict__.get("_decode_lock", (None, None))
                if pid != os.getpid():
                    lock = threading.RLock()
                    self._decode_lock = (os.getpid(), lock)
        return lock

    def _in_eval(self, fn, *args, **kwargs):
        """Run fn in evaluation mode and restore the mode afterwards.

        Threads predicting with one model at once: the first to enter
        switches to evaluation mode and the last to leave restores the
        mode it found (not one thread restoring training mode while
        another still predicts, nor the later one restoring the earlier
        one's evaluation mode).  Training in another thread meanwhile is
        still a race."""
        with _EVAL_LOCK:
            users = self.__dict__.get("_eval_users", 0)
            if users == 0:
                self._eval_restore = self.training
                self.eval()
            self._eval_users = users + 1
        try:
            return fn(*args, **kwargs)
        finally:
            with _EVAL_LOCK:
                self._eval_users -= 1
                if self._eval_users == 0:
                    self.train(self._eval_restore)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._config.items())
        return f"{type(self).__name__}({args})"


def uniform_(params, scale, rng):
    """Re-draw every array of `params` in place from U(-scale, scale)."""
    for p in params:
        p[...] = rng.uniform(-scale, scale, p.shape)
