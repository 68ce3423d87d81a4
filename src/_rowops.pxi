# Element-wise and row loops of a training step outside the recurrent
# kernels, over rnnfast's threads (src/_rowops.h):
#   softmax_loss_grad dx = e * (f / z), dx[r, t] -= f  a softmax loss's gradient
#   scatter_add_rows  W[ids[i]] += rows[i]  an embedding's gradient
#   optimizer_step    an optimizer's step (rnnfast.optim), one pass
# NumPy ran each on one thread: the embedding's np.add.at at ~1.7 us a
# row, the optimizers' lines in 2-13 passes with temporaries of each
# param's size (docs/performance.md items 124, 126).  Each gives NumPy's bits (src/_rowops.h: what differs).  The
# caller checks layouts and falls back to NumPy for anything else; no
# output may overlap an input (the loops take restrict pointers).
#
# Included at the end of src/_rnn.pyx, as src/_affine.pxi is.
from _seq cimport rf_run_rows, RF_MAX_THREADS

cdef extern from "_rowops.h" nogil:
    void rf_scale_row_f(float* out, const float* e, float s, long n)
    void rf_scale_row_d(double* out, const double* e, double s, long n)
    void rf_add_row_f(float* y, const float* x, long n)
    void rf_add_row_d(double* y, const double* x, long n)
    void rf_sgd_step_f(float* p, const float* g, float lr, long n)
    void rf_sgd_step_d(double* p, const double* g, double lr, long n)
    void rf_axpy_step_f(float* p, const float* g, float a, long n)
    void rf_axpy_step_d(double* p, const double* g, double a, long n)
    double rf_sum_squares_f(const float* x, long n)
    double rf_sum_squares_d(const double* x, long n)
    void rf_momentum_step_f(float* p, const float* g, float* v, float mom, float lr,
                            int nesterov, long n)
    void rf_momentum_step_d(double* p, const double* g, double* v, double mom, double lr,
                            int nesterov, long n)
    void rf_rmsprop_step_f(float* p, const float* g, float* h, float rho, float c, float lr,
                           float eps, long n)
    void rf_rmsprop_step_d(double* p, const double* g, double* h, double rho, double c,
                           double lr, double eps, long n)
    void rf_adam_step_f(float* p, const float* g, float* m, float* v, float b1, float c1,
                        float b2, float c2, float step, float vc, float eps, int decay,
                        float shrink, long n)
    void rf_adam_step_d(double* p, const double* g, double* m, double* v, double b1,
                        double c1, double b2, double c2, double step, double vc, double eps,
                        int decay, double shrink, long n)

# Values enough to be worth waking a thread (as the softmax's), and the
# block of an optimizer step's split (64 KB of floats).
cdef enum:
    ROWOPS_SPLIT_VALUES = 1 << 17
    STEP_BLOCK = 1 << 14


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


cdef struct LossGradJob:
    void* dx                # (R, V)
    const void* e           # (R, V)
    const double* z         # (R,)
    const void* share       # (R,)
    const Py_ssize_t* cls   # (R,)
    double scale
    long V
    bint dbl


cdef void loss_grad_part(void* ctx, long r0, long r1, int part) noexcept nogil:
    cdef LossGradJob* j = <LossGradJob*> ctx
    cdef long r
    cdef Py_ssize_t t
    cdef float ff, sf
    cdef double fd
    for r in range(r0, r1):
        t = j.cls[r]
        if j.dbl:
            fd = (<const double*> j.share)[r] * j.scale
            rf_scale_row_d(<double*> j.dx + r * j.V, <const double*> j.e + r * j.V,
                           fd / j.z[r], j.V)
            if fd != 0 and 0 <= t < j.V:
                (<double*> j.dx)[r * j.V + t] = (<double*> j.dx)[r * j.V + t] - fd
        else:
            # each operand rounded to float first, as NumPy's float32 lines
            ff = (<const float*> j.share)[r] * <float> j.scale
            sf = ff / <float> j.z[r]
            rf_scale_row_f(<float*> j.dx + r * j.V, <const float*> j.e + r * j.V, sf, j.V)
            if ff != 0 and 0 <= t < j.V:
                (<float*> j.dx)[r * j.V + t] = (<float*> j.dx)[r * j.V + t] - ff


