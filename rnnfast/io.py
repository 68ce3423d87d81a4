"""Saving and loading rnnfast networks, cells, Time layers, the fully
connected, embedding, dropout and attention layers (Affine, TimeAffine,
Embedding, TimeEmbedding, TimeDropout, TimeAttention), models and training
checkpoints.

One format: a NumPy ``.npz`` archive (a zip of ``.npy`` members, stored
uncompressed) holding

    param.000, param.001, ...   the object's ``params``, in order, in their dtype
    optimizer.SSS.K             optimizer state arrays (checkpoints only)
    __rnnfast__                 uint8 array: UTF-8 JSON metadata

The metadata::

    {"format": "rnnfast", "format_version": 1, "rnnfast_version": "0.1.0",
     "class": "rnnfast.LSTM",              # a name from the registry below
     "config": {...},                      # JSON constructor arguments
     "dtype": "float32",
     "layout": {"gate_order": {...}, ...}, # rnnfast._layout, for other readers
     "arrays": [{"name": ..., "shape": [...], "dtype": ...}, ...],
     "metadata": {...},                    # the caller's (e.g. a vocabulary)
     "checkpoint": {...}}                  # checkpoints only

``save`` first makes the checks ``load`` will make (see ``_check_loadable``),
so it never writes a file that ``load`` refuses.  It writes a temporary file in
the target's directory and renames it over the target (``os.replace``), so a
crash mid-save leaves the old file; the new file gets the mode ``open(path,
'wb')`` would give it (an overwritten file keeps its mode), and a symlink is
written through, so it stays a link to the updated file.
``load`` never unpickles and never executes anything from the file: it reads
with ``allow_pickle=False``, checks the format version, looks the class up
in a registry of rnnfast classes, checks every member's header (dtype, and
that the claimed shape matches the bytes present) before reading it, rebuilds
the object from its config and checks every array's shape and dtype against
it.  A truncated, corrupted, foreign or hostile file raises ValueError.
"""
import collections
import io
import json
import math
import os
import secrets
import stat
import zipfile

import numpy as np

from ._layout import GATE_ORDER

FORMAT = "rnnfast"
FORMAT_VERSION = 1
META_KEY = "__rnnfast__"
MAX_META_BYTES = 256 * 2 ** 20
MAX_TOTAL_BYTES = 2 ** 35          # 32 GiB of arrays: beyond that a file is absurd
_FLOAT_KINDS = ("float32", "float64")
_ARRAY_DTYPES = ("float32", "float64", "int64", "int32", "uint8", "bool")

_REGISTRY = {}
_EXTRA_PREFIX = "extra."       # save_checkpoint's extra_arrays members
# What `load` rebuilds for a (class, config): the params' shapes and dtypes,
# so that repeated saves (a checkpoint every epoch) build the object once.
_REBUILT_SPECS = {}
_MAX_REBUILT_SPECS = 64
_ParamSpec = collections.namedtuple("_ParamSpec", "shape dtype")
# what a class's constructor may raise when it refuses a config
_REBUILD_ERRORS = (TypeError, ValueError, MemoryError, OverflowError, KeyError)


# ----------------------------------------------------------------- registry
def register(cls, name=None):
    """Let `load` rebuild instances of `cls` (by ``cls(**config)``, or
    ``cls.from_config(config)`` when it has one).  Returns `cls`, so it works
    as a decorator."""
    name = name or f"{cls.__module__}.{cls.__qualname__}"
    _REGISTRY[name] = cls
    return cls


def _registry():
    if "rnnfast.LSTM" not in _REGISTRY:
        from .layers import (Affine, Embedding, GRUCell, LSTMCell, RNNCell, TimeAffine,
                             TimeAttention, TimeDropout, TimeEmbedding, TimeGRU, TimeLSTM,
                             TimeRNN)
        from .networks import GRU, LSTM, RNN
        for cls in (RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell, TimeRNN, TimeLSTM, TimeGRU):
            register(cls, f"rnnfast.{cls.__name__}")
        for cls in (Affine, TimeAffine, Embedding, TimeEmbedding, TimeDropout, TimeAttention):
            register(cls, f"rnnfast.layers.{cls.__name__}")
    try:
        from . import models
    except ImportError:                     # the models package is optional here
        models = None
    if models is not None:
        for attr in getattr(models, "__all__", ()):
            cls = getattr(models, attr, None)
            if isinstance(cls, type) and hasattr(cls, "get_config"):
                _REGISTRY.setdefault(f"rnnfast.models.{attr}", cls)
    return _REGISTRY


