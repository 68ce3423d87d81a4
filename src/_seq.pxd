# Helpers shared by the whole-sequence kernels of every cell: the
# arguments every cell takes (SeqFwd, SeqBwd: checked by take_forward and
# take_backward), the input projection, the padding, the per-thread
# gradient parts, and the skeleton of a call (run_steps,
# backward_steps_and_grads).  A cell brings its step loops and gradients.
#
# Layouts (all C order, batch-major, as the Python layer allocates them):
#   xs      (N, T, D)        inputs
#   out     (N, T, W)        outputs; a direction writes columns off:off+H
#                            (W = H, or 2H for a bidirectional layer)
#   gates   (N, T, G*H)      pre-activations, then activations (forward),
#                            then their gradients (backward)
#   h_prev  (N, T, H)        the state each step started from (for dWh); RNN
#                            and LSTM may save the first step's only and
#                            rebuild the rest (states_rebuilt)
#
# Inference may pass a gates buffer of Tc < T steps (N, Tc, G*H): the
# forward kernels then project the inputs chunk by chunk of Tc steps, just
# before they run, and row n's steps of a chunk sit in time order from
# slot chunk_start(...) on (see project_chunk).  Memory is then O(N Tc),
# not O(N T), and each step reads rows that were written moments ago.
#
# lengths[n] (1..T) is sequence n's true length.  Step k of the loop
# handles time t = k (forward) or t = L-1-k (reverse) of row n, and rows
# with k >= L are idle: their state does not change.  Positions t >= L
# are padding: outputs are 0 and they contribute nothing to gradients.
from libc.limits cimport INT_MAX
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset
from _arrays cimport Arr, take, kernel_dtype
from _seqfwd cimport SeqFwd, raise_if_nonfinite
from _settings cimport check_setting
from numpy cimport NPY_FLOAT, NPY_INTP
from _blas cimport (floating, gemm, gemm_packed, gemm_packed_dh, gemm_tn, free_packed, pack_b,
                   pack_rows,
                   packed_buffer, rf_in_threads, rf_unpacked_b,
                   rf_unpacked_ok, rf_packed_dw_enabled, rf_buf_alloc, rf_buf_free,
                   rf_gemm_packed_supported, rf_panel_stride, rf_panel_stride_d,
                   rf_pack_b_sum_f, rf_pack_b_sum_d, pack_rows_into, PACK_PLAIN,
                   PACK_REUSE, packed_in_epoch, stamp_packing)


cdef extern from "_cells.h" nogil:
    void rf_prefetch_span(const void* p, long nbytes, int write)
    int rf_prefetch_switch          # use_prefetch(False) sets it to 0
    int rf_all_finite_32(const uint32_t* p, long n)
    int rf_all_finite_64(const uint64_t* p, long n)


# A long call: its step loop walks at least LONG_CALL_BYTES of buffers,
# which then come from memory, not the caches.  Such a call prefetches its
# step loops' rows one step ahead (rf_prefetch_span) and interleaves its
# backward's steps and gradients (chunk_steps); below it the prefetches only
# cost (LSTM training, N = 8, D = H = 64: T = 1000 and 10,000 gained, T =
# 100 and 300 lost ~2 %; docs/performance.md, item 60).  At 4 MB an RNN
# of N = 8, D = H = 64 at T = 1000 (4.1e6 bytes) fell just short and ran
# 1.07-1.09 slower than on the long path (item 78); at 3 MB it takes it,
# and LSTM (T = 300) and GRU (T = 500), which now take it too, measured
# the same either way.
cdef enum:
    LONG_CALL_BYTES = 3 << 20


cdef inline bint long_call(Py_ssize_t N, Py_ssize_t T, Py_ssize_t G, Py_ssize_t H,
                           Py_ssize_t itemsize) noexcept nogil:
    """Whether a loop over N*T rows of gates (G wide) and of H-wide states
    walks LONG_CALL_BYTES or more."""
    return N * T * (G + H) * itemsize >= LONG_CALL_BYTES


cdef inline bint worth_prefetching(Py_ssize_t N, Py_ssize_t T, Py_ssize_t G, Py_ssize_t H,
                                   Py_ssize_t itemsize) noexcept nogil:
    return rf_prefetch_switch != 0 and long_call(N, T, G, H, itemsize)


cdef inline void set_prefetch(bint on) noexcept nogil:
    global rf_prefetch_switch
    rf_prefetch_switch = on


cdef extern from *:
    """
    static int rf_grad_chunks_switch = 1;   /* 0: gradients after all steps */
    """
    int rf_grad_chunks_switch


cdef inline void set_grad_chunks(bint on) noexcept nogil:
    global rf_grad_chunks_switch
    rf_grad_chunks_switch = on


cdef extern from *:
    """
    static int rf_poison_chunk_h = 0;   /* tests: chunk_h starts as NaN bytes */
    """
    int rf_poison_chunk_h


cdef inline void set_poison_chunk_h(bint on) noexcept nogil:
    global rf_poison_chunk_h
    rf_poison_chunk_h = on


cdef inline void prefetch(const void* p, Py_ssize_t nbytes) noexcept nogil:
    """The lines of [p, p + nbytes) into L2, to be read."""
    rf_prefetch_span(p, nbytes, 0)


cdef inline void prefetch_w(const void* p, Py_ssize_t nbytes) noexcept nogil:
    """The lines of [p, p + nbytes) into L2, to be written."""
    rf_prefetch_span(p, nbytes, 1)


cdef inline Py_ssize_t step_time(Py_ssize_t k, Py_ssize_t length,
                                 bint reverse) noexcept nogil:
    return length - 1 - k if reverse else k


cdef inline Py_ssize_t chunk_start(Py_ssize_t length, Py_ssize_t k0, Py_ssize_t k1,
                                   bint reverse) noexcept nogil:
    """The first time t (slot 0 of the gates buffer) of the chunk of steps
    k0..k1-1 of a row of `length`: the row's times k0..k1-1 run forward,
    length-k1..length-1-k0 in reverse.  0 for the one chunk of a whole
    sequence (k0 = 0, k1 = T >= length)."""
    return length - (k1 if k1 < length else length) if reverse else k0


# The input check folded into the projection.  A NaN or Inf in xs would
# poison every later step, so a network's first layer refuses it.  Tested
# apart, before the call, xs came from memory twice in a long call: once
# for the test, once for the projection.  A forward given check_xs
# (take_forward) tests each block of xs rows just before projecting it,
# so that the projection reads them from cache, and sets s.nonfinite;
# its def then raises (raise_if_nonfinite), before the caller has kept
# anything of the call.  Blocks of XS_CHECK_BYTES; every row of xs is
# tested once: the projected ones here, the padding of a chunked
# projection (which never projects it) in forward_prologue.
cdef enum:
    XS_CHECK_BYTES = 32 << 10


cdef inline bint finite_values(const floating* x, Py_ssize_t n) noexcept nogil:
    """No NaN or Inf among x[0:n] (src/_cells.h, rf_all_finite_32/64: a
    test of the bits)."""
    if floating is float:
        return rf_all_finite_32(<const uint32_t*> x, n) != 0
    else:
        return rf_all_finite_64(<const uint64_t*> x, n) != 0


cdef inline void check_rows(const floating* x, Py_ssize_t n, int* nonfinite) noexcept nogil:
    """*nonfinite = 1 when x[0:n] holds a NaN or Inf (nonfinite NULL: no
    test).  The threads of a split step loop may set it at once, to the
    same value; the def reads it after they have joined."""
    if nonfinite != NULL and not finite_values(x, n):
        nonfinite[0] = 1


# Above this size of Wx, project_chunk projects a chunk step by step.
cdef enum:
    PROJECT_BY_STEP_BYTES = 1 << 20


cdef inline void project_chunk(const floating* xs, const floating* Wx_packed,
                               const floating* Wx, const Py_ssize_t* lengths,
                               bint reverse, Py_ssize_t T, Py_ssize_t D, Py_ssize_t G,
                               Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t k0, Py_ssize_t k1,
                               floating* gates, Py_ssize_t Tc,
                               int* nonfinite=NULL) noexcept nogil:
    """gates[n, 0:m] = xs[n, t0:t0+m] Wx for rows n0..n1-1, the m <= Tc
    times t0.. (t0 = chunk_start) their steps k0..k1-1 visit, on the packed
    kernel or BLAS (Wx_packed NULL); each row's xs rows tested first when
    nonfinite is given (check_rows).  Each product reads all of Wx: one
    product per row reads it n1 - n0 times a chunk, one per step (all rows
    at the same t, xs rows T*D apart, gates rows Tc*G apart) m times.  So
    when every row runs the whole chunk, there are at least m rows and Wx
    is over PROJECT_BY_STEP_BYTES (it no longer stays in L2 between the
    products), one product per step: LSTM inference at `large` (N = 128,
    16-step chunks, a 4 MB Wx read from L3 128 times a chunk) 1.15x
    faster, GRU 1.11x; at `medium` (Wx 256 KB, 192 KB) the rows' strided
    reads and writes made GRU 0.99x (docs/performance.md item 184).  Each
    element is the same sum over k on the packed kernel either way."""
    cdef Py_ssize_t n, L, m = k1 - k0, t, t0
    cdef const floating* x
    if (n1 - n0 >= m and m > 0 and D * G * <Py_ssize_t> sizeof(floating) > PROJECT_BY_STEP_BYTES
            and T * D <= INT_MAX and Tc * G <= INT_MAX):
        for n in range(n0, n1):
            if lengths[n] != T:
                break
        else:
            t0 = chunk_start(T, k0, k1, reverse)
            for n in range(n0, n1):
                check_rows(xs + (n * T + t0) * D, m * D, nonfinite)
            for t in range(m):
                gemm_packed(<int> (n1 - n0), <int> G, <int> D, xs + (n0 * T + t0 + t) * D,
                            <int> (T * D), Wx_packed, False, Wx, <int> G, False,
                            gates + (n0 * Tc + t) * G, <int> (Tc * G))
            return
    for n in range(n0, n1):
        L = lengths[n]
        if k0 >= L:
            continue
        m = (k1 if k1 < L else L) - k0
        x = xs + (n * T + chunk_start(L, k0, k1, reverse)) * D
        check_rows(x, m * D, nonfinite)
        gemm_packed(<int> m, <int> G, <int> D, x, <int> D, Wx_packed, False, Wx, <int> G,
                    False, gates + n * Tc * G, <int> G)