def softmax_loss_grad(const floating[:, ::1] e, const double[::1] z,
                      const floating[::1] share, const Py_ssize_t[::1] cls, double scale,
                      floating[:, ::1] dx):
    """A softmax cross-entropy's gradient from its forward's parts
    (softmax_loss_rows): for each row r, f = share[r] * scale and dx[r] =
    e[r] * (f / z[r]), then dx[r, cls[r]] -= f where f != 0 (scale and z
    rounded to e's type first: the bits of SoftmaxWithLoss.backward's NumPy
    lines).  Rows over rnnfast's threads; dx must not overlap e."""
    cdef LossGradJob job
    cdef long R = e.shape[0], V = e.shape[1]
    if (z.shape[0] != R or share.shape[0] != R or cls.shape[0] != R or dx.shape[0] != R
            or dx.shape[1] != V):
        raise ValueError(f"softmax_loss_grad: shapes e {(R, V)}, z {(z.shape[0],)}, "
                         f"share {(share.shape[0],)}, cls {(cls.shape[0],)}, "
                         f"dx {(dx.shape[0], dx.shape[1])} do not agree")
    if R == 0 or V == 0:
        return
    job.dx, job.e, job.z, job.share, job.cls = &dx[0, 0], &e[0, 0], &z[0], &share[0], &cls[0]
    job.scale, job.V, job.dbl = <floating> scale, V, floating is double
    cdef int t = rowops_threads(R * V, R)
    with nogil:
        rf_run_rows(loss_grad_part, &job, R, t)


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


# ------------------------------------------------------ optimizers' steps
cdef enum:
    STEP_SGD = 0
    STEP_MOMENTUM = 1
    STEP_NESTEROV = 2
    STEP_RMSPROP = 3
    STEP_ADAM = 4
    STEP_ADAMW = 5
    STEP_AXPY = 6

# kind -> (op, number of scalars)
_STEP_KINDS = {"sgd": (STEP_SGD, 1), "momentum": (STEP_MOMENTUM, 2),
               "nesterov": (STEP_NESTEROV, 2), "rmsprop": (STEP_RMSPROP, 4),
               "adam": (STEP_ADAM, 7), "adamw": (STEP_ADAMW, 8), "axpy": (STEP_AXPY, 1)}


cdef struct StepJob:
    int op
    void* p
    const void* g
    void* s1                # Momentum's v, RMSprop's h, Adam's m
    void* s2                # Adam's v
    double c[8]             # the step's scalars, in the C function's order
    long n
    bint dbl


