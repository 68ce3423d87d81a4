/* The float LSTM element-wise pass of src/_cells.h alone (rf_lstm_fwd_row_f)
 * over N rows of H units, inference (nothing saved) and training (the
 * activations saved): best of 300 rounds of 10 passes, ns a unit
 * (docs/performance.md item 46).  Point -I at another tree's src/ to time
 * its pass:
 *
 *     gcc -O3 -fno-trapping-math -Isrc -o /tmp/lstm_pass benchmarks/c/lstm_pass.c -lm
 *     /tmp/lstm_pass 64 256
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "_cells.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char** argv)
{
    long N = argc > 2 ? atol(argv[1]) : 0, H = argc > 2 ? atol(argv[2]) : 0, G = 4 * H;
    if (N <= 0 || H <= 0) {
        fprintf(stderr, "usage: %s N H\n", argv[0]);
        return 2;
    }
    float *a = malloc(N * G * 4), *a0 = malloc(N * G * 4), *b = malloc(G * 4),
          *c = malloc(N * H * 4), *h = malloc(N * H * 4), *out = malloc(N * H * 4),
          *tcs = malloc(N * H * 4);
    if (!a || !a0 || !b || !c || !h || !out || !tcs)
        return 1;
    srand(1);
    for (long i = 0; i < N * G; i++)
        a0[i] = 8.0f * rand() / RAND_MAX - 4.0f;
    for (long i = 0; i < G; i++)
        b[i] = 0.1f * rand() / RAND_MAX;
    for (int save = 0; save < 2; save++) {
        double best = 1e9;
        for (long i = 0; i < N * H; i++)
            c[i] = 0.5f;
        for (int r = 0; r < 300; r++) {
            memcpy(a, a0, N * G * 4);       /* training overwrites a */
            double t = now();
            for (int rep = 0; rep < 10; rep++)
                for (long n = 0; n < N; n++)
                    rf_lstm_fwd_row_f(a + n * G, b, c + n * H, h + n * H, out + n * H,
                                      save ? tcs + n * H : NULL, H);
            t = (now() - t) / 10;
            best = t < best ? t : best;
        }
        printf("%s N=%ld H=%ld: %.3f ns a unit\n", save ? "training " : "inference", N, H,
               best * 1e9 / (N * H));
    }
    return 0;
}
