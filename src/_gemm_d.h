/* The packed products of src/_gemm.h in double, for float64 calls: the
 * per-step recurrent products (forward h @ Wh, backward dA @ Wh^T), the
 * input projection and dX.  On BLAS, float64 repacked Wh at every step
 * (OpenBLAS's dgemm_itcopy: 12 % of an LSTM inference at `medium`) and
 * its small-M products ran at ~35 GFLOP/s on a Zen 4 where dgemm peaks
 * near 53 (docs/performance.md item 100).  The parameter gradients
 * (dWx, dWh: rf_gemm_tn_d, src/_gemm_tn_impl.h) too (item 101).
 *
 * Included by src/_gemm.h inside its RF_HAVE_PACKED section; uses its
 * RF_TILE_BODY_V, RF_A_ROWS, RF_DEFINE_STORE_ROW_T, rf_wide_in_use and
 * RF_MC.
 *
 * Packed layout: panels of RF_NRD = 8 doubles (one 64-byte line a k),
 * rf_panel_stride_d(K) = (K + 1) x 8 doubles apart (the spare line of
 * src/_gemm.h), zero-padded past the last column.  Tiles:
 *   - AVX2: MR <= 6 rows x one panel, each row's 8 doubles in two 4-double
 *     accumulators (twelve, as the float tiles);
 *   - AVX-512: MR <= 8 rows x two panels, two 8-double accumulators a row
 *     (sixteen, as the float wide tiles); an odd last panel takes the AVX2
 *     tile.
 * Every element of C is one FMA chain over k in order in every tile, so
 * results do not depend on the tile, the row block, the batch's size or
 * the thread a row runs on (BLAS's did, by its blocking). */
#ifndef RNNFAST_GEMM_D_H
#define RNNFAST_GEMM_D_H

#define RF_NRD 8

typedef double rf_d4 __attribute__((vector_size(32), aligned(8)));
typedef double rf_d8 __attribute__((vector_size(64), aligned(8)));

/* Doubles from the start of one packed panel to the next. */
static inline long rf_panel_stride_d(long K)
{
    return (K + 1) * RF_NRD;
}

static inline long rf_packed_size_d(long K, long N)
{
    return rf_panel_stride_d(K) * ((N + RF_NRD - 1) / RF_NRD);
}

/* One panel row of 8 doubles; a block's column sums (rows ld apart, added
 * in row order), for RF_PACK_FULL_PANELS. */
static inline void rf_copy_row8d(double* dst, const double* src)
{
    *(rf_d8*) dst = *(const rf_d8*) src;
}

static inline void rf_add_rows8d(double* sum, const double* src, long ld, long rows)
{
    rf_d8 acc = *(rf_d8*) sum;
    long k;
    for (k = 0; k < rows; k++)
        acc += *(const rf_d8*) (src + k * ld);
    *(rf_d8*) sum = acc;
}

/* Bp <- B (K, N) packed, as rf_pack_b_sum_f: panels pstride doubles apart
 * (rf_panel_stride_d(K) for a whole B, more for rows 0..K-1 of a taller
 * one's); trans = 0, B row-major (K, N) with row stride ldb, copied by
 * blocks of rows (each row's 8 doubles a panel one vector), and colsum
 * (N), unless NULL, gets B's column sums added; trans = 1, B^T
 * given as row-major (N, K), each panel's 8 rows of B^T walked in step. */
RF_CLONED void rf_pack_b_sum_d(const double* B, long ldb, int trans, long K, long N,
                               double* Bp, long pstride, double* colsum)
{
    const long full = N / RF_NRD;
    long p, k, j, j0, w;
    double* dst;
    if (!trans) {
        /* By blocks of RF_PACK_ROWS rows, panel by panel in a block, as
         * rf_pack_b_sum_f (docs/performance.md item 134). */
        RF_PACK_FULL_PANELS(double, RF_NRD, rf_copy_row8d, rf_add_rows8d);
    }
    for (p = trans ? 0 : full; p * RF_NRD < N; p++) {
        j0 = p * RF_NRD;
        w = N - j0 < RF_NRD ? N - j0 : RF_NRD;
        dst = Bp + p * pstride;
        for (k = 0; k < K; k++) {
            for (j = 0; j < w; j++)
                dst[k * RF_NRD + j] = trans ? B[(j0 + j) * ldb + k] : B[k * ldb + j0 + j];
            for (; j < RF_NRD; j++)
                dst[k * RF_NRD + j] = 0.0;
        }
    }
}

static void rf_pack_b_d(const double* B, long ldb, int trans, long K, long N, double* Bp)
{
    rf_pack_b_sum_d(B, ldb, trans, K, N, Bp, rf_panel_stride_d(K), NULL);
}

/* The repack of src/_gemm.h (rf_repack_b_f) for the double layout. */
RF_DEFINE_REPACK(rf_repack_b_d, double, RF_NRD, rf_add_rows8d)