cdef void optimizer_part(void* ctx, long b0, long b1, int part) noexcept nogil:
    cdef StepJob* j = <StepJob*> ctx
    cdef long i0 = b0 * STEP_BLOCK
    cdef long i1 = b1 * STEP_BLOCK if b1 * STEP_BLOCK < j.n else j.n
    cdef long n = i1 - i0
    cdef double* c = j.c
    if j.dbl:
        if j.op == STEP_SGD:
            rf_sgd_step_d(<double*> j.p + i0, <const double*> j.g + i0, c[0], n)
        elif j.op == STEP_AXPY:
            rf_axpy_step_d(<double*> j.p + i0, <const double*> j.g + i0, c[0], n)
        elif j.op == STEP_MOMENTUM or j.op == STEP_NESTEROV:
            rf_momentum_step_d(<double*> j.p + i0, <const double*> j.g + i0,
                               <double*> j.s1 + i0, c[0], c[1], j.op == STEP_NESTEROV, n)
        elif j.op == STEP_RMSPROP:
            rf_rmsprop_step_d(<double*> j.p + i0, <const double*> j.g + i0,
                              <double*> j.s1 + i0, c[0], c[1], c[2], c[3], n)
        else:
            rf_adam_step_d(<double*> j.p + i0, <const double*> j.g + i0, <double*> j.s1 + i0,
                           <double*> j.s2 + i0, c[0], c[1], c[2], c[3], c[4], c[5], c[6],
                           j.op == STEP_ADAMW, c[7], n)
    else:
        if j.op == STEP_SGD:
            rf_sgd_step_f(<float*> j.p + i0, <const float*> j.g + i0, <float> c[0], n)
        elif j.op == STEP_AXPY:
            rf_axpy_step_f(<float*> j.p + i0, <const float*> j.g + i0, <float> c[0], n)
        elif j.op == STEP_MOMENTUM or j.op == STEP_NESTEROV:
            rf_momentum_step_f(<float*> j.p + i0, <const float*> j.g + i0,
                               <float*> j.s1 + i0, <float> c[0], <float> c[1],
                               j.op == STEP_NESTEROV, n)
        elif j.op == STEP_RMSPROP:
            rf_rmsprop_step_f(<float*> j.p + i0, <const float*> j.g + i0,
                              <float*> j.s1 + i0, <float> c[0], <float> c[1], <float> c[2],
                              <float> c[3], n)
        else:
            rf_adam_step_f(<float*> j.p + i0, <const float*> j.g + i0, <float*> j.s1 + i0,
                           <float*> j.s2 + i0, <float> c[0], <float> c[1], <float> c[2],
                           <float> c[3], <float> c[4], <float> c[5], <float> c[6],
                           j.op == STEP_ADAMW, <float> c[7], n)


cdef int step_kind(str kind, tuple scalars, StepJob* job, str caller) except -1:
    """job.op and job.c from a kind and its scalars (optimizer_step's)."""
    cdef int count, i
    if kind not in _STEP_KINDS:
        raise ValueError(f"{caller}: kind must be one of {sorted(_STEP_KINDS)}, "
                         f"got {kind!r}")
    op, count = _STEP_KINDS[kind]
    job.op = op
    if len(scalars) != count:
        raise ValueError(f"{caller}: {kind} takes {count} scalars, got {len(scalars)}")
    for i in range(count):
        job.c[i] = scalars[i]
    return 0


cdef void run_step(StepJob* job) noexcept:
    """The step over job.n values, split in STEP_BLOCK blocks over the
    threads, without the GIL."""
    cdef long blocks = (job.n + STEP_BLOCK - 1) // STEP_BLOCK
    cdef int t = rowops_threads(job.n, blocks)
    with nogil:
        rf_run_rows(optimizer_part, job, blocks, t)


def optimizer_step(str kind, floating[::1] p, const floating[::1] g, floating[::1] s1,
                   floating[::1] s2, tuple scalars):
    """One optimizer's step over flat arrays in one pass, over rnnfast's
    threads (rnnfast.optim; src/_rowops.h gives each step's NumPy lines):
    kind "sgd" (scalars (lr,)), "axpy" (p += a * g; (a,)), "momentum" or
    "nesterov" (s1 = v; (momentum, lr)), "rmsprop" (s1 = h; (rho, 1 - rho,
    lr, eps); AdaGrad is rho = 1, 1 - rho = 1), "adam" (s1 = m, s2 = v; (b1,
    1 - b1, b2, 1 - b2, lr / (1 - b1^t), 1 - b2^t, eps)) or "adamw" (Adam's,
    and shrink = 1 - lr * weight_decay last: p *= shrink before Adam's
    step).  A state array the kind does not use is not touched (pass p).
    Each scalar is rounded to the arrays' type.  All arrays of one length;
    none that the kind uses may overlap another (restrict pointers)."""
    cdef StepJob job
    cdef long n = p.shape[0]
    step_kind(kind, scalars, &job, "optimizer_step")
    if g.shape[0] != n or s1.shape[0] != n or s2.shape[0] != n:
        raise ValueError(f"optimizer_step: lengths p {n}, g {g.shape[0]}, s1 {s1.shape[0]}, "
                         f"s2 {s2.shape[0]} differ")
    if n == 0:
        return
    job.p, job.g, job.s1, job.s2 = &p[0], &g[0], &s1[0], &s2[0]
    job.n, job.dbl = n, floating is double
    run_step(&job)


