"""LSTM kernels: whole-sequence forward and backward (BPTT).

Gate order f, g, i, o (textbook):  a = x Wx + h Wh + b  (N, 4H)
    f = sigmoid(a_f)  g = tanh(a_g)  i = sigmoid(a_i)  o = sigmoid(a_o)
    c' = f*c + g*i    h' = o*tanh(c')

Buffers (caller-allocated, C order; see _seq.pxd for the shared ones):
    gates   (N, T, 4H)  activated f, g, i, o; backward overwrites them with
                        dL/da
                        (inference may pass Tc < T steps: a chunk, src/_seq.pxd)
    h_prev  (N, T, H)   state h before each step; of a long call the forward
                        saves the first step's only, and the backward
                        rebuilds the others as o * tanh(c') of the step
                        before (src/_seq.pxd, states_rebuilt)
    c_prev  (N, T, H)   state c before each step
    tanh_c  (N, T, H)   tanh(c') after each step
    work    (N, 4H)     scratch for ragged reverse runs
    h, c    (N, H)      in: initial state; out: final state
A cell's one step is the same kernel with T = 1.

Each kernel is a def (the checks of its arrays: take_forward/take_backward
in src/_seq.pxd, and its own arrays), a fused `*_run` (hoisted GEMMs,
threads) and a step loop over a range of batch rows (`*_steps`), which
runs on `threads` threads when the per-step products use the packed
micro-kernel (src/_threads.h).
"""
cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_New
from libc.string cimport memcpy
from _blas cimport (floating, pack_rows, rf_use_unpacked_b, free_packed, pack_b, gemm_packed,
                    gemm_packed_dh, rf_use_packed_gemm, rf_use_packed_dw, rf_gemm_packed_supported,
                    rf_use_wide_tiles, rf_use_tall_tiles)
from _cells cimport lstm_fwd_row, lstm_bwd_row
from _arrays cimport Arr, take
from numpy cimport NPY_FLOAT
from _seqfwd cimport infer_fn, INFER_CAPSULE
from _seq cimport (set_prefetch, use_col_split_mode, rf_col_split_runs, set_grad_chunks, prefetch_forward_row, prefetch_backward_row,
                   step_time, chunk_start, project_inputs, is_uniform, input_grads,
                   step_threads, expect, grad_part, grad_stride, set_split_limits, run_steps,
                   backward_steps_and_grads, SeqFwd, SeqBwd, take_forward, take_backward,
                   forward_prologue, forward_epilogue, backward_prologue, rf_use_thread_pool, rf_use_pool_spread,
                   pack_b_split, pack_b_or_read_split, set_pack_split,
                   all_zero, state_product, states_rebuilt, state_rows,
                   run_forward_steps, states_zero, step_product, step_done, inputs_done,
                   dh_product,
                   set_poison_chunk_h, rebuild_chunk_start, rebuild_next_state,
                   rebuild_padding, xs_check, raise_if_nonfinite,
                   NarrowInputs, narrow_inputs_begin, narrow_inputs_end, narrow_state,
                   reusing_packs,
                   narrow_step_product, set_narrow_inputs)

cnp.import_array()


cdef struct FwdArgs:
    SeqFwd s                 # the arrays and sizes every cell has (src/_seq.pxd)
    void* c                  # (N, H) in/out
    void* c_prev             # (N, T, H) when training, else NULL
    void* tanh_c             # (N, T, H) when training, else NULL
    const void* Wh_packed
    NarrowInputs narrow      # narrow.xh not NULL: inputs in the step product
    bint uniform
    bint save_all            # training: h_prev of every step (not states_rebuilt)


