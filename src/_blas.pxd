# The only door onto BLAS.  Every kernel calls BLAS through the inline,
# row-major, fused-type wrappers below; no other file cimports
# scipy.linalg.cython_blas.  SciPy's cython_blas takes plain `int` sizes
# (its .pxd defines no blas_int), so callers keep every size below 2**31;
# the Python layer checks that before any kernel runs.
from libc.string cimport memset
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv

cdef extern from "_threads.h" nogil:
    int rf_in_threads()

cdef extern from "_gemm.h" nogil:
    int rf_gemm_single_f(int trans_a, int trans_b, long M, long N, long K,
                         const float* A, long lda, const float* B, long ldb,
                         int accumulate, float* C, long ldc)

ctypedef fused floating:
    float
    double


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating* a, int lda,
                      const floating* b, int ldb, floating beta,
                      floating* c, int ldc) noexcept nogil:
    """Row-major C[m, n] = alpha * op(A) @ op(B) + beta * C.

    op(A) is (m, k), op(B) is (k, n); lda/ldb/ldc are row strides in
    elements, so a slice of a larger row-major array (for example the
    step-t rows xs[:, t, :] with stride T*D) is passed without a copy.
    Fortran BLAS is column-major, so we compute C^T = op(B)^T op(A)^T,
    which needs no transpose of the data, only swapped operands.

    A single row (m == 1, e.g. a batch of one sequence) goes to GEMV, whose
    call overhead is a fraction of GEMM's at these sizes.

    In a part of a threaded region (only the packed kernel splits calls
    over threads) a float32 product runs on the packed kernel in this
    thread instead: BLAS would start threads of its own, or need its
    process-wide thread count set to 1 around the call (src/_threads.h).
    A float64 one has no such net: the threaded float64 loops hand every
    product to the packed kernel (src/_gemm_d.h), and reach BLAS here only
    when a packed matrix could not be allocated (correct then, if
    oversubscribed).
    """
    cdef char ta = b'T' if trans_b else b'N'
    cdef char tb = b'T' if trans_a else b'N'
    cdef int one = 1
    cdef int incx
    if m <= 0 or n <= 0:
        return
    if floating is float:
        if (rf_in_threads() and alpha == 1 and (beta == 0 or beta == 1)
                and rf_gemm_single_f(trans_a, trans_b, m, n, k, a, lda, b, ldb,
                                     beta == 1, c, ldc)):
            return
    if m == 1 and k > 0:
        # c (n) = op(B)^T-as-stored @ a: row-major B (k, n) is column-major
        # B^T (n, k), so op(B) = B needs 'N' on (n, k); op(B) = B^T, i.e.
        # row-major B (n, k), is column-major (k, n) and needs 'T'.
        # A's single row has stride 1, or lda when op(A) = A^T.
        incx = lda if trans_a else 1
        if beta == 0:
            # BLAS may compute 0 * y; y can be uninitialised (NaN) scratch.
            memset(c, 0, n * sizeof(floating))
        if trans_b:
            if floating is float:
                sgemv(&ta, &k, &n, &alpha, <float*> b, &ldb, <float*> a, &incx,
                      &beta, c, &one)
            else:
                dgemv(&ta, &k, &n, &alpha, <double*> b, &ldb, <double*> a, &incx,
                      &beta, c, &one)
        else:
            if floating is float:
                sgemv(&ta, &n, &k, &alpha, <float*> b, &ldb, <float*> a, &incx,
                      &beta, c, &one)
            else:
                dgemv(&ta, &n, &k, &alpha, <double*> b, &ldb, <double*> a, &incx,
                      &beta, c, &one)
        return
    if floating is float:
        sgemm(&ta, &tb, &n, &m, &k, &alpha, <float*> b, &ldb,
              <float*> a, &lda, &beta, c, &ldc)
    else:
        dgemm(&ta, &tb, &n, &m, &k, &alpha, <double*> b, &ldb,
              <double*> a, &lda, &beta, c, &ldc)