cdef inline void project_inputs(const floating* xs, const floating* Wx_packed,
                                const floating* Wx, const Py_ssize_t* lengths,
                                bint reverse, Py_ssize_t T, Py_ssize_t D, Py_ssize_t G,
                                Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t k0, Py_ssize_t k1,
                                floating* gates, Py_ssize_t Tc,
                                int* nonfinite=NULL) noexcept nogil:
    """The input projection x Wx of rows n0..n1-1 for the chunk of steps
    k0..k1-1, just before a forward step loop runs them.  With the whole
    sequence in gates (Tc = T): all T steps of the rows, on the packed
    kernel, or nothing when Wx is not packed (the kernel's def did all rows
    on BLAS); in one product, or, when xs is to be tested (nonfinite not
    NULL), block by block of XS_CHECK_BYTES, each tested just before its
    product (a row's product does not depend on the rows beside it).
    Else project_chunk."""
    cdef Py_ssize_t rows = (n1 - n0) * T, r0, m
    cdef Py_ssize_t block = XS_CHECK_BYTES // (48 * D * sizeof(floating)) * 48
    if Tc < T:
        project_chunk(xs, Wx_packed, Wx, lengths, reverse, T, D, G, n0, n1, k0, k1, gates, Tc,
                      nonfinite)
    elif Wx_packed != NULL:
        if nonfinite == NULL:
            block = rows
        elif block < 48:
            block = 48              # whole tiles' rows (6 and 8 high)
        r0 = 0
        while r0 < rows:
            m = rows - r0 if rows - r0 < block else block
            check_rows(xs + (n0 * T + r0) * D, m * D, nonfinite)
            gemm_packed(<int> m, <int> G, <int> D, xs + (n0 * T + r0) * D, <int> D,
                        Wx_packed, False, Wx, <int> G, False, gates + (n0 * T + r0) * G,
                        <int> G)
            r0 += m


cdef inline bint all_zero(const floating* x, Py_ssize_t n) noexcept nogil:
    """Whether x[0:n] are all +-0."""
    cdef Py_ssize_t i
    for i in range(n):
        if x[i] != 0:
            return False
    return True


cdef inline void state_product(const floating* h, int rows, int ncols, int H,
                               const floating* Wh_packed, const floating* Wh, int ldw,
                               bint accumulate, floating* C, int ldc,
                               bint h_zero) noexcept nogil:
    """C[0:rows, 0:ncols] (+)= h (rows, H) @ Wh, the recurrent product of a
    forward step; h_zero: h is known to be all zero (the first step from
    a zero initial state, the common case: every layer of a network
    called without a state), and then the product is skipped (C left as
    it is, or zeroed when not accumulating): 1/T of the step products,
    1/(2T) of an inference call's FLOPs.  Only signs of zero can differ
    from running the product."""
    cdef int r, j
    if h_zero:
        if not accumulate:
            for r in range(rows):
                for j in range(ncols):
                    C[r * ldc + j] = 0
        return
    gemm_packed(rows, ncols, H, h, H, Wh_packed, False, Wh, ldw, accumulate, C, ldc)


cdef inline bint is_uniform(const Py_ssize_t* lengths, Py_ssize_t N,
                            Py_ssize_t T, bint reverse) noexcept nogil:
    """True when every row visits the same t at step k, so the step-t rows
    of a (N, T, C) buffer form one strided matrix that BLAS can use."""
    cdef Py_ssize_t n
    if not reverse:
        return True
    for n in range(N):
        if lengths[n] != T:
            return False
    return True


cdef inline void zero_padding(floating* buf, Py_ssize_t N, Py_ssize_t T,
                              Py_ssize_t ld, Py_ssize_t off, Py_ssize_t width,
                              const Py_ssize_t* lengths) noexcept nogil:
    """buf[n, t, off:off+width] = 0 for every t >= lengths[n]."""
    cdef Py_ssize_t n, t, j
    cdef floating* row
    for n in range(N):
        for t in range(lengths[n], T):
            row = buf + (n * T + t) * ld + off
            for j in range(width):
                row[j] = 0


cdef inline void input_grads(const floating* xs, const floating* Wx,
                             const floating* WxT_packed, floating* dG, floating* dWx,
                             floating* dxs, bint accumulate_dx, int rows, int D,
                             int GH, const floating* h_prev=NULL, floating* dWh=NULL,
                             int H=0, floating* db=NULL, int GHh=-1, int runs=1,
                             Py_ssize_t run_stride=0, bint dw_accumulate=False,
                             Py_ssize_t h_run_stride=-1) noexcept nogil:
    """After the step loop: dWx = X^T dG and, when H > 0, dWh = Hprev^T dG
    (of dG's first GHh columns only when GHh >= 0: GRU's z and r; gemm_tn:
    dG packed once for both), db += dG's column sums when db is
    not NULL (in the same pass), and dX (+)= dG Wx^T (the packed
    kernel when Wx^T is packed: it reads dG once, without BLAS's packing of
    it, which showed up in the profile of long sequences), one product each
    over `runs` runs of `rows` rows of the gate-gradient buffer (GH wide),
    run r from row r * run_stride on (one run: all N*T rows; a chunk of
    steps: a run per batch row); h_prev's runs h_run_stride rows apart (-1:
    run_stride).  dw_accumulate: dWx, dWh += instead of =."""
    cdef int r
    if h_run_stride < 0:
        h_run_stride = run_stride
    if runs > 1 and run_stride == rows and h_run_stride == rows:  # runs that touch: one
        rows, runs = rows * runs, 1
    gemm_tn(D, xs, D, dWx, H, h_prev, H, dWh, GH, rows * runs, dG, GH, GH, db, GHh,
            rows if runs > 1 else 0, run_stride, dw_accumulate, h_run_stride)
    for r in range(runs):
        gemm_packed(rows, D, GH, dG + r * run_stride * GH, GH, WxT_packed, True, Wx, GH,
                    accumulate_dx, dxs + r * run_stride * D, D)


cdef inline void prefetch_forward_row(floating* tag, SeqFwd* s, floating* g, Py_ssize_t G,
                                      Py_ssize_t n, Py_ssize_t k, Py_ssize_t k1,
                                      Py_ssize_t L, Py_ssize_t t, void* saved1=NULL,
                                      void* saved2=NULL, bint h_prev=True) noexcept nogil:
    """While row n (length L) of a training forward runs step k (time t,
    gates g, in the chunk of steps ..k1-1), fetch what its step k + 1
    writes: its gates (when in this chunk), its out row, its h_prev row
    (unless not h_prev: a call whose states are rebuilt saves the first
    only, states_rebuilt) and its rows of the cell's saved (N, T, H)
    buffers saved1, saved2 (or NULL)."""
    cdef Py_ssize_t tn, r, row = s.H * sizeof(floating)
    if k + 1 >= L:
        return
    tn = step_time(k + 1, L, s.reverse)
    r = n * s.T + tn
    if k + 1 < k1:
        prefetch_w(g + (tn - t) * G, G * sizeof(floating))
    prefetch_w(<floating*> s.out + r * s.W + s.out_offset, row)
    if h_prev:
        prefetch_w(<floating*> s.h_prev + r * s.H, row)
    if saved1 != NULL:
        prefetch_w(<floating*> saved1 + r * s.H, row)
    if saved2 != NULL:
        prefetch_w(<floating*> saved2 + r * s.H, row)


cdef inline void prefetch_backward_row(floating* tag, SeqBwd* s, Py_ssize_t G, Py_ssize_t n,
                                       Py_ssize_t k, Py_ssize_t L, bint h_prev,
                                       const void* saved1=NULL,
                                       const void* saved2=NULL) noexcept nogil:
    """While row n (length L) runs backward step k, fetch what its step
    k - 1 reads: its gates (overwritten with their gradients), its dout
    row, its h_prev row when the cell's pass reads it, and its rows of the
    cell's saved (N, T, H) buffers saved1, saved2 (or NULL)."""
    cdef Py_ssize_t r, row = s.H * sizeof(floating)
    if k == 0:
        return
    r = n * s.T + step_time(k - 1, L, s.reverse)
    prefetch_w(<floating*> s.gates + r * G, G * sizeof(floating))
    prefetch(<const floating*> s.dout + r * s.W + s.dout_offset, row)
    if h_prev:
        prefetch(<const floating*> s.h_prev + r * s.H, row)
    if saved1 != NULL:
        prefetch(<const floating*> saved1 + r * s.H, row)
    if saved2 != NULL:
        prefetch(<const floating*> saved2 + r * s.H, row)

# ------------------------------------------------------ rows over threads
# See src/_threads.h: the step loop of a kernel splits over batch rows with
# no synchronisation; each kernel puts its loop in a function of a row range.
cdef extern from "_threads.h" nogil:
    ctypedef void (*rf_rows_fn)(void* ctx, long n0, long n1, int part) noexcept nogil
    void rf_run_rows(rf_rows_fn fn, void* ctx, long N, int threads)
    ctypedef struct rf_barrier:
        int parts
    void rf_barrier_init(rf_barrier* b, int parts)
    void rf_barrier_wait(rf_barrier* b)
    int rf_run_together(rf_rows_fn fn, void* ctx, long N, int threads)
    const int RF_MAX_THREADS
    long rf_split_step_flops, rf_split_grad_flops, rf_split_grad_rows
    int rf_use_thread_pool(int on)
    int rf_use_pool_spread(int on)


cdef inline tuple set_split_limits(step_flops, grad_flops, grad_rows):
    """Set those given (not None) of the least work worth a thread; return
    all three as they now are.  For benchmarks and tests."""
    global rf_split_step_flops, rf_split_grad_flops, rf_split_grad_rows
    check_setting("step_flops", step_flops, 1)
    check_setting("grad_flops", grad_flops, 1)
    check_setting("grad_rows", grad_rows, 1)
    if step_flops is not None:
        rf_split_step_flops = step_flops
    if grad_flops is not None:
        rf_split_grad_flops = grad_flops
    if grad_rows is not None:
        rf_split_grad_rows = grad_rows
    return (rf_split_step_flops, rf_split_grad_flops, rf_split_grad_rows)


cdef inline int step_threads(int threads, Py_ssize_t N, Py_ssize_t T,
                             Py_ssize_t flops_per_row_step,
                             bint packed) noexcept nogil:
    """How many threads the step loop of one call gets: the caller's
    (its BLAS thread count), but only on the packed path (BLAS would
    thread each step itself), at least 4 rows each (a tile of the
    micro-kernel is up to 6 rows), and 1 when the loop is too small to
    repay creating threads (~10 us each against ~2 MFLOP of work)."""
    cdef Py_ssize_t t = threads
    if not packed or t < 2:
        return 1
    if t > RF_MAX_THREADS:          # rf_run_rows runs no more; the caller
        t = RF_MAX_THREADS          # sizes its gradient parts by this count
    if t > N // 4:
        t = N // 4
    if N * T * flops_per_row_step < rf_split_step_flops * t:
        return 1
    return <int> (t if t > 1 else 1)


# ------------------------------------------------- packing over threads
# A call packs its weights (Wx and Wh forward, their transposes backward)
# before its step loop.  At 2 threads that copy ran on the calling thread
# alone while the other waited: 6 % of an RNN inference at
# `zaremba-medium` (N = 20, D = H = 650: two 1.7 MB packs at ~9 GB/s, the
# weights and the packed copy coming from memory; docs/performance.md item
# 108).  From PACK_SPLIT_BYTES on, the packing splits over the threads the
# step loop will use: B's rows (trans = 0) or its panels (trans = 1), each
# part written where the whole packing would write it, so the packed
# matrix is the same bytes.  Each split packing is a region of its own,
# with a wake-up of the other thread (~20 us).  From 1 MB at first (at 512
# KB, LSTM training at `zaremba-small`, 640 KB matrices, ran 0.979-0.984 as
# fast at 2 threads in item 108's runs, its inference 1.045-1.09 faster);
# from 256 KB since item 120: in one process (benchmarks/ab_inprocess.py,
# 2 threads, 11 rounds, old/new of 1 MB against 256 KB) inference at
# `zaremba-small` 1.04-1.05 (GRU) and 1.05-1.17 (LSTM) faster, training
# there 1.009-1.013, `small` and `medium` 0.998-1.016.
cdef extern from "_gemm.h" nogil:
    enum: RF_NR
    enum: RF_NRD

