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

Each kernel is a def (checks, BLAS products) and a step loop over a range
of batch rows (`*_steps`), as in src/_lstm.pyx.
"""
from libc.string cimport memcpy
from libc.stdlib cimport free, malloc
from _blas cimport (floating, pack_rows, gemm, free_packed, gemm_tn, pack_b, gemm_packed,
                   rf_use_packed_gemm, rf_use_packed_dw, rf_gemm_packed_supported,
                   rf_packed_dw_enabled)
from _cells cimport gru_ra_fwd_row, gru_rb_fwd_zr, gru_rb_fwd_h, gru_bwd_row, gru_rb_bwd_r
from _seq cimport (step_time, chunk_start, project_inputs, expect_chunk, zero_padding, input_grads,
                  rf_run_rows, step_threads, grads_on_threads, expect, expect_batch,
                  grad_part, grad_stride, add_grad_parts, set_split_limits,
                  rf_use_thread_pool)


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


def gru_forward(const floating[:, :, ::1] xs,
                const floating[:, ::1] Wx,
                const floating[:, ::1] Wh,
                const floating[::1] b,
                floating[:, ::1] h,
                const Py_ssize_t[::1] lengths,
                bint reverse,
                bint reset_after,
                floating[:, :, ::1] out,
                Py_ssize_t out_offset,
                floating[:, :, ::1] gates,
                floating[:, :, ::1] h_prev,
                floating[:, :, ::1] extra,
                floating[:, ::1] work,
                bint training,
                int threads=1):
    cdef Py_ssize_t N = xs.shape[0], T = xs.shape[1], D = xs.shape[2]
    cdef Py_ssize_t H = Wh.shape[0], G = 3 * H, W = out.shape[2], Tc = gates.shape[1]
    cdef FwdArgs a
    cdef int nt
    cdef const floating* pWh = &Wh[0, 0]
    cdef floating* wxp = NULL
    cdef floating* wp1 = NULL
    cdef floating* wp2 = NULL
    expect_batch(lengths, N, T, out_offset, H, W)
    expect_chunk(Tc, T, training)
    expect("Wx", &Wx.shape[0], 2, D, G, 0); expect("Wh", &Wh.shape[0], 2, H, G, 0)
    expect("b", &b.shape[0], 1, 2 * G if reset_after else G, 0, 0)
    expect("h", &h.shape[0], 2, N, H, 0); expect("out", &out.shape[0], 2, N, T, 0)
    expect("gates", &gates.shape[0], 3, N, Tc, G); expect("work", &work.shape[0], 2, N, 4 * H, 0)
    if training:
        expect("h_prev", &h_prev.shape[0], 3, N, T, H)
        expect("extra", &extra.shape[0], 3, N, T, H)
    a.gates, a.h, a.out, a.work = &gates[0, 0, 0], &h[0, 0], &out[0, 0, 0], &work[0, 0]
    a.h_prev = a.extra = NULL
    if training:
        a.h_prev, a.extra = &h_prev[0, 0, 0], &extra[0, 0, 0]
    a.b, a.Wh, a.lengths = &b[0], pWh, &lengths[0]
    a.xs, a.T, a.D, a.H, a.W, a.out_offset = &xs[0, 0, 0], T, D, H, W, out_offset
    a.Wx, a.Tc = &Wx[0, 0], Tc
    a.reverse, a.training, a.reset_after = reverse, training, reset_after
    with nogil:
        wxp = pack_b(pack_rows(N * T), False, <int> D, <int> G,
                     &Wx[0, 0], <int> G)
        a.Wx_packed = wxp
        if wxp == NULL and Tc == T:
            gemm(False, False, <int> (N * T), <int> G, <int> D, <floating> 1,
                 &xs[0, 0, 0], <int> D, &Wx[0, 0], <int> G, <floating> 0,
                 <floating*> a.gates, <int> G)
        zero_padding(<floating*> a.out, N, T, W, out_offset, H, a.lengths)
        if training:
            zero_padding(<floating*> a.h_prev, N, T, H, 0, H, a.lengths)
            zero_padding(<floating*> a.extra, N, T, H, 0, H, a.lengths)
        # The per-step products' right-hand matrices, packed once (or NULL:
        # BLAS).  reset_after: Wh (H, 3H); else Wh_zr (H, 2H) and Wh_h (H, H).
        if reset_after:
            wp1 = pack_b(pack_rows(N * T), False, <int> H, <int> G, pWh, <int> G)
        else:
            wp1 = pack_b(pack_rows(N * T), False, <int> H, <int> (2 * H), pWh, <int> G)
            wp2 = pack_b(pack_rows(N * T), False, <int> H, <int> H, pWh + 2 * H, <int> G)
        a.Wp1, a.Wp2 = wp1, wp2
        nt = step_threads(threads, N, T, 2 * H * G, wp1 != NULL and (reset_after or wp2 != NULL))
        if floating is float and nt > 1:
            rf_run_rows(gru_forward_steps_f, &a, N, nt)
        else:
            gru_forward_steps(<floating*> NULL, &a, 0, N)
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
    bint accumulate_dx, split


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


cdef void gru_backward_steps_f(void* a, long n0, long n1, int part) noexcept nogil:
    gru_backward_steps(<float*> NULL, <BwdArgs*> a, n0, n1)
    if (<BwdArgs*> a).split:
        gru_backward_grads(<float*> NULL, <BwdArgs*> a, n0 * (<BwdArgs*> a).T,
                              n1 * (<BwdArgs*> a).T, part)


cdef void gru_backward_grads_f(void* a, long r0, long r1, int part) noexcept nogil:
    gru_backward_grads(<float*> NULL, <BwdArgs*> a, r0, r1, part)


def gru_backward(const floating[:, :, ::1] xs,
                 const floating[:, ::1] Wx,
                 const floating[:, ::1] Wh,
                 const Py_ssize_t[::1] lengths,
                 bint reverse,
                 bint reset_after,
                 const floating[:, :, ::1] dout,
                 Py_ssize_t dout_offset,
                 floating[:, ::1] dh,
                 floating[:, :, ::1] gates,
                 const floating[:, :, ::1] h_prev,
                 floating[:, :, ::1] extra,
                 floating[:, ::1] dWx,
                 floating[:, ::1] dWh,
                 floating[::1] db,
                 floating[:, :, ::1] dxs,
                 bint accumulate_dx,
                 floating[:, ::1] work,
                 int threads=1):
    """BPTT; dh: in dL/d(final h), out dL/dh0.  db is flat like b."""
    cdef Py_ssize_t N = xs.shape[0], T = xs.shape[1], D = xs.shape[2]
    cdef Py_ssize_t H = Wh.shape[0], G = 3 * H, W = dout.shape[2]
    cdef Py_ssize_t j
    cdef BwdArgs a
    cdef int nt
    cdef floating* pg = &gates[0, 0, 0]
    cdef floating* pex = &extra[0, 0, 0]
    cdef const floating* phs = &h_prev[0, 0, 0]
    cdef const floating* pWh = &Wh[0, 0]
    cdef const Py_ssize_t* plen = &lengths[0]
    cdef floating* wp1 = NULL
    cdef floating* wp2 = NULL
    cdef floating* wxtp = NULL
    cdef floating* scratch = NULL
    cdef Py_ssize_t nb, stride
    expect_batch(lengths, N, T, dout_offset, H, W)
    expect("Wx", &Wx.shape[0], 2, D, G, 0); expect("Wh", &Wh.shape[0], 2, H, G, 0)
    expect("dout", &dout.shape[0], 2, N, T, 0); expect("dh", &dh.shape[0], 2, N, H, 0)
    expect("gates", &gates.shape[0], 3, N, T, G)
    expect("h_prev", &h_prev.shape[0], 3, N, T, H)
    expect("extra", &extra.shape[0], 3, N, T, H)
    expect("dWx", &dWx.shape[0], 2, D, G, 0); expect("dWh", &dWh.shape[0], 2, H, G, 0)
    expect("db", &db.shape[0], 1, 2 * G if reset_after else G, 0, 0)
    expect("dxs", &dxs.shape[0], 3, N, T, D); expect("work", &work.shape[0], 2, N, 4 * H, 0)
    a.gates, a.dh, a.work, a.extra = pg, &dh[0, 0], &work[0, 0], pex
    a.dout, a.h_prev, a.Wh, a.lengths = &dout[0, 0, 0], phs, pWh, plen
    a.T, a.H, a.W, a.dout_offset = T, H, W, dout_offset
    a.reverse, a.reset_after = reverse, reset_after
    a.xs, a.Wx, a.dxs, a.D, a.accumulate_dx = &xs[0, 0, 0], &Wx[0, 0], &dxs[0, 0, 0], D, accumulate_dx
    a.dWx, a.dWh, a.db = &dWx[0, 0], &dWh[0, 0], &db[0]
    nb = 2 * G if reset_after else G
    stride = grad_stride(D, H, G, nb)
    with nogil:
        zero_padding(pg, N, T, G, 0, G, plen)
        if reset_after:
            zero_padding(pex, N, T, H, 0, H, plen)
        if reset_after:
            wp1 = pack_b(pack_rows(N * T), True, <int> G, <int> H, pWh, <int> G)
        else:
            wp1 = pack_b(pack_rows(N * T), True, <int> (2 * H), <int> H, pWh, <int> G)
            wp2 = pack_b(pack_rows(N * T), True, <int> H, <int> H, pWh + 2 * H, <int> G)
        a.Wp1, a.Wp2 = wp1, wp2
        wxtp = pack_b(pack_rows(N * T), True, <int> G, <int> D, &Wx[0, 0], <int> G)
        a.WxT_packed = wxtp
        nt = step_threads(threads, N, T, 2 * H * G, wp1 != NULL and (reset_after or wp2 != NULL))
        # The threads sum their rows' gradients on the packed kernel only:
        # BLAS is never called from them (src/_blas.pxd, gemm).
        if nt > 1 and rf_packed_dw_enabled() != 0:
            scratch = <floating*> malloc((nt - 1) * stride * sizeof(floating))
        a.scratch, a.split = scratch, scratch != NULL
        if floating is float and nt > 1:
            # Each thread: its rows' steps, then their share of the gradients.
            rf_run_rows(gru_backward_steps_f, &a, N, nt)
        else:
            gru_backward_steps(<floating*> NULL, &a, 0, N)
        free_packed(wp1)
        free_packed(wp2)
        if a.split:
            add_grad_parts(&dWx[0, 0], &dWh[0, 0], &db[0], scratch, nt, D, H, G, nb)
        else:
            # The steps ran on one thread (too few batch rows to split):
            # the gradients may split over the N*T rows instead.
            if floating is double or not grads_on_threads(
                    gru_backward_grads_f, &a, &a.scratch, threads, N * T, 2 * (2 * D + H) * G,
                    wxtp != NULL and rf_packed_dw_enabled() != 0,
                    &dWx[0, 0], &dWh[0, 0], &db[0], D, H, G, nb):
                gru_backward_grads(<floating*> NULL, &a, 0, N * T, 0)
            scratch = <floating*> a.scratch
        free_packed(wxtp)
        free(scratch)


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
