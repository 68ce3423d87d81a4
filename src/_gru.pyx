"""GRU kernels, both variants: whole-sequence forward and BPTT.

Gate order z, r, h~ (textbook), z keeps its textbook meaning:
    z = sigmoid(a_z)   r = sigmoid(a_r)   h' = (1-z)*h + z*h~
reset_after=False (textbook, "reset before"), b (3H,):
    h~ = tanh(x Wx_h + (r*h) Wh_h + b_h)           two recurrent GEMMs a step
reset_after=True (PyTorch, cuDNN, Keras), b (2, 3H) = [input row, recurrent row]:
    h~ = tanh(x Wx_h + b_x,h + r*(h Wh_h + b_h,h))  one recurrent GEMM a step

Since r multiplies a recurrent term, the recurrent GEMM cannot accumulate
into the projected gates: it goes to the (N, 4H) scratch `work` and the
fused pass adds it row by row.  Layout of work per row:
    reset_after:  [h Wh (3H) | unused]           backward: [dA_h (3H) | -]
    reset_before: [h Wh_zr (2H) | r*h | (r*h) Wh_h]
                  backward: [da_z, da_r | da_h | d(r*h)]

Buffers (caller-allocated, C order; see _seq.pxd for the shared ones):
    gates   (N, T, 3H)  z, r, h~; backward: dL/da of the input projection
                        (inference may pass Tc < T steps: a chunk, src/_seq.pxd)
    h_prev  (N, T, H)   state before each step
    extra   (N, T, H)   reset_after: h Wh_h + b_h,h (backward: its gradient)
                        reset_before: r*h_prev (needed for dWh_h)
    b       flat: 3H values, or 6H (input row then recurrent row)

Each kernel is a def (checks), a fused `*_run` and a step loop over a
range of batch rows (`*_steps`), as in src/_lstm.pyx.
"""
cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_New
from libc.string cimport memcpy
from _blas cimport (floating, pack_rows, rf_use_unpacked_b, free_packed, gemm_tn, pack_b,
                    gemm_packed, gemm_packed_dh, rf_use_packed_gemm, rf_use_packed_dw,
                    rf_gemm_packed_supported, rf_use_wide_tiles, rf_use_tall_tiles)
from _cells cimport gru_ra_fwd_row, gru_rb_fwd_zr, gru_rb_fwd_h, gru_bwd_row, gru_rb_bwd_r
from _arrays cimport Arr, take
from numpy cimport NPY_FLOAT
from _seqfwd cimport infer_fn, INFER_CAPSULE
from _seq cimport (set_prefetch, use_col_split_mode, rf_col_split_runs, set_grad_chunks, reusing_packs,
                   prefetch_forward_row, prefetch_backward_row,
                   step_time, chunk_start, project_inputs, zero_padding, input_grads,
                   step_threads, expect, grad_part, grad_stride, set_split_limits, run_steps,
                   backward_steps_and_grads, SeqFwd, SeqBwd, take_forward, take_backward,
                   forward_prologue, forward_epilogue, backward_prologue, rf_use_thread_pool, rf_use_pool_spread,
                   pack_b_split, pack_b_or_read_split, set_pack_split,
                   all_zero, state_product, xs_check, raise_if_nonfinite,
                   run_forward_steps, states_zero, step_product, step_done, dh_product)

cnp.import_array()


cdef struct FwdArgs:
    SeqFwd s                 # the arrays and sizes every cell has (src/_seq.pxd)
    void* extra              # (N, T, H) when training, else NULL
    const void* Wp1          # reset_after: Wh packed; else Wh_zr packed
    const void* Wp2          # reset_before: Wh_h packed
    bint reset_after


