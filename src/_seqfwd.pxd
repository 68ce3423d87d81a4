# The arguments of a whole-sequence forward, as every cell's kernels take
# them (src/_seq.pxd: take_forward fills one from checked arrays), and the
# compiled inference entry of each kernel module, through which the
# dispatcher's common network forward calls a kernel's nogil run directly
# with arrays it has checked itself (src/_dispatch.pyx, _infer_layers).
#
# Pointers are untyped so that one struct serves float and double (the
# loops cast them back).


cdef struct SeqFwd:
    const void* xs           # (N, T, D)
    const void* Wx           # (D, G)
    const void* Wx_packed    # for the step loop's projection, or NULL
    const void* Wh           # (H, G)
    const void* b            # (kb*H,)
    void* h                  # (N, H): in the initial, out the final state
    void* out                # (N, T, W), columns out_offset..+H
    void* gates              # (N, Tc, G)
    void* h_prev             # (N, T, H) when training, else NULL
    void* work               # (N, kw*H)
    const Py_ssize_t* lengths
    Py_ssize_t N, T, D, H, W, out_offset
    Py_ssize_t Tc            # steps of gates: T, or a chunk (inference)
    bint reverse, training
    bint prefetch            # training: prefetch each row's next step
    bint check_xs            # test xs for NaN and Inf as it is projected
    int nonfinite            # set to 1 when that test found one
    int ft                   # NPY_FLOAT or NPY_DOUBLE: the version to run
    size_t pack_epoch        # inference in a pack epoch (src/_blas.pxd), else 0
    int col_parts            # > 1: the step loop runs on this many parts that
                             # split each step's product by columns and wait
                             # for each other (src/_seq.pxd, run_forward_steps)
    void* barrier            # then their rf_barrier (src/_threads.h)


# A kernel module's inference forward after its caller's checks: s filled
# with training off (h_prev NULL, Wx_packed NULL, nonfinite 0, pack_epoch
# 0 or an epoch of rnnfast._core.packs_kept); c the
# LSTM's cell state (N, H) in/out, NULL for the others; flag: relu (RNN),
# reset_after (GRU), unused (LSTM).  Runs without the GIL; s.nonfinite is 1
# on return when s.check_xs found a NaN or Inf in xs.  Each module exports
# its entry as the capsule INFER_ENTRY named INFER_CAPSULE.
ctypedef void (*infer_fn)(SeqFwd* s, void* c, bint flag, int threads) noexcept nogil

cdef extern from *:
    """
    #define RF_INFER_CAPSULE "rnnfast.infer_fn"
    """
    const char* INFER_CAPSULE "RF_INFER_CAPSULE"


cdef inline int raise_if_nonfinite(int nonfinite, str name, arr) except -1:
    """After a run that tested arr (a forward's xs, check_xs; a backward's
    dout, check_dout): the error check_array gives for an array `name`
    with a NaN or Inf (rnnfast._validation), if the run found one."""
    if nonfinite:
        from rnnfast._validation import NonFiniteError     # only on this error path
        raise NonFiniteError(f"{name}: contains NaN or Inf (shape {tuple(arr.shape)}); "
                             "they would poison every later step")
    return 0
