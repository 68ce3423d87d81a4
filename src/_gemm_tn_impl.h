/* Template body of src/_gemm.h's transposed-A product (the parameter
 * gradients) and its A packing, included once per precision with RF_TN_T
 * (float or double), RF_TN_FN(name) (name_f or name_d), RF_TN_NR (the
 * panel width), RF_TN_PSTRIDE(K) and RF_TN_PACKED_SIZE(K, N) (the packed
 * layout's), RF_TN_FLOATS(n) (n elements in rf_buf_alloc's floats) and
 * RF_TN_PTILE(wide, np, nc, mr) (the packed-A tile of mr rows over np panels
 * and nc columns), RF_TN_PANELS(wide, p, N) (the panels a tile covers from
 * panel p on), RF_TN_MR(wide) (rows of a tile at most).
 * It undefines them at its end, ready for the next instantiation.  No
 * include guard on purpose. */

/* dst (kc, mr) row-major <- the mr contiguous elements src[k * lda :] for
 * k < kc.  mr is a constant in each branch: a loop of variable length
 * became a call to memcpy per k (18 % of the product at tiny sizes). */
static void RF_TN_FN(rf_pack_a_tile)(const RF_TN_T* src, long lda, long kc, long mr,
                                     RF_TN_T* dst)
{
    long k, r;
#define RF_PACK_A_ROWS(MR)                                                    \
    for (k = 0; k < kc; k++)                                                  \
        for (r = 0; r < MR; r++)                                              \
            dst[k * MR + r] = src[k * lda + r];                               \
    break;
    switch (mr) {
    case 12: RF_PACK_A_ROWS(12)
    case 11: RF_PACK_A_ROWS(11)
    case 10: RF_PACK_A_ROWS(10)
    case 9: RF_PACK_A_ROWS(9)
    case 8: RF_PACK_A_ROWS(8)
    case 7: RF_PACK_A_ROWS(7)
    case 6: RF_PACK_A_ROWS(6)
    case 5: RF_PACK_A_ROWS(5)
    case 4: RF_PACK_A_ROWS(4)
    case 3: RF_PACK_A_ROWS(3)
    case 2: RF_PACK_A_ROWS(2)
    default: RF_PACK_A_ROWS(1)
    }
#undef RF_PACK_A_ROWS
}

/* C[s] (M[s], N) = A[s]^T @ B for the sources s = 0..nsrc-1 (nsrc <= 2),
 * where A[s] is row-major (K, M[s]) with row stride lda[s] and B is
 * row-major (K, N) with row stride ldb; C[s] has row stride ldc.  This is
 * the shape of the parameter gradients, dWx = X^T dA and dWh = Hprev^T dA,
 * summed over all K = N*T rows of the sequence buffers: B (the gate
 * gradients) is packed once per chunk of RF_KC rows and shared by the
 * sources; A's chunk is transposed block by block into tiles of mr
 * rows stored k-major (rf_pack_a_tile), which the rf_ptile_* kernels
 * read; each chunk adds into C.  The C tile prefetch in RF_TILE_BODY
 * matters here: C's rows are far apart and come from memory at every
 * chunk (without it zaremba-medium's dW products ran 0.82x BLAS).
 * Source s uses B's first Ns[s] <= N columns only (GRU's dWh takes the
 * z and r columns of the gate gradients that dWx takes whole: one packing
 * of B serves both).  colsum (N), unless NULL, gets B's column sums added
 * (the bias gradient), summed per chunk of RF_KC rows and the chunks'
 * sums then added: float32 sums over N*T rows in one sequence lost ~40x
 * more than PyTorch's (5.6e-6 relative at 47,000 rows).  The K rows lie in runs of run_len rows, run r
 * from row r * run_stride of B on, and of A[s] from row r * a_stride[s]
 * on (a_stride NULL: run_stride for every source; run_len = run_stride =
 * K: one run; a chunk of steps of every batch row is N runs, and RNN's
 * h_prev of a chunk lies in a buffer of the chunk's own).  accumulate:
 * C[s] += the products instead of =.  Returns 0 when it could not allocate its
 * buffers (nothing written: the caller uses BLAS). */