cdef void gru_forward_steps(floating* tag, FwdArgs* a, Py_ssize_t n0,
                            Py_ssize_t n1, int part) noexcept nogil:
    """Steps 0..T-1 for batch rows n0..n1-1, after their input projection
    when Wx is packed (else the caller did it on BLAS), or chunk by chunk
    of Tc steps when gates holds only Tc (src/_seq.pxd).  By columns
    (reset_after only), part `part`'s columns of every row's products."""
    cdef Py_ssize_t T = a.s.T, D = a.s.D, H = a.s.H, G = 3 * H, WK = 4 * H
    cdef Py_ssize_t Tc = a.s.Tc, k0, k1
    cdef Py_ssize_t W = a.s.W, off = a.s.out_offset
    cdef floating* pg = <floating*> a.s.gates
    cdef floating* ph = <floating*> a.s.h
    cdef floating* pout = <floating*> a.s.out
    cdef floating* pw = <floating*> a.s.work
    cdef floating* phs = <floating*> a.s.h_prev
    cdef floating* pex = <floating*> a.extra
    cdef const floating* bx = <const floating*> a.s.b
    cdef const floating* bh = bx + G
    cdef const floating* pWh = <const floating*> a.s.Wh
    cdef const floating* wp1 = <const floating*> a.Wp1
    cdef const floating* wp2 = <const floating*> a.Wp2
    cdef const Py_ssize_t* plen = a.s.lengths
    cdef int rows = <int> (n1 - n0)
    cdef Py_ssize_t k, n, t, j, L, r
    cdef floating* g
    cdef floating* w
    cdef floating* orow
    cdef floating* hsave = NULL
    cdef bint h0_zero = states_zero(ph, &a.s, n0, n1, H)
    k0 = 0
    while k0 < T:                   # the chunks of Tc steps (one when Tc = T)
        k1 = k0 + Tc if k0 + Tc < T else T
        project_inputs(<const floating*> a.s.xs, <const floating*> a.s.Wx_packed,
                       <const floating*> a.s.Wx, plen, a.s.reverse, T, D, G, n0, n1, k0, k1,
                       pg, Tc, xs_check(&a.s))
        for k in range(k0, k1):
            # r: row (n, t) of the (N, T, .) buffers; g: its gates, slot t -
            # chunk_start of the chunk buffer (the same when Tc = T).
            if a.reset_after:
                step_product(ph, &a.s, part, n0, n1, <int> G, <int> H, wp1, pWh, <int> G,
                             False, pw, <int> WK, k == 0 and h0_zero)
                for n in range(n0, n1):
                    L = plen[n]
                    if k >= L:
                        continue
                    t = step_time(k, L, a.s.reverse)
                    r = n * T + t
                    g = pg + (n * Tc + t - chunk_start(L, k0, k1, a.s.reverse)) * G
                    w = pw + n * WK
                    orow = pout + r * W + off
                    if a.s.prefetch:
                        prefetch_forward_row(tag, &a.s, g, G, n, k, k1, L, t, pex)
                    if a.s.training:
                        memcpy(phs + r * H, ph + n * H, H * sizeof(floating))
                        hsave = pex + r * H
                    gru_ra_fwd_row(g, w, bx, bh, ph + n * H, orow, hsave, H)
                step_done(&a.s)
            else:
                state_product(ph + n0 * H, rows, <int> (2 * H), <int> H, wp1, pWh, <int> G,
                              False, pw + n0 * WK, <int> WK, k == 0 and h0_zero)
                for n in range(n0, n1):
                    L = plen[n]
                    w = pw + n * WK
                    if k >= L:
                        for j in range(H):
                            w[2 * H + j] = 0
                        continue
                    t = step_time(k, L, a.s.reverse)
                    g = pg + (n * Tc + t - chunk_start(L, k0, k1, a.s.reverse)) * G
                    gru_rb_fwd_zr(g, w, bx, ph + n * H, H)
                gemm_packed(rows, <int> H, <int> H, pw + n0 * WK + 2 * H, <int> WK, wp2, False,
                            pWh + 2 * H, <int> G, False, pw + n0 * WK + 3 * H, <int> WK)
                for n in range(n0, n1):
                    L = plen[n]
                    if k >= L:
                        continue
                    t = step_time(k, L, a.s.reverse)
                    r = n * T + t
                    g = pg + (n * Tc + t - chunk_start(L, k0, k1, a.s.reverse)) * G
                    w = pw + n * WK
                    orow = pout + r * W + off
                    if a.s.prefetch:
                        prefetch_forward_row(tag, &a.s, g, G, n, k, k1, L, t, pex)
                    if a.s.training:
                        memcpy(phs + r * H, ph + n * H, H * sizeof(floating))
                        memcpy(pex + r * H, w + 2 * H, H * sizeof(floating))
                    gru_rb_fwd_h(g, w, bx, ph + n * H, orow, H)
        k0 = k1


