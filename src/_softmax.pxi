# The softmax of each row of a loss's logits (rnnfast.losses.
# picked_log_softmax), rows over rnnfast's threads: e = exp(x - row max)
# and the row sums, two passes over each row (src/_cells.h,
# rf_softmax_row_f/_d) where NumPy made six over the whole array.  For a
# language model's 700 x 10,000 logits that array is 28 MB, past L2 and
# most of L3, so the passes were what the loss's time was (item 118).
#
# softmax_loss_rows adds a softmax cross-entropy's targets to the same pass
# (their check, the picked logit), so that a small batch's loss is one call
# instead of a dozen NumPy operations (docs/performance.md item 151).
#
# Included at the end of src/_rnn.pyx, as src/_affine.pxi is.
from libc.math cimport INFINITY, NAN, ceil
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from _seq cimport rf_run_rows, RF_MAX_THREADS

cdef extern from "_cells.h" nogil:
    double rf_softmax_row_f(const float* x, float* e, long V, float* mx)
    double rf_softmax_row_d(const double* x, double* e, long V, double* mx)
    void rf_scaled_row_f(const float* x, double* out, long V, double t)
    void rf_scaled_row_d(const double* x, double* out, long V, double t)

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


cdef int softmax_threads(long R, long V) noexcept:
    """The threads for R rows of V values: the BLAS thread count, at most
    one a row and one per SOFTMAX_SPLIT_VALUES."""
    cdef long t = _blas_get_threads() if _blas_get_threads != NULL else 1
    if t > RF_MAX_THREADS:
        t = RF_MAX_THREADS
    if t > R:
        t = R
    if R * V < SOFTMAX_SPLIT_VALUES * t:
        t = R * V // SOFTMAX_SPLIT_VALUES
    return <int> (t if t > 1 else 1)


def softmax_rows(const floating[:, ::1] x, floating[:, ::1] e, double[::1] z,
                 floating[::1] mx):
    """e = exp(x - mx[:, None]), mx = x's row maxima, z = e's row sums (in
    double).  x, e (R, V) with V >= 1; z, mx (R,); no output may overlap
    x (the row function takes them as restrict pointers).  Shapes are
    checked here; values are not: z[r] is NaN for a row r that holds a NaN
    or Inf (a finite row's sum is 1..V), which is the losses' check."""
    cdef SoftmaxJob job
    cdef long R = x.shape[0], V = x.shape[1]
    if (V < 1 or e.shape[0] != R or e.shape[1] != V or z.shape[0] != R
            or mx.shape[0] != R):
        raise ValueError(f"softmax_rows: shapes x {(x.shape[0], x.shape[1])}, "
                         f"e {(e.shape[0], e.shape[1])}, z {(z.shape[0],)}, "
                         f"mx {(mx.shape[0],)} do not agree")
    if R == 0:
        return
    cdef int t = softmax_threads(R, V)
    job.x, job.e, job.z, job.mx = &x[0, 0], &e[0, 0], &z[0], &mx[0]
    job.V, job.dbl = V, floating is double
    with nogil:
        rf_run_rows(softmax_part, &job, R, t)


def first_bad_class_id(const Py_ssize_t[::1] ts, Py_ssize_t num_classes,
                       Py_ssize_t ignore_label):
    """The first position i of ts with ts[i] neither in 0..num_classes-1
    nor equal to ignore_label, or -1 (rnnfast._validation.check_int_targets;
    NumPy's test made four passes and three temporaries, ~4 us a call at a
    small batch)."""
    cdef Py_ssize_t i, t
    for i in range(ts.shape[0]):
        t = ts[i]
        if t != ignore_label and (t < 0 or t >= num_classes):
            return i
    return -1


cdef struct LossRowsJob:
    const void* x           # (R, V)
    void* e                 # (R, V)
    double* z               # (R,)
    double* picked          # (R,): x[r, t] in, x[r, t] - row max out
    const void* share       # (R,): 0 where the row does not count
    long V
    bint dbl


