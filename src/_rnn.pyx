"""Vanilla RNN kernels (tanh or ReLU): whole-sequence forward and BPTT.

    a = x Wx + h Wh + b  (N, H)      h' = tanh(a)  or  max(a, 0)

Buffers (caller-allocated, C order; see _seq.pxd for the shared ones):
    gates   (N, T, H)  h' of each step (activation kept before padding is
                       zeroed); backward overwrites it with dL/da
                       (inference may pass Tc < T steps: a chunk, src/_seq.pxd)
    h_prev  (N, T, H)  state before each step; of a long call
                       (states_rebuilt) the forward saves the first step's
                       only, and the backward copies each later one from
                       the activation of the step before (gates) before it
                       overwrites it (rnn_backward_steps)
    work    (N, H)     scratch for ragged reverse runs
    h       (N, H)     in: initial state; out: final state
A cell's one step is the same kernel with T = 1.

Each kernel is a def (checks), a fused `*_run` and a step loop over a
range of batch rows (`*_steps`), as in src/_lstm.pyx.
"""
cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_New
from libc.string cimport memcpy
from _blas cimport (floating, pack_rows, rf_use_unpacked_b, rf_unpacked_ok, rf_unpacked_b, gemm,
                    free_packed, gemm_tn, pack_b, gemm_packed, gemm_packed_dh, rf_use_packed_gemm,
                    rf_use_packed_dw, rf_gemm_packed_supported, rf_use_wide_tiles,
                    rf_use_tall_tiles, rf_wide_in_use)
from _arrays cimport arrays_match, float_array_match
from _cells cimport rnn_fwd_row, rnn_bwd_row, rf_pass_clone
from numpy cimport NPY_FLOAT
from _seqfwd cimport infer_fn, INFER_CAPSULE
from _seq cimport (set_prefetch, use_col_split_mode, rf_col_split_runs, chunk_steps, reusing_packs, set_grad_chunks, worth_prefetching,
                   prefetch_forward_row, prefetch_backward_row, step_time, chunk_start,
                   project_inputs, is_uniform, input_grads, rf_run_rows, step_threads,
                   grad_part, grad_stride, set_split_limits, run_steps,
                   backward_steps_and_grads, SeqFwd, SeqBwd, take_forward, take_backward,
                   forward_prologue, forward_epilogue, backward_prologue, rf_use_thread_pool,
                   rf_use_pool_spread,
                   pack_b_split, pack_b_or_read_split, set_pack_split, packing_threads,
                   all_zero, state_product, set_poison_chunk_h,
                   run_forward_steps, states_zero, step_product, step_done, inputs_done,
                   dh_product,
                   states_rebuilt, state_rows, rebuild_chunk_start, rebuild_next_state,
                   rebuild_padding, xs_check, raise_if_nonfinite, finite_values)

cnp.import_array()


cdef struct FwdArgs:
    SeqFwd s                 # the arrays and sizes every cell has (src/_seq.pxd)
    const void* Wh_packed
    bint uniform, relu
    bint save_all            # training: h_prev of every step (not states_rebuilt)


cdef void rnn_forward_steps(floating* tag, FwdArgs* a, Py_ssize_t n0,
                            Py_ssize_t n1, int part) noexcept nogil:
    """Steps 0..T-1 for batch rows n0..n1-1, after their input projection
    when Wx is packed (else the caller did it on BLAS), or chunk by chunk
    of Tc steps when gates holds only Tc (src/_seq.pxd).  By columns, part
    `part`'s columns of every row's products."""
    cdef Py_ssize_t T = a.s.T, D = a.s.D, H = a.s.H, W = a.s.W, off = a.s.out_offset
    cdef Py_ssize_t Tc = a.s.Tc, k0, k1
    cdef floating* pg = <floating*> a.s.gates
    cdef floating* ph = <floating*> a.s.h
    cdef floating* pout = <floating*> a.s.out
    cdef floating* pw = <floating*> a.s.work
    cdef floating* phs = <floating*> a.s.h_prev
    cdef const floating* pb = <const floating*> a.s.b
    cdef const floating* Wh = <const floating*> a.s.Wh
    cdef const floating* whp = <const floating*> a.Wh_packed
    cdef const Py_ssize_t* plen = a.s.lengths
    cdef int rows = <int> (n1 - n0)
    cdef Py_ssize_t k, n, t, j, L
    cdef floating* g
    cdef bint h0_zero = states_zero(ph, &a.s, n0, n1, H)
    k0 = 0
    while k0 < T:                   # the chunks of Tc steps (one when Tc = T)
        k1 = k0 + Tc if k0 + Tc < T else T
        project_inputs(<const floating*> a.s.xs, <const floating*> a.s.Wx_packed,
                       <const floating*> a.s.Wx, plen, a.s.reverse, T, D, H, n0, n1, k0, k1,
                       pg, Tc, xs_check(&a.s))
        inputs_done(&a.s)
        for k in range(k0, k1):
            if a.uniform:
                t = step_time(k, T, a.s.reverse) - chunk_start(T, k0, k1, a.s.reverse)
                step_product(ph, &a.s, part, n0, n1, <int> H, <int> H, whp, Wh, <int> H, True,
                             pg + t * H, <int> (Tc * H), k == 0 and h0_zero)
            else:
                step_product(ph, &a.s, part, n0, n1, <int> H, <int> H, whp, Wh, <int> H, False,
                             pw, <int> H, k == 0 and h0_zero)
            for n in range(n0, n1):
                L = plen[n]
                if k >= L:
                    continue
                t = step_time(k, L, a.s.reverse)
                g = pg + (n * Tc + t - chunk_start(L, k0, k1, a.s.reverse)) * H
                if not a.uniform:
                    for j in range(H):
                        g[j] += pw[n * H + j]
                if a.s.prefetch:
                    prefetch_forward_row(tag, &a.s, g, H, n, k, k1, L, t, NULL, NULL,
                                         a.save_all)
                if a.s.training and (k == 0 or a.save_all):
                    memcpy(phs + (n * T + t) * H, ph + n * H, H * sizeof(floating))
                rnn_fwd_row(g, pb, ph + n * H, pout + (n * T + t) * W + off, H, a.relu)
            step_done(&a.s)
        k0 = k1


