# The softmax of each row of a loss's logits (rnnfast.losses.
# picked_log_softmax), rows over rnnfast's threads: e = exp(x - row max)
# and the row sums, two passes over each row (src/_cells.h,
# rf_softmax_row_f/_d) where NumPy made six over the whole array.  For a
# language model's 700 x 10,000 logits that array is 28 MB, past L2 and
# most of L3, so the passes were what the loss's time was (item 118).
#
# Included at the end of src/_rnn.pyx, as src/_affine.pxi is.
from _seq cimport rf_run_rows, RF_MAX_THREADS

cdef extern from "_cells.h" nogil:
    double rf_softmax_row_f(const float* x, float* e, long V, float* mx)
    double rf_softmax_row_d(const double* x, double* e, long V, double* mx)

# Rows enough to be worth waking a thread: 2^17 values (512 KB in float).
cdef enum:
    SOFTMAX_SPLIT_VALUES = 1 << 17


cdef struct SoftmaxJob:
    const void* x           # (R, V)
    void* e                 # (R, V)
    double* z               # (R,)
    void* mx                # (R,)
    long V
    bint dbl


cdef void softmax_part(void* ctx, long r0, long r1, int part) noexcept nogil:
    cdef SoftmaxJob* j = <SoftmaxJob*> ctx
    cdef long r
    for r in range(r0, r1):
        if j.dbl:
            j.z[r] = rf_softmax_row_d(<const double*> j.x + r * j.V, <double*> j.e + r * j.V,
                                      j.V, <double*> j.mx + r)
        else:
            j.z[r] = rf_softmax_row_f(<const float*> j.x + r * j.V, <float*> j.e + r * j.V,
                                      j.V, <float*> j.mx + r)


def softmax_rows(const floating[:, ::1] x, floating[:, ::1] e, double[::1] z,
                 floating[::1] mx):
    """e = exp(x - mx[:, None]), mx = x's row maxima, z = e's row sums (in
    double).  x, e (R, V) with V >= 1; z, mx (R,); no output may overlap
    x (the row function takes them as restrict pointers).  Shapes are
    checked here; values are not (the losses refuse NaN and Inf first)."""
    cdef SoftmaxJob job
    cdef long R = x.shape[0], V = x.shape[1]
    cdef long t = _blas_get_threads() if _blas_get_threads != NULL else 1
    if (V < 1 or e.shape[0] != R or e.shape[1] != V or z.shape[0] != R
            or mx.shape[0] != R):
        raise ValueError(f"softmax_rows: shapes x {(x.shape[0], x.shape[1])}, "
                         f"e {(e.shape[0], e.shape[1])}, z {(z.shape[0],)}, "
                         f"mx {(mx.shape[0],)} do not agree")
    if R == 0:
        return
    if t > RF_MAX_THREADS:
        t = RF_MAX_THREADS
    if t > R:
        t = R
    if R * V < SOFTMAX_SPLIT_VALUES * t:
        t = R * V // SOFTMAX_SPLIT_VALUES
    job.x, job.e, job.z, job.mx = &x[0, 0], &e[0, 0], &z[0], &mx[0]
    job.V, job.dbl = V, floating is double
    with nogil:
        rf_run_rows(softmax_part, &job, R, <int> (t if t > 1 else 1))
