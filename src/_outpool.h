/* A pool for the large arrays a call hands back to its caller (a layer's
 * outputs, dL/dxs), as a NumPy memory handler (NEP 49).
 *
 * Why: glibc serves a block of more than 32 MB (its largest mmap
 * threshold) from a fresh mmap every time, and gives it back to the
 * system on free, so such an output's pages fault in and are zeroed by
 * the kernel at every call (clear_page_erms: 8 % of an RNN training step
 * at N = 8, D = H = 128, T = 10,000, 41 MB an output; docs/performance.md
 * item 70).  The internal buffers are kept between calls already
 * (_dispatch.Scratch); outputs belong to the caller, so they come back
 * here only when the caller drops them: numpy then calls rf_outpool_free,
 * through the handler the array keeps.
 *
 * The arrays stay ordinary owners of their data (resize works: realloc).
 * Each block starts RF_OUTPOOL_HEADER bytes before the data it gives out and
 * records its capacity there, so a free never depends on numpy's size.
 * At most RF_OUTPOOL_SLOTS blocks and rf_outpool_max_bytes are kept; a block is
 * reused for a request of at least 3/4 of its capacity.  The lock makes it
 * safe whichever thread drops an array. */
#ifndef RF_OUTPOOL_H
#define RF_OUTPOOL_H

#include <Python.h>
#include <numpy/ndarraytypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define RF_OUTPOOL_SLOTS 8
#define RF_OUTPOOL_HEADER 64           /* keeps the data 64-byte aligned */
#define RF_OUTPOOL_HUGE_PAGE ((size_t)2 << 20)

static void* rf_outpool_block[RF_OUTPOOL_SLOTS];  /* free blocks (their headers) */
static size_t rf_outpool_cap[RF_OUTPOOL_SLOTS];
static int rf_outpool_count = 0;
static size_t rf_outpool_bytes = 0;            /* capacity of the free blocks */
static size_t rf_outpool_max_bytes = (size_t)512 << 20;
static long rf_outpool_hits = 0, rf_outpool_misses = 0;
static pthread_mutex_t rf_outpool_lock = PTHREAD_MUTEX_INITIALIZER;

