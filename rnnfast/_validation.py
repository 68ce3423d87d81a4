"""Checks at the Python boundary: every public entry point converts and
checks its arrays here, so the kernels only ever see C-contiguous arrays of
the right dtype and shape.  Errors name the argument, the shape expected
and the shape given."""
import numbers

import numpy as np

from ._rnn import all_finite, array_ready, arrays_ready, first_bad_class_id

# The specialisations of the fused all_finite, chosen here once: calling
# the fused function dispatches on the argument's type at every call.
# Keyed by dtype, not by its character: a big-endian float32 has char "f"
# too, and is not what the compiled test reads.
_ALL_FINITE = {np.dtype(np.float32): all_finite.__signatures__["float"],
               np.dtype(np.float64): all_finite.__signatures__["double"]}

# SciPy's cython_blas takes 32-bit sizes.
MAX_BLAS_INDEX = 2 ** 31 - 1


class NonFiniteError(ValueError):
    """A NaN or Inf where rnnfast refuses one: in an input, a state or a
    gradient handed to a layer.  A ValueError, as every other refused input;
    a class of its own so that a training loop can tell a model that
    diverged inside (a NaN or Inf between its layers, the data finite)
    from bad data (rnnfast.trainer, rnnfast.sklearn)."""


def nonfinite_error(name, shape):
    """The NonFiniteError for an array `name` of `shape` that holds a NaN
    or Inf (check_array's; the softmax losses find theirs in their pass)."""
    return NonFiniteError(f"{name}: contains NaN or Inf (shape {shape}); "
                          "they would poison every later step")


def _describe(expected):
    return "(" + ", ".join(str(e) for e in expected) + ("," if len(expected) == 1 else "") + ")"


def float_dtype(dtype, name="dtype"):
    """np.dtype(dtype) when it is float32 or float64 (None gives float64,
    as np.dtype(None)); TypeError otherwise."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name}: expected float32 or float64, got {dtype!r}") from exc
    if dt not in (np.float32, np.float64):
        raise TypeError(f"{name}: expected float32 or float64, got {dt}")
    return dt


def check_array(value, name, dtype, expected, allow_nonfinite=False):
    """Convert `value` to a C-contiguous `dtype` array of shape `expected`.

    expected: a tuple whose items are ints (that size exactly) or strings
    (any size; the string names it in messages, e.g. "N").  Refuses strings,
    objects and complex numbers (TypeError), a wrong rank or size and, unless
    allow_nonfinite, NaN or Inf (ValueError).
    """
    # The common case, an array that passes as it is, in compiled code;
    # anything else goes through the checks below.
    if array_ready(value, dtype, expected, allow_nonfinite):
        return value
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name}: expected an array of shape {_describe(expected)}, "
                            f"got {type(value).__name__} that is not one ({exc})") from exc
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name}: expected real numbers (float, int or bool) of shape "
                        f"{_describe(expected)}, got dtype {arr.dtype}")
    shape = arr.shape
    if len(shape) != len(expected):
        raise ValueError(f"{name}: expected shape {_describe(expected)}, got shape {shape}")
    for s, e in zip(shape, expected):     # a loop: any() over a generator
        if s != e and isinstance(e, int):  # cost a microsecond a call
            raise ValueError(f"{name}: expected shape {_describe(expected)}, "
                             f"got shape {shape}")
    if (arr.dtype is not dtype and arr.dtype != dtype) or not arr.flags.c_contiguous:
        # A float64 beyond float32's range becomes Inf here; the finiteness
        # check below reports it as a ValueError, not as a RuntimeWarning.
        with np.errstate(over="ignore"):
            arr = np.ascontiguousarray(arr, dtype=dtype)
    if not arr.flags.aligned:           # e.g. np.frombuffer at an odd offset
        arr = arr.copy()
    if not allow_nonfinite and arr.dtype.kind == "f" and not finite_array(arr):
        raise nonfinite_error(name, arr.shape)
    return arr


def finite_array(arr):
    """Whether arr (C-contiguous floats) holds no NaN or Inf, tested in
    compiled code for float32 and float64 (rnnfast._rnn.all_finite)."""
    test = _ALL_FINITE.get(arr.dtype)
    if test is None:                    # another float type or byte order
        return bool(np.isfinite(arr).all())
    return test(arr.reshape(-1))


def check_int(value, name, minimum=1):
    """`value` as an int >= minimum.  A bool or a non-integer (a float
    such as 2.0 included) raises TypeError, a smaller integer ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def check_int_targets(ts, name, expected, num_classes, ignore_label):
    """Class ids `ts` of shape `expected` as intp, each in 0..num_classes-1
    or equal to ignore_label (the loss skips those); num_classes None: the
    range is left to the caller (a softmax loss tests it in its own pass)."""
    arr = np.asarray(ts)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer class ids of shape {expected}, "
                        f"got dtype {arr.dtype}")
    arr = check_array(arr, name, np.intp, expected)
    if num_classes is not None:
        flat = arr.reshape(-1)
        bad = first_bad_class_id(flat, num_classes, ignore_label)
        if bad >= 0:
            raise ValueError(f"{name}: class ids must lie in 0..{num_classes - 1} (or "
                             f"equal ignore_label={ignore_label}), got {flat[bad]}")
    return arr


