"""Helpers shared by the training layers (not public)."""
import numpy as np

from .._validation import check_array, check_int, float_dtype


def weight_dtype(W, name="W"):
    """The dtype a layer takes from its weights: float32 or float64 as
    given, float64 for integer or bool weights."""
    dt = np.asarray(W).dtype
    if dt.kind not in "fiub":
        raise TypeError(f"{name}: expected real numbers, got dtype {dt}")
    if dt.kind == "f" and dt.itemsize <= 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def as_param(W, name, dtype, expected):
    """The array itself when it already is a float ndarray of `dtype` (any
    memory order, so a transposed view of a shared weight stays shared);
    a checked C-contiguous copy otherwise."""
    if isinstance(W, np.ndarray) and W.dtype == dtype:
        check_array(W, name, dtype, expected)      # shape and finiteness only
        if not W.flags.writeable:
            raise ValueError(f"{name}: a parameter must be writeable (optimizers "
                             "update it in place); pass a copy")
        return W
    return check_array(W, name, dtype, expected).copy()


def no_forward(layer):
    """The RuntimeError (returned, not raised) of a backward with no
    forward's activations to read."""
    return RuntimeError(f"{type(layer).__name__}.backward called before forward "
                        "(or twice for one forward)")


def sizes_from_config(cls, config, sizes, minimum=1):
    """(the ints of `sizes`, dtype, the other keys) of a layer's config
    (from_config's check): a dict, every key of `sizes` and "dtype" present,
    sizes integers >= minimum, dtype float32 or float64."""
    if not isinstance(config, dict):
        raise TypeError(f"config: expected a dict, got {type(config).__name__}")
    options = dict(config)
    missing = [k for k in sizes + ("dtype",) if k not in options]
    if missing:
        raise KeyError(f"config: {cls.__name__} needs {', '.join(missing)}; got "
                       f"{sorted(options)}")
    values = [check_int(options.pop(k), k, minimum) for k in sizes]
    return values, float_dtype(options.pop("dtype")), options


class SizedConfig:
    """get_config / from_config (rnnfast.io) of a layer rebuilt from the
    shape of its first weight and its dtype.  A subclass names that
    shape's axes in `_config_sizes`, gives `_zero_weights(sizes, dtype)`,
    the constructor's arguments, and calls `_remember_sizes` once built."""
    _config_sizes = ()
    _min_size = 1

    def _remember_sizes(self, W):
        self._built = dict(zip(self._config_sizes, W.shape), dtype=W.dtype.name)

    def get_config(self):
        """Sizes and dtype as a JSON-able dict: what rnnfast.io.save stores
        beside `params`, and `from_config` rebuilds: the sizes the layer was
        built with (params replaced since by arrays of other shapes are
        then refused by io.save, by name)."""
        built = self.__dict__.get("_built")
        if built is None:
            # a layer pickled before get_config existed: its weight's sizes now
            self._remember_sizes(self.params[0])
            built = self._built
        return dict(built)

    @classmethod
    def from_config(cls, config):
        """A layer of `config`'s sizes and dtype (get_config's keys) with
        zero weights, for rnnfast.io.load to copy params into."""
        sizes, dtype, options = sizes_from_config(cls, config, cls._config_sizes,
                                                  cls._min_size)
        return cls(*cls._zero_weights(sizes, dtype), **options)
