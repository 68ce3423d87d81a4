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
 * its rows into its own part on the packed kernel, the caller adds the
 * parts).  No part calls BLAS: a product that would go to BLAS runs on
 * the packed kernel in that thread instead (rf_in_threads, src/_blas.pxd's
 * gemm), so BLAS's own thread count, a setting of the whole process, is
 * never touched by a call.
 *
 * On Linux the threads are a pool kept between calls (rf_pool below):
 * creating and joining a thread cost ~100 us here, waking a sleeping one
 * ~20 us (docs/performance.md, fourth session).  Its workers sleep on a
 * futex between jobs and never spin there: a pool that spins after its
 * region (OpenMP's, OpenBLAS's) steals the other core from whatever runs
 * next.  Only the caller, whose core is its own, spins briefly while it
 * waits for the last part.  A forked child starts with no workers (the
 * pthread_atfork handler), and a call that finds the pool busy (another
 * Python thread inside a kernel of this module) creates its own threads as
 * before.  Callers still split only calls with enough work (src/_seq.pxd,
 * step_threads).
 *
 * Every part runs in the caller's floating-point mode (rounding, flush to
 * zero, denormals are zero): a thread created for a call inherits it from
 * the caller, and a pool worker takes it from the job (rf_fpmode below),
 * since a library may set flush-to-zero on the caller after the workers
 * were created, and the parts would then round subnormals differently.
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

#include "_compiler.h"

/* The least work worth a thread (src/_seq.pxd, step_threads and
 * grad_threads): FLOP of a step loop, FLOP and rows of the gradient
 * products.  Variables, not constants, so that benchmarks can sweep them
 * (each kernel module's split_limits()). */
static long RF_MAYBE_UNUSED rf_split_step_flops = 2000000;
static long RF_MAYBE_UNUSED rf_split_grad_flops = 20000000;
static long RF_MAYBE_UNUSED rf_split_grad_rows = 128;

/* part: 0 for the calling thread's range, 1.. for the others, so that a
 * function can keep per-thread partial sums. */
typedef void (*rf_rows_fn)(void* ctx, long n0, long n1, int part);

typedef struct {
    rf_rows_fn fn;
    void* ctx;
    long n0, n1;
    int part;
} rf_rows_job;

/* Whether the calling thread runs a part of a region of several threads
 * (src/_blas.pxd's gemm then keeps off BLAS: BLAS would start threads of
 * its own from each part, or need its global thread count set to 1, which
 * every other Python thread of the process would see). */
#ifdef RF_NO_PTHREADS
static int rf_in_threads(void) { return 0; }
#else
static __thread int rf_in_region;

static int rf_in_threads(void) { return rf_in_region; }

static void rf_call_part(rf_rows_fn fn, void* ctx, long n0, long n1, int part)
{
    int was = rf_in_region;
    rf_in_region = 1;
    fn(ctx, n0, n1, part);
    rf_in_region = was;
}
#endif

#ifdef RF_NO_PTHREADS
static int RF_MAYBE_UNUSED rf_use_thread_pool(int on) { (void) on; return 0; }
static int RF_MAYBE_UNUSED rf_use_pool_spread(int on) { (void) on; return 0; }

static void RF_MAYBE_UNUSED rf_run_rows(rf_rows_fn fn, void* ctx, long N, int threads)
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
static int rf_clamp_threads(long N, int threads)
{
    if (threads > RF_MAX_THREADS)
        threads = RF_MAX_THREADS;
    return threads > N ? (int) N : threads;
}

static void* rf_rows_trampoline(void* p)
{
    rf_rows_job* job = (rf_rows_job*) p;
    rf_call_part(job->fn, job->ctx, job->n0, job->n1, job->part);
    return NULL;
}

/* fn(ctx, n0, n1, part) over [0, N) cut into `threads` contiguous ranges
 * (part = the range's index): the first on the calling thread, the others
 * on threads created for this call (a range whose thread cannot be created runs on the
 * caller, with its own part index).  Callers pass 1 <= threads <=
 * min(N, RF_MAX_THREADS), so that every part they sized is written. */
static void rf_run_rows_spawned(rf_rows_fn fn, void* ctx, long N, int threads)
{
    pthread_t tids[RF_MAX_THREADS];
    rf_rows_job jobs[RF_MAX_THREADS];
    int started[RF_MAX_THREADS];
    int i;
    pthread_attr_t attr;
    int use_attr = 0;
    threads = rf_clamp_threads(N, threads);
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
    rf_call_part(fn, ctx, 0, N / threads, 0);
    for (i = 1; i < threads; i++) {
        if (started[i])
            pthread_join(tids[i], NULL);
        else
            rf_call_part(fn, ctx, jobs[i].n0, jobs[i].n1, i);
    }
}


