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
from libc.string cimport memcpy
from libc.stdlib cimport free, malloc
from _blas cimport (floating, pack_rows, gemm, free_packed, gemm_tn, pack_b, gemm_packed,
                   rf_use_packed_gemm, rf_use_packed_dw, rf_gemm_packed_supported,
                   rf_packed_dw_enabled)
from _cells cimport gru_ra_fwd_row, gru_rb_fwd_zr, gru_rb_fwd_h, gru_bwd_row, gru_rb_bwd_r
from _arrays cimport Arr, take
from numpy cimport NPY_FLOAT
from _seq cimport (step_time, chunk_start, project_inputs, expect_chunk, zero_padding, input_grads,
                  rf_run_rows, step_threads, grads_on_threads, expect, expect_batch,
                  grad_part, grad_stride, add_grad_parts, set_split_limits,
                  run_steps, backward_steps_and_grads, FwdArrays, BwdArrays,
                  take_forward, take_backward, forward_prologue,
                  rf_use_thread_pool)

cnp.import_array()


cdef struct FwdArgs:
    const void* xs
    const void* Wx
    const void* Wx_packed
    void* gates
    void* h
    void* out
    void* work
    void* h_prev
    void* extra
    const void* b
    const void* Wh
    const void* Wp1          # reset_after: Wh packed; else Wh_zr packed
    const void* Wp2          # reset_before: Wh_h packed
    const Py_ssize_t* lengths
    Py_ssize_t T, D, H, W, out_offset
    Py_ssize_t Tc            # steps of gates: T, or a chunk (inference)
    bint reverse, training, reset_after


cdef void gru_forward_steps(floating* tag, FwdArgs* a, Py_ssize_t n0,
                            Py_ssize_t n1) noexcept nogil:
    """Steps 0..T-1 for batch rows n0..n1-1, after their input projection
    when Wx is packed (else the caller did it on BLAS), or chunk by chunk
    of Tc steps when gates holds only Tc (src/_seq.pxd)."""
    cdef Py_ssize_t T = a.T, D = a.D, H = a.H, G = 3 * H, WK = 4 * H
    cdef Py_ssize_t Tc = a.Tc, k0, k1
    cdef Py_ssize_t W = a.W, off = a.out_offset
    cdef floating* pg = <floating*> a.gates
    cdef floating* ph = <floating*> a.h
    cdef floating* pout = <floating*> a.out
    cdef floating* pw = <floating*> a.work
    cdef floating* phs = <floating*> a.h_prev
    cdef floating* pex = <floating*> a.extra
    cdef const floating* bx = <const floating*> a.b
    cdef const floating* bh = bx + G
    cdef const floating* pWh = <const floating*> a.Wh
    cdef const floating* wp1 = <const floating*> a.Wp1
    cdef const floating* wp2 = <const floating*> a.Wp2
    cdef const Py_ssize_t* plen = a.lengths
    cdef int rows = <int> (n1 - n0)
    cdef Py_ssize_t k, n, t, j, L, r
    cdef floating* g
    cdef floating* w
    cdef floating* orow
    cdef floating* hsave = NULL
    k0 = 0
    while k0 < T:                   # the chunks of Tc steps (one when Tc = T)
        k1 = k0 + Tc if k0 + Tc < T else T
        project_inputs(<const floating*> a.xs, <const floating*> a.Wx_packed,
                       <const floating*> a.Wx, plen, a.reverse, T, D, G, n0, n1, k0, k1,
                       pg, Tc)
        for k in range(k0, k1):
            # r: row (n, t) of the (N, T, .) buffers; g: its gates, slot t -
            # chunk_start of the chunk buffer (the same when Tc = T).
            if a.reset_after:
                gemm_packed(rows, <int> G, <int> H, ph + n0 * H, <int> H, wp1, False,
                            pWh, <int> G, False, pw + n0 * WK, <int> WK)
                for n in range(n0, n1):
                    L = plen[n]
                    if k >= L:
                        continue
                    t = step_time(k, L, a.reverse)
                    r = n * T + t
                    g = pg + (n * Tc + t - chunk_start(L, k0, k1, a.reverse)) * G
                    w = pw + n * WK
                    orow = pout + r * W + off
                    if a.training:
                        memcpy(phs + r * H, ph + n * H, H * sizeof(floating))
                        hsave = pex + r * H
                    gru_ra_fwd_row(g, w, bx, bh, ph + n * H, orow, hsave, H)
            else:
                gemm_packed(rows, <int> (2 * H), <int> H, ph + n0 * H, <int> H, wp1, False,
                            pWh, <int> G, False, pw + n0 * WK, <int> WK)
                for n in range(n0, n1):
                    L = plen[n]
                    w = pw + n * WK
                    if k >= L:
                        for j in range(H):
                            w[2 * H + j] = 0
                        continue
                    t = step_time(k, L, a.reverse)
                    g = pg + (n * Tc + t - chunk_start(L, k0, k1, a.reverse)) * G
                    gru_rb_fwd_zr(g, w, bx, ph + n * H, H)
                gemm_packed(rows, <int> H, <int> H, pw + n0 * WK + 2 * H, <int> WK, wp2, False,
                            pWh + 2 * H, <int> G, False, pw + n0 * WK + 3 * H, <int> WK)
                for n in range(n0, n1):
                    L = plen[n]
                    if k >= L:
                        continue
                    t = step_time(k, L, a.reverse)
                    r = n * T + t
                    g = pg + (n * Tc + t - chunk_start(L, k0, k1, a.reverse)) * G
                    w = pw + n * WK
                    orow = pout + r * W + off
                    if a.training:
                        memcpy(phs + r * H, ph + n * H, H * sizeof(floating))
                        memcpy(pex + r * H, w + 2 * H, H * sizeof(floating))
                    gru_rb_fwd_h(g, w, bx, ph + n * H, orow, H)
        k0 = k1


