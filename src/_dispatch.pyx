# One direction of one recurrent layer over a whole sequence, compiled:
# the bridge between the Python layers and the three kernels' defs.
#
# `forward` takes a call's internal buffers from the scratch cache (their
# shapes: buffer_shapes below, src/_seq.pxd and each src/_<cell>.pyx), runs
# the cell's kernel once and, when training, returns what backward needs;
# `backward` runs the matching BPTT kernel once and gives the buffers back.
# Everything here works on arrays that the caller has already checked
# (rnnfast._validation).  rnnfast._core re-exports both.  A network's
# common inference forward skips both and the defs: network_forward_common
# checks its arrays once and `_infer_layers` calls each kernel module's
# compiled entry on pointers (src/_seqfwd.pxd).
#
# Why compiled: this is the fixed cost of every call.  As Python it was
# ~1.2 us of a one-step RNN inference call of 4.4 us at N = 8, D = H = 64
# (the scratch's take and give, the key, the dispatch; docs/performance.md
# item 50), which is what kept T = 10 slower a token than longer sequences.
cimport numpy as cnp
from cpython.dict cimport PyDict_GetItem
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.stdlib cimport free
from _arrays cimport arrays_match, float_array_match
from _seqfwd cimport SeqFwd, infer_fn, INFER_CAPSULE, raise_if_nonfinite
from _settings cimport check_setting
from cpython.object cimport PyObject

import operator

import numpy as np

from rnnfast import _gru, _lstm, _rnn

cnp.import_array()

cdef extern from "stdlib.h" nogil:
    int posix_memalign(void** p, size_t alignment, size_t size)

# The kernels' defs, looked up once (use_kernels).
cdef object _rnn_forward, _rnn_backward, _lstm_forward, _lstm_backward
cdef object _gru_forward, _gru_backward
# Their compiled inference entries (src/_seqfwd.pxd), by cell code; NULL
# for another build's modules, whose calls then go through the defs.
cdef infer_fn _infer_entries[3]
cdef bint _direct_infer_on = True
cdef object _step_loop_threads = _rnn.blas_threads


def use_kernels(rnn, lstm, gru):
    """Call the kernel defs of these three modules from now on (another
    build's, for benchmarks/ab_inprocess.py; rnnfast's own at import).
    The calls pass check_xs and dout_name by position: a keyword dict
    measured 0.19 us a call more."""
    global _rnn_forward, _rnn_backward, _lstm_forward, _lstm_backward
    global _gru_forward, _gru_backward
    _rnn_forward = _with_xs_check(rnn.rnn_forward)
    _lstm_forward = _with_xs_check(lstm.lstm_forward)
    _gru_forward = _with_xs_check(gru.gru_forward)
    # dout's place among each backward def's arguments
    _rnn_backward = _with_dout_check(rnn.rnn_backward, 6)
    _lstm_backward = _with_dout_check(lstm.lstm_backward, 5)
    _gru_backward = _with_dout_check(gru.gru_backward, 6)
    own = rnn is _rnn and lstm is _lstm and gru is _gru
    for code, module in enumerate((rnn, lstm, gru)):
        _infer_entries[code] = (<infer_fn> PyCapsule_GetPointer(module.INFER_ENTRY,
                                                                INFER_CAPSULE)
                                if own else NULL)


def use_direct_infer(bint on):
    """Run a network's common inference forward through the kernels'
    compiled entries (on, the default; _infer_layers) or through the
    layers' path with the kernels' defs, as training does.  For A/B
    timings and tests."""
    global _direct_infer_on
    _direct_infer_on = on


def _with_xs_check(f):
    """f when it takes check_xs (xs tested as it is projected).  An older
    build's def does not: then a def that takes it and tests xs itself,
    before it calls f without it, as the dispatcher did before the kernels
    tested xs (so that A/B timings against such a build stay fair)."""
    if _takes(f, "check_xs"):
        return f

    def forward_testing_xs(*args):
        # No negative indices: this module is compiled with wraparound off.
        cdef Py_ssize_t last = len(args) - 1
        if args[last]:
            _refuse_nonfinite(args[0], "xs")
        return f(*args[:last])
    return forward_testing_xs


def _with_dout_check(f, Py_ssize_t dout_at):
    """As _with_xs_check, for a backward def's dout_name (dout is its
    argument dout_at)."""
    if _takes(f, "dout_name"):
        return f

    def backward_testing_dout(*args):
        cdef Py_ssize_t last = len(args) - 1       # as in _with_xs_check
        if args[last] is not None:
            _refuse_nonfinite(args[dout_at], args[last])
        return f(*args[:last])
    return backward_testing_dout


def _refuse_nonfinite(arr, name):
    from rnnfast._validation import check_array
    check_array(arr, name, arr.dtype, arr.shape)


def _takes(f, name):
    """Whether the def f has an argument `name` (False when that cannot be
    read: the array is then tested before the call, which is always
    right)."""
    code = getattr(f, "__code__", None)
    return code is not None and name in code.co_varnames[:code.co_argcount]


use_kernels(_rnn, _lstm, _gru)

cdef enum:
    RNN = 0
    LSTM = 1
    GRU = 2
cdef dict _CELL_CODE = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
cdef int[3] _N_GATES = [1, 4, 3]


cdef inline int _cell_code(cell) except -1:
    """RNN, LSTM or GRU for a cell's name; a ValueError naming it otherwise.
    (The range check also shows the compiler that the codes index the
    three-entry tables in bounds.)"""
    cdef int code = _CELL_CODE.get(cell, -1)
    if code < RNN or code > GRU:
        raise ValueError(f"cell must be one of {sorted(_CELL_CODE)}, got {cell!r}")
    return code

