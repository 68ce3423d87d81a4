# The three products of a fully connected layer (rnnfast.layers.affine:
# y = x @ W + b, dx = dy @ W^T, dW = x^T @ dy and db), on rnnfast's packed
# kernel (src/_gemm.h) and its thread pool (src/_threads.h) instead of
# NumPy's BLAS.
#
# Why not NumPy: OpenBLAS's workers spin for ~0.1 s after each of its
# threaded calls (its THREAD_TIMEOUT, 2^28 cycles).  A language model's
# step alternates the output layer's GEMMs with the recurrent kernels, so
# at 2 threads every kernel call found an OpenBLAS worker spinning on the
# other core and ran its second thread at half speed: an LSTM training
# step at `zaremba-small` took 7.4 ms right after a NumPy product, 3.9 ms
# otherwise (docs/performance.md, item 117).  On rnnfast's pool, whose
# workers sleep between jobs, the products and the kernels take turns.
#
# Each product splits over threads where its work is: the forward and dW
# by column panels of the result (each thread packs and reads only its
# part of the wide operand), dx by rows (each thread packing W chunk by
# chunk of the long sum, below).
# The per-element sums run in the same order whatever the split, so the
# results are the same bytes at any thread count.
#
# Operands are C-contiguous and already checked by the caller (the layer),
# and the outputs must not overlap the inputs (unlike NumPy's out=, nothing
# here copies an input first; the layers pass new arrays);
# every function returns False, having done nothing, where it does not
# apply (no packed kernel on this CPU or build, sizes past int), and the
# caller then uses NumPy.
#
# Included at the end of src/_rnn.pyx (rnnfast._rnn.matmul_bias, ...), so
# that these products share that module's pool, buffer cache and switches
# (use_packed_gemm, use_thread_pool, split_limits) instead of bringing a
# fourth copy of each.
from _blas cimport (floating, pack_b, free_packed, gemm_packed, gemm_tn,
                    rf_gemm_packed_supported, rf_packed_dw_enabled, rf_unpacked_b,
                    rf_unpacked_usable)
from _seq cimport rf_run_rows, RF_MAX_THREADS, RF_NR, RF_NRD, rf_split_grad_flops

# Panels of the packed layout: the unit of a column split.
cdef inline long aff_panel(floating* tag) noexcept nogil:
    return RF_NRD if floating is double else RF_NR


cdef inline int aff_threads(double flops, long units) noexcept:
    """The threads a product gets: BLAS's thread count (what threadpoolctl
    limits, as for the recurrent kernels), at most one a unit, and fewer
    when each would have under rf_split_grad_flops of work."""
    cdef long t = _blas_get_threads() if _blas_get_threads != NULL else 1
    if t > RF_MAX_THREADS:
        t = RF_MAX_THREADS
    if t > units:
        t = units
    while t > 1 and flops < <double> rf_split_grad_flops * t:
        t -= 1
    return <int> (t if t > 1 else 1)


cdef inline bint aff_fits(Py_ssize_t a, Py_ssize_t b, Py_ssize_t c) noexcept:
    # The kernel takes int sizes and leading dimensions.
    return 0 < a < 2 ** 31 and 0 < b < 2 ** 31 and 0 < c < 2 ** 31


cdef bint aff_applies():
    return rf_gemm_packed_supported() != 0


# ---------------------------------------------------------------- forward
cdef struct AffColsJob:
    const void* a           # (m, k)
    const void* b           # (k, n), or (n, k) when trans_b
    const void* bias        # (n,) or NULL
    void* c                 # (m, n)
    int m, n, k
    bint trans_b


cdef enum:
    AFF_NC = 128        # columns of a block of the forward (8 float panels)
    # Columns of a block of the weight gradient.  gemm_tn packs all of a
    # (x^T, tile by tile) again for every block: at 128 that was 6.6 % of a
    # language model's dW (700 x 200 by 700 x 10,000).  1024 measured
    # 1.046-1.067 faster than 128 at m1 = 200, 650 and 1500 (256 and 512
    # less at one size or another; docs/performance.md item 140), though
    # c's block no longer stays in L2 across the chunks of rows.
    AFF_NC_TN = 1024
    # Rows of a forward up to which W is read as it lies, not packed: the
    # unpacked tiles were 1.04-1.15x faster than packing at 32-64 rows (W
    # 128 x 256 to 650 x 2600), even at 128, 0.91-0.98x at 256-512 rows of
    # a W of 200 x 1000 and more (docs/performance.md item 171).
    AFF_UNPACKED_ROWS = 64