/* A row's 8 doubles (AVX2, two halves) or 16 (AVX-512, two panels). */
RF_DEFINE_STORE_ROW_T(rf_store_row8d, double, rf_d4, "avx2,fma")
RF_DEFINE_STORE_ROW_T(rf_store_row16d, double, rf_d8, "avx512f")

#define RF_DTILE_BODY(MR, A_IK)                                               \
    RF_TILE_BODY_V(MR, A_IK, rf_d4, *(const rf_d4*) (panel + k * RF_NRD),    \
                   *(const rf_d4*) (panel + k * RF_NRD + 4), rf_store_row8d)
#define RF_WDTILE_BODY(MR, A_IK)                                              \
    RF_TILE_BODY_V(MR, A_IK, rf_d8, *(const rf_d8*) (panel + k * RF_NRD),    \
                   *(const rf_d8*) (panel + rf_panel_stride_d(K) + k * RF_NRD), \
                   rf_store_row16d)
/* rf_<P>dtile_<MR>: C[0:MR, 0:nc] (+)= A[0:MR, 0:K] (rows lda apart) @ the
 * panel(s) from `panel` on; rf_<P>dptile_<MR>: the same with A packed
 * tile-major, A[k * MR + i] (the parameter gradients, rf_gemm_tn_d, up to
 * 6 rows). */
#define RF_DEFINE_DTILE(P, TARGET, BODY, MR)                                  \
    __attribute__((target(TARGET), noinline)) static void                     \
    rf_##P##dtile_##MR(long K, const double* A, long lda, const double* panel, \
                       double* C, long ldc, long nc, int accumulate)          \
    BODY(MR, RF_A_ROWS)
#define RF_DEFINE_DTILE_PAIR(P, TARGET, BODY, MR)                             \
    RF_DEFINE_DTILE(P, TARGET, BODY, MR)                                      \
    __attribute__((target(TARGET), noinline)) static void                     \
    rf_##P##dptile_##MR(long K, const double* A, const double* panel,         \
                        double* C, long ldc, long nc, int accumulate)         \
    BODY(MR, RF_A_PACKED)
#define RF_DEFINE_DTILE_FAMILY(P, TARGET, BODY)                               \
    RF_DEFINE_DTILE_PAIR(P, TARGET, BODY, 1)                                  \
    RF_DEFINE_DTILE_PAIR(P, TARGET, BODY, 2)                                  \
    RF_DEFINE_DTILE_PAIR(P, TARGET, BODY, 3)                                  \
    RF_DEFINE_DTILE_PAIR(P, TARGET, BODY, 4)                                  \
    RF_DEFINE_DTILE_PAIR(P, TARGET, BODY, 5)                                  \
    RF_DEFINE_DTILE_PAIR(P, TARGET, BODY, 6)

RF_DEFINE_DTILE_FAMILY(, "avx2,fma", RF_DTILE_BODY)
RF_DEFINE_DTILE_FAMILY(w, "avx512f", RF_WDTILE_BODY)
RF_DEFINE_DTILE(w, "avx512f", RF_WDTILE_BODY, 7)
RF_DEFINE_DTILE(w, "avx512f", RF_WDTILE_BODY, 8)

typedef void (*rf_dtile_fn)(long, const double*, long, const double*, double*, long, long,
                            int);
typedef void (*rf_dptile_fn)(long, const double*, const double*, double*, long, long, int);
/* [np - 1][rows]: one panel (AVX2) or two (AVX-512). */
static const rf_dptile_fn rf_dptiles[2][RF_MR + 1] = {
    {NULL, rf_dptile_1, rf_dptile_2, rf_dptile_3, rf_dptile_4, rf_dptile_5, rf_dptile_6},
    {NULL, rf_wdptile_1, rf_wdptile_2, rf_wdptile_3, rf_wdptile_4, rf_wdptile_5,
     rf_wdptile_6}};
/* [wide][rows]: 0, one panel (AVX2); 1, two panels (AVX-512). */
static const rf_dtile_fn rf_dtiles[2][RF_WMR + 1] = {
    {NULL, rf_dtile_1, rf_dtile_2, rf_dtile_3, rf_dtile_4, rf_dtile_5, rf_dtile_6, NULL, NULL},
    {NULL, rf_wdtile_1, rf_wdtile_2, rf_wdtile_3, rf_wdtile_4, rf_wdtile_5, rf_wdtile_6,
     rf_wdtile_7, rf_wdtile_8}};

/* One row (M = 1, a batch of one sequence): a GEMV, as rf_gemv_packed_f.
 * The one-row tile keeps two accumulator chains and waits on the FMA's
 * latency; these keep eight: AVX-512, eight panels a group, one 8-double
 * accumulator each; AVX2, four panels, two 4-double halves each; then
 * single panels.  Every element is still one FMA chain over k in order
 * from zero, so the results are bitwise the tiles'.  Forwards and
 * backwards on alternate calls of a thread (rf_gemv_calls): a walk starts
 * on the panels the last one ended on, still in L1.  The parts are
 * src/_gemm.h's (RF_DEFINE_GEMV_*), in double. */