# Inference projects the inputs chunk by chunk, each chunk's steps just
# before they run, when the whole sequence's gates would take more than a
# limit: for a long sequence (T over twice infer_chunk_steps), chunks of
# infer_chunk_steps steps over infer_long_whole_max_bytes; for a shorter
# one, chunks of infer_short_chunk_steps (when T is over twice that) over
# infer_whole_max_bytes.  The gates buffer is then (N, chunk, G) whatever
# T (src/_seq.pxd).  Long sequences: chunks save memory at the same speed
# or faster (benchmarks/infer_chunks.py, docs/performance.md item 24); from
# 1 MB of gates on, GRU N = 8, D = H = 64, T = 1000 (6 MB) ran 1.15x and
# N = 32, D = H = 32 1.30x faster in 256-step chunks than whole, LSTM
# 1.00-1.10x, RNN as fast (item 95).  Shorter ones of more than 16 MB:
# 16-step chunks keep the projected gates in cache until their step reads
# them, where the whole sequence's went out to memory and back (LSTM
# `medium`, N = 64, T = 100, 26 MB: ~10 % faster on AVX-512, item 40);
# below that one product over all N*T rows is as fast or faster (LSTM N =
# 32, T = 35, D = H = 128: 16-step chunks ~6 % slower).  Training keeps
# all T steps (backward needs them).
cdef Py_ssize_t infer_chunk_steps = 256
cdef Py_ssize_t infer_short_chunk_steps = 16
cdef Py_ssize_t infer_whole_max_bytes = 16 << 20
cdef Py_ssize_t infer_long_whole_max_bytes = 1 << 20


def infer_chunking(chunk_steps=None, short_chunk_steps=None, whole_max_bytes=None,
                   long_whole_max_bytes=None):
    """Set those given (not None) of the four limits above; return all
    four as (chunk_steps, short_chunk_steps, whole_max_bytes,
    long_whole_max_bytes).  For benchmarks and tests."""
    global infer_chunk_steps, infer_short_chunk_steps, infer_whole_max_bytes
    global infer_long_whole_max_bytes
    check_setting("chunk_steps", chunk_steps, 1)
    check_setting("short_chunk_steps", short_chunk_steps, 1)
    check_setting("whole_max_bytes", whole_max_bytes, 0)
    check_setting("long_whole_max_bytes", long_whole_max_bytes, 0)
    if chunk_steps is not None:
        infer_chunk_steps = chunk_steps
    if short_chunk_steps is not None:
        infer_short_chunk_steps = short_chunk_steps
    if whole_max_bytes is not None:
        infer_whole_max_bytes = whole_max_bytes
    if long_whole_max_bytes is not None:
        infer_long_whole_max_bytes = long_whole_max_bytes
    return (infer_chunk_steps, infer_short_chunk_steps, infer_whole_max_bytes,
            infer_long_whole_max_bytes)


cpdef Py_ssize_t gates_steps(Py_ssize_t N, Py_ssize_t T, Py_ssize_t G, Py_ssize_t itemsize,
                             bint training):
    """How many steps of gates a call keeps: T, or a chunk (see above)."""
    cdef Py_ssize_t nbytes = N * T * G * itemsize
    if training:
        return T
    if T > 2 * infer_chunk_steps:
        return infer_chunk_steps if nbytes > infer_long_whole_max_bytes else T
    if nbytes > infer_whole_max_bytes and T > 2 * infer_short_chunk_steps:
        return infer_short_chunk_steps
    return T


def buffer_shapes(cell, Py_ssize_t N, Py_ssize_t T, Py_ssize_t Tg, Py_ssize_t H,
                  Py_ssize_t G, bint training):
    """Shapes of a call's internal buffers: gates (N, Tg, G), Tg = T or in
    inference of a long sequence a chunk (gates_steps); work; then what
    training saves for backward, each (N, T, H): h_prev, c_prev and tanh_c
    (LSTM), h_prev and extra (GRU), h_prev (RNN)."""
    cdef int code = _cell_code(cell)
    shapes = [(N, Tg, G), (N, 4 * H if code == GRU else G)]
    if training:
        shapes += [(N, T, H)] * (3 if code == LSTM else 2 if code == GRU else 1)
    return shapes


def aligned_empty(shape, dtype):
    """np.empty(shape, dtype) whose data starts on a 64-byte line.  A large
    np.empty starts 16 bytes into a page (the allocator's header), so
    every 64-byte row of a buffer with rows of a multiple of 64 bytes
    straddled two cache lines: each AVX-512 load and store of the tiles
    and passes then touched two lines (docs/performance.md item 187)."""
    dt = np.dtype(dtype)
    if dt.hasobject:
        raise TypeError(f"aligned_empty: dtype: expected a dtype without objects, got {dt}")
    try:
        shape = (operator.index(shape),) if not isinstance(shape, tuple) and not isinstance(
            shape, list) else tuple([operator.index(d) for d in shape])
    except TypeError:
        raise TypeError(f"aligned_empty: shape: expected an integer or a sequence of "
                        f"integers, got {shape!r}") from None
    nbytes = dt.itemsize               # a Python int: np.empty refuses a size too big
    for d in shape:
        if d < 0:
            raise ValueError(f"aligned_empty: shape: expected sizes >= 0, got {shape}")
        nbytes *= d
    try:
        raw = np.empty(nbytes + 64, np.uint8)
    except ValueError:
        raise ValueError(f"aligned_empty: shape {shape} of {dt}: {nbytes} bytes, more than "
                         f"an array can hold") from None
    cdef Py_ssize_t skip = (64 - <Py_ssize_t> (raw.ctypes.data % 64)) % 64
    return raw[skip:skip + nbytes].view(dt).reshape(shape)