cdef void lstm_forward_steps(floating* tag, FwdArgs* a, Py_ssize_t n0,
                             Py_ssize_t n1, int part) noexcept nogil:
    """Steps 0..T-1 for batch rows n0..n1-1 (tag only selects the type),
    after their input projection when Wx is packed (else the caller did it
    for all rows on BLAS), or chunk by chunk of Tc steps when gates holds
    only Tc, or with the inputs in each step's product (a.narrow;
    src/_seq.pxd).  By columns (not narrow), part `part`'s columns of every
    row's products."""
    cdef Py_ssize_t T = a.s.T, D = a.s.D, H = a.s.H, G = 4 * H, W = a.s.W, off = a.s.out_offset
    cdef Py_ssize_t Tc = a.s.Tc, k0, k1
    cdef floating* pg = <floating*> a.s.gates
    cdef floating* ph = <floating*> a.s.h
    cdef floating* pc = <floating*> a.c
    cdef floating* pout = <floating*> a.s.out
    cdef floating* pw = <floating*> a.s.work
    cdef floating* phs = <floating*> a.s.h_prev
    cdef floating* pcs = <floating*> a.c_prev
    cdef floating* pts = <floating*> a.tanh_c
    cdef const floating* pb = <const floating*> a.s.b
    cdef const floating* Wh = <const floating*> a.s.Wh
    cdef const floating* whp = <const floating*> a.Wh_packed
    cdef const Py_ssize_t* plen = a.s.lengths
    cdef int rows = <int> (n1 - n0)
    cdef Py_ssize_t k, n, t, j, L
    cdef floating* g
    cdef floating* tsave = NULL
    cdef bint h0_zero = states_zero(ph, &a.s, n0, n1, H)
    cdef bint narrow = a.narrow.xh != NULL
    cdef Py_ssize_t ldh = D + H if narrow else H      # row stride of the state
    if narrow:
        ph = narrow_state(tag, &a.s, &a.narrow, n0, n1, False)
    k0 = 0
    while k0 < T:                   # the chunks of Tc steps (one when Tc = T)
        k1 = k0 + Tc if k0 + Tc < T else T
        if not narrow:
            project_inputs(<const floating*> a.s.xs, <const floating*> a.s.Wx_packed,
                           <const floating*> a.s.Wx, plen, a.s.reverse, T, D, G, n0, n1,
                           k0, k1, pg, Tc, xs_check(&a.s))
            inputs_done(&a.s)
        for k in range(k0, k1):
            if narrow:              # uniform: the step-t rows of the chunk
                t = step_time(k, T, a.s.reverse) - chunk_start(T, k0, k1, a.s.reverse)
                narrow_step_product(tag, &a.s, &a.narrow, G, n0, n1, k,
                                    pg + (n0 * Tc + t) * G, <int> (Tc * G), k == 0 and h0_zero)
            elif a.uniform:
                # Recurrent GEMM accumulates straight into the step-t rows
                # of the projected gates (row stride Tc*4H, no copy).
                t = step_time(k, T, a.s.reverse) - chunk_start(T, k0, k1, a.s.reverse)
                step_product(ph, &a.s, part, n0, n1, <int> G, <int> H, whp, Wh, <int> G, True,
                             pg + t * G, <int> (Tc * G), k == 0 and h0_zero)
            else:
                # Ragged reverse run: each row is at its own t, so the
                # recurrent term goes to scratch and is added per row.
                step_product(ph, &a.s, part, n0, n1, <int> G, <int> H, whp, Wh, <int> G, False,
                             pw, <int> G, k == 0 and h0_zero)
            for n in range(n0, n1):
                L = plen[n]
                if k >= L:
                    continue
                t = step_time(k, L, a.s.reverse)
                g = pg + (n * Tc + t - chunk_start(L, k0, k1, a.s.reverse)) * G
                if not a.uniform:
                    for j in range(G):
                        g[j] += pw[n * G + j]
                if a.s.prefetch:
                    prefetch_forward_row(tag, &a.s, g, G, n, k, k1, L, t, pcs, pts,
                                         a.save_all)
                if a.s.training:
                    if k == 0 or a.save_all:
                        memcpy(phs + (n * T + t) * H, ph + n * ldh, H * sizeof(floating))
                    memcpy(pcs + (n * T + t) * H, pc + n * H, H * sizeof(floating))
                    tsave = pts + (n * T + t) * H
                lstm_fwd_row(g, pb, pc + n * H, ph + n * ldh, pout + (n * T + t) * W + off,
                             tsave, H)
            step_done(&a.s)
        k0 = k1
    if narrow:
        narrow_state(tag, &a.s, &a.narrow, n0, n1, True)


cdef void lstm_forward_steps_f(void* a, long n0, long n1, int part) noexcept nogil:
    lstm_forward_steps(<float*> NULL, <FwdArgs*> a, n0, n1, part)


cdef void lstm_forward_steps_d(void* a, long n0, long n1, int part) noexcept nogil:
    lstm_forward_steps(<double*> NULL, <FwdArgs*> a, n0, n1, part)


