# The only door onto BLAS.  Every kernel calls BLAS through the inline,
# row-major, fused-type wrappers below; no other file cimports
# scipy.linalg.cython_blas.  SciPy's cython_blas takes plain `int` sizes
# (its .pxd defines no blas_int), so callers keep every size below 2**31;
# the Python layer checks that before any kernel runs.
from libc.string cimport memset
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv

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
    """
    cdef char ta = b'T' if trans_b else b'N'
    cdef char tb = b'T' if trans_a else b'N'
    cdef int one = 1
    cdef int incx
    if m <= 0 or n <= 0:
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
# at every step.  In float32 on a CPU with AVX2+FMA, that matrix is packed
# once per sequence and the steps run rnnfast's own micro-kernel
# (src/_gemm.h); otherwise (float64, other CPUs) they call BLAS as before.
from libc.stdlib cimport malloc, free

cdef extern from "_gemm.h" nogil:
    long rf_packed_size(long K, long N)
    void rf_pack_b_f(const float* B, long ldb, int trans, long K, long N, float* Bp)
    void rf_gemm_packed_f(long M, long N, long K, const float* A, long lda,
                          const float* Bp, float* C, long ldc, int accumulate)
    int rf_gemm_packed_supported()
    void rf_use_packed_gemm(int on)


cdef inline floating* pack_b(int m, bint trans_b, int k, int n, const floating* b,
                             int ldb) noexcept nogil:
    """op(B) (k, n) packed for gemm_packed with m-row left operands, or NULL
    when the packed path does not apply (the caller then passes NULL on and
    BLAS runs).  m = 0 asks for BLAS.  Free the result with free()."""
    cdef float* bp
    if (floating is double or not rf_gemm_packed_supported() or m < 1
            or k <= 0 or n <= 0):
        return NULL
    bp = <float*> malloc(rf_packed_size(k, n) * sizeof(float))
    if bp != NULL:
        rf_pack_b_f(<const float*> b, ldb, trans_b, k, n, bp)
    return <floating*> bp


cdef inline void gemm_packed(int m, int n, int k, const floating* a, int lda,
                             const floating* bp, bint trans_b, const floating* b,
                             int ldb, bint accumulate, floating* c,
                             int ldc) noexcept nogil:
    """Row-major C[m, n] = (accumulate ? C : 0) + A @ op(B), with op(B)
    either packed in bp (from pack_b) or, when bp is NULL, read from b by
    BLAS."""
    if m <= 0 or n <= 0:
        return
    if bp != NULL:
        if floating is float:
            rf_gemm_packed_f(m, n, k, a, lda, bp, c, ldc, accumulate)
        return
    gemm(False, trans_b, m, n, k, <floating> 1, a, lda, b, ldb,
         <floating> (1 if accumulate else 0), c, ldc)