cdef void rnn_forward_steps_f(void* a, long n0, long n1, int part) noexcept nogil:
    rnn_forward_steps(<float*> NULL, <FwdArgs*> a, n0, n1, part)


cdef void rnn_forward_steps_d(void* a, long n0, long n1, int part) noexcept nogil:
    rnn_forward_steps(<double*> NULL, <FwdArgs*> a, n0, n1, part)


def rnn_forward(xs, Wx, Wh, b, h, lengths, bint reverse, bint relu, out,
                Py_ssize_t out_offset, gates, h_prev, work, bint training, int threads=1,
                bint check_xs=False):
    """Arrays as src/_seq.pxd's SeqFwd says, with G = H, b (H,), work
    (N, H); float32 or float64 as xs.  check_xs: xs is tested for NaN and
    Inf as it is projected, and a ValueError raised after the run if it
    holds one (src/_seq.pxd)."""
    cdef FwdArgs a
    take_forward(&a.s, xs, Wx, Wh, b, h, lengths, out, gates, h_prev, work, 1, 1, 1,
                 out_offset, reverse, training, check_xs)
    a.relu = relu
    with nogil:
        if a.s.ft == NPY_FLOAT:
            rnn_forward_run(<float*> NULL, &a, threads)
        else:
            rnn_forward_run(<double*> NULL, &a, threads)
    raise_if_nonfinite(a.s.nonfinite, "xs", xs)


cdef void rnn_forward_run(floating* tag, FwdArgs* a, int threads) noexcept nogil:
    """rnn_forward after its checks: the input projection (BLAS, unless Wx
    packs), the step loop on `threads` threads at most."""
    cdef Py_ssize_t N = a.s.N, T = a.s.T, H = a.s.H
    a.uniform = is_uniform(a.s.lengths, N, T, a.s.reverse)
    a.save_all = not states_rebuilt(N, T, H, H, sizeof(floating), a.uniform)
    cdef int pack_nt = step_threads(threads, N, T, 2 * H * H, True)
    forward_prologue(tag, &a.s, H, pack_nt)
    a.Wh_packed = pack_b_or_read_split(N * T, N, <int> H, <int> H,
                                       <const floating*> a.s.Wh, <int> H, pack_nt,
                                       reusing_packs(&a.s, pack_nt))
    run_forward_steps(tag, rnn_forward_steps_f if floating is float else rnn_forward_steps_d,
                      a, &a.s, threads,
                      step_threads(threads, N, T, 2 * H * H, a.Wh_packed != NULL),
                      H, H, 2 * H * H, a.Wh_packed)
    free_packed(<void*> a.Wh_packed)
    forward_epilogue(&a.s)


cdef void rnn_infer(SeqFwd* s, void* c, bint flag, int threads) noexcept nogil:
    """The inference forward of arrays its caller has checked (src/_seqfwd.pxd,
    infer_fn: c unused, flag: relu)."""
    cdef FwdArgs a
    a.s = s[0]
    a.relu = flag
    if s.ft == NPY_FLOAT:
        rnn_forward_run(<float*> NULL, &a, threads)
    else:
        rnn_forward_run(<double*> NULL, &a, threads)
    s.nonfinite = a.s.nonfinite


# rnn_infer for the dispatcher: a capsule, as the modules are separate
# extensions (and another build's, benchmarks/ab_inprocess.py, may lack it).
INFER_ENTRY = PyCapsule_New(<void*> <infer_fn> rnn_infer, INFER_CAPSULE, NULL)


cdef struct BwdArgs:
    SeqBwd s                 # the arrays and sizes every cell has (src/_seq.pxd)
    const void* WhT_packed
    bint uniform, relu
    bint rebuild             # h_prev past the first step is to be copied (states_rebuilt)