cdef class Scratch:
    """The kernels' internal buffers (gates, saved states, work), kept
    between calls for reuse, a call's whole set at a time.

    A fresh multi-megabyte np.empty is a new mapping whose pages fault in on
    first touch: 5-8 % of an LSTM training step at the `small`
    configuration went to exc_page_fault and clear_page (perf,
    docs/performance.md).  A set comes back here once nothing can read it
    any more: after an inference forward, or when backward has consumed a
    cache (whose fields are then cleared).  Sets are keyed by what decides
    their shapes, so a call takes its set with one lookup.  At most
    `max_bytes` are kept; beyond that the oldest go back to the allocator.
    Every method runs under the GIL without calling back into Python, so
    no two callers get the same set.

    Beside the sets, one raw block of memory (take_block, give_block) for
    the direct inference path (_infer_layers), whose gates and work are
    pointers, not arrays: no key to build and hash, no arrays to make.  It
    is kept while of at most `max_block_bytes`, apart from `max_bytes`."""
    cdef public Py_ssize_t max_bytes
    cdef readonly dict _free          # key -> [(bytes, arrays)], oldest key first
    cdef Py_ssize_t _bytes
    cdef public Py_ssize_t max_block_bytes
    cdef void* _block                 # NULL while a call holds it (or none yet)
    cdef Py_ssize_t _block_bytes

    def __init__(self, Py_ssize_t max_bytes=1 << 30, Py_ssize_t max_block_bytes=32 << 20):
        self.max_bytes = max_bytes
        self._free = {}
        self._bytes = 0
        self.max_block_bytes = max_block_bytes
        self._block = NULL
        self._block_bytes = 0

    def __dealloc__(self):
        free(self._block)

    cdef void* take_block(self, Py_ssize_t nbytes, Py_ssize_t* got) noexcept:
        """The kept block if it has nbytes, else a new one of nbytes (64-byte
        aligned, as the kernels' packed buffers); NULL when out of memory.
        *got: the block's size, for give_block."""
        cdef void* p = self._block
        if p != NULL and self._block_bytes >= nbytes:
            self._block = NULL
            got[0] = self._block_bytes
            return p
        p = NULL
        if posix_memalign(&p, 64, nbytes if nbytes > 0 else 64) != 0:
            return NULL
        got[0] = nbytes
        return p

    cdef void give_block(self, void* p, Py_ssize_t nbytes) noexcept:
        """Keep p (of nbytes, as take_block said) for the next call, unless
        over max_block_bytes or smaller than the block kept already (two
        callers at once each had one)."""
        if nbytes > self.max_block_bytes or (self._block != NULL
                                             and self._block_bytes >= nbytes):
            free(p)
            return
        free(self._block)
        self._block, self._block_bytes = p, nbytes

    @property
    def block_bytes(self):
        """The size of the block kept now (0: none)."""
        return self._block_bytes if self._block != NULL else 0

    cpdef tuple take(self, key):
        """(nbytes, arrays) kept under `key`, or None: the caller then makes
        a set (`new_set`)."""
        cdef PyObject* found = PyDict_GetItem(self._free, key)
        cdef list stack
        if found == NULL:
            return None
        stack = <list> found
        if not stack:
            return None
        entry = stack.pop()
        self._bytes -= <Py_ssize_t> (<tuple> entry)[0]
        return entry

    @staticmethod
    def new_set(shapes, dtype):
        if not _align_scratch:          # use_aligned_scratch(False): A/B only
            bufs = tuple([np.empty(shape, dtype) for shape in shapes])
        else:
            bufs = tuple([aligned_empty(shape, dtype) for shape in shapes])
        return (sum([buf.nbytes for buf in bufs]), bufs)

    cpdef give(self, key, Py_ssize_t nbytes, tuple bufs):
        """Keep `bufs` (nbytes in all, as `take` or `new_set` said) for reuse."""
        cdef PyObject* found
        if nbytes > self.max_bytes:
            return
        while self._bytes + nbytes > self.max_bytes and self._free:
            for old, _ in self._free.pop(next(iter(self._free))):
                self._bytes -= <Py_ssize_t> old
        found = PyDict_GetItem(self._free, key)
        if found == NULL:
            self._free[key] = [(nbytes, bufs)]
        else:
            (<list> found).append((nbytes, bufs))
        self._bytes += nbytes

    def clear(self):
        self._free.clear()
        self._bytes = 0
        free(self._block)
        self._block, self._block_bytes = NULL, 0


SCRATCH = Scratch()
cdef Scratch _scratch = SCRATCH
cdef bint _align_scratch = True
cdef Scratch _unaligned_scratch = Scratch()


def use_aligned_scratch(bint on=True):
    """The scratch sets' buffers on 64-byte lines (aligned_empty; on, the
    default) or where np.empty puts them (off), each setting with a pool of
    its own, so that an A/B turn by turn reuses its sets
    (benchmarks/ab_kernel_switches.py align).  A training call's set goes
    back to the pool it came from, whatever the switch says at its
    backward."""
    global _scratch, _align_scratch
    _align_scratch = on
    _scratch = SCRATCH if on else _unaligned_scratch
    return True

cdef object _EMPTY_F32 = np.empty((0, 0, 0), np.float32)
cdef object _EMPTY_F64 = np.empty((0, 0, 0), np.float64)


