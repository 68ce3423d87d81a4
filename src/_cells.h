/* The fused element-wise passes of every cell, one batch row at a time.
 *
 * Written in C (not Cython) for one reason: `restrict`.  With it, GCC -O3
 * vectorises each loop at the baseline instruction set (SSE2 on x86-64, NEON
 * on aarch64); without it, the many row pointers may alias and the loops
 * stay scalar.  The float activations are branch-free polynomials so they
 * vectorise too (libm's expf/tanhf do not):
 *   - exp: Cephes' expf (range reduction by ln 2, degree-6 polynomial,
 *     2^k built from the exponent bits), relative error ~1e-7;
 *   - sigmoid(x) = 1 / (1 + exp(-x)), x clamped to [-88, 87] (the result's
 *     absolute error there is < 1e-38);
 *   - tanh: Eigen's rational (odd degree 13 / even degree 6) on
 *     [-7.9053, 7.9053], where it saturates to +-1 in float.  Max abs
 *     error 3.3e-7, relative 3.3e-7 (docs/performance.md).
 *   - the LSTM unit shares the denominators of its five quotients
 *     (rf_lstm_unit_f): two divisions a unit.
 * Selects (clamps) vectorise only when GCC may ignore floating-point
 * exception flags: setup.py compiles with -fno-trapping-math (as PyTorch
 * does); results do not depend on it.
 * The double activations are branch-free too (rf_exp_in_range_d, rf_tanh_d:
 * ~1e-16 relative, each activation its own quotient: accuracy first).
 *
 * The passes are those of the Cython kernels; see src/_rnn.pyx,
 * src/_lstm.pyx, src/_gru.pyx for the meaning of each buffer.  Every
 * function works on one row of H units; saving pointers may be NULL
 * (inference), which the loops unswitch.
 */
#ifndef RNNFAST_CELLS_H
#define RNNFAST_CELLS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define RF_INLINE static inline __attribute__((always_inline))
#define RF_RESTRICT __restrict__
#else
#define RF_INLINE static inline
#define RF_RESTRICT
#endif

/* On x86-64 with GCC and glibc, each pass is compiled three times (SSE2,
 * AVX2, AVX-512) and the loader picks the widest the CPU runs (ifunc);
 * elsewhere it is plain C.  -DRNNFAST_NO_CLONES at build time turns it off;
 * -DRNNFAST_PASS_NO_AVX512 leaves the AVX-512 clone out, so that the tests
 * can run the AVX2 one on an AVX-512 CPU (tests/test_pass_clones.py).
 *
 * The AVX2 clone is GCC 12's x86-64-v3 (AVX2, FMA, BMI...: what every AVX2
 * CPU has), not "avx2" alone, which has no FMA: its polynomials then
 * contract to FMAs as the AVX-512 clone's do (float LSTM inference at
 * `medium` on that clone 1.04x faster, GRU 1.05x, docs/performance.md
 * item 103), and fma() is an instruction there, not a libm call.
 *
 * The AVX-512 clone is x86-64-v4 (AVX-512 F, VL, BW, DQ, CD on top of
 * x86-64-v3), not "avx512f" alone, for the same reason: AVX-512F has FMA
 * for 512-bit vectors only, so a row's 16-wide part contracted and its
 * 8-wide and scalar tails did not, and a float pass's training and
 * inference versions, which vectorise a row of 8 to 15 units in their own
 * ways, differed in the last bit (item 111).  With FMA for every width
 * they agree at every H (tests/test_layer_eval.py). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    defined(__linux__) && __GNUC__ >= 8 && !defined(RNNFAST_NO_CLONES)
#if __GNUC__ >= 12
#define RF_CLONE_AVX2 "arch=x86-64-v3"
#define RF_CLONE_AVX512 "arch=x86-64-v4"
#else
#define RF_CLONE_AVX2 "avx2"
#define RF_CLONE_AVX512 "avx512f"
#endif
#ifdef RNNFAST_PASS_NO_AVX512
#define RF_PASS static __attribute__((target_clones("default", RF_CLONE_AVX2)))
#else
#define RF_PASS static __attribute__((target_clones("default", RF_CLONE_AVX2, RF_CLONE_AVX512)))
#endif
#else
#define RF_PASS static
#endif

/* The clone of the passes this CPU runs, as the loader's resolver picks
 * it (the widest the CPU supports): "x86-64-v4", "x86-64-v3" (or
 * "avx512f", "avx2" before GCC 12), "default" (SSE2); "none" where the passes are not
 * cloned.  For `rnnfast info` and the tests of the AVX2 clone. */