cdef void rnn_backward_grads(floating* tag, BwdArgs* a, Py_ssize_t r0, Py_ssize_t run_len,
                             Py_ssize_t runs, int part) noexcept nogil:
    """dX rows, and the rows' share of dWx, dWh and db, into gradient part
    `part` (0: the gradients themselves; added to when a.s.dw_accumulate),
    over `runs` runs of run_len rows from r0 on (src/_seq.pxd, grads_fn);
    one GEMM each over all of them."""
    cdef Py_ssize_t T = a.s.T, D = a.s.D, H = a.s.H
    cdef Py_ssize_t stride = grad_stride(D, H, H, H)
    cdef floating* pg = <floating*> a.s.gates + r0 * H
    cdef Py_ssize_t hp_stride
    cdef const floating* hp = state_rows(tag, &a.s, r0, &hp_stride)
    cdef floating* scratch = <floating*> a.s.scratch
    cdef floating* dWx = grad_part(<floating*> a.s.dWx, scratch, part, 0, stride)
    cdef floating* dWh = grad_part(<floating*> a.s.dWh, scratch, part, D * H, stride)
    cdef floating* db = grad_part(<floating*> a.s.db, scratch, part, (D + H) * H, stride)
    cdef Py_ssize_t j
    if not a.s.dw_accumulate:
        for j in range(H):
            db[j] = 0
    input_grads(<const floating*> a.s.xs + r0 * D, <const floating*> a.s.Wx,
                <const floating*> a.s.WxT_packed, pg, dWx, <floating*> a.s.dxs + r0 * D,
                a.s.accumulate_dx, <int> run_len, <int> D, <int> H,
                hp, dWh, <int> H, db, -1, <int> runs, T, a.s.dw_accumulate, hp_stride)


cdef void rnn_backward_steps(floating* tag, BwdArgs* a, Py_ssize_t n0, Py_ssize_t n1,
                             Py_ssize_t k_lo, Py_ssize_t k_hi, int part) noexcept nogil:
    """BPTT steps k_hi-1..k_lo for batch rows n0..n1-1.  When a.rebuild,
    each step first copies its activation (gates row) out as the next
    step's h_prev, which the forward did not save: into the chunk's buffer
    a.s.chunk_h (in cache for the chunk's dWh; chunked calls) or into
    h_prev."""
    cdef Py_ssize_t T = a.s.T, H = a.s.H, W = a.s.W, off = a.s.dout_offset
    cdef Py_ssize_t t0 = 0
    cdef floating* pg = <floating*> a.s.gates
    cdef floating* pdh = <floating*> a.s.dh
    cdef floating* pw = <floating*> a.s.work
    cdef const floating* pdo = <const floating*> a.s.dout
    cdef const floating* Wh = <const floating*> a.s.Wh
    cdef const floating* whtp = <const floating*> a.WhT_packed
    cdef const Py_ssize_t* plen = a.s.lengths
    cdef int rows = <int> (n1 - n0)
    cdef Py_ssize_t k, n, t, j, L, r
    cdef floating* g
    if a.s.chunk > 0 and a.rebuild:
        t0 = rebuild_chunk_start(tag, &a.s, n0, n1, k_lo, k_hi, H, NULL)
    for k in range(k_hi - 1, k_lo - 1, -1):
        for n in range(n0, n1):
            L = plen[n]
            if k >= L:
                if not a.uniform:
                    for j in range(H):
                        pw[n * H + j] = 0
                if a.rebuild:
                    rebuild_padding(tag, &a.s, n, k, t0)
                continue
            t = step_time(k, L, a.s.reverse)
            r = n * T + t
            g = pg + r * H
            if a.s.prefetch:
                prefetch_backward_row(tag, &a.s, H, n, k, L, False)
            if a.rebuild:
                rebuild_next_state(tag, &a.s, n, k, L, k_hi, t0, g, NULL)
            rnn_bwd_row(g, pdo + r * W + off, pdh + n * H, H, a.relu)
            if not a.uniform:
                memcpy(pw + n * H, g, H * sizeof(floating))
        if a.uniform:
            t = step_time(k, T, a.s.reverse)
            dh_product(&a.s, part, n0, n1, <int> H, <int> H, pg + t * H, <int> (T * H),
                       whtp, Wh, <int> H, pdh, <int> H)
        else:
            dh_product(&a.s, part, n0, n1, <int> H, <int> H, pw, <int> H,
                       whtp, Wh, <int> H, pdh, <int> H)


# The step and gradient functions as src/_seq.pxd takes them.
cdef void rnn_backward_steps_f(void* a, long n0, long n1, long k_lo, long k_hi,
                               int part) noexcept nogil:
    rnn_backward_steps(<float*> NULL, <BwdArgs*> a, n0, n1, k_lo, k_hi, part)