cdef void aff_cols_part(floating* tag, AffColsJob* j, long p0, long p1) noexcept nogil:
    """c[:, cols] = a @ op(b)[:, cols] (+ bias[cols]) for the columns of
    panels p0..p1-1, by blocks of AFF_NC columns: each block's op(b) packed
    here, its c written by the product and the bias then added while that
    block (m x 128 values, 358 KB for a language model's 700 rows) is in
    L2.  The same sums as filling c with the bias first and adding the
    product to it (one addition either way), but c's first touch, which
    fetches its lines from memory (the logits: 28 MB), now happens in the
    tiles' stores, behind their FMAs, not in a pass of its own (9 % of the
    product; docs/performance.md item 141)."""
    cdef long w = aff_panel(tag)
    cdef int c0 = <int> (p0 * w)
    cdef int c1 = <int> (p1 * w if p1 * w < j.n else j.n)
    cdef int i, col, nc
    cdef const floating* a = <const floating*> j.a
    cdef const floating* b = <const floating*> j.b
    cdef const floating* bias = <const floating*> j.bias
    cdef floating* c = <floating*> j.c
    cdef const floating* bpart
    cdef floating* bp
    while c0 < c1:
        nc = AFF_NC if c1 - c0 > AFF_NC else c1 - c0
        # op(b)'s columns c0..: b's columns (row-major (k, n)) or its rows ((n, k))
        bpart = b + <long> c0 * j.k if j.trans_b else b + c0
        # Up to AFF_UNPACKED_ROWS rows the wide tiles read W as it lies:
        # packing it cost more than it saved (below).  Their sums are the
        # packed tiles' and GEMV's, so a row's output stays the same bytes.
        if (floating is float and not j.trans_b and j.m <= AFF_UNPACKED_ROWS
                and rf_unpacked_usable()):
            bp = <floating*> rf_unpacked_b()
        else:
            bp = pack_b(j.m, j.trans_b, j.k, nc, bpart, j.k if j.trans_b else j.n, False)
        gemm_packed(j.m, nc, j.k, a, j.k, bp, j.trans_b, bpart,
                    j.k if j.trans_b else j.n, False, c + c0, j.n)
        if bias != NULL:
            for i in range(j.m):
                for col in range(c0, c0 + nc):
                    c[<long> i * j.n + col] += bias[col]
        free_packed(bp)
        c0 += nc


cdef void aff_cols_part_f(void* ctx, long p0, long p1, int part) noexcept nogil:
    aff_cols_part(<float*> NULL, <AffColsJob*> ctx, p0, p1)


cdef void aff_cols_part_d(void* ctx, long p0, long p1, int part) noexcept nogil:
    aff_cols_part(<double*> NULL, <AffColsJob*> ctx, p0, p1)


def reads_w_unpacked():
    """Whether matmul_bias reads a float32 W as it lies at up to
    AFF_UNPACKED_ROWS rows (this CPU's AVX-512 tiles, the switch on)."""
    return rf_unpacked_usable() != 0