# ---------------------------------------------------------------- packed B
# The per-step recurrent products multiply by the same matrix (Wh or Wh^T)
# at every step.  On a CPU with AVX2+FMA, that matrix is packed
# once per sequence and the steps run rnnfast's own micro-kernel
# (src/_gemm.h, src/_gemm_d.h for float64); on other CPUs they call BLAS.
from libc.stdlib cimport malloc, free

cdef extern from "_gemm.h" nogil:
    long rf_packed_size(long K, long N)
    long rf_panel_stride(long K)
    long rf_panel_stride_d(long K)
    void rf_pack_b_f(const float* B, long ldb, int trans, long K, long N, float* Bp)
    void rf_gemm_packed_f(long M, long N, long K, const float* A, long lda,
                          const float* Bp, float* C, long ldc, int accumulate)
    void rf_gemm_packed_dh_f(long M, long N, long K, const float* A, long lda,
                             const float* Bp, float* C, long ldc, int accumulate)
    int rf_gemm_packed_supported()
    void rf_use_packed_gemm(int on)
    int rf_use_wide_tiles(int on)
    int rf_use_tall_tiles(int on)
    int rf_wide_in_use()
    float* rf_buf_alloc(size_t nfloats)
    float* rf_buf_alloc_keyed(size_t nfloats, const void* key, size_t tag)
    size_t rf_pack_tag(long K, long N, int itemsize)
    void rf_pack_b_sum_f(const float* B, long ldb, int trans, long K, long N, float* Bp,
                         long pstride, float* colsum)
    void rf_pack_b_sum_d(const double* B, long ldb, int trans, long K, long N, double* Bp,
                         long pstride, double* colsum)
    int rf_repack_b_f(const float* B, long ldb, long K, long N, float* Bp, long pstride)
    int rf_repack_b_d(const double* B, long ldb, long K, long N, double* Bp, long pstride)
    long rf_repacks_kept()
    size_t rf_buf_epoch(const float* p)
    const void* rf_buf_also(const float* p)
    void rf_buf_stamp(float* p, size_t epoch, const void* also)
    void rf_count_trusted()
    long rf_packs_trusted()
    void rf_use_repack(int on)
    void rf_buf_free(float* p)
    float* rf_unpacked_b()
    void rf_use_unpacked_b(int on)
    void rf_use_gemv_segments(int on)
    int rf_use_gemv_groups_of_8(int on)
    void rf_use_half_panels(int on)
    void rf_use_dgemv(int on)
    int rf_unpacked_ok(long rows, long min_rows, long K, long N)
    int rf_unpacked_usable()
    void rf_gemm_unpacked_f(long M, long N, long K, const float* A, long lda,
                            const float* B, long ldb, float* C, long ldc, int accumulate)
    long rf_packed_size_d(long K, long N)
    void rf_pack_b_d(const double* B, long ldb, int trans, long K, long N, double* Bp)
    void rf_gemm_packed_d(long M, long N, long K, const double* A, long lda,
                          const double* Bp, double* C, long ldc, int accumulate)


# How a forward packs its row-major weights (its `reuse`, a size_t):
# PACK_PLAIN every row into any buffer; PACK_REUSE into the buffer that
# packed them last, storing only the rows that changed (rf_repack_b_f);
# any larger value is a pack epoch (rnnfast._core.packs_kept, whose
# weights do not change inside it): as PACK_REUSE, and a buffer already
# packed in that epoch is used as it is, with no pass over its rows.
cdef enum:
    PACK_PLAIN = 0
    PACK_REUSE = 1


cdef inline bint packed_in_epoch(floating* bp, size_t reuse,
                                 const void* also=NULL) noexcept nogil:
    """Whether bp (from packed_buffer with reuse) holds its matrix's
    packing, made in the pack epoch `reuse` from the same `also` (another
    matrix the packing depends on, or NULL), so that it stands as it is."""
    if reuse <= PACK_REUSE or rf_buf_epoch(<const float*> bp) != reuse:
        return False
    if rf_buf_also(<const float*> bp) != also:
        return False
    rf_count_trusted()
    return True