#if defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
/* ------------------------------------------------------------ the pool */
#define RF_HAVE_FUTEX_POOL 1
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#define RF_CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define RF_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define RF_CPU_RELAX() ((void) 0)
#endif

/* The calling thread's floating-point mode, and a worker's taking it.  On
 * x86-64 the control bits of MXCSR (rounding, FTZ, DAZ, exception masks;
 * the worker keeps its own sticky flags), read and written only when they
 * differ; elsewhere the whole C floating-point environment. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define RF_MXCSR_FLAGS 0x3Fu
typedef unsigned int rf_fpmode;
static inline rf_fpmode rf_fpmode_get(void)
{
    return __builtin_ia32_stmxcsr() & ~RF_MXCSR_FLAGS;
}
static inline void rf_fpmode_set(const rf_fpmode* mode)
{
    unsigned int now = __builtin_ia32_stmxcsr();
    if ((now & ~RF_MXCSR_FLAGS) != *mode)
        __builtin_ia32_ldmxcsr(*mode | (now & RF_MXCSR_FLAGS));
}
#else
#include <fenv.h>
typedef fenv_t rf_fpmode;
static inline rf_fpmode rf_fpmode_get(void)
{
    fenv_t env;
    fegetenv(&env);
    return env;
}
static inline void rf_fpmode_set(const rf_fpmode* mode) { fesetenv(mode); }
#endif

/* One word a worker sleeps on, alone on its cache line. */
typedef struct {
    unsigned int gen;              /* bumped by the caller for each job */
    char pad[64 - sizeof(unsigned int)];
} rf_pool_slot;

typedef struct {
    pthread_mutex_t lock;          /* one caller at a time (trylock) */
    int workers;                   /* started so far: parts 1..workers */
    rf_rows_fn fn;                 /* the job: written by the caller before */
    void* ctx;                     /* it bumps the slots' gen (release), */
    long N;                        /* read by a worker after it sees the */
    int threads;                   /* bump (acquire) */
    unsigned int remaining;        /* workers still running this job (futex) */
    int caller_cpu;                /* the caller's CPU at the job's start, or -1 */
    rf_fpmode fpmode;              /* the caller's floating-point mode */
    rf_pool_slot slot[RF_MAX_THREADS];
} rf_pool_t;

static rf_pool_t rf_pool = {PTHREAD_MUTEX_INITIALIZER};
static int rf_pool_switch = 1;     /* rf_use_thread_pool(0): threads per call */
static pthread_once_t rf_pool_once = PTHREAD_ONCE_INIT;

static void rf_futex_wait(unsigned int* word, unsigned int value)
{
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, value, NULL, NULL, 0);
}

static void rf_futex_wake(unsigned int* word)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* In a forked child only the forking thread exists: forget the workers. */
static void rf_pool_after_fork_in_child(void)
{
    int i;
    pthread_mutex_init(&rf_pool.lock, NULL);
    rf_pool.workers = 0;
    rf_pool.remaining = 0;
    for (i = 0; i < RF_MAX_THREADS; i++)
        rf_pool.slot[i].gen = 0;
}

static void rf_pool_register_fork_handler(void)
{
    pthread_atfork(NULL, NULL, rf_pool_after_fork_in_child);
}

/* A woken worker that finds itself on the caller's CPU moves off it.
 * Linux wakes a thread on the waker's CPU when it judges the cache warm
 * there (wake-affine), and once there a worker woken at every call can
 * stay, sharing one core with the caller for the whole call while the
 * other idles: with PyTorch's threads in the process, a GRU inference at
 * `zaremba-small`, 2 threads, ran 1.7-1.9 ms in most rounds instead of
 * 0.97 (docs/performance.md item 121).  The worker takes its CPUs at
 * creation (`base`, what the process allowed it) less the caller's, which
 * the kernel applies at once; a later collision recomputes it from base.
 * Nothing is pinned where base has one CPU. */
static int rf_pool_spread_switch = 1;

