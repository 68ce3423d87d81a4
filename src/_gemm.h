/* A small float GEMM against a pre-packed right-hand matrix, for the
 * per-step recurrent products of the kernels:
 *     forward   gates_t (N, G) += h (N, H) @ Wh (H, G)
 *     backward  dh      (N, H) += dA_t (N, G) @ Wh^T (G, H)
 * The right-hand matrix is the same at every step, but BLAS repacks it at
 * every call (OpenBLAS has no packed-weights API): at N = 32, H = 128 that
 * packing was ~15 % of an LSTM training step (docs/performance.md).  Here
 * it is packed once per sequence and each step runs only the micro-kernel.
 *
 * Packed layout: column panels of RF_NR = 16 columns; panel p holds
 * B[k, 16p : 16p + 16] for k = 0..K-1 contiguously (K x 16, zero-padded
 * past the last column), and panels start rf_panel_stride(K) = (K + 1) x 16
 * floats apart: one spare 64-byte line after each.  Without it, for K a
 * multiple of 64 (H = 64, 256, 512; the dW products' 512-row chunks) every
 * panel started at the same offset modulo 4 KB, so the packing, which
 * writes row k of B into all panels in turn, sent all its stores to one
 * L1 set (K = 256, N = 1024: 94 us a pack, 20 us with the spare line;
 * K = 64, N = 256: 2.4 -> 1.1 us; docs/performance.md item 45).
 * Micro-kernel: 6 rows x 16 columns of C in twelve 8-float accumulators
 * (AVX2 + FMA, the widest path Zen 4 executes at full rate), A broadcast
 * from its rows, C updated once per tile.
 *
 * The kernel needs AVX2 and FMA; rf_gemm_packed_supported() says whether
 * this CPU has them (and this build was made with GCC/clang on x86-64).
 * When it is 0 the callers use BLAS instead (src/_blas.pxd); the
 * environment variable RNNFAST_NO_PACKED_GEMM=1 forces that, and
 * rnnfast._core.use_packed_gemm(False) does at run time (A/B timings).
 */
#ifndef RNNFAST_GEMM_H
#define RNNFAST_GEMM_H

#include <stdlib.h>
#include <string.h>

#include "_compiler.h"

#define RF_NR 16
#define RF_MR 6
#define RF_WMR 8     /* rows of a wide tile in rf_gemm_packed_f (rf_tiles) */
/* Rows of a two-panel AVX-512 tile at most (24 accumulators, two B
 * vectors: 26 of the 32 registers).  Every tile reads its panels' B once,
 * so fewer, taller tiles read B fewer times: an LSTM's step product at
 * `zaremba-medium` (20 rows, a 6.8 MB Wh streamed from L3 every step) ran
 * in three tiles of 7, 7 and 6 rows, and at two threads (10 rows each) in
 * two of 5; on an Intel server core 1.14x and 1.33x faster in two and one
 * of 10 (docs/performance.md item 185).  rf_use_tall_tiles(0) keeps 8. */
#define RF_TALL_MR 12

/* Floats from the start of one packed panel to the next. */
static inline long rf_panel_stride(long K)
{
    return (K + 1) * RF_NR;
}

static inline long rf_packed_size(long K, long N)
{
    return rf_panel_stride(K) * ((N + RF_NR - 1) / RF_NR);
}

/* Buffers for packed matrices, kept between calls.  A packed Wh or a
 * chunk of packed gate gradients is 0.2-7 MB; glibc serves such sizes by
 * mmap, so each call faulted fresh pages in (3 % of a GRU training step at
 * zaremba-small, perf).  rf_buf_alloc takes a kept buffer that is large
 * enough (rf_buf_alloc_keyed), rf_buf_free keeps it for the next call: at most
 * RF_BUF_SLOTS buffers of at most RF_BUF_MAX bytes, RF_BUF_TOTAL in all
 * (per kernel module), the rest goes back to the allocator.  A spinlock
 * guards the slots (kernel calls from several Python threads run at
 * once); compilers without GCC's atomics just use malloc and free.  Each
 * buffer carries its capacity, what it holds and when it was handed out in
 * a 64-byte header.  16 slots (8 before) keep the packings of an 8-layer
 * RNN's inference (two per layer) for its next call. */
#define RF_BUF_SLOTS 16
#define RF_BUF_MAX ((size_t) 32 << 20)
#define RF_BUF_TOTAL ((size_t) 64 << 20)
#define RF_BUF_HEAD 64

#if defined(__GNUC__) || defined(__clang__)
static char* rf_buf_slot[RF_BUF_SLOTS];
static size_t rf_buf_kept;
static int rf_buf_lock_word;

static void rf_buf_lock(void)
{
    while (__atomic_exchange_n(&rf_buf_lock_word, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&rf_buf_lock_word, __ATOMIC_RELAXED))
            ;
}

static void rf_buf_unlock(void) { __atomic_store_n(&rf_buf_lock_word, 0, __ATOMIC_RELEASE); }
#define RF_BUF_CACHE 1
#else
#define RF_BUF_CACHE 0
#endif

/* 64-byte aligned memory (free() releases it), so that each 16-float row
 * of a packed panel is one cache line: glibc's malloc aligns to 16 bytes,
 * which split 3 rows in 4 over two lines, for the packing's stores and
 * for every load of the micro-kernels. */
static void* rf_malloc64(size_t bytes)
{
#if defined(_POSIX_C_SOURCE) || defined(__unix__) || defined(__APPLE__)
    void* p = NULL;
    return posix_memalign(&p, 64, bytes) == 0 ? p : NULL;
#else
    return malloc(bytes);
#endif
}

static inline size_t rf_buf_cap(const char* b) { return *(const size_t*) b; }

/* What a buffer last held, in its header after the capacity: the address
 * of the matrix packed into it and a tag of the packing (rf_pack_tag), or
 * NULL and 0 (anything else). */
static inline const void* rf_buf_key(const char* b) { return ((const void* const*) b)[1]; }
static inline size_t rf_buf_tag(const char* b) { return ((const size_t*) b)[2]; }

/* When a buffer was last handed out or given back (rf_buf_clock's count
 * of hand-outs then). */
static inline size_t rf_buf_when(const char* b) { return ((const size_t*) b)[3]; }

/* The pack epoch a buffer's packing was made in and the matrix it also
 * depends on (rf_buf_stamp), or 0 and NULL.  Calls inside one epoch
 * (rnnfast._core.packs_kept: a generate loop, whose weights do not change
 * between its steps) use a buffer stamped with their epoch as it is,
 * instead of comparing its rows again.  Any hand-out to another matrix,
 * packing or use clears them. */
static inline size_t rf_buf_epoch(const float* p)
{
    return ((const size_t*) ((const char*) p - RF_BUF_HEAD))[4];
}

static inline const void* rf_buf_also(const float* p)
{
    return ((const void* const*) ((const char*) p - RF_BUF_HEAD))[5];
}

static inline void rf_buf_stamp(float* p, size_t epoch, const void* also)
{
    ((size_t*) ((char*) p - RF_BUF_HEAD))[4] = epoch;
    ((const void**) ((char*) p - RF_BUF_HEAD))[5] = also;
}

/* Packs an epoch let stand (for tests). */
static long rf_packs_trusted_count;

#if RF_BUF_CACHE
static void RF_MAYBE_UNUSED rf_count_trusted(void)
{
    __atomic_fetch_add(&rf_packs_trusted_count, 1, __ATOMIC_RELAXED);
}

static long RF_MAYBE_UNUSED rf_packs_trusted(void)
{
    return __atomic_load_n(&rf_packs_trusted_count, __ATOMIC_RELAXED);
}
#else           /* no kept buffers: no stamp ever matches */
static void RF_MAYBE_UNUSED rf_count_trusted(void) { rf_packs_trusted_count++; }
static long RF_MAYBE_UNUSED rf_packs_trusted(void) { return rf_packs_trusted_count; }
#endif

static inline size_t rf_pack_tag(long K, long N, int itemsize)
{
    return ((size_t) K << 34) ^ ((size_t) N << 4) ^ (size_t) itemsize;
}

static int rf_repack_switch = 1;        /* rf_use_repack(0) turns it off */

/* For A/B timings and tests: 0 packs every matrix in full into any buffer
 * (rf_repack_b_f stores every row; no buffer is picked by what it held). */
static void RF_MAYBE_UNUSED rf_use_repack(int on) { rf_repack_switch = on != 0; }

/* Buffers handed out and not back yet, their bytes, and the count of all
 * handed out (under the lock). */
static int rf_buf_out;
static size_t rf_buf_out_bytes, rf_buf_clock;

#if RF_BUF_CACHE
/* A kept buffer unused for RF_BUF_IDLE hand-outs belongs to other work
 * than the calls now running (a training run before this inference,
 * another network), whose buffers are each used once a call.  When the
 * slots are full, an idle one goes first (the longest unused), and only
 * then the old rule applies: the smallest goes if it is smaller than the
 * buffer given back, so that the large buffers a call needs stay (each
 * new one faults its pages in).  Without idleness, slots full of larger
 * buffers from earlier work never took an inference call's packings. */
#define RF_BUF_IDLE 64

static inline int rf_buf_idle(const char* b)
{
    return rf_buf_clock - rf_buf_when(b) > RF_BUF_IDLE;
}

static inline int rf_buf_evict_before(const char* a, const char* b)
{
    if (rf_buf_idle(a) != rf_buf_idle(b))
        return rf_buf_idle(a);
    return rf_buf_idle(a) ? rf_buf_when(a) < rf_buf_when(b) : rf_buf_cap(a) < rf_buf_cap(b);
}
#endif

/* A buffer of at least nfloats floats: a kept one large enough that last
 * held (key, tag), when key is not NULL (rf_repack_b_f then finds the
 * packing there already); else the smallest kept one large enough that
 * holds no packing (key NULL).  When every one large enough holds another
 * matrix's packing, a new one if the slots and RF_BUF_TOTAL can keep it
 * beside them, idle buffers aside (rf_buf_free evicts those first), so
 * that an inference call's packings, all its layers', stay for the next
 * call; else the one of those unused the longest (another network's, most
 * likely).  Without setting the idle aside, slots full of an earlier
 * test's small buffers had two layers' packings take each other's buffer
 * at every call. */