# kind -> how many state arrays its step uses
_STEP_STATES = {"sgd": 0, "axpy": 0, "momentum": 1, "nesterov": 1, "rmsprop": 1, "adam": 2,
                "adamw": 2}


cdef bint step_operand(object a, cnp.ndarray p, bint writeable) noexcept:
    """Whether `a` can go into p's step: an ndarray itself (no subclass, such
    as np.matrix, whose operators NumPy's lines would call), of p's dtype
    and shape, writeable if asked."""
    cdef cnp.ndarray b
    cdef int k
    if not cnp.PyArray_CheckExact(a):
        return False
    b = <cnp.ndarray> a
    if not (cnp.PyArray_ISNOTSWAPPED(b) and cnp.PyArray_ISALIGNED(b)):
        return False
    if cnp.PyArray_TYPE(b) != cnp.PyArray_TYPE(p) or cnp.PyArray_NDIM(b) != cnp.PyArray_NDIM(p):
        return False
    for k in range(cnp.PyArray_NDIM(p)):
        if cnp.PyArray_DIM(b, k) != cnp.PyArray_DIM(p, k):
            return False
    return not writeable or cnp.PyArray_ISWRITEABLE(b)


def optimizer_steps(str kind, params, grads, state, tuple scalars):
    """optimizer_step at each position i of params and grads, with the
    optimizer's state[i] (its tuple of state arrays: () for SGD, (v,) for
    Momentum, (m, v) for Adam), every array flat in its memory order; one
    call for a model's arrays, where the checks in Python cost more than a
    small array's step (docs/performance.md item 149).  Returns the list of
    the positions it left alone, for the caller's NumPy lines: where an
    array is not an ndarray itself of p's dtype (float32 or float64, in the
    machine's byte order, aligned) and shape, the arrays are not all C- or
    all F-contiguous, p or a state array is read-only, or two of them
    overlap in memory."""
    cdef StepJob job
    cdef Py_ssize_t i, j, k, count
    cdef cnp.ndarray p, a
    cdef bint c_order, f_order, ok
    cdef char* lo[4]
    cdef char* hi[4]
    step_kind(kind, scalars, &job, "optimizer_steps")
    cdef int states = _STEP_STATES[kind]
    if not len(params) == len(grads) == len(state):
        raise ValueError(f"optimizer_steps: lengths params {len(params)}, grads "
                         f"{len(grads)}, state {len(state)} differ")
    count = 2 + states
    left = []
    for i in range(len(params)):
        entry = state[i]
        ok = (cnp.PyArray_CheckExact(params[i]) and type(entry) is tuple
              and len(<tuple> entry) == states)
        if ok:
            p = <cnp.ndarray> params[i]
            ok = ((cnp.PyArray_TYPE(p) == cnp.NPY_FLOAT or cnp.PyArray_TYPE(p) == cnp.NPY_DOUBLE)
                  and step_operand(p, p, True) and step_operand(grads[i], p, False))
        if ok:
            operands = (p, grads[i]) + <tuple> entry
            c_order = f_order = True
            for j in range(count):
                if j >= 2 and not step_operand(operands[j], p, True):
                    ok = False
                    break
                a = <cnp.ndarray> operands[j]
                c_order = c_order and cnp.PyArray_IS_C_CONTIGUOUS(a)
                f_order = f_order and cnp.PyArray_IS_F_CONTIGUOUS(a)
                lo[j] = <char*> cnp.PyArray_DATA(a)
                hi[j] = lo[j] + cnp.PyArray_NBYTES(a)
            ok = ok and (c_order or f_order)
        if ok and cnp.PyArray_SIZE(p) > 0:
            # contiguous: each array is exactly its byte range
            for j in range(count):
                for k in range(j):
                    if lo[j] < hi[k] and lo[k] < hi[j]:
                        ok = False
        if not ok:
            left.append(i)
            continue
        job.n = cnp.PyArray_SIZE(p)
        if job.n == 0:
            continue
        job.dbl = cnp.PyArray_TYPE(p) == cnp.NPY_DOUBLE
        job.p, job.g = <void*> lo[0], <const void*> lo[1]
        job.s1 = <void*> (lo[2] if states >= 1 else lo[0])
        job.s2 = <void*> (lo[3] if states >= 2 else lo[0])
        run_step(&job)
    return left