static __attribute__((unused)) const char* rf_pass_clone(void)
{
#ifdef RF_CLONE_AVX2
    __builtin_cpu_init();
#if __GNUC__ >= 12
#ifndef RNNFAST_PASS_NO_AVX512
    if (__builtin_cpu_supports("x86-64-v4"))
        return "x86-64-v4";
#endif
    if (__builtin_cpu_supports("x86-64-v3"))
        return "x86-64-v3";
#else
#ifndef RNNFAST_PASS_NO_AVX512
    if (__builtin_cpu_supports("avx512f"))
        return "avx512f";
#endif
    if (__builtin_cpu_supports("avx2"))
        return "avx2";
#endif
    return "default";
#else
    return "none";
#endif
}

/* ------------------------------------------------------------ activations */
/* exp(x) for x in [-87, 88] (the caller clamps). */
RF_INLINE float rf_exp_in_range_f(float x)
{
    float k, r, p, scale;
    int32_t bits;
    /* k = round(x / ln 2) with the 1.5 * 2^23 trick (exact without -ffast-math) */
    k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    r = x - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    bits = ((int32_t) k + 127) << 23;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

RF_INLINE float rf_exp_f(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    return rf_exp_in_range_f(x);
}

RF_INLINE float rf_sigmoid_f(float x)
{
    return 1.0f / (1.0f + rf_exp_f(-x));
}

/* tanh(x) = p / q, the two halves of the rational apart (the LSTM pass
 * folds several quotients into one division, rf_lstm_unit_f). */
RF_INLINE void rf_tanh_pq_f(float x, float* p_out, float* q_out)
{
    const float clamp = 7.90531110763549805f;
    float xc, x2, p, q;
    xc = x > clamp ? clamp : x;
    xc = xc < -clamp ? -clamp : xc;
    x2 = xc * xc;
    p = -2.76076847742355e-16f;
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 + -8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    p = p * xc;
    q = 1.19825839466702e-06f;
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    *p_out = p;
    *q_out = q;   /* in [4.9e-3, 0.9] */
}

RF_INLINE float rf_tanh_f(float x)
{
    float p, q;
    rf_tanh_pq_f(x, &p, &q);
    return p / q;  /* near 0, p/q = x * (1 - 1.3e-7): no special case needed */
}

/* 1 + exp(-x), x clamped to [-40, 40] (rf_lstm_unit_f says why). */
RF_INLINE float rf_sigmoid_denom_f(float x)
{
    x = x < -40.0f ? -40.0f : (x > 40.0f ? 40.0f : x);
    return 1.0f + rf_exp_in_range_f(-x);
}

/* One LSTM unit in float: gate pre-activations (with bias) xf, xg, xi, xo
 * and the previous cell c -> the activations f, g, i, o, the new cell cn
 * and tc = tanh(cn).
 *
 * Two divisions, not five.  perf put most of the LSTM pass's samples
 * right after its five vdivps, so the quotients share denominators:
 * with ef = 1 + exp(-xf), ei, eo alike and tanh(xg) = pg / qg,
 *     r1 = 1 / (ef * ei * qg):  f = ei qg r1,  i = ef qg r1,  g = pg ef ei r1
 *     r2 = 1 / (eo * qc):       o = qc r2,     tc = pc eo r2
 * (cn needs f, g and i before tanh(cn) = pc / qc exists, hence two).  The
 * exponents are clamped to +-40 so that ef * ei * qg (< 5.6e34) stays
 * finite: sigmoid(x) for x < -40 comes out as 4.2e-18, not smaller.  Each
 * activation carries a few more roundings than its own quotient: relative
 * error 2.2e-7 against 1.4e-7 (docs/performance.md item 46).  Training and
 * inference run this same function, so their outputs are bitwise equal. */
RF_INLINE void rf_lstm_unit_f(float xf, float xg, float xi, float xo, float c,
                              float* f, float* g, float* i, float* o, float* cn,
                              float* tc)
{
    float ef, ei, eo, pg, qg, pc, qc, eiqg, r1, r2;
    ef = rf_sigmoid_denom_f(xf);
    ei = rf_sigmoid_denom_f(xi);
    eo = rf_sigmoid_denom_f(xo);
    rf_tanh_pq_f(xg, &pg, &qg);
    eiqg = ei * qg;
    r1 = 1.0f / (ef * eiqg);
    *f = eiqg * r1;
    *i = ef * qg * r1;
    *g = pg * ef * ei * r1;
    *cn = *f * c + *g * *i;
    rf_tanh_pq_f(*cn, &pc, &qc);
    r2 = 1.0f / (eo * qc);
    *o = qc * r2;
    *tc = pc * eo * r2;
}

/* a * b + c with one rounding, in the double activations' polynomials.
 * Written out, not left to contraction: the double passes are compiled
 * without it (see below), and an explicit FMA is the same in every clone
 * and in both versions of a pass.  Where the clone has no FMA (the SSE2
 * fallback only), fma() is libm's, exact too. */
#define RF_FMA_D(a, b, c) fma((a), (b), (c))

/* exp(x) in double for x in [-708, 709] (the caller clamps), branch-free
 * so that the passes vectorise (libm's exp is a call per value: 43 % of an
 * LSTM inference at `medium` in float64, docs/performance.md item 99):
 *   - k = round(x / ln 2) by adding 1.5 * 2^52: k is then in the low bits of
 *     t's mantissa, and 2^k is built from them with integer adds and shifts
 *     (AVX2 has no double -> int64 conversion);
 *   - r = x - k ln 2 in two parts (fdlibm's ln2_hi has 32 significant bits,
 *     so k * ln2_hi is exact), |r| <= ln 2 / 2;
 *   - exp(r) by its Taylor polynomial to degree 13 (truncation < 5e-18
 *     relative), Horner with FMAs;
 *   - k + 1023 in [1, 2046] over the range: 2^k is a normal double. */
RF_INLINE double rf_exp_in_range_d(double x)
{
    const double shifter = 6755399441055744.0;       /* 1.5 * 2^52 */
    double t, k, r, p, scale;
    uint64_t bits;
    t = x * 1.44269504088896338700 + shifter;
    k = t - shifter;
    r = x - k * 6.93147180369123816490e-01;          /* ln2_hi */
    r = r - k * 1.90821492927058770002e-10;          /* ln2_lo */
    p = 1.0 / 6227020800.0;                           /* 1/13! */
    p = RF_FMA_D(p, r, 1.0 / 479001600.0);
    p = RF_FMA_D(p, r, 1.0 / 39916800.0);
    p = RF_FMA_D(p, r, 1.0 / 3628800.0);
    p = RF_FMA_D(p, r, 1.0 / 362880.0);
    p = RF_FMA_D(p, r, 1.0 / 40320.0);
    p = RF_FMA_D(p, r, 1.0 / 5040.0);
    p = RF_FMA_D(p, r, 1.0 / 720.0);
    p = RF_FMA_D(p, r, 1.0 / 120.0);
    p = RF_FMA_D(p, r, 1.0 / 24.0);
    p = RF_FMA_D(p, r, 1.0 / 6.0);
    p = RF_FMA_D(p, r, 0.5);
    p = RF_FMA_D(p, r, 1.0);
    p = RF_FMA_D(p, r, 1.0);
    memcpy(&bits, &t, sizeof bits);
    bits = (bits + 1023) << 52;     /* the low 12 bits of t's are k mod 4096 */
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* sigmoid in double: e = exp(-|x|) <= 1, 1 / (1 + e) for x >= 0 and e / (1
 * + e) below (no cancellation either side).  |x| is clamped to 708: below
 * -708 the result is 3.3e-308 instead of smaller or 0. */
RF_INLINE double rf_sigmoid_d(double x)
{
    double a, e, s;
    a = x < 0 ? -x : x;
    a = a > 708.0 ? 708.0 : a;
    e = rf_exp_in_range_d(-a);
    s = 1.0 / (1.0 + e);
    return x >= 0 ? s : e * s;
}

/* tanh in double, as Cephes' tanh (relative error ~2.5e-16) but
 * branch-free and with one division: for |x| <= 0.625 the rational x + x
 * z P(z) / Q(z), z = x^2, as one quotient (x Q + x z P) / Q; above, (s - 1)
 * / (s + 1) with s = exp(2 |x|), |x| clamped to 20 (tanh is 1.0 in double
 * from 19.1).  Both are computed and one is taken; odd in x, tanh(-0) = -0,
 * NaN gives NaN. */
RF_INLINE double rf_tanh_d(double x)
{
    double a, ac, z, P, Q, s, num, den, t;
    a = x < 0 ? -x : x;
    ac = a > 20.0 ? 20.0 : a;
    s = rf_exp_in_range_d(2.0 * ac);
    z = a * a;
    P = RF_FMA_D(RF_FMA_D(-9.64399179425052238628e-1, z, -9.92877231001918586564e1), z,
                 -1.61468768441708447952e3);
    Q = RF_FMA_D(RF_FMA_D(z + 1.12811678491632931402e2, z, 2.23548839060100448583e3), z,
                 4.84406305325125486048e3);
    num = a <= 0.625 ? RF_FMA_D(a * z, P, a * Q) : s - 1.0;
    den = a <= 0.625 ? Q : s + 1.0;
    t = num / den;
    return x < 0 ? -t : t;
}

/* The same in double: each activation its own quotient (accuracy first). */
RF_INLINE void rf_lstm_unit_d(double xf, double xg, double xi, double xo, double c,
                              double* f, double* g, double* i, double* o, double* cn,
                              double* tc)
{
    *f = rf_sigmoid_d(xf);
    *g = rf_tanh_d(xg);
    *i = rf_sigmoid_d(xi);
    *o = rf_sigmoid_d(xo);
    *cn = *f * c + *g * *i;
    *tc = rf_tanh_d(*cn);
}

/* exp for the softmax of a row (src/_cells_impl.h, rf_softmax_row): its
 * argument is x - max x <= 0, clamped at the bottom only. */
RF_INLINE double rf_exp_nonpositive_d(double x)
{
    return rf_exp_in_range_d(x < -708.0 ? -708.0 : x);
}

/* ---------------------------------------------- the passes, per precision */
#define RF_REAL float
#define RF_FN(name) name##_f
#define RF_SIG rf_sigmoid_f
#define RF_TANH rf_tanh_f
#define RF_EXP rf_exp_f
#include "_cells_impl.h"
#undef RF_REAL
#undef RF_FN
#undef RF_SIG
#undef RF_TANH
#undef RF_EXP

/* The double passes without FMA contraction.  GCC fuses a * b + c into
 * an FMA where it sees fit, and with the branch-free activations inlined
 * it fused differently in a pass's training and inference versions (the
 * LSTM's and GRU's `save`), whose results then differed in the last bit;
 * contracted or not per statement as written, they are bitwise the same,
 * as the float passes are (docs/performance.md item 99).  The
 * activations' polynomials keep their FMAs: those are written out
 * (RF_FMA_D, item 103). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
#define RF_REAL double
#define RF_FN(name) name##_d
#define RF_SIG rf_sigmoid_d
#define RF_TANH rf_tanh_d
#define RF_EXP rf_exp_nonpositive_d
#include "_cells_impl.h"
#undef RF_REAL
#undef RF_FN
#undef RF_SIG
#undef RF_TANH
#undef RF_EXP
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

/* ------------------------------------------------------------ finiteness */
/* Whether the n floats (32-bit words) or doubles (64-bit) at p hold no NaN
 * and no Inf, tested on the bits: adding the lowest exponent bit to an
 * all-ones exponent carries into the sign bit, so OR-ing (bits & exponent)
 * + lowest exponent bit over all values sets the sign bit iff one is NaN or
 * Inf.  A pass like the cells' (RF_PASS): as Cython code it ran at SSE2
 * width, 0.6 us of a 5120-value input check (RNN, N = 8, T = 10, D = 64). */
RF_PASS __attribute__((unused)) int rf_all_finite_32(const uint32_t* RF_RESTRICT p, long n)
{
    uint32_t acc = 0;
    for (long i = 0; i < n; i++)
        acc |= (p[i] & 0x7f800000u) + 0x00800000u;
    return (acc >> 31) == 0;
}

RF_PASS __attribute__((unused)) int rf_all_finite_64(const uint64_t* RF_RESTRICT p, long n)
{
    uint64_t acc = 0;
    for (long i = 0; i < n; i++)
        acc |= (p[i] & 0x7ff0000000000000u) + 0x0010000000000000u;
    return (acc >> 63) == 0;
}

/* ------------------------------------------------------------ prefetch */
/* 0: the step loops never prefetch (src/_seq.pxd, use_prefetch; A/B). */
static __attribute__((unused)) int rf_prefetch_switch = 1;

/* Ask for the cache lines of [p, p + bytes) into L2 (write: about to be
 * written).  The step loops call it for a row's next step while this one
 * computes: at long T each step's rows of gates, saved states, out and
 * dout sit in 8 (N) separate runs far apart, which the hardware
 * prefetchers did not keep up with (docs/performance.md, item 60). */
RF_INLINE void rf_prefetch_span(const void* p, long bytes, int write)
{
#if defined(__GNUC__) || defined(__clang__)
    const char* c = (const char*) p - ((uintptr_t) p & 63);
    long i, lines = ((long) ((uintptr_t) p & 63) + bytes + 63) / 64;
    if (write)
        for (i = 0; i < lines; i++)
            __builtin_prefetch(c + 64 * i, 1, 2);
    else
        for (i = 0; i < lines; i++)
            __builtin_prefetch(c + 64 * i, 0, 2);
    /* GCC counts a prefetch as no effect: a function of prefetches alone
     * became `const` and its calls were dropped.  An empty volatile asm
     * is an effect, and costs nothing. */
    __asm__ __volatile__("");
#else
    (void) p; (void) bytes; (void) write;
#endif
}

#endif