cdef void loss_rows_part(void* ctx, long r0, long r1, int part) noexcept nogil:
    cdef LossRowsJob* j = <LossRowsJob*> ctx
    cdef long r
    cdef float mf
    cdef double md
    for r in range(r0, r1):
        if j.dbl:
            j.z[r] = rf_softmax_row_d(<const double*> j.x + r * j.V, <double*> j.e + r * j.V,
                                      j.V, &md)
            if (<const double*> j.share)[r] != 0:
                j.picked[r] = j.picked[r] - md
        else:
            j.z[r] = rf_softmax_row_f(<const float*> j.x + r * j.V, <float*> j.e + r * j.V,
                                      j.V, &mf)
            if (<const float*> j.share)[r] != 0:
                j.picked[r] = j.picked[r] - <double> mf


def softmax_loss_rows(const floating[:, ::1] x, const Py_ssize_t[::1] ts,
                      Py_ssize_t ignore_label, floating[:, ::1] e, double[::1] z,
                      double[::1] picked, floating[::1] share, Py_ssize_t[::1] cls):
    """A softmax cross-entropy's forward over the rows of x (R, V), V >= 1,
    with targets ts (R,): first every target is checked (in 0..V-1, or
    ignore_label: the row does not count); then, as softmax_rows, e = exp(x
    - row max) and z = e's row sums (double), and for each row r whose
    target t counts picked[r] = x[r, t] - row max (in double: log p =
    picked - log z, NumPy's bits for that line), share[r] = 1 and cls[r] =
    t; share[r] = 0, cls[r] = 0 and picked[r] = 0 for a row that does not
    count; z[r] is NaN for a row r that holds a NaN or Inf (the loss's
    check of its logits).  Returns the number of rows that count, or -1 - i
    for the first position i of a target out of range (e, z, picked, share
    and cls are then not all written).  Each target is read once, before the GIL is
    released: cls is the copy the backward reads (softmax_loss_grad).  No
    output may overlap x."""
    cdef LossRowsJob job
    cdef Py_ssize_t R = x.shape[0], V = x.shape[1], r, t, counted = 0
    if (V < 1 or ts.shape[0] != R or e.shape[0] != R or e.shape[1] != V
            or z.shape[0] != R or picked.shape[0] != R or share.shape[0] != R
            or cls.shape[0] != R):
        raise ValueError(f"softmax_loss_rows: shapes x {(R, V)}, ts {(ts.shape[0],)}, "
                         f"e {(e.shape[0], e.shape[1])}, z {(z.shape[0],)}, "
                         f"picked {(picked.shape[0],)}, share {(share.shape[0],)}, "
                         f"cls {(cls.shape[0],)} do not agree")
    for r in range(R):
        t = ts[r]
        if t == ignore_label:
            share[r], cls[r], picked[r] = 0, 0, 0.0
        elif 0 <= t < V:
            share[r], cls[r], picked[r] = 1, t, <double> x[r, t]
            counted += 1
        else:
            return -1 - r
    if R == 0:
        return 0
    job.x, job.e, job.z, job.picked, job.share = &x[0, 0], &e[0, 0], &z[0], &picked[0], &share[0]
    job.V, job.dbl = V, floating is double
    cdef int threads = softmax_threads(R, V)
    with nogil:
        rf_run_rows(loss_rows_part, &job, R, threads)
    return counted


# Rows a pass of inverse_cdf_rows takes at once.  A row's running sum is
# one chain of dependent additions (its order is what makes the ids those
# of np.cumsum): 4 cycles a value on one row.  Eight rows' chains are
# independent, so the core adds them side by side (docs/performance.md
# item 178).
cdef enum:
    CDF_LANES = 8


