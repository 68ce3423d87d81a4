"""Vanilla RNN kernels (tanh or ReLU): whole-sequence forward and BPTT.

    a = x Wx + h Wh + b  (N, H)      h' = tanh(a)  or  max(a, 0)

Buffers (caller-allocated, C order; see _seq.pxd for the shared ones):
    gates   (N, T, H)  h' of each step (activation kept before padding is
                       zeroed); backward overwrites it with dL/da
    h_prev  (N, T, H)  state before each step
    work    (N, H)     scratch for ragged reverse runs
    h       (N, H)     in: initial state; out: final state
A cell's one step is the same kernel with T = 1.
"""
from libc.string cimport memcpy
from libc.stdlib cimport free
from _blas cimport floating, gemm, pack_b, gemm_packed, rf_use_packed_gemm, rf_gemm_packed_supported
from _cells cimport rnn_fwd_row, rnn_bwd_row
from _seq cimport step_time, is_uniform, zero_padding, add_column_sums, input_grads


def rnn_forward(const floating[:, :, ::1] xs,
                const floating[:, ::1] Wx,
                const floating[:, ::1] Wh,
                const floating[::1] b,
                floating[:, ::1] h,
                const Py_ssize_t[::1] lengths,
                bint reverse,
                bint relu,
                floating[:, :, ::1] out,
                Py_ssize_t out_offset,
                floating[:, :, ::1] gates,
                floating[:, :, ::1] h_prev,
                floating[:, ::1] work,
                bint training):
    cdef Py_ssize_t N = xs.shape[0], T = xs.shape[1], D = xs.shape[2]
    cdef Py_ssize_t H = Wh.shape[0], W = out.shape[2]
    cdef Py_ssize_t k, n, t, j, L
    cdef bint uniform
    cdef floating* pg = &gates[0, 0, 0]
    cdef floating* ph = &h[0, 0]
    cdef floating* pout = &out[0, 0, 0]
    cdef floating* pw = &work[0, 0]
    cdef floating* phs = NULL
    cdef const floating* pb = &b[0]
    cdef const Py_ssize_t* plen = &lengths[0]
    cdef floating* a
    cdef floating* orow
    cdef floating* whp
    if training:
        phs = &h_prev[0, 0, 0]
    with nogil:
        uniform = is_uniform(plen, N, T, reverse)
        gemm(False, False, <int> (N * T), <int> H, <int> D, <floating> 1,
             &xs[0, 0, 0], <int> D, &Wx[0, 0], <int> H, <floating> 0, pg, <int> H)
        zero_padding(pout, N, T, W, out_offset, H, plen)
        if training:
            zero_padding(phs, N, T, H, 0, H, plen)
        whp = pack_b(<int> N, False, <int> H, <int> H, &Wh[0, 0], <int> H)
        for k in range(T):
            if uniform:
                t = step_time(k, T, reverse)
                gemm_packed(<int> N, <int> H, <int> H, ph, <int> H, whp, False,
                            &Wh[0, 0], <int> H, True, pg + t * H, <int> (T * H))
            else:
                gemm_packed(<int> N, <int> H, <int> H, ph, <int> H, whp, False,
                            &Wh[0, 0], <int> H, False, pw, <int> H)
            for n in range(N):
                L = plen[n]
                if k >= L:
                    continue
                t = step_time(k, L, reverse)
                a = pg + (n * T + t) * H
                orow = pout + (n * T + t) * W + out_offset
                if not uniform:
                    for j in range(H):
                        a[j] += pw[n * H + j]
                if training:
                    memcpy(phs + (n * T + t) * H, ph + n * H, H * sizeof(floating))
                rnn_fwd_row(a, pb, ph + n * H, orow, H, relu)
        free(whp)


