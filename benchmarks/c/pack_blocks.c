/* The packing of the gate gradients for the parameter-gradient products
 * (src/_gemm.h's rf_pack_b_sum_f: B (K x N, row-major) into 16-column
 * panels, with B's column sums added to colsum), by blocks of RF_PACK_ROWS
 * rows, panel by panel in a block, against the row-by-row packing it
 * replaced (each row's 64-byte pieces stored to all N/16 panels in turn).
 * Before each pack, `touch` MB of other data are written, then B is read:
 * with touch >= 64 the packed buffer comes from memory, as it did in an
 * LSTM training step at zaremba-small (docs/performance.md item 134).
 * First checks that both give bitwise the same panels and sums on ragged
 * shapes (float, and rf_pack_b_sum_d's double too); then prints the best and mean time of 200 packs each.
 *
 *     gcc -O3 -fno-trapping-math -Isrc -o /tmp/pack_blocks benchmarks/c/pack_blocks.c
 *     /tmp/pack_blocks 400 800 64 && /tmp/pack_blocks 1120 512 64
 */
#include <stdio.h>
#include <time.h>

#include "_gemm.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* The packing before item 134: row by row (full panels only; the ragged
 * last panel is packed by rf_pack_b_sum_f's own loop in both). */
static void pack_row_by_row(const float* B, long ldb, long K, long N, float* Bp, long pstride,
                            float* colsum)
{
    long k, p, j, full = N / RF_NR;
    for (k = 0; k < K; k++) {
        const float* src = B + k * ldb;
        for (p = 0; p < full; p++)
            memcpy(Bp + p * pstride + k * RF_NR, src + p * RF_NR, RF_NR * sizeof(float));
        for (j = 0; j < N; j++)
            colsum[j] += src[j];
    }
}

/* Whether rf_pack_b_sum_<S> (panels of NR elements of T, PSTRIDE(K)
 * apart) gives the row-by-row packing's full panels and column sums, bit
 * for bit, on a K x N matrix. */
#define DEFINE_SAME_AS_ROW_BY_ROW(S, T, NR, PSTRIDE)                         \
    static int same_as_row_by_row_##S(long K, long N)                        \
    {                                                                         \
        long ps = PSTRIDE(K), size = ps * ((N + NR - 1) / NR), i, k, p, j;    \
        long full = N / NR;                                                   \
        T *B = malloc(K * N * sizeof(T)), *P1 = calloc(size, sizeof(T));      \
        T *P2 = calloc(size, sizeof(T)), *s1 = calloc(N, sizeof(T));          \
        T *s2 = calloc(N, sizeof(T));                                         \
        int ok;                                                               \
        for (i = 0; i < K * N; i++)                                           \
            B[i] = (T) ((i * 7919 % 1009) - 504) / (T) 97;                    \
        rf_pack_b_sum_##S(B, N, 0, K, N, P1, ps, s1);                         \
        for (k = 0; k < K; k++) {                                             \
            for (p = 0; p < full; p++)                                        \
                memcpy(P2 + p * ps + k * NR, B + k * N + p * NR, NR * sizeof(T)); \
            for (j = 0; j < N; j++)                                           \
                s2[j] += B[k * N + j];                                        \
        }                                                                     \
        ok = memcmp(s1, s2, N * sizeof(T)) == 0;                              \
        for (p = 0; p < full; p++)                                            \
            ok = ok && memcmp(P1 + p * ps, P2 + p * ps, K * NR * sizeof(T)) == 0; \
        free(B); free(P1); free(P2); free(s1); free(s2);                      \
        return ok;                                                            \
    }

DEFINE_SAME_AS_ROW_BY_ROW(f, float, RF_NR, rf_panel_stride)
DEFINE_SAME_AS_ROW_BY_ROW(d, double, RF_NRD, rf_panel_stride_d)

int main(int argc, char** argv)
{
    static const long shapes[][2] = {{1, 16}, {15, 600}, {17, 40}, {33, 800}, {400, 600}, {1120, 512}};
    long K = argc > 1 ? atol(argv[1]) : 400, N = argc > 2 ? atol(argv[2]) : 800;
    long touch = (argc > 3 ? atol(argv[3]) : 64) << 20, ps = rf_panel_stride(K), i;
    size_t s;
    int r, v, R = 200;
    double best[2] = {1e9, 1e9}, total[2] = {0, 0};
    float *B, *Bp, *sums;
    char* junk;
    for (s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
        if (!same_as_row_by_row_f(shapes[s][0], shapes[s][1]) ||
            !same_as_row_by_row_d(shapes[s][0], shapes[s][1])) {
            printf("K=%ld N=%ld: not bitwise the same\n", shapes[s][0], shapes[s][1]);
            return 1;
        }
    B = malloc(K * N * sizeof(float));
    Bp = calloc(ps * ((N + RF_NR - 1) / RF_NR), sizeof(float));
    sums = calloc(N, sizeof(float));
    junk = calloc(touch + 64, 1);
    for (i = 0; i < K * N; i++)
        B[i] = (float) (i % 7);
    for (r = 0; r < R; r++)
        for (v = 0; v < 2; v++) {
            volatile float sink = 0;
            double t0, dt;
            for (i = 0; i < touch; i += 64)
                junk[i]++;
            for (i = 0; i < K * N; i += 16)
                sink += B[i];
            t0 = now();
            if (v == 0)
                pack_row_by_row(B, N, K, N, Bp, ps, sums);
            else
                rf_pack_b_sum_f(B, N, 0, K, N, Bp, ps, sums);
            dt = now() - t0;
            best[v] = dt < best[v] ? dt : best[v];
            total[v] += dt;
        }
    printf("K=%ld N=%ld, %ld MB touched: row by row best %.1f us, mean %.1f; "
           "blocks of %d rows best %.1f us, mean %.1f\n", K, N, touch >> 20, best[0] * 1e6,
           total[0] / R * 1e6, RF_PACK_ROWS, best[1] * 1e6, total[1] / R * 1e6);
    return 0;
}