cdef inline void stamp_packing(floating* bp, size_t reuse,
                               const void* also=NULL) noexcept nogil:
    """After bp was packed in full: its epoch (none unless reuse is one)."""
    rf_buf_stamp(<float*> bp, reuse if reuse > PACK_REUSE else 0,
                 also if reuse > PACK_REUSE else NULL)


cdef inline int pack_rows(Py_ssize_t rows) noexcept nogil:
    """The m to give pack_b for a matrix that will multiply `rows` rows in
    all (over every step of a call): 0, i.e. BLAS, for a single row (a cell's
    one step with a batch of one), where packing cost more than the product
    (64 x 256: pack and GEMV 4.5 us, BLAS 1.7 us; 128 x 512: 14 against
    4 us)."""
    return <int> rows if rows > 1 else 0


cdef inline floating* packed_buffer(int m, int k, int n, const floating* b,
                                    bint reuse) noexcept nogil:
    """Room for op(B) (k, n) packed, as pack_b allocates it, or NULL when
    the packed path does not apply.  reuse (b row-major weights that an
    inference call packs as the last one did): the kept buffer that last
    held b's packing if there is one (src/_gemm.h, rf_buf_alloc_keyed);
    otherwise b only picks the type."""
    cdef const void* key = <const void*> b if reuse else NULL
    if not rf_gemm_packed_supported() or m < 1 or k <= 0 or n <= 0:
        return NULL
    if floating is float:
        return <floating*> rf_buf_alloc_keyed(rf_packed_size(k, n), key,
                                              rf_pack_tag(k, n, sizeof(floating)))
    else:
        return <floating*> rf_buf_alloc_keyed(2 * rf_packed_size_d(k, n), key,   # in floats
                                              rf_pack_tag(k, n, sizeof(floating)))


cdef inline floating* pack_b(int m, bint trans_b, int k, int n, const floating* b,
                             int ldb, size_t reuse) noexcept nogil:
    """op(B) (k, n) packed for gemm_packed with m-row left operands, or NULL
    when the packed path does not apply (the caller then passes NULL on and
    BLAS runs).  m = 0 asks for BLAS (see pack_rows).  float: src/_gemm.h's
    layout; double: src/_gemm_d.h's.  reuse (weights in an inference call,
    trans_b False; PACK_PLAIN above): into the buffer that packed them
    last, storing only what changed (rf_repack_b_f), or nothing when it was
    packed in this pack epoch.  Release the result with free_packed() (it
    may be kept for the next call)."""
    cdef bint keyed = reuse != PACK_PLAIN and not trans_b
    cdef floating* bp = packed_buffer(m, k, n, b, keyed)
    if bp == NULL:
        return bp
    if not trans_b:
        if keyed and packed_in_epoch(bp, reuse):
            return bp
        pack_rows_into(<const void*> b, ldb, k, n, <void*> bp,
                       rf_panel_stride_d(k) if floating is double else rf_panel_stride(k),
                       floating is double, keyed)
        stamp_packing(bp, reuse if keyed else PACK_PLAIN)
    elif floating is float:
        rf_pack_b_f(<const float*> b, ldb, trans_b, k, n, <float*> bp)
    else:
        rf_pack_b_d(<const double*> b, ldb, trans_b, k, n, <double*> bp)
    return bp


cdef inline void pack_rows_into(const void* b, long ldb, long k, long n, void* bp,
                                long pstride, bint dbl, bint reuse) noexcept nogil:
    """B (k, n), row-major, doubles if dbl, into rows 0..k-1 of every panel
    of bp (panels pstride apart: a whole (k, n) B's packing, or the share of
    a taller B's that these rows are: pack_b, pack_part, NarrowInputs).
    reuse: storing only what changed (src/_gemm.h, rf_repack_b_f)."""
    if dbl and reuse:
        rf_repack_b_d(<const double*> b, ldb, k, n, <double*> bp, pstride)
    elif dbl:
        rf_pack_b_sum_d(<const double*> b, ldb, 0, k, n, <double*> bp, pstride, NULL)
    elif reuse:
        rf_repack_b_f(<const float*> b, ldb, k, n, <float*> bp, pstride)
    else:
        rf_pack_b_sum_f(<const float*> b, ldb, 0, k, n, <float*> bp, pstride, NULL)