def lstm_forward(xs, Wx, Wh, b, h, c, lengths, bint reverse, out, Py_ssize_t out_offset,
                 gates, h_prev, c_prev, tanh_c, work, bint training, int threads=1,
                 bint check_xs=False):
    """Run the LSTM over a whole batch of sequences without the GIL.

    Arrays as src/_seq.pxd's SeqFwd says, with G = 4H, b (4H,), work
    (N, 4H), and c (N, H) in/out, c_prev and tanh_c (N, T, H) when
    training; float32 or float64 as xs.  With training=False the saved
    activations (h_prev, c_prev, tanh_c) are not written and may be empty
    arrays.  threads: at most this many threads for the step loop (the
    caller passes its BLAS thread count).  check_xs: xs is tested for NaN
    and Inf as it is projected, and a ValueError raised after the run if it
    holds one (src/_seq.pxd)."""
    cdef FwdArgs a
    cdef Arr cc, cp, tc
    take_forward(&a.s, xs, Wx, Wh, b, h, lengths, out, gates, h_prev, work, 4, 4, 4,
                 out_offset, reverse, training, check_xs)
    take(&cc, c, "c", 2, a.s.ft, True); expect("c", cc.shape, 2, a.s.N, a.s.H, 0)
    take(&cp, c_prev, "c_prev", 3, a.s.ft, True); take(&tc, tanh_c, "tanh_c", 3, a.s.ft, True)
    if training:
        expect("c_prev", cp.shape, 3, a.s.N, a.s.T, a.s.H)
        expect("tanh_c", tc.shape, 3, a.s.N, a.s.T, a.s.H)
    a.c = cc.data
    a.c_prev = cp.data if training else NULL
    a.tanh_c = tc.data if training else NULL
    with nogil:
        if a.s.ft == NPY_FLOAT:
            lstm_forward_run(<float*> NULL, &a, threads)
        else:
            lstm_forward_run(<double*> NULL, &a, threads)
    raise_if_nonfinite(a.s.nonfinite, "xs", xs)


cdef void lstm_forward_run(floating* tag, FwdArgs* a, int threads) noexcept nogil:
    """lstm_forward after its checks: the input projection (BLAS, unless Wx
    packs), the step loop on `threads` threads at most."""
    cdef Py_ssize_t N = a.s.N, T = a.s.T, H = a.s.H, G = 4 * H
    a.uniform = is_uniform(a.s.lengths, N, T, a.s.reverse)
    a.save_all = not states_rebuilt(N, T, G, H, sizeof(floating), a.uniform)
    cdef int pack_nt = step_threads(threads, N, T, 2 * H * G, True)
    cdef bint narrow = narrow_inputs_begin(tag, &a.s, G, a.uniform, &a.narrow, pack_nt)
    forward_prologue(tag, &a.s, G, pack_nt, not narrow)
    a.Wh_packed = NULL if narrow else pack_b_or_read_split(
        N * T, N, <int> H, <int> G, <const floating*> a.s.Wh, <int> G, pack_nt,
        reusing_packs(&a.s, pack_nt))
    run_forward_steps(tag, lstm_forward_steps_f if floating is float else lstm_forward_steps_d,
                      a, &a.s, threads, step_threads(threads, N, T, 2 * H * G,
                                                     narrow or a.Wh_packed != NULL),
                      H, G, 2 * H * G, a.Wh_packed)    # narrow: NULL, by rows
    free_packed(<void*> a.Wh_packed)
    narrow_inputs_end(&a.narrow)
    forward_epilogue(&a.s)


cdef void lstm_infer(SeqFwd* s, void* c, bint flag, int threads) noexcept nogil:
    """The inference forward of arrays its caller has checked (src/_seqfwd.pxd,
    infer_fn: c the cell state, flag unused)."""
    cdef FwdArgs a
    a.s = s[0]
    a.c, a.c_prev, a.tanh_c = c, NULL, NULL
    if s.ft == NPY_FLOAT:
        lstm_forward_run(<float*> NULL, &a, threads)
    else:
        lstm_forward_run(<double*> NULL, &a, threads)
    s.nonfinite = a.s.nonfinite


# lstm_infer for the dispatcher: a capsule, as the modules are separate
# extensions (and another build's, benchmarks/ab_inprocess.py, may lack it).
INFER_ENTRY = PyCapsule_New(<void*> <infer_fn> lstm_infer, INFER_CAPSULE, NULL)