def sum_squares(arrays):
    """The sum of the squares of every value of `arrays`, in double (a
    float32 square cannot overflow), one pass each, and the positions it
    left to the caller: arrays that are not float32 or float64 ndarrays in
    the machine's byte order, aligned and C- or F-contiguous (any order
    gives the same sum).  -> (sum, [positions left])."""
    cdef Py_ssize_t i
    cdef cnp.ndarray a
    cdef double total = 0
    cdef long n
    cdef int typenum
    left = []
    for i in range(len(arrays)):
        obj = arrays[i]
        ok = cnp.PyArray_Check(obj)
        if ok:
            a = <cnp.ndarray> obj
            typenum = cnp.PyArray_TYPE(a)
            ok = ((typenum == cnp.NPY_FLOAT or typenum == cnp.NPY_DOUBLE)
                  and cnp.PyArray_ISNOTSWAPPED(a) and cnp.PyArray_ISALIGNED(a)
                  and (cnp.PyArray_IS_C_CONTIGUOUS(a) or cnp.PyArray_IS_F_CONTIGUOUS(a)))
        if not ok:
            left.append(i)
            continue
        n = cnp.PyArray_SIZE(a)
        if typenum == cnp.NPY_FLOAT:
            with nogil:
                total += rf_sum_squares_f(<const float*> cnp.PyArray_DATA(a), n)
        else:
            with nogil:
                total += rf_sum_squares_d(<const double*> cnp.PyArray_DATA(a), n)
    return total, left


cdef bint same_view(cnp.ndarray a, cnp.ndarray b) noexcept:
    """a and b view exactly the same memory the same way: data pointer,
    shape, strides and dtype (type, size, byte order; both non-empty)."""
    cdef int k
    if (cnp.PyArray_DATA(a) != cnp.PyArray_DATA(b) or cnp.PyArray_NDIM(a) != cnp.PyArray_NDIM(b)
            or cnp.PyArray_TYPE(a) != cnp.PyArray_TYPE(b)
            or cnp.PyArray_ITEMSIZE(a) != cnp.PyArray_ITEMSIZE(b)
            or cnp.PyArray_ISNOTSWAPPED(a) != cnp.PyArray_ISNOTSWAPPED(b)):
        return False
    for k in range(cnp.PyArray_NDIM(a)):
        if (cnp.PyArray_DIM(a, k) != cnp.PyArray_DIM(b, k)
                or cnp.PyArray_STRIDE(a, k) != cnp.PyArray_STRIDE(b, k)):
            return False
    return True


def distinct_positions(arrays):
    """None when every array of `arrays` (ndarrays) is distinct; otherwise
    (firsts, repeats): the position of each distinct array's first listing
    and, for each, the positions of its later listings (the same object,
    or a view of exactly the same memory: pointer, shape, strides, dtype).
    Empty arrays are always distinct (they may share a pointer)."""
    cdef Py_ssize_t i, k, n = len(arrays)
    cdef list firsts = [], repeats = []
    for i in range(n):
        if not cnp.PyArray_Check(arrays[i]):
            raise TypeError(f"distinct_positions: arrays[{i}] is not a numpy array")
    for i in range(n):
        a = <cnp.ndarray> arrays[i]
        if cnp.PyArray_SIZE(a) > 0:
            for k in range(len(firsts)):
                b = <cnp.ndarray> arrays[<Py_ssize_t> firsts[k]]
                if cnp.PyArray_SIZE(b) > 0 and same_view(a, b):
                    (<list> repeats[k]).append(i)
                    break
            else:
                firsts.append(i)
                repeats.append([])
                continue
            continue
        firsts.append(i)
        repeats.append([])
    return None if len(firsts) == n else (firsts, repeats)
