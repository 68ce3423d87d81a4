/* Batch rows over threads for the step loops of the kernels.
 *
 * A recurrent step couples the units of one sequence, never two sequences:
 * row n at step t needs only row n at step t-1 (forward) or t+1 (BPTT).  So
 * the whole step loop splits over batch rows with no synchronisation at
 * all: each thread runs every step for its own rows, with its own per-step
 * products on the packed Wh (src/_gemm.h).  BLAS (the hoisted products
 * before and after the loop) keeps its own threads.
 *
 * A training call splits the parameter gradients too (each thread sums
 * its rows into its own part, the caller adds the parts), with BLAS set to
 * one thread by the Python layer for the call (rnnfast/_core.py): BLAS
 * called from these threads then runs in them, and OpenBLAS's own worker
 * threads stay asleep instead of spinning on the other core.
 *
 * Threads are created per call and joined before it returns: nothing spins
 * between calls (an OpenMP or BLAS pool that spins after its region steals
 * the other core from the next BLAS call) and nothing outlives a fork.
 * Creating a thread costs some tens of microseconds, so callers only split
 * calls with enough work (src/_seq.pxd, step_threads).
 */
#ifndef RNNFAST_THREADS_H
#define RNNFAST_THREADS_H

#if defined(_WIN32) && !defined(__MINGW32__)
#define RF_NO_PTHREADS 1            /* MSVC: no pthreads; loops run serially */
#else
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <pthread.h>
#include <sched.h>
#endif

#define RF_MAX_THREADS 64

/* part: 0 for the calling thread's range, 1.. for the others, so that a
 * function can keep per-thread partial sums. */
typedef void (*rf_rows_fn)(void* ctx, long n0, long n1, int part);

typedef struct {
    rf_rows_fn fn;
    void* ctx;
    long n0, n1;
    int part;
} rf_rows_job;

#ifdef RF_NO_PTHREADS
static void rf_run_rows(rf_rows_fn fn, void* ctx, long N, int threads)
{
    /* the same ranges and parts as below, one after the other */
    int i;
    if (threads > N)
        threads = (int) N;
    if (threads < 1)
        threads = 1;
    for (i = 0; i < threads; i++)
        fn(ctx, i * N / threads, (i + 1) * N / threads, i);
}
#else
static void* rf_rows_trampoline(void* p)
{
    rf_rows_job* job = (rf_rows_job*) p;
    job->fn(job->ctx, job->n0, job->n1, job->part);
    return NULL;
}

/* fn(ctx, n0, n1, part) over [0, N) cut into `threads` contiguous ranges
 * (part = the range's index): the first on the calling thread, the others
 * on new threads (a range whose thread cannot be created runs on the
 * caller, with its own part index).  Callers pass 1 <= threads <=
 * min(N, RF_MAX_THREADS), so that every part they sized is written. */
static void rf_run_rows(rf_rows_fn fn, void* ctx, long N, int threads)
{
    pthread_t tids[RF_MAX_THREADS];
    rf_rows_job jobs[RF_MAX_THREADS];
    int started[RF_MAX_THREADS];
    int i;
    pthread_attr_t attr;
    int use_attr = 0;
    if (threads > RF_MAX_THREADS)
        threads = RF_MAX_THREADS;
    if (threads > N)
        threads = (int) N;
    if (threads <= 1) {
        if (N > 0)
            fn(ctx, 0, N, 0);
        return;
    }
#if defined(__linux__) && defined(CPU_ISSET)
    /* The new threads may run anywhere the process may, except the CPU the
     * caller is on now.  Without this hint Linux often starts a new thread
     * on its creator's CPU (wake-affine) and moves it only later, which for
     * a call of a few milliseconds means the halves run one after the
     * other; it is worst when another pool's threads look busy on the
     * other CPUs (PyTorch's, in a side-by-side benchmark). */
    {
        cpu_set_t allowed;
        int here = sched_getcpu();
        if (here >= 0 && sched_getaffinity(0, sizeof allowed, &allowed) == 0 &&
            CPU_ISSET(here, &allowed) && CPU_COUNT(&allowed) > 1 &&
            pthread_attr_init(&attr) == 0) {
            CPU_CLR(here, &allowed);
            use_attr = pthread_attr_setaffinity_np(&attr, sizeof allowed, &allowed) == 0;
            if (!use_attr)
                pthread_attr_destroy(&attr);
        }
    }
#endif
    for (i = 1; i < threads; i++) {
        jobs[i].fn = fn;
        jobs[i].ctx = ctx;
        jobs[i].n0 = i * N / threads;
        jobs[i].n1 = (i + 1) * N / threads;
        jobs[i].part = i;
        started[i] = pthread_create(&tids[i], use_attr ? &attr : NULL,
                                    rf_rows_trampoline, &jobs[i]) == 0;
    }
    if (use_attr)
        pthread_attr_destroy(&attr);
    fn(ctx, 0, N / threads, 0);
    for (i = 1; i < threads; i++) {
        if (started[i])
            pthread_join(tids[i], NULL);
        else
            fn(ctx, jobs[i].n0, jobs[i].n1, i);
    }
}

#endif /* RF_NO_PTHREADS */

#endif /* RNNFAST_THREADS_H */
