/* Element-wise loops of a training step outside the recurrent kernels
 * (src/_rowops.pxi): the optimizers' steps, a softmax loss's gradient
 * rows and an embedding's gradient.  Each gives the bits
 * NumPy's expression gives: the same operations, rounded in the same
 * order, so the compiled path and NumPy's are interchangeable
 * (tests/test_rowops.py).  Hence no FMA contraction here: `y - a * x`
 * contracted would round once, NumPy's `y -= a * x` rounds the product
 * first.  Two things differ: which NaN an operation on two NaNs returns
 * (GCC may swap an addition's operands, and x86 returns the first), and
 * the floating-point warnings NumPy would give (rnnfast.optim runs its
 * NumPy lines instead when errors are to raise). */
#ifndef RF_ROWOPS_H
#define RF_ROWOPS_H

#include "_cells.h"     /* RF_PASS: the SSE2 / AVX2 / AVX-512 clones */

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
/* clang: contraction off inside each function body (block scope). */
#if defined(__clang__)
#define RF_NO_CONTRACT _Pragma("clang fp contract(off)")
#else
#define RF_NO_CONTRACT
#endif

/* out[0:n] = e[0:n] * s */
static void rf_scale_row_f(float* restrict out, const float* restrict e, float s, long n)
{
    for (long i = 0; i < n; i++)
        out[i] = e[i] * s;
}

static void rf_scale_row_d(double* restrict out, const double* restrict e, double s, long n)
{
    for (long i = 0; i < n; i++)
        out[i] = e[i] * s;
}

/* y[0:n] += x[0:n] */
static void rf_add_row_f(float* restrict y, const float* restrict x, long n)
{
    for (long i = 0; i < n; i++)
        y[i] = y[i] + x[i];
}

static void rf_add_row_d(double* restrict y, const double* restrict x, long n)
{
    for (long i = 0; i < n; i++)
        y[i] = y[i] + x[i];
}

/* The optimizers' steps (rnnfast.optim), one pass each where NumPy made
 * 5-13 passes and temporaries; every operation rounded in NumPy's order
 * (the comments give the NumPy lines, each scalar rounded to T first).
 * Cloned as the cells' passes are (RF_PASS): the square roots and
 * divisions are what these loops' time is at 1 thread; contraction stays
 * off in the FMA-capable clones too (the pragma above). */
#define RF_DEFINE_OPTIMIZER_STEPS(T, S, SQRT)                                   \
/* p -= lr * g (SGD) */                                                         \
RF_PASS void rf_sgd_step_##S(T* restrict p, const T* restrict g, T lr, long n)  \
{                                                                               \
    RF_NO_CONTRACT                                                              \
    for (long i = 0; i < n; i++) {                                              \
        T step = lr * g[i];                                                     \
        p[i] = p[i] - step;                                                     \
    }                                                                           \
}                                                                               \
/* p += a * g (an L2 penalty's gradient, g += alpha * w, with the grad as p)    \
 */                                                                             \
RF_PASS void rf_axpy_step_##S(T* restrict p, const T* restrict g, T a, long n)  \
{                                                                               \
    RF_NO_CONTRACT                                                              \
    for (long i = 0; i < n; i++) {                                              \
        T term = a * g[i];                                                      \
        p[i] = p[i] + term;                                                     \
    }                                                                           \
}                                                                               \
/* v *= mom; v -= lr * g; then p += v (Momentum) or, nesterov,                  \
 * p += mom * v - lr * g */                                                     \
RF_PASS void rf_momentum_step_##S(T* restrict p, const T* restrict g,           \
                                  T* restrict v, T mom, T lr, int nesterov,     \
                                  long n)                                       \
{                                                                               \
    RF_NO_CONTRACT                                                              \
    for (long i = 0; i < n; i++) {                                              \
        T vi = v[i] * mom;                                                      \
        T step = lr * g[i];                                                     \
        vi = vi - step;                                                         \
        v[i] = vi;                                                              \
        T ahead = mom * vi;                                                     \
        p[i] = p[i] + (nesterov ? ahead - step : vi);                           \
    }                                                                           \
}                                                                               \
/* h *= rho; h += c * g * g; p -= lr * g / (sqrt(h) + eps), c = 1 - rho         \
 * (RMSprop; AdaGrad's h += g * g with rho = c = 1, exactly so) */              \