cdef void rnn_backward_steps_d(void* a, long n0, long n1, long k_lo, long k_hi,
                               int part) noexcept nogil:
    rnn_backward_steps(<double*> NULL, <BwdArgs*> a, n0, n1, k_lo, k_hi, part)


cdef void rnn_backward_grads_f(void* a, long r0, long run_len, long runs,
                               int part) noexcept nogil:
    rnn_backward_grads(<float*> NULL, <BwdArgs*> a, r0, run_len, runs, part)


cdef void rnn_backward_grads_d(void* a, long r0, long run_len, long runs,
                               int part) noexcept nogil:
    rnn_backward_grads(<double*> NULL, <BwdArgs*> a, r0, run_len, runs, part)


def rnn_backward(xs, Wx, Wh, lengths, bint reverse, bint relu, dout,
                 Py_ssize_t dout_offset, dh, gates, h_prev, dWx, dWh, db, dxs,
                 bint accumulate_dx, work, int threads=1, dout_name=None):
    """BPTT.  Arrays as src/_seq.pxd's SeqBwd says; gates is overwritten
    with dL/da, dh: in dL/d(final h), out dL/dh0.  dout_name: dout (all its
    columns) is tested for NaN and Inf, and a ValueError naming it so
    raised after the run if it holds one; dWx, dWh, db are then as they
    were, the other outputs undefined (src/_seq.pxd, chunk_dout_finite)."""
    cdef BwdArgs a
    take_backward(&a.s, xs, Wx, Wh, lengths, dout, dh, gates, h_prev, dWx, dWh, db, dxs, work,
                  1, 1, 1, dout_offset, reverse, accumulate_dx, dout_name is not None)
    a.relu = relu
    with nogil:
        if a.s.ft == NPY_FLOAT:
            rnn_backward_run(<float*> NULL, &a, threads)
        else:
            rnn_backward_run(<double*> NULL, &a, threads)
    raise_if_nonfinite(a.s.nonfinite, dout_name, dout)


cdef void rnn_backward_run(floating* tag, BwdArgs* a, int threads) noexcept nogil:
    """rnn_backward after its checks: the step loop, then the parameter and
    input gradients (src/_seq.pxd, backward_steps_and_grads)."""
    cdef Py_ssize_t N = a.s.N, T = a.s.T, D = a.s.D, H = a.s.H
    a.uniform = is_uniform(a.s.lengths, N, T, a.s.reverse)
    a.rebuild = states_rebuilt(N, T, H, H, sizeof(floating), a.uniform)
    cdef int pack_nt = step_threads(threads, N, T, 2 * H * H, True)
    backward_prologue(tag, &a.s, H, pack_nt)
    a.WhT_packed = pack_b_split(pack_rows(N * T), True, <int> H, <int> H,
                                <const floating*> a.s.Wh, <int> H, pack_nt, False)
    backward_steps_and_grads(
        tag, &a.s, a, rnn_backward_steps_f if floating is float else rnn_backward_steps_d,
        rnn_backward_grads_f if floating is float else rnn_backward_grads_d,
        step_threads(threads, N, T, 2 * H * H, a.WhT_packed != NULL), threads,
        2 * (2 * D + H) * H, <void*> a.WhT_packed, NULL, H, H, H if a.rebuild else 0, H)


def use_packed_gemm(bint on, dw=None):
    """Packed micro-kernel (True, where the CPU has it) or BLAS (False) for
    the products of this module; `dw` overrides `on` for the parameter-
    gradient products alone.  Returns whether the kernel is now used."""
    rf_use_packed_gemm(on)
    rf_use_packed_dw(on if dw is None else dw)
    return bool(rf_gemm_packed_supported())


def wide_tiles_in_use():
    """Whether this module's packed products run on the AVX-512 tiles now
    (the CPU has AVX-512F, nothing turned them off)."""
    return bool(rf_wide_in_use())


def pass_clone():
    """The clone of the element-wise passes (src/_cells.h) this CPU runs:
    "x86-64-v4", "x86-64-v3", "avx512f" and "avx2" (built by GCC < 12),
    "default" (SSE2),
    or "none" (a build without clones)."""
    return rf_pass_clone().decode()


def use_wide_tiles(bint on):
    """AVX-512 tiles (two panels a tile, where the CPU has AVX-512F) or the
    AVX2 ones for this module's packed products.  Returns whether the wide
    tiles now run."""
    return bool(rf_use_wide_tiles(on))


def use_tall_tiles(bint on):
    """Two-panel tiles of up to 12 rows (on) or 8 for this module's packed
    products; the same results bitwise.  Returns the previous setting."""
    return bool(rf_use_tall_tiles(on))


def unpacked_b_applies(long rows, long min_rows, long k, long n):
    """Whether a forward's k x n Wx or Wh, multiplied by `rows` rows in all
    and at least min_rows a product, is read as it lies (pack_b_or_read_split)."""
    return bool(rf_unpacked_ok(rows, min_rows, k, n))