def matmul_bias(const floating[:, ::1] a, const floating[:, ::1] b, bias,
                floating[:, ::1] c, bint trans_b):
    """c = a @ op(b) (+ bias), op(b) = b.T when trans_b: the forward of a
    layer (a tied one passes E itself with trans_b).  a (m, k), b (k, n) or
    (n, k), bias None or a C-contiguous (n,) array, c (m, n).  Split over
    threads by column panels.  Returns whether it ran."""
    cdef AffColsJob job
    cdef int m = a.shape[0], k = a.shape[1]
    cdef int n = c.shape[1]
    cdef const floating[::1] bias_view
    cdef long w = aff_panel(<floating*> NULL)
    cdef long panels
    cdef int nt
    if (not aff_applies() or not aff_fits(m, k, n) or c.shape[0] != m
            or b.shape[0] != (n if trans_b else k) or b.shape[1] != (k if trans_b else n)):
        return False
    job.bias = NULL
    if bias is not None:
        bias_view = bias
        if bias_view.shape[0] != n:
            return False
        job.bias = &bias_view[0]
    job.a, job.b, job.c = &a[0, 0], &b[0, 0], &c[0, 0]
    job.m, job.n, job.k, job.trans_b = m, n, k, trans_b
    panels = (n + w - 1) // w
    nt = aff_threads(2.0 * m * n * k, panels)
    with nogil:
        if floating is float:
            rf_run_rows(aff_cols_part_f, &job, panels, nt)
        else:
            rf_run_rows(aff_cols_part_d, &job, panels, nt)
    return True


# ------------------------------------------------------------- input grad
# dx = dy @ W^T sums over the layer's M outputs (10,000 for a language
# model): op(B) is then (M, D), 8 MB at D = 200, and the tiles, which
# stream all of a packed B for each block of rows, would stream it from L3
# on both threads at once (2 threads: 119 GFLOP/s against one thread's
# 105).  So each thread takes a share of the rows and walks the sum in
# chunks of AFF_KC outputs, packing each chunk itself into a buffer that
# stays in its L2.
cdef enum:
    AFF_KC = 512


cdef struct AffRowsJob:
    const void* a           # (m, k)
    const void* b           # (k, n), or (n, k) when trans_b
    void* c                 # (m, n)
    int n, k, ldb
    bint trans_b


cdef void aff_rows_part(floating* tag, AffRowsJob* j, long r0, long r1) noexcept nogil:
    cdef int k0 = 0, kc
    cdef const floating* a = <const floating*> j.a + r0 * j.k
    cdef const floating* b = <const floating*> j.b
    cdef const floating* bchunk
    cdef floating* c = <floating*> j.c + r0 * j.n
    cdef floating* bp
    if r1 <= r0:
        return
    while k0 < j.k:
        kc = AFF_KC if j.k - k0 > AFF_KC else j.k - k0
        # op(B)'s rows k0..k0+kc-1: b's columns k0.. (trans_b) or rows k0..
        bchunk = b + k0 if j.trans_b else b + <long> k0 * j.ldb
        bp = pack_b(<int> (r1 - r0), j.trans_b, kc, j.n, bchunk, j.ldb, False)
        gemm_packed(<int> (r1 - r0), j.n, kc, a + k0, j.k, bp, j.trans_b, bchunk, j.ldb,
                    k0 > 0, c, j.n)
        free_packed(bp)
        k0 += kc


cdef void aff_rows_part_f(void* ctx, long r0, long r1, int part) noexcept nogil:
    aff_rows_part(<float*> NULL, <AffRowsJob*> ctx, r0, r1)


cdef void aff_rows_part_d(void* ctx, long r0, long r1, int part) noexcept nogil:
    aff_rows_part(<double*> NULL, <AffRowsJob*> ctx, r0, r1)


