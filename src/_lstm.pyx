"""LSTM kernels: whole-sequence forward and backward (BPTT).

Gate order f, g, i, o (textbook):  a = x Wx + h Wh + b  (N, 4H)
    f = sigmoid(a_f)  g = tanh(a_g)  i = sigmoid(a_i)  o = sigmoid(a_o)
    c' = f*c + g*i    h' = o*tanh(c')

Buffers (caller-allocated, C order; see _seq.pxd for the shared ones):
    gates   (N, T, 4H)  activated f, g, i, o; backward overwrites them with
                        dL/da
    h_prev  (N, T, H)   state h before each step
    c_prev  (N, T, H)   state c before each step
    tanh_c  (N, T, H)   tanh(c') after each step
    work    (N, 4H)     scratch for ragged reverse runs
    h, c    (N, H)      in: initial state; out: final state
A cell's one step is the same kernel with T = 1.
"""
from libc.string cimport memcpy
from libc.stdlib cimport free
from _blas cimport floating, gemm, pack_b, gemm_packed, rf_use_packed_gemm, rf_gemm_packed_supported
from _cells cimport lstm_fwd_row, lstm_bwd_row
from _seq cimport step_time, is_uniform, zero_padding, add_column_sums, input_grads


def lstm_forward(const floating[:, :, ::1] xs,
                 const floating[:, ::1] Wx,
                 const floating[:, ::1] Wh,
                 const floating[::1] b,
                 floating[:, ::1] h,
                 floating[:, ::1] c,
                 const Py_ssize_t[::1] lengths,
                 bint reverse,
                 floating[:, :, ::1] out,
                 Py_ssize_t out_offset,
                 floating[:, :, ::1] gates,
                 floating[:, :, ::1] h_prev,
                 floating[:, :, ::1] c_prev,
                 floating[:, :, ::1] tanh_c,
                 floating[:, ::1] work,
                 bint training):
    """Run the LSTM over a whole batch of sequences without the GIL.

    With training=False the saved activations (h_prev, c_prev, tanh_c) are
    not written and may be empty arrays."""
    cdef Py_ssize_t N = xs.shape[0], T = xs.shape[1], D = xs.shape[2]
    cdef Py_ssize_t H = Wh.shape[0], G = 4 * H, W = out.shape[2]
    cdef Py_ssize_t k, n, t, j, L
    cdef bint uniform
    cdef const floating* px = &xs[0, 0, 0]
    cdef floating* pg = &gates[0, 0, 0]
    cdef floating* ph = &h[0, 0]
    cdef floating* pc = &c[0, 0]
    cdef floating* pout = &out[0, 0, 0]
    cdef floating* pw = &work[0, 0]
    cdef floating* phs = NULL
    cdef floating* pcs = NULL
    cdef floating* pts = NULL
    cdef const floating* pb = &b[0]
    cdef const Py_ssize_t* plen = &lengths[0]
    cdef floating* a
    cdef floating* hrow
    cdef floating* crow
    cdef floating* orow
    cdef floating* tsave = NULL
    cdef floating* whp
    if training:
        phs = &h_prev[0, 0, 0]
        pcs = &c_prev[0, 0, 0]
        pts = &tanh_c[0, 0, 0]
    with nogil:
        uniform = is_uniform(plen, N, T, reverse)
        # Hoisted input projection of all N*T rows: one GEMM.
        gemm(False, False, <int> (N * T), <int> G, <int> D, <floating> 1,
             px, <int> D, &Wx[0, 0], <int> G, <floating> 0, pg, <int> G)
        zero_padding(pout, N, T, W, out_offset, H, plen)
        if training:
            zero_padding(phs, N, T, H, 0, H, plen)
        whp = pack_b(<int> N, False, <int> H, <int> G, &Wh[0, 0], <int> G)
        for k in range(T):
            if uniform:
                # Recurrent GEMM accumulates straight into the step-t rows
                # of the projected gates (row stride T*4H, no copy).
                t = step_time(k, T, reverse)
                gemm_packed(<int> N, <int> G, <int> H, ph, <int> H, whp, False,
                            &Wh[0, 0], <int> G, True, pg + t * G, <int> (T * G))
            else:
                # Ragged reverse run: each row is at its own t, so the
                # recurrent term goes to scratch and is added per row.
                gemm_packed(<int> N, <int> G, <int> H, ph, <int> H, whp, False,
                            &Wh[0, 0], <int> G, False, pw, <int> G)
            for n in range(N):
                L = plen[n]
                if k >= L:
                    continue
                t = step_time(k, L, reverse)
                a = pg + (n * T + t) * G
                hrow = ph + n * H
                crow = pc + n * H
                orow = pout + (n * T + t) * W + out_offset
                if not uniform:
                    for j in range(G):
                        a[j] += pw[n * G + j]
                if training:
                    memcpy(phs + (n * T + t) * H, hrow, H * sizeof(floating))
                    memcpy(pcs + (n * T + t) * H, crow, H * sizeof(floating))
                    tsave = pts + (n * T + t) * H
                lstm_fwd_row(a, pb, crow, hrow, orow, tsave, H)
        free(whp)