static float* rf_buf_alloc_keyed(size_t nfloats, const void* key, size_t tag)
{
    size_t need = (nfloats * sizeof(float) + 63) & ~(size_t) 63;
    char* b = NULL;
    int matched = 0;
#if RF_BUF_CACHE
    int i, kept = 0, idle = 0, best = -1, plain = -1, packing = -1;
    size_t got = need, when, idle_bytes = 0;
    if (!rf_repack_switch)
        key = NULL;
    rf_buf_lock();
    for (i = 0; i < RF_BUF_SLOTS; i++) {
        const char* c = rf_buf_slot[i];
        if (c == NULL)
            continue;
        kept++;
        if (rf_buf_idle(c)) {
            idle++;
            idle_bytes += rf_buf_cap(c);
        }
        if (rf_buf_cap(c) < need)
            continue;
        if (key != NULL && rf_buf_key(c) == key && rf_buf_tag(c) == tag)
            best = i;
        else if (rf_buf_key(c) == NULL) {
            if (plain < 0 || rf_buf_cap(c) < rf_buf_cap(rf_buf_slot[plain]))
                plain = i;
        } else if (packing < 0 || rf_buf_when(c) < rf_buf_when(rf_buf_slot[packing])) {
            packing = i;
        }
    }
    matched = best >= 0;
    if (best < 0)
        best = plain;
    if (best < 0 && packing >= 0 &&
        !(kept - idle + rf_buf_out < RF_BUF_SLOTS &&
          rf_buf_kept - idle_bytes + rf_buf_out_bytes + need <= RF_BUF_TOTAL))
        best = packing;
    if (best >= 0) {
        b = rf_buf_slot[best];
        rf_buf_slot[best] = NULL;
        got = rf_buf_cap(b);
        rf_buf_kept -= got;
    }
    rf_buf_out++;
    rf_buf_out_bytes += got;
    when = ++rf_buf_clock;
    rf_buf_unlock();
#endif
    if (b == NULL) {
        b = (char*) rf_malloc64(RF_BUF_HEAD + need);
        if (b == NULL) {
#if RF_BUF_CACHE
            rf_buf_lock();
            rf_buf_out--;
            rf_buf_out_bytes -= need;
            rf_buf_unlock();
#endif
            return NULL;
        }
        *(size_t*) b = need;
    }
    ((const void**) b)[1] = key;
    ((size_t*) b)[2] = key != NULL ? tag : 0;
    if (!matched)               /* its packing, if any, was another's */
        rf_buf_stamp((float*) (b + RF_BUF_HEAD), 0, NULL);
#if RF_BUF_CACHE
    ((size_t*) b)[3] = when;
#endif
    return (float*) (b + RF_BUF_HEAD);
}

static float* rf_buf_alloc(size_t nfloats) { return rf_buf_alloc_keyed(nfloats, NULL, 0); }

static void rf_buf_free(float* p)
{
    char* b;
    if (p == NULL)
        return;
    b = (char*) p - RF_BUF_HEAD;
#if RF_BUF_CACHE
    {
        int i, low = -1;
        char* out = b;          /* what goes back to the allocator */
        rf_buf_lock();
        rf_buf_out--;
        rf_buf_out_bytes -= rf_buf_cap(b);
        ((size_t*) b)[3] = rf_buf_clock;        /* last used now */
        if (rf_buf_cap(b) <= RF_BUF_MAX) {
            for (i = 0; i < RF_BUF_SLOTS; i++) {
                if (rf_buf_slot[i] == NULL) {
                    low = i;
                    break;
                }
                if (low < 0 || rf_buf_evict_before(rf_buf_slot[i], rf_buf_slot[low]))
                    low = i;
            }
            /* an empty slot, or evict an idle one, or the smallest if smaller */
            if (rf_buf_slot[low] == NULL || rf_buf_idle(rf_buf_slot[low]) ||
                rf_buf_cap(rf_buf_slot[low]) < rf_buf_cap(b)) {
                size_t freed = rf_buf_slot[low] ? rf_buf_cap(rf_buf_slot[low]) : 0;
                if (rf_buf_kept - freed + rf_buf_cap(b) <= RF_BUF_TOTAL) {
                    out = rf_buf_slot[low];
                    rf_buf_slot[low] = b;
                    rf_buf_kept += rf_buf_cap(b) - freed;
                }
            }
        }
        rf_buf_unlock();
        free(out);
        return;
    }
#else
    free(b);
#endif
}

/* The packing and the driver of the parameter-gradient products are
 * plain C copies and sums: compiled three times (SSE2, AVX2, AVX-512) like
 * the cells' passes (src/_cells.h, RF_PASS), the loader picking the
 * widest the CPU runs.  As SSE2 alone, rf_gemm_tn_f's own copies were
 * 4.4 % of an LSTM training step at `small` (perf, docs/performance.md
 * item 51). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    defined(__linux__) && __GNUC__ >= 8 && !defined(RNNFAST_NO_CLONES)
#define RF_CLONED static __attribute__((target_clones("default", "avx2", "avx512f")))
#else
#define RF_CLONED static
#endif

/* One full panel from B^T: dst[k * 16 + j] = src[j * ldb + k], j < 16. */
static void rf_pack_bt_panel(const float* src, long ldb, long K, float* dst);

/* Bp <- B (K, N) in panels pstride floats apart (rf_panel_stride(K) for
 * a whole B; a larger one packs B's rows into rows 0..K-1 of the panels
 * of a taller matrix).  trans = 0: B is row-major (K, N) with row
 * stride ldb; trans = 1: B^T is given, i.e. row-major (N, K) with row
 * stride ldb.  Runs once per kernel call, so it matters at small sizes
 * (N = 1, H = 64: two packs were half of a one-step call): full panels
 * copy 16 contiguous floats a row (trans = 0) or walk 16 rows of B^T
 * in step (trans = 1). */
/* dst[0:16] = src[0:16].  A plain loop compiled to 16 scalar moves (GCC
 * could not rule out aliasing; perf showed the pack as a third of a
 * one-step forward call), and memcpy to a call into libc; unaligned
 * 16-byte vectors are SSE2, which every x86-64 has. */
static inline void rf_copy_row16(float* dst, const float* src)
{
#if defined(__GNUC__) || defined(__clang__)
    /* One 64-byte vector: GCC splits it into what the function's target
     * has (four SSE2 moves, two AVX2 ones, one AVX-512 one: RF_CLONED). */
    typedef float v16 __attribute__((vector_size(64), aligned(4)));
    *(v16*) dst = *(const v16*) src;
#else
    int j;
    for (j = 0; j < RF_NR; j++)
        dst[j] = src[j];
#endif
}

/* sum[0:16] += src[k * ld : k * ld + 16] for k = 0..rows-1, in that order
 * (one vector of sums, loaded and stored once). */
static inline void rf_add_rows16(float* sum, const float* src, long ld, long rows)
{
    long k;
#if defined(__GNUC__) || defined(__clang__)
    typedef float v16 __attribute__((vector_size(64), aligned(4)));
    v16 acc = *(v16*) sum;
    for (k = 0; k < rows; k++)
        acc += *(const v16*) (src + k * ld);
    *(v16*) sum = acc;
#else
    int j;
    for (k = 0; k < rows; k++)
        for (j = 0; j < RF_NR; j++)
            sum[j] += src[k * ld + j];
#endif
}

/* Rows of B a block of rf_pack_b_sum_f: 16 measured best of 4, 8, 16 and
 * 32 with B and the packed buffer in memory (benchmarks/c/pack_blocks.c). */
#define RF_PACK_ROWS 16

/* The body of rf_pack_b_sum_f and _d for a row-major B (trans = 0): its
 * `full` full panels of NR columns by blocks of RF_PACK_ROWS rows, panel by
 * panel in a block (COPY_ROW(dst, src) one panel row, ADD_ROWS(sum, src,
 * ld, rows) a block's column sums), and the ragged columns' sums; uses the
 * caller's B, ldb, K, N, Bp, pstride, colsum and full. */
#define RF_PACK_FULL_PANELS(T, NR, COPY_ROW, ADD_ROWS)                        \
    do {                                                                      \
        long k0_, kb_, p_, k_, j_;                                            \
        for (k0_ = 0; k0_ < K; k0_ += kb_) {                                  \
            kb_ = K - k0_ < RF_PACK_ROWS ? K - k0_ : RF_PACK_ROWS;            \
            for (p_ = 0; p_ < full; p_++) {                                   \
                const T* src_ = B + k0_ * ldb + p_ * (NR);                    \
                T* dst_ = Bp + p_ * pstride + k0_ * (NR);                     \
                for (k_ = 0; k_ < kb_; k_++)                                  \
                    COPY_ROW(dst_ + k_ * (NR), src_ + k_ * ldb);              \
                if (colsum != NULL)                                           \
                    ADD_ROWS(colsum + p_ * (NR), src_, ldb, kb_);             \
            }                                                                 \
            if (colsum != NULL)                                               \
                for (k_ = k0_; k_ < k0_ + kb_; k_++)                          \
                    for (j_ = full * (NR); j_ < N; j_++)                      \
                        colsum[j_] += B[k_ * ldb + j_];                       \
        }                                                                     \
    } while (0)

RF_CLONED void rf_pack_b_sum_f(const float* B, long ldb, int trans, long K, long N,
                               float* Bp, long pstride, float* colsum)
{
    long p, k, j, j0, w, full = N / RF_NR;
    float* dst;
    if (!trans) {
        /* Blocks of RF_PACK_ROWS rows, panel by panel within a block: each
         * panel gets 16 consecutive rows (1 KB) at a time.  Row by row,
         * every row's 64-byte stores went to all N/16 panels in turn, more
         * write streams than the prefetchers follow: with the packed
         * buffer in memory, the stores stalled (78 % of the pack's samples
         * on one store, 3.6 % of an LSTM training step at zaremba-small;
         * docs/performance.md item 134).  Panel by panel over all of B
         * read 64 bytes of every row of a large B per pass (~2.7 % of an
         * LSTM training step at `small`); a block's rows stay in L1/L2.
         * colsum (N), when given, gets B's column sums in the same pass
         * (the bias gradient, without another pass over the gate
         * gradients), each column's rows added in row order as before. */
        RF_PACK_FULL_PANELS(float, RF_NR, rf_copy_row16, rf_add_rows16);
    }
    for (p = trans ? 0 : full; p * RF_NR < N; p++) {
        j0 = p * RF_NR;
        w = N - j0 < RF_NR ? N - j0 : RF_NR;
        dst = Bp + p * pstride;
        if (w == RF_NR) {
            rf_pack_bt_panel(B + j0 * ldb, ldb, K, dst);
        } else {
            for (k = 0; k < K; k++) {
                for (j = 0; j < w; j++)
                    dst[k * RF_NR + j] = trans ? B[(j0 + j) * ldb + k] : B[k * ldb + j0 + j];
                for (; j < RF_NR; j++)
                    dst[k * RF_NR + j] = 0.0f;
            }
        }
    }
}

static void rf_pack_b_f(const float* B, long ldb, int trans, long K, long N, float* Bp)
{
    rf_pack_b_sum_f(B, ldb, trans, K, N, Bp, rf_panel_stride(K), NULL);
}

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && \
    !defined(RNNFAST_NO_PACKED_GEMM)
#define RF_HAVE_PACKED 1

#include <cpuid.h>
#include <immintrin.h>

typedef float rf_v8 __attribute__((vector_size(32), aligned(4)));

/* The transposed packing walked 16 rows of B^T a float at a time and wrote
 * with a 64-byte stride: at H = 64 the two such packs of a backward call
 * (Wh^T, Wx^T) took more than half of a one-step call.  Here 8 x 8 blocks
 * are transposed in registers and stored as whole rows of the panel. */
