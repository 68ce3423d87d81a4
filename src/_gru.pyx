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
    h_prev  (N, T, H)   state before each step
    extra   (N, T, H)   reset_after: h Wh_h + b_h,h (backward: its gradient)
                        reset_before: r*h_prev (needed for dWh_h)
    b       flat: 3H values, or 6H (input row then recurrent row)
"""
from libc.string cimport memcpy
from libc.stdlib cimport free
from _blas cimport floating, gemm, pack_b, gemm_packed, rf_use_packed_gemm, rf_gemm_packed_supported
from _cells cimport gru_ra_fwd_row, gru_rb_fwd_zr, gru_rb_fwd_h, gru_bwd_row, gru_rb_bwd_r
from _seq cimport step_time, zero_padding, add_column_sums, input_grads


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
                bint training):
    cdef Py_ssize_t N = xs.shape[0], T = xs.shape[1], D = xs.shape[2]
    cdef Py_ssize_t H = Wh.shape[0], G = 3 * H, W = out.shape[2], WK = 4 * H
    cdef Py_ssize_t k, n, t, j, L, r
    cdef floating* pg = &gates[0, 0, 0]
    cdef floating* ph = &h[0, 0]
    cdef floating* pout = &out[0, 0, 0]
    cdef floating* pw = &work[0, 0]
    cdef floating* phs = NULL
    cdef floating* pex = NULL
    cdef const floating* pWh = &Wh[0, 0]
    cdef const floating* bx = &b[0]
    cdef const floating* bh = bx + G
    cdef const Py_ssize_t* plen = &lengths[0]
    cdef floating* a
    cdef floating* w
    cdef floating* orow
    cdef floating* hsave = NULL
    cdef floating* wp1 = NULL
    cdef floating* wp2 = NULL
    if training:
        phs = &h_prev[0, 0, 0]
        pex = &extra[0, 0, 0]
    with nogil:
        gemm(False, False, <int> (N * T), <int> G, <int> D, <floating> 1,
             &xs[0, 0, 0], <int> D, &Wx[0, 0], <int> G, <floating> 0, pg, <int> G)
        zero_padding(pout, N, T, W, out_offset, H, plen)
        if training:
            zero_padding(phs, N, T, H, 0, H, plen)
            zero_padding(pex, N, T, H, 0, H, plen)
        # The per-step products' right-hand matrices, packed once (or NULL:
        # BLAS).  reset_after: Wh (H, 3H); else Wh_zr (H, 2H) and Wh_h (H, H).
        if reset_after:
            wp1 = pack_b(<int> N, False, <int> H, <int> G, pWh, <int> G)
        else:
            wp1 = pack_b(<int> N, False, <int> H, <int> (2 * H), pWh, <int> G)
            wp2 = pack_b(<int> N, False, <int> H, <int> H, pWh + 2 * H, <int> G)
        for k in range(T):
            if reset_after:
                gemm_packed(<int> N, <int> G, <int> H, ph, <int> H, wp1, False,
                            pWh, <int> G, False, pw, <int> WK)
                for n in range(N):
                    L = plen[n]
                    if k >= L:
                        continue
                    t = step_time(k, L, reverse)
                    r = n * T + t
                    a = pg + r * G
                    w = pw + n * WK
                    orow = pout + r * W + out_offset
                    if training:
                        memcpy(phs + r * H, ph + n * H, H * sizeof(floating))
                        hsave = pex + r * H
                    gru_ra_fwd_row(a, w, bx, bh, ph + n * H, orow, hsave, H)
            else:
                gemm_packed(<int> N, <int> (2 * H), <int> H, ph, <int> H, wp1, False,
                            pWh, <int> G, False, pw, <int> WK)
                for n in range(N):
                    L = plen[n]
                    w = pw + n * WK
                    if k >= L:
                        for j in range(H):
                            w[2 * H + j] = 0
                        continue
                    t = step_time(k, L, reverse)
                    a = pg + (n * T + t) * G
                    gru_rb_fwd_zr(a, w, bx, ph + n * H, H)
                gemm_packed(<int> N, <int> H, <int> H, pw + 2 * H, <int> WK, wp2, False,
                            pWh + 2 * H, <int> G, False, pw + 3 * H, <int> WK)
                for n in range(N):
                    L = plen[n]
                    if k >= L:
                        continue
                    t = step_time(k, L, reverse)
                    r = n * T + t
                    a = pg + r * G
                    w = pw + n * WK
                    orow = pout + r * W + out_offset
                    if training:
                        memcpy(phs + r * H, ph + n * H, H * sizeof(floating))
                        memcpy(pex + r * H, w + 2 * H, H * sizeof(floating))
                    gru_rb_fwd_h(a, w, bx, ph + n * H, orow, H)
        free(wp1)
        free(wp2)


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
                 floating[:, ::1] work):
    """BPTT; dh: in dL/d(final h), out dL/dh0.  db is flat like b."""
    cdef Py_ssize_t N = xs.shape[0], T = xs.shape[1], D = xs.shape[2]
    cdef Py_ssize_t H = Wh.shape[0], G = 3 * H, W = dout.shape[2], WK = 4 * H
    cdef Py_ssize_t k, n, t, j, L, r
    cdef floating* pg = &gates[0, 0, 0]
    cdef floating* pdh = &dh[0, 0]
    cdef floating* pw = &work[0, 0]
    cdef floating* pex = &extra[0, 0, 0]
    cdef const floating* pdo = &dout[0, 0, 0]
    cdef const floating* phs = &h_prev[0, 0, 0]
    cdef const floating* pWh = &Wh[0, 0]
    cdef const Py_ssize_t* plen = &lengths[0]
    cdef floating* a
    cdef floating* w
    cdef floating* wp1 = NULL
    cdef floating* wp2 = NULL
    with nogil:
        zero_padding(pg, N, T, G, 0, G, plen)
        if reset_after:
            zero_padding(pex, N, T, H, 0, H, plen)
        if reset_after:
            wp1 = pack_b(<int> N, True, <int> G, <int> H, pWh, <int> G)
        else:
            wp1 = pack_b(<int> N, True, <int> (2 * H), <int> H, pWh, <int> G)
            wp2 = pack_b(<int> N, True, <int> H, <int> H, pWh + 2 * H, <int> G)
        for k in range(T - 1, -1, -1):
            for n in range(N):
                L = plen[n]
                w = pw + n * WK
                if k >= L:
                    for j in range(G):
                        w[j] = 0
                    continue
                t = step_time(k, L, reverse)
                r = n * T + t
                a = pg + r * G
                gru_bwd_row(a, w, phs + r * H, pdo + r * W + dout_offset, pdh + n * H,
                            pex + r * H, H, reset_after)
            if reset_after:
                gemm_packed(<int> N, <int> H, <int> G, pw, <int> WK, wp1, True,
                            pWh, <int> G, True, pdh, <int> H)
            else:
                # d(r*h) = da_h Wh_h^T, then da_r, then dh += [da_z, da_r] Wh_zr^T
                gemm_packed(<int> N, <int> H, <int> H, pw + 2 * H, <int> WK, wp2, True,
                            pWh + 2 * H, <int> G, False, pw + 3 * H, <int> WK)
                for n in range(N):
                    L = plen[n]
                    if k >= L:
                        continue
                    t = step_time(k, L, reverse)
                    r = n * T + t
                    a = pg + r * G
                    w = pw + n * WK
                    gru_rb_bwd_r(a, w, phs + r * H, pdh + n * H, H)
                gemm_packed(<int> N, <int> H, <int> (2 * H), pw, <int> WK, wp1, True,
                            pWh, <int> G, True, pdh, <int> H)
        free(wp1)
        free(wp2)
        input_grads(&xs[0, 0, 0], &Wx[0, 0], pg, &dWx[0, 0], &dxs[0, 0, 0],
                    <floating> (1 if accumulate_dx else 0),
                    <int> (N * T), <int> D, <int> G)
        # dWh[:, :2H] = Hprev^T dA_zr
        gemm(True, False, <int> H, <int> (2 * H), <int> (N * T), <floating> 1,
             phs, <int> H, pg, <int> G, <floating> 0, &dWh[0, 0], <int> G)
        for j in range(db.shape[0]):
            db[j] = 0
        add_column_sums(pg, N * T, G, G, &db[0])
        if reset_after:
            # dWh_h = Hprev^T dA_h,n; recurrent bias row gets dA_h
            gemm(True, False, <int> H, <int> H, <int> (N * T), <floating> 1,
                 phs, <int> H, pex, <int> H, <floating> 0, &dWh[0, 2 * H], <int> G)
            add_column_sums(pg, N * T, 2 * H, G, &db[G])
            add_column_sums(pex, N * T, H, H, &db[G + 2 * H])
        else:
            # dWh_h = (r*h)^T da_h
            gemm(True, False, <int> H, <int> H, <int> (N * T), <floating> 1,
                 pex, <int> H, pg + 2 * H, <int> G, <floating> 0, &dWh[0, 2 * H], <int> G)


def use_packed_gemm(bint on):
    """Packed micro-kernel (True, where the CPU has it) or BLAS (False) for
    the per-step products of this module; returns whether it is now used."""
    rf_use_packed_gemm(on)
    return bool(rf_gemm_packed_supported())