cdef class DirectionCache:
    """What backward needs from one forward of one direction."""
    cdef public object cell, xs, Wx, Wh, lengths, gates, h_prev, c_prev, tanh_c
    cdef public object extra, work, buffers
    cdef public bint reverse, relu, reset_after, empty


cpdef forward(cell, cnp.ndarray xs, Wx, cnp.ndarray Wh, b, h, c, lengths, bint reverse,
            out, Py_ssize_t offset, bint training, bint relu=False, bint reset_after=False,
            threads=None, bint check_xs=False):
    """Run `cell` over xs (N, T, D) starting from h (and c), both (N, H),
    which are overwritten with the final state.  Writes out[:, :, offset:
    offset+H].  Returns a DirectionCache when training, else None.
    threads: step_loop_threads() of this call (asked here when None).
    check_xs: refuse xs with a NaN or Inf (ValueError, as check_array
    words it), tested by the kernel as it projects xs."""
    cdef int code = _cell_code(cell)
    cdef Py_ssize_t N = cnp.PyArray_DIM(xs, 0), T = cnp.PyArray_DIM(xs, 1)
    cdef Py_ssize_t D = cnp.PyArray_DIM(xs, 2), H = cnp.PyArray_DIM(Wh, 0)
    cdef Py_ssize_t G = _N_GATES[code] * H, Tg
    cdef DirectionCache cache
    if N * T * G > 2 ** 31 - 1 or N * T * D > 2 ** 31 - 1:
        from rnnfast._validation import check_blas_size
        check_blas_size("xs", **{"N*T*G*H": N * T * G, "N*T*D": N * T * D})
    if N == 0 or T == 0:
        out[:, :, offset:offset + H] = 0
        return _empty_cache(cell, xs, Wx, Wh, lengths, reverse) if training else None
    cdef int typenum = cnp.PyArray_TYPE(xs)
    Tg = gates_steps(N, T, G, cnp.PyArray_ITEMSIZE(xs), training)
    # The dtype in the key as its type number (measured: no cheaper than
    # the dtype itself, docs/performance.md item 91; kept as the simpler key).
    key = (code, N, T, Tg, G, training, typenum)
    entry = _scratch.take(key)
    if entry is None:
        entry = Scratch.new_set(buffer_shapes(cell, N, T, Tg, H, G, training),
                                <object> cnp.PyArray_DESCR(xs))
    cdef tuple bufs = (<tuple> entry)[1]
    gates, work = bufs[0], bufs[1]
    if threads is None:
        threads = _step_loop_threads()
    # Inference writes no saved activations: the kernels take empty arrays.
    empty = _EMPTY_F32 if typenum == cnp.NPY_FLOAT else _EMPTY_F64
    h_prev = c_prev = tanh_c = extra = None
    if code == LSTM:
        if training:
            h_prev, c_prev, tanh_c = bufs[2], bufs[3], bufs[4]
        _lstm_forward(xs, Wx, Wh, b, h, c, lengths, reverse, out, offset, gates,
                      h_prev if training else empty, c_prev if training else empty,
                      tanh_c if training else empty, work, training, threads, check_xs)
    elif code == GRU:
        if training:
            h_prev, extra = bufs[2], bufs[3]
        _gru_forward(xs, Wx, Wh, b.reshape(-1), h, lengths, reverse, reset_after, out,
                     offset, gates, h_prev if training else empty,
                     extra if training else empty, work, training, threads, check_xs)
    else:
        if training:
            h_prev = bufs[2]
        _rnn_forward(xs, Wx, Wh, b, h, lengths, reverse, relu, out, offset, gates,
                     h_prev if training else empty, work, training, threads, check_xs)
    if not training:
        _scratch.give(key, (<tuple> entry)[0], bufs)
        return None
    cache = DirectionCache()
    cache.cell, cache.xs, cache.Wx, cache.Wh = cell, xs, Wx, Wh
    cache.lengths, cache.reverse = lengths, reverse
    cache.relu, cache.reset_after = relu, reset_after
    cache.gates, cache.h_prev, cache.c_prev, cache.tanh_c = gates, h_prev, c_prev, tanh_c
    cache.extra, cache.work, cache.empty = extra, work, False
    # which pool it came from, to go back to (a flag, not the pool: a cache
    # is copied with its network by deepcopy)
    cache.buffers = (key, (<tuple> entry)[0], bufs, _scratch is SCRATCH)
    return cache


cdef DirectionCache _empty_cache(cell, xs, Wx, Wh, lengths, bint reverse):
    cdef DirectionCache cache = DirectionCache()
    cache.cell, cache.xs, cache.Wx, cache.Wh = cell, xs, Wx, Wh
    cache.lengths, cache.reverse, cache.empty = lengths, reverse, True
    return cache