__attribute__((target("avx2"))) static void
rf_pack_bt_panel(const float* src, long ldb, long K, float* dst)
{
    long k, j, h;
    for (h = 0; h < RF_NR; h += 8) {
        const float* s = src + h * ldb;
        for (k = 0; k + 8 <= K; k += 8) {
            __m256 r0 = _mm256_loadu_ps(s + 0 * ldb + k), r1 = _mm256_loadu_ps(s + 1 * ldb + k);
            __m256 r2 = _mm256_loadu_ps(s + 2 * ldb + k), r3 = _mm256_loadu_ps(s + 3 * ldb + k);
            __m256 r4 = _mm256_loadu_ps(s + 4 * ldb + k), r5 = _mm256_loadu_ps(s + 5 * ldb + k);
            __m256 r6 = _mm256_loadu_ps(s + 6 * ldb + k), r7 = _mm256_loadu_ps(s + 7 * ldb + k);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float* d = dst + k * RF_NR + h;
            _mm256_storeu_ps(d + 0 * RF_NR, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(d + 1 * RF_NR, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(d + 2 * RF_NR, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(d + 3 * RF_NR, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(d + 4 * RF_NR, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(d + 5 * RF_NR, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(d + 6 * RF_NR, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(d + 7 * RF_NR, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
        for (; k < K; k++)
            for (j = 0; j < 8; j++)
                dst[k * RF_NR + h + j] = s[j * ldb + k];
    }
}

/* Weights packed again into the buffer that packed them last.  Inference
 * after inference packs the same weights (rf_buf_alloc_keyed hands back
 * the buffer that held their packing), and at 2 threads the other core has
 * read that buffer in the last call: each store of the pack had to take
 * its line back from that core's cache.  The 160 KB Wh and Wx of an RNN
 * at zaremba-small took 39 us to pack on the calling thread at 2 threads
 * against 12 at 1 thread (perf, 10 % of an inference call), and the other
 * core then read the new lines from this one's cache.  So a repack
 * compares each 64-byte row of a panel with what the buffer holds and
 * stores nothing while the bytes agree; from the first row that differs
 * (the weights changed: an update in place, or another matrix) it stores
 * every row, as the plain pack does.  The bytes left in Bp are the same
 * either way.  rf_repacks_kept counts the packs that stored nothing (for
 * tests). */
static long rf_repacks_kept_count;

static long RF_MAYBE_UNUSED rf_repacks_kept(void)
{
    return __atomic_load_n(&rf_repacks_kept_count, __ATOMIC_RELAXED);
}

/* dst[0:64 bytes] = src's, unless `same` and the bytes agree already;
 * returns whether they still all agree. */
__attribute__((target("avx2"))) static inline int
rf_copy64_if_changed(void* dst, const void* src, int same)
{
    __m256i a = _mm256_loadu_si256((const __m256i*) src);
    __m256i b = _mm256_loadu_si256((const __m256i*) src + 1);
    if (same) {
        __m256i x = _mm256_or_si256(
            _mm256_xor_si256(a, _mm256_loadu_si256((const __m256i*) dst)),
            _mm256_xor_si256(b, _mm256_loadu_si256((const __m256i*) dst + 1)));
        if (_mm256_testz_si256(x, x))
            return 1;
    }
    _mm256_storeu_si256((__m256i*) dst, a);
    _mm256_storeu_si256((__m256i*) dst + 1, b);
    return 0;
}

/* NAME(B, ldb, K, N, Bp, pstride): B row-major (K, N) packed into Bp as
 * rf_pack_b_sum_f / _d packs it (trans = 0, no sums; panels of NR T's, a
 * row of a panel 64 bytes), through rf_copy64_if_changed; the ragged
 * panel's rows, zero-padded, go through a row on the stack.  Returns 1
 * when it stored nothing. */
#define RF_DEFINE_REPACK(NAME, T, NR, ADD_ROWS)                               \
    __attribute__((target("avx2"))) static int                               \
    NAME(const T* B, long ldb, long K, long N, T* Bp, long pstride)           \
    {                                                                         \
        const long full = N / (NR);                                           \
        T* colsum = NULL;              /* RF_PACK_FULL_PANELS: no sums */     \
        T row[NR];                                                            \
        long p, k, j;                                                         \
        int same = rf_repack_switch;                                          \
        RF_PACK_FULL_PANELS(T, NR, RF_COPY_ROW_IF_CHANGED, ADD_ROWS);         \
        for (p = full; p * (NR) < N; p++)                                     \
            for (k = 0; k < K; k++) {                                         \
                for (j = 0; j < (NR); j++)                                    \
                    row[j] = p * (NR) + j < N ? B[k * ldb + p * (NR) + j] : (T) 0; \
                same = rf_copy64_if_changed(Bp + p * pstride + k * (NR), row, same); \
            }                                                                 \
        if (same)                                                             \
            __atomic_fetch_add(&rf_repacks_kept_count, 1, __ATOMIC_RELAXED);  \
        return same;                                                          \
    }
#define RF_COPY_ROW_IF_CHANGED(dst, src) (same = rf_copy64_if_changed(dst, src, same))

RF_DEFINE_REPACK(rf_repack_b_f, float, RF_NR, rf_add_rows16)

/* C[0, 0:W] (+)= (lo, hi), W = 2 * (T's in V), or only C[0, 0:nc] for a
 * ragged last panel.  The ragged path goes through a row buffer: indexing
 * lo and hi themselves by a variable j made GCC store every accumulator of
 * the caller to the stack after its k loop, ragged or not. */
#define RF_DEFINE_STORE_ROW_T(NAME, T, V, TARGET)                             \
    __attribute__((target(TARGET))) static inline void                        \
    NAME(T* C, V lo, V hi, long nc, int accumulate)                           \
    {                                                                         \
        const long half = (long) (sizeof(V) / sizeof(T));                     \
        T row[2 * sizeof(V) / sizeof(T)];                                     \
        long j;                                                               \
        if (nc == 2 * half) {                                                 \
            if (accumulate) {                                                 \
                *(V*) C += lo;                                                \
                *(V*) (C + half) += hi;                                       \
            } else {                                                          \
                *(V*) C = lo;                                                 \
                *(V*) (C + half) = hi;                                        \
            }                                                                 \
            return;                                                           \
        }                                                                     \
        *(V*) row = lo;                                                       \
        *(V*) (row + half) = hi;                                              \
        for (j = 0; j < nc; j++)                                              \
            C[j] = accumulate ? C[j] + row[j] : row[j];                       \
    }

#define RF_DEFINE_STORE_ROW(NAME, V, TARGET) RF_DEFINE_STORE_ROW_T(NAME, float, V, TARGET)

/* One 16-column panel of one row (AVX2). */
RF_DEFINE_STORE_ROW(rf_store_row16, rf_v8, "avx2,fma")

/* One MR x 16 tile: C[0:MR, 0:nc] (+)= A[0:MR, 0:K] @ panel.  MR is a
 * compile-time constant at every call, and each row's two accumulators are
 * variables of their own (an array of them, indexed in loops, was kept on
 * the stack by GCC: 12 stores to zero it and 12 stores and loads around the
 * C update, in every tile).  nc < 16 only for the last panel of a ragged N.
 * A_IK(i) is A's element of row i at k; tile_rows is MR. */
#define RF_ROW_INIT(i, V)                                                     \
    V c##i##0 = (V){0}, c##i##1 = c##i##0;                                    \
    if (tile_rows > i) {                                                      \
        /* C's rows are far apart (a cache line each): start fetching */      \
        /* them now, so the update after the k loop does not wait.    */      \
        __builtin_prefetch(C + i * ldc, 1, 3);                                \
        __builtin_prefetch(C + i * ldc + (long) (sizeof(V) / sizeof(*C)) - 1, \
                           1, 3);                                             \
        __builtin_prefetch(C + i * ldc + 2 * (long) (sizeof(V) / sizeof(*C)) \
                           - 1, 1, 3);                                        \
    }
#define RF_ROW_FMA(i, A_IK)                                                   \
    if (tile_rows > i) {                                                      \
        const __typeof__(*C) av = A_IK(i);    /* float or double */          \
        c##i##0 += av * b0;                                                   \
        c##i##1 += av * b1;                                                   \
    }
#define RF_ROW_STORE(i, STORE)                                                \
    if (tile_rows > i)                                                        \
        STORE(C + i * ldc, c##i##0, c##i##1, nc, accumulate);
/* V: the accumulators' vector type; B0, B1: the two vectors of B at k;
 * STORE: the function that writes a row's pair of accumulators to C. */
#define RF_TILE_BODY_V(MR, A_IK, V, B0, B1, STORE)                            \
    {                                                                         \
        const long tile_rows = MR;                                            \
        long k;                                                               \
        RF_ROW_INIT(0, V) RF_ROW_INIT(1, V) RF_ROW_INIT(2, V)                 \
        RF_ROW_INIT(3, V) RF_ROW_INIT(4, V) RF_ROW_INIT(5, V)                 \
        RF_ROW_INIT(6, V) RF_ROW_INIT(7, V) RF_ROW_INIT(8, V)                 \
        RF_ROW_INIT(9, V) RF_ROW_INIT(10, V) RF_ROW_INIT(11, V)               \
        for (k = 0; k < K; k++) {                                             \
            const V b0 = B0;                                                  \
            const V b1 = B1;                                                  \
            RF_ROW_FMA(0, A_IK) RF_ROW_FMA(1, A_IK) RF_ROW_FMA(2, A_IK)       \
            RF_ROW_FMA(3, A_IK) RF_ROW_FMA(4, A_IK) RF_ROW_FMA(5, A_IK)       \
            RF_ROW_FMA(6, A_IK) RF_ROW_FMA(7, A_IK) RF_ROW_FMA(8, A_IK)       \
            RF_ROW_FMA(9, A_IK) RF_ROW_FMA(10, A_IK) RF_ROW_FMA(11, A_IK)     \
        }                                                                     \
        RF_ROW_STORE(0, STORE) RF_ROW_STORE(1, STORE) RF_ROW_STORE(2, STORE)  \
        RF_ROW_STORE(3, STORE) RF_ROW_STORE(4, STORE) RF_ROW_STORE(5, STORE)  \
        RF_ROW_STORE(6, STORE) RF_ROW_STORE(7, STORE) RF_ROW_STORE(8, STORE)  \
        RF_ROW_STORE(9, STORE) RF_ROW_STORE(10, STORE) RF_ROW_STORE(11, STORE) \
    }
/* One 16-column panel: the two halves of a panel row in two 8-float
 * vectors. */
#define RF_TILE_BODY(MR, A_IK)                                                \
    RF_TILE_BODY_V(MR, A_IK, rf_v8, *(const rf_v8*) (panel + k * RF_NR),      \
                   *(const rf_v8*) (panel + k * RF_NR + 8), rf_store_row16)

#define RF_A_ROWS(i) A[(i) * lda + k]
#define RF_A_PACKED(i) A[k * tile_rows + (i)]
/* rf_<P>tile_<MR>: A's rows at stride lda; rf_<P>ptile_<MR>: A packed
 * tile-major, A[k * MR + i] (rf_gemm_tn_f).  P is empty (AVX2) or w
 * (AVX-512, below); BODY is RF_TILE_BODY or RF_WIDE_BODY. */
#define RF_DEFINE_ROW_TILE(P, TARGET, BODY, MR)                               \
    __attribute__((target(TARGET), noinline)) static void                     \
    rf_##P##tile_##MR(long K, const float* A, long lda, const float* panel,   \
                      float* C, long ldc, long nc, int accumulate)            \
    BODY(MR, RF_A_ROWS)
#define RF_DEFINE_PACKED_TILE(P, TARGET, BODY, MR)                            \
    __attribute__((target(TARGET), noinline)) static void                     \
    rf_##P##ptile_##MR(long K, const float* A, const float* panel,            \
                       float* C, long ldc, long nc, int accumulate)           \
    BODY(MR, RF_A_PACKED)
#define RF_DEFINE_TILE(MR)                                                    \
    RF_DEFINE_ROW_TILE(, "avx2,fma", RF_TILE_BODY, MR)                        \
    RF_DEFINE_PACKED_TILE(, "avx2,fma", RF_TILE_BODY, MR)

RF_DEFINE_TILE(1)
RF_DEFINE_TILE(2)
RF_DEFINE_TILE(3)
RF_DEFINE_TILE(4)
RF_DEFINE_TILE(5)
RF_DEFINE_TILE(6)

/* AVX-512: two panels at once.  CPUs with two full-width 512-bit FMA
 * units (Zen 5, Intel server parts) run a 16-float FMA at the rate of an
 * 8-float one, which doubles the peak (OpenBLAS's sgemm: 209 GFLOP/s on
 * one Zen 5 core, where the AVX2 tiles above top out near 105).  A wide
 * tile is MR rows x 32 columns: panels p and p + 1 (the second starts
 * rf_panel_stride(K) floats after the first), one 16-float vector of each
 * per k: sixteen accumulators at MR = 8 (rf_gemm_packed_f), twelve at the
 * dW products' MR = 6.  The sums are the same FMAs in the same order
 * as the AVX2 tiles', so the results are bitwise the same. */
typedef float rf_v16 __attribute__((vector_size(64), aligned(4)));

/* Two 16-column panels of one row (AVX-512). */
RF_DEFINE_STORE_ROW(rf_store_row32, rf_v16, "avx512f")

#define RF_WIDE_BODY(MR, A_IK)                                                \
    RF_TILE_BODY_V(MR, A_IK, rf_v16, *(const rf_v16*) (panel + k * RF_NR),    \
                   *(const rf_v16*) (panel + rf_panel_stride(K) + k * RF_NR), \
                   rf_store_row32)
/* A family of AVX-512 tiles rf_<P>tile_1..8 (rf_gemm_packed_f) and
 * rf_<P>ptile_1..6 (rf_gemm_tn_f tiles at <= 6 rows) with one body. */
#define RF_DEFINE_WIDE_PAIR(P, BODY, MR)                                      \
    RF_DEFINE_ROW_TILE(P, "avx512f", BODY, MR)                                \
    RF_DEFINE_PACKED_TILE(P, "avx512f", BODY, MR)
#define RF_DEFINE_WIDE_FAMILY(P, BODY)                                        \
    RF_DEFINE_WIDE_PAIR(P, BODY, 1) RF_DEFINE_WIDE_PAIR(P, BODY, 2)           \
    RF_DEFINE_WIDE_PAIR(P, BODY, 3) RF_DEFINE_WIDE_PAIR(P, BODY, 4)           \
    RF_DEFINE_WIDE_PAIR(P, BODY, 5) RF_DEFINE_WIDE_PAIR(P, BODY, 6)           \
    RF_DEFINE_ROW_TILE(P, "avx512f", BODY, 7)                                 \
    RF_DEFINE_ROW_TILE(P, "avx512f", BODY, 8)

RF_DEFINE_WIDE_FAMILY(w, RF_WIDE_BODY)
/* The tall tiles (RF_TALL_MR): two panels only, rows at stride lda. */
RF_DEFINE_ROW_TILE(w, "avx512f", RF_WIDE_BODY, 9)
RF_DEFINE_ROW_TILE(w, "avx512f", RF_WIDE_BODY, 10)
RF_DEFINE_ROW_TILE(w, "avx512f", RF_WIDE_BODY, 11)
RF_DEFINE_ROW_TILE(w, "avx512f", RF_WIDE_BODY, 12)

/* AVX-512, one panel: the last panel of an N that is not a multiple of 32
 * (N = 208: 6 wide tiles and one panel of 16 columns; with at most 8
 * columns left, the half-panel tiles below).  On the AVX2 tile that panel
 * ran at a quarter of the wide tiles' rate a column (2 x 8 floats an FMA
 * over 6 rows, half of them padding): 2.2 % of an LSTM training step at
 * `zaremba-small` in its dX product and 2.2 % in the backward's step
 * products (docs/performance.md item 68).  Here one 16-float vector a row,
 * up to 8 rows.  Each element is the same FMA chain over k as in the AVX2
 * tile: bitwise the same results.
 *
 * C[0:nc] (+)= the nc first floats of one vector v (a one-vector row): */
#define RF_DEFINE_STORE_ONE(NAME, V, TARGET)                                  \
    __attribute__((target(TARGET))) static inline void                        \
    NAME(float* C, V v, long nc, int accumulate)                              \
    {                                                                         \
        float row[sizeof(V) / sizeof(float)];                                 \
        long j;                                                               \
        if (nc == (long) (sizeof(V) / sizeof(float))) {                       \
            if (accumulate)                                                   \
                *(V*) C += v;                                                 \
            else                                                              \
                *(V*) C = v;                                                  \
            return;                                                           \
        }                                                                     \
        *(V*) row = v;    /* through a buffer, as in RF_DEFINE_STORE_ROW */   \
        for (j = 0; j < nc; j++)                                              \
            C[j] = accumulate ? C[j] + row[j] : row[j];                       \
    }
RF_DEFINE_STORE_ONE(rf_store_row16w, rf_v16, "avx512f")
/* A tile of one vector V a row (up to 8 rows, eight chains), STORE its
 * row store. */
#define RF_ROW1_INIT(i, V)                                                    \
    V c##i = (V){0};                                                          \
    if (tile_rows > i) {                                                      \
        __builtin_prefetch(C + i * ldc, 1, 3);                                \
        __builtin_prefetch(C + i * ldc + (long) (sizeof(V) / sizeof(float)) - 1, \
                           1, 3);                                             \
    }
#define RF_ROW1_FMA(i, A_IK)                                                  \
    if (tile_rows > i)                                                        \
        c##i += A_IK(i) * b0;
#define RF_ROW1_STORE(i, STORE)                                               \
    if (tile_rows > i)                                                        \
        STORE(C + i * ldc, c##i, nc, accumulate);
#define RF_ONE_VECTOR_BODY(MR, A_IK, V, STORE)                                \
    {                                                                         \
        const long tile_rows = MR;                                            \
        long k;                                                               \
        RF_ROW1_INIT(0, V) RF_ROW1_INIT(1, V) RF_ROW1_INIT(2, V)              \
        RF_ROW1_INIT(3, V) RF_ROW1_INIT(4, V) RF_ROW1_INIT(5, V)              \
        RF_ROW1_INIT(6, V) RF_ROW1_INIT(7, V) RF_ROW1_INIT(8, V)              \
        RF_ROW1_INIT(9, V) RF_ROW1_INIT(10, V) RF_ROW1_INIT(11, V)            \
        for (k = 0; k < K; k++) {                                             \
            const V b0 = *(const V*) (panel + k * RF_NR);                     \
            RF_ROW1_FMA(0, A_IK) RF_ROW1_FMA(1, A_IK) RF_ROW1_FMA(2, A_IK)    \
            RF_ROW1_FMA(3, A_IK) RF_ROW1_FMA(4, A_IK) RF_ROW1_FMA(5, A_IK)    \
            RF_ROW1_FMA(6, A_IK) RF_ROW1_FMA(7, A_IK) RF_ROW1_FMA(8, A_IK)    \
            RF_ROW1_FMA(9, A_IK) RF_ROW1_FMA(10, A_IK) RF_ROW1_FMA(11, A_IK)  \
        }                                                                     \
        RF_ROW1_STORE(0, STORE) RF_ROW1_STORE(1, STORE)                       \
        RF_ROW1_STORE(2, STORE) RF_ROW1_STORE(3, STORE)                       \
        RF_ROW1_STORE(4, STORE) RF_ROW1_STORE(5, STORE)                       \
        RF_ROW1_STORE(6, STORE) RF_ROW1_STORE(7, STORE)                       \
        RF_ROW1_STORE(8, STORE) RF_ROW1_STORE(9, STORE)                       \
        RF_ROW1_STORE(10, STORE) RF_ROW1_STORE(11, STORE)                     \
    }
#define RF_WIDE1_BODY(MR, A_IK) RF_ONE_VECTOR_BODY(MR, A_IK, rf_v16, rf_store_row16w)
RF_DEFINE_WIDE_FAMILY(w1, RF_WIDE1_BODY)
/* The dW products' tall tiles (RF_TALL_MR rows of packed A) need every
 * AVX-512 kind: the tiles of A are packed once for all panels. */
#define RF_DEFINE_TALL_PTILES(P, TARGET, BODY)                                \
    RF_DEFINE_PACKED_TILE(P, TARGET, BODY, 7) RF_DEFINE_PACKED_TILE(P, TARGET, BODY, 8) \
    RF_DEFINE_PACKED_TILE(P, TARGET, BODY, 9) RF_DEFINE_PACKED_TILE(P, TARGET, BODY, 10) \
    RF_DEFINE_PACKED_TILE(P, TARGET, BODY, 11) RF_DEFINE_PACKED_TILE(P, TARGET, BODY, 12)
RF_DEFINE_TALL_PTILES(w, "avx512f", RF_WIDE_BODY)
RF_DEFINE_TALL_PTILES(w1, "avx512f", RF_WIDE1_BODY)

/* AVX2, half a panel: the last panel of an N with at most 8 columns left
 * (N = 200: 12 panels and 8 columns).  The one-panel tiles above spent a
 * 16-float FMA a row on it, half of it padding, which a core that runs a
 * 512-bit FMA as two halves (a Zen 4) pays in full: here one 8-float
 * vector a row, up to 8 rows (eight chains).  Each element is the same FMA
 * chain over k as in the other tiles: bitwise the same results
 * (docs/performance.md item 130). */
RF_DEFINE_STORE_ONE(rf_store_row8, rf_v8, "avx2,fma")
#define RF_HALF_BODY(MR, A_IK) RF_ONE_VECTOR_BODY(MR, A_IK, rf_v8, rf_store_row8)
#define RF_DEFINE_HALF_PAIR(MR)                                               \
    RF_DEFINE_ROW_TILE(h, "avx2,fma", RF_HALF_BODY, MR)                       \
    RF_DEFINE_PACKED_TILE(h, "avx2,fma", RF_HALF_BODY, MR)
RF_DEFINE_HALF_PAIR(1) RF_DEFINE_HALF_PAIR(2) RF_DEFINE_HALF_PAIR(3)
RF_DEFINE_HALF_PAIR(4) RF_DEFINE_HALF_PAIR(5) RF_DEFINE_HALF_PAIR(6)
RF_DEFINE_ROW_TILE(h, "avx2,fma", RF_HALF_BODY, 7)
RF_DEFINE_ROW_TILE(h, "avx2,fma", RF_HALF_BODY, 8)
RF_DEFINE_TALL_PTILES(h, "avx2,fma", RF_HALF_BODY)

typedef void (*rf_tile_fn)(long, const float*, long, const float*, float*, long, long, int);
typedef void (*rf_ptile_fn)(long, const float*, const float*, float*, long, long, int);
/* [kind][rows]: the tile for a tile of `rows` rows; kind (rf_tile_kind)
 * 0: one panel, AVX2; 1: two panels, AVX-512; 2: one panel, AVX-512;
 * 3: half a panel (at most 8 columns), AVX2. */
static const rf_tile_fn rf_tiles[4][RF_TALL_MR + 1] = {
    {NULL, rf_tile_1, rf_tile_2, rf_tile_3, rf_tile_4, rf_tile_5, rf_tile_6, NULL, NULL},
    {NULL, rf_wtile_1, rf_wtile_2, rf_wtile_3, rf_wtile_4, rf_wtile_5, rf_wtile_6,
     rf_wtile_7, rf_wtile_8, rf_wtile_9, rf_wtile_10, rf_wtile_11, rf_wtile_12},
    {NULL, rf_w1tile_1, rf_w1tile_2, rf_w1tile_3, rf_w1tile_4, rf_w1tile_5, rf_w1tile_6,
     rf_w1tile_7, rf_w1tile_8},
    {NULL, rf_htile_1, rf_htile_2, rf_htile_3, rf_htile_4, rf_htile_5, rf_htile_6,
     rf_htile_7, rf_htile_8}};
/* Up to RF_MR rows on the AVX2 tiles (kind 0), RF_TALL_MR on the others. */
static const rf_ptile_fn rf_ptiles[4][RF_TALL_MR + 1] = {
    {NULL, rf_ptile_1, rf_ptile_2, rf_ptile_3, rf_ptile_4, rf_ptile_5, rf_ptile_6},
    {NULL, rf_wptile_1, rf_wptile_2, rf_wptile_3, rf_wptile_4, rf_wptile_5, rf_wptile_6,
     rf_wptile_7, rf_wptile_8, rf_wptile_9, rf_wptile_10, rf_wptile_11, rf_wptile_12},
    {NULL, rf_w1ptile_1, rf_w1ptile_2, rf_w1ptile_3, rf_w1ptile_4, rf_w1ptile_5,
     rf_w1ptile_6, rf_w1ptile_7, rf_w1ptile_8, rf_w1ptile_9, rf_w1ptile_10, rf_w1ptile_11,
     rf_w1ptile_12},
    {NULL, rf_hptile_1, rf_hptile_2, rf_hptile_3, rf_hptile_4, rf_hptile_5,
     rf_hptile_6, rf_hptile_7, rf_hptile_8, rf_hptile_9, rf_hptile_10, rf_hptile_11,
     rf_hptile_12}};

static int rf_wide_switch = 1;     /* rf_use_wide_tiles(0) turns them off */
static int rf_tall_switch = 1;     /* rf_use_tall_tiles(0): at most RF_WMR rows */

/* Whether the wide tiles run: the CPU has AVX-512F, RNNFAST_NO_AVX512 is
 * unset (or 0) and rf_use_wide_tiles has not turned them off. */
static int rf_wide_in_use(void)
{
    static int cpu = -1;
    if (cpu < 0) {
        const char* off = getenv("RNNFAST_NO_AVX512");
        __builtin_cpu_init();
        cpu = __builtin_cpu_supports("avx512f") && !(off && off[0] && off[0] != '0');
    }
    return cpu && rf_wide_switch;
}

/* Whether the cores run a 512-bit FMA as two 256-bit halves: AMD's family
 * 0x19 (Zen 4; Zen 3 has no AVX-512).  There the AVX-512 GEMV's groups of
 * eight panels have no more FMA throughput than the AVX2 groups of four,
 * and a group of eight at K = 64 (33 KB) no longer fits L1 (32 KB), so a
 * step's walk, which starts where the last one ended, finds nothing of the
 * last group in it.  A Zen 5 (family 0x1a) runs them at full width: the
 * groups of eight were 1.11-1.64x faster there (docs/performance.md item
 * 43). */
static int rf_fma512_halves(void)
{
    static int halves = -1;
    if (halves < 0) {
        unsigned eax = 0, ebx = 0, ecx = 0, edx = 0, family;
        halves = 0;
        if (__get_cpuid(0, &eax, &ebx, &ecx, &edx) &&
                ebx == 0x68747541u && edx == 0x69746e65u && ecx == 0x444d4163u &&
                __get_cpuid(1, &eax, &ebx, &ecx, &edx)) {     /* "AuthenticAMD" */
            family = (eax >> 8) & 0xf;
            if (family == 0xf)
                family += (eax >> 20) & 0xff;
            halves = family == 0x19;
        }
    }
    return halves;
}

/* -1: the AVX-512 GEMV in groups of eight panels, except where
 * rf_fma512_halves() and the packed B is at most RF_GEMV4_MAX_BYTES: there
 * the AVX2 GEMV's groups of four (on a Zen 4, one process, interleaved:
 * LSTM inference N = 1, T = 100, D = H = 48-80 1.02-1.07x faster, GRU H =
 * 64-96 1.02-1.04x, RNN H = 128 1.04x; from 1 MB on, B streams from L2 or
 * L3 and the groups of eight were faster, H = 512-650 1.04-1.06x; item
 * 129).  0 or 1: never or always (rf_use_gemv_groups_of_8, for A/B timings
 * and tests; the results are bitwise the same). */
#define RF_GEMV4_MAX_BYTES (128L << 10)
static int rf_gemv8_switch = -1;

static int rf_gemv8_in_use(long K, long N)
{
    if (rf_gemv8_switch >= 0)
        return rf_gemv8_switch;
    return !rf_fma512_halves() ||
           rf_packed_size(K, N) * (long) sizeof(float) > RF_GEMV4_MAX_BYTES;
}

/* Half-panel tiles (rf_tile_kind) where rf_half_switch is on
 * (rf_use_half_panels). */
static int rf_half_switch = 1;

/* Panels from p on that one tile covers: 2 when wide tiles run and panel
 * p + 1 exists, else 1.  But where a 512-bit FMA runs as two halves (a
 * Zen 4) and panel p + 1 has at most 8 columns (N = 600: 37 panels and 8
 * columns), 1: panel p alone, then p + 1 on a half-panel tile, three
 * 256-bit FMAs a row and k instead of the pair's four (item 132). */
static inline long rf_tile_panels(int wide, long p, long N)
{
    if (!wide || (p + 1) * RF_NR >= N)
        return 1;
    return N - (p + 1) * RF_NR <= RF_NR / 2 && rf_half_switch && rf_fma512_halves() ? 1 : 2;
}

/* The row of rf_tiles / rf_ptiles for a tile of np panels and nc columns. */

static inline int rf_tile_kind(int wide, long np, long nc)
{
    return np == 2 ? 1 : (nc <= RF_NR / 2 && rf_half_switch) ? 3 : (wide ? 2 : 0);
}

static int rf_packed_switch = 1;   /* rf_use_packed_gemm(0) turns it off */

static int rf_gemm_packed_supported(void)
{
    static int cpu = -1;
    if (cpu < 0) {
        const char* off = getenv("RNNFAST_NO_PACKED_GEMM");
        __builtin_cpu_init();
        cpu = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
              !(off && off[0] && off[0] != '0');
    }
    return cpu && rf_packed_switch;
}

/* One row (M = 1, a batch of one sequence): a GEMV.  A 6-row tile cut to
 * one row would keep only two accumulator chains and wait on FMA latency,
 * so four panels go together (eight chains, one broadcast of a[k]).
 *
 * A GEMV reads the whole packed matrix once per step, and at H = 64 an
 * LSTM's Wh (64 KB) is twice L1: each step streamed it from L2, which set
 * the step's time.  So the panels are walked forwards and backwards on
 * alternate calls of a thread: a walk starts on the panels the previous
 * one ended on, still in L1. */
static __thread unsigned rf_gemv_calls;

/* The GEMV's parts, written once for both precisions (src/_gemm_d.h
 * instantiates them in double): T the element type, V the vector
 * accumulator type, NR the panel width in elements (a panel row is two
 * V's in the AVX2 parts, one V in the 8-panel part), PSTRIDE the packed
 * panel stride function, STORE the two-vector row store.
 *
 * a0..a7 (four panels' two halves, V each) += a[k0:k1] @ rows k0..k1-1 of
 * the four panels from b, s elements apart (a macro: the accumulators
 * must stay variables of the caller's, see RF_TILE_BODY). */
#define RF_GEMV4_SUM_T(k0, k1, T, V, NR)                                      \
    do {                                                                      \
        long k_;                                                              \
        for (k_ = (k0); k_ < (k1); k_++) {                                    \
            const T av_ = a[k_];                                              \
            const T* bk_ = b + k_ * (NR);                                     \
            a0 += av_ * *(const V*) (bk_);                                    \
            a1 += av_ * *(const V*) (bk_ + (NR) / 2);                         \
            a2 += av_ * *(const V*) (bk_ + s);                                \
            a3 += av_ * *(const V*) (bk_ + s + (NR) / 2);                     \
            a4 += av_ * *(const V*) (bk_ + 2 * s);                            \
            a5 += av_ * *(const V*) (bk_ + 2 * s + (NR) / 2);                 \
            a6 += av_ * *(const V*) (bk_ + 3 * s);                            \
            a7 += av_ * *(const V*) (bk_ + 3 * s + (NR) / 2);                 \
        }                                                                     \
    } while (0)
#define RF_GEMV4_SUM(k0, k1) RF_GEMV4_SUM_T(k0, k1, float, rf_v8, RF_NR)

/* Columns of C from panel p + q on that a store of `width` covers. */
#define RF_GEMV_NC(q, NR, width)                                              \
    (N - (p + (q)) * (NR) < (width) ? N - (p + (q)) * (NR) : (width))

/* NAME(N, K, a, Bp, C, accumulate, p): C's panels p..p+3 (+)= a @ them
 * (AVX2: eight chains of V, one broadcast of a[k]). */
/* The head of the 4- and 8-panel parts: NAME's signature, b at panel p,
 * panels s elements apart, eight accumulators a0..a7 of V at zero, in
 * variables of their own (see RF_TILE_BODY).  Opens the body's brace. */
#define RF_GEMV_GROUP_HEAD(NAME, TARGET, T, V, PSTRIDE)                       \
    __attribute__((target(TARGET))) static inline void                        \
    NAME(long N, long K, const T* a, const T* Bp, T* C, int accumulate, long p) \
    {                                                                         \
        const long s = PSTRIDE(K);        /* panel to panel */                \
        const T* b = Bp + p * s;                                              \
        V a0 = (V){0}, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,  \
          a7 = a0;

#define RF_DEFINE_GEMV_4PANELS(NAME, T, V, NR, PSTRIDE, STORE)                \
    RF_GEMV_GROUP_HEAD(NAME, "avx2,fma", T, V, PSTRIDE)                       \
        RF_GEMV4_SUM_T(0, K, T, V, NR);                                       \
        STORE(C + p * (NR), a0, a1, RF_GEMV_NC(0, NR, NR), accumulate);       \
        STORE(C + (p + 1) * (NR), a2, a3, RF_GEMV_NC(1, NR, NR), accumulate); \
        STORE(C + (p + 2) * (NR), a4, a5, RF_GEMV_NC(2, NR, NR), accumulate); \
        STORE(C + (p + 3) * (NR), a6, a7, RF_GEMV_NC(3, NR, NR), accumulate); \
    }

/* NAME(N, K, a, Bp, C, accumulate, p): panel p alone (two chains). */
#define RF_DEFINE_GEMV_1PANEL(NAME, T, V, NR, PSTRIDE, STORE)                 \
    __attribute__((target("avx2,fma"))) static inline void                    \
    NAME(long N, long K, const T* a, const T* Bp, T* C, int accumulate, long p) \
    {                                                                         \
        const T* b = Bp + p * PSTRIDE(K);                                     \
        V lo = (V){0}, hi = lo;                                               \
        long k;                                                               \
        for (k = 0; k < K; k++) {                                             \
            lo += a[k] * *(const V*) (b + k * (NR));                          \
            hi += a[k] * *(const V*) (b + k * (NR) + (NR) / 2);               \
        }                                                                     \
        STORE(C + p * (NR), lo, hi, RF_GEMV_NC(0, NR, NR), accumulate);       \
    }

/* NAME(N, K, a, Bp, C, accumulate, p): the AVX-512 GEMV, panels p..p+7,
 * one V (a whole panel row) accumulator each (eight chains, as above);
 * the same FMAs in the same order per element.  STORE writes two panels. */
#define RF_DEFINE_GEMV_8PANELS(NAME, T, V, NR, PSTRIDE, STORE)                \
    RF_GEMV_GROUP_HEAD(NAME, "avx512f", T, V, PSTRIDE)                        \
        long k;                                                               \
        for (k = 0; k < K; k++) {                                             \
            const T av = a[k];                                                \
            const T* bk = b + k * (NR);                                       \
            a0 += av * *(const V*) (bk);                                      \
            a1 += av * *(const V*) (bk + s);                                  \
            a2 += av * *(const V*) (bk + 2 * s);                              \
            a3 += av * *(const V*) (bk + 3 * s);                              \
            a4 += av * *(const V*) (bk + 4 * s);                              \
            a5 += av * *(const V*) (bk + 5 * s);                              \
            a6 += av * *(const V*) (bk + 6 * s);                              \
            a7 += av * *(const V*) (bk + 7 * s);                              \
        }                                                                     \
        /* two panels a store: (a0, a1) is panels p, p + 1, ... */           \
        STORE(C + p * (NR), a0, a1, RF_GEMV_NC(0, NR, 2 * (NR)), accumulate); \
        STORE(C + (p + 2) * (NR), a2, a3, RF_GEMV_NC(2, NR, 2 * (NR)),        \
              accumulate);                                                    \
        STORE(C + (p + 4) * (NR), a4, a5, RF_GEMV_NC(4, NR, 2 * (NR)),        \
              accumulate);                                                    \
        STORE(C + (p + 6) * (NR), a6, a7, RF_GEMV_NC(6, NR, 2 * (NR)),        \
              accumulate);                                                    \
    }

/* NAME(N, K, a, Bp, C, accumulate): the whole row, groups of eight panels
 * (G8; EIGHT 0: none, and G8 is never called), then of four (G4), then
 * single panels (G1): a single panel has two chains only and waits on the
 * FMA latency (with singles for all but the 8-groups, RNN inference at
 * `tiny`, 4 panels, ran 0.63x the AVX2 GEMV).  Forwards on even calls of
 * the thread, backwards on odd ones (rf_gemv_calls). */
#define RF_DEFINE_GEMV_WALK(NAME, TARGET, T, NR, EIGHT, G8, G4, G1)           \
    __attribute__((target(TARGET), noinline)) static void                     \
    NAME(long N, long K, const T* a, const T* Bp, T* C, int accumulate)       \
    {                                                                         \
        long np = (N + (NR) - 1) / (NR), g8 = (EIGHT) ? np / 8 : 0;           \
        long g4 = (np - 8 * g8) / 4, p;                                       \
        long p4 = 8 * g8, p1 = p4 + 4 * g4; /* where the 4-groups, the singles start */ \
        if (rf_gemv_calls++ & 1) {                                            \
            for (p = np - 1; p >= p1; p--)                                    \
                G1(N, K, a, Bp, C, accumulate, p);                            \
            for (p = p1 - 4; p >= p4; p -= 4)                                 \
                G4(N, K, a, Bp, C, accumulate, p);                            \
            for (p = p4 - 8; p >= 0; p -= 8)                                  \
                G8(N, K, a, Bp, C, accumulate, p);                            \
        } else {                                                              \
            for (p = 0; p < p4; p += 8)                                       \
                G8(N, K, a, Bp, C, accumulate, p);                            \
            for (p = p4; p < p1; p += 4)                                      \
                G4(N, K, a, Bp, C, accumulate, p);                            \
            for (p = p1; p < np; p++)                                         \
                G1(N, K, a, Bp, C, accumulate, p);                            \
        }                                                                     \
    }

RF_DEFINE_GEMV_4PANELS(rf_gemv_4panels, float, rf_v8, RF_NR, rf_panel_stride, rf_store_row16)
RF_DEFINE_GEMV_1PANEL(rf_gemv_1panel, float, rf_v8, RF_NR, rf_panel_stride, rf_store_row16)
RF_DEFINE_GEMV_8PANELS(rf_wgemv_8panels, float, rf_v16, RF_NR, rf_panel_stride,
                       rf_store_row32)
RF_DEFINE_GEMV_WALK(rf_wgemv_packed_f, "avx512f", float, RF_NR, 1, rf_wgemv_8panels,
                    rf_gemv_4panels, rf_gemv_1panel)
/* (no groups of eight on the AVX2 code: rf_gemv_4panels stands in for G8) */
RF_DEFINE_GEMV_WALK(rf_gemv_packed_f, "avx2,fma", float, RF_NR, 0, rf_gemv_4panels,
                    rf_gemv_4panels, rf_gemv_1panel)

/* The backward's GEMV, dh (+)= dA_t @ Wh^T at one row (N = H outputs, K =
 * G*H).  At H = 64 it is one group of four panels whose K = 192 (GRU) or
 * 256 (LSTM) rows are 48-64 KB, more than this L1: every step streamed
 * them from L2 (58 GFLOP/s against 97 from L1).  Walking the panels the
 * other way round, as the forward GEMV does, cannot help a single group,
 * and walking k backwards would change each output's sum with the call's
 * parity.  So K is cut into segments of 16 KB (RF_GEMV_SEG_K rows of a
 * group), each summed from zero into a partial of its own; the segments
 * are walked forwards and backwards on alternate calls, so that a step
 * starts on the segment the last one ended on, still in L1; and the
 * partials are added in segment order whatever the walk, so the result
 * does not depend on it (C (+)= ((p0 + p1) + p2) + ...).  Its bits then
 * differ from the row tiles' (one sum over all of K), which only the
 * training's dX at 2 threads can see, within float32 rounding (tests).
 * Groups of four panels (AVX2, eight chains as rf_gemv_4panels), then
 * single panels unsegmented; at eight panels and more on the wide tiles,
 * the forward's GEMV as it is (a Zen 5 runs the 8-groups' FMAs at full
 * width).  benchmarks/c/gemv_segments.c on a Zen 4: 1 x 256 x 64 0.568 ->
 * 0.516 us, 1 x 192 x 64 0.425 -> 0.348; LSTM and GRU training at N = 1,
 * D = H = 64 1.03x faster (docs/performance.md item 128). */
#define RF_GEMV_SEG_K 64
#define RF_GEMV_MAX_SEGS 16

__attribute__((target("avx2,fma"))) static inline void
rf_gemv_4panels_segments(long N, long K, const float* a, const float* Bp, float* C,
                         int accumulate, long p, int backwards)
{
    const long s = rf_panel_stride(K);     /* panel to panel */
    const float* b = Bp + p * s;
    const long segs = (K + RF_GEMV_SEG_K - 1) / RF_GEMV_SEG_K;
    rf_v8 part[RF_GEMV_MAX_SEGS][8];
    rf_v8 sum[8];
    long i, q;
    for (i = 0; i < segs; i++) {
        const long g = backwards ? segs - 1 - i : i;
        const long k0 = g * RF_GEMV_SEG_K;
        const long k1 = k0 + RF_GEMV_SEG_K < K ? k0 + RF_GEMV_SEG_K : K;
        rf_v8 a0 = (rf_v8){0, 0, 0, 0, 0, 0, 0, 0}, a1 = a0, a2 = a0, a3 = a0;
        rf_v8 a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        RF_GEMV4_SUM(k0, k1);
        part[g][0] = a0;
        part[g][1] = a1;
        part[g][2] = a2;
        part[g][3] = a3;
        part[g][4] = a4;
        part[g][5] = a5;
        part[g][6] = a6;
        part[g][7] = a7;
    }
    for (q = 0; q < 8; q++)
        sum[q] = part[0][q];
    for (i = 1; i < segs; i++)
        for (q = 0; q < 8; q++)
            sum[q] += part[i][q];
    for (q = 0; q < 4; q++)
        rf_store_row16(C + (p + q) * RF_NR, sum[2 * q], sum[2 * q + 1],
                       N - (p + q) * RF_NR < RF_NR ? N - (p + q) * RF_NR : RF_NR,
                       accumulate);
}

__attribute__((target("avx2,fma"), noinline)) static void
rf_gemv_segments_f(long N, long K, const float* a, const float* Bp, float* C,
                   int accumulate)
{
    long np = (N + RF_NR - 1) / RF_NR, groups = np / 4, g, p;
    const int backwards = rf_gemv_calls++ & 1;
    if (backwards) {
        for (p = np - 1; p >= 4 * groups; p--)
            rf_gemv_1panel(N, K, a, Bp, C, accumulate, p);
        for (g = groups - 1; g >= 0; g--)
            rf_gemv_4panels_segments(N, K, a, Bp, C, accumulate, 4 * g, 1);
    } else {
        for (g = 0; g < groups; g++)
            rf_gemv_4panels_segments(N, K, a, Bp, C, accumulate, 4 * g, 0);
        for (p = 4 * groups; p < np; p++)
            rf_gemv_1panel(N, K, a, Bp, C, accumulate, p);
    }
}

/* Rows of A per block: a block (RF_MC x K floats, <= 500 KB at K = 650)
 * stays in L2 (1 MB here) while every panel of B passes over it, so a long
 * A (the hoisted products, N*T rows) is read from memory once, not once a
 * panel, and B once a block.  It was 96: `large`'s 128-row step products
 * then streamed their 4 MB B from L3 twice a step (ab_inprocess.py against
 * 96: lstm train large 1.05-1.12, infer large 1.03-1.07, the hoisted
 * 6400 x 512 x 2048 product 1.12; docs/performance.md, item 32).  The
 * parameter-gradient products keep 96 (RF_MC_TN: no gain measured). */
#define RF_MC 192
#define RF_MC_TN 96

/* C (M, N), row stride ldc, = (accumulate ? C : 0) + A (M, K) @ B, with B
 * packed by rf_pack_b_f.  Row blocks of A outside, panels inside, row tiles
 * innermost: a panel (K x 16 floats) stays in L1 while the tiles of the
 * block stream past it. */
static void rf_gemm_packed_f(long M, long N, long K, const float* A, long lda,
                             const float* Bp, float* C, long ldc, int accumulate)
{
    long m0, mb, p, i, nc, mr, tiles, base, extra, r, np;
    int kind;
    const float* panel;
    const int wide = rf_wide_in_use();
    if (M <= 0 || N <= 0)
        return;
    if (M == 1) {
        if (wide && rf_gemv8_in_use(K, N))
            rf_wgemv_packed_f(N, K, A, Bp, C, accumulate);
        else
            rf_gemv_packed_f(N, K, A, Bp, C, accumulate);
        return;
    }
    for (m0 = 0; m0 < M; m0 += mb) {
        mb = M - m0 < RF_MC ? M - m0 : RF_MC;
        /* Rows split into tiles of as equal height as possible (32 = 6+6+5+
         * 5+5+5, not 6*5+2): a 2-row tile does 4 FMAs per 4 loads, a 5-row
         * one 10. */
        for (p = 0; p * RF_NR < N; p += np) {
            np = rf_tile_panels(wide, p, N);
            nc = N - p * RF_NR < np * RF_NR ? N - p * RF_NR : np * RF_NR;
            kind = rf_tile_kind(wide, np, nc);
            mr = kind == 0 ? RF_MR : kind == 1 && rf_tall_switch ? RF_TALL_MR : RF_WMR;
            tiles = (mb + mr - 1) / mr;
            base = mb / tiles;              /* <= mr; the first `extra` */
            extra = mb % tiles;             /* tiles get one row more   */
            panel = Bp + p * rf_panel_stride(K);
            for (i = m0, r = 0; i < m0 + mb; i += mr, r++) {
                mr = r < extra ? base + 1 : base;
                rf_tiles[kind][mr](K, A + i * lda, lda, panel, C + i * ldc + p * RF_NR,
                                     ldc, nc, accumulate);
            }
        }
    }
}

/* C (M, N) (+)= A (M, K) @ B for the backward's per-step products: at one
 * row of one group of panels (N = 64-112) whose K spans 2 to
 * RF_GEMV_MAX_SEGS segments, the segmented GEMV above, else
 * rf_gemm_packed_f.  Two groups and more (H = 128 on the AVX2 tiles) gained
 * nothing measurable (LSTM and GRU N = 1, T = 50, D = H = 128: 0.996,
 * 1.000); the wide tiles run eight panels as one group there. */
static int rf_gemv_segments_switch = 1;   /* rf_use_gemv_segments */

static void rf_gemm_packed_dh_f(long M, long N, long K, const float* A, long lda,
                                const float* Bp, float* C, long ldc, int accumulate)
{
    if (M == 1 && rf_gemv_segments_switch && N >= 4 * RF_NR && N <= 7 * RF_NR &&
        K > RF_GEMV_SEG_K && K <= RF_GEMV_SEG_K * RF_GEMV_MAX_SEGS) {
        rf_gemv_segments_f(N, K, A, Bp, C, accumulate);
        return;
    }
    rf_gemm_packed_f(M, N, K, A, lda, Bp, C, ldc, accumulate);
}

/* ------------------------------------------------------------ unpacked B
 * A product whose B is read once, or is small and read a few times, read
 * as it lies (row-major K x N, row stride ldb) by wide
 * tiles, without packing it.  Packing pays when B streams past many
 * tiles; read once, the packed copy is pure cost, and packing was the
 * largest fixed cost of short calls (rf_pack_b_sum_f 5-14 % of an RNN call at N = 8, T = 1-10, D = H =
 * 64; docs/performance.md item 58).  B's loads are masked to the tile's
 * columns, so a ragged last tile reads nothing past a row's end.  Each
 * element is the same FMA chain over k as in the packed tiles: bitwise
 * the same results. */
static int rf_unpacked_switch = 1;      /* rf_use_unpacked_b(0) turns it off */
static float rf_unpacked_tag;           /* its address marks "B unpacked" */
#define RF_UNPACKED_L1_FLOATS (4 * 1024)

static float* rf_unpacked_b(void) { return &rf_unpacked_tag; }

static void RF_MAYBE_UNUSED rf_use_unpacked_b(int on) { rf_unpacked_switch = on != 0; }

/* Whether a K x N B that multiplies `rows` rows in all, at least min_rows
 * a product, goes unpacked: the wide tiles run; one-row products keep the
 * packed GEMV's eight chains; and either B, of any size, meets one product
 * of at most 16 rows (each 32-column block read by two row tiles in a
 * row, the second from cache; packing would read and write all of B once
 * more), or B fits in L1 (16 KB) and is read at most 16 times (rows <=
 * 128).  Read more often, B came faster from the packed panels.  In one
 * process against packing (docs/performance.md item 58): one step at N =
 * 8, D = H = 64 1.17-1.35, D = H = 128-512 1.27-2.00, N = 16 1.07; but N
 * = 32-128 at D = H = 256 0.84-0.86, two steps at N = 8 0.986; RNN N = 8,
 * T = 10 (B 16 KB) 1.02-1.05, T = 100 0.99; a B of 64 KB read at every
 * step: RNN N = 32, T = 35, D = H = 128 0.94, LSTM N = 8, T = 100, D = H =
 * 64 0.98. */
/* Whether the wide tiles may read a B as it lies at all (the switch, the
 * packed kernel and its AVX-512 tiles in use); rf_unpacked_ok says where
 * a step loop's products do, and a fully connected layer's forward reads
 * W so at up to AFF_UNPACKED_ROWS rows (src/_affine.pxi). */
static int RF_MAYBE_UNUSED rf_unpacked_usable(void)
{
    return rf_unpacked_switch && rf_gemm_packed_supported() && rf_wide_in_use();
}

static int RF_MAYBE_UNUSED rf_unpacked_ok(long rows, long min_rows, long K, long N)
{
    return min_rows >= 2 &&
           ((rows == min_rows && rows <= 16) ||
            (K * N <= RF_UNPACKED_L1_FLOATS && rows <= 128)) &&
           rf_unpacked_usable();
}

#define RF_WIDE_BODY_UNPACKED(MR, A_IK)                                       \
    RF_TILE_BODY_V(MR, A_IK, rf_v16,                                          \
                   (rf_v16) _mm512_maskz_loadu_ps(m0, bu + k * ldb),          \
                   (rf_v16) _mm512_maskz_loadu_ps(m1, bu + k * ldb + RF_NR),  \
                   rf_store_row32)
/* A whole 32-column tile reads B without masks: on a Zen 4 the masked
 * loads made these tiles ~7 % slower a step than the packed ones (RNN N =
 * 8, D = H = 64, T = 16 against 17; docs/performance.md item 94). */
#define RF_WIDE_BODY_UNPACKED_FULL(MR, A_IK)                                  \
    RF_TILE_BODY_V(MR, A_IK, rf_v16,                                          \
                   (rf_v16) _mm512_loadu_ps(bu + k * ldb),                    \
                   (rf_v16) _mm512_loadu_ps(bu + k * ldb + RF_NR),            \
                   rf_store_row32)
#define RF_DEFINE_UNPACKED_TILE(MR)                                           \
    __attribute__((target("avx512f"), noinline)) static void                  \
    rf_utile_##MR(long K, const float* A, long lda, const float* bu, long ldb,\
                  float* C, long ldc, long nc, int accumulate)                \
    {                                                                         \
        if (nc >= 2 * RF_NR) {                                                \
            RF_WIDE_BODY_UNPACKED_FULL(MR, RF_A_ROWS)                         \
        } else {                                                              \
            const __mmask16 m0 = nc >= RF_NR ? 0xFFFF                         \
                : (__mmask16) ((1u << nc) - 1);                               \
            const __mmask16 m1 = nc <= RF_NR ? 0                              \
                : (__mmask16) ((1u << (nc - RF_NR)) - 1);                     \
            RF_WIDE_BODY_UNPACKED(MR, RF_A_ROWS)                              \
        }                                                                     \
    }
RF_DEFINE_UNPACKED_TILE(1)
RF_DEFINE_UNPACKED_TILE(2)
RF_DEFINE_UNPACKED_TILE(3)
RF_DEFINE_UNPACKED_TILE(4)
RF_DEFINE_UNPACKED_TILE(5)
RF_DEFINE_UNPACKED_TILE(6)
RF_DEFINE_UNPACKED_TILE(7)
RF_DEFINE_UNPACKED_TILE(8)

typedef void (*rf_utile_fn)(long, const float*, long, const float*, long, float*, long,
                            long, int);
static const rf_utile_fn rf_utiles[RF_WMR + 1] = {
    NULL, rf_utile_1, rf_utile_2, rf_utile_3, rf_utile_4, rf_utile_5, rf_utile_6,
    rf_utile_7, rf_utile_8};

/* C (M, N) = (accumulate ? C : 0) + A (M, K) @ B (K, N), B row-major with
 * row stride ldb, unpacked (rf_unpacked_ok said so).  Row blocks and tiles
 * of near-equal height as in rf_gemm_packed_f; 32 columns a tile. */
static void rf_gemm_unpacked_f(long M, long N, long K, const float* A, long lda,
                               const float* B, long ldb, float* C, long ldc, int accumulate)
{
    long m0, mb, j, i, r, mr, tiles, base, extra, nc;
    if (M <= 0 || N <= 0)
        return;
    for (m0 = 0; m0 < M; m0 += mb) {
        mb = M - m0 < RF_MC ? M - m0 : RF_MC;
        tiles = (mb + RF_WMR - 1) / RF_WMR;
        base = mb / tiles;
        extra = mb % tiles;
        for (j = 0; j < N; j += 2 * RF_NR) {
            nc = N - j < 2 * RF_NR ? N - j : 2 * RF_NR;
            for (i = m0, r = 0; i < m0 + mb; i += mr, r++) {
                mr = r < extra ? base + 1 : base;
                rf_utiles[mr](K, A + i * lda, lda, B + j, ldb, C + i * ldc + j, ldc, nc,
                              accumulate);
            }
        }
    }
}

/* Steps (rows of the sequence buffers) per chunk of the parameter-gradient
 * products: a chunk's panel (RF_KC x 16 floats, 32 KB) streams from L2
 * while the k-major tile of A (6 x RF_KC) stays in L1; C's tiles are
 * read and written once a chunk, which is what a longer chunk saves (at
 * zaremba-medium C is 13.5 MB).  BLAS/packed on zaremba-medium and large
 * (A/B as in benchmarks/kernel_gflops.py): 1.00-1.04 at 512 in
 * two runs, 0.85-1.03 at 256, 0.95-1.06 at 384, 0.90-0.96 at 768; on
 * small and medium all four were 1.2-1.4 within noise. */
#ifndef RF_KC
#define RF_KC 512
#endif

/* Rows k.. (before `end`) of a matrix whose rows lie in runs of run_len,
 * run r from row r * run_stride on: *row <- where row k lies, returns how
 * many follow it in the same run. */
static inline long rf_run_segment(long k, long end, long run_len, long run_stride, long* row)
{
    long in_run = k % run_len, seg = run_len - in_run;
    *row = k / run_len * run_stride + in_run;
    return seg < end - k ? seg : end - k;
}

/* rf_pack_a_tile_f and rf_gemm_tn_f (src/_gemm_tn_impl.h). */
#define RF_TN_T float
#define RF_TN_FN(name) name##_f
#define RF_TN_NR RF_NR
#define RF_TN_PSTRIDE rf_panel_stride
#define RF_TN_PACKED_SIZE rf_packed_size
#define RF_TN_FLOATS(n) (n)
#define RF_TN_PTILE(wide, np, nc, mr) rf_ptiles[rf_tile_kind(wide, np, nc)][mr]
#define RF_TN_PANELS(wide, p, N) rf_tile_panels(wide, p, N)
#define RF_TN_MR(wide) ((wide) && rf_tall_switch ? RF_TALL_MR : RF_MR)
#include "_gemm_tn_impl.h"

/* Row-major C (M, N) = (accumulate ? C : 0) + op(A) @ op(B) on this
 * thread alone, for a product that would otherwise go to BLAS from a part
 * of a threaded region (src/_blas.pxd, gemm): op(B) is packed into a
 * buffer of its own first; op(A) = A^T (the parameter gradients) goes to
 * rf_gemm_tn_f, which overwrites C (accumulate 0 only).  Returns 0, having
 * done nothing, when it cannot (a buffer not to be had, or A^T with
 * accumulate): the caller then uses BLAS after all. */
static int rf_gemm_single_f(int trans_a, int trans_b, long M, long N, long K,
                            const float* A, long lda, const float* B, long ldb,
                            int accumulate, float* C, long ldc)
{
    float* Bp;
    if (M <= 0 || N <= 0)
        return 1;
    if (trans_a) {
        if (accumulate || trans_b)
            return 0;
        return rf_gemm_tn_f(1, &M, &A, &lda, &C, ldc, &N, K, B, ldb, NULL, K, K, NULL, 0);
    }
    if (K <= 0) {
        long i;
        if (!accumulate)
            for (i = 0; i < M; i++)
                memset(C + i * ldc, 0, N * sizeof(float));
        return 1;
    }
    Bp = rf_buf_alloc(rf_packed_size(K, N));
    if (Bp == NULL)
        return 0;
    rf_pack_b_f(B, ldb, trans_b, K, N, Bp);
    rf_gemm_packed_f(M, N, K, A, lda, Bp, C, ldc, accumulate);
    rf_buf_free(Bp);
    return 1;
}

/* The same products in double (float64 calls). */
#include "_gemm_d.h"

#else
#define RF_HAVE_PACKED 0
static int rf_repack_b_f(const float* B, long ldb, long K, long N, float* Bp, long pstride)
{
    rf_pack_b_sum_f(B, ldb, 0, K, N, Bp, pstride, NULL);
    return 0;
}
static long RF_MAYBE_UNUSED rf_repacks_kept(void) { return 0; }
/* The double layout's names, for code that compiles against them (src/_seq.pxd,
 * pack_part) but never runs here: rf_gemm_packed_supported() is 0. */
#define RF_NRD 8
static long rf_panel_stride_d(long K) { return (K + 1) * RF_NRD; }
static void rf_pack_b_sum_d(const double* B, long ldb, int trans, long K, long N,
                            double* Bp, long pstride, double* colsum)
{
    (void) B; (void) ldb; (void) trans; (void) K; (void) N; (void) Bp; (void) pstride;
    (void) colsum;
    abort();   /* callers check rf_gemm_packed_supported() first */
}
static long rf_packed_size_d(long K, long N) { (void) K; (void) N; return 0; }
static void rf_pack_b_d(const double* B, long ldb, int trans, long K, long N, double* Bp)
{
    (void) B; (void) ldb; (void) trans; (void) K; (void) N; (void) Bp;
    abort();   /* callers check rf_gemm_packed_supported() first */
}
static int rf_repack_b_d(const double* B, long ldb, long K, long N, double* Bp, long pstride)
{
    (void) B; (void) ldb; (void) K; (void) N; (void) Bp; (void) pstride;
    abort();   /* callers check rf_gemm_packed_supported() first */
}
static void rf_gemm_packed_d(long M, long N, long K, const double* A, long lda,
                             const double* Bp, double* C, long ldc, int accumulate)
{
    (void) M; (void) N; (void) K; (void) A; (void) lda; (void) Bp; (void) C;
    (void) ldc; (void) accumulate;
    abort();   /* callers check rf_gemm_packed_supported() first */
}
static int rf_gemm_tn_d(int nsrc, const long* M, const double* const* A, const long* lda,
                        double* const* C, long ldc, const long* Ns, long K, const double* B,
                        long ldb, double* colsum, long run_len, long run_stride,
                        const long* a_stride, int accumulate)
{
    (void) nsrc; (void) a_stride; (void) M; (void) A; (void) lda; (void) C; (void) ldc; (void) Ns;
    (void) K; (void) B; (void) ldb; (void) colsum; (void) run_len; (void) run_stride;
    (void) accumulate;
    abort();   /* callers check rf_gemm_packed_supported() first */
}
static void rf_pack_bt_panel(const float* src, long ldb, long K, float* dst)
{
    long k, j;
    for (j = 0; j < RF_NR; j++)
        for (k = 0; k < K; k++)
            dst[k * RF_NR + j] = src[j * ldb + k];
}
static int rf_packed_switch = 0;
static int rf_gemm_packed_supported(void) { return 0; }
static void rf_gemm_packed_f(long M, long N, long K, const float* A, long lda,
                             const float* Bp, float* C, long ldc, int accumulate)
{
    (void) M; (void) N; (void) K; (void) A; (void) lda; (void) Bp; (void) C;
    (void) ldc; (void) accumulate;
    abort();   /* callers check rf_gemm_packed_supported() first */
}
static int rf_gemv_segments_switch = 1;
static void rf_gemm_packed_dh_f(long M, long N, long K, const float* A, long lda,
                                const float* Bp, float* C, long ldc, int accumulate)
{
    rf_gemm_packed_f(M, N, K, A, lda, Bp, C, ldc, accumulate);
}
RF_CLONED int rf_gemm_tn_f(int nsrc, const long* M, const float* const* A,
                           const long* lda, float* const* C, long ldc, const long* Ns,
                           long K, const float* B, long ldb, float* colsum, long run_len,
                           long run_stride, const long* a_stride, int accumulate)
{
    (void) nsrc; (void) a_stride; (void) M; (void) A; (void) lda; (void) C; (void) ldc; (void) Ns;
    (void) K; (void) B; (void) ldb; (void) colsum; (void) run_len; (void) run_stride;
    (void) accumulate;
    abort();   /* callers check rf_gemm_packed_supported() first */
}
static int rf_gemm_single_f(int trans_a, int trans_b, long M, long N, long K,
                            const float* A, long lda, const float* B, long ldb,
                            int accumulate, float* C, long ldc)
{
    (void) trans_a; (void) trans_b; (void) M; (void) N; (void) K; (void) A; (void) lda;
    (void) B; (void) ldb; (void) accumulate; (void) C; (void) ldc;
    return 0;   /* no packed kernel: BLAS (nothing runs on threads then) */
}
static float rf_unpacked_tag;
static float* rf_unpacked_b(void) { return &rf_unpacked_tag; }
static void RF_MAYBE_UNUSED rf_use_unpacked_b(int on) { (void) on; }
static int RF_MAYBE_UNUSED rf_unpacked_usable(void) { return 0; }
static int RF_MAYBE_UNUSED rf_unpacked_ok(long rows, long min_rows, long K, long N)
{
    (void) rows; (void) min_rows; (void) K; (void) N;
    return 0;
}
static void rf_gemm_unpacked_f(long M, long N, long K, const float* A, long lda,
                               const float* B, long ldb, float* C, long ldc, int accumulate)
{
    (void) M; (void) N; (void) K; (void) A; (void) lda; (void) B; (void) ldb; (void) C;
    (void) ldc; (void) accumulate;
    abort();   /* rf_unpacked_ok() said no */
}
#endif

#if RF_HAVE_PACKED
/* For A/B timings and tests: 0 keeps the packed products on the AVX2
 * tiles where the CPU has AVX-512.  Returns whether wide tiles now run. */
static int RF_MAYBE_UNUSED rf_use_wide_tiles(int on)
{
    rf_wide_switch = on != 0;
    return rf_wide_in_use();
}

/* For A/B timings and tests: 0 keeps the two-panel tiles at RF_WMR rows
 * (the results are bitwise the same).  Returns the previous setting. */
static int RF_MAYBE_UNUSED rf_use_tall_tiles(int on)
{
    const int was = rf_tall_switch;
    rf_tall_switch = on != 0;
    return was;
}
#else
static int rf_wide_in_use(void) { return 0; }
static int RF_MAYBE_UNUSED rf_use_wide_tiles(int on) { (void) on; return 0; }
static int RF_MAYBE_UNUSED rf_use_tall_tiles(int on) { (void) on; return 0; }
#endif

#if RF_HAVE_PACKED
/* For A/B timings and tests: 0 runs the last panel of a ragged N on a
 * whole panel's tile even where at most 8 of its columns are C's. */
static void RF_MAYBE_UNUSED rf_use_half_panels(int on) { rf_half_switch = on != 0; }

/* For A/B timings and tests: 0 runs a float64 product of one row on the
 * one-row tiles instead of its GEMV (src/_gemm_d.h; bitwise the same). */
static void RF_MAYBE_UNUSED rf_use_dgemv(int on) { rf_dgemv_switch = on != 0; }

/* For A/B timings and tests: 1 or 0 runs the wide tiles' GEMV in groups of
 * eight panels or of four (AVX2), -1 decides by the CPU and B's size
 * (rf_gemv8_in_use).  Returns whether groups of eight run now for a B of
 * 64 x 256 (an LSTM's Wh at H = 64), where the wide tiles do. */
static int RF_MAYBE_UNUSED rf_use_gemv_groups_of_8(int on)
{
    rf_gemv8_switch = on < 0 ? -1 : on != 0;
    return rf_gemv8_in_use(64, 256);
}
#else
static void RF_MAYBE_UNUSED rf_use_half_panels(int on) { (void) on; }
static void RF_MAYBE_UNUSED rf_use_dgemv(int on) { (void) on; }
static int RF_MAYBE_UNUSED rf_use_gemv_groups_of_8(int on) { (void) on; return 0; }
#endif

/* For A/B timings and tests: 0 sends the backward's one-row products to
 * rf_gemm_packed_f's GEMV (one sum over all of K) instead of the segments. */
static void RF_MAYBE_UNUSED rf_use_gemv_segments(int on) { rf_gemv_segments_switch = on != 0; }

/* For A/B timings and tests: 0 sends the per-step products to BLAS. */
static void RF_MAYBE_UNUSED rf_use_packed_gemm(int on) { rf_packed_switch = on != 0; }

/* The same for the parameter-gradient products (rf_gemm_tn_f) alone. */
static int rf_packed_dw_switch = 1;
static void RF_MAYBE_UNUSED rf_use_packed_dw(int on) { rf_packed_dw_switch = on != 0; }
static int rf_packed_dw_enabled(void) { return rf_packed_dw_switch && rf_gemm_packed_supported(); }

#endif /* RNNFAST_GEMM_H */