def prefetch_applies(Py_ssize_t N, Py_ssize_t T, Py_ssize_t G, Py_ssize_t H,
                     Py_ssize_t itemsize=4):
    """Whether a training call over N*T rows of G gate columns and H-wide
    states prefetches each row's next step (src/_seq.pxd)."""
    check_call_sizes("prefetch_applies", N, T, G, H, itemsize)
    return bool(worth_prefetching(N, T, G, H, itemsize))


cdef check_call_sizes(str fn, Py_ssize_t N, Py_ssize_t T, Py_ssize_t G, Py_ssize_t H,
                      Py_ssize_t itemsize):
    """ValueError naming the first of N, T, G, H below 1, or itemsize not 4
    or 8 (float32, float64)."""
    for name, value in (("N", N), ("T", T), ("G", G), ("H", H)):
        if value < 1:
            raise ValueError(f"{fn}: {name}: expected an integer >= 1, got {value}")
    if itemsize not in (4, 8):
        raise ValueError(f"{fn}: itemsize: expected 4 or 8, got {itemsize}")


def grad_chunk_steps(Py_ssize_t N, Py_ssize_t T, Py_ssize_t G, Py_ssize_t H,
                     Py_ssize_t rows=0, Py_ssize_t itemsize=4, bint uniform=True):
    """Steps a chunk of a backward over N*T rows of G gate columns and
    H-wide states whose thread runs `rows` batch rows (0: all N), or 0:
    the gradients after all steps (src/_seq.pxd, chunk_steps)."""
    check_call_sizes("grad_chunk_steps", N, T, G, H, itemsize)
    if not 0 <= rows <= N:
        raise ValueError(f"grad_chunk_steps: rows: expected 0..N={N}, got {rows}")
    return chunk_steps(N, T, G, H, rows if rows > 0 else N, itemsize, uniform)


def states_rebuilt_applies(Py_ssize_t N, Py_ssize_t T, Py_ssize_t G, Py_ssize_t H,
                           Py_ssize_t itemsize=4, bint uniform=True):
    """Whether an RNN (G = H) or LSTM (G = 4H) training call of these sizes
    saves the first step's state only and its backward rebuilds the others
    (src/_seq.pxd, states_rebuilt)."""
    check_call_sizes("states_rebuilt_applies", N, T, G, H, itemsize)
    return states_rebuilt(N, T, G, H, itemsize, uniform)


def use_unpacked_b(bint on):
    """Let the wide tiles read a forward's Wx or Wh as it lies where that
    is faster than packing it (src/_gemm.h, rf_unpacked_ok), or always pack.
    The results are bitwise the same.  For A/B timings and tests."""
    rf_use_unpacked_b(on)


def packed_matmul(const floating[:, ::1] a, const floating[:, ::1] b, floating[:, ::1] c,
                  bint trans_b, bint accumulate, int repeat=1, bint unpacked=False,
                  bint backward=False):
    """c (=|+=) a @ (b.T if trans_b else b) through pack_b + gemm_packed,
    the path of the per-step products (tests compare it with numpy);
    float32 or float64 (src/_gemm_d.h), a, b and c alike.  With
    repeat > 1 the product runs that many times after one packing, as in a
    step loop (for timing the kernel alone).  unpacked (float32, trans_b
    False): b read as it lies where unpacked_b_applies(m * repeat, m, k,
    n) (else packed).  backward (trans_b True): through gemm_packed_dh, the
    path of the backward's per-step products.  Shapes are checked here;
    returns whether rnnfast's kernel ran (packed or unpacked; else BLAS)."""
    cdef int m = a.shape[0], k = a.shape[1], r
    cdef int n = b.shape[0] if trans_b else b.shape[1]
    cdef int kb = b.shape[1] if trans_b else b.shape[0]
    cdef floating* bp
    if repeat < 1:
        raise ValueError(f"packed_matmul: repeat: expected an integer >= 1, got {repeat}")
    if backward and not trans_b:
        raise ValueError("packed_matmul: backward=True needs trans_b=True (b is Wh, "
                         f"shape {(b.shape[0], b.shape[1])})")
    if kb != k or c.shape[0] != m or c.shape[1] != n or m == 0 or n == 0 or k == 0:
        raise ValueError(f"packed_matmul: shapes a {(a.shape[0], a.shape[1])}, "
                         f"b {(b.shape[0], b.shape[1])} (trans_b={trans_b}), "
                         f"c {(c.shape[0], c.shape[1])} do not agree")
    with nogil:
        if (floating is float and unpacked and not trans_b
                and rf_unpacked_ok(m * repeat, m, k, n)):
            bp = <floating*> rf_unpacked_b()
        else:
            bp = pack_b(m, trans_b, k, n, &b[0, 0], <int> b.shape[1], False)
        for r in range(repeat):
            if backward:
                gemm_packed_dh(m, n, k, &a[0, 0], k, bp, &b[0, 0], <int> b.shape[1],
                               accumulate, &c[0, 0], n)
            else:
                gemm_packed(m, n, k, &a[0, 0], k, bp, trans_b, &b[0, 0], <int> b.shape[1],
                            accumulate, &c[0, 0], n)
    ran = bp != NULL
    free_packed(bp)
    return ran


