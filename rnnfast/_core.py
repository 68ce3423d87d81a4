"""One direction of one recurrent layer over a whole sequence: the bridge
between the Python layers and the Cython kernels.

`forward` allocates the buffers a kernel saves for backward (their shapes
are written down in src/_seq.pxd and each src/_<cell>.pyx) and runs the
kernel once; `backward` runs the matching BPTT kernel once.  Everything
here works on arrays that the caller has already checked (rnnfast._validation).
Cells, Time layers and networks all go through these two functions.
"""
import ctypes

import numpy as np

from . import _gru, _lstm, _rnn
from ._layout import N_GATES
from ._validation import MAX_BLAS_INDEX, check_blas_size

_EMPTY = {np.dtype(np.float32): np.empty((0, 0, 0), np.float32),
          np.dtype(np.float64): np.empty((0, 0, 0), np.float64)}


class _Scratch:
    """The kernels' internal buffers (gates, saved states, work), kept
    between calls for reuse, a call's whole set at a time.

    A fresh multi-megabyte np.empty is a new mapping whose pages fault in on
    first touch: 5-8 % of an LSTM training step at the `small`
    configuration went to exc_page_fault and clear_page (perf,
    docs/performance.md).  A set comes back here once nothing can read it
    any more: after an inference forward, or when backward has consumed a
    cache (whose fields are then cleared).  Sets are keyed by what decides
    their shapes, so a call takes its set with one lookup (taking and giving
    back array by array was ~5 us of a one-step call).  At most `max_bytes`
    are kept; beyond that the oldest go back to the allocator."""

    def __init__(self, max_bytes=1 << 30):
        self.max_bytes = max_bytes
        self._free = {}              # key -> [(bytes, arrays)], oldest key first
        self._bytes = 0

    def take(self, key):
        """(nbytes, arrays) kept under `key`, or None: the caller then makes
        a set (`new_set`)."""
        stack = self._free.get(key)
        if stack:
            try:
                entry = stack.pop()          # atomic under the GIL: no two
            except IndexError:               # callers get the same set
                return None
            self._bytes -= entry[0]
            return entry
        return None

    @staticmethod
    def new_set(shapes, dtype):
        bufs = tuple([np.empty(shape, dtype) for shape in shapes])
        return sum([buf.nbytes for buf in bufs]), bufs

    def give(self, key, nbytes, bufs):
        """Keep `bufs` (nbytes in all, as `take` or `new_set` said) for reuse."""
        if nbytes > self.max_bytes:
            return
        while self._bytes + nbytes > self.max_bytes and self._free:
            for old, _ in self._free.pop(next(iter(self._free))):
                self._bytes -= old
        self._free.setdefault(key, []).append((nbytes, bufs))
        self._bytes += nbytes

    def clear(self):
        self._free.clear()
        self._bytes = 0


_SCRATCH = _Scratch()

# Inference projects the inputs chunk by chunk, each chunk's steps just
# before they run, when the whole sequence's gates would take more than
# INFER_WHOLE_MAX_BYTES: chunks of INFER_CHUNK_STEPS steps for a long
# sequence (T over twice that), else of INFER_SHORT_CHUNK_STEPS (when T is
# over twice that); the gates buffer is then (N, chunk, G) whatever T
# (src/_seq.pxd).  Long sequences: chunks save memory at the same speed
# (benchmarks/infer_chunks.py, docs/performance.md item 24).  Shorter ones
# of more than 16 MB: 16-step chunks keep the projected gates in cache
# until their step reads them, where the whole sequence's went out to
# memory and back (LSTM `medium`, N = 64, T = 100, 26 MB: ~10 % faster on
# AVX-512, docs/performance.md item 40); below that one product over all
# N*T rows is as fast or faster (LSTM N = 32, T = 35, D = H = 128: 16-step
# chunks ~6 % slower).
# Training keeps all T steps (backward needs them).
INFER_CHUNK_STEPS = 256
INFER_SHORT_CHUNK_STEPS = 16
INFER_WHOLE_MAX_BYTES = 16 << 20


def _gates_steps(N, T, G, itemsize, training):
    if training or N * T * G * itemsize <= INFER_WHOLE_MAX_BYTES:
        return T
    chunk = INFER_CHUNK_STEPS if T > 2 * INFER_CHUNK_STEPS else INFER_SHORT_CHUNK_STEPS
    return chunk if T > 2 * chunk else T


class DirectionCache:
    """What backward needs from one forward of one direction."""
    __slots__ = ("cell", "xs", "Wx", "Wh", "lengths", "reverse", "options",
                 "gates", "h_prev", "c_prev", "tanh_c", "extra", "work", "empty",
                 "buffers")