def _class_name(obj):
    reg = _registry()
    for name, cls in reg.items():
        if type(obj) is cls:
            return name
    raise TypeError(f"obj: {type(obj).__name__} is not a registered rnnfast class; "
                    f"known: {', '.join(sorted(reg))} (see rnnfast.io.register)")


def _is_network(obj):
    from .networks import _Network
    return isinstance(obj, _Network)


def get_config(obj):
    """The JSON-able constructor arguments of a network, cell, Time layer
    or model (for a layer, its sizes and dtype in place of its weights: see
    its from_config)."""
    if _is_network(obj):
        config = {"input_size": obj.input_size, "hidden_size": obj.hidden_size,
                  "num_layers": obj.num_layers, "bidirectional": obj.bidirectional,
                  "dropout": obj.dropout, "stateful": obj.stateful,
                  "dtype": np.dtype(obj.dtype).name}
        if not obj.bias:        # only then: files of networks with biases stay as they were
            config["bias"] = False
        if obj.cell == "rnn":
            config["nonlinearity"] = obj.nonlinearity
        if obj.cell == "gru":
            config["reset_after"] = obj.reset_after
        return config
    if not hasattr(obj, "get_config"):
        raise TypeError(f"obj: {type(obj).__name__} has no get_config()")
    return _jsonable(obj.get_config(), "config")


def _jsonable(value, name):
    """Round-trip through JSON, turning numpy scalars and dtypes into plain
    values; anything else that JSON cannot hold is a TypeError."""
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.dtype) or isinstance(o, type) and issubclass(o, np.generic):
            return np.dtype(o).name
        raise TypeError(f"{name}: {type(o).__name__} {o!r} cannot be stored as JSON")
    return json.loads(json.dumps(value, default=default, allow_nan=False))


# ------------------------------------------------------------------- write
def _param_names(n):
    return [f"param.{i:03d}" for i in range(n)]