cdef void gru_forward_steps_f(void* a, long n0, long n1, int part) noexcept nogil:
    gru_forward_steps(<float*> NULL, <FwdArgs*> a, n0, n1)


cdef void gru_forward_steps_d(void* a, long n0, long n1, int part) noexcept nogil:
    gru_forward_steps(<double*> NULL, <FwdArgs*> a, n0, n1)


def gru_forward(xs, Wx, Wh, b, h, lengths, bint reverse, bint reset_after, out,
                Py_ssize_t out_offset, gates, h_prev, extra, work, bint training,
                int threads=1):
    """Arrays as src/_seq.pxd's take_forward says, with G = 3H, b flat (3H,
    or 6H when reset_after), work (N, 4H), and extra (N, T, H) when
    training; float32 or float64 as xs."""
    cdef FwdArrays f
    cdef FwdArgs a
    take_forward(&f, xs, Wx, Wh, b, h, lengths, out, gates, h_prev, work, 3,
                 6 if reset_after else 3, 4, out_offset, training)
    cdef Arr ex
    take(&ex, extra, "extra", 3, f.ft, True)
    if training:
        expect("extra", ex.shape, 3, f.N, f.T, f.H)
    a.xs, a.Wx, a.Wh, a.b = f.xs.data, f.Wx.data, f.Wh.data, f.b.data
    a.h, a.out = f.h.data, f.out.data
    a.gates, a.h_prev, a.work = f.gates.data, f.h_prev.data, f.work.data
    a.lengths, a.out_offset = <const Py_ssize_t*> f.lengths.data, out_offset
    a.T, a.D, a.H, a.W, a.Tc = f.T, f.D, f.H, f.W, f.Tc
    a.extra = ex.data if training else NULL
    a.reverse, a.training, a.reset_after = reverse, training, reset_after
    with nogil:
        if f.ft == NPY_FLOAT:
            gru_forward_run(<float*> NULL, &a, f.N, threads)
        else:
            gru_forward_run(<double*> NULL, &a, f.N, threads)