def packed_matmul_tn(const floating[:, ::1] a1, const floating[:, ::1] a2,
                     const floating[:, ::1] b, floating[:, ::1] c1, floating[:, ::1] c2,
                     int n2=-1, int runs=1, int run_len=0, bint accumulate=False):
    """c1 = a1.T @ b and, when a2 has columns, c2[:, :n2] = a2.T @ b[:, :n2]
    (n2 = -1: all of b's columns) through gemm_tn, the path of the
    parameter gradients (tests compare it with numpy).  c1 and c2[:, :n2]
    are overwritten (added to when accumulate), c2's other columns left
    alone.  With runs > 1 the products take only the rows of `runs` runs
    of run_len rows each, run r from row r * (rows // runs) on of a1 and b
    (a chunk of steps of every batch row), and from row r * (rows2 //
    runs) on of a2, whose rows2 may differ (RNN's h_prev of a chunk, in a
    buffer of its own).  float32 or float64, all alike.  Shapes are
    checked here.  Returns whether the packed kernel was switched on (else
    BLAS ran)."""
    cdef int rows = a1.shape[0], m1 = a1.shape[1], m2 = a2.shape[1], n = b.shape[1]
    cdef int stride = rows // runs if runs > 0 else 0
    cdef int stride2 = a2.shape[0] // runs if runs > 0 else 0
    cdef int k = runs * run_len if runs > 1 else rows
    if ((a2.shape[0] != rows and (runs == 1 or m2 == 0)) or b.shape[0] != rows
            or c1.shape[0] != m1 or c1.shape[1] != n
            or c2.shape[0] != m2 or c2.shape[1] != n or m1 == 0 or n == 0
            or not -1 <= n2 <= n or n2 == 0 or runs < 1
            or (runs > 1 and not 0 < run_len <= min(stride, stride2))):
        raise ValueError(f"packed_matmul_tn: shapes a1 {(a1.shape[0], a1.shape[1])}, "
                         f"a2 {(a2.shape[0], a2.shape[1])}, b {(b.shape[0], b.shape[1])}, "
                         f"c1 {(c1.shape[0], c1.shape[1])}, c2 {(c2.shape[0], c2.shape[1])}, "
                         f"n2 {n2}, runs {runs} of {run_len} do not agree")
    with nogil:
        gemm_tn(m1, &a1[0, 0] if k else NULL, m1, &c1[0, 0],
                m2, &a2[0, 0] if k and m2 else NULL, m2, &c2[0, 0] if m2 else NULL,
                n, k, &b[0, 0] if k else NULL, n, n, NULL, n2,
                run_len if runs > 1 else 0, stride, accumulate, stride2)
    return bool(rf_gemm_packed_supported())


cdef struct MatmulArgs:
    const float* a
    const float* b
    float* c
    int n, k, lda, ldb
    bint trans_a, trans_b, accumulate


cdef void matmul_rows_f(void* p, long r0, long r1, int part) noexcept nogil:
    cdef MatmulArgs* m = <MatmulArgs*> p
    # rows r0..r1-1 of C: rows of A, or its columns when trans_a
    gemm(m.trans_a, m.trans_b, <int> (r1 - r0), m.n, m.k, <float> 1,
         m.a + (r0 if m.trans_a else r0 * m.lda), m.lda, m.b, m.ldb,
         <float> (1 if m.accumulate else 0), m.c + r0 * m.n, m.n)


def threaded_matmul(const float[:, ::1] a, const float[:, ::1] b, float[:, ::1] c,
                    bint trans_a, bint trans_b, bint accumulate):
    """c (=|+=) op(a) @ op(b) through the BLAS door (gemm), its rows split
    over 2 threads as a kernel's step loop splits (src/_threads.h): the path
    of a product a kernel's thread would have sent to BLAS, which runs on
    the packed kernel instead (tests compare it with numpy and with
    packed_matmul bit for bit)."""
    cdef MatmulArgs m
    cdef int rows = c.shape[0]
    m.k = a.shape[0] if trans_a else a.shape[1]
    m.n = b.shape[0] if trans_b else b.shape[1]
    if ((a.shape[1] if trans_a else a.shape[0]) != rows or c.shape[1] != m.n
            or (b.shape[1] if trans_b else b.shape[0]) != m.k or rows < 2 or m.n == 0
            or m.k == 0):
        raise ValueError(f"threaded_matmul: shapes a {(a.shape[0], a.shape[1])}, "
                         f"b {(b.shape[0], b.shape[1])}, c {(c.shape[0], c.shape[1])} "
                         f"(trans_a={trans_a}, trans_b={trans_b}) do not agree")
    m.a, m.b, m.c = &a[0, 0], &b[0, 0], &c[0, 0]
    m.lda, m.ldb = <int> a.shape[1], <int> b.shape[1]
    m.trans_a, m.trans_b, m.accumulate = trans_a, trans_b, accumulate
    with nogil:
        rf_run_rows(matmul_rows_f, &m, rows, 2)