cdef inline Py_ssize_t cdf_row(const double* row, Py_ssize_t V, double r) noexcept nogil:
    """The first j whose running sum of row[0..j] exceeds r * the row's
    total; V - 1 when none does, 0 when that u is NaN."""
    cdef double total = 0, u, s = 0
    cdef Py_ssize_t j
    for j in range(V):
        total = total + row[j]
    u = r * total
    if u != u:                          # NaN: no c <= u holds
        return 0
    for j in range(V):
        s = s + row[j]
        if s > u:
            return j
    return V - 1


cdef void cdf_lanes(const double* p, Py_ssize_t V, const double* r,
                    Py_ssize_t* out) noexcept nogil:
    """cdf_row for CDF_LANES rows of p (V apart) at once: the same
    additions in the same order for each row, its lane's."""
    cdef double total[CDF_LANES]
    cdef double s[CDF_LANES]
    cdef double u[CDF_LANES]
    cdef Py_ssize_t j, lane, left = 0
    cdef bint past
    for lane in range(CDF_LANES):
        total[lane] = 0
        s[lane] = 0
        out[lane] = V - 1
    for j in range(V):
        for lane in range(CDF_LANES):
            total[lane] = total[lane] + p[lane * V + j]
    for lane in range(CDF_LANES):
        u[lane] = r[lane] * total[lane]
        if u[lane] != u[lane]:          # NaN: no running sum exceeds it
            out[lane] = 0
        else:
            left += 1
    j = 0
    while left and j < V:
        past = False
        for lane in range(CDF_LANES):
            s[lane] = s[lane] + p[lane * V + j]
            past = past | (s[lane] > u[lane])
        if past:
            for lane in range(CDF_LANES):
                if s[lane] > u[lane]:
                    out[lane] = j
                    u[lane] = INFINITY  # found: this lane's first j stays
                    left -= 1
        j += 1


cdef struct CdfJob:
    const double* p         # (R, V)
    const double* r         # (R,)
    Py_ssize_t* out         # (R,)
    Py_ssize_t V


cdef void cdf_part(void* ctx, long r0, long r1, int part) noexcept nogil:
    """Rows r0..r1 - 1 of an inverse_cdf_rows call, eight at a time."""
    cdef CdfJob* job = <CdfJob*> ctx
    cdef Py_ssize_t i = r0, V = job.V
    while i + CDF_LANES <= r1:
        cdf_lanes(job.p + i * V, V, job.r + i, job.out + i)
        i += CDF_LANES
    while i < r1:
        job.out[i] = cdf_row(job.p + i * V, V, job.r[i])
        i += 1


def inverse_cdf_rows(const double[:, ::1] p, const double[::1] r, Py_ssize_t[::1] out):
    """out[i] = the first j whose running sum p[i, 0] + ... + p[i, j] exceeds
    u = r[i] * (the row's whole running sum), or V - 1 when none does; 0
    when u is NaN.  For p >= 0 (or NaN) and r in [0, 1): bitwise what
    np.minimum((c <= r[:, None] * c[:, -1:]).sum(axis=1), V - 1) gives with
    c = np.cumsum(p, axis=1), whose sums are these, added in the same order
    (a cumulative sum never decreases, so the count of c <= u is the first
    j past u), without the (R, V) array of c and the count's pass over it:
    rnnfast.models.lm's sampling by inverse CDF (np.cumsum took 3.5 ns a
    value).  Rows over threads as softmax_rows's.  Shapes are checked here,
    values are not."""
    cdef CdfJob job
    cdef Py_ssize_t R = p.shape[0], V = p.shape[1]
    if V < 1 or r.shape[0] != R or out.shape[0] != R:
        raise ValueError(f"inverse_cdf_rows: shapes p {(p.shape[0], p.shape[1])}, "
                         f"r {(r.shape[0],)}, out {(out.shape[0],)} do not agree "
                         "(p needs V >= 1 columns)")
    if R == 0:
        return
    job.p, job.r, job.out, job.V = &p[0, 0], &r[0], &out[0], V
    cdef int t = softmax_threads(R, V)
    with nogil:
        rf_run_rows(cdf_part, &job, R, t)