cpdef backward(DirectionCache cache, dout, Py_ssize_t offset, dh, dc, dWx, dWh, db, dxs,
             bint accumulate_dx, threads=None, dout_name=None):
    """BPTT of one `forward`.  dh (and dc) hold dL/d(final state) on entry
    and dL/d(initial state) on return.  Overwrites dWx, dWh, db; writes dxs,
    or adds to it when accumulate_dx.  Consumes the cache (the kernel
    overwrites the saved gates with their gradients).  threads: as for
    `forward`.  dout_name: refuse a dout (all its columns) with a NaN or
    Inf, by a ValueError naming it so, as check_array words it; the kernel
    tests it as it reads it, and leaves dWx, dWh, db as they were (the
    cache is consumed all the same)."""
    if cache.empty:                   # empty batch or T = 0
        dWx[...] = 0
        dWh[...] = 0
        db[...] = 0
        if not accumulate_dx:
            dxs[...] = 0
        return
    if cache.buffers is None:
        raise RuntimeError("backward: this forward's cache was already consumed "
                           "(one backward per forward)")
    if threads is None:
        threads = _step_loop_threads()
    cdef int code = _cell_code(cache.cell)
    try:
        if code == LSTM:
            _lstm_backward(cache.xs, cache.Wx, cache.Wh, cache.lengths, cache.reverse,
                           dout, offset, dh, dc, cache.gates, cache.h_prev, cache.c_prev,
                           cache.tanh_c, dWx, dWh, db, dxs, accumulate_dx, cache.work,
                           threads, dout_name)
        elif code == GRU:
            _gru_backward(cache.xs, cache.Wx, cache.Wh, cache.lengths, cache.reverse,
                          cache.reset_after, dout, offset, dh, cache.gates, cache.h_prev,
                          cache.extra, dWx, dWh, db.reshape(-1), dxs, accumulate_dx,
                          cache.work, threads, dout_name)
        else:
            _rnn_backward(cache.xs, cache.Wx, cache.Wh, cache.lengths, cache.reverse,
                          cache.relu, dout, offset, dh, cache.gates, cache.h_prev,
                          dWx, dWh, db, dxs, accumulate_dx, cache.work, threads, dout_name)
    finally:
        _consume(cache)


cdef _consume(DirectionCache cache):
    """After the kernel has run (or refused dout, perhaps chunks into the
    call): the cache is spent, its gates overwritten with their gradients;
    its buffers go back for the next call."""
    key, nbytes, bufs, from_aligned = cache.buffers
    (<Scratch> SCRATCH if from_aligned else _unaligned_scratch).give(key, nbytes, bufs)
    cache.gates = cache.h_prev = cache.c_prev = cache.tanh_c = cache.extra = None
    cache.work = cache.buffers = None


# ------------------------------------------------------------ output pool
# The large outputs of a call (a layer's out, dL/dxs) are numpy arrays the
# caller owns; from OUTPUT_POOL_MIN_BYTES on they take their memory from
# the pool of src/_outpool.h, which gets it back when the caller drops them
# and hands it to the next call's outputs already mapped (why: the
# header).  The handler is numpy's (NEP 49): each array keeps it, so an
# array outlives any switch of it, and behaves as any other.
cdef extern from "_outpool.h":
    object rf_outpool_capsule()
    void rf_outpool_clear()
    void rf_outpool_stats(long* hits, long* misses, long* count, size_t* nbytes)

cdef extern from "numpy/arrayobject.h":
    object PyDataMem_SetHandler(object handler)

cdef object _OUTPUT_POOL = rf_outpool_capsule()
cdef bint _output_pool_on = True
OUTPUT_POOL_MIN_BYTES = 1 << 20
cdef Py_ssize_t _output_pool_min = OUTPUT_POOL_MIN_BYTES


def use_output_pool(bint on):
    """Outputs of OUTPUT_POOL_MIN_BYTES and more from the pool (the
    default) or from numpy's own allocator (on=False; arrays already made
    keep their allocator).  For A/B timings and tests."""
    global _output_pool_on
    _output_pool_on = on


def output_pool_stats():
    """{"hits", "misses": allocations from the pool so far, "blocks",
    "bytes": what it keeps now}."""
    cdef long hits, misses, count
    cdef size_t nbytes
    rf_outpool_stats(&hits, &misses, &count, &nbytes)
    return {"hits": hits, "misses": misses, "blocks": count, "bytes": nbytes}


def clear_output_pool():
    """Give the memory the pool keeps back to the allocator."""
    rf_outpool_clear()


def empty_output(Py_ssize_t a, Py_ssize_t b, Py_ssize_t c, dtype):
    """np.empty((a, b, c), dtype) for a call's output (dtype float32 or
    float64), from the output pool when large: the Time layers' out and
    dL/dxs."""
    dt = np.dtype(dtype)
    if dt != np.float32 and dt != np.float64:
        raise TypeError(f"empty_output: dtype: expected float32 or float64, got {dt}")
    if a < 0 or b < 0 or c < 0:
        raise ValueError(f"empty_output: expected sizes >= 0, got shape {(a, b, c)}")
    return _empty3(a, b, c, (<cnp.dtype> dt).type_num)


cdef cnp.ndarray _empty3(Py_ssize_t a, Py_ssize_t b, Py_ssize_t c, int typenum):
    """np.empty((a, b, c)) of typenum (float32 or float64), from the
    output pool when large."""
    cdef cnp.npy_intp dims[3]
    cdef cnp.ndarray arr
    dims[0], dims[1], dims[2] = a, b, c
    cdef Py_ssize_t itemsize = 4 if typenum == cnp.NPY_FLOAT else 8
    if not _output_pool_on or a * b * c * itemsize < _output_pool_min:
        return cnp.PyArray_EMPTY(3, dims, typenum, 0)
    old = PyDataMem_SetHandler(_OUTPUT_POOL)
    try:
        arr = cnp.PyArray_EMPTY(3, dims, typenum, 0)
    finally:
        PyDataMem_SetHandler(old)
    return arr


# ------------------------------------------------------------ networks
# The layer loops of rnnfast.networks (a stack of layers, one or two
# directions each), compiled for the same reason: the network's Python
# checks its arguments and carries its state; these run the layers.

