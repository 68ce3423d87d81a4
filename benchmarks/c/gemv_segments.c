/* The backward's one-row product, dh (+)= dA_t @ Wh^T, over one group of
 * four panels (N = 64 outputs, K = G*H rows of B): the forward's GEMV (one
 * sum over K, rf_gemv_4panels) against the segmented one of src/_gemm.h
 * (rf_gemv_4panels_segments: 16 KB segments, walked forwards and backwards
 * on alternate calls).  Each call may first touch `touch` floats of other
 * data, as a step's element-wise pass does.  Best of 300 rounds of 100
 * calls, us a call and GFLOP/s (docs/performance.md item 128).
 *
 *     gcc -O3 -fno-trapping-math -Isrc -o /tmp/gemv_segments benchmarks/c/gemv_segments.c
 *     /tmp/gemv_segments 64 256 [touch]
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

static float other[1 << 14];

static double best_call(long N, long K, const float* a, const float* Bp, float* C,
                        int segmented, long touch)
{
    double best = 1e9;
    int r, i;
    long j;
    for (r = 0; r < 300; r++) {
        double t0 = now(), t;
        for (i = 0; i < 100; i++) {
            for (j = 0; j < touch; j++)
                other[j] += 1.0f;
            if (segmented)
                rf_gemv_4panels_segments(N, K, a, Bp, C, 1, 0, i & 1);
            else
                rf_gemv_4panels(N, K, a, Bp, C, 1, 0);
        }
        t = (now() - t0) / 100;
        if (t < best)
            best = t;
    }
    return best;
}

int main(int argc, char** argv)
{
    long N = argc > 2 ? atol(argv[1]) : 0, K = argc > 2 ? atol(argv[2]) : 0;
    long touch = argc > 3 ? atol(argv[3]) : 0, i;
    float *B, *a, *C, *Bp;
    int segmented;
    if (N < 49 || N > 64 || K < 1 || K > RF_GEMV_SEG_K * RF_GEMV_MAX_SEGS || touch < 0 ||
            touch > (1 << 14)) {
        fprintf(stderr, "usage: %s N K [touch]  (N 49-64, one group of four panels; "
                "K 1-%d; touch 0-16384)\n", argv[0], RF_GEMV_SEG_K * RF_GEMV_MAX_SEGS);
        return 2;
    }
    B = malloc(K * N * sizeof(float));
    a = malloc(K * sizeof(float));
    C = calloc(N, sizeof(float));
    Bp = aligned_alloc(64, (rf_packed_size(K, N) * sizeof(float) + 63) / 64 * 64);
    for (i = 0; i < K * N; i++)
        B[i] = (float) (i % 7) * 0.01f;
    for (i = 0; i < K; i++)
        a[i] = 0.001f * (float) i;
    rf_pack_b_f(B, N, 0, K, N, Bp);
    for (segmented = 0; segmented < 2; segmented++) {
        double t = best_call(N, K, a, Bp, C, segmented, touch);
        printf("1 x %ld x %ld, touching %ld floats a call, %s: %.3f us, %.1f GFLOP/s\n", K, N,
               touch, segmented ? "segments" : "one sum ", t * 1e6, 2.0 * N * K / t / 1e9);
    }
    return C[0] == 12345.0f;     /* keeps C live */
}