def _write_member(zf, name, array):
    """One .npy member (a hook the tests use to fail mid-save)."""
    with zf.open(name + ".npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, array, allow_pickle=False)


def _fspath(path):
    """A path given as str, bytes or os.PathLike (as np.save takes it), as str."""
    try:
        return os.fsdecode(path)
    except TypeError:
        raise TypeError(f"path: expected str, bytes or os.PathLike, got "
                        f"{type(path).__name__}") from None


def check_writable_path(path):
    """Check, writing nothing, that `save` can write a file at `path` (str,
    bytes or os.PathLike), e.g. before hours of training that end in a save.
    Returns the file a save replaces: the absolute path, through symlinks.

    Raises ValueError for an empty path, IsADirectoryError for a directory,
    FileNotFoundError or NotADirectoryError when the parent directory is
    missing, PermissionError when no file can be created in it; each names
    `path` as given.  `save` makes the same checks."""
    path = _fspath(path)
    if path == "":
        raise ValueError("path: got an empty path ''; give a file name such as 'model.npz'")
    if path.endswith(tuple(s for s in (os.sep, os.altsep) if s)):
        raise IsADirectoryError(f"path: {path!r} names a directory (it ends with a "
                                f"separator); give a file name")
    # a symlink is written through: the file replaced is the one it points to
    target = os.path.realpath(path)
    if os.path.isdir(target):
        raise IsADirectoryError(f"path: {path!r} is a directory; give a file name "
                                f"(such as {os.path.join(path, 'model.npz')!r})")
    parent = os.path.dirname(target)
    if not os.path.exists(parent):
        raise FileNotFoundError(f"path: the directory of {path!r} does not exist: {parent!r}")
    if not os.path.isdir(parent):
        raise NotADirectoryError(f"path: the directory of {path!r} is not a directory: "
                                 f"{parent!r}")
    if not os.access(parent, os.W_OK | os.X_OK,
                     effective_ids=os.access in os.supports_effective_ids):
        raise PermissionError(f"path: cannot create files in the directory of {path!r}: "
                              f"{parent!r}")
    return target


def _open_temp(directory, name):
    """(fd, path) of a new file ``.<name>.<random>.tmp`` in `directory`.

    Created by os.open with mode 0o666, not tempfile.mkstemp (always 0600): the
    kernel then applies the umask (and a directory's default ACL) exactly as
    for ``open(path, 'wb')``.  Reading the umask instead would mean setting it
    (os.umask has no getter), which races with other threads creating files."""
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_BINARY", 0))
    for _ in range(100):
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name in {directory!r}")


def _member_bytes(array):
    """The size of `array` as a .npy member, header and data, which is what
    `_read` sums (write_array uses format 1.0 unless the header is too long)."""
    header = io.BytesIO()
    d = np.lib.format.header_data_from_array_1_0(array)
    try:
        np.lib.format.write_array_header_1_0(header, d)
    except ValueError:
        header = io.BytesIO()
        np.lib.format.write_array_header_2_0(header, d)
    return header.tell() + array.nbytes


def _check_sizes(blob, arrays):
    """Refuse, before anything is written, a file `_read` would refuse for
    its size: metadata over MAX_META_BYTES, or members over MAX_TOTAL_BYTES."""
    if len(blob) > MAX_META_BYTES:
        raise ValueError(f"metadata: its JSON takes {len(blob)} bytes, more than the "
                         f"{MAX_META_BYTES} load accepts (nothing was written)")
    total = _member_bytes(np.frombuffer(blob, np.uint8)) + sum(
        _member_bytes(a) for a in arrays.values())
    if total > MAX_TOTAL_BYTES:
        raise ValueError(f"obj: the file would hold {total} bytes of arrays, more than the "
                         f"{MAX_TOTAL_BYTES} load accepts (nothing was written)")


def _keep_mode_and_owner(fd, tmp, old):
    """Give the temporary file that replaces a file the old one's mode and,
    where this process may (root saving a user's file), its owner and group."""
    if hasattr(os, "fchmod"):
        os.fchmod(fd, stat.S_IMODE(old.st_mode))
    else:
        os.chmod(tmp, stat.S_IMODE(old.st_mode))
    if hasattr(os, "fchown"):
        new = os.fstat(fd)
        if (new.st_uid, new.st_gid) != (old.st_uid, old.st_gid):
            try:
                os.fchown(fd, old.st_uid, old.st_gid)
            except PermissionError:         # an ordinary user cannot give files away
                pass


def _atomic_write(path, arrays, meta):
    target = check_writable_path(path)
    blob = json.dumps(meta, allow_nan=False).encode("utf-8")
    _check_sizes(blob, arrays)
    try:
        old = os.stat(target)               # overwriting keeps the mode (and the owner)
    except FileNotFoundError:
        old = None
    # the temporary file sits beside the target (not the link) so os.replace is a rename
    fd, tmp = _open_temp(os.path.dirname(target), os.path.basename(target))
    try:
        with os.fdopen(fd, "wb") as raw:
            if old is not None:
                _keep_mode_and_owner(raw.fileno(), tmp, old)
            with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED) as zf:
                _write_member(zf, META_KEY, np.frombuffer(blob, dtype=np.uint8))
                for name, arr in arrays.items():
                    _write_member(zf, name, arr)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _describe_arrays(arrays):
    return [{"name": n, "shape": list(a.shape), "dtype": a.dtype.name}
            for n, a in arrays.items()]