RF_PASS void rf_rmsprop_step_##S(T* restrict p, const T* restrict g,            \
                                 T* restrict h, T rho, T c, T lr, T eps, long n)\
{                                                                               \
    RF_NO_CONTRACT                                                              \
    for (long i = 0; i < n; i++) {                                              \
        T hi = h[i] * rho;                                                      \
        T gg = c * g[i];                                                        \
        gg = gg * g[i];                                                         \
        hi = hi + gg;                                                           \
        h[i] = hi;                                                              \
        T num = lr * g[i];                                                      \
        T den = SQRT(hi) + eps;                                                 \
        p[i] = p[i] - num / den;                                                \
    }                                                                           \
}                                                                               \
/* m *= b1; m += c1 * g; v *= b2; v += c2 * g * g;                              \
 * p -= step * m / (sqrt(v / vc) + eps), c1 = 1 - b1, c2 = 1 - b2,             \
 * step = lr / (1 - b1^t), vc = 1 - b2^t (Adam); when decay, p *= shrink       \
 * first (AdamW's p *= 1 - lr * weight_decay, rounded as its own pass was) */   \
RF_PASS void rf_adam_step_##S(T* restrict p, const T* restrict g,                \
                             T* restrict m, T* restrict v, T b1, T c1, T b2,    \
                             T c2, T step, T vc, T eps, int decay, T shrink,    \
                             long n)                                            \
{                                                                               \
    RF_NO_CONTRACT                                                              \
    for (long i = 0; i < n; i++) {                                              \
        T mi = m[i] * b1;                                                       \
        T t1 = c1 * g[i];                                                       \
        mi = mi + t1;                                                           \
        m[i] = mi;                                                              \
        T vi = v[i] * b2;                                                       \
        T t2 = c2 * g[i];                                                       \
        t2 = t2 * g[i];                                                         \
        vi = vi + t2;                                                           \
        v[i] = vi;                                                              \
        T num = step * mi;                                                      \
        T den = SQRT(vi / vc) + eps;                                            \
        T pi = p[i];                                                            \
        if (decay)                                                              \
            pi = pi * shrink;                                                   \
        p[i] = pi - num / den;                                                  \
    }                                                                           \
}

RF_DEFINE_OPTIMIZER_STEPS(float, f, __builtin_sqrtf)
RF_DEFINE_OPTIMIZER_STEPS(double, d, __builtin_sqrt)
#undef RF_DEFINE_OPTIMIZER_STEPS

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif
#undef RF_NO_CONTRACT

/* The sum of x[i]^2 in double (no float32 square overflows), for a norm:
 * not NumPy's bits (no line here gives them), so contraction may fuse the
 * square into the sum.  32 partial sums: four vectors of AVX-512 doubles,
 * enough to hide the additions' latency; the values stream from memory
 * at the rate BLAS's float dot reads them. */
#define RF_DEFINE_SUM_SQUARES(T, S)                                             \
RF_PASS double rf_sum_squares_##S(const T* restrict x, long n)                   \
{                                                                               \
    double s[32];                                                               \
    for (int k = 0; k < 32; k++)                                                \
        s[k] = 0;                                                               \
    long i = 0;                                                                 \
    for (; i + 32 <= n; i += 32)                                                \
        for (int k = 0; k < 32; k++) {                                          \
            double v = (double) x[i + k];                                       \
            s[k] += v * v;                                                      \
        }                                                                       \
    double total = 0;                                                           \
    for (; i < n; i++) {                                                        \
        double v = (double) x[i];                                               \
        total += v * v;                                                         \
    }                                                                           \
    for (int k = 0; k < 32; k++)                                                \
        total += s[k];                                                          \
    return total;                                                               \
}

RF_DEFINE_SUM_SQUARES(float, f)
RF_DEFINE_SUM_SQUARES(double, d)
#undef RF_DEFINE_SUM_SQUARES

#endif