cdef void gru_forward_run(floating* tag, FwdArgs* a, Py_ssize_t N,
                          int threads) noexcept nogil:
    """gru_forward after its checks: the input projection (BLAS, unless Wx
    packs), the step loop on `threads` threads at most."""
    cdef Py_ssize_t T = a.T, D = a.D, H = a.H, G = 3 * H, Tc = a.Tc
    cdef const floating* pWx = <const floating*> a.Wx
    cdef const floating* pWh = <const floating*> a.Wh
    cdef floating* wxp
    cdef floating* wp1
    cdef floating* wp2 = NULL
    wxp = forward_prologue(tag, <const floating*> a.xs, pWx, <floating*> a.gates,
                           <floating*> a.out, <floating*> a.h_prev, a.lengths, N, T, D, G, H,
                           a.W, a.out_offset, Tc)
    a.Wx_packed = wxp
    if a.training:
        zero_padding(<floating*> a.extra, N, T, H, 0, H, a.lengths)
    # The per-step products' right-hand matrices, packed once (or NULL:
    # BLAS).  reset_after: Wh (H, 3H); else Wh_zr (H, 2H) and Wh_h (H, H).
    if a.reset_after:
        wp1 = pack_b(pack_rows(N * T), False, <int> H, <int> G, pWh, <int> G)
    else:
        wp1 = pack_b(pack_rows(N * T), False, <int> H, <int> (2 * H), pWh, <int> G)
        wp2 = pack_b(pack_rows(N * T), False, <int> H, <int> H, pWh + 2 * H, <int> G)
    a.Wp1, a.Wp2 = wp1, wp2
    run_steps(tag, gru_forward_steps_f if floating is float else gru_forward_steps_d, a, N,
              step_threads(threads, N, T, 2 * H * G,
                           wp1 != NULL and (a.reset_after or wp2 != NULL)))
    free_packed(wp1)
    free_packed(wp2)
    free_packed(wxp)


cdef struct BwdArgs:
    void* gates
    void* dh
    void* work
    void* extra
    const void* dout
    const void* h_prev
    const void* Wh
    const void* Wp1          # reset_after: Wh^T packed; else Wh_zr^T packed
    const void* Wp2          # reset_before: Wh_h^T packed
    const Py_ssize_t* lengths
    Py_ssize_t T, H, W, dout_offset
    bint reverse, reset_after
    const void* WxT_packed   # Wx^T packed for dX, or NULL (BLAS)
    # the parameter and input gradients (gru_backward_grads)
    const void* xs
    const void* Wx
    void* dxs
    void* dWx
    void* dWh
    void* db
    void* scratch            # parts 1.. of dWx, dWh, db (one stride each)
    Py_ssize_t D
    bint accumulate_dx


cdef void gru_backward_grads(floating* tag, BwdArgs* a, Py_ssize_t r0, Py_ssize_t r1,
                             int part) noexcept nogil:
    """dX rows, and the rows' share of dWx, dWh and db, into gradient part
    `part` (0: the gradients themselves); one GEMM each over all steps."""
    cdef Py_ssize_t T = a.T, D = a.D, H = a.H, G = 3 * H
    cdef Py_ssize_t nb = 2 * G if a.reset_after else G
    cdef Py_ssize_t R = r1 - r0, stride = grad_stride(D, H, G, nb)
    cdef floating* pg = <floating*> a.gates + r0 * G
    cdef floating* pex = <floating*> a.extra + r0 * H
    cdef const floating* phs = <const floating*> a.h_prev + r0 * H
    cdef floating* scratch = <floating*> a.scratch
    cdef floating* dWx = grad_part(<floating*> a.dWx, scratch, part, 0, stride)
    cdef floating* dWh = grad_part(<floating*> a.dWh, scratch, part, D * G, stride)
    cdef floating* db = grad_part(<floating*> a.db, scratch, part, (D + H) * G, stride)
    cdef Py_ssize_t j
    for j in range(nb):
        db[j] = 0
    # dWx = X^T dA, dWh[:, :2H] = Hprev^T dA_zr and db[:G] = dA's column
    # sums, with dA packed once for all three
    input_grads(<const floating*> a.xs + r0 * D, <const floating*> a.Wx,
                <const floating*> a.WxT_packed, pg, dWx, <floating*> a.dxs + r0 * D,
                a.accumulate_dx, <int> R, <int> D, <int> G, phs, dWh, <int> H, db,
                <int> (2 * H))
    if a.reset_after:
        # dWh_h = Hprev^T dA_h,n; the recurrent bias gets dA_zr's sums (the
        # same as the input bias's) and dA_h,n's
        memcpy(db + G, db, 2 * H * sizeof(floating))
        gemm_tn(<int> H, phs, <int> H, dWh + 2 * H, 0, NULL, 0, NULL, <int> H, <int> R,
                pex, <int> H, <int> G, db + G + 2 * H)
    else:
        # dWh_h = (r*h)^T da_h
        gemm_tn(<int> H, pex, <int> H, dWh + 2 * H, 0, NULL, 0, NULL, <int> H, <int> R,
                pg + 2 * H, <int> G, <int> G)


