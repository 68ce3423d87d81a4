/* Load latency by working-set size: a random cyclic pointer chase (one
 * 64-byte line a node) over buffers of 256 KB to 128 MB, ns a load.
 * Where it jumps tells which share of the L3 one process really gets on a
 * shared machine (docs/performance.md item 135: 27-97 ns at 8 MB, 128 ns
 * and more from 16 MB on a Zen 4 with a 32 MB L3).
 *
 *     gcc -O2 -o /tmp/pointer_chase benchmarks/c/pointer_chase.c && /tmp/pointer_chase
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void)
{
    long kb, i, j, n, p, tmp, steps = 4000000;
    for (kb = 256; kb <= 131072; kb *= 2) {
        long* next;
        long* order;
        double t0, dt;
        n = kb * 1024 / 64;                  /* nodes, one a cache line */
        next = aligned_alloc(64, n * 64);
        order = malloc(n * sizeof(long));
        for (i = 0; i < n; i++)
            order[i] = i;
        srand(1);
        for (i = n - 1; i > 0; i--) {        /* a random cycle through all nodes */
            j = rand() % (i + 1);
            tmp = order[i]; order[i] = order[j]; order[j] = tmp;
        }
        for (i = 0; i < n; i++)
            next[order[i] * 8] = order[(i + 1) % n] * 8;
        for (i = 0, p = 0; i < n; i++)       /* once round: warm */
            p = next[p];
        t0 = now();
        for (i = 0; i < steps; i++)
            p = next[p];
        dt = now() - t0;
        printf("%6ld KB: %.1f ns a load (%ld)\n", kb, dt / steps * 1e9, p & 1);
        free(next);
        free(order);
    }
    return 0;
}