cdef void gru_forward_steps_f(void* a, long n0, long n1, int part) noexcept nogil:
    gru_forward_steps(<float*> NULL, <FwdArgs*> a, n0, n1, part)


cdef void gru_forward_steps_d(void* a, long n0, long n1, int part) noexcept nogil:
    gru_forward_steps(<double*> NULL, <FwdArgs*> a, n0, n1, part)


def gru_forward(xs, Wx, Wh, b, h, lengths, bint reverse, bint reset_after, out,
                Py_ssize_t out_offset, gates, h_prev, extra, work, bint training,
                int threads=1, bint check_xs=False):
    """Arrays as src/_seq.pxd's SeqFwd says, with G = 3H, b flat (3H, or 6H
    when reset_after), work (N, 4H), and extra (N, T, H) when training;
    float32 or float64 as xs.  check_xs: xs is tested for NaN and Inf as
    it is projected, and a ValueError raised after the run if it holds one
    (src/_seq.pxd)."""
    cdef FwdArgs a
    cdef Arr ex
    take_forward(&a.s, xs, Wx, Wh, b, h, lengths, out, gates, h_prev, work, 3,
                 6 if reset_after else 3, 4, out_offset, reverse, training, check_xs)
    take(&ex, extra, "extra", 3, a.s.ft, True)
    if training:
        expect("extra", ex.shape, 3, a.s.N, a.s.T, a.s.H)
    a.extra = ex.data if training else NULL
    a.reset_after = reset_after
    with nogil:
        if a.s.ft == NPY_FLOAT:
            gru_forward_run(<float*> NULL, &a, threads)
        else:
            gru_forward_run(<double*> NULL, &a, threads)
    raise_if_nonfinite(a.s.nonfinite, "xs", xs)


cdef void gru_forward_run(floating* tag, FwdArgs* a, int threads) noexcept nogil:
    """gru_forward after its checks: the input projection (BLAS, unless Wx
    packs), the step loop on `threads` threads at most."""
    cdef Py_ssize_t N = a.s.N, T = a.s.T, H = a.s.H, G = 3 * H
    cdef const floating* pWh = <const floating*> a.s.Wh
    cdef int pack_nt = step_threads(threads, N, T, 2 * H * G, True)
    forward_prologue(tag, &a.s, G, pack_nt)
    if a.s.training:
        zero_padding(<floating*> a.extra, N, T, H, 0, H, a.s.lengths)
    # The per-step products' right-hand matrices, packed once (or NULL:
    # BLAS).  reset_after: Wh (H, 3H); else Wh_zr (H, 2H) and Wh_h (H, H).
    a.Wp2 = NULL
    if a.reset_after:
        a.Wp1 = pack_b_or_read_split(N * T, N, <int> H, <int> G, pWh, <int> G, pack_nt,
                                     reusing_packs(&a.s, pack_nt))
    else:
        a.Wp1 = pack_b_or_read_split(N * T, N, <int> H, <int> (2 * H), pWh, <int> G,
                                     pack_nt, reusing_packs(&a.s, pack_nt))
        a.Wp2 = pack_b_or_read_split(N * T, N, <int> H, <int> H, pWh + 2 * H, <int> G,
                                     pack_nt, reusing_packs(&a.s, pack_nt))
    cdef int nt = step_threads(threads, N, T, 2 * H * G,
                               a.Wp1 != NULL and (a.reset_after or a.Wp2 != NULL))
    if a.reset_after:
        run_forward_steps(tag, gru_forward_steps_f if floating is float
                          else gru_forward_steps_d, a, &a.s, threads, nt, H, G, 2 * H * G,
                          a.Wp1)
    else:
        run_steps(tag, gru_forward_steps_f if floating is float else gru_forward_steps_d, a,
                  N, nt)
    free_packed(<void*> a.Wp1)
    free_packed(<void*> a.Wp2)
    forward_epilogue(&a.s)


