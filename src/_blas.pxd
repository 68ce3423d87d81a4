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