def _object_payload(obj):
    name = _class_name(obj)
    config = get_config(obj)
    params = [np.ascontiguousarray(p) for p in obj.params]
    for i, p in enumerate(params):
        if p.dtype.name not in _FLOAT_KINDS:
            raise TypeError(f"obj.params[{i}]: expected float32 or float64, got {p.dtype}")
    _check_loadable(name, config, params)
    arrays = dict(zip(_param_names(len(params)), params))
    dtype = params[0].dtype.name if params else "float32"
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "rnnfast_version": _version(), "class": name, "config": config,
            "dtype": dtype,
            "layout": {"gate_order": {k: list(v) for k, v in GATE_ORDER.items()},
                       "weights": "a = x @ Wx + h @ Wh + b; Wx (D, G*H), Wh (H, G*H)",
                       "batch_major": True}}
    return arrays, meta


def _check_loadable(name, config, params):
    """Refuse, before anything is written, an object whose file `load` would
    refuse: the same checks, by the same functions (`_config_size_problem`,
    `_params_problem` against the params of the object `load` would rebuild
    from `config`).  A save must never replace a good file with a bad one."""
    why = _config_size_problem(config, sum(p.size for p in params))
    if why is None:
        try:
            expected = _rebuilt_param_specs(_registry()[name], config)
        except _REBUILD_ERRORS as exc:
            why = f"{name} refuses its own config {config}: {exc}"
        else:
            why = _params_problem(params, [f"params[{i}]" for i in range(len(params))],
                                  expected, name)
    if why is not None:
        raise ValueError(f"obj: {why} (load would refuse the file, so nothing was written)")


def _rebuilt_param_specs(cls, config):
    """Shapes and dtypes of the params of ``_instantiate(cls, config)``."""
    key = (cls, json.dumps(config, sort_keys=True))
    specs = _REBUILT_SPECS.get(key)
    if specs is None:
        specs = [_ParamSpec(p.shape, p.dtype) for p in _instantiate(cls, config).params]
        if len(_REBUILT_SPECS) >= _MAX_REBUILT_SPECS:
            _REBUILT_SPECS.clear()
        _REBUILT_SPECS[key] = specs
    return specs


def _user_metadata(metadata):
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):          # load refuses anything but a dict
        raise TypeError(f"metadata: expected a dict, got {type(metadata).__name__}")
    return _jsonable(metadata, "metadata")


def _version():
    from . import __version__
    return __version__


def save(obj, path, metadata=None):
    """Write a network, layer or model (its class, config and params) to `path`,
    atomically.  `metadata`: a JSON-able dict stored beside it (read it back
    with `read_metadata`), e.g. ``{"vocab": vocab.to_dict()}``.  Raises
    ValueError, writing nothing, for params `load` would refuse (NaN or Inf,
    a dtype or shape its class does not build), and the errors of
    `check_writable_path` for a bad `path`."""
    arrays, meta = _object_payload(obj)
    meta["metadata"] = _user_metadata(metadata)
    meta["arrays"] = _describe_arrays(arrays)
    _atomic_write(path, arrays, meta)


# -------------------------------------------------------------------- read
def _bad(path, why):
    return ValueError(f"path: {_fspath(path)!r} is not a valid rnnfast file: {why}")


def _dtype_problem(dtype):
    """Why `load` refuses an array member of this dtype, or None."""
    if dtype.hasobject or dtype.name not in _ARRAY_DTYPES or dtype.byteorder == ">":
        return (f"holds dtype {dtype}; only {', '.join(_ARRAY_DTYPES)} (little-endian) "
                f"are allowed")
    return None


def _member_header(zf, info, path):
    """(shape, dtype) from a .npy member's header, checked against its size."""
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise _bad(path, f"member {info.filename!r} has .npy version {version}")
        offset = f.tell()
    why = _dtype_problem(dtype)
    if why is not None:
        raise _bad(path, f"member {info.filename!r} {why}")
    if any(not isinstance(s, int) or s < 0 for s in shape):
        raise _bad(path, f"member {info.filename!r} claims shape {shape}")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes != info.file_size - offset:
        raise _bad(path, f"member {info.filename!r} claims shape {shape} ({nbytes} bytes) "
                   f"but holds {info.file_size - offset} bytes (truncated or corrupted)")
    return tuple(shape), dtype