cdef void gru_infer(SeqFwd* s, void* c, bint flag, int threads) noexcept nogil:
    """The inference forward of arrays its caller has checked (src/_seqfwd.pxd,
    infer_fn: c unused, flag: reset_after)."""
    cdef FwdArgs a
    a.s = s[0]
    a.extra, a.reset_after = NULL, flag
    if s.ft == NPY_FLOAT:
        gru_forward_run(<float*> NULL, &a, threads)
    else:
        gru_forward_run(<double*> NULL, &a, threads)
    s.nonfinite = a.s.nonfinite


# gru_infer for the dispatcher: a capsule, as the modules are separate
# extensions (and another build's, benchmarks/ab_inprocess.py, may lack it).
INFER_ENTRY = PyCapsule_New(<void*> <infer_fn> gru_infer, INFER_CAPSULE, NULL)


cdef struct BwdArgs:
    SeqBwd s                 # the arrays and sizes every cell has (src/_seq.pxd)
    void* extra
    const void* Wp1          # reset_after: Wh^T packed; else Wh_zr^T packed
    const void* Wp2          # reset_before: Wh_h^T packed
    bint reset_after


cdef void gru_backward_grads(floating* tag, BwdArgs* a, Py_ssize_t r0, Py_ssize_t run_len,
                             Py_ssize_t runs, int part) noexcept nogil:
    """dX rows, and the rows' share of dWx, dWh and db, into gradient part
    `part` (0: the gradients themselves; added to when a.s.dw_accumulate),
    over `runs` runs of run_len rows from r0 on (src/_seq.pxd, grads_fn);
    one GEMM each over all of them."""
    cdef Py_ssize_t T = a.s.T, D = a.s.D, H = a.s.H, G = 3 * H
    cdef Py_ssize_t nb = 2 * G if a.reset_after else G
    cdef Py_ssize_t R = run_len * runs, stride = grad_stride(D, H, G, nb)
    cdef int rl = <int> run_len if runs > 1 else 0
    cdef bint acc = a.s.dw_accumulate
    cdef floating* pg = <floating*> a.s.gates + r0 * G
    cdef floating* pex = <floating*> a.extra + r0 * H
    cdef const floating* phs = <const floating*> a.s.h_prev + r0 * H
    cdef floating* scratch = <floating*> a.s.scratch
    cdef floating* dWx = grad_part(<floating*> a.s.dWx, scratch, part, 0, stride)
    cdef floating* dWh = grad_part(<floating*> a.s.dWh, scratch, part, D * G, stride)
    cdef floating* db = grad_part(<floating*> a.s.db, scratch, part, (D + H) * G, stride)
    cdef Py_ssize_t j
    if not acc:
        for j in range(nb):
            db[j] = 0
    # dWx = X^T dA, dWh[:, :2H] = Hprev^T dA_zr and db[:G] = dA's column
    # sums, with dA packed once for all three
    input_grads(<const floating*> a.s.xs + r0 * D, <const floating*> a.s.Wx,
                <const floating*> a.s.WxT_packed, pg, dWx, <floating*> a.s.dxs + r0 * D,
                a.s.accumulate_dx, <int> run_len, <int> D, <int> G, phs, dWh, <int> H, db,
                <int> (2 * H), <int> runs, T, acc)
    if a.reset_after:
        # dWh_h = Hprev^T dA_h,n; the recurrent bias gets dA_zr's sums (the
        # same as the input bias's, summed so far) and dA_h,n's
        memcpy(db + G, db, 2 * H * sizeof(floating))
        gemm_tn(<int> H, phs, <int> H, dWh + 2 * H, 0, NULL, 0, NULL, <int> H, <int> R,
                pex, <int> H, <int> G, db + G + 2 * H, -1, rl, T, acc)
    else:
        # dWh_h = (r*h)^T da_h
        gemm_tn(<int> H, pex, <int> H, dWh + 2 * H, 0, NULL, 0, NULL, <int> H, <int> R,
                pg + 2 * H, <int> G, <int> G, NULL, -1, rl, T, acc)