def _blas_thread_getter():
    """get_num_threads of the BLAS behind scipy.linalg.cython_blas (the one
    the kernels call), found through that module's own library handle, or
    None for a BLAS we do not know.  Only read: no call changes BLAS's
    thread count (src/_threads.h)."""
    try:
        import scipy.linalg.cython_blas as cython_blas
        lib = ctypes.CDLL(cython_blas.__file__)
    except (ImportError, OSError):
        return None
    for prefix, suffix in (("scipy_openblas", ""), ("openblas", ""),
                           ("scipy_openblas", "64_"), ("openblas", "64_")):
        get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
        if get is not None:
            get.restype, get.argtypes = ctypes.c_int, []
            return get
    return None


_GET_BLAS_THREADS = _blas_thread_getter()


# step_loop_threads(): threads for the kernels' step loops, as many as BLAS
# has now, so that threadpool_limits and OPENBLAS_NUM_THREADS govern both
# (1 when the BLAS is not one we can ask).  Compiled: it calls the getter
# through its C address, not through ctypes (asked once or twice a call).
_rnn.set_blas_threads_getter(_GET_BLAS_THREADS)
step_loop_threads = _rnn.blas_threads


_PACKED = [True]      # as last set by use_packed_gemm (the CPU may still lack it)


def _packed_in_use():
    return _PACKED[0] and _PACKED_CPU


def use_packed_gemm(on=True, dw=None):
    """Run the products the kernels can do themselves (the per-step
    recurrent products, the input projection, dX and the parameter
    gradients dWx, dWh) on rnnfast's packed float32 micro-kernel
    (src/_gemm.h; the default where the CPU has AVX2+FMA), or all products
    on BLAS (on=False).  `dw` (default: `on`) switches the parameter-
    gradient products alone.  For A/B timings and tests; returns whether
    the packed kernel is in use."""
    _PACKED[0] = bool(on)
    return all([mod.use_packed_gemm(on, dw) for mod in (_rnn, _lstm, _gru)])


_PACKED_CPU = use_packed_gemm(True)


def use_wide_tiles(on=True):
    """Run the packed products on the AVX-512 tiles, two 16-column panels a
    tile (the default where the CPU has AVX-512F and RNNFAST_NO_AVX512 is
    unset), or on the AVX2 tiles (on=False).  The two give bitwise the same
    results.  For A/B timings and tests; returns whether the wide tiles
    run."""
    return all([mod.use_wide_tiles(on) for mod in (_rnn, _lstm, _gru)])


def kernel_name():
    """The products' kernel as it stands in this process: "AVX-512 tiles",
    "AVX2 tiles" (rnnfast's packed float32 kernel, src/_gemm.h) or "BLAS"
    (float64 always uses BLAS)."""
    if not _packed_in_use():
        return "BLAS"
    return "AVX-512 tiles" if _rnn.wide_tiles_in_use() else "AVX2 tiles"


def use_thread_pool(on=True):
    """Split kernel calls over threads kept between calls (src/_threads.h;
    the default on Linux) or over threads created per call (on=False).  For
    A/B timings and tests; returns whether the pool is in use."""
    return all([mod.use_thread_pool(on) for mod in (_rnn, _lstm, _gru)])