def _read(path):
    """(meta, arrays) from a file, every check made; raises ValueError."""
    path = _fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"path: {path!r} is a directory, not an rnnfast file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no such file: {path!r}")
    if not zipfile.is_zipfile(path):
        raise _bad(path, "not a zip/.npz archive (truncated, or another format)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise _bad(path, "not an .npz archive")
            zf = npz.zip
            infos = zf.infolist()
            if sum(i.file_size for i in infos) > MAX_TOTAL_BYTES:
                raise _bad(path, f"its members claim more than {MAX_TOTAL_BYTES} bytes")
            headers = {}
            for info in infos:
                if not info.filename.endswith(".npy"):
                    raise _bad(path, f"unexpected member {info.filename!r}")
                headers[info.filename[:-4]] = _member_header(zf, info, path)
            if META_KEY not in headers:
                raise _bad(path, f"no {META_KEY} metadata member (not written by rnnfast)")
            mshape, mdtype = headers[META_KEY]
            if mdtype != np.uint8 or len(mshape) != 1 or mshape[0] > MAX_META_BYTES:
                raise _bad(path, f"metadata member has dtype {mdtype} and shape {mshape}")
            meta = _parse_meta(npz[META_KEY].tobytes(), path)
            expected = {a["name"]: a for a in meta["arrays"]}
            if set(expected) != set(headers) - {META_KEY}:
                raise _bad(path, f"members {sorted(set(headers) - {META_KEY})} do not match "
                           f"the arrays listed in its metadata {sorted(expected)}")
            for name, a in expected.items():
                shape, dtype = headers[name]
                if list(shape) != a["shape"] or dtype.name != a["dtype"]:
                    raise _bad(path, f"member {name!r} has shape {shape} and dtype {dtype}, "
                               f"its metadata says {tuple(a['shape'])} and {a['dtype']}")
            arrays = {name: npz[name] for name in expected}
    except ValueError as exc:
        if str(exc).startswith("path: "):
            raise
        raise _bad(path, str(exc)) from exc
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, NotImplementedError,
            RuntimeError) as exc:
        raise _bad(path, f"{type(exc).__name__}: {exc}") from exc
    return meta, arrays


def _parse_meta(blob, path):
    try:
        meta = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _bad(path, f"its metadata is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _bad(path, "its metadata does not say format 'rnnfast'")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise _bad(path, f"format version {version!r}" + (
            " was written by a newer rnnfast" if newer else "") +
            f"; this rnnfast reads version {FORMAT_VERSION}")
    if not isinstance(meta.get("class"), str) or not isinstance(meta.get("config"), dict):
        raise _bad(path, "its metadata lacks a class name or a config")
    arrays = meta.get("arrays")
    if not isinstance(arrays, list) or not all(
            isinstance(a, dict) and isinstance(a.get("name"), str)
            and isinstance(a.get("shape"), list) and isinstance(a.get("dtype"), str)
            for a in arrays):
        raise _bad(path, "its metadata has no valid list of arrays")
    if not isinstance(meta.get("metadata", {}), dict):
        raise _bad(path, "its user metadata is not a dict")
    return meta


def _config_size_problem(config, total):
    """Sanity guard before any constructor allocates: a size in the config
    cannot exceed the `total` number of values stored.  Returns why, or None."""
    def walk(value, key):
        if isinstance(value, dict):
            items = value.items()
        elif isinstance(value, list):
            items = ((key, v) for v in value)
        else:
            if isinstance(value, int) and not isinstance(value, bool) and \
                    ("size" in key or key.startswith("num_")) and value > max(total, 1):
                return f"config {key}={value} exceeds the {total} values it stores"
            return None
        for k, v in items:
            why = walk(v, k)
            if why is not None:
                return why
        return None
    return walk(config, "")


def _instantiate(cls, config):
    """How `load` rebuilds an object: ``cls.from_config(config)`` when the
    class has one, else ``cls(**config)``."""
    if hasattr(cls, "from_config"):
        return cls.from_config(config)
    return cls(**config)