cdef struct BwdArgs:
    SeqBwd s                 # the arrays and sizes every cell has (src/_seq.pxd)
    void* dc                 # (N, H): in dL/d(final c), out dL/dc0
    const void* c_prev
    const void* tanh_c
    const void* WhT_packed
    bint uniform
    bint rebuild             # h_prev past the first step is to be rebuilt (states_rebuilt)


cdef void lstm_backward_grads(floating* tag, BwdArgs* a, Py_ssize_t r0, Py_ssize_t run_len,
                              Py_ssize_t runs, int part) noexcept nogil:
    """dX rows, and the rows' share of dWx = X^T dA, dWh = Hprev^T dA and
    db = column sums of dA, into gradient part `part` (0: the gradients
    themselves; added to when a.s.dw_accumulate).  The rows: `runs` runs
    of run_len of the N*T rows, T apart, from row r0 on (src/_seq.pxd,
    grads_fn); one GEMM each over all of them."""
    cdef Py_ssize_t T = a.s.T, D = a.s.D, H = a.s.H, G = 4 * H
    cdef Py_ssize_t stride = grad_stride(D, H, G, G)
    cdef floating* pg = <floating*> a.s.gates + r0 * G
    cdef Py_ssize_t hp_stride
    cdef const floating* hp = state_rows(tag, &a.s, r0, &hp_stride)
    cdef floating* scratch = <floating*> a.s.scratch
    cdef floating* dWx = grad_part(<floating*> a.s.dWx, scratch, part, 0, stride)
    cdef floating* dWh = grad_part(<floating*> a.s.dWh, scratch, part, D * G, stride)
    cdef floating* db = grad_part(<floating*> a.s.db, scratch, part, (D + H) * G, stride)
    cdef Py_ssize_t j
    if not a.s.dw_accumulate:
        for j in range(G):
            db[j] = 0
    input_grads(<const floating*> a.s.xs + r0 * D, <const floating*> a.s.Wx,
                <const floating*> a.s.WxT_packed, pg, dWx, <floating*> a.s.dxs + r0 * D,
                a.s.accumulate_dx, <int> run_len, <int> D, <int> G,
                hp, dWh, <int> H, db, -1, <int> runs, T, a.s.dw_accumulate, hp_stride)


cdef void lstm_backward_steps(floating* tag, BwdArgs* a, Py_ssize_t n0, Py_ssize_t n1,
                              Py_ssize_t k_lo, Py_ssize_t k_hi, int part) noexcept nogil:
    """BPTT steps k_hi-1..k_lo for batch rows n0..n1-1.  When a.rebuild,
    each step first writes its h (o * tanh(c')) as the next step's h_prev,
    which the forward did not save (src/_seq.pxd, rebuilt_state)."""
    cdef Py_ssize_t T = a.s.T, H = a.s.H, G = 4 * H, W = a.s.W, off = a.s.dout_offset
    cdef Py_ssize_t t0 = 0
    cdef floating* pg = <floating*> a.s.gates
    cdef floating* pdh = <floating*> a.s.dh
    cdef floating* pdc = <floating*> a.dc
    cdef floating* pw = <floating*> a.s.work
    cdef const floating* pdo = <const floating*> a.s.dout
    cdef const floating* pcs = <const floating*> a.c_prev
    cdef const floating* pts = <const floating*> a.tanh_c
    cdef const floating* Wh = <const floating*> a.s.Wh
    cdef const floating* whtp = <const floating*> a.WhT_packed
    cdef const Py_ssize_t* plen = a.s.lengths
    cdef int rows = <int> (n1 - n0)
    cdef Py_ssize_t k, n, t, j, L, r
    cdef floating* g
    if a.s.chunk > 0 and a.rebuild:
        t0 = rebuild_chunk_start(tag, &a.s, n0, n1, k_lo, k_hi, G, pts)
    for k in range(k_hi - 1, k_lo - 1, -1):
        for n in range(n0, n1):
            L = plen[n]
            if k >= L:
                if not a.uniform:
                    for j in range(G):
                        pw[n * G + j] = 0
                if a.rebuild:
                    rebuild_padding(tag, &a.s, n, k, t0)
                continue
            t = step_time(k, L, a.s.reverse)
            r = n * T + t
            g = pg + r * G
            if a.s.prefetch:
                prefetch_backward_row(tag, &a.s, G, n, k, L, False, pts, pcs)
            if a.rebuild:
                rebuild_next_state(tag, &a.s, n, k, L, k_hi, t0, g, pts + r * H)
            lstm_bwd_row(g, pts + r * H, pcs + r * H, pdo + r * W + off,
                         pdh + n * H, pdc + n * H, H)
            if not a.uniform:
                memcpy(pw + n * G, g, G * sizeof(floating))
        # dh_prev (+)= dA_t Wh^T; idle rows keep their carried dh.
        if a.uniform:
            t = step_time(k, T, a.s.reverse)
            dh_product(&a.s, part, n0, n1, <int> H, <int> G, pg + t * G, <int> (T * G),
                       whtp, Wh, <int> G, pdh, <int> H)
        else:
            dh_product(&a.s, part, n0, n1, <int> H, <int> G, pw, <int> G,
                       whtp, Wh, <int> G, pdh, <int> H)