static void rf_move_off_cpu(int cpu, const cpu_set_t* base)
{
    cpu_set_t set;
    if (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, base) || CPU_COUNT(base) < 2)
        return;
    set = *base;
    CPU_CLR(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static void* rf_pool_worker(void* arg)
{
    int part = (int) (long) arg;
    unsigned int* gen = &rf_pool.slot[part].gen;
    unsigned int seen = 0;         /* the slot's gen when it was created */
    unsigned int now;
    long N;
    int threads, cpu;
    cpu_set_t base;
    int spread = sched_getaffinity(0, sizeof base, &base) == 0 && CPU_COUNT(&base) > 1;
    for (;;) {
        while ((now = __atomic_load_n(gen, __ATOMIC_ACQUIRE)) == seen)
            rf_futex_wait(gen, seen);
        seen = now;
        if (spread && rf_pool_spread_switch) {
            cpu = sched_getcpu();
            if (cpu >= 0 && cpu == rf_pool.caller_cpu)
                rf_move_off_cpu(cpu, &base);
        }
        N = rf_pool.N;
        threads = rf_pool.threads;
        rf_fpmode_set(&rf_pool.fpmode);
        rf_call_part(rf_pool.fn, rf_pool.ctx, part * N / threads, (part + 1) * N / threads,
                     part);
        if (__atomic_sub_fetch(&rf_pool.remaining, 1, __ATOMIC_ACQ_REL) == 0)
            rf_futex_wake(&rf_pool.remaining);
    }
    return NULL;
}

/* Start workers up to part threads - 1 (fewer if the system refuses), with
 * every signal blocked: signals are the main thread's business. */
static void rf_pool_grow(int threads)
{
    sigset_t all, old;
    pthread_t tid;
    pthread_attr_t attr;
    if (rf_pool.workers >= threads - 1)
        return;
    if (pthread_attr_init(&attr) != 0)
        return;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    while (rf_pool.workers < threads - 1) {
        rf_pool.slot[rf_pool.workers + 1].gen = 0;
        if (pthread_create(&tid, &attr, rf_pool_worker,
                           (void*) (long) (rf_pool.workers + 1)) != 0)
            break;
        rf_pool.workers++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
}

#define RF_POOL_SPIN_US 30

/* Spin for up to `us` microseconds until *word == value (equal) or *word
 * != value (not equal); returns whether it came. */
static int rf_spin_for(const unsigned int* word, unsigned int value, int equal, long us)
{
    struct timespec t0, t;
    int i;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        for (i = 0; i < 32; i++) {
            if ((__atomic_load_n(word, __ATOMIC_ACQUIRE) == value) == equal)
                return 1;
            RF_CPU_RELAX();
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000 >= us)
            return 0;
    }
}

static void rf_pool_wait_spin(void)
{
    rf_spin_for(&rf_pool.remaining, 0, 1, RF_POOL_SPIN_US);
}

/* The pool's job: fn's part 0 on the caller, parts 1..on_workers on the
 * workers, any others on the caller after its own; returns when all are
 * done, and unlocks the pool (which the caller holds). */
static void rf_pool_run(rf_rows_fn fn, void* ctx, long N, int threads, int on_workers)
{
    int i;
    unsigned int left;
    rf_pool.fn = fn;
    rf_pool.ctx = ctx;
    rf_pool.N = N;
    rf_pool.threads = threads;
    rf_pool.caller_cpu = rf_pool_spread_switch ? sched_getcpu() : -1;
    rf_pool.fpmode = rf_fpmode_get();
    __atomic_store_n(&rf_pool.remaining, (unsigned int) on_workers, __ATOMIC_RELAXED);
    for (i = 1; i <= on_workers; i++) {
        __atomic_add_fetch(&rf_pool.slot[i].gen, 1, __ATOMIC_RELEASE);
        rf_futex_wake(&rf_pool.slot[i].gen);
    }
    rf_call_part(fn, ctx, 0, N / threads, 0);
    for (i = on_workers + 1; i < threads; i++)   /* parts no worker could take */
        rf_call_part(fn, ctx, i * N / threads, (i + 1) * N / threads, i);
    /* Wait for the workers: spin on this (the caller's own) core for up to
     * RF_POOL_SPIN_US, since waking a sleeping caller costs ~20 us, then
     * sleep.  Bounded by time, not by a count: a PAUSE takes 27 ns here
     * and a few on other CPUs; and short, in case a worker waits for this
     * very core. */
    rf_pool_wait_spin();
    while ((left = __atomic_load_n(&rf_pool.remaining, __ATOMIC_ACQUIRE)) != 0)
        rf_futex_wait(&rf_pool.remaining, left);
    pthread_mutex_unlock(&rf_pool.lock);
}

static void RF_MAYBE_UNUSED rf_run_rows(rf_rows_fn fn, void* ctx, long N, int threads)
{
    threads = rf_clamp_threads(N, threads);
    if (threads <= 1) {
        if (N > 0)
            fn(ctx, 0, N, 0);
        return;
    }
    pthread_once(&rf_pool_once, rf_pool_register_fork_handler);
    if (!rf_pool_switch || pthread_mutex_trylock(&rf_pool.lock) != 0) {
        rf_run_rows_spawned(fn, ctx, N, threads);     /* off, or busy */
        return;
    }
    rf_pool_grow(threads);
    rf_pool_run(fn, ctx, N, threads,
                rf_pool.workers < threads - 1 ? rf_pool.workers : threads - 1);
}

/* ---------------------------------------- parts that wait for each other
 * A step loop whose products split by columns (src/_seq.pxd,
 * run_forward_steps) needs every part's columns before any part's pass,
 * and every part's pass before the next step's products: a barrier, twice
 * a step.  Its parts must then all run at the same time, on the pool's
 * workers: rf_run_rows' fallbacks (a part on the caller after its own,
 * threads created per call that may fail) would leave a part waiting for
 * one that runs after it.  rf_run_together runs fn only on a pool with a
 * worker for every other part, and otherwise runs nothing and returns 0
 * (the caller then splits by rows). */
typedef struct {
    unsigned int arrived;          /* parts at the barrier in this round */
    unsigned int gen;              /* rounds completed (a futex word) */
    unsigned int sleepers;         /* parts asleep on gen */
    int parts;
} rf_barrier;

static void RF_MAYBE_UNUSED rf_barrier_init(rf_barrier* b, int parts)
{
    b->arrived = b->gen = b->sleepers = 0;
    b->parts = parts;
}

/* Spin (the other part is normally a few us away: a step's products take
 * tens to hundreds of us), then sleep: the machine may have taken the
 * other part's core. */
#define RF_BARRIER_SPIN_US 50

static void RF_MAYBE_UNUSED rf_barrier_wait(rf_barrier* b)
{
    unsigned int gen = __atomic_load_n(&b->gen, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&b->arrived, 1, __ATOMIC_ACQ_REL) == (unsigned int) b->parts) {
        /* the last one in: reset for the next round, then release it */
        __atomic_store_n(&b->arrived, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->gen, gen + 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&b->sleepers, __ATOMIC_SEQ_CST) != 0)
            syscall(SYS_futex, &b->gen, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
        return;
    }
    if (rf_spin_for(&b->gen, gen, 0, RF_BARRIER_SPIN_US))
        return;
    /* seq_cst on both sides: either the last one sees this sleeper and
     * wakes it, or this one sees the new gen and does not sleep */
    __atomic_add_fetch(&b->sleepers, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&b->gen, __ATOMIC_SEQ_CST) == gen)
        rf_futex_wait(&b->gen, gen);
    __atomic_sub_fetch(&b->sleepers, 1, __ATOMIC_SEQ_CST);
}