cdef void gru_backward_steps(floating* tag, BwdArgs* a, Py_ssize_t n0, Py_ssize_t n1,
                             Py_ssize_t k_lo, Py_ssize_t k_hi, int part) noexcept nogil:
    """BPTT steps k_hi-1..k_lo for batch rows n0..n1-1 (by columns,
    reset_after only: part `part`'s columns of every row's products)."""
    cdef Py_ssize_t T = a.s.T, H = a.s.H, G = 3 * H, WK = 4 * H
    cdef Py_ssize_t W = a.s.W, off = a.s.dout_offset
    cdef floating* pg = <floating*> a.s.gates
    cdef floating* pdh = <floating*> a.s.dh
    cdef floating* pw = <floating*> a.s.work
    cdef floating* pex = <floating*> a.extra
    cdef const floating* pdo = <const floating*> a.s.dout
    cdef const floating* phs = <const floating*> a.s.h_prev
    cdef const floating* pWh = <const floating*> a.s.Wh
    cdef const floating* wp1 = <const floating*> a.Wp1
    cdef const floating* wp2 = <const floating*> a.Wp2
    cdef const Py_ssize_t* plen = a.s.lengths
    cdef int rows = <int> (n1 - n0)
    cdef Py_ssize_t k, n, t, j, L, r
    cdef floating* g
    cdef floating* w
    for k in range(k_hi - 1, k_lo - 1, -1):
        for n in range(n0, n1):
            L = plen[n]
            w = pw + n * WK
            if k >= L:
                for j in range(G):
                    w[j] = 0
                continue
            t = step_time(k, L, a.s.reverse)
            r = n * T + t
            g = pg + r * G
            if a.s.prefetch:
                prefetch_backward_row(tag, &a.s, G, n, k, L, True, pex)
            gru_bwd_row(g, w, phs + r * H, pdo + r * W + off, pdh + n * H,
                        pex + r * H, H, a.reset_after)
        if a.reset_after:
            dh_product(&a.s, part, n0, n1, <int> H, <int> G, pw, <int> WK, wp1, pWh, <int> G,
                       pdh, <int> H)
        else:
            # d(r*h) = da_h Wh_h^T, then da_r, then dh += [da_z, da_r] Wh_zr^T
            gemm_packed_dh(rows, <int> H, <int> H, pw + n0 * WK + 2 * H, <int> WK, wp2,
                           pWh + 2 * H, <int> G, False, pw + n0 * WK + 3 * H, <int> WK)
            for n in range(n0, n1):
                L = plen[n]
                if k >= L:
                    continue
                t = step_time(k, L, a.s.reverse)
                r = n * T + t
                g = pg + r * G
                w = pw + n * WK
                gru_rb_bwd_r(g, w, phs + r * H, pdh + n * H, H)
            gemm_packed_dh(rows, <int> H, <int> (2 * H), pw + n0 * WK, <int> WK, wp1,
                           pWh, <int> G, True, pdh + n0 * H, <int> H)


# The row functions as src/_threads.h and src/_seq.pxd take them.
cdef void gru_backward_steps_f(void* a, long n0, long n1, long k_lo, long k_hi,
                               int part) noexcept nogil:
    gru_backward_steps(<float*> NULL, <BwdArgs*> a, n0, n1, k_lo, k_hi, part)