# The step and gradient functions as src/_seq.pxd takes them.
cdef void lstm_backward_steps_f(void* a, long n0, long n1, long k_lo, long k_hi,
                                int part) noexcept nogil:
    lstm_backward_steps(<float*> NULL, <BwdArgs*> a, n0, n1, k_lo, k_hi, part)


cdef void lstm_backward_steps_d(void* a, long n0, long n1, long k_lo, long k_hi,
                                int part) noexcept nogil:
    lstm_backward_steps(<double*> NULL, <BwdArgs*> a, n0, n1, k_lo, k_hi, part)


cdef void lstm_backward_grads_f(void* a, long r0, long run_len, long runs,
                                int part) noexcept nogil:
    lstm_backward_grads(<float*> NULL, <BwdArgs*> a, r0, run_len, runs, part)


cdef void lstm_backward_grads_d(void* a, long r0, long run_len, long runs,
                                int part) noexcept nogil:
    lstm_backward_grads(<double*> NULL, <BwdArgs*> a, r0, run_len, runs, part)


def lstm_backward(xs, Wx, Wh, lengths, bint reverse, dout, Py_ssize_t dout_offset, dh, dc,
                  gates, h_prev, c_prev, tanh_c, dWx, dWh, db, dxs, bint accumulate_dx,
                  work, int threads=1, dout_name=None):
    """BPTT through the saved forward.  dh, dc: in dL/d(final state), out
    dL/d(initial state).  Overwrites gates with dL/da and dWx, dWh, db;
    dxs is overwritten, or added to when accumulate_dx (the two directions
    of a bidirectional layer share one input).  Arrays as src/_seq.pxd's
    SeqBwd says, and dc (N, H), c_prev, tanh_c (N, T, H).  dout_name: as
    rnnfast._rnn.rnn_backward's."""
    cdef BwdArgs a
    cdef Arr dcc, cp, tc
    take_backward(&a.s, xs, Wx, Wh, lengths, dout, dh, gates, h_prev, dWx, dWh, db, dxs, work,
                  4, 4, 4, dout_offset, reverse, accumulate_dx, dout_name is not None)
    take(&dcc, dc, "dc", 2, a.s.ft, True); expect("dc", dcc.shape, 2, a.s.N, a.s.H, 0)
    take(&cp, c_prev, "c_prev", 3, a.s.ft, False)
    expect("c_prev", cp.shape, 3, a.s.N, a.s.T, a.s.H)
    take(&tc, tanh_c, "tanh_c", 3, a.s.ft, False)
    expect("tanh_c", tc.shape, 3, a.s.N, a.s.T, a.s.H)
    a.dc, a.c_prev, a.tanh_c = dcc.data, cp.data, tc.data
    with nogil:
        if a.s.ft == NPY_FLOAT:
            lstm_backward_run(<float*> NULL, &a, threads)
        else:
            lstm_backward_run(<double*> NULL, &a, threads)
    raise_if_nonfinite(a.s.nonfinite, dout_name, dout)


