"""One direction of one recurrent layer over a whole sequence: the bridge
between the Python layers and the Cython kernels, and the switches of the
kernels (packed products, wide tiles, thread pool, threads a call).

`forward` takes the buffers a kernel saves for backward (their shapes are
written down in src/_seq.pxd and each src/_<cell>.pyx) and runs the kernel
once; `backward` runs the matching BPTT kernel once.  Both are compiled, in
src/_dispatch.pyx, with the buffer cache and the chunking of inference
(`infer_chunking`).  Everything there works on arrays that the caller has
already checked (rnnfast._validation).  Cells, Time layers and networks
all go through these two functions.
"""
import contextlib
import ctypes
import itertools
import threading

from . import _gru, _lstm, _rnn
# The two calls and their buffer cache are compiled (src/_dispatch.pyx):
# they are the fixed cost of every call.
from ._dispatch import (SCRATCH as _SCRATCH, DirectionCache, backward,  # noqa: F401
                        buffer_shapes as _buffer_shapes, forward,
                        gates_steps as _gates_steps, infer_chunking, network_backward,
                        network_forward, network_forward_common, zero_state,
                        output_pool_stats, clear_output_pool, empty_output)
from ._dispatch import use_direct_infer as _use_direct_infer
from ._dispatch import use_output_pool as _use_output_pool
from ._dispatch import use_aligned_scratch as _use_aligned_scratch


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


def use_tall_tiles(on=True):
    """Let the AVX-512 two-panel tiles of the float32 packed products take
    up to 12 rows (the default) or at most 8 (on=False); bitwise the same
    results.  For A/B timings and tests; returns the previous setting."""
    return all([mod.use_tall_tiles(on) for mod in (_rnn, _lstm, _gru)])


def use_unpacked_b(on=True):
    """Let the AVX-512 tiles read a forward's Wx or Wh as it lies where it
    meets one product of a few rows, or is small (the default), instead of
    packing it first (on=False); see src/_gemm.h, rf_unpacked_ok.  The two give bitwise the same results.
    For A/B timings and tests."""
    for mod in (_rnn, _lstm, _gru):
        mod.use_unpacked_b(on)


def use_gemv_groups_of_8(on=None):
    """Run the AVX-512 GEMV (a product of one row, as a batch of one's
    steps) in groups of eight panels (True), of four on the AVX2 code
    (False), or as the CPU suits (None, the default: four where the cores
    run a 512-bit FMA as two halves, a Zen 4, and the packed B is at most
    128 KB; src/_gemm.h, rf_gemv8_in_use).  Bitwise the same results.  For
    A/B timings and tests; returns whether groups of eight now run for a B
    of 64 x 256 (where wide tiles do)."""
    flag = -1 if on is None else int(bool(on))
    return all([mod.use_gemv_groups_of_8(flag) for mod in (_rnn, _lstm, _gru)])


def use_half_panels(on=True):
    """Run the last panel of a product whose N leaves at most 8 columns
    there (N = 200: 12 panels and 8 columns) on the half-panel tiles, one
    8-float vector a row (the default; src/_gemm.h, rf_tile_kind), or on a
    whole panel's tile (on=False).  Bitwise the same results.  For A/B
    timings and tests."""
    for mod in (_rnn, _lstm, _gru):
        mod.use_half_panels(on)


def use_dgemv(on=True):
    """Run a float64 product of one row (a batch of one's steps) on its
    GEMV, eight accumulator chains (the default; src/_gemm_d.h), or on the
    one-row tiles, two chains (on=False).  Bitwise the same results.  For
    A/B timings and tests."""
    for mod in (_rnn, _lstm, _gru):
        mod.use_dgemv(on)


def use_repack(on=True):
    """Pack an inference call's weights into the buffer that packed them
    last, comparing each row of the packing with what it holds and storing
    only from the first that differs (the default; src/_gemm.h,
    rf_repack_b_f), or pack them in full into any kept buffer (on=False).
    The same bytes either way.  For A/B timings and tests."""
    for mod in (_rnn, _lstm, _gru):
        mod.use_repack(on)


def repacks_kept():
    """How many weight packs, over the three kernel modules, found their
    buffer holding their bytes already and stored nothing (for tests)."""
    return sum(mod.repacks_kept() for mod in (_rnn, _lstm, _gru))


# Pack epochs: 0 is none and 1 PACK_REUSE (src/_blas.pxd); each block of
# packs_kept takes the next, never used before.  An object must never keep
# the epoch of a block that has ended (its packings would be trusted after
# the weights changed), whatever order the blocks of several threads end
# in: the lock guards the objects' epochs and the set of live ones.
_PACK_EPOCHS = itertools.count(2)
_LIVE_EPOCHS = set()
_EPOCHS_LOCK = threading.Lock()


@contextlib.contextmanager
def packs_kept(*recurrent):
    """Inside the block, the inference calls of these recurrent networks
    and layers (objects with a `_pack_epoch`: rnnfast.networks,
    rnnfast.layers.recurrent) pack their weights in their first call only;
    each later call finds its kernel's kept packing stamped with the
    block's epoch and uses it as it is (src/_blas.pxd, packed_in_epoch),
    where it would pack the weights again (1 thread) or compare them with
    the kept packing (2 threads, rf_repack_b_f).  For loops of one-step
    calls whose weights do not change, such as a model's generate:
    a change to the weights inside the block would not be seen.
    Training calls pack as always.  A nested block takes a new epoch; on
    leaving, each object takes back the epoch it had if that block is still
    live, else none."""
    with _EPOCHS_LOCK:
        epoch = next(_PACK_EPOCHS)
        _LIVE_EPOCHS.add(epoch)
        before = [vars(layer).get("_pack_epoch") for layer in recurrent]
        for layer in recurrent:
            layer._pack_epoch = epoch
    try:
        yield epoch
    finally:
        with _EPOCHS_LOCK:
            _LIVE_EPOCHS.discard(epoch)
            for layer, old in zip(recurrent, before):
                if vars(layer).get("_pack_epoch") != epoch:
                    continue                # a later block's, which restores it
                if old in _LIVE_EPOCHS:
                    layer._pack_epoch = old
                else:
                    del layer._pack_epoch   # back to the class's 0