cdef inline void free_packed(void* bp) noexcept nogil:
    """Release what pack_b (or src/_seq.pxd's pack_b_split,
    pack_b_or_read_split) returned (NULL is fine)."""
    if bp != <void*> rf_unpacked_b():
        rf_buf_free(<float*> bp)


cdef inline void gemm_packed(int m, int n, int k, const floating* a, int lda,
                             const floating* bp, bint trans_b, const floating* b,
                             int ldb, bint accumulate, floating* c,
                             int ldc) noexcept nogil:
    """Row-major C[m, n] = (accumulate ? C : 0) + A @ op(B), with op(B)
    either packed in bp (from pack_b), or read from b as it lies by the
    wide tiles (float; bp is rf_unpacked_b(): pack_b_or_read_split), or, when bp
    is NULL, read from b by BLAS."""
    if m <= 0 or n <= 0:
        return
    if bp != NULL:
        if floating is float:
            if <const void*> bp == <const void*> rf_unpacked_b():
                rf_gemm_unpacked_f(m, n, k, a, lda, b, ldb, c, ldc, accumulate)
            else:
                rf_gemm_packed_f(m, n, k, a, lda, bp, c, ldc, accumulate)
        else:
            rf_gemm_packed_d(m, n, k, a, lda, bp, c, ldc, accumulate)
        return
    gemm(False, trans_b, m, n, k, <floating> 1, a, lda, b, ldb,
         <floating> (1 if accumulate else 0), c, ldc)


cdef inline void gemm_packed_dh(int m, int n, int k, const floating* a, int lda,
                                const floating* bp, const floating* b, int ldb,
                                bint accumulate, floating* c, int ldc) noexcept nogil:
    """gemm_packed(m, n, k, a, lda, bp, True, b, ldb, accumulate, c, ldc) for
    the backward's per-step products dh (+)= dA_t @ Wh^T: a packed float B
    goes to rf_gemm_packed_dh_f (src/_gemm.h), which runs a row alone by
    segments of K, whose sums do not depend on the walk's direction, and
    anything else as gemm_packed does."""
    if floating is float:
        if bp != NULL and <const void*> bp != <const void*> rf_unpacked_b():
            rf_gemm_packed_dh_f(m, n, k, a, lda, bp, c, ldc, accumulate)
            return
    gemm_packed(m, n, k, a, lda, bp, True, b, ldb, accumulate, c, ldc)


# ------------------------------------------------- transposed-A products
# The parameter gradients dWx = X^T dA and dWh = Hprev^T dA, summed over
# all N*T rows of the sequence buffers.  With the packed kernel they run
# rf_gemm_tn_f / rf_gemm_tn_d (src/_gemm_tn_impl.h): the gate gradients dA
# are packed once per chunk of rows and shared by both products, where
# BLAS packs them again for each; otherwise BLAS.
cdef extern from "_gemm.h" nogil:
    int rf_gemm_tn_f(int nsrc, const long* M, const float** A, const long* lda,
                     float** C, long ldc, const long* Ns, long K, const float* B, long ldb,
                     float* colsum, long run_len, long run_stride, const long* a_stride,
                     int accumulate)
    int rf_gemm_tn_d(int nsrc, const long* M, const double** A, const long* lda,
                     double** C, long ldc, const long* Ns, long K, const double* B,
                     long ldb, double* colsum, long run_len, long run_stride,
                     const long* a_stride, int accumulate)
    int rf_packed_dw_enabled()
    void rf_use_packed_dw(int on)