cdef void lstm_backward_run(floating* tag, BwdArgs* a, int threads) noexcept nogil:
    """lstm_backward after its checks: the step loop, then the parameter and
    input gradients (src/_seq.pxd, backward_steps_and_grads)."""
    cdef Py_ssize_t N = a.s.N, T = a.s.T, D = a.s.D, H = a.s.H, G = 4 * H
    a.uniform = is_uniform(a.s.lengths, N, T, a.s.reverse)
    a.rebuild = states_rebuilt(N, T, G, H, sizeof(floating), a.uniform)
    cdef int pack_nt = step_threads(threads, N, T, 2 * H * G, True)
    backward_prologue(tag, &a.s, G, pack_nt)
    a.WhT_packed = pack_b_split(pack_rows(N * T), True, <int> G, <int> H,
                                <const floating*> a.s.Wh, <int> G, pack_nt, False)
    backward_steps_and_grads(
        tag, &a.s, a, lstm_backward_steps_f if floating is float else lstm_backward_steps_d,
        lstm_backward_grads_f if floating is float else lstm_backward_grads_d,
        step_threads(threads, N, T, 2 * H * G, a.WhT_packed != NULL), threads,
        2 * (2 * D + H) * G, <void*> a.WhT_packed, NULL, G, G, H if a.rebuild else 0, G)


def poison_chunk_buffers(bint on):
    """Tests: as rnnfast._rnn.poison_chunk_buffers, for this module."""
    set_poison_chunk_h(on)


def use_packed_gemm(bint on, dw=None):
    """Packed micro-kernel (True, where the CPU has it) or BLAS (False) for
    the products of this module; `dw` overrides `on` for the parameter-
    gradient products alone.  Returns whether the kernel is now used."""
    rf_use_packed_gemm(on)
    rf_use_packed_dw(on if dw is None else dw)
    return bool(rf_gemm_packed_supported())


def use_wide_tiles(bint on):
    """AVX-512 tiles (two panels a tile, where the CPU has AVX-512F) or the
    AVX2 ones for this module's packed products.  Returns whether the wide
    tiles now run."""
    return bool(rf_use_wide_tiles(on))


def use_tall_tiles(bint on):
    """Two-panel tiles of up to 12 rows (on) or 8 for this module's packed
    products; the same results bitwise.  Returns the previous setting."""
    return bool(rf_use_tall_tiles(on))


def use_unpacked_b(bint on):
    """Let the wide tiles read a forward's Wx or Wh as it lies where that
    is faster than packing it (src/_gemm.h, rf_unpacked_ok), or always pack.
    The results are bitwise the same.  For A/B timings and tests."""
    rf_use_unpacked_b(on)


def use_prefetch(bint on):
    """Prefetch the step loops' rows one step ahead where the buffers are
    large (on, the default; src/_seq.pxd, worth_prefetching), or never.
    For A/B timings and tests."""
    set_prefetch(on)



def use_grad_chunks(bint on):
    """Interleave a long backward's steps and gradients chunk by chunk of
    steps (on, the default; src/_seq.pxd, chunk_steps), or run the
    gradients after all steps.  For A/B timings and tests."""
    set_grad_chunks(on)


def use_col_split(mode):
    """rnnfast._core.use_col_split for this module's kernels."""
    use_col_split_mode(mode)


def col_split_runs():
    """Step loops (forward or backward) of this module run by columns so
    far (for tests)."""
    return rf_col_split_runs


def use_narrow_inputs(bint on):
    """Take a narrow input (D <= H/2) into each step's product (on, the
    default; src/_seq.pxd, NarrowInputs), or project it first (off).
    Results differ by rounding.  For A/B timings and tests."""
    set_narrow_inputs(on)


def use_split_packing(bint on):
    """Pack a call's weights on the threads of its step loop when they are
    large (on, the default; src/_seq.pxd, pack_b_split), or on the calling
    thread alone.  The packed bytes are the same.  For A/B timings and
    tests."""
    set_pack_split(on)


# Each kernel module has its own split limits and pool (src/_threads.h is
# compiled into each): rnnfast._core.use_thread_pool and
# benchmarks/split_limits.py set all three modules' at once.
def split_limits(step_flops=None, grad_flops=None, grad_rows=None):
    return set_split_limits(step_flops, grad_flops, grad_rows)    # src/_seq.pxd


def use_thread_pool(bint on):
    return bool(rf_use_thread_pool(on))     # False: threads created per call


def use_pool_spread(bint on):
    return bool(rf_use_pool_spread(on))     # src/_threads.h, rf_move_off_cpu


# The float32 kernel's switches (each kernel module has its own copy of
# src/_gemm.h's state, so each module sets its own).
include "_kernel_switches.pxi"