static int RF_MAYBE_UNUSED rf_run_together(rf_rows_fn fn, void* ctx, long N, int threads)
{
    /* not clamped to N: a part may have no rows of its own, only columns */
    if (threads > RF_MAX_THREADS)
        threads = RF_MAX_THREADS;
    if (threads <= 1)
        return 0;
    pthread_once(&rf_pool_once, rf_pool_register_fork_handler);
    if (!rf_pool_switch || pthread_mutex_trylock(&rf_pool.lock) != 0)
        return 0;
    rf_pool_grow(threads);
    if (rf_pool.workers < threads - 1) {
        pthread_mutex_unlock(&rf_pool.lock);
        return 0;
    }
    rf_pool_run(fn, ctx, N, threads, threads - 1);
    return 1;
}

static int RF_MAYBE_UNUSED rf_use_thread_pool(int on)
{
    rf_pool_switch = on != 0;
    return rf_pool_switch;
}

/* rf_move_off_cpu on (1, the default) or off; for A/B timings. */
static int RF_MAYBE_UNUSED rf_use_pool_spread(int on)
{
    rf_pool_spread_switch = on != 0;
    return rf_pool_spread_switch;
}

#else  /* no futex: threads created per call */
#define rf_run_rows rf_run_rows_spawned
static int RF_MAYBE_UNUSED rf_use_thread_pool(int on) { (void) on; return 0; }
static int RF_MAYBE_UNUSED rf_use_pool_spread(int on) { (void) on; return 0; }
#endif
#endif /* RF_NO_PTHREADS */

#if defined(RF_NO_PTHREADS) || !defined(RF_HAVE_FUTEX_POOL)
/* No pool that runs parts at the same time: nothing waits (the step loops
 * split by rows). */
typedef struct { int parts; } rf_barrier;
static void RF_MAYBE_UNUSED rf_barrier_init(rf_barrier* b, int parts) { b->parts = parts; }
static void RF_MAYBE_UNUSED rf_barrier_wait(rf_barrier* b) { (void) b; }
static int RF_MAYBE_UNUSED rf_run_together(rf_rows_fn fn, void* ctx, long N, int threads)
{
    (void) fn; (void) ctx; (void) N; (void) threads;
    return 0;
}
#endif


#endif /* RNNFAST_THREADS_H */
