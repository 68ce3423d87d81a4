/* Element-wise loops of a training step outside the recurrent kernels
 * (src/_rowops.pxi): an SGD step, a softmax loss's gradient rows and an
 * embedding's gradient.  Each gives the bits NumPy's expression gives:
 * the same operations, rounded in the same order, so the compiled path
 * and NumPy's are interchangeable (tests/test_rowops.py).  Hence no FMA
 * contraction here: `y - a * x` contracted would round once, NumPy's
 * `y -= a * x` rounds the product first. */
#ifndef RF_ROWOPS_H
#define RF_ROWOPS_H

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

/* y[0:n] -= a * x[0:n] */
static void rf_sub_scaled_f(float* restrict y, const float* restrict x, float a, long n)
{
    RF_NO_CONTRACT
    for (long i = 0; i < n; i++) {
        float ax = a * x[i];
        y[i] = y[i] - ax;
    }
}

static void rf_sub_scaled_d(double* restrict y, const double* restrict x, double a, long n)
{
    RF_NO_CONTRACT
    for (long i = 0; i < n; i++) {
        double ax = a * x[i];
        y[i] = y[i] - ax;
    }
}

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

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif
#undef RF_NO_CONTRACT

#endif