RF_CLONED int RF_TN_FN(rf_gemm_tn)(int nsrc, const long* M, const RF_TN_T* const* A,
                                   const long* lda, RF_TN_T* const* C, long ldc,
                                   const long* Ns, long K, const RF_TN_T* B, long ldb,
                                   RF_TN_T* colsum, long run_len, long run_stride,
                                   const long* a_stride, int accumulate)
{
    long k0, kc, m0, mb, i, s, p, nc, mr, tiles, base, extra, t, np, mmax = 0, N = 0;
    long k, seg, row, j;
    RF_TN_T *Bp, *At, *dst, *part = NULL, *part_heap = NULL;
    /* a chunk's column sums: on the stack up to 2048 columns (LSTM at H =
     * 512); a third buffer from rf_buf_alloc cost a 0.27 ms call 5 % */
    RF_TN_T part_stack[2048];
    const int wide = rf_wide_in_use();
    for (s = 0; s < nsrc; s++) {
        mmax = M[s] > mmax ? M[s] : mmax;
        N = Ns[s] > N ? Ns[s] : N;
    }
    if (N <= 0 || mmax <= 0)
        return 1;
    if (K <= 0) {               /* no rows: the gradients are zero */
        if (accumulate)
            return 1;
        for (s = 0; s < nsrc; s++)
            for (i = 0; i < M[s]; i++)
                memset(C[s] + i * ldc, 0, Ns[s] * sizeof(RF_TN_T));
        return 1;
    }
    kc = K < RF_KC ? K : RF_KC;
    mb = mmax < RF_MC_TN ? mmax : RF_MC_TN;
    Bp = (RF_TN_T*) rf_buf_alloc(RF_TN_FLOATS(RF_TN_PACKED_SIZE(kc, N)));
    At = (RF_TN_T*) rf_buf_alloc(RF_TN_FLOATS(mb * kc));
    if (colsum != NULL && N > 2048)
        part_heap = (RF_TN_T*) rf_buf_alloc(RF_TN_FLOATS(N));
    if (Bp == NULL || At == NULL || (colsum != NULL && N > 2048 && part_heap == NULL)) {
        rf_buf_free((float*) Bp);     /* the buffers are counted in floats */
        rf_buf_free((float*) At);
        rf_buf_free((float*) part_heap);
        return 0;
    }
    if (colsum != NULL)
        part = N > 2048 ? part_heap : part_stack;
    if (run_len <= 0 || run_len > K)
        run_len = K;
    for (k0 = 0; k0 < K; k0 += kc) {
        kc = K - k0 < RF_KC ? K - k0 : RF_KC;
        if (part != NULL)
            memset(part, 0, N * sizeof(RF_TN_T));
        /* the chunk's rows run by run, each run's part into its rows */
        for (k = k0; k < k0 + kc; k += seg) {
            seg = rf_run_segment(k, k0 + kc, run_len, run_stride, &row);
            RF_TN_FN(rf_pack_b_sum)(B + row * ldb, ldb, 0, seg, N, Bp + (k - k0) * RF_TN_NR,
                                    RF_TN_PSTRIDE(kc), part);
        }
        if (part != NULL)
            for (j = 0; j < N; j++)
                colsum[j] += part[j];
        for (s = 0; s < nsrc; s++) {
            for (m0 = 0; m0 < M[s]; m0 += mb) {
                mb = M[s] - m0 < RF_MC_TN ? M[s] - m0 : RF_MC_TN;
                /* Row tiles of near-equal height, as in rf_gemm_packed_f. */
                tiles = (mb + RF_TN_MR(wide) - 1) / RF_TN_MR(wide);
                base = mb / tiles;
                extra = mb % tiles;
                /* At: A[k0:k0+kc, m0:m0+mb]^T tile by tile, each tile
                 * (kc, mr) row-major: a tile's rows at step k are the mr
                 * contiguous floats A[k0+k, i:i+mr], copied as they lie. */
                dst = At;
                for (i = m0, t = 0; i < m0 + mb; i += mr, t++) {
                    mr = t < extra ? base + 1 : base;
                    for (k = k0; k < k0 + kc; k += seg) {
                        seg = rf_run_segment(k, k0 + kc, run_len,
                                             a_stride ? a_stride[s] : run_stride, &row);
                        RF_TN_FN(rf_pack_a_tile)(A[s] + row * lda[s] + i, lda[s], seg, mr,
                                                 dst + (k - k0) * mr);
                    }
                    dst += mr * kc;
                }
                for (p = 0; p * RF_TN_NR < Ns[s]; p += np) {
                    const RF_TN_T* panel = Bp + p * RF_TN_PSTRIDE(kc);
                    np = RF_TN_PANELS(wide, p, Ns[s]);
                    nc = Ns[s] - p * RF_TN_NR < np * RF_TN_NR ? Ns[s] - p * RF_TN_NR
                                                              : np * RF_TN_NR;
                    const RF_TN_T* a = At;
                    for (i = m0, t = 0; i < m0 + mb; i += mr, t++) {
                        mr = t < extra ? base + 1 : base;
                        RF_TN_PTILE(wide, np, nc, mr)(kc, a, panel,
                                                      C[s] + i * ldc + p * RF_TN_NR,
                                                      ldc, nc, k0 > 0 || accumulate);
                        a += mr * kc;
                    }
                }
            }
        }
    }
    rf_buf_free((float*) Bp);
    rf_buf_free((float*) At);
    rf_buf_free((float*) part_heap);
    return 1;
}

#undef RF_TN_T
#undef RF_TN_FN
#undef RF_TN_NR
#undef RF_TN_PSTRIDE
#undef RF_TN_PACKED_SIZE
#undef RF_TN_FLOATS
#undef RF_TN_PTILE
#undef RF_TN_PANELS
#undef RF_TN_MR