cdef void gru_backward_steps_d(void* a, long n0, long n1, long k_lo, long k_hi,
                               int part) noexcept nogil:
    gru_backward_steps(<double*> NULL, <BwdArgs*> a, n0, n1, k_lo, k_hi, part)


cdef void gru_backward_grads_f(void* a, long r0, long run_len, long runs,
                               int part) noexcept nogil:
    gru_backward_grads(<float*> NULL, <BwdArgs*> a, r0, run_len, runs, part)


cdef void gru_backward_grads_d(void* a, long r0, long run_len, long runs,
                               int part) noexcept nogil:
    gru_backward_grads(<double*> NULL, <BwdArgs*> a, r0, run_len, runs, part)


def gru_backward(xs, Wx, Wh, lengths, bint reverse, bint reset_after, dout,
                 Py_ssize_t dout_offset, dh, gates, h_prev, extra, dWx, dWh, db, dxs,
                 bint accumulate_dx, work, int threads=1, dout_name=None):
    """BPTT; dh: in dL/d(final h), out dL/dh0.  db is flat like b.  Arrays
    as src/_seq.pxd's SeqBwd says, and extra (N, T, H).  dout_name: as
    rnnfast._rnn.rnn_backward's."""
    cdef BwdArgs a
    cdef Arr ex
    take_backward(&a.s, xs, Wx, Wh, lengths, dout, dh, gates, h_prev, dWx, dWh, db, dxs, work,
                  3, 6 if reset_after else 3, 4, dout_offset, reverse, accumulate_dx,
                  dout_name is not None)
    take(&ex, extra, "extra", 3, a.s.ft, True); expect("extra", ex.shape, 3, a.s.N, a.s.T, a.s.H)
    a.extra = ex.data
    a.reset_after = reset_after
    with nogil:
        if a.s.ft == NPY_FLOAT:
            gru_backward_run(<float*> NULL, &a, threads)
        else:
            gru_backward_run(<double*> NULL, &a, threads)
    raise_if_nonfinite(a.s.nonfinite, dout_name, dout)


cdef void gru_backward_run(floating* tag, BwdArgs* a, int threads) noexcept nogil:
    """gru_backward after its checks: the step loop, then the parameter and
    input gradients (src/_seq.pxd, backward_steps_and_grads)."""
    cdef Py_ssize_t N = a.s.N, T = a.s.T, D = a.s.D, H = a.s.H, G = 3 * H
    cdef const floating* pWh = <const floating*> a.s.Wh
    cdef int pack_nt = step_threads(threads, N, T, 2 * H * G, True)
    backward_prologue(tag, &a.s, G, pack_nt)
    a.Wp2 = NULL
    if a.reset_after:
        zero_padding(<floating*> a.extra, N, T, H, 0, H, a.s.lengths)
        a.Wp1 = pack_b_split(pack_rows(N * T), True, <int> G, <int> H, pWh, <int> G, pack_nt,
                             False)
    else:
        a.Wp1 = pack_b_split(pack_rows(N * T), True, <int> (2 * H), <int> H, pWh, <int> G,
                             pack_nt, False)
        a.Wp2 = pack_b_split(pack_rows(N * T), True, <int> H, <int> H, pWh + 2 * H, <int> G,
                             pack_nt, False)
    backward_steps_and_grads(
        tag, &a.s, a, gru_backward_steps_f if floating is float else gru_backward_steps_d,
        gru_backward_grads_f if floating is float else gru_backward_grads_d,
        step_threads(threads, N, T, 2 * H * G, a.Wp1 != NULL and (a.reset_after or a.Wp2 != NULL)),
        threads, 2 * (2 * D + H) * G, <void*> a.Wp1, <void*> a.Wp2, G,
        2 * G if a.reset_after else G, 0, G if a.reset_after else 0)


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