cdef void gru_backward_steps(floating* tag, BwdArgs* a, Py_ssize_t n0,
                             Py_ssize_t n1) noexcept nogil:
    """BPTT steps T-1..0 for batch rows n0..n1-1."""
    cdef Py_ssize_t T = a.T, H = a.H, G = 3 * H, WK = 4 * H
    cdef Py_ssize_t W = a.W, off = a.dout_offset
    cdef floating* pg = <floating*> a.gates
    cdef floating* pdh = <floating*> a.dh
    cdef floating* pw = <floating*> a.work
    cdef floating* pex = <floating*> a.extra
    cdef const floating* pdo = <const floating*> a.dout
    cdef const floating* phs = <const floating*> a.h_prev
    cdef const floating* pWh = <const floating*> a.Wh
    cdef const floating* wp1 = <const floating*> a.Wp1
    cdef const floating* wp2 = <const floating*> a.Wp2
    cdef const Py_ssize_t* plen = a.lengths
    cdef int rows = <int> (n1 - n0)
    cdef Py_ssize_t k, n, t, j, L, r
    cdef floating* g
    cdef floating* w
    for k in range(T - 1, -1, -1):
        for n in range(n0, n1):
            L = plen[n]
            w = pw + n * WK
            if k >= L:
                for j in range(G):
                    w[j] = 0
                continue
            t = step_time(k, L, a.reverse)
            r = n * T + t
            g = pg + r * G
            gru_bwd_row(g, w, phs + r * H, pdo + r * W + off, pdh + n * H,
                        pex + r * H, H, a.reset_after)
        if a.reset_after:
            gemm_packed(rows, <int> H, <int> G, pw + n0 * WK, <int> WK, wp1, True,
                        pWh, <int> G, True, pdh + n0 * H, <int> H)
        else:
            # d(r*h) = da_h Wh_h^T, then da_r, then dh += [da_z, da_r] Wh_zr^T
            gemm_packed(rows, <int> H, <int> H, pw + n0 * WK + 2 * H, <int> WK, wp2, True,
                        pWh + 2 * H, <int> G, False, pw + n0 * WK + 3 * H, <int> WK)
            for n in range(n0, n1):
                L = plen[n]
                if k >= L:
                    continue
                t = step_time(k, L, a.reverse)
                r = n * T + t
                g = pg + r * G
                w = pw + n * WK
                gru_rb_bwd_r(g, w, phs + r * H, pdh + n * H, H)
            gemm_packed(rows, <int> H, <int> (2 * H), pw + n0 * WK, <int> WK, wp1, True,
                        pWh, <int> G, True, pdh + n0 * H, <int> H)


# The row functions as src/_threads.h and src/_seq.pxd take them.
cdef void gru_backward_steps_f(void* a, long n0, long n1, int part) noexcept nogil:
    gru_backward_steps(<float*> NULL, <BwdArgs*> a, n0, n1)


cdef void gru_backward_steps_d(void* a, long n0, long n1, int part) noexcept nogil:
    gru_backward_steps(<double*> NULL, <BwdArgs*> a, n0, n1)


cdef void gru_backward_grads_f(void* a, long r0, long r1, int part) noexcept nogil:
    gru_backward_grads(<float*> NULL, <BwdArgs*> a, r0, r1, part)


cdef void gru_backward_grads_d(void* a, long r0, long r1, int part) noexcept nogil:
    gru_backward_grads(<double*> NULL, <BwdArgs*> a, r0, r1, part)