def _build(meta, arrays, path):
    reg = _registry()
    cls = reg.get(meta["class"])
    if cls is None:
        raise _bad(path, f"unknown class {meta['class']!r}; known: {', '.join(sorted(reg))}")
    config = meta["config"]
    why = _config_size_problem(config, sum(a.size for a in arrays.values()))
    if why is not None:
        raise _bad(path, why)
    try:
        obj = _instantiate(cls, config)
    except _REBUILD_ERRORS as exc:
        raise _bad(path, f"{meta['class']} refused its config {config}: {exc}") from exc
    _copy_params(obj, meta, arrays, path)
    return obj


def _params_problem(arrays, labels, expected, class_name):
    """Why the parameter `arrays` (named by `labels`) cannot be the params of
    a `class_name` whose rebuilt params are `expected` (anything with .shape
    and .dtype), or None.  The one check of parameters: `load` makes it
    before copying a file's arrays, `save` before writing an object's."""
    if len(arrays) != len(expected):
        return (f"params has {len(arrays)} arrays; a {class_name} with this config "
                f"has {len(expected)}")
    for i, (label, arr, p) in enumerate(zip(labels, arrays, expected)):
        if arr.shape != p.shape or arr.dtype != p.dtype:
            return (f"{label} has shape {arr.shape} and dtype {arr.dtype}; params[{i}] of "
                    f"the rebuilt {class_name} has shape {p.shape} and dtype {p.dtype}")
        if not np.isfinite(arr).all():
            return f"{label} contains NaN or Inf"
    return None


def _copy_params(obj, meta, arrays, path):
    names = [n for n in (a["name"] for a in meta["arrays"]) if n.startswith("param.")]
    params = list(obj.params)
    if names != _param_names(len(params)):
        raise _bad(path, f"it stores {len(names)} parameter arrays; a {meta['class']} with "
                   f"this config has {len(params)}")
    why = _params_problem([arrays[n] for n in names], names, params, meta["class"])
    if why is not None:
        raise _bad(path, why)
    for name, p in zip(names, params):
        p[...] = arrays[name]


def load(path):
    """Rebuild the network, cell, Time layer or model saved at `path` (see
    the module doc).  It comes back in training mode, as a new one; a
    stateful network or Time layer starts from a zero state."""
    meta, arrays = _read(path)
    return _build(meta, arrays, path)


def read_metadata(path):
    """The whole checked metadata dict of a file (its ``"metadata"`` key holds
    what was passed to `save`), without rebuilding the object."""
    return _read(path)[0]


# --------------------------------------------------------------- checkpoints
def _optimizer_payload(optimizer):
    """An rnnfast.optim optimizer: its scalar attributes and ``state`` (a list
    of tuples of arrays, or None)."""
    scalars = {k: v for k, v in vars(optimizer).items()
               if not k.startswith("_") and k != "state"
               and (v is None or isinstance(v, (bool, int, float, str)))}
    arrays, layout = {}, None
    state = getattr(optimizer, "state", None)
    if state is not None:
        layout = []
        for i, entry in enumerate(state):
            entry = tuple(entry)
            layout.append(len(entry))
            for k, a in enumerate(entry):
                a = np.ascontiguousarray(a)
                why = _dtype_problem(a.dtype)
                if why is not None:             # load would refuse the file
                    raise ValueError(f"optimizer: state[{i}][{k}] {why}")
                arrays[f"optimizer.{i:03d}.{k}"] = a
    return arrays, {"class": type(optimizer).__name__, "scalars": scalars, "layout": layout}


def _other_model(path, saved_class, saved, name, config):
    """Why a checkpoint cannot go into this model: the settings that differ
    (the whole configs when the classes differ)."""
    head = f"model: the checkpoint {_fspath(path)!r} was written from "
    if saved_class != name or not isinstance(saved, dict):
        return (f"{head}a {saved_class} with config {saved}; got a {name} with config "
                f"{config}")
    missing = object()
    diff = [k for k in sorted(set(saved) | set(config))
            if saved.get(k, missing) != config.get(k, missing)]

    def show(cfg):
        return ", ".join(f"{k}={cfg[k]!r}" if k in cfg else f"no {k}" for k in diff)
    return (f"{head}a {saved_class} with {show(saved)}; the model given has {show(config)} "
            "(resume with the settings of the run that wrote it)")