cdef extern from *:
    """
    static int rf_pack_split_switch = 1;   /* 0: every packing on one thread */
    """
    int rf_pack_split_switch

cdef enum:
    PACK_SPLIT_BYTES = 1 << 18


cdef inline void set_pack_split(bint on) noexcept nogil:
    global rf_pack_split_switch
    rf_pack_split_switch = on


cdef struct PackJob:
    const void* b
    void* bp
    int ldb, k, n
    bint trans, dbl, reuse


cdef inline void pack_part(void* ctx, long r0, long r1, int part) noexcept nogil:
    """B's rows r0..r1-1 (trans = 0) or panels r0..r1-1 (trans = 1) of a
    PackJob into their places in the packed matrix."""
    cdef PackJob* j = <PackJob*> ctx
    cdef long nr = RF_NRD if j.dbl else RF_NR
    cdef long size = sizeof(double) if j.dbl else sizeof(float)
    cdef long stride = rf_panel_stride_d(j.k) if j.dbl else rf_panel_stride(j.k)
    cdef long c0 = r0 * nr, c1 = r1 * nr if r1 * nr < j.n else j.n
    if not j.trans:     # rows r0..r1-1 into rows r0..r1-1 of every panel
        pack_rows_into(<const char*> j.b + r0 * j.ldb * size, j.ldb, r1 - r0, j.n,
                       <char*> j.bp + r0 * nr * size, stride, j.dbl, j.reuse)
    elif j.dbl:         # panels r0..: columns c0..c1-1 of op(B), rows of B^T
        rf_pack_b_sum_d(<const double*> j.b + c0 * j.ldb, j.ldb, 1, j.k, c1 - c0,
                        <double*> j.bp + r0 * stride, stride, NULL)
    else:
        rf_pack_b_sum_f(<const float*> j.b + c0 * j.ldb, j.ldb, 1, j.k, c1 - c0,
                        <float*> j.bp + r0 * stride, stride, NULL)


cdef inline int packing_threads(int nt, Py_ssize_t k, Py_ssize_t n,
                                Py_ssize_t itemsize) noexcept nogil:
    """The threads pack_b_split packs a (k, n) matrix on, for a step loop
    on nt threads: 1 (this thread alone) below PACK_SPLIT_BYTES, inside
    another threaded region, or with the switch off."""
    if (nt < 2 or not rf_pack_split_switch or rf_in_threads()
            or k * n * itemsize < PACK_SPLIT_BYTES):
        return 1
    return nt


cdef inline floating* pack_b_split(int m, bint trans_b, int k, int n, const floating* b,
                                   int ldb, int nt, size_t reuse) noexcept nogil:
    """pack_b, the packing split over nt threads when op(B) (k, n) takes
    PACK_SPLIT_BYTES or more (nt: the step loop's threads, step_threads)."""
    cdef PackJob job
    cdef floating* bp
    cdef long parts
    cdef bint keyed = reuse != PACK_PLAIN and not trans_b
    nt = packing_threads(nt, k, n, sizeof(floating))
    if nt < 2:
        return pack_b(m, trans_b, k, n, b, ldb, reuse)
    bp = packed_buffer(m, k, n, b, keyed)
    if bp == NULL or (keyed and packed_in_epoch(bp, reuse)):
        return bp
    job.b, job.bp, job.ldb, job.k, job.n = <const void*> b, <void*> bp, ldb, k, n
    job.trans, job.dbl, job.reuse = trans_b, floating is double, keyed
    parts = (n + (RF_NRD if floating is double else RF_NR) - 1) // (
        RF_NRD if floating is double else RF_NR) if trans_b else k
    rf_run_rows(pack_part, &job, parts, nt if nt < parts else <int> parts)
    stamp_packing(bp, reuse if keyed else PACK_PLAIN)   # every part is in
    return bp


cdef inline floating* pack_b_or_read_split(Py_ssize_t rows, Py_ssize_t min_rows, int k,
                                           int n, const floating* b, int ldb,
                                           int nt, size_t reuse) noexcept nogil:
    """B (k, n), row-major, for gemm_packed with left operands of `rows`
    rows in all and at least min_rows rows a product: rf_unpacked_b(), the
    mark that the wide tiles read B as it lies (one product of a few rows,
    or a small B: src/_gemm.h, rf_unpacked_ok), else B packed
    (pack_b_split(pack_rows(rows), False, ..., nt, reuse); reuse: an
    inference call's weights)."""
    if floating is float and rf_unpacked_ok(rows, min_rows, k, n):
        return <floating*> rf_unpacked_b()
    return pack_b_split(pack_rows(rows), False, k, n, b, ldb, nt, reuse)


cdef inline int grad_threads(int threads, Py_ssize_t R, Py_ssize_t flops_per_row,
                             bint packed) noexcept nogil:
    """How many threads the parameter and input gradients of one call get
    when its step loop ran on one thread (fewer than 4 batch rows a thread,
    e.g. N = 1).  dX is row by row and dWx, dWh, db are sums over the N*T
    rows, so those rows split over threads as batch rows do, each thread
    summing into its own gradient part.  Packed path only, and at least
    ~20 MFLOP a thread: a thread is created per call, which here cost more
    than it saved below that (GRU at `tiny`, 7 MFLOP: 2 threads 1.4x
    slower than 1; LSTM N = 2, T = 500, D = H = 256: 1.20x faster), and at
    least 128 rows a thread (LSTM N = 1, T = 100, D = H = 256, 50 rows a
    thread: 2 threads 0.85x of 1)."""
    cdef Py_ssize_t t = threads
    if not packed or t < 2:
        return 1
    if t > RF_MAX_THREADS:
        t = RF_MAX_THREADS
    if t > R // rf_split_grad_rows:    # each thread also zeroes, writes and
        t = R // rf_split_grad_rows    # adds a whole gradient part: rows must repay it
    while t > 1 and R * flops_per_row < rf_split_grad_flops * t:
        t -= 1
    return <int> (t if t > 1 else 1)


# Per-thread partial sums of the parameter gradients.  Part 0 is the
# gradients themselves; part p > 0 lives in one scratch block of
# grad_stride(...) values laid out [dWx (D, G) | dWh (H, G) | db (nb)],
# at (p - 1) * stride + offset.
cdef inline floating* grad_part(floating* own, floating* scratch, int part,
                                Py_ssize_t offset, Py_ssize_t stride) noexcept nogil:
    return own if part == 0 else scratch + (part - 1) * stride + offset


cdef inline void add_parts(floating* dst, const floating* scratch, int parts,
                           Py_ssize_t offset, Py_ssize_t stride,
                           Py_ssize_t size) noexcept nogil:
    cdef int p
    cdef Py_ssize_t i
    cdef const floating* src
    for p in range(1, parts):
        src = scratch + (p - 1) * stride + offset
        for i in range(size):
            dst[i] += src[i]


# ------------------------------------------------------ entry-point checks
# The public API checks everything before it calls a kernel, but the kernel
# modules are importable, so their def functions check that the arrays they
# are given agree before any pointer is taken (a mismatch would read or
# write out of bounds).  A handful of comparisons: well under a microsecond.
cdef inline int expect(str name, const Py_ssize_t* shape, int ndim, Py_ssize_t d0,
                       Py_ssize_t d1, Py_ssize_t d2) except -1:
    """shape[:ndim] == (d0, d1, d2)[:ndim], else a ValueError naming `name`
    and both shapes.  The wanted sizes are C integers: a tuple built at each
    of a call's dozen checks cost microseconds of a one-step call."""
    cdef Py_ssize_t want[3]
    cdef int i
    want[0], want[1], want[2] = d0, d1, d2
    for i in range(ndim):
        if shape[i] != want[i]:
            raise ValueError(f"{name}: expected shape "
                             f"{tuple([want[j] for j in range(ndim)])}, got "
                             f"{tuple([shape[j] for j in range(ndim)])}")
    return 0


cdef inline int expect_chunk(Py_ssize_t Tc, Py_ssize_t T, bint training) except -1:
    """The steps of a forward's gates buffer: T, or in inference 1..T (a
    chunk, src/_seq.pxd's header)."""
    if Tc == T or (not training and 1 <= Tc < T):
        return 0
    raise ValueError(f"gates: expected {T} steps{'' if training else f' (or 1..{T} in inference)'}, "
                     f"got {Tc}")


cdef inline int expect_batch(const Arr* lengths, Py_ssize_t N, Py_ssize_t T,
                             Py_ssize_t offset, Py_ssize_t H, Py_ssize_t W) except -1:
    """lengths (N,) each in 1..T, N, T >= 1, and a column offset with
    offset + H <= W (the output/gradient slice of this direction)."""
    cdef Py_ssize_t n
    cdef const Py_ssize_t* plen = <const Py_ssize_t*> lengths.data
    if N < 1 or T < 1:
        raise ValueError(f"xs: expected N >= 1 and T >= 1, got N={N}, T={T}")
    expect("lengths", lengths.shape, 1, N, 0, 0)
    for n in range(N):
        if plen[n] < 1 or plen[n] > T:
            raise ValueError(f"lengths[{n}]: expected 1..{T}, got {plen[n]}")
    if offset < 0 or offset + H > W:
        raise ValueError(f"offset: expected 0..{W - H} (H={H}, width {W}), got {offset}")
    return 0


# What every cell's kernels share, checked once for all three: the kind of
# each array (src/_arrays.pxd), then the shapes; a cell's own Fwd/BwdArgs
# struct holds one of these as its field `s`, beside its own arrays:
# SeqFwd (src/_seqfwd.pxd, where the dispatcher's direct inference path
# fills one too) and SeqBwd (below).  Pointers are untyped so that one
# struct serves float and double (the loops cast them back).  Sizes are
# given per hidden unit: a cell's gates are kG*H wide (RNN 1, GRU 3, LSTM
# 4), its flat bias kb*H, its work rows kw*H.