def lstm_backward(const floating[:, :, ::1] xs,
                  const floating[:, ::1] Wx,
                  const floating[:, ::1] Wh,
                  const Py_ssize_t[::1] lengths,
                  bint reverse,
                  const floating[:, :, ::1] dout,
                  Py_ssize_t dout_offset,
                  floating[:, ::1] dh,
                  floating[:, ::1] dc,
                  floating[:, :, ::1] gates,
                  const floating[:, :, ::1] h_prev,
                  const floating[:, :, ::1] c_prev,
                  const floating[:, :, ::1] tanh_c,
                  floating[:, ::1] dWx,
                  floating[:, ::1] dWh,
                  floating[::1] db,
                  floating[:, :, ::1] dxs,
                  bint accumulate_dx,
                  floating[:, ::1] work):
    """BPTT through the saved forward.  dh, dc: in dL/d(final state), out
    dL/d(initial state).  Overwrites gates with dL/da and dWx, dWh, db;
    dxs is overwritten, or added to when accumulate_dx (the two directions
    of a bidirectional layer share one input)."""
    cdef Py_ssize_t N = xs.shape[0], T = xs.shape[1], D = xs.shape[2]
    cdef Py_ssize_t H = Wh.shape[0], G = 4 * H, W = dout.shape[2]
    cdef Py_ssize_t k, n, t, j, L, r
    cdef bint uniform
    cdef floating* pg = &gates[0, 0, 0]
    cdef floating* pdh = &dh[0, 0]
    cdef floating* pdc = &dc[0, 0]
    cdef floating* pw = &work[0, 0]
    cdef const floating* pdo = &dout[0, 0, 0]
    cdef const floating* phs = &h_prev[0, 0, 0]
    cdef const floating* pcs = &c_prev[0, 0, 0]
    cdef const floating* pts = &tanh_c[0, 0, 0]
    cdef const Py_ssize_t* plen = &lengths[0]
    cdef floating* a
    cdef floating* whtp
    with nogil:
        uniform = is_uniform(plen, N, T, reverse)
        zero_padding(pg, N, T, G, 0, G, plen)
        whtp = pack_b(<int> N, True, <int> G, <int> H, &Wh[0, 0], <int> G)
        for k in range(T - 1, -1, -1):
            for n in range(N):
                L = plen[n]
                if k >= L:
                    if not uniform:
                        for j in range(G):
                            pw[n * G + j] = 0
                    continue
                t = step_time(k, L, reverse)
                r = n * T + t
                a = pg + r * G
                lstm_bwd_row(a, pts + r * H, pcs + r * H, pdo + r * W + dout_offset,
                             pdh + n * H, pdc + n * H, H)
                if not uniform:
                    memcpy(pw + n * G, a, G * sizeof(floating))
            # dh_prev (+)= dA_t Wh^T; idle rows keep their carried dh.
            if uniform:
                t = step_time(k, T, reverse)
                gemm_packed(<int> N, <int> H, <int> G, pg + t * G, <int> (T * G),
                            whtp, True, &Wh[0, 0], <int> G, True, pdh, <int> H)
            else:
                gemm_packed(<int> N, <int> H, <int> G, pw, <int> G,
                            whtp, True, &Wh[0, 0], <int> G, True, pdh, <int> H)
        free(whtp)
        # Parameter and input gradients: one GEMM each over all steps.
        input_grads(&xs[0, 0, 0], &Wx[0, 0], pg, &dWx[0, 0], &dxs[0, 0, 0],
                    <floating> (1 if accumulate_dx else 0),
                    <int> (N * T), <int> D, <int> G)
        gemm(True, False, <int> H, <int> G, <int> (N * T), <floating> 1,
             phs, <int> H, pg, <int> G, <floating> 0, &dWh[0, 0], <int> G)
        for j in range(G):
            db[j] = 0
        add_column_sums(pg, N * T, G, G, &db[0])


def use_packed_gemm(bint on):
    """Packed micro-kernel (True, where the CPU has it) or BLAS (False) for
    the per-step products of this module; returns whether it is now used."""
    rf_use_packed_gemm(on)
    return bool(rf_gemm_packed_supported())
