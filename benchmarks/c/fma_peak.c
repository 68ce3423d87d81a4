/* The cores' float FMA peak: each thread runs 12 independent chains of
 * 16-float FMAs (AVX-512; 8-float AVX2 with -DRF_AVX2) from registers, no
 * memory traffic, so the time is the FMA units' throughput alone.  Prints
 * GFLOP/s (2 flops an FMA a lane), best of 5 rounds, for 1 and 2 threads.
 * No product, OpenBLAS's sgemm included, can run faster on these cores:
 * this is the ceiling behind docs/performance.md's "out of reach" rows
 * (item 87).
 *
 *     gcc -O2 -mavx512f -mfma -pthread -o /tmp/fma_peak benchmarks/c/fma_peak.c
 *     /tmp/fma_peak
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#ifdef RF_AVX2
typedef __m256 vec;
#define LANES 8
#define FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define SET1(x) _mm256_set1_ps(x)
#define FIRST(v) _mm256_cvtss_f32(v)
#else
typedef __m512 vec;
#define LANES 16
#define FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define SET1(x) _mm512_set1_ps(x)
#define FIRST(v) _mm512_cvtss_f32(v)
#endif

#define CHAINS 12                 /* > FMA latency x units: the pipes stay full */
#define ITERATIONS 20000000L

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void* chains(void* out)
{
    vec a[CHAINS], b = SET1(1.0000001f), c = SET1(1e-7f);
    for (int i = 0; i < CHAINS; i++)
        a[i] = SET1((float) i);
    for (long k = 0; k < ITERATIONS; k++) {
#pragma GCC unroll 12
        for (int i = 0; i < CHAINS; i++)
            a[i] = FMA(a[i], b, c);
    }
    float s = 0;
    for (int i = 0; i < CHAINS; i++)
        s += FIRST(a[i]);
    *(float*) out = s;            /* the chains' result is used: not dropped */
    return NULL;
}

int main(void)
{
    const double flops = (double) ITERATIONS * CHAINS * LANES * 2;
    for (int threads = 1; threads <= 2; threads++) {
        double best = 0;
        float sink[2];
        for (int round = 0; round < 5; round++) {
            pthread_t id[2];
            double t = now();
            for (int i = 0; i < threads; i++)
                pthread_create(&id[i], NULL, chains, &sink[i]);
            for (int i = 0; i < threads; i++)
                pthread_join(id[i], NULL);
            t = now() - t;
            if (threads * flops / t > best)
                best = threads * flops / t;
        }
        printf("%d thread%s: %.1f GFLOP/s (%d-float FMAs; checksum %g)\n", threads,
               threads > 1 ? "s" : "", best * 1e-9, LANES, sink[0]);
    }
    return 0;
}