cdef inline int take_forward(SeqFwd* s, xs, Wx, Wh, b, h, lengths, out, gates, h_prev,
                             work, Py_ssize_t kG, Py_ssize_t kb, Py_ssize_t kw,
                             Py_ssize_t out_offset, bint reverse, bint training,
                             bint check_xs=False) except -1:
    """s <- the forward's arrays and sizes, checked (see SeqFwd); check_xs:
    xs is to be tested for NaN and Inf as it is projected (the def then
    calls raise_if_nonfinite after the run)."""
    cdef Arr x, wx, wh, bias, hh, lens, o, g, hp, wk
    cdef int ft = kernel_dtype(xs)
    take(&x, xs, "xs", 3, ft, False); take(&wx, Wx, "Wx", 2, ft, False)
    take(&wh, Wh, "Wh", 2, ft, False); take(&bias, b, "b", 1, ft, False)
    take(&hh, h, "h", 2, ft, True); take(&lens, lengths, "lengths", 1, NPY_INTP, False)
    take(&o, out, "out", 3, ft, True); take(&g, gates, "gates", 3, ft, True)
    take(&hp, h_prev, "h_prev", 3, ft, True); take(&wk, work, "work", 2, ft, True)
    cdef Py_ssize_t N = x.shape[0], T = x.shape[1], D = x.shape[2], H = wh.shape[0]
    cdef Py_ssize_t G = kG * H, Tc = g.shape[1]
    expect_batch(&lens, N, T, out_offset, H, o.shape[2])
    expect_chunk(Tc, T, training)
    expect("Wx", wx.shape, 2, D, G, 0); expect("Wh", wh.shape, 2, H, G, 0)
    expect("b", bias.shape, 1, kb * H, 0, 0); expect("h", hh.shape, 2, N, H, 0)
    expect("out", o.shape, 2, N, T, 0)
    expect("gates", g.shape, 3, N, Tc, G); expect("work", wk.shape, 2, N, kw * H, 0)
    if training:
        expect("h_prev", hp.shape, 3, N, T, H)
    s.xs, s.Wx, s.Wx_packed, s.Wh, s.b = x.data, wx.data, NULL, wh.data, bias.data
    s.h, s.out, s.gates, s.work = hh.data, o.data, g.data, wk.data
    s.h_prev = hp.data if training else NULL
    s.lengths = <const Py_ssize_t*> lens.data
    s.N, s.T, s.D, s.H, s.W, s.out_offset, s.Tc = N, T, D, H, o.shape[2], out_offset, Tc
    s.check_xs, s.nonfinite = check_xs, 0
    s.reverse, s.training, s.ft, s.pack_epoch = reverse, training, ft, 0
    s.col_parts, s.barrier = 0, NULL
    return 0


cdef inline int* xs_check(SeqFwd* s) noexcept nogil:
    """What project_inputs takes: where to report a NaN or Inf in xs, or
    NULL when xs is not to be tested."""
    return &s.nonfinite if s.check_xs else NULL


cdef struct SeqBwd:
    const void* xs           # (N, T, D)
    const void* Wx           # (D, G)
    const void* WxT_packed   # Wx^T packed for dX, or NULL (BLAS)
    const void* Wh           # (H, G)
    void* h_prev             # (N, T, H); a backward may write it (states_rebuilt)
    const void* dout         # (N, T, W), columns dout_offset..+H
    const Py_ssize_t* lengths
    void* gates              # (N, T, G): in the activations, out dL/da
    void* dh                 # (N, H): in dL/d(final h), out dL/dh0
    void* work               # (N, kw*H)
    void* dWx                # shaped as Wx, Wh and b (flat)
    void* dWh
    void* db
    void* dxs                # (N, T, D): overwritten, or added to
    void* scratch            # parts 1.. of dWx, dWh, db (one stride each)
    Py_ssize_t N, T, D, H, W, dout_offset
    bint reverse, accumulate_dx
    bint prefetch            # prefetch each row's next step (worth_prefetching)
    bint dw_accumulate       # the gradients add to dWx, dWh, db (chunks)
    Py_ssize_t chunk         # steps a chunk (chunk_steps), 0: steps, then gradients
    void* chunk_h            # (N, chunk, chunk_h_width) for the cell's chunks, or NULL
    bint check_dout          # test dout (all W columns) for NaN and Inf as it is read
    int nonfinite            # set to 1 when that test found one
    int ft
    int col_parts            # > 1: the step loop's products split by columns
    void* barrier            # (as SeqFwd's; backward_steps_and_grads)


cdef inline int take_backward(SeqBwd* s, xs, Wx, Wh, lengths, dout, dh, gates, h_prev,
                              dWx, dWh, db, dxs, work, Py_ssize_t kG, Py_ssize_t kb,
                              Py_ssize_t kw, Py_ssize_t dout_offset, bint reverse,
                              bint accumulate_dx, bint check_dout=False) except -1:
    """s <- the backward's arrays and sizes, checked (see SeqBwd);
    check_dout: dout is to be tested for NaN and Inf (the def then calls
    raise_if_nonfinite after the run; backward_steps_and_grads)."""
    cdef Arr x, wx, wh, lens, do, dhh, g, hp, dwx, dwh, dbb, dx, wk
    cdef int ft = kernel_dtype(xs)
    take(&x, xs, "xs", 3, ft, False); take(&wx, Wx, "Wx", 2, ft, False)
    take(&wh, Wh, "Wh", 2, ft, False)
    take(&lens, lengths, "lengths", 1, NPY_INTP, False)
    take(&do, dout, "dout", 3, ft, False); take(&dhh, dh, "dh", 2, ft, True)
    take(&g, gates, "gates", 3, ft, True); take(&hp, h_prev, "h_prev", 3, ft, True)
    take(&dwx, dWx, "dWx", 2, ft, True); take(&dwh, dWh, "dWh", 2, ft, True)
    take(&dbb, db, "db", 1, ft, True); take(&dx, dxs, "dxs", 3, ft, True)
    take(&wk, work, "work", 2, ft, True)
    cdef Py_ssize_t N = x.shape[0], T = x.shape[1], D = x.shape[2], H = wh.shape[0]
    cdef Py_ssize_t G = kG * H
    expect_batch(&lens, N, T, dout_offset, H, do.shape[2])
    expect("Wx", wx.shape, 2, D, G, 0); expect("Wh", wh.shape, 2, H, G, 0)
    expect("dout", do.shape, 2, N, T, 0); expect("dh", dhh.shape, 2, N, H, 0)
    expect("gates", g.shape, 3, N, T, G); expect("h_prev", hp.shape, 3, N, T, H)
    expect("dWx", dwx.shape, 2, D, G, 0); expect("dWh", dwh.shape, 2, H, G, 0)
    expect("db", dbb.shape, 1, kb * H, 0, 0); expect("dxs", dx.shape, 3, N, T, D)
    expect("work", wk.shape, 2, N, kw * H, 0)
    s.xs, s.Wx, s.WxT_packed, s.Wh, s.h_prev = x.data, wx.data, NULL, wh.data, hp.data
    s.dout, s.lengths = do.data, <const Py_ssize_t*> lens.data
    s.gates, s.dh, s.work, s.dxs, s.scratch = g.data, dhh.data, wk.data, dx.data, NULL
    s.chunk, s.chunk_h = 0, NULL
    s.dWx, s.dWh, s.db = dwx.data, dwh.data, dbb.data
    s.N, s.T, s.D, s.H, s.W, s.dout_offset = N, T, D, H, do.shape[2], dout_offset
    s.reverse, s.accumulate_dx, s.ft = reverse, accumulate_dx, ft
    s.check_dout, s.nonfinite = check_dout, 0
    s.col_parts, s.barrier = 0, NULL
    return 0


cdef inline Py_ssize_t grad_stride(Py_ssize_t D, Py_ssize_t H, Py_ssize_t G,
                                   Py_ssize_t nb) noexcept nogil:
    return (D + H) * G + nb


cdef inline void zero_grads(floating* dWx, floating* dWh, floating* db, Py_ssize_t D,
                            Py_ssize_t H, Py_ssize_t G, Py_ssize_t nb) noexcept nogil:
    memset(dWx, 0, D * G * sizeof(floating))
    memset(dWh, 0, H * G * sizeof(floating))
    memset(db, 0, nb * sizeof(floating))


# Adding the per-thread gradient parts is a stream through memory (at
# zaremba-medium, GRU: 10 MB of parts read, 10 MB of dWx, dWh read and
# written), which one thread ran while the other waited: `perf` of a
# 2-thread GRU training step there put 1.8 % of all samples, ~4 % of the
# wall time, in that loop.  Over ADD_SPLIT_BYTES it goes on the threads
# that made the parts, each a range of blocks of the [dWx | dWh | db]
# layout (docs/performance.md item 188).  Each element gets the same sums
# in the same order: bitwise the same gradients.
cdef enum:
    ADD_BLOCK = 4096                 # elements a block (the threads' unit)
    ADD_SPLIT_BYTES = 1 << 20        # of parts 1.., at least, to split


cdef struct AddPartsJob:
    void* dst[3]                     # dWx, dWh, db
    Py_ssize_t offset[3]             # where each starts in a part's layout
    Py_ssize_t size[3]
    const void* scratch
    Py_ssize_t stride
    int parts
    bint dbl


cdef inline void add_parts_blocks(void* ctx, long r0, long r1, int part) noexcept nogil:
    """Blocks r0..r1-1 of the layout: dst += parts 1.. there."""
    cdef AddPartsJob* j = <AddPartsJob*> ctx
    cdef Py_ssize_t lo = r0 * ADD_BLOCK, hi = r1 * ADD_BLOCK, a0, a1, s0, s1
    cdef int a
    for a in range(3):
        a0 = j.offset[a]
        a1 = a0 + j.size[a]
        s0 = lo if lo > a0 else a0
        s1 = hi if hi < a1 else a1
        if s0 >= s1:
            continue
        if j.dbl:
            add_parts(<double*> j.dst[a] + (s0 - a0), <const double*> j.scratch, j.parts,
                      s0, j.stride, s1 - s0)
        else:
            add_parts(<float*> j.dst[a] + (s0 - a0), <const float*> j.scratch, j.parts,
                      s0, j.stride, s1 - s0)