cdef struct ScaledJob:
    const void* x           # (R, V), float or double
    double* out             # (R, V)
    Py_ssize_t V
    double t
    bint dbl


cdef void scaled_part(void* ctx, long r0, long r1, int part) noexcept nogil:
    cdef ScaledJob* job = <ScaledJob*> ctx
    cdef long i
    for i in range(r0, r1):
        if job.dbl:
            rf_scaled_row_d(<const double*> job.x + i * job.V, job.out + i * job.V, job.V, job.t)
        else:
            rf_scaled_row_f(<const float*> job.x + i * job.V, job.out + i * job.V, job.V, job.t)


def scaled_logits_rows(const floating[:, ::1] x, double temperature, double[:, ::1] out):
    """out = (x - x.max(axis=1, keepdims=True)) / temperature, in double:
    what NumPy gives for x cast to float64, bitwise but for the sign of a
    zero where a row's max is -0 or 0 (its exp is 1 either way), in two
    passes over each row, without NumPy's cast and the three (R, V) arrays
    of the cast, the difference and the quotient (src/_cells_impl.h,
    rf_scaled_row): rnnfast.models.lm's sampling (docs/performance.md item
    178).  A row with a NaN gives NaN, a row all -inf NaN, a quotient past
    the double range -inf.  out must not overlap x (the row function takes
    them as restrict pointers).  Rows over threads as softmax_rows's.
    Shapes are checked here, values are not."""
    cdef ScaledJob job
    cdef Py_ssize_t R = x.shape[0], V = x.shape[1]
    if V < 1 or out.shape[0] != R or out.shape[1] != V:
        raise ValueError(f"scaled_logits_rows: shapes x {(x.shape[0], x.shape[1])} and out "
                         f"{(out.shape[0], out.shape[1])} differ (x needs V >= 1 columns)")
    if R == 0:
        return
    job.x, job.out, job.V, job.t, job.dbl = &x[0, 0], &out[0, 0], V, temperature, \
        floating is double
    cdef int t = softmax_threads(R, V)
    with nogil:
        rf_run_rows(scaled_part, &job, R, t)


# ------------------------------------------------------------ nucleus
# Top-p sampling keeps each row's likeliest tokens, in order, while the
# mass before a token falls short of top_p x the row's.  NumPy sorted whole
# rows for it (a stable argsort: 49 of the 60 ms a step of a 64 x 10,000
# generate).  Only the cut matters: a selection by mass finds its value,
# and how many of the tokens equal to it are kept, in a few passes over a
# shrinking copy of the row (docs/performance.md item 181).

cdef inline floating median3(floating a, floating b, floating c) noexcept nogil:
    if a > b:
        a, b = b, a
    if b > c:
        b = c
    return a if a > b else b


cdef inline double lane_sum(const double* w, Py_ssize_t n, double x) noexcept nogil:
    """The sum of the values of w[:n] above x (every value, NaNs too, for x
    NaN), in four interleaved sums: one running sum is a chain of dependent
    additions, 4 cycles a value."""
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef Py_ssize_t i = 0
    if x != x:
        while i + 4 <= n:
            s0 = s0 + w[i]
            s1 = s1 + w[i + 1]
            s2 = s2 + w[i + 2]
            s3 = s3 + w[i + 3]
            i += 4
        while i < n:
            s0 = s0 + w[i]
            i += 1
        return (s0 + s1) + (s2 + s3)
    while i + 4 <= n:
        s0 = s0 + (w[i] if w[i] > x else 0.0)
        s1 = s1 + (w[i + 1] if w[i + 1] > x else 0.0)
        s2 = s2 + (w[i + 2] if w[i + 2] > x else 0.0)
        s3 = s3 + (w[i + 3] if w[i + 3] > x else 0.0)
        i += 4
    while i < n:
        s0 = s0 + (w[i] if w[i] > x else 0.0)
        i += 1
    return (s0 + s1) + (s2 + s3)