def all_finite(const floating[::1] x):
    """Whether x holds no NaN and no Inf, tested on the bits: adding one to
    an all-ones exponent carries into the sign bit, so OR-ing
    (bits & exponent) + lowest exponent bit over x sets the sign bit iff
    some value is NaN or Inf.  Integer AND, ADD and OR vectorise on any
    x86-64 (SSE2), with no temporary array (np.isfinite(x).all() makes one
    and calls two ufuncs, most of the input check of a small call)."""
    cdef Py_ssize_t n = x.shape[0]
    cdef bint finite
    if n == 0:
        return True
    with nogil:
        finite = finite_values(&x[0], n)
    return finite


# The fast paths of rnnfast._validation.  Each only answers "this already
# passes the check"; False sends the caller to the Python check, which
# decides, converts and words any error, so the two cannot disagree on bad
# input.  They take plain objects and read the array struct (a typed
# memoryview argument costs a buffer acquisition per call).
cdef object _F32 = cnp.PyArray_DescrFromType(cnp.NPY_FLOAT32)
cdef object _F64 = cnp.PyArray_DescrFromType(cnp.NPY_FLOAT64)


def array_ready(value, dtype, expected, bint allow_nonfinite=False):
    """Whether check_array(value, name, dtype, expected, allow_nonfinite)
    would return `value` itself without a conversion or an error: an
    ndarray (not a subclass) whose dtype is `dtype`, the very float32 or
    float64 object, C-contiguous, of shape `expected` (ints are sizes, any
    other item any size) and, unless allow_nonfinite, free of NaN and Inf."""
    cdef cnp.ndarray arr
    cdef cnp.npy_intp* dims
    cdef int i, ndim
    if (type(expected) is not tuple
            or not float_array_match(value, dtype, <int> len(<tuple> expected))):
        return False
    arr = <cnp.ndarray> value
    ndim = cnp.PyArray_NDIM(arr)
    dims = cnp.PyArray_DIMS(arr)
    for i in range(ndim):
        e = (<tuple> expected)[i]
        if isinstance(e, int) and dims[i] != e:      # Python's comparison, as check_array
            return False
    if allow_nonfinite:
        return True
    cdef const void* data = cnp.PyArray_DATA(arr)
    cdef Py_ssize_t size = cnp.PyArray_SIZE(arr)
    cdef bint f32 = dtype is _F32
    cdef bint finite
    if size < 65536:                 # short: not worth giving up the GIL
        return finite_values(<const float*> data, size) if f32 else \
            finite_values(<const double*> data, size)
    cdef FiniteJob job
    cdef long t = _blas_get_threads() if _blas_get_threads != NULL else 1
    if size < FINITE_SPLIT_VALUES * t:
        t = size // FINITE_SPLIT_VALUES
    if t > RF_MAX_THREADS:
        t = RF_MAX_THREADS
    if t < 2:
        with nogil:                  # a whole input: others may run meanwhile
            finite = (finite_values(<const float*> data, size) if f32
                      else finite_values(<const double*> data, size))
        return finite
    job.data, job.size, job.f32, job.nonfinite = data, size, f32, 0
    with nogil:
        rf_run_rows(finite_part, &job, (size + FINITE_BLOCK - 1) // FINITE_BLOCK, <int> t)
    return job.nonfinite == 0


# An input of a language model's size (the loss's 700 x 10,000 logits and
# their gradient, 28 MB each: ~0.8 ms a test on one thread) is tested over
# rnnfast's threads, in blocks of FINITE_BLOCK values, from
# FINITE_SPLIT_VALUES a thread (docs/performance.md item 124).
cdef enum:
    FINITE_SPLIT_VALUES = 1 << 20
    FINITE_BLOCK = 1 << 16


cdef struct FiniteJob:
    const void* data
    Py_ssize_t size
    bint f32
    int nonfinite            # set to 1 by any part that finds a NaN or Inf


cdef void finite_part(void* ctx, long b0, long b1, int part) noexcept nogil:
    cdef FiniteJob* j = <FiniteJob*> ctx
    cdef Py_ssize_t i0 = b0 * FINITE_BLOCK
    cdef Py_ssize_t i1 = b1 * FINITE_BLOCK if b1 * FINITE_BLOCK < j.size else j.size
    cdef bint ok = (finite_values(<const float*> j.data + i0, i1 - i0) if j.f32
                    else finite_values(<const double*> j.data + i0, i1 - i0))
    if not ok:
        j.nonfinite = 1      # parts may set it at once, to the same value


def arrays_ready(arrays, list shapes, dtype, bint writable=False):
    """Whether check_live_arrays(arrays, ..., shapes, dtype, ..., writable)
    would pass: `arrays` a list of as many arrays as `shapes` (tuples of
    ints), each an ndarray (not a subclass) whose dtype is `dtype` itself,
    of its shape, C-contiguous and, if writable, writeable (src/_arrays.pxd,
    arrays_match)."""
    return arrays_match(arrays, shapes, dtype, writable)


# BLAS's thread count, asked at every kernel call (rnnfast._core.
# step_loop_threads): through a C pointer to OpenBLAS's get_num_threads,
# which _core finds with ctypes, a call costs a few dozen nanoseconds
# instead of a ctypes call's few hundred.
ctypedef int (*count_fn)() noexcept nogil
cdef count_fn _blas_get_threads = NULL


def set_blas_threads_getter(getter):
    """getter: a ctypes function `int f(void)` returning BLAS's thread count
    (restype c_int, argtypes []), or None (blas_threads() is then 1).  Not
    a bare address: one that is not such a function would crash the next
    call instead of being refused here."""
    global _blas_get_threads
    import ctypes
    if getter is None:
        _blas_get_threads = NULL
        return
    if (not isinstance(getter, ctypes._CFuncPtr) or getter.restype is not ctypes.c_int
            or list(getter.argtypes or ()) != []):
        raise TypeError(f"getter: expected None or a ctypes function with restype c_int "
                        f"and argtypes [], got {getter!r}")
    _blas_get_threads = <count_fn> <Py_ssize_t> ctypes.cast(getter, ctypes.c_void_p).value


def blas_threads():
    """max(1, BLAS's thread count now), or 1 without a getter."""
    cdef int n = 1
    if _blas_get_threads != NULL:
        n = _blas_get_threads()
    return n if n > 1 else 1


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


def split_packing_threads(int threads, Py_ssize_t N, Py_ssize_t T, Py_ssize_t flops_per_row_step,
                          Py_ssize_t k, Py_ssize_t n, Py_ssize_t itemsize=4):
    """Tests: the threads a call on `threads` threads (its BLAS count), whose
    step loop does flops_per_row_step a row and step, packs a (k, n) weight
    matrix on (src/_seq.pxd, packing_threads)."""
    return packing_threads(step_threads(threads, N, T, flops_per_row_step, True), k, n,
                           itemsize)


def use_split_packing(bint on):
    """Pack a call's weights on the threads of its step loop when they are
    large (on, the default; src/_seq.pxd, pack_b_split), or on the calling
    thread alone.  The packed bytes are the same.  For A/B timings and
    tests."""
    set_pack_split(on)


def poison_chunk_buffers(bint on):
    """Tests: fill the buffer a chunked RNN backward allocates for its
    chunks' h_prev (SeqBwd.chunk_h) with NaN bytes as it is allocated, so
    that a row read before it was written shows in the gradients; off by
    default."""
    set_poison_chunk_h(on)


# Each kernel module has its own split limits and pool (src/_threads.h is
# compiled into each): rnnfast._core.use_thread_pool and
# benchmarks/split_limits.py set all three modules' at once.
def split_limits(step_flops=None, grad_flops=None, grad_rows=None):
    return set_split_limits(step_flops, grad_flops, grad_rows)    # src/_seq.pxd


def use_thread_pool(bint on):
    return bool(rf_use_thread_pool(on))     # False: threads created per call


def use_pool_spread(bint on):
    return bool(rf_use_pool_spread(on))     # src/_threads.h, rf_move_off_cpu


cdef extern from *:
    """
    /* Flush-to-zero and denormals-are-zero (MXCSR bits 15 and 6) of the
     * calling thread, as a library built with -ffast-math sets them. */
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    static int rf_flush_subnormals(int on)
    {
        unsigned int csr = __builtin_ia32_stmxcsr(), bits = 0x8040u;
        int was = (csr & bits) == bits;
        __builtin_ia32_ldmxcsr(on ? csr | bits : csr & ~bits);
        return was;
    }
    #else
    static int rf_flush_subnormals(int on) { (void) on; return -1; }
    #endif
    """
    int rf_flush_subnormals(int on) nogil


def flush_subnormals(bint on):
    """Set (on) or clear flush-to-zero and denormals-are-zero on the
    calling thread, as a library built with -ffast-math does; returns
    whether both were set before.  For tests of the parts run on the
    pool's workers, which take the caller's mode (src/_threads.h,
    rf_fpmode).  x86-64 only (NotImplementedError elsewhere)."""
    cdef int was = rf_flush_subnormals(on)
    if was < 0:
        raise NotImplementedError("flush_subnormals: x86-64 only")
    return bool(was)


# ------------------------------------------------ fully connected layers
include "_affine.pxi"


# ------------------------------------------------------ a loss's softmax
include "_softmax.pxi"


# ------------------------------------- a training step's element-wise loops
include "_rowops.pxi"


# The float32 kernel's switches (each kernel module has its own copy of
# src/_gemm.h's state, so each module sets its own).
include "_kernel_switches.pxi"
