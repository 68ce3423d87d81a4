/* The packing of B (K x N floats, row-major) into 16-column panels, row by
 * row and panel by panel, with panels K x 16 floats apart (unpadded) or
 * (K + 1) x 16 (padded, as src/_gemm.h's rf_panel_stride).  Prints the best
 * time of 200 rounds of 10 packs for each (docs/performance.md item 45).
 *
 *     gcc -O3 -o /tmp/pack_panels benchmarks/c/pack_panels.c
 *     /tmp/pack_panels 64 256 && /tmp/pack_panels 256 1024
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef float v4 __attribute__((vector_size(16), aligned(4)));

static inline void copy16(float* d, const float* s)
{
    v4 a = *(const v4*) s, b = *(const v4*) (s + 4), c = *(const v4*) (s + 8),
       e = *(const v4*) (s + 12);
    *(v4*) d = a; *(v4*) (d + 4) = b; *(v4*) (d + 8) = c; *(v4*) (d + 12) = e;
}

__attribute__((noinline)) static void pack_rows(const float* B, long K, long N, float* Bp,
                                                long stride)
{
    for (long k = 0; k < K; k++)
        for (long p = 0; p < N / 16; p++)
            copy16(Bp + p * stride + k * 16, B + k * N + p * 16);
}

__attribute__((noinline)) static void pack_panels(const float* B, long K, long N, float* Bp,
                                                  long stride)
{
    for (long p = 0; p < N / 16; p++)
        for (long k = 0; k < K; k++)
            copy16(Bp + p * stride + k * 16, B + k * N + p * 16);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char** argv)
{
    long K = argc > 2 ? atol(argv[1]) : 0, N = argc > 2 ? atol(argv[2]) : 0;
    float *B, *Bp;
    if (K <= 0 || N <= 0 || N % 16) {
        fprintf(stderr, "usage: %s K N   (K >= 1, N a positive multiple of 16)\n", argv[0]);
        return 2;
    }
    if (posix_memalign((void**) &B, 64, K * N * 4) ||
        posix_memalign((void**) &Bp, 64, (K + 1) * N * 4))
        return 1;
    for (long i = 0; i < K * N; i++)
        B[i] = (float) i;
    for (int pad = 0; pad < 2; pad++)
        for (int order = 0; order < 2; order++) {
            long stride = (K + pad) * 16;
            double best = 1e9;
            for (int r = 0; r < 200; r++) {
                double t = now();
                for (int i = 0; i < 10; i++)
                    (order ? pack_panels : pack_rows)(B, K, N, Bp, stride);
                t = (now() - t) / 10;
                best = t < best ? t : best;
            }
            printf("K=%ld N=%ld %s, %s: %.2f us\n", K, N, pad ? "padded" : "unpadded",
                   order ? "panel by panel" : "row by row", best * 1e6);
        }
    return 0;
}