cdef inline Py_ssize_t compact(floating* work, Py_ssize_t n, floating x,
                               bint above) noexcept nogil:
    """The candidates above x (above) or below it, moved to the front;
    returns how many.  Written without branches on the values (each store
    made, the index moved by the comparison): their order is random, and
    mispredicted branches made the passes several times slower."""
    cdef Py_ssize_t i, k = 0
    cdef floating w
    if above:
        for i in range(n):
            w = work[i]
            work[k] = w
            k += w > x
    else:
        for i in range(n):
            w = work[i]
            work[k] = w
            k += w < x
    return k


cdef void nucleus_row(double* p, double* work, Py_ssize_t V, double top_p) noexcept nogil:
    """Sets to 0 all of row p (V values >= 0) but its nucleus: the tokens
    above the cut value, then those equal to it in index order while the
    mass before each, in descending order, is under top_p x the row's.
    work: V doubles of scratch.  A row with a NaN becomes all 0, as the
    sorted version's comparisons with a NaN mass made it.

    A selection by mass: `above` is the mass of the tokens known to be
    kept, all larger than every candidate left in work[:n].  Each round
    splits the candidates at a pivot x into those above it (sum sG), equal
    (nE) and below.  If above + sG reaches the cut, the first token equal
    to x is not kept: on with those above x.  Otherwise, if above + sG +
    nE x reaches it (or nothing is below x), the cut is among the tokens
    equal to x.  Otherwise all down to x are kept: on with those below."""
    cdef Py_ssize_t n = V, i, nG, nE, need
    cdef double total, thr, above = 0, x, sG, q, w
    memcpy(work, p, V * sizeof(double))
    total = lane_sum(work, V, NAN)      # every value, a NaN too
    thr = top_p * total
    if not thr > 0:                     # NaN (or no mass): nothing is kept
        for i in range(V):
            p[i] = 0
        return
    while True:
        x = median3(work[0], work[n // 2], work[n - 1])
        sG = lane_sum(work, n, x)
        nG = nE = 0
        for i in range(n):
            w = work[i]
            nG += w > x
            nE += w == x
        if above + sG >= thr:
            n = compact(work, n, x, True)
        elif above + sG + nE * x >= thr or nG + nE == n:
            # the j-th token equal to x is kept while above + sG + j x < thr
            if x > 0:
                q = (thr - above - sG) / x
                need = <Py_ssize_t> ceil(q) if q < nE else nE
            else:
                need = nE
            break
        else:
            above = above + sG + nE * x
            n = compact(work, n, x, False)
    for i in range(V):
        if p[i] < x:
            p[i] = 0
        elif p[i] == x:
            if need > 0:
                need -= 1
            else:
                p[i] = 0


cdef struct NucleusJob:
    double* p               # (R, V)
    Py_ssize_t V
    double top_p
    bint failed


cdef void nucleus_part(void* ctx, long r0, long r1, int part) noexcept nogil:
    cdef NucleusJob* job = <NucleusJob*> ctx
    cdef double* work = <double*> malloc(job.V * sizeof(double))
    cdef long i
    if work == NULL:
        job.failed = True
        return
    for i in range(r0, r1):
        nucleus_row(job.p + i * job.V, work, job.V, job.top_p)
    free(work)


def nucleus_rows(double[:, ::1] p, double top_p):
    """Each row of p (R, V, unnormalised probabilities >= 0) with all but
    its nucleus set to 0, in place: its likeliest tokens, in descending
    order and ties in index order (a stable sort's), while the mass before
    a token is under top_p (in (0, 1]) x the row's.  What sorting each row
    and summing it in that order gives, found by selection instead: the
    sums are added in another order, so a token whose preceding mass
    rounds onto the cut can go the other way.  A row with a NaN becomes
    all 0; top_p = 1 changes nothing.  Rows over threads as softmax_rows's (rnnfast.models.lm's
    top_p; docs/performance.md item 181)."""
    cdef NucleusJob job
    cdef Py_ssize_t R = p.shape[0], V = p.shape[1]
    if not 0 < top_p <= 1:
        raise ValueError(f"nucleus_rows: top_p must be in (0, 1], got {top_p!r}")
    if R == 0 or V == 0 or top_p == 1:     # 1: every token is kept
        return
    job.p, job.V, job.top_p, job.failed = &p[0, 0], V, top_p, False
    cdef int t = softmax_threads(R, V)
    with nogil:
        rf_run_rows(nucleus_part, &job, R, t)
    if job.failed:
        raise MemoryError(f"nucleus_rows: no scratch of {V} doubles")


# -------------------------------------------------------------- top-k
# top_k masks the logits below each row's k-th largest; np.partition found
# it (5.6 ms a step of a 64 x 10,000 generate).  A selection by count
# finds the same value (a value, so no rounding: bitwise the same mask);
# NaNs count as the largest, as np.partition sorts them last
# (docs/performance.md item 182).

cdef floating kth_largest(floating* work, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """The k-th largest (1 <= k <= n) of work[:n], no NaN among them;
    work is scratch."""
    cdef Py_ssize_t i, nG, nE, m
    cdef floating x, w
    while True:
        x = median3(work[0], work[n // 2], work[n - 1])
        nG = nE = 0
        for i in range(n):
            w = work[i]
            nG += w > x
            nE += w == x
        if k <= nG:
            n = compact(work, n, x, True)
        elif k <= nG + nE:
            return x
        else:
            k -= nG + nE
            n = compact(work, n, x, False)


cdef void top_k_row(floating* z, floating* work, Py_ssize_t V, Py_ssize_t k) noexcept nogil:
    """z's values below its k-th largest set to -inf, in place (NaNs the
    largest: k of them or more mask nothing, as z < NaN never holds)."""
    cdef Py_ssize_t i, n = 0
    cdef floating kth
    for i in range(V):
        work[n] = z[i]
        n += z[i] == z[i]               # the NaNs left out
    if k > V - n:
        kth = kth_largest(work, n, k - (V - n))
        for i in range(V):
            if z[i] < kth:
                z[i] = -INFINITY


cdef struct TopKJob:
    void* z                 # (R, V)
    Py_ssize_t V, k
    bint dbl
    bint failed


cdef void top_k_part(void* ctx, long r0, long r1, int part) noexcept nogil:
    cdef TopKJob* job = <TopKJob*> ctx
    cdef void* work = malloc(job.V * (sizeof(double) if job.dbl else sizeof(float)))
    cdef long i
    if work == NULL:
        job.failed = True
        return
    for i in range(r0, r1):
        if job.dbl:
            top_k_row(<double*> job.z + i * job.V, <double*> work, job.V, job.k)
        else:
            top_k_row(<float*> job.z + i * job.V, <float*> work, job.V, job.k)
    free(work)


def top_k_rows(floating[:, ::1] z, Py_ssize_t k):
    """Each row of z (R, V) with its values below its k-th largest (1 <= k
    <= V) set to -inf, in place: bitwise what z[z < np.partition(z, -k,
    axis=1)[:, -k:-k+1]] = -inf does (NaNs count as the largest, as
    np.partition sorts them last), by a selection on a copy of each row.
    Rows over threads as softmax_rows's (rnnfast.models.lm's top_k;
    docs/performance.md item 182)."""
    cdef TopKJob job
    cdef Py_ssize_t R = z.shape[0], V = z.shape[1]
    if not 1 <= k <= V:
        raise ValueError(f"top_k_rows: k must be in 1..{V} (z has shape {(R, V)}), got {k}")
    if R == 0:
        return
    job.z, job.V, job.k, job.dbl, job.failed = &z[0, 0], V, k, floating is double, False
    cdef int t = softmax_threads(R, V)
    with nogil:
        rf_run_rows(top_k_part, &job, R, t)
    if job.failed:
        raise MemoryError(f"top_k_rows: no scratch of {V} values")