static void* rf_outpool_new_block(size_t cap)
{
    void* block = NULL;
    if (cap > SIZE_MAX - RF_OUTPOOL_HEADER
            || posix_memalign(&block, 64, cap + RF_OUTPOOL_HEADER) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    /* As numpy does for its own arrays of 4 MB and more. */
    if (cap >= 2 * RF_OUTPOOL_HUGE_PAGE) {
        uintptr_t lo = ((uintptr_t)block + RF_OUTPOOL_HUGE_PAGE - 1) & ~(uintptr_t)(RF_OUTPOOL_HUGE_PAGE - 1);
        uintptr_t hi = ((uintptr_t)block + cap + RF_OUTPOOL_HEADER) & ~(uintptr_t)(RF_OUTPOOL_HUGE_PAGE - 1);
        if (hi > lo)
            madvise((void*)lo, hi - lo, MADV_HUGEPAGE);
    }
#endif
    *(size_t*)block = cap;
    return block;
}

static void* rf_outpool_malloc(void* ctx, size_t size)
{
    int i, best = -1;
    void* block;
    (void)ctx;
    if (size == 0)
        size = 1;
    pthread_mutex_lock(&rf_outpool_lock);
    for (i = 0; i < rf_outpool_count; i++)       /* the smallest that fits */
        if (rf_outpool_cap[i] >= size && rf_outpool_cap[i] / 4 * 3 <= size
                && (best < 0 || rf_outpool_cap[i] < rf_outpool_cap[best]))
            best = i;
    if (best >= 0) {
        block = rf_outpool_block[best];
        rf_outpool_bytes -= rf_outpool_cap[best];
        rf_outpool_count--;
        for (i = best; i < rf_outpool_count; i++) {
            rf_outpool_block[i] = rf_outpool_block[i + 1];
            rf_outpool_cap[i] = rf_outpool_cap[i + 1];
        }
        rf_outpool_hits++;
        pthread_mutex_unlock(&rf_outpool_lock);
        return (char*)block + RF_OUTPOOL_HEADER;
    }
    rf_outpool_misses++;
    pthread_mutex_unlock(&rf_outpool_lock);
    block = rf_outpool_new_block(size);
    return block == NULL ? NULL : (char*)block + RF_OUTPOOL_HEADER;
}

/* Keeps the block, the oldest going back to the allocator when the pool
 * is over its limits. */
static void rf_outpool_free(void* ctx, void* ptr, size_t size)
{
    void* block;
    size_t cap;
    void* drop[RF_OUTPOOL_SLOTS + 1];
    int ndrop = 0, i;
    (void)ctx; (void)size;
    if (ptr == NULL)
        return;
    block = (char*)ptr - RF_OUTPOOL_HEADER;
    cap = *(size_t*)block;
    pthread_mutex_lock(&rf_outpool_lock);
    if (cap > rf_outpool_max_bytes) {
        drop[ndrop++] = block;
    } else {
        while (rf_outpool_count > 0 && (rf_outpool_count == RF_OUTPOOL_SLOTS
                                     || rf_outpool_bytes + cap > rf_outpool_max_bytes)) {
            drop[ndrop++] = rf_outpool_block[0];
            rf_outpool_bytes -= rf_outpool_cap[0];
            rf_outpool_count--;
            for (i = 0; i < rf_outpool_count; i++) {
                rf_outpool_block[i] = rf_outpool_block[i + 1];
                rf_outpool_cap[i] = rf_outpool_cap[i + 1];
            }
        }
        rf_outpool_block[rf_outpool_count] = block;
        rf_outpool_cap[rf_outpool_count++] = cap;
        rf_outpool_bytes += cap;
    }
    pthread_mutex_unlock(&rf_outpool_lock);
    for (i = 0; i < ndrop; i++)
        free(drop[i]);
}

static void* rf_outpool_calloc(void* ctx, size_t nelem, size_t elsize)
{
    void* p;
    if (elsize != 0 && nelem > SIZE_MAX / elsize)
        return NULL;
    p = rf_outpool_malloc(ctx, nelem * elsize);
    if (p != NULL)
        memset(p, 0, nelem * elsize);
    return p;
}

static void* rf_outpool_realloc(void* ctx, void* ptr, size_t new_size)
{
    size_t cap;
    void* p;
    if (ptr == NULL)
        return rf_outpool_malloc(ctx, new_size);
    cap = *(size_t*)((char*)ptr - RF_OUTPOOL_HEADER);
    if (new_size <= cap)
        return ptr;
    p = rf_outpool_malloc(ctx, new_size);
    if (p != NULL) {
        memcpy(p, ptr, cap);
        rf_outpool_free(ctx, ptr, cap);
    }
    return p;
}

static PyDataMem_Handler rf_outpool_handler = {
    "rnnfast_output_pool",
    1,
    {NULL, rf_outpool_malloc, rf_outpool_calloc, rf_outpool_realloc, rf_outpool_free},
};

/* A fork while another thread holds the lock would leave it held in the
 * child for good: the lock is taken around fork and released on both
 * sides. */
static void rf_outpool_lock_all(void) { pthread_mutex_lock(&rf_outpool_lock); }
static void rf_outpool_unlock_all(void) { pthread_mutex_unlock(&rf_outpool_lock); }

/* The handler as numpy takes it (PyDataMem_SetHandler); call once. */
static PyObject* rf_outpool_capsule(void)
{
    pthread_atfork(rf_outpool_lock_all, rf_outpool_unlock_all, rf_outpool_unlock_all);
    return PyCapsule_New(&rf_outpool_handler, "mem_handler", NULL);
}

/* Gives every free block back to the allocator. */
static void rf_outpool_clear(void)
{
    void* drop[RF_OUTPOOL_SLOTS];
    int n, i;
    pthread_mutex_lock(&rf_outpool_lock);
    n = rf_outpool_count;
    for (i = 0; i < n; i++)
        drop[i] = rf_outpool_block[i];
    rf_outpool_count = 0;
    rf_outpool_bytes = 0;
    pthread_mutex_unlock(&rf_outpool_lock);
    for (i = 0; i < n; i++)
        free(drop[i]);
}

static void rf_outpool_stats(long* hits, long* misses, long* count, size_t* bytes)
{
    pthread_mutex_lock(&rf_outpool_lock);
    *hits = rf_outpool_hits;
    *misses = rf_outpool_misses;
    *count = rf_outpool_count;
    *bytes = rf_outpool_bytes;
    pthread_mutex_unlock(&rf_outpool_lock);
}

#endif