cdef inline void add_grad_parts(floating* dWx, floating* dWh, floating* db,
                                const floating* scratch, int parts, Py_ssize_t D,
                                Py_ssize_t H, Py_ssize_t G, Py_ssize_t nb,
                                int threads=1) noexcept nogil:
    """dWx, dWh, db += parts 1.. of the per-thread partial sums, on up to
    `threads` threads when the parts are large (ADD_SPLIT_BYTES)."""
    cdef AddPartsJob job
    cdef Py_ssize_t stride = grad_stride(D, H, G, nb)
    job.dst[0], job.dst[1], job.dst[2] = <void*> dWx, <void*> dWh, <void*> db
    job.offset[0], job.offset[1], job.offset[2] = 0, D * G, (D + H) * G
    job.size[0], job.size[1], job.size[2] = D * G, H * G, nb
    job.scratch, job.stride, job.parts = <const void*> scratch, stride, parts
    job.dbl = floating is double
    if stride * (parts - 1) * sizeof(floating) < ADD_SPLIT_BYTES:
        threads = 1
    rf_run_rows(add_parts_blocks, &job, (stride + ADD_BLOCK - 1) // ADD_BLOCK, threads)


cdef inline bint grads_on_threads(rf_rows_fn fn, void* args, void** scratch, int threads,
                                  Py_ssize_t rows, Py_ssize_t flops_per_row, bint packed,
                                  floating* dWx, floating* dWh, floating* db,
                                  Py_ssize_t D, Py_ssize_t H, Py_ssize_t G,
                                  Py_ssize_t nb) noexcept nogil:
    """Run fn (a cell's gradients over a range of the N*T rows) on the
    threads grad_threads allows, each into its own gradient part, then add
    the parts.  Parts 1.. go to *scratch, malloc'ed here and freed by the
    caller.  False, with nothing run, when one thread is all the work is
    worth or the memory cannot be had: the caller then runs fn's rows
    itself."""
    cdef int ng = grad_threads(threads, rows, flops_per_row, packed)
    if ng < 2:
        return False
    scratch[0] = malloc((ng - 1) * grad_stride(D, H, G, nb) * sizeof(floating))
    if scratch[0] == NULL:
        return False
    rf_run_rows(fn, args, rows, ng)
    add_grad_parts(dWx, dWh, db, <const floating*> scratch[0], ng, D, H, G, nb, ng)
    return True


cdef inline size_t reusing_packs(const SeqFwd* s, int nt) noexcept nogil:
    """How a forward packs its weights (pack_b's reuse, src/_blas.pxd).
    Training: PACK_PLAIN.  Inference in a pack epoch (s.pack_epoch, a
    generate loop's steps): that epoch, so that its calls after the first
    pack nothing.  Other inference: PACK_REUSE, into the buffer that
    packed them last, storing only what changed, for a step loop on 2
    threads or more, where the other core read that buffer last and each
    plain store took the line back from its cache (RNN inference at
    zaremba-small, 2 threads: 1.09x; one-step calls of 256 units
    1.10-1.15x); at 1 thread comparing the rows cost more than storing
    them (0.979x for an LSTM step of 32 rows of 256 units, whose 2 MB of
    weights come from L3; docs/performance.md item 172)."""
    if s.training:
        return PACK_PLAIN
    if s.pack_epoch > PACK_REUSE:
        return s.pack_epoch
    return PACK_REUSE if nt > 1 else PACK_PLAIN


cdef inline void forward_prologue(floating* tag, SeqFwd* s, Py_ssize_t G,
                                  int nt, bint project=True) noexcept nogil:
    """Before a forward step loop: Wx packed for the loop's own input
    projection (project_inputs) into s.Wx_packed (forward_epilogue frees
    it; packed on nt threads, pack_b_split), or NULL, and then the
    projection of all N*T rows is done here on
    BLAS (or chunk by chunk in the loop when gates holds Tc < T steps); the
    padding of out's columns out_offset..+H and of h_prev (training) zeroed.
    With s.check_xs, the rows of xs the loop's projection does not test
    are tested here.  project False: no projection at all (the step loop
    takes its inputs in its own products: NarrowInputs), and with
    s.check_xs all of xs is tested here (it is narrow)."""
    cdef Py_ssize_t N = s.N, T = s.T, H = s.H, D = s.D, n
    s.Wx_packed = NULL
    if not project:
        if s.check_xs:
            check_rows(<const floating*> s.xs, N * T * D, &s.nonfinite)
    else:
        # Rows a product: all N*T at once, or a row's steps of a chunk.
        s.Wx_packed = pack_b_or_read_split(N * T, s.Tc if s.Tc < T else N * T, <int> s.D,
                                           <int> G, <const floating*> s.Wx, <int> G, nt,
                                           reusing_packs(s, nt))
        if s.check_xs:
            if s.Wx_packed == NULL and s.Tc == T:
                # One product on BLAS, here: xs is tested all at once before it.
                check_rows(<const floating*> s.xs, N * T * D, &s.nonfinite)
            elif s.Tc < T:
                # project_chunk tests the rows it projects; the padding here.
                for n in range(N):
                    check_rows(<const floating*> s.xs + (n * T + s.lengths[n]) * D,
                               (T - s.lengths[n]) * D, &s.nonfinite)
        if s.Wx_packed == NULL and s.Tc == T:
            gemm(False, False, <int> (N * T), <int> G, <int> s.D, <floating> 1,
                 <const floating*> s.xs, <int> s.D, <const floating*> s.Wx, <int> G,
                 <floating> 0, <floating*> s.gates, <int> G)
    zero_padding(<floating*> s.out, N, T, s.W, s.out_offset, H, s.lengths)
    if s.h_prev != NULL:
        zero_padding(<floating*> s.h_prev, N, T, H, 0, H, s.lengths)
    # Training only: an inference loop's gates are a chunk in cache, and
    # prefetching its out rows alone measured 0.975-1.02 (item 60).
    s.prefetch = s.training and worth_prefetching(N, T, G, H, sizeof(floating))


cdef inline void forward_epilogue(SeqFwd* s) noexcept nogil:
    free_packed(<void*> s.Wx_packed)
    s.Wx_packed = NULL


# ------------------------------------------ narrow inputs in the step product
# An input much narrower than the state (D <= H/2: `medium`'s D = 64 at H =
# 256, a time series' few features) made the hoisted projection x Wx a
# product of short K, whose every gate value is stored (in training to
# memory: an LSTM's gates at `medium` are 26 MB), then loaded and stored
# again by the step's h Wh.  A step loop then instead multiplies the rows
# [x_t | h] (N, D + H) by [Wx; Wh] packed once: one product of K = D + H
# stores each gate value once; x_t is copied row by row beside the state,
# which the loop keeps there.  LSTM only (docs/performance.md item 168):
# whole calls 1.01-1.09x faster on LSTM's narrow shapes, but RNN's forward
# in training ran 0.74-0.84x as fast at D = 1-8 (1.02x at `medium`).
# Where it loses, and so the rule below:
# - a wide input (the products alone at LSTM `zaremba-medium`, D = H = 650:
#   0.909x): D <= H/2;
# - a large [Wx; Wh], which each step then streams from L3 or memory where
#   it streamed Wh alone (D = 325, H = 650, 10 MB, N = 20: 0.921x; 5.2 MB:
#   0.99-1.01x): at most NARROW_MAX_BYTES of it;
# - a short sequence: a step of few rows streams all of [Wx; Wh] where the
#   projection read Wx once for all steps (N = 1: 0.92x at T = 12, 0.92-
#   0.97x at T = 16, 1.015x at T = 24), while N = 8-128 gained 1.00-1.06x
#   at T = 4-16 (docs/performance.md item 170; a first step from a zero
#   state multiplies x_0 by Wx alone, as the projected loop skips h Wh
#   there).  The rule may not read N, so T >= NARROW_MIN_STEPS: batches
#   gain from T = 16, a row alone loses ~1 us there;
# - ragged lengths are not handled: uniform lengths only (each row at the
#   same t).
# A gate value's sum comes in another order than the projection's (x Wx,
# then h Wh added), so results differ from it by rounding; they do not
# depend on N (the rows beside a row), which the rule therefore never reads.
cdef extern from *:
    """
    static int rf_narrow_inputs_switch = 1;   /* 0: the hoisted projection always */
    """
    int rf_narrow_inputs_switch

cdef enum:
    NARROW_MAX_BYTES = 6 << 20       # of [Wx; Wh]
    NARROW_MIN_STEPS = 16

cdef inline void set_narrow_inputs(bint on) noexcept nogil:
    global rf_narrow_inputs_switch
    rf_narrow_inputs_switch = on


cdef struct NarrowInputs:
    void* xh                 # (N, D + H): row n = [x_t of row n | its state], or NULL
    const void* packed       # [Wx; Wh] (D + H, G), packed
    const void* x_packed     # Wx (D, G) packed alone when the state starts at zero, else NULL


cdef inline bint narrow_inputs_begin(floating* tag, SeqFwd* s, Py_ssize_t G, bint uniform,
                                     NarrowInputs* f, int nt) noexcept nogil:
    """f <- a call's buffers for narrow inputs, and True, when they pay (see
    above); else NULLs and False (the call then projects its inputs as
    before).  nt: the step loop's threads at most (for reusing_packs).
    Frees with narrow_inputs_end."""
    cdef Py_ssize_t N = s.N, T = s.T, D = s.D, H = s.H, K = D + H
    cdef floating* bp
    cdef size_t reuse = reusing_packs(s, nt)
    cdef long nr = RF_NRD if floating is double else RF_NR
    cdef long stride = rf_panel_stride_d(K) if floating is double else rf_panel_stride(K)
    f.xh, f.packed, f.x_packed = NULL, NULL, NULL
    # Not on N: a row's outputs must not depend on the rows beside it
    # (scikit-learn's subset checks), and every product's tiles and GEMVs
    # sum a row's K terms in the same order.
    if (not rf_narrow_inputs_switch or not uniform or 2 * D > H or T < NARROW_MIN_STEPS
            or K * G * sizeof(floating) > NARROW_MAX_BYTES or not rf_gemm_packed_supported()):
        return False
    bp = packed_buffer(pack_rows(N * T), <int> K, <int> G, <const floating*> s.Wx,
                       reuse != PACK_PLAIN)
    f.xh = <void*> rf_buf_alloc(N * K * (sizeof(floating) // sizeof(float)))
    if bp == NULL or f.xh == NULL:
        free_packed(<void*> bp)
        rf_buf_free(<float*> f.xh)
        f.xh = NULL
        return False
    # Wx's rows into rows 0..D-1 of every panel, Wh's into D..K-1 (as
    # pack_part packs a share of B's rows): the bytes pack_b gives [Wx; Wh];
    # with reuse, into what packed them last, storing only what changed, or
    # nothing when this pack epoch packed it (from this Wh too: the buffer
    # is keyed by Wx alone).
    if not packed_in_epoch(bp, reuse, s.Wh):
        pack_rows_into(<const void*> s.Wx, G, D, G, <void*> bp, stride, floating is double,
                       reuse != PACK_PLAIN)
        pack_rows_into(<const void*> s.Wh, G, H, G, <void*> (bp + D * nr), stride,
                       floating is double, reuse != PACK_PLAIN)
        stamp_packing(bp, reuse, s.Wh)
    f.packed = <const void*> bp
    # From a zero state the first step's product is x_0 Wx alone (K = D), as
    # the projected loop skips h Wh there; the zeros it leaves out add
    # nothing, so the sums are the same (but for signs of zero).  pack_b's
    # m only says packing is wanted (0 asks for BLAS): any m > 0 packs.
    if all_zero(<const floating*> s.h, N * H):
        f.x_packed = <const void*> pack_b(2, False, <int> D, <int> G, <const floating*> s.Wx,
                                          <int> G, reuse)
    return True


cdef inline void narrow_inputs_end(NarrowInputs* f) noexcept nogil:
    free_packed(<void*> f.packed)
    free_packed(<void*> f.x_packed)
    rf_buf_free(<float*> f.xh)
    f.xh, f.packed, f.x_packed = NULL, NULL, NULL


cdef inline floating* narrow_state(floating* tag, SeqFwd* s, NarrowInputs* f, Py_ssize_t n0,
                                   Py_ssize_t n1, bint back) noexcept nogil:
    """Rows n0..n1-1 of the state h copied beside their inputs (back: copied
    back into h, after the loop); returns where row 0's state lies in xh
    (row n's at + n * (D + H))."""
    cdef Py_ssize_t n, D = s.D, H = s.H, K = D + H
    cdef floating* at = <floating*> f.xh + D
    cdef floating* h = <floating*> s.h
    for n in range(n0, n1):
        if back:
            memcpy(h + n * H, at + n * K, H * sizeof(floating))
        else:
            memcpy(at + n * K, h + n * H, H * sizeof(floating))
    return at


cdef inline void narrow_step_product(floating* tag, SeqFwd* s, NarrowInputs* f, Py_ssize_t G,
                                     Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t k,
                                     floating* C, int ldc, bint h_zero) noexcept nogil:
    """Step k's gate rows of rows n0..n1-1 (C, row stride ldc) = [x_t | h]
    [Wx; Wh]: each row's x_t copied beside its state (forward_prologue
    tested all of xs when s.check_xs), then one product; h_zero: these
    rows' h is known to be zero, and then C = x_t Wx alone if Wx is packed
    alone (f.x_packed)."""
    cdef Py_ssize_t n, D = s.D, K = D + s.H, T = s.T, t = step_time(k, s.T, s.reverse)
    cdef floating* xh = <floating*> f.xh
    cdef const floating* xs = <const floating*> s.xs
    cdef Py_ssize_t tn = step_time(k + 1, s.T, s.reverse), j
    cdef floating* dst
    cdef const floating* src
    for n in range(n0, n1):
        dst = xh + n * K
        src = xs + (n * T + t) * D
        for j in range(D):
            dst[j] = src[j]
        if k + 1 < T:           # the next step's row: xs's rows lie T*D apart
            prefetch(xs + (n * T + tn) * D, D * sizeof(floating))
    if h_zero and f.x_packed != NULL:
        gemm_packed(<int> (n1 - n0), <int> G, <int> D, xh + n0 * K, <int> K,
                    <const floating*> f.x_packed, False, <const floating*> s.Wx, <int> G,
                    False, C, ldc)
        return
    gemm_packed(<int> (n1 - n0), <int> G, <int> K, xh + n0 * K, <int> K,
                <const floating*> f.packed, False, <const floating*> s.Wx, <int> G, False,
                C, ldc)


cdef inline void backward_prologue(floating* tag, SeqBwd* s, Py_ssize_t G,
                                   int nt) noexcept nogil:
    """Before a backward step loop: the padding of gates zeroed (its
    gradients there stay 0), and Wx^T packed for dX into s.WxT_packed
    (backward_steps_and_grads frees it; packed on nt threads,
    pack_b_split), or NULL: BLAS."""
    zero_padding(<floating*> s.gates, s.N, s.T, G, 0, G, s.lengths)
    s.prefetch = worth_prefetching(s.N, s.T, G, s.H, sizeof(floating))
    s.WxT_packed = pack_b_split(pack_rows(s.N * s.T), True, <int> G, <int> s.D,
                                <const floating*> s.Wx, <int> G, nt, False)


# ------------------------------------------------------ a call's skeleton
# What every cell's *_run does around its own step loop and gradients.  A
# cell hands its row functions over as rf_rows_fn pointers, the float or
# double version (`*_f`, `*_d`) matching `floating`.
cdef inline void run_steps(floating* tag, rf_rows_fn steps, void* args, Py_ssize_t N,
                           int nt) noexcept nogil:
    """steps over batch rows 0..N-1: split over nt threads (only the packed
    path threads, see step_threads), else on this thread."""
    if nt > 1:
        rf_run_rows(steps, args, N, nt)
    else:
        steps(args, 0, N, 0)


# ------------------------------------------- a step's product by columns
# At 2 threads a step loop splits over batch rows: each thread multiplies
# its rows by the whole Wh at every step.  With few rows a thread and a Wh
# larger than a core's L2, each thread then streams all of Wh from L3 at
# every step for a product of few rows (GRU `zaremba-medium`, 10 rows a
# thread and 5 MB of Wh: 114 GFLOP/s, where 20 rows by half of Wh's columns
# ran 139; docs/performance.md item 191).  Split by columns instead, each
# thread streams half of Wh for all rows; the pass still splits by rows, so
# the parts wait for each other twice a step (src/_threads.h, rf_barrier).
cdef extern from *:
    """
    /* 0: never by columns; 1: where col_split_pays; 2: wherever it can
     * (tests and A/B: rnnfast._core.use_col_split) */
    static int rf_col_split_switch = 1;
    static long rf_col_split_runs = 0;     /* step loops run by columns */
    """
    int rf_col_split_switch
    long rf_col_split_runs


cdef enum:
    COL_SPLIT_ROWS = 16          # by columns below this many rows a thread
    COL_SPLIT_BYTES = 2 << 20    # and from this many bytes of Wh,
    COL_SPLIT_FEW_BYTES = 512 << 10  # or from this many where the rows
                                     # alone would leave threads idle
    COL_SPLIT_BWD_BYTES = 1 << 20    # (the backward: only there, and
                                     # from this many)


cdef inline void set_col_split(int mode) noexcept nogil:
    global rf_col_split_switch
    rf_col_split_switch = mode


cdef inline int use_col_split_mode(mode) except -1:
    """Each kernel module's use_col_split (rnnfast._core.use_col_split sets
    all three): mode 0, 1 or 2 as rf_col_split_switch says, or a
    ValueError."""
    if not isinstance(mode, int) or mode not in (0, 1, 2):
        raise ValueError(f"use_col_split: mode: expected 0, 1 or 2, got {mode!r}")
    set_col_split(<int> mode)
    return 0


cdef inline int col_block(floating* tag) noexcept nogil:
    """Columns a part's share is a multiple of: a wide tile's two panels."""
    return 2 * RF_NRD if floating is double else 2 * RF_NR


cdef inline int col_threads(floating* tag, int threads, int nt, Py_ssize_t N, Py_ssize_t T,
                            Py_ssize_t K, Py_ssize_t ncols,
                            Py_ssize_t flops_per_row_step) noexcept nogil:
    """How many parts a forward step loop of N rows and T steps on up to
    `threads` threads (nt by rows: step_threads) splits its products (N,
    K) @ (K, ncols) over by columns (see above), or 0: by rows.  At least
    a wide tile's columns a part, as much work a thread as step_threads
    asks, and a Wh of COL_SPLIT_FEW_BYTES or more where the rows alone
    would leave threads idle (step_threads gives fewer than 4 rows a
    thread none: a batch of fewer than 8 rows runs on one thread by rows),
    else fewer than COL_SPLIT_ROWS rows a thread and a Wh of
    COL_SPLIT_BYTES or more (docs/performance.md item 191)."""
    cdef Py_ssize_t t = threads
    if rf_col_split_switch == 0 or t < 2:
        return 0
    if t > RF_MAX_THREADS:
        t = RF_MAX_THREADS
    while t > 1 and ncols < t * col_block(tag):
        t -= 1
    if t < 2:
        return 0
    if rf_col_split_switch == 2:
        return <int> t
    if N * T * flops_per_row_step < rf_split_step_flops * t:
        return 0
    if nt < t:
        return <int> t if K * ncols * sizeof(floating) >= COL_SPLIT_FEW_BYTES else 0
    if N >= COL_SPLIT_ROWS * t or K * ncols * sizeof(floating) < COL_SPLIT_BYTES:
        return 0
    return <int> t


cdef inline void run_forward_steps(floating* tag, rf_rows_fn steps, void* args, SeqFwd* s,
                                   int threads, int nt, Py_ssize_t K, Py_ssize_t ncols,
                                   Py_ssize_t flops_per_row_step,
                                   const void* Wp) noexcept nogil:
    """run_steps for a forward step loop whose product is (N, K) @ (K,
    ncols), Wp its packed right-hand side (NULL: BLAS, which splits by
    rows): by columns on col_threads(threads, ...) parts when it gives two
    or more and the pool can run them all at once (rf_run_together), else
    by rows on nt threads (step_threads).  The loop's products go through
    step_product and each step ends in step_done."""
    global rf_col_split_runs
    cdef rf_barrier bar
    cdef int ran, parts = 0
    s.col_parts, s.barrier = 0, NULL
    if Wp != NULL:
        parts = col_threads(tag, threads, nt, s.N, s.T, K, ncols, flops_per_row_step)
    if parts > 1:
        rf_barrier_init(&bar, parts)
        s.col_parts, s.barrier = parts, &bar
        ran = rf_run_together(steps, args, s.N, parts)
        s.col_parts, s.barrier = 0, NULL
        if ran:
            rf_col_split_runs += 1
            return
    run_steps(tag, steps, args, s.N, nt)


cdef inline bint states_zero(const floating* h, SeqFwd* s, Py_ssize_t n0,
                             Py_ssize_t n1, Py_ssize_t K) noexcept nogil:
    """Whether the rows of h (rows K wide) that this part's products read
    are all zero: its own rows n0..n1-1, or all N by columns."""
    if s.col_parts > 1:
        return all_zero(h, s.N * K)
    return all_zero(h + n0 * K, (n1 - n0) * K)


cdef inline const floating* part_cols(const floating* Wp, int part, int parts, int ncols,
                                     int K, Py_ssize_t* c0, Py_ssize_t* c1) noexcept nogil:
    """Part `part` of `parts`'s columns c0..c1-1 of a product's ncols (whole
    col_block blocks, split evenly; c1 <= c0: none), and where they start
    in Wp, B packed with K rows (or rf_unpacked_b(), B read as it lies)."""
    cdef Py_ssize_t blk = col_block(<floating*> NULL)
    cdef Py_ssize_t nb = (ncols + blk - 1) // blk
    c0[0] = nb * part // parts * blk
    c1[0] = nb * (part + 1) // parts * blk
    if c1[0] > ncols:
        c1[0] = ncols
    if <const void*> Wp == <const void*> rf_unpacked_b():
        return Wp
    return Wp + c0[0] // (blk // 2) * (rf_panel_stride_d(K) if floating is double
                                       else rf_panel_stride(K))


cdef inline void step_product(const floating* h, SeqFwd* s, int part, Py_ssize_t n0,
                              Py_ssize_t n1, int ncols, int K, const floating* Wp,
                              const floating* Wh, int ldw, bint accumulate, floating* C,
                              int ldc, bint h_zero) noexcept nogil:
    """A forward step's product C (+)= h @ Wh (h rows K wide, C from row 0
    on, rows ldc apart; state_product): rows n0..n1-1 by rows, or all N
    rows of this part's columns by columns, and then every part's columns
    are in."""
    cdef Py_ssize_t c0, c1
    if s.col_parts <= 1:
        state_product(h + n0 * K, <int> (n1 - n0), ncols, K, Wp, Wh, ldw, accumulate,
                      C + n0 * ldc, ldc, h_zero)
        return
    Wp = part_cols(Wp, part, s.col_parts, ncols, K, &c0, &c1)
    if c1 > c0:
        state_product(h, <int> s.N, <int> (c1 - c0), K, Wp, Wh + c0, ldw, accumulate,
                      C + c0, ldc, h_zero)
    rf_barrier_wait(<rf_barrier*> s.barrier)


cdef inline void step_done(SeqFwd* s) noexcept nogil:
    """The end of a forward step: by columns, wait until every part's rows
    are through their pass (the next step's products read all of them)."""
    if s.col_parts > 1:
        rf_barrier_wait(<rf_barrier*> s.barrier)


cdef inline void dh_product(SeqBwd* s, int part, Py_ssize_t n0, Py_ssize_t n1, int ncols,
                            int K, const floating* A, int lda, const floating* Wp,
                            const floating* Wh, int ldw, floating* C,
                            int ldc) noexcept nogil:
    """A backward step's product C += A @ Wh^T (gemm_packed_dh; A and C
    from row 0 on): rows n0..n1-1 by rows; by columns (Wp packed), once
    every part's rows are through their pass, all N rows of this part's
    columns of C, and then every part's columns are in."""
    cdef rf_barrier* bar = <rf_barrier*> s.barrier
    cdef Py_ssize_t c0, c1
    if s.col_parts <= 1:
        gemm_packed_dh(<int> (n1 - n0), ncols, K, A + n0 * lda, lda, Wp, Wh, ldw, True,
                       C + n0 * ldc, ldc)
        return
    rf_barrier_wait(bar)
    Wp = part_cols(Wp, part, s.col_parts, ncols, K, &c0, &c1)
    if c1 > c0:
        gemm_packed_dh(<int> s.N, <int> (c1 - c0), K, A, lda, Wp, Wh + c0 * ldw, ldw, True,
                       C + c0, ldc)
    rf_barrier_wait(bar)


cdef inline void inputs_done(SeqFwd* s) noexcept nogil:
    """After a part projected its rows' inputs (a chunk's): by columns,
    wait for every part's rows when the step products add into the
    projected gates (RNN, LSTM)."""
    if s.col_parts > 1:
        rf_barrier_wait(<rf_barrier*> s.barrier)


# A backward's step loop over steps k_hi-1..k_lo of batch rows n0..n1-1,
# and its gradients over the rows of `runs` runs of run_len rows, run r
# from row r0 + r * T of the (N*T)-row buffers on, into gradient part
# `part`: each cell brings both (its *_steps_f/_d and *_grads_f/_d).
ctypedef void (*steps_fn)(void* args, long n0, long n1, long k_lo, long k_hi,
                         int part) noexcept nogil
ctypedef void (*grads_fn)(void* args, long r0, long run_len, long runs, int part) noexcept nogil


cdef struct BwdJob:
    steps_fn steps
    grads_fn grads
    void* args
    Py_ssize_t T
    Py_ssize_t chunk         # steps a chunk (chunk_steps), or 0: all at once
    bint reverse
    SeqBwd* s                # for the test of dout chunk by chunk
    bint test_chunks         # test each chunk's dout rows after its steps


# A long backward interleaves its step loop with its gradients, chunk by
# chunk of steps (in reverse, as BPTT runs), so that the dX and dW
# products read each chunk's gate gradients from L2 instead of memory.  A
# chunk's gate gradients (rows x steps x G) fill about CHUNK_BYTES, and a
# chunk has at least 16 steps, else no chunks.  At N = 8, D = H = 64,
# T = 10,000 (item 61) 128 KB beat 512 KB and 2 MB for RNN (1.06 against
# 0.90-0.97 over no chunks) and matched them for LSTM and GRU.
cdef enum:
    CHUNK_BYTES = 128 << 10


cdef inline Py_ssize_t chunk_steps(Py_ssize_t N, Py_ssize_t T, Py_ssize_t G, Py_ssize_t H,
                                   Py_ssize_t rows, Py_ssize_t itemsize,
                                   bint uniform) noexcept nogil:
    """Steps a chunk for a backward whose thread runs `rows` of the N batch
    rows, or 0 (the step loop, then the gradients over all steps): only for
    a long call (long_call) in which every row visits the same time at each
    step (uniform: a chunk's rows then lie in one run per batch row)."""
    if rf_grad_chunks_switch == 0:
        return 0
    return chunk_steps_by_size(N, T, G, H, rows, itemsize, uniform)


cdef inline Py_ssize_t chunk_steps_by_size(Py_ssize_t N, Py_ssize_t T, Py_ssize_t G,
                                           Py_ssize_t H, Py_ssize_t rows,
                                           Py_ssize_t itemsize, bint uniform) noexcept nogil:
    """chunk_steps whatever use_grad_chunks says."""
    cdef Py_ssize_t c
    if (not uniform or rows < 1 or G < 1 or itemsize < 1
            or not long_call(N, T, G, H, itemsize)):
        return 0
    c = CHUNK_BYTES // (rows * G * itemsize)
    if c < 16:
        # A chunk of 16 steps would not stay in cache (N = 64, H = 256:
        # 4 MB), and each chunk reads and writes dW once more.
        return 0
    return c if c < T else 0


# Saved states rebuilt in the backward (RNN, LSTM).  A training forward
# saves h_prev, the state each step starts from, for the dWh product.  For
# RNN and LSTM the backward can have it without: the state step k starts
# from is the h step k - 1 made, and that step's activations, which the
# backward reads anyway (RNN: the gates row itself; LSTM: o * tanh(c')),
# give it bitwise.  Where the call is long enough to go chunk by chunk,
# the forward then saves the first step's state only and the backward
# writes each later one, as it meets step k - 1 before overwriting its
# activations, into a buffer of the chunk's rows (s.chunk_h), which stays
# in cache for the chunk's dWh: the saved states' round trip to memory
# goes.
cdef inline bint states_rebuilt(Py_ssize_t N, Py_ssize_t T, Py_ssize_t G, Py_ssize_t H,
                                Py_ssize_t itemsize, bint uniform) noexcept nogil:
    """Whether a training call of these sizes rebuilds its saved states:
    where a one-thread backward goes chunk by chunk by its sizes (whatever
    use_grad_chunks says, so that forward and backward agree).  Elsewhere
    the forward saves every state: at `medium` (which does not chunk)
    moving the RNN's copies into the backward measured 0.97-0.98."""
    return chunk_steps_by_size(N, T, G, H, N, itemsize, uniform) > 0


cdef inline floating* rebuilt_state(floating* tag, SeqBwd* s, Py_ssize_t n, Py_ssize_t t,
                                    Py_ssize_t t0) noexcept nogil:
    """Where the backward writes row n's h_prev of time t: the chunk's
    buffer (its times from t0 on) of a chunked call, else h_prev."""
    if s.chunk_h != NULL:
        return <floating*> s.chunk_h + (n * s.chunk + t - t0) * s.H
    return <floating*> s.h_prev + (n * s.T + t) * s.H


cdef inline void step_state(floating* h, const floating* acts, const floating* tanh_c,
                            Py_ssize_t H) noexcept nogil:
    """The state h a step made, from its activations (RNN, tanh_c NULL: h
    itself) or, for LSTM, from o (acts[3H:4H]) and its tanh(c'): o *
    tanh(c'), bitwise the forward's."""
    cdef Py_ssize_t j
    if tanh_c == NULL:
        memcpy(h, acts, H * sizeof(floating))
    else:
        for j in range(H):
            h[j] = acts[3 * H + j] * tanh_c[j]


cdef inline Py_ssize_t rebuild_chunk_start(floating* tag, SeqBwd* s, Py_ssize_t n0,
                                           Py_ssize_t n1, Py_ssize_t k_lo, Py_ssize_t k_hi,
                                           Py_ssize_t G, const floating* tanh_c) noexcept nogil:
    """Before a chunk's steps k_hi-1..k_lo (rows visiting time k at step
    k, or all of length T): each row's h_prev of step k_lo, the state step
    k_lo - 1 made (its activations are not yet overwritten; tanh_c NULL
    for RNN), or the saved first state.  A row whose step k_lo is padding
    gets its zeroed by rebuild_padding.  Returns the chunk's first time t0
    (rebuilt_state's)."""
    cdef Py_ssize_t T = s.T, H = s.H, n, tp
    cdef Py_ssize_t t0 = chunk_start(T, k_lo, k_hi, s.reverse), t = step_time(k_lo, T, s.reverse)
    for n in range(n0, n1):
        if k_lo >= s.lengths[n]:
            continue
        if k_lo > 0:
            tp = step_time(k_lo - 1, T, s.reverse)
            step_state(rebuilt_state(tag, s, n, t, t0), <floating*> s.gates + (n * T + tp) * G,
                       tanh_c + (n * T + tp) * H if tanh_c != NULL else NULL, H)
        elif s.chunk_h != NULL:
            memcpy(rebuilt_state(tag, s, n, t, t0), <floating*> s.h_prev + (n * T + t) * H,
                   H * sizeof(floating))
    return t0


cdef inline void rebuild_next_state(floating* tag, SeqBwd* s, Py_ssize_t n, Py_ssize_t k,
                                    Py_ssize_t L, Py_ssize_t k_hi, Py_ssize_t t0,
                                    const floating* acts, const floating* tanh_c) noexcept nogil:
    """During step k of row n (length L), before its activations acts (and
    tanh_c, LSTM's row of tanh(c'), or NULL) are overwritten: the state it
    made, as the h_prev of step k + 1 when that step's gradients are still
    to come (in this chunk of steps ..k_hi-1).  Into h_prev (no chunk
    buffer), a long call also prefetches step k's row there, which step k
    - 1 writes next (as the forward did when it saved the states)."""
    if s.prefetch and s.chunk_h == NULL and k > 0:
        prefetch_w(<floating*> s.h_prev + (n * s.T + step_time(k, L, s.reverse)) * s.H,
                   s.H * sizeof(floating))
    if k + 1 < L and (s.chunk == 0 or k + 1 < k_hi):
        step_state(rebuilt_state(tag, s, n, step_time(k + 1, L, s.reverse), t0), acts, tanh_c,
                   s.H)


cdef inline void rebuild_padding(floating* tag, SeqBwd* s, Py_ssize_t n, Py_ssize_t k,
                                 Py_ssize_t t0) noexcept nogil:
    """Step k of row n is padding: its dL/da is 0, and its slot of the
    chunk's buffer a 0 state, not stale memory (NaN * 0 is NaN)."""
    if s.chunk_h != NULL:
        memset(rebuilt_state(tag, s, n, step_time(k, s.T, s.reverse), t0), 0,
               s.H * sizeof(floating))


cdef inline const floating* state_rows(floating* tag, SeqBwd* s, Py_ssize_t r0,
                                       Py_ssize_t* run_stride) noexcept nogil:
    """The h_prev rows the gradients read from row r0 (of the N*T) on, and
    (run_stride) how many rows apart a chunk's runs lie there."""
    if s.chunk_h != NULL:
        run_stride[0] = s.chunk
        return <const floating*> s.chunk_h + (r0 // s.T) * s.chunk * s.H
    run_stride[0] = s.T
    return <const floating*> s.h_prev + r0 * s.H


# The backward's dout test (check_dout), as the forward's of xs (above,
# check_rows): a network's first backward refuses a dhs with a NaN or Inf.
# Tested apart, before the call, dout came from memory twice in a long
# call.  A call that does not go chunk by chunk tests all of dout before
# its steps, so a refusal writes nothing; a chunked one tests each chunk's
# rows just after its steps have read them (job_steps_then_grads), from
# cache.  A refusal there comes after some chunks (and NaN may have run
# through one): backward_steps_and_grads then puts the gradients back as
# they were, and the rest of what the backward writes (gates, h_prev, dh,
# dxs) is left undefined: the caller's forward is spent, as after any
# backward.
cdef inline bint chunk_dout_finite(SeqBwd* s, Py_ssize_t n0, Py_ssize_t n1,
                                   Py_ssize_t k_lo, Py_ssize_t k_hi) noexcept nogil:
    """Whether the dout rows that steps k_lo..k_hi-1 of batch rows
    n0..n1-1 read hold no NaN or Inf (all W columns, padding included),
    else s.nonfinite = 1.  A chunked call's rows visit the same times
    (is_uniform): each row's are one run."""
    cdef Py_ssize_t n, t0 = chunk_start(s.T, k_lo, k_hi, s.reverse)
    cdef Py_ssize_t count = (k_hi - k_lo) * s.W
    cdef bint ok
    for n in range(n0, n1):
        if s.ft == NPY_FLOAT:
            ok = finite_values(<const float*> s.dout + (n * s.T + t0) * s.W, count)
        else:
            ok = finite_values(<const double*> s.dout + (n * s.T + t0) * s.W, count)
        if not ok:
            # Threads test their own rows and set the flag to the same
            # value; the def reads it after they have joined.
            s.nonfinite = 1
            return False
    return True


cdef inline void copy_grads(floating* dst, floating* dWx, floating* dWh, floating* db,
                            Py_ssize_t D, Py_ssize_t H, Py_ssize_t G, Py_ssize_t nb,
                            bint back) noexcept nogil:
    """dst (one grad_stride block, laid out as a gradient part) <- dWx,
    dWh, db; or, when back, the other way."""
    cdef floating* part[3]
    cdef floating* own[3]
    cdef Py_ssize_t size[3]
    cdef int i
    part[0], part[1], part[2] = dst, dst + D * G, dst + (D + H) * G
    own[0], own[1], own[2] = dWx, dWh, db
    size[0], size[1], size[2] = D * G, H * G, nb
    for i in range(3):
        if back:
            memcpy(own[i], part[i], size[i] * sizeof(floating))
        else:
            memcpy(part[i], own[i], size[i] * sizeof(floating))


cdef inline void job_steps(void* job, long n0, long n1, int part) noexcept nogil:
    """rf_rows_fn: all steps of batch rows n0..n1-1."""
    cdef BwdJob* j = <BwdJob*> job
    j.steps(j.args, n0, n1, 0, j.T, part)


cdef inline void job_grads(void* job, long r0, long r1, int part) noexcept nogil:
    """rf_rows_fn: the gradients over rows r0..r1-1 of the N*T rows."""
    cdef BwdJob* j = <BwdJob*> job
    j.grads(j.args, r0, r1 - r0, 1, part)


cdef inline void job_steps_then_grads(void* job, long n0, long n1, int part) noexcept nogil:
    """Batch rows n0..n1-1's steps, then their gradients into part `part`:
    all steps at once, or chunk by chunk of j.chunk steps (the gradients
    then add up: the caller zeroed the part and set s.dw_accumulate).  By
    columns a part may have no rows: it runs its columns of the steps'
    products, and no gradients (the caller zeroed its part)."""
    cdef BwdJob* j = <BwdJob*> job
    cdef Py_ssize_t T = j.T, k_lo, k_hi = T
    if j.chunk == 0:
        j.steps(j.args, n0, n1, 0, T, part)
        if n1 > n0:
            j.grads(j.args, n0 * T, (n1 - n0) * T, 1, part)    # one run: all their rows
        return
    while k_hi > 0:
        k_lo = k_hi - j.chunk if k_hi > j.chunk else 0
        j.steps(j.args, n0, n1, k_lo, k_hi, part)
        if n1 == n0:
            k_hi = k_lo
            continue
        # After the steps, which have just read these rows: tested before
        # them, they came from memory with nothing to overlap (RNN, T =
        # 10,000: 0.965 against the test before the call).
        if j.test_chunks and not chunk_dout_finite(j.s, n0, n1, k_lo, k_hi):
            return
        # steps k_lo..k_hi-1 visit times k_lo.. (forward) or T-k_hi.. (reverse)
        j.grads(j.args, n0 * T + (T - k_hi if j.reverse else k_lo), k_hi - k_lo, n1 - n0,
                part)
        k_hi = k_lo


cdef inline void backward_steps_and_grads(
        floating* tag, SeqBwd* s, void* args, steps_fn steps, grads_fn grads, int nt,
        int threads, Py_ssize_t grad_flops_per_row, void* release1, void* release2,
        Py_ssize_t G, Py_ssize_t nb, Py_ssize_t chunk_h_width=0,
        Py_ssize_t col_K=0) noexcept nogil:
    """The step loop of a backward call on nt threads (step_threads), then
    its parameter and input gradients (into a gradient part: grad_part with
    s.scratch).  With the steps on threads and packed dW products, each
    thread goes on to its own rows' gradients, into a part of its own, and
    the parts are added here; else the gradients run over the N*T rows on
    the threads grads_on_threads allows, or on this thread.  A long call
    on one thread, or split so, interleaves steps and gradients chunk by
    chunk (chunk_steps).  release1 and 2 (packed matrices of the step loop,
    or NULL) are freed after the steps (when the gradients follow them on
    this thread), so that the gradients' buffers can reuse them;
    s.WxT_packed and s.scratch at the end.  A chunked call sets s.chunk and,
    when chunk_h_width > 0, s.chunk_h: N x s.chunk rows of chunk_h_width for
    the cell's step loop to fill and its gradients to read (NULL if not to
    be had; the cell then does without).  With s.check_dout, dout is tested
    first, or chunk by chunk (chunk_dout_finite); when it holds a NaN or
    Inf, s.nonfinite is set and dWx, dWh, db are left as they were.
    col_K > 0: the step loop's product is (N, col_K) @ (col_K, H) on
    release1 (packed Wh^T) through dh_product, and runs by columns on the
    parts col_threads gives, if two or more (each part then sums its own
    rows' gradients into a part of its own, as by rows; dout is tested
    all first, since a part that stopped at a chunk's test would leave
    the other waiting)."""
    global rf_col_split_runs
    cdef BwdJob job
    cdef rf_barrier bar
    cdef int parts = 0, nparts = nt, ran = 0
    cdef Py_ssize_t N = s.N, T = s.T, D = s.D, H = s.H
    cdef Py_ssize_t stride = grad_stride(D, H, G, nb)
    cdef floating* dWx = <floating*> s.dWx
    cdef floating* dWh = <floating*> s.dWh
    cdef floating* db = <floating*> s.db
    cdef floating* grads_before = NULL
    job.steps, job.grads, job.args, job.T, job.reverse = steps, grads, args, T, s.reverse
    job.chunk = 0
    job.s, job.test_chunks = s, False
    s.scratch = NULL
    s.dw_accumulate = False
    s.col_parts, s.barrier = 0, NULL
    if (col_K > 0 and release1 != NULL and release1 != <void*> rf_unpacked_b()
            and rf_packed_dw_enabled() != 0):
        parts = col_threads(tag, threads, nt, N, T, col_K, H, 2 * col_K * H)
        # Where the rows already keep every thread busy, the backward stays
        # split by rows: by columns it lost at `zaremba-medium` (GRU 0.953,
        # LSTM 0.966; docs/performance.md item 192), where the forward
        # gains; and it needs a larger Wh than the forward to gain (GRU N =
        # 4, H = 256, 768 KB: 0.982; LSTM N = 2, H = 256, 1 MB: 1.279).
        if rf_col_split_switch != 2 and (
                parts <= nt or col_K * H * sizeof(floating) < COL_SPLIT_BWD_BYTES):
            parts = 0
        if parts > 1:
            nparts = parts
    if nparts > 1 and rf_packed_dw_enabled() != 0:
        # The threads sum their rows' gradients on the packed kernel only:
        # BLAS is never called from them (src/_blas.pxd, gemm).
        s.scratch = malloc((nparts - 1) * stride * sizeof(floating))
    if parts > 1 and s.scratch == NULL:
        parts, nparts = 0, nt         # by rows, as without the memory for parts
        if nt > 1 and rf_packed_dw_enabled() != 0:
            s.scratch = malloc((nt - 1) * stride * sizeof(floating))
    if s.scratch != NULL or (nt == 1 and grad_threads(
            threads, N * T, grad_flops_per_row,
            s.WxT_packed != NULL and rf_packed_dw_enabled() != 0) < 2):
        # Each thread's rows (or all rows here) go on to their gradients:
        # chunk by chunk when the call is long.
        job.chunk = chunk_steps(N, T, G, H, (N + nparts - 1) // nparts, sizeof(floating),
                                is_uniform(s.lengths, N, T, s.reverse))
    s.chunk = job.chunk
    s.chunk_h = NULL
    if s.check_dout and job.chunk and parts < 2:
        # Chunk by chunk: a refusal may come after some chunks have added
        # to the gradients, which are then put back from this copy.
        grads_before = <floating*> malloc(stride * sizeof(floating))
        if grads_before != NULL:
            copy_grads(grads_before, dWx, dWh, db, D, H, G, nb, False)
            job.test_chunks = True
    if s.check_dout and not job.test_chunks:
        # All of dout first: a refusal then writes nothing.
        check_rows(<const floating*> s.dout, N * T * s.W, &s.nonfinite)
    if job.chunk and chunk_h_width > 0 and not s.nonfinite:
        s.chunk_h = malloc(N * job.chunk * chunk_h_width * sizeof(floating))
        if s.chunk_h != NULL and rf_poison_chunk_h:
            memset(s.chunk_h, 0xff, N * job.chunk * chunk_h_width * sizeof(floating))
    if s.nonfinite:
        free_packed(release1)
        free_packed(release2)
    elif s.scratch != NULL or job.chunk:
        if job.chunk or parts > 1:    # by columns a part may have no rows
            s.dw_accumulate = True
            zero_grads(dWx, dWh, db, D, H, G, nb)
            if s.scratch != NULL:
                memset(s.scratch, 0, (nparts - 1) * stride * sizeof(floating))
        if s.scratch != NULL:
            if parts > 1:
                rf_barrier_init(&bar, parts)
                s.col_parts, s.barrier = parts, &bar
                ran = rf_run_together(job_steps_then_grads, &job, N, parts)
                s.col_parts, s.barrier = 0, NULL
                if ran:
                    rf_col_split_runs += 1
            if not ran:               # by rows, as parts < nt would have
                rf_run_rows(job_steps_then_grads, &job, N, nt)
            add_grad_parts(dWx, dWh, db, <const floating*> s.scratch, nparts, D, H, G, nb,
                           nparts)
        else:
            job_steps_then_grads(&job, 0, N, 0)
        free_packed(release1)
        free_packed(release2)
    else:
        run_steps(tag, job_steps, &job, N, nt)
        free_packed(release1)
        free_packed(release2)
        if not grads_on_threads(
                job_grads, &job, &s.scratch, threads, N * T, grad_flops_per_row,
                s.WxT_packed != NULL and rf_packed_dw_enabled() != 0,
                dWx, dWh, db, D, H, G, nb):
            # Not worth threads (or, with the steps on threads, the dW
            # products are on BLAS, which threads them itself): here.
            job_grads(&job, 0, N * T, 0)
    if grads_before != NULL:
        if s.nonfinite:
            copy_grads(grads_before, dWx, dWh, db, D, H, G, nb, True)
        free(grads_before)
    free(s.scratch)
    s.scratch = NULL
    free(s.chunk_h)
    s.chunk_h = NULL
    s.chunk = 0
    free_packed(<void*> s.WxT_packed)
    s.WxT_packed = NULL