def check_sample_weight(sample_weight, n):
    """None, or the weights as float64 (n,), each finite and >= 0."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight: expected numbers of shape ({n},), got dtype "
                        f"{w.dtype}")
    if w.shape != (n,):
        raise ValueError(f"sample_weight: expected shape ({n},), one weight a sample, got "
                         f"shape {w.shape}")
    w = w.astype(np.float64)
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise ValueError("sample_weight: weights must be finite and >= 0, got "
                         f"min {w.min()} and max {w.max()}")
    return w


def check_mask(mask, shape):
    """None, or the mask of counted targets as booleans of `shape`."""
    if mask is None:
        return None
    arr = np.asarray(mask)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"mask: expected booleans of shape {shape}, got dtype {arr.dtype}")
    if arr.shape != tuple(shape):
        raise ValueError(f"mask: expected shape {tuple(shape)}, got shape {arr.shape}")
    return arr.astype(bool)


_FULL_LENGTHS = {}     # (N, T) -> read-only lengths array, all T


def check_lengths(lengths, N, T):
    """lengths (N,) of integers in 1..T, as the intp array the kernels take."""
    if lengths is None:
        full = _FULL_LENGTHS.get((N, T))
        if full is None:
            if len(_FULL_LENGTHS) >= 64:
                _FULL_LENGTHS.clear()
            full = np.full(N, T, dtype=np.intp)
            full.flags.writeable = False       # shared between calls
            _FULL_LENGTHS[(N, T)] = full
        return full
    arr = np.asarray(lengths)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected integers of shape ({N},), got dtype {arr.dtype}")
    if arr.shape != (N,):
        raise ValueError(f"lengths: expected shape ({N},), got shape {arr.shape}")
    # Range check before the cast to intp, so that a huge unsigned value is
    # neither wrapped to a negative one nor reported as one.
    if N and (arr.min() < 1 or arr.max() > T):
        raise ValueError(f"lengths: each length must lie in 1..T={T}, got min {arr.min()} "
                         f"and max {arr.max()}")
    # A copy, always: a training forward keeps it for the backward, and a
    # caller that reuses its lengths buffer in between must not change it
    # (torch's pack_padded_sequence copies too).
    return np.array(arr, dtype=np.intp, order="C")


def check_live_arrays(arrays, names, shapes, dtype, owner, writable=False):
    """Check a layer's public, mutable `params` or `grads` list just before a
    kernel reads or writes it: the kernels trust every shape, so an array
    replaced by one of another shape, dtype or memory order (say
    `net.params[1] = w.T`) must be refused here, not read out of bounds.
    `names` is a sequence or a callable returning one; it is only needed to
    word an error (building the names cost more than the checks)."""
    if arrays_ready(arrays, shapes, dtype, writable):    # compiled; re-reads every array
        return
    if len(arrays) != len(shapes):
        raise ValueError(f"{owner}: expected {len(shapes)} arrays, got {len(arrays)}")
    for i, (arr, shape) in enumerate(zip(arrays, shapes)):
        if (isinstance(arr, np.ndarray) and arr.shape == tuple(shape) and arr.dtype == dtype
                and arr.flags.c_contiguous and (arr.flags.writeable or not writable)):
            continue
        name = (names() if callable(names) else names)[i]
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"{owner}{name}: expected a numpy array of shape "
                            f"{_describe(shape)}, got {type(arr).__name__}")
        if arr.shape != tuple(shape):
            raise ValueError(f"{owner}{name}: expected shape {_describe(shape)}, "
                             f"got shape {arr.shape}")
        if arr.dtype != dtype:
            raise TypeError(f"{owner}{name}: expected dtype {np.dtype(dtype)} (shape "
                            f"{_describe(shape)}), got dtype {arr.dtype}")
        if not arr.flags.c_contiguous:
            raise ValueError(f"{owner}{name}: expected a C-contiguous array of shape "
                             f"{_describe(shape)}; update it in place (a[...] = new) "
                             "rather than replacing it")
        if writable and not arr.flags.writeable:
            raise ValueError(f"{owner}{name}: is read-only (shape {arr.shape}); "
                             "backward writes into it")


def check_blas_size(name, **sizes):
    """Refuse problems whose buffers would overflow BLAS's 32-bit indices."""
    for what, n in sizes.items():
        if n > MAX_BLAS_INDEX:
            raise ValueError(f"{name}: {what} = {n} elements exceeds the kernels' "
                             f"limit of {MAX_BLAS_INDEX} (32-bit BLAS indices)")