def _restore_optimizer(optimizer, info, arrays, path):
    if info is None:
        raise _bad(path, "it holds no optimizer state")
    if info.get("class") != type(optimizer).__name__:
        raise ValueError(f"optimizer: the checkpoint holds the state of a "
                         f"{info.get('class')}, got a {type(optimizer).__name__}")
    current = vars(optimizer)
    for k, v in info.get("scalars", {}).items():
        if k in current and (current[k] is None or v is None or
                             isinstance(v, type(current[k])) or
                             isinstance(current[k], float) and isinstance(v, int)):
            setattr(optimizer, k, v)
    layout = info.get("layout")
    if layout is None:
        optimizer.state = None
    else:
        optimizer.state = [tuple(arrays[f"optimizer.{i:03d}.{k}"].copy() for k in range(n))
                           for i, n in enumerate(layout)]


def save_checkpoint(path, model, optimizer=None, state=None, metadata=None,
                    extra_arrays=None):
    """Atomically write `model` (as `save` does, so `load` reads it back as a
    model), the optimizer's state, a JSON-able training `state` (epoch,
    RNG state, history, ...) and `extra_arrays`, a list of float arrays kept
    beside them (a trainer's best weights).  Refuses, writing nothing, what
    `save` refuses."""
    arrays, meta = _object_payload(model)
    opt_info = None
    if optimizer is not None:
        opt_arrays, opt_info = _optimizer_payload(optimizer)
        arrays.update(opt_arrays)
    if extra_arrays is not None and not isinstance(extra_arrays, (list, tuple)):
        raise TypeError(f"extra_arrays: expected a list of arrays, got "
                        f"{type(extra_arrays).__name__}")
    for i, a in enumerate(extra_arrays or ()):
        a = np.ascontiguousarray(a)
        if a.dtype.name not in _FLOAT_KINDS:     # what load_checkpoint gives back
            raise TypeError(f"extra_arrays[{i}]: expected float32 or float64, got {a.dtype}")
        arrays[f"{_EXTRA_PREFIX}{i:03d}"] = a
    meta["metadata"] = _user_metadata(metadata)
    meta["checkpoint"] = {"optimizer": opt_info, "state": _jsonable(state or {}, "state")}
    meta["arrays"] = _describe_arrays(arrays)
    _atomic_write(path, arrays, meta)


def load_checkpoint(path, model=None, optimizer=None):
    """Read a checkpoint.  With `model`, its params are overwritten in place
    (the checkpoint's class and config must match it); without, the model is
    rebuilt.  With `optimizer`, its state is restored.  Returns a dict with
    "model", "state" (the training state saved), "metadata" and
    "extra_arrays" (save_checkpoint's, [] if none)."""
    meta, arrays = _read(path)
    ckpt = meta.get("checkpoint")
    if not isinstance(ckpt, dict):
        raise _bad(path, "it is a saved model, not a training checkpoint")
    if model is None:
        model = _build(meta, arrays, path)
    else:
        name, config = _class_name(model), get_config(model)
        if name != meta["class"] or config != meta["config"]:
            raise ValueError(_other_model(path, meta["class"], meta["config"], name, config))
        _copy_params(model, meta, arrays, path)
    if optimizer is not None:
        _restore_optimizer(optimizer, ckpt.get("optimizer"), arrays, path)
    extra = [arrays[k] for k in sorted(arrays) if k.startswith(_EXTRA_PREFIX)]
    if any(a.dtype.name not in _FLOAT_KINDS for a in extra):
        raise _bad(path, "its extra arrays are not float32 or float64")
    return {"model": model, "state": ckpt.get("state", {}),
            "metadata": meta.get("metadata", {}), "extra_arrays": extra}