def rnn_backward(const floating[:, :, ::1] xs,
                 const floating[:, ::1] Wx,
                 const floating[:, ::1] Wh,
                 const Py_ssize_t[::1] lengths,
                 bint reverse,
                 bint relu,
                 const floating[:, :, ::1] dout,
                 Py_ssize_t dout_offset,
                 floating[:, ::1] dh,
                 floating[:, :, ::1] gates,
                 const floating[:, :, ::1] h_prev,
                 floating[:, ::1] dWx,
                 floating[:, ::1] dWh,
                 floating[::1] db,
                 floating[:, :, ::1] dxs,
                 bint accumulate_dx,
                 floating[:, ::1] work):
    cdef Py_ssize_t N = xs.shape[0], T = xs.shape[1], D = xs.shape[2]
    cdef Py_ssize_t H = Wh.shape[0], W = dout.shape[2]
    cdef Py_ssize_t k, n, t, j, L, r
    cdef bint uniform
    cdef floating* pg = &gates[0, 0, 0]
    cdef floating* pdh = &dh[0, 0]
    cdef floating* pw = &work[0, 0]
    cdef const floating* pdo = &dout[0, 0, 0]
    cdef const Py_ssize_t* plen = &lengths[0]
    cdef floating* a
    cdef floating* whtp
    with nogil:
        uniform = is_uniform(plen, N, T, reverse)
        zero_padding(pg, N, T, H, 0, H, plen)
        whtp = pack_b(<int> N, True, <int> H, <int> H, &Wh[0, 0], <int> H)
        for k in range(T - 1, -1, -1):
            for n in range(N):
                L = plen[n]
                if k >= L:
                    if not uniform:
                        for j in range(H):
                            pw[n * H + j] = 0
                    continue
                t = step_time(k, L, reverse)
                r = n * T + t
                a = pg + r * H
                rnn_bwd_row(a, pdo + r * W + dout_offset, pdh + n * H, H, relu)
                if not uniform:
                    memcpy(pw + n * H, a, H * sizeof(floating))
            if uniform:
                t = step_time(k, T, reverse)
                gemm_packed(<int> N, <int> H, <int> H, pg + t * H, <int> (T * H),
                            whtp, True, &Wh[0, 0], <int> H, True, pdh, <int> H)
            else:
                gemm_packed(<int> N, <int> H, <int> H, pw, <int> H,
                            whtp, True, &Wh[0, 0], <int> H, True, pdh, <int> H)
        free(whtp)
        input_grads(&xs[0, 0, 0], &Wx[0, 0], pg, &dWx[0, 0], &dxs[0, 0, 0],
                    <floating> (1 if accumulate_dx else 0),
                    <int> (N * T), <int> D, <int> H)
        gemm(True, False, <int> H, <int> H, <int> (N * T), <floating> 1,
             &h_prev[0, 0, 0], <int> H, pg, <int> H, <floating> 0, &dWh[0, 0], <int> H)
        for j in range(H):
            db[j] = 0
        add_column_sums(pg, N * T, H, H, &db[0])


def use_packed_gemm(bint on):
    """Packed micro-kernel (True, where the CPU has it) or BLAS (False) for
    the per-step products of this module; returns whether it is now used."""
    rf_use_packed_gemm(on)
    return bool(rf_gemm_packed_supported())


def packed_matmul(const float[:, ::1] a, const float[:, ::1] b, float[:, ::1] c,
                  bint trans_b, bint accumulate):
    """c (=|+=) a @ (b.T if trans_b else b) through pack_b + gemm_packed,
    the path of the per-step products (tests compare it with numpy).
    Shapes are checked here; returns whether the packed kernel ran."""
    cdef int m = a.shape[0], k = a.shape[1]
    cdef int n = b.shape[0] if trans_b else b.shape[1]
    cdef int kb = b.shape[1] if trans_b else b.shape[0]
    cdef float* bp
    if kb != k or c.shape[0] != m or c.shape[1] != n or m == 0 or n == 0 or k == 0:
        raise ValueError(f"packed_matmul: shapes a {(a.shape[0], a.shape[1])}, "
                         f"b {(b.shape[0], b.shape[1])} (trans_b={trans_b}), "
                         f"c {(c.shape[0], c.shape[1])} do not agree")
    with nogil:
        bp = pack_b(m, trans_b, k, n, &b[0, 0], <int> b.shape[1])
        gemm_packed(m, n, k, &a[0, 0], k, bp, trans_b, &b[0, 0], <int> b.shape[1],
                    accumulate, &c[0, 0], n)
    ran = bp != NULL
    free(bp)
    return ran
