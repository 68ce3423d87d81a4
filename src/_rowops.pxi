# Element-wise and row loops of a training step outside the recurrent
# kernels, over rnnfast's threads (src/_rowops.h):
#   sub_scaled        y -= a * x          an SGD step (rnnfast.optim.SGD)
#   scale_rows        out = e * s[:, None]  a softmax loss's gradient
#   scatter_add_rows  W[ids[i]] += rows[i]  an embedding's gradient
# NumPy ran each on one thread, the first with a temporary of the
# param's size, the last (np.add.at) at ~1.7 us a row; in a language
# model's step at 2 threads they were 4-5 ms of ~66 (docs/performance.md
# item 124).  Each gives NumPy's bits.  The caller checks layouts and
# falls back to NumPy for anything else; no output may overlap an input
# (the loops take restrict pointers).
#
# Included at the end of src/_rnn.pyx, as src/_affine.pxi is.
from _seq cimport rf_run_rows, RF_MAX_THREADS

cdef extern from "_rowops.h" nogil:
    void rf_sub_scaled_f(float* y, const float* x, float a, long n)
    void rf_sub_scaled_d(double* y, const double* x, double a, long n)
    void rf_scale_row_f(float* out, const float* e, float s, long n)
    void rf_scale_row_d(double* out, const double* e, double s, long n)
    void rf_add_row_f(float* y, const float* x, long n)
    void rf_add_row_d(double* y, const double* x, long n)

# Values enough to be worth waking a thread (as the softmax's), and the
# block of sub_scaled's split (64 KB of floats).
cdef enum:
    ROWOPS_SPLIT_VALUES = 1 << 17
    SUB_SCALED_BLOCK = 1 << 14


cdef inline int rowops_threads(long values, long parts) noexcept:
    """The threads for a loop over `values` values in `parts` parts: the
    BLAS thread count, at most one a part and one per ROWOPS_SPLIT_VALUES."""
    cdef long t = _blas_get_threads() if _blas_get_threads != NULL else 1
    if t > RF_MAX_THREADS:
        t = RF_MAX_THREADS
    if t > parts:
        t = parts
    if values < ROWOPS_SPLIT_VALUES * t:
        t = values // ROWOPS_SPLIT_VALUES
    return <int> (t if t > 1 else 1)


cdef struct RowJob:
    void* y                 # sub_scaled: y; scale_rows: out
    const void* x           # sub_scaled: x; scale_rows: e
    const void* s           # scale_rows: (R,) scales
    double a                # sub_scaled's a
    long n                  # sub_scaled: length; scale_rows: row length V
    bint dbl


cdef void sub_scaled_part(void* ctx, long b0, long b1, int part) noexcept nogil:
    cdef RowJob* j = <RowJob*> ctx
    cdef long i0 = b0 * SUB_SCALED_BLOCK
    cdef long i1 = b1 * SUB_SCALED_BLOCK if b1 * SUB_SCALED_BLOCK < j.n else j.n
    if j.dbl:
        rf_sub_scaled_d(<double*> j.y + i0, <const double*> j.x + i0, j.a, i1 - i0)
    else:
        rf_sub_scaled_f(<float*> j.y + i0, <const float*> j.x + i0, <float> j.a, i1 - i0)


def sub_scaled(floating[::1] y, const floating[::1] x, double a):
    """y -= a * x in place, a rounded to y's type first and each product
    to it before the subtraction (NumPy's `y -= a * x` for a Python float
    a).  y and x of one length; x must not overlap y."""
    cdef RowJob job
    cdef long n = y.shape[0]
    if x.shape[0] != n:
        raise ValueError(f"sub_scaled: lengths y {n}, x {x.shape[0]} differ")
    if n == 0:
        return
    job.y, job.x, job.a, job.n, job.dbl = &y[0], &x[0], a, n, floating is double
    cdef long blocks = (n + SUB_SCALED_BLOCK - 1) // SUB_SCALED_BLOCK
    cdef int t = rowops_threads(n, blocks)
    with nogil:
        rf_run_rows(sub_scaled_part, &job, blocks, t)


cdef void scale_rows_part(void* ctx, long r0, long r1, int part) noexcept nogil:
    cdef RowJob* j = <RowJob*> ctx
    cdef long r
    for r in range(r0, r1):
        if j.dbl:
            rf_scale_row_d(<double*> j.y + r * j.n, <const double*> j.x + r * j.n,
                           (<const double*> j.s)[r], j.n)
        else:
            rf_scale_row_f(<float*> j.y + r * j.n, <const float*> j.x + r * j.n,
                           (<const float*> j.s)[r], j.n)


def scale_rows(const floating[:, ::1] e, const floating[::1] s, floating[:, ::1] out):
    """out[r] = e[r] * s[r] for each row r of e (R, V); out (R, V) must not
    overlap e."""
    cdef RowJob job
    cdef long R = e.shape[0], V = e.shape[1]
    if s.shape[0] != R or out.shape[0] != R or out.shape[1] != V:
        raise ValueError(f"scale_rows: shapes e {(R, V)}, s {(s.shape[0],)}, "
                         f"out {(out.shape[0], out.shape[1])} do not agree")
    if R == 0 or V == 0:
        return
    job.y, job.x, job.s, job.n, job.dbl = &out[0, 0], &e[0, 0], &s[0], V, floating is double
    cdef int t = rowops_threads(R * V, R)
    with nogil:
        rf_run_rows(scale_rows_part, &job, R, t)


def scatter_add_rows(const Py_ssize_t[::1] ids, const floating[:, ::1] rows,
                     floating[:, ::1] W):
    """W[ids[i]] += rows[i] for i = 0, 1, ... in order (np.add.at(W, ids,
    rows)'s sums, in its order); every id is checked to lie in 0..V-1
    before W changes.  On this thread: R rows of D adds are little work.
    The loop reads each id once and checks it again: another thread may
    change ids once the GIL is released (an Embedding keeps the caller's
    array), and W must never be written out of bounds; such a change stops
    the loop with a RuntimeError, W then partly updated."""
    cdef Py_ssize_t R = ids.shape[0], D = W.shape[1], V = W.shape[0], i, bad = -1, k
    if rows.shape[0] != R or rows.shape[1] != D:
        raise ValueError(f"scatter_add_rows: shapes ids {(R,)}, rows "
                         f"{(rows.shape[0], rows.shape[1])}, W {(V, D)} do not agree")
    for i in range(R):
        if ids[i] < 0 or ids[i] >= V:
            bad = i
            break
    if bad >= 0:
        raise ValueError(f"scatter_add_rows: ids[{bad}] = {ids[bad]} is outside "
                         f"0..{V - 1}")
    if R == 0 or D == 0:
        return
    with nogil:
        for i in range(R):
            k = ids[i]
            if k < 0 or k >= V:
                bad = i
                break
            if floating is double:
                rf_add_row_d(&W[k, 0], &rows[i, 0], D)
            else:
                rf_add_row_f(&W[k, 0], &rows[i, 0], D)
    if bad >= 0:
        raise RuntimeError(f"scatter_add_rows: ids[{bad}] changed to {ids[bad]} during the "
                           f"call (outside 0..{V - 1}); W is partly updated")