def forward(cell, xs, Wx, Wh, b, h, c, lengths, reverse, out, offset,
            training, relu=False, reset_after=False, threads=None):
    """Run `cell` over xs (N, T, D) starting from h (and c), both (N, H),
    which are overwritten with the final state.  Writes out[:, :, offset:
    offset+H].  Returns a DirectionCache when training, else None.
    threads: step_loop_threads() of this call (asked here when None)."""
    N, T, D = xs.shape
    H = Wh.shape[0]
    G = N_GATES[cell] * H
    if N * T * G > MAX_BLAS_INDEX or N * T * D > MAX_BLAS_INDEX:
        check_blas_size("xs", **{"N*T*G*H": N * T * G, "N*T*D": N * T * D})
    if N == 0 or T == 0:
        out[:, :, offset:offset + H] = 0
        return _empty_cache(cell, xs, Wx, Wh, lengths, reverse) if training else None
    dt = xs.dtype
    Tg = _gates_steps(N, T, G, dt.itemsize, training)
    key = (cell, N, T, Tg, G, training, dt)
    entry = _SCRATCH.take(key)
    if entry is None:
        entry = _SCRATCH.new_set(_buffer_shapes(cell, N, T, Tg, H, G, training), dt)
    bufs = entry[1]
    gates, work = bufs[0], bufs[1]
    # Inference writes no saved activations: the kernels take empty arrays.
    saved = bufs[2:] if training else (_EMPTY[dt],) * 3
    if threads is None:
        threads = step_loop_threads()
    extra = None
    if cell == "lstm":
        h_prev, c_prev, tanh_c = saved[:3]
        _lstm.lstm_forward(xs, Wx, Wh, b, h, c, lengths, reverse, out, offset,
                           gates, h_prev, c_prev, tanh_c, work, training, threads)
    elif cell == "gru":
        (h_prev, extra), c_prev, tanh_c = saved[:2], None, None
        _gru.gru_forward(xs, Wx, Wh, b.reshape(-1), h, lengths, reverse, reset_after,
                         out, offset, gates, h_prev, extra, work, training, threads)
    else:
        h_prev, c_prev, tanh_c = saved[0], None, None
        _rnn.rnn_forward(xs, Wx, Wh, b, h, lengths, reverse, relu, out, offset,
                         gates, h_prev, work, training, threads)
    if not training:
        _SCRATCH.give(key, *entry)
        return None
    cache = DirectionCache()
    cache.cell, cache.xs, cache.Wx, cache.Wh = cell, xs, Wx, Wh
    cache.lengths, cache.reverse = lengths, reverse
    cache.options = (relu, reset_after)
    cache.gates, cache.h_prev, cache.c_prev, cache.tanh_c = gates, h_prev, c_prev, tanh_c
    cache.extra, cache.work, cache.empty = extra, work, False
    cache.buffers = (key, *entry)
    return cache


def _buffer_shapes(cell, N, T, Tg, H, G, training):
    """Shapes of a call's internal buffers: gates (N, Tg, G), Tg = T or in
    inference of a long sequence a chunk (_gates_steps); work; then what
    training saves for backward, each (N, T, H): h_prev, c_prev and tanh_c
    (LSTM), h_prev and extra (GRU), h_prev (RNN)."""
    shapes = [(N, Tg, G), (N, 4 * H if cell == "gru" else G)]
    if training:
        shapes += [(N, T, H)] * {"lstm": 3, "gru": 2, "rnn": 1}[cell]
    return shapes


def _empty_cache(cell, xs, Wx, Wh, lengths, reverse):
    cache = DirectionCache()
    cache.cell, cache.xs, cache.Wx, cache.Wh = cell, xs, Wx, Wh
    cache.lengths, cache.reverse, cache.empty = lengths, reverse, True
    return cache


def backward(cache, dout, offset, dh, dc, dWx, dWh, db, dxs, accumulate_dx, threads=None):
    """BPTT of one `forward`.  dh (and dc) hold dL/d(final state) on entry
    and dL/d(initial state) on return.  Overwrites dWx, dWh, db; writes dxs,
    or adds to it when accumulate_dx.  Consumes the cache (the kernel
    overwrites the saved gates with their gradients).  threads: as for
    `forward`."""
    if cache.empty:                   # empty batch or T = 0
        dWx[...] = 0
        dWh[...] = 0
        db[...] = 0
        if not accumulate_dx:
            dxs[...] = 0
        return
    relu, reset_after = cache.options
    if threads is None:
        threads = step_loop_threads()
    if cache.cell == "lstm":
        _lstm.lstm_backward(cache.xs, cache.Wx, cache.Wh, cache.lengths, cache.reverse,
                            dout, offset, dh, dc, cache.gates, cache.h_prev,
                            cache.c_prev, cache.tanh_c, dWx, dWh, db, dxs,
                            accumulate_dx, cache.work, threads)
    elif cache.cell == "gru":
        _gru.gru_backward(cache.xs, cache.Wx, cache.Wh, cache.lengths, cache.reverse,
                          reset_after, dout, offset, dh, cache.gates, cache.h_prev,
                          cache.extra, dWx, dWh, db.reshape(-1), dxs, accumulate_dx,
                          cache.work, threads)
    else:
        _rnn.rnn_backward(cache.xs, cache.Wx, cache.Wh, cache.lengths, cache.reverse,
                          relu, dout, offset, dh, cache.gates, cache.h_prev,
                          dWx, dWh, db, dxs, accumulate_dx, cache.work,
                          threads)
    # The kernel has consumed the cache (gates now hold their gradients);
    # its buffers go back for the next call.
    _SCRATCH.give(*cache.buffers)
    cache.gates = cache.h_prev = cache.c_prev = cache.tanh_c = cache.extra = cache.work = None
    cache.buffers = None