RF_DEFINE_GEMV_4PANELS(rf_dgemv_4panels, double, rf_d4, RF_NRD, rf_panel_stride_d,
                       rf_store_row8d)
RF_DEFINE_GEMV_1PANEL(rf_dgemv_1panel, double, rf_d4, RF_NRD, rf_panel_stride_d,
                      rf_store_row8d)
RF_DEFINE_GEMV_8PANELS(rf_wdgemv_8panels, double, rf_d8, RF_NRD, rf_panel_stride_d,
                       rf_store_row16d)
RF_DEFINE_GEMV_WALK(rf_wdgemv_packed_d, "avx512f", double, RF_NRD, 1, rf_wdgemv_8panels,
                    rf_dgemv_4panels, rf_dgemv_1panel)
/* (no groups of eight on the AVX2 code: rf_dgemv_4panels stands in for G8) */
RF_DEFINE_GEMV_WALK(rf_dgemv_packed_d, "avx2,fma", double, RF_NRD, 0, rf_dgemv_4panels,
                    rf_dgemv_4panels, rf_dgemv_1panel)

/* 0: one-row products on the one-row tiles (rf_use_dgemv, for A/B
 * timings and tests; the results are bitwise the same). */
static int rf_dgemv_switch = 1;

/* Groups of eight panels on the wide tiles, except, as in float
 * (rf_gemv8_in_use), where a 512-bit FMA runs as two halves and the
 * packed B fits well in L2: there the AVX2 groups of four were faster.  On
 * a Zen 4, whole calls at N = 1, T = 100 (session script, groups of 8 and
 * 4 forced in turn, docs/performance.md item 154): time 8/4 1.014-1.035
 * for a B of 98-298 KB (LSTM and GRU at H = 64, RNN at 128, LSTM at 96),
 * 0.974-0.994 from 396 KB on (GRU and LSTM at H = 128, LSTM at 200);
 * benchmarks/gemv_groups.py times the products alone.
 * rf_use_gemv_groups_of_8 forces either, as in float. */
#define RF_DGEMV4_MAX_BYTES (384L << 10)

static int rf_dgemv8_in_use(long K, long N)
{
    if (rf_gemv8_switch >= 0)
        return rf_gemv8_switch;
    return !rf_fma512_halves() ||
           rf_packed_size_d(K, N) * (long) sizeof(double) > RF_DGEMV4_MAX_BYTES;
}

/* C (M, N), row stride ldc, = (accumulate ? C : 0) + A (M, K) @ B, with B
 * packed by rf_pack_b_d: rf_gemm_packed_f's loops (row blocks of RF_MC
 * outside, panels inside, tiles of as equal height as possible
 * innermost); one row, the GEMV above. */
static void rf_gemm_packed_d(long M, long N, long K, const double* A, long lda,
                             const double* Bp, double* C, long ldc, int accumulate)
{
    long m0, mb, p, i, nc, mr, tiles, base, extra, r, np;
    const int wide = rf_wide_in_use();
    if (M == 1 && N > 0 && rf_dgemv_switch) {
        if (wide && rf_dgemv8_in_use(K, N))
            rf_wdgemv_packed_d(N, K, A, Bp, C, accumulate);
        else
            rf_dgemv_packed_d(N, K, A, Bp, C, accumulate);
        return;
    }
    for (m0 = 0; m0 < M; m0 += mb) {
        mb = M - m0 < RF_MC ? M - m0 : RF_MC;
        for (p = 0; p * RF_NRD < N; p += np) {
            np = wide && (p + 1) * RF_NRD < N ? 2 : 1;
            mr = np == 2 ? RF_WMR : RF_MR;
            tiles = (mb + mr - 1) / mr;
            base = mb / tiles;
            extra = mb % tiles;
            nc = N - p * RF_NRD < np * RF_NRD ? N - p * RF_NRD : np * RF_NRD;
            for (i = m0, r = 0; i < m0 + mb; i += mr, r++) {
                mr = r < extra ? base + 1 : base;
                rf_dtiles[np - 1][mr](K, A + i * lda, lda, Bp + p * rf_panel_stride_d(K),
                                      C + i * ldc + p * RF_NRD, ldc, nc, accumulate);
            }
        }
    }
}

/* rf_pack_a_tile_d and rf_gemm_tn_d: the parameter gradients in double
 * (src/_gemm_tn_impl.h), as rf_gemm_tn_f. */
#define RF_TN_T double
#define RF_TN_FN(name) name##_d
#define RF_TN_NR RF_NRD
#define RF_TN_PSTRIDE rf_panel_stride_d
#define RF_TN_PACKED_SIZE rf_packed_size_d
#define RF_TN_FLOATS(n) (2 * (n))
#define RF_TN_PTILE(wide, np, nc, mr) rf_dptiles[(np) - 1][mr]
#define RF_TN_PANELS(wide, p, N) ((wide) && ((p) + 1) * RF_NRD < (N) ? 2 : 1)
#define RF_TN_MR(wide) RF_MR
#include "_gemm_tn_impl.h"

#endif