def zero_state(Py_ssize_t layers, Py_ssize_t N, Py_ssize_t H, dtype, bint pair):
    """Zeros of shape (layers, N, H), or a pair of them (an LSTM's h, c).
    dtype: a numpy dtype (a checked cast: a type such as np.float32 is
    refused, TypeError, not read as one)."""
    cdef int typenum = (<cnp.dtype?> dtype).type_num
    cdef cnp.npy_intp dims[3]
    dims[0], dims[1], dims[2] = layers, N, H
    h = cnp.PyArray_ZEROS(3, dims, typenum, 0)
    return (h, cnp.PyArray_ZEROS(3, dims, typenum, 0)) if pair else h


cdef inline _check_param_count(list arrays, str name, Py_ssize_t num_layers,
                               Py_ssize_t num_dirs):
    """The layers index arrays[3k..3k+2] for k < num_layers * num_dirs,
    unchecked: a list of another length (a network's num_layers or
    bidirectional changed after it was built) is refused, not read past
    its end."""
    if len(arrays) != 3 * num_layers * num_dirs:
        raise ValueError(f"{name}: {len(arrays)} arrays for {num_layers} layers of "
                         f"{num_dirs} directions ([Wx, Wh, b] each); the network's sizes "
                         f"are fixed when it is built")


def network_forward(cell, cnp.ndarray xs, list params, h_n, c_n, lengths,
                    Py_ssize_t num_layers, Py_ssize_t num_dirs, Py_ssize_t H,
                    bint training, bint relu, bint reset_after, dropout_mask,
                    bint check_xs=False, size_t pack_epoch=0):
    """Run the layers over xs (N, T, D): layer l's directions k = l*num_dirs
    + d take params[3k:3k+3] and the states h_n[k] (c_n[k]), which they
    overwrite with their final ones, and write their halves of one output
    (N, T, num_dirs*H).  dropout_mask(x): None, or the mask to multiply a
    layer's input by (layers after the first).  check_xs: the first
    layer's first direction refuses xs with a NaN or Inf (see forward).
    Returns (last output, [DirectionCache] when training, [mask or None per
    layer]).  Inference without a dropout mask runs through _infer_layers
    when it takes the call; pack_epoch: the caller's pack epoch there
    (rnnfast._core.packs_kept), or 0."""
    _check_param_count(params, "params", num_layers, num_dirs)
    if not training and dropout_mask is None and _direct_infer_on:
        x = _infer_layers(cell, xs, params, h_n, c_n, lengths, num_layers, num_dirs, H,
                          relu, reset_after, check_xs, pack_epoch)
        if x is not None:
            return x, [], [None] * num_layers
    return _run_layers(cell, xs, params, h_n, c_n, lengths, num_layers, num_dirs, H,
                       training, relu, reset_after, dropout_mask, check_xs)


cdef tuple _run_layers(cell, cnp.ndarray xs, list params, h_n, c_n, lengths,
                       Py_ssize_t num_layers, Py_ssize_t num_dirs, Py_ssize_t H,
                       bint training, bint relu, bint reset_after, dropout_mask,
                       bint check_xs):
    """network_forward's layers (both of its entries share them)."""
    cdef Py_ssize_t N = cnp.PyArray_DIM(xs, 0), T = cnp.PyArray_DIM(xs, 1)
    cdef int typenum = cnp.PyArray_TYPE(xs)
    cdef Py_ssize_t layer, d, k
    cdef list caches = [], masks = []
    threads = _step_loop_threads()        # once a call, not once a direction
    x = xs
    for layer in range(num_layers):
        mask = None
        if layer > 0 and dropout_mask is not None:
            mask = dropout_mask(x)
            if mask is not None:
                x = x * mask
        masks.append(mask)
        out = _empty3(N, T, num_dirs * H, typenum)
        for d in range(num_dirs):
            k = layer * num_dirs + d
            cache = forward(cell, x, params[3 * k], params[3 * k + 1], params[3 * k + 2],
                            h_n[k], None if c_n is None else c_n[k], lengths, d == 1, out,
                            d * H, training, relu, reset_after, threads, check_xs and k == 0)
            if training:
                caches.append(cache)
        x = out
    return x, caches, masks


# The lengths of a batch without lengths (all T), as
# rnnfast._validation.check_lengths(None, N, T) gives them: a shared,
# read-only intp array; the last one is kept here, the rest come from
# check_lengths' own cache.
cdef object _full_lengths_last = None
cdef Py_ssize_t _full_lengths_N = -1, _full_lengths_T = -1


cdef object _full_lengths(Py_ssize_t N, Py_ssize_t T):
    global _full_lengths_last, _full_lengths_N, _full_lengths_T
    if N != _full_lengths_N or T != _full_lengths_T:
        from rnnfast._validation import check_lengths
        _full_lengths_last = check_lengths(None, N, T)
        _full_lengths_N, _full_lengths_T = N, T
    return _full_lengths_last