def packs_trusted():
    """How many packs, over the three kernel modules, a pack epoch let
    stand as they were (for tests)."""
    return sum(mod.packs_trusted() for mod in (_rnn, _lstm, _gru))


def use_gemv_segments(on=True):
    """Run the backward's per-step product of a batch of one, dh (+)=
    dA_t Wh^T, by segments of K walked forwards and backwards on alternate
    steps (the default; src/_gemm.h, rf_gemm_packed_dh_f), or as one sum
    over K like the forward's GEMV (on=False).  The two differ by float32
    rounding.  For A/B timings and tests."""
    for mod in (_rnn, _lstm, _gru):
        mod.use_gemv_segments(on)


def use_prefetch(on=True):
    """Prefetch each batch row's next step in the step loops where their
    buffers are large (the default), or never (on=False); see src/_seq.pxd,
    worth_prefetching.  Results are the same either way.  For A/B timings
    and tests."""
    for mod in (_rnn, _lstm, _gru):
        mod.use_prefetch(on)


def use_col_split(mode=1):
    """How a step loop on several threads splits its work: 0, by batch
    rows always; 1 (the default), each step's product by columns where
    there are few rows a thread and a large Wh (src/_seq.pxd, col_threads;
    the backward only where the rows would leave a thread idle); 2, by
    columns wherever the thread pool can run every part at once.  Results
    are the same either way, except that a batch of fewer than 8 rows sums
    its parameter gradients in two parts by columns (float rounding).  For
    A/B timings and tests."""
    if not isinstance(mode, int) or mode not in (0, 1, 2):
        raise ValueError(f"use_col_split: mode: expected 0, 1 or 2, got {mode!r}")
    for mod in (_rnn, _lstm, _gru):
        mod.use_col_split(mode)


def use_grad_chunks(on=True):
    """Interleave a long backward's steps and its input and parameter
    gradients chunk by chunk of steps, while the chunk's gate gradients are
    in cache (the default), or run the gradients after all steps
    (on=False); see src/_seq.pxd, chunk_steps.  The sums then run in
    another order (float rounding).  For A/B timings and tests."""
    for mod in (_rnn, _lstm, _gru):
        mod.use_grad_chunks(on)


def use_split_packing(on=True):
    """Pack a call's large weight matrices (256 KB and more) on the threads
    its step loop will use, each a share of B's rows or panels (the
    default), or on the calling thread alone (on=False); see src/_seq.pxd,
    pack_b_split.  Results are bitwise the same either way.  For A/B
    timings and tests."""
    for mod in (_rnn, _lstm, _gru):
        mod.use_split_packing(on)


def use_narrow_inputs(on=True):
    """Take an LSTM's input of at most half the state's width (D <= H/2)
    into each step's product, [x_t | h] times [Wx; Wh] (the default), or
    project all steps' inputs first (on=False); see src/_seq.pxd,
    NarrowInputs.  Results differ by rounding.  For A/B timings and
    tests."""
    _lstm.use_narrow_inputs(on)


def use_output_pool(on=True):
    """Take the large outputs of a call (a layer's outputs, dL/dxs, 1 MB
    and more) from rnnfast's pool, which gets their memory back when the
    caller drops them (the default; src/_outpool.h), or from numpy's
    allocator (on=False).  Results are the same either way.  For A/B
    timings and tests."""
    _use_output_pool(on)


def use_aligned_scratch(on=True):
    """Start a call's internal buffers (gates, saved states, work) on
    64-byte lines (the default; src/_dispatch.pyx, aligned_empty) or where
    numpy's allocator puts them (on=False); each setting keeps a buffer
    cache of its own.  Results are bitwise the same either way.  For A/B
    timings and tests."""
    return _use_aligned_scratch(on)


def use_direct_infer(on=True):
    """Run a network's common inference forward (no state, lengths or
    dropout) straight into each kernel's compiled entry (the default;
    src/_dispatch.pyx, _infer_layers) or through `forward` and the kernel
    defs, as training does (on=False).  Results are bitwise the same
    either way.  For A/B timings and tests."""
    _use_direct_infer(on)


def kernel_name():
    """The products' kernel as it stands in this process: "AVX-512 tiles",
    "AVX2 tiles" (rnnfast's packed kernel, src/_gemm.h; in float64
    src/_gemm_d.h) or "BLAS"."""
    if not _packed_in_use():
        return "BLAS"
    return "AVX-512 tiles" if _rnn.wide_tiles_in_use() else "AVX2 tiles"


def use_thread_pool(on=True):
    """Split kernel calls over threads kept between calls (src/_threads.h;
    the default on Linux) or over threads created per call (on=False).  For
    A/B timings and tests; returns whether the pool is in use."""
    return all([mod.use_thread_pool(on) for mod in (_rnn, _lstm, _gru)])


def use_pool_spread(on=True):
    """Let a pool worker that wakes on its caller's CPU move to another of
    the CPUs it may use (the default on Linux; src/_threads.h,
    rf_move_off_cpu), or leave placement to the scheduler alone (on=False).
    Results are the same either way.  For A/B timings and tests; returns
    whether it is on."""
    return all([mod.use_pool_spread(on) for mod in (_rnn, _lstm, _gru)])