cdef inline void gemm_tn(int m1, const floating* a1, int lda1, floating* c1,
                         int m2, const floating* a2, int lda2, floating* c2,
                         int n, int k, const floating* b, int ldb, int ldc,
                         floating* colsum=NULL, int n2=-1, int run_len=0,
                         Py_ssize_t run_stride=0, bint accumulate=False,
                         Py_ssize_t run_stride2=-1) noexcept nogil:
    """Row-major C1 (m1, n) = A1^T @ B and, when m2 > 0, C2 (m2, n2) =
    A2^T @ B[:, :n2] (n2 <= n; -1: n), overwriting C1 and C2 (row stride
    ldc), or adding to them when accumulate, with A_s row-major (k, m_s) of
    row stride lda_s and B row-major (k, n) of row stride ldb.  The k rows
    may lie in runs of run_len (dividing k; 0: one run), run r from row r *
    run_stride on (a chunk of steps of each batch row), A2's from row r *
    run_stride2 on (-1: run_stride; RNN's chunk of h_prev).  colsum (n), unless
    NULL, gets B's column sums added (the bias gradient; the packed path
    takes them while it packs B, once for both products)."""
    cdef long M[2]
    cdef long lda[2]
    cdef long N[2]
    cdef long a_stride[2]
    cdef const floating* A[2]
    cdef floating* C[2]
    cdef int done
    cdef int nsrc = 2 if m2 > 0 else 1
    cdef Py_ssize_t i, j, r, row
    if n2 < 0:
        n2 = n
    if run_stride2 < 0:
        run_stride2 = run_stride
    if (run_len <= 0 or run_len >= k
            or (run_len == run_stride and run_len == run_stride2)):     # one run
        run_len, run_stride, run_stride2 = k, k, k
    # Below ~32 rows BLAS is faster: the packed path writes all of C per
    # chunk whatever k (float, 64 x 256 twice: k = 1 8 against 4 us, k = 8
    # 14 against 8, k = 32 38 against 26, k = 64 55 against 60).
    if rf_packed_dw_enabled() and k >= 32:
        M[0], M[1], lda[0], lda[1], N[0], N[1] = m1, m2, lda1, lda2, n, n2
        A[0], A[1], C[0], C[1] = a1, a2, c1, c2
        a_stride[0], a_stride[1] = run_stride, run_stride2
        if floating is float:
            done = rf_gemm_tn_f(nsrc, M, A, lda, C, ldc, N, k, b, ldb, colsum, run_len,
                                run_stride, a_stride, accumulate)
        else:
            done = rf_gemm_tn_d(nsrc, M, A, lda, C, ldc, N, k, b, ldb, colsum, run_len,
                                run_stride, a_stride, accumulate)
        if done:
            return
    # colsum as the packed path sums it: the call's rows by chunks of 512,
    # each chunk's sums added to colsum (a chunked backward calls this once
    # per chunk of steps; one float32 sequence over all N*T rows lost ~10x
    # more); few rows, or no memory: in one sequence
    cdef floating* part = NULL
    cdef Py_ssize_t pending = 0
    if colsum != NULL and k >= 32:
        part = <floating*> malloc(n * sizeof(floating))
        if part != NULL:
            memset(part, 0, n * sizeof(floating))
    for r in range(k // run_len if run_len > 0 else 1):
        row = r * run_stride
        gemm(True, False, m1, n, run_len, <floating> 1, a1 + row * lda1, lda1, b + row * ldb,
             ldb, <floating> (1 if accumulate or r > 0 else 0), c1, ldc)
        if m2 > 0:
            gemm(True, False, m2, n2, run_len, <floating> 1, a2 + r * run_stride2 * lda2, lda2,
                 b + row * ldb, ldb, <floating> (1 if accumulate or r > 0 else 0), c2, ldc)
        if colsum != NULL:
            for i in range(row, row + run_len):
                if part != NULL:
                    for j in range(n):
                        part[j] += b[i * ldb + j]
                    pending += 1
                    if pending == 512:
                        for j in range(n):
                            colsum[j] += part[j]
                        memset(part, 0, n * sizeof(floating))
                        pending = 0
                else:
                    for j in range(n):
                        colsum[j] += b[i * ldb + j]
    if part != NULL:
        for j in range(n):
            colsum[j] += part[j]
        free(part)