def network_forward_common(cell, xs, list params, list shapes, dtype,
                           Py_ssize_t input_size, Py_ssize_t num_layers,
                           Py_ssize_t num_dirs, Py_ssize_t H, bint training, bint relu,
                           bint reset_after, bint has_c, size_t pack_epoch=0):
    """A network's forward in its common case, checks included: no state
    given or carried, no lengths, no dropout mask.  Returns (last output,
    final state (h_n, or (h_n, c_n) when has_c), caches, masks) as
    network_forward with a zero state, or None, with nothing run, when xs
    is not an ndarray of exactly `dtype`, C-contiguous, of shape (N, T,
    input_size), or params do not pass arrays_ready(params, shapes,
    dtype): the caller's own checks then convert or word the error.  A NaN
    or Inf in xs is refused by the kernel (check_xs).  One compiled call
    instead of the network's five (the checks, the lengths, the zero
    state, the layers): docs/performance.md item 92.  Inference then runs
    through _infer_layers when it takes the call (caches and masks are
    then None; item 93)."""
    cdef cnp.ndarray arr
    cdef cnp.npy_intp dims[3]
    if not float_array_match(xs, dtype, 3) or len(params) != 3 * num_layers * num_dirs:
        return None
    arr = <cnp.ndarray> xs
    if (cnp.PyArray_DIM(arr, 2) != input_size
            or not arrays_match(params, shapes, dtype, False)):
        return None
    dims[0], dims[1], dims[2] = num_layers * num_dirs, cnp.PyArray_DIM(arr, 0), H
    h_n = cnp.PyArray_ZEROS(3, dims, cnp.PyArray_TYPE(arr), 0)
    c_n = cnp.PyArray_ZEROS(3, dims, cnp.PyArray_TYPE(arr), 0) if has_c else None
    final = (h_n, c_n) if has_c else h_n
    lengths = _full_lengths(dims[1], cnp.PyArray_DIM(arr, 1))
    if not training and _direct_infer_on:
        x = _infer_layers(cell, arr, params, h_n, c_n, lengths, num_layers, num_dirs, H,
                          relu, reset_after, True, pack_epoch)
        if x is not None:
            return x, final, None, None
    x, caches, masks = _run_layers(cell, arr, params, h_n, c_n, lengths, num_layers,
                                   num_dirs, H, training, relu, reset_after, None, True)
    return x, final, caches, masks


cdef object _infer_layers(cell, cnp.ndarray xs, list params, h_n, c_n, lengths,
                          Py_ssize_t num_layers, Py_ssize_t num_dirs, Py_ssize_t H,
                          bint relu, bint reset_after, bint check_xs, size_t pack_epoch):
    """_run_layers' inference, on arrays its callers have checked (xs and
    params: network_forward_common's tests, or the network's checked
    path): each direction's kernel run straight through its module's
    compiled entry, on pointers, with gates and work in the scratch's
    block, instead of through `forward` and the kernel def (a buffer set
    under a hashed key, 13 arrays checked again).  What the pointers are
    taken from is tested here all the same, as they go to the kernel
    unchecked: xs (float32 or float64, C order, aligned), h_n, c_n (the
    states, overwritten with the final ones), lengths and each parameter
    (_array_as_read, _params_as_read).  check_xs: the first layer's
    first direction refuses xs with a NaN or Inf, as the def would.
    pack_epoch: the kernels' (SeqFwd.pack_epoch; 0 for none).  Returns
    the last layer's output, or None, with nothing run, when the call is
    not for this path (the kernels of another build; an empty
    batch or sequence; sizes near BLAS's 32-bit limit; a block over the
    scratch's max_block_bytes; states or lengths not as the kernel reads
    them): _run_layers then runs it, with the defs' checks.
    docs/performance.md items 93, 96."""
    cdef int code = _cell_code(cell)
    cdef infer_fn entry = _infer_entries[code]
    cdef bint flag = reset_after if code == GRU else relu     # the entry's flag
    cdef Py_ssize_t N = cnp.PyArray_DIM(xs, 0), T = cnp.PyArray_DIM(xs, 1)
    cdef Py_ssize_t D = cnp.PyArray_DIM(xs, 2), W = num_dirs * H
    cdef Py_ssize_t G = _N_GATES[code] * H, itemsize = cnp.PyArray_ITEMSIZE(xs)
    cdef Py_ssize_t limit = 2 ** 31 - 1
    if (entry == NULL or N == 0 or T == 0
            or N * T * G > limit or N * T * D > limit or N * T * W > limit):
        return None
    cdef Py_ssize_t Tg = gates_steps(N, T, G, itemsize, False)
    cdef Py_ssize_t gates_bytes = (N * Tg * G * itemsize + 63) // 64 * 64
    cdef Py_ssize_t need = gates_bytes + N * (4 * H if code == GRU else G) * itemsize
    if need > _scratch.max_block_bytes:
        return None
    cdef int typenum = cnp.PyArray_TYPE(xs)
    cdef Py_ssize_t K = num_layers * num_dirs
    if ((typenum != cnp.NPY_FLOAT and typenum != cnp.NPY_DOUBLE)
            or not _array_as_read(xs, typenum, 3, N, T, D, False)
            or not _array_as_read(h_n, typenum, 3, K, N, H, True)
            or (c_n is not None and not _array_as_read(c_n, typenum, 3, K, N, H, True))
            or not _array_as_read(lengths, cnp.NPY_INTP, 1, N, 0, 0, False)
            or not _params_as_read(params, typenum, K, num_dirs, D, H, G,
                                   2 * G if code == GRU and flag else G)):
        return None
    cdef Py_ssize_t state_bytes = N * H * itemsize, layer, d, k, got
    cdef SeqFwd s
    cdef char* block
    cdef int threads = _step_loop_threads()
    s.lengths = <const Py_ssize_t*> cnp.PyArray_DATA(<cnp.ndarray> lengths)
    s.N, s.T, s.H, s.W, s.Tc = N, T, H, W, Tg
    s.training, s.h_prev, s.Wx_packed, s.ft = False, NULL, NULL, typenum
    s.pack_epoch = pack_epoch
    s.col_parts, s.barrier = 0, NULL
    block = <char*> _scratch.take_block(need, &got)
    if block == NULL:
        raise MemoryError(f"{cell}: no memory for the {need} bytes of a call's gates")
    s.gates, s.work = block, block + gates_bytes
    cdef cnp.ndarray x = xs, out
    try:
        for layer in range(num_layers):
            out = _empty3(N, T, W, typenum)
            s.xs, s.D, s.out = cnp.PyArray_DATA(x), cnp.PyArray_DIM(x, 2), cnp.PyArray_DATA(out)
            for d in range(num_dirs):
                k = layer * num_dirs + d
                s.Wx = cnp.PyArray_DATA(<cnp.ndarray> params[3 * k])
                s.Wh = cnp.PyArray_DATA(<cnp.ndarray> params[3 * k + 1])
                s.b = cnp.PyArray_DATA(<cnp.ndarray> params[3 * k + 2])
                s.h = <char*> cnp.PyArray_DATA(<cnp.ndarray> h_n) + k * state_bytes
                c = (NULL if c_n is None
                     else <char*> cnp.PyArray_DATA(<cnp.ndarray> c_n) + k * state_bytes)
                s.out_offset, s.reverse = d * H, d == 1
                s.check_xs, s.nonfinite = check_xs and k == 0, 0
                with nogil:
                    entry(&s, c, flag, threads)
                raise_if_nonfinite(s.nonfinite, "xs", xs)
            x = out
    finally:
        _scratch.give_block(block, got)
    return x