def gru_backward(xs, Wx, Wh, lengths, bint reverse, bint reset_after, dout,
                 Py_ssize_t dout_offset, dh, gates, h_prev, extra, dWx, dWh, db, dxs,
                 bint accumulate_dx, work, int threads=1):
    """BPTT; dh: in dL/d(final h), out dL/dh0.  db is flat like b.  Arrays
    as src/_seq.pxd's take_backward says, and extra (N, T, H)."""
    cdef BwdArrays g
    cdef BwdArgs a
    take_backward(&g, xs, Wx, Wh, lengths, dout, dh, gates, h_prev, dWx, dWh, db, dxs, work,
                  3, (6 if reset_after else 3), 4, dout_offset)
    cdef Arr ex
    take(&ex, extra, "extra", 3, g.ft, True); expect("extra", ex.shape, 3, g.N, g.T, g.H)
    a.xs, a.Wx, a.Wh = g.xs.data, g.Wx.data, g.Wh.data
    a.lengths = <const Py_ssize_t*> g.lengths.data
    a.dout, a.dh, a.gates = g.dout.data, g.dh.data, g.gates.data
    a.h_prev, a.work = g.h_prev.data, g.work.data
    a.dWx, a.dWh, a.db, a.dxs = g.dWx.data, g.dWh.data, g.db.data, g.dxs.data
    a.T, a.D, a.H, a.W = g.T, g.D, g.H, g.W
    a.dout_offset, a.accumulate_dx = dout_offset, accumulate_dx
    a.extra = ex.data
    a.reverse, a.reset_after = reverse, reset_after
    with nogil:
        if g.ft == NPY_FLOAT:
            gru_backward_run(<float*> NULL, &a, g.N, threads)
        else:
            gru_backward_run(<double*> NULL, &a, g.N, threads)


cdef void gru_backward_run(floating* tag, BwdArgs* a, Py_ssize_t N,
                           int threads) noexcept nogil:
    """gru_backward after its checks: the step loop, then the parameter and
    input gradients (with the steps on each thread, or split over the N*T
    rows, or on this thread)."""
    cdef Py_ssize_t T = a.T, D = a.D, H = a.H, G = 3 * H
    cdef Py_ssize_t nb = 2 * G if a.reset_after else G
    cdef const floating* pWh = <const floating*> a.Wh
    cdef floating* dWx = <floating*> a.dWx
    cdef floating* dWh = <floating*> a.dWh
    cdef floating* db = <floating*> a.db
    cdef floating* wp1
    cdef floating* wp2 = NULL
    cdef floating* wxtp
    zero_padding(<floating*> a.gates, N, T, G, 0, G, a.lengths)
    if a.reset_after:
        zero_padding(<floating*> a.extra, N, T, H, 0, H, a.lengths)
        wp1 = pack_b(pack_rows(N * T), True, <int> G, <int> H, pWh, <int> G)
    else:
        wp1 = pack_b(pack_rows(N * T), True, <int> (2 * H), <int> H, pWh, <int> G)
        wp2 = pack_b(pack_rows(N * T), True, <int> H, <int> H, pWh + 2 * H, <int> G)
    a.Wp1, a.Wp2 = wp1, wp2
    wxtp = pack_b(pack_rows(N * T), True, <int> G, <int> D, <const floating*> a.Wx, <int> G)
    a.WxT_packed = wxtp
    backward_steps_and_grads(
        tag, a, gru_backward_steps_f if floating is float else gru_backward_steps_d,
        gru_backward_grads_f if floating is float else gru_backward_grads_d,
        &a.scratch, N, T,
        step_threads(threads, N, T, 2 * H * G, wp1 != NULL and (a.reset_after or wp2 != NULL)),
        threads, 2 * (2 * D + H) * G, wxtp != NULL and rf_packed_dw_enabled() != 0, wp1, wp2,
        dWx, dWh, db, D, H, G, nb)
    free_packed(wxtp)


def use_packed_gemm(bint on, dw=None):
    """Packed micro-kernel (True, where the CPU has it) or BLAS (False) for
    the products of this module; `dw` overrides `on` for the parameter-
    gradient products alone.  Returns whether the kernel is now used."""
    rf_use_packed_gemm(on)
    rf_use_packed_dw(on if dw is None else dw)
    return bool(rf_gemm_packed_supported())


# Each kernel module has its own split limits and pool (src/_threads.h is
# compiled into each): rnnfast._core.use_thread_pool and
# benchmarks/split_limits.py set all three modules' at once.
def split_limits(step_flops=None, grad_flops=None, grad_rows=None):
    return set_split_limits(step_flops, grad_flops, grad_rows)    # src/_seq.pxd


def use_thread_pool(bint on):
    return bool(rf_use_thread_pool(on))     # False: threads created per call