def matmul_rows(const floating[:, ::1] a, const floating[:, ::1] b, floating[:, ::1] c,
                bint trans_b):
    """c = a @ op(b): dx = dy @ W^T (trans_b, W as it lies) or dy @ E (a
    tied layer).  a (m, k), b (k, n) or (n, k), c (m, n).  The rows split
    over threads, each summing over k by chunks (above).  Returns whether
    it ran."""
    cdef AffRowsJob job
    cdef int m = a.shape[0], k = a.shape[1]
    cdef int n = c.shape[1]
    cdef int nt
    if (not aff_applies() or not aff_fits(m, k, n) or c.shape[0] != m
            or b.shape[0] != (n if trans_b else k) or b.shape[1] != (k if trans_b else n)):
        return False
    # at least 16 rows a thread: a tile is up to 8 rows
    nt = aff_threads(2.0 * m * n * k, m // 16)
    job.a, job.b, job.c = &a[0, 0], &b[0, 0], &c[0, 0]
    job.n, job.k, job.ldb, job.trans_b = n, k, <int> b.shape[1], trans_b
    with nogil:
        if floating is float:
            rf_run_rows(aff_rows_part_f, &job, m, nt)
        else:
            rf_run_rows(aff_rows_part_d, &job, m, nt)
    return True


# -------------------------------------------------------- weight gradient
cdef struct AffTnJob:
    const void* a           # (rows, m1)
    const void* b           # (rows, n)
    void* c                 # (m1, n)
    void* colsum            # (n,) or NULL: b's column sums, added
    int rows, m1, n
    bint split_n            # parts are panels of c's columns, else of its rows


cdef void aff_tn_part(floating* tag, AffTnJob* j, long p0, long p1, int part) noexcept nogil:
    cdef long w = aff_panel(tag)
    cdef long total = j.n if j.split_n else j.m1
    cdef int i0 = <int> (p0 * w)
    cdef int i1 = <int> (p1 * w if p1 * w < total else total)
    cdef int nc
    cdef const floating* a = <const floating*> j.a
    cdef const floating* b = <const floating*> j.b
    cdef floating* c = <floating*> j.c
    cdef floating* colsum = <floating*> j.colsum
    if i1 <= i0:
        return
    if j.split_n:       # c[:, i0:i1] = a^T b[:, i0:i1], and those columns' sums,
        while i0 < i1:  # by blocks of AFF_NC_TN columns
            nc = AFF_NC_TN if i1 - i0 > AFF_NC_TN else i1 - i0
            gemm_tn(j.m1, a, j.m1, c + i0, 0, <const floating*> NULL, 0, <floating*> NULL,
                    nc, j.rows, b + i0, j.n, j.n,
                    colsum + i0 if colsum != NULL else <floating*> NULL)
            i0 += nc
    else:               # c[i0:i1, :] = a[:, i0:i1]^T b; the sums on part 0 alone
        gemm_tn(i1 - i0, a + i0, j.m1, c + <long> i0 * j.n, 0, <const floating*> NULL, 0,
                <floating*> NULL, j.n, j.rows, b, j.n, j.n,
                colsum if part == 0 else <floating*> NULL)


cdef void aff_tn_part_f(void* ctx, long p0, long p1, int part) noexcept nogil:
    aff_tn_part(<float*> NULL, <AffTnJob*> ctx, p0, p1, part)


cdef void aff_tn_part_d(void* ctx, long p0, long p1, int part) noexcept nogil:
    aff_tn_part(<double*> NULL, <AffTnJob*> ctx, p0, p1, part)


def matmul_tn(const floating[:, ::1] a, const floating[:, ::1] b, floating[:, ::1] c,
              colsum):
    """c = a^T @ b, and colsum (None, or a C-contiguous (n,) array) = b's
    column sums: dW = x^T dy with db (or, for a tied layer, dE = dy^T x).
    a (rows, m1), b (rows, n), c (m1, n); colsum is overwritten.  Split
    over threads by panels of c's columns or rows, whichever are more.
    Returns whether it ran."""
    cdef AffTnJob job
    cdef int rows = a.shape[0], m1 = a.shape[1], n = b.shape[1]
    cdef floating[::1] sums
    cdef long w = aff_panel(<floating*> NULL)
    cdef long panels
    cdef int nt
    # below 32 rows gemm_tn would hand the product to BLAS (from a thread)
    if (not aff_applies() or not rf_packed_dw_enabled() or rows < 32 or not aff_fits(rows, m1, n)
            or b.shape[0] != rows or c.shape[0] != m1 or c.shape[1] != n):
        return False
    job.colsum = NULL
    if colsum is not None:
        sums = colsum
        if sums.shape[0] != n:
            return False
        sums[:] = 0
        job.colsum = &sums[0]
    job.a, job.b, job.c = &a[0, 0], &b[0, 0], &c[0, 0]
    job.rows, job.m1, job.n = rows, m1, n
    job.split_n = n >= m1
    panels = ((n if job.split_n else m1) + w - 1) // w
    nt = aff_threads(2.0 * rows * m1 * n, panels)
    with nogil:
        if floating is float:
            rf_run_rows(aff_tn_part_f, &job, panels, nt)
        else:
            rf_run_rows(aff_tn_part_d, &job, panels, nt)
    return True