cdef bint _params_as_read(list params, int typenum, Py_ssize_t K, Py_ssize_t num_dirs,
                          Py_ssize_t D, Py_ssize_t H, Py_ssize_t G, Py_ssize_t b_size):
    """Whether params holds K directions' Wx, Wh and b as _array_as_read
    says (any shape of their sizes: D*G for the first layer's Wx, then
    num_dirs*H*G; H*G; b_size), so that a kernel reads them in bounds.
    The network's checks leave alignment to the kernel defs."""
    cdef Py_ssize_t k
    cdef Py_ssize_t sizes[3]
    cdef int i
    if len(params) != 3 * K:
        return False
    sizes[1], sizes[2] = H * G, b_size
    for k in range(K):
        sizes[0] = (D if k < num_dirs else num_dirs * H) * G
        for i in range(3):
            a = params[3 * k + i]
            if (not _array_as_read(a, typenum, -1, 0, 0, 0, False)
                    or cnp.PyArray_SIZE(<cnp.ndarray> a) != sizes[i]):
                return False
    return True


cdef bint _array_as_read(a, int typenum, int ndim, Py_ssize_t d0, Py_ssize_t d1,
                         Py_ssize_t d2, bint writable):
    """Whether `a` is an ndarray of numpy type `typenum` and shape (d0,),
    or (d0, d1, d2) when ndim is 3 (any shape when ndim is -1),
    C-contiguous, aligned, in native byte order and, if writable,
    writeable (a state the kernel overwrites): what _infer_layers hands to
    a kernel unchecked."""
    cdef cnp.ndarray arr
    cdef cnp.npy_intp* dims
    if not cnp.PyArray_Check(a):
        return False
    arr = <cnp.ndarray> a
    if (cnp.PyArray_TYPE(arr) != typenum
            or (ndim >= 0 and cnp.PyArray_NDIM(arr) != ndim)
            or not cnp.PyArray_ISCARRAY_RO(arr) or not cnp.PyArray_ISNOTSWAPPED(arr)
            or (writable and not cnp.PyArray_ISWRITEABLE(arr))):
        return False
    if ndim < 0:
        return True
    dims = cnp.PyArray_DIMS(arr)
    return dims[0] == d0 and (ndim == 1 or (dims[1] == d1 and dims[2] == d2))


def network_backward(list caches, list masks, dout, dh0, dc0, list grads,
                     Py_ssize_t input_size, Py_ssize_t num_layers, Py_ssize_t num_dirs,
                     Py_ssize_t H, bint check_dhs=False):
    """BPTT through network_forward's layers, last first: fills grads (as
    params), dh0 (dc0) with dL/d(initial state) (they hold dL/d(final
    state) on entry), and returns dL/dxs.  check_dhs: dout, the caller's
    dhs, is refused if it holds a NaN or Inf (`backward`'s dout_name): the
    last layer's first direction tests all its columns as it reads them,
    and the grads are then left as they were."""
    cdef Py_ssize_t N = cnp.PyArray_DIM(dout, 0), T = cnp.PyArray_DIM(dout, 1)
    cdef int typenum = cnp.PyArray_TYPE(dout)
    cdef Py_ssize_t layer, d, k
    _check_param_count(grads, "grads", num_layers, num_dirs)
    if len(caches) != num_layers * num_dirs or len(masks) != num_layers:
        raise ValueError(f"caches: {len(caches)} for {num_layers} layers of {num_dirs} "
                         f"directions (and {len(masks)} masks): not this network's forward")
    threads = _step_loop_threads()
    for layer in range(num_layers - 1, -1, -1):
        dxs = _empty3(N, T, input_size if layer == 0 else num_dirs * H, typenum)
        for d in range(num_dirs):
            k = layer * num_dirs + d
            backward(caches[k], dout, d * H, dh0[k], None if dc0 is None else dc0[k],
                     grads[3 * k], grads[3 * k + 1], grads[3 * k + 2], dxs, d == 1, threads,
                     "dhs" if check_dhs and layer == num_layers - 1 and d == 0 else None)
        if masks[layer] is not None:
            dxs *= masks[layer]
        dout = dxs
    return dout
