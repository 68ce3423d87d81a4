/* Template body of src/_cells.h, included once per precision with RF_REAL,
 * RF_FN, RF_SIG, RF_TANH and RF_EXP defined.  No include guard on purpose. */

/* RNN forward: a = act(a + b); h = out = a. */
RF_PASS void RF_FN(rf_rnn_fwd_row)(RF_REAL* RF_RESTRICT a, const RF_REAL* RF_RESTRICT b,
                                     RF_REAL* RF_RESTRICT h, RF_REAL* RF_RESTRICT out,
                                     long H, int relu)
{
    long j;
    RF_REAL v;
    if (relu) {
        for (j = 0; j < H; j++) {
            v = a[j] + b[j];
            v = v > 0 ? v : 0;
            a[j] = v; h[j] = v; out[j] = v;
        }
    } else {
        for (j = 0; j < H; j++) {
            v = RF_TANH(a[j] + b[j]);
            a[j] = v; h[j] = v; out[j] = v;
        }
    }
}

/* RNN backward: a (activation) -> dL/da; dh consumed (set to 0). */
RF_PASS void RF_FN(rf_rnn_bwd_row)(RF_REAL* RF_RESTRICT a, const RF_REAL* RF_RESTRICT dout,
                                     RF_REAL* RF_RESTRICT dh, long H, int relu)
{
    long j;
    RF_REAL v, d;
    if (relu) {
        for (j = 0; j < H; j++) {
            v = a[j];
            d = dout[j] + dh[j];
            a[j] = v > 0 ? d : 0;
            dh[j] = 0;
        }
    } else {
        for (j = 0; j < H; j++) {
            v = a[j];
            d = dout[j] + dh[j];
            a[j] = d * (1 - v * v);
            dh[j] = 0;
        }
    }
}

/* LSTM forward, gates f, g, i, o: a (4H) pre-activations without bias ->
 * activations; c updated; h = out = o * tanh(c'); tcs (may be NULL) saves
 * tanh(c').  Inference (tcs NULL) leaves a as it was: nothing reads the
 * activations then, and their four stores were a fifth of the pass's
 * memory traffic. */
RF_INLINE void RF_FN(rf_lstm_fwd_body)(RF_REAL* RF_RESTRICT a, const RF_REAL* RF_RESTRICT b,
                                       RF_REAL* RF_RESTRICT c, RF_REAL* RF_RESTRICT h,
                                       RF_REAL* RF_RESTRICT out, RF_REAL* RF_RESTRICT tcs,
                                       long H, const int save)
{
    long j;
    RF_REAL f, g, i, o, cn, tc, hv;
    for (j = 0; j < H; j++) {
        RF_FN(rf_lstm_unit)(a[j] + b[j], a[H + j] + b[H + j], a[2 * H + j] + b[2 * H + j],
                            a[3 * H + j] + b[3 * H + j], c[j], &f, &g, &i, &o, &cn, &tc);
        hv = o * tc;
        c[j] = cn; h[j] = hv; out[j] = hv;
        if (save) {         /* training: backward reads the activations */
            a[j] = f; a[H + j] = g; a[2 * H + j] = i; a[3 * H + j] = o;
            tcs[j] = tc;
        }
    }
}

RF_PASS void RF_FN(rf_lstm_fwd_row)(RF_REAL* RF_RESTRICT a, const RF_REAL* RF_RESTRICT b,
                                      RF_REAL* RF_RESTRICT c, RF_REAL* RF_RESTRICT h,
                                      RF_REAL* RF_RESTRICT out, RF_REAL* RF_RESTRICT tcs,
                                      long H)
{
    /* constant `save`: each call inlines a branch-free loop */
    if (tcs)
        RF_FN(rf_lstm_fwd_body)(a, b, c, h, out, tcs, H, 1);
    else
        RF_FN(rf_lstm_fwd_body)(a, b, c, h, out, tcs, H, 0);
}

/* LSTM backward: a (activations) -> dL/da; dh consumed; dc -> dL/dc_prev. */
RF_PASS void RF_FN(rf_lstm_bwd_row)(RF_REAL* RF_RESTRICT a, const RF_REAL* RF_RESTRICT tcs,
                                      const RF_REAL* RF_RESTRICT cprev,
                                      const RF_REAL* RF_RESTRICT dout,
                                      RF_REAL* RF_RESTRICT dh, RF_REAL* RF_RESTRICT dc,
                                      long H)
{
    long j;
    RF_REAL f, g, i, o, tc, dhj, dcj;
    for (j = 0; j < H; j++) {
        f = a[j]; g = a[H + j]; i = a[2 * H + j]; o = a[3 * H + j];
        tc = tcs[j];
        dhj = dout[j] + dh[j];
        dcj = dc[j] + dhj * o * (1 - tc * tc);
        a[j] = dcj * cprev[j] * f * (1 - f);
        a[H + j] = dcj * i * (1 - g * g);
        a[2 * H + j] = dcj * g * i * (1 - i);
        a[3 * H + j] = dhj * tc * o * (1 - o);
        dc[j] = dcj * f;
        dh[j] = 0;
    }
}

/* GRU reset_after forward: a (3H) input projection, w (3H) = h Wh; a
 * becomes the activations z, r, h~ when training (hns not NULL), else is
 * left as it was (nothing reads it in inference). */
RF_INLINE void RF_FN(rf_gru_ra_fwd_body)(RF_REAL* RF_RESTRICT a, const RF_REAL* RF_RESTRICT w,
                                         const RF_REAL* RF_RESTRICT bx,
                                         const RF_REAL* RF_RESTRICT bh,
                                         RF_REAL* RF_RESTRICT h, RF_REAL* RF_RESTRICT out,
                                         RF_REAL* RF_RESTRICT hns, long H, const int save)
{
    long j;
    RF_REAL z, r, hn, nn, hnew;
    for (j = 0; j < H; j++) {
        z = RF_SIG(a[j] + bx[j] + w[j] + bh[j]);
        r = RF_SIG(a[H + j] + bx[H + j] + w[H + j] + bh[H + j]);
        hn = w[2 * H + j] + bh[2 * H + j];
        nn = RF_TANH(a[2 * H + j] + bx[2 * H + j] + r * hn);
        hnew = (1 - z) * h[j] + z * nn;
        if (save) {         /* training: backward reads the activations */
            a[j] = z; a[H + j] = r; a[2 * H + j] = nn;
            hns[j] = hn;
        }
        h[j] = hnew; out[j] = hnew;
    }
}

RF_PASS void RF_FN(rf_gru_ra_fwd_row)(RF_REAL* RF_RESTRICT a, const RF_REAL* RF_RESTRICT w,
                                        const RF_REAL* RF_RESTRICT bx,
                                        const RF_REAL* RF_RESTRICT bh,
                                        RF_REAL* RF_RESTRICT h, RF_REAL* RF_RESTRICT out,
                                        RF_REAL* RF_RESTRICT hns, long H)
{
    if (hns)
        RF_FN(rf_gru_ra_fwd_body)(a, w, bx, bh, h, out, hns, H, 1);
    else
        RF_FN(rf_gru_ra_fwd_body)(a, w, bx, bh, h, out, hns, H, 0);
}

/* GRU reset_before forward, first half: z, r and w[2H:3H] = r*h. */
RF_PASS void RF_FN(rf_gru_rb_fwd_zr)(RF_REAL* RF_RESTRICT a, RF_REAL* RF_RESTRICT w,
                                       const RF_REAL* RF_RESTRICT bx,
                                       const RF_REAL* RF_RESTRICT h, long H)
{
    long j;
    RF_REAL z, r;
    for (j = 0; j < H; j++) {
        z = RF_SIG(a[j] + bx[j] + w[j]);
        r = RF_SIG(a[H + j] + bx[H + j] + w[H + j]);
        a[j] = z; a[H + j] = r;
        w[2 * H + j] = r * h[j];
    }
}

/* GRU reset_before forward, second half: w[3H:4H] = (r*h) Wh_h. */
RF_PASS void RF_FN(rf_gru_rb_fwd_h)(RF_REAL* RF_RESTRICT a, const RF_REAL* RF_RESTRICT w,
                                      const RF_REAL* RF_RESTRICT bx,
                                      RF_REAL* RF_RESTRICT h, RF_REAL* RF_RESTRICT out,
                                      long H)
{
    long j;
    RF_REAL z, nn, hnew;
    for (j = 0; j < H; j++) {
        z = a[j];
        nn = RF_TANH(a[2 * H + j] + bx[2 * H + j] + w[3 * H + j]);
        hnew = (1 - z) * h[j] + z * nn;
        a[2 * H + j] = nn;
        h[j] = hnew; out[j] = hnew;
    }
}

/* GRU backward, both variants: a -> dL/da (z and h~ blocks; r too when
 * reset_after), w gets what the recurrent GEMM needs, dh -> dh * (1-z). */
RF_PASS void RF_FN(rf_gru_bwd_row)(RF_REAL* RF_RESTRICT a, RF_REAL* RF_RESTRICT w,
                                     const RF_REAL* RF_RESTRICT hp,
                                     const RF_REAL* RF_RESTRICT dout,
                                     RF_REAL* RF_RESTRICT dh, RF_REAL* RF_RESTRICT ex,
                                     long H, int reset_after)
{
    long j;
    RF_REAL z, r, nn, dhj, dz, dan, dr, daz;
    if (reset_after) {
        for (j = 0; j < H; j++) {
            z = a[j]; r = a[H + j]; nn = a[2 * H + j];
            dhj = dout[j] + dh[j];
            dz = dhj * (nn - hp[j]);
            dan = dhj * z * (1 - nn * nn);
            daz = dz * z * (1 - z);
            dr = dan * ex[j];
            a[j] = daz; w[j] = daz;
            a[2 * H + j] = dan;
            dh[j] = dhj * (1 - z);
            a[H + j] = dr * r * (1 - r);
            w[H + j] = dr * r * (1 - r);
            ex[j] = dan * r;
            w[2 * H + j] = dan * r;
        }
    } else {
        for (j = 0; j < H; j++) {
            z = a[j]; nn = a[2 * H + j];
            dhj = dout[j] + dh[j];
            dz = dhj * (nn - hp[j]);
            dan = dhj * z * (1 - nn * nn);
            daz = dz * z * (1 - z);
            a[j] = daz; w[j] = daz;
            a[2 * H + j] = dan;
            dh[j] = dhj * (1 - z);
            w[2 * H + j] = dan;
        }
    }
}

/* GRU reset_before backward, second half: w[3H:4H] = d(r*h). */
RF_PASS void RF_FN(rf_gru_rb_bwd_r)(RF_REAL* RF_RESTRICT a, RF_REAL* RF_RESTRICT w,
                                      const RF_REAL* RF_RESTRICT hp,
                                      RF_REAL* RF_RESTRICT dh, long H)
{
    long j;
    RF_REAL drh, r, dar;
    for (j = 0; j < H; j++) {
        drh = w[3 * H + j];
        r = a[H + j];
        dh[j] += drh * r;
        dar = drh * hp[j] * r * (1 - r);
        a[H + j] = dar;
        w[H + j] = dar;
    }
}

/* ------------------------------------------ the softmax of a row (losses)
 * e = exp(x - max x) and the sum of e, in double, for the softmax
 * cross-entropy of a language model's 10,000-way output (rnnfast.losses,
 * src/_softmax.pxi): two passes over a row that stays in cache, against
 * NumPy's six over the whole array (docs/performance.md item 118).
 * Sixteen partial sums, so that the exp loop vectorises without
 * reassociating anything (no -ffast-math).  RF_EXP clamps its argument at
 * the bottom (exp(-87) ~ 1.6e-38 in float for what is 0 or subnormal
 * exactly): a probability off by that, and sums that cannot see it. */
#define RF_SM_LANES 16

RF_PASS __attribute__((unused)) double
RF_FN(rf_softmax_row)(const RF_REAL* RF_RESTRICT x, RF_REAL* RF_RESTRICT e, long V,
                      RF_REAL* mx)
{
    /* A NaN or Inf in the row shows in the sum returned, for the losses'
     * finiteness check in this read of the row instead of a read of its own
     * (docs/performance.md item 164): a NaN's exp is NaN, a +Inf makes the
     * maximum Inf and its own x - M NaN, and a -Inf, whose exp is 0, makes
     * the minimum L (taken beside the maximum, on the same loads) -Inf and
     * L - L NaN.  A finite row's sum is in [1, V].
     * The maximum and minimum as OpenMP SIMD reductions (-fopenmp-simd):
     * GCC does not vectorise `a > b ? a : b` as a reduction where NaNs
     * count, and the sixteen lanes' loop it was written as ran as scalar
     * vmaxss.  Their order does not change them. */
    RF_REAL M = x[0], L = x[0], v;
    double s[RF_SM_LANES], S = 0.0;
    long j, l, full = V - V % RF_SM_LANES;
    for (l = 0; l < RF_SM_LANES; l++)
        s[l] = 0.0;
#pragma omp simd reduction(max:M) reduction(min:L)
    for (j = 0; j < V; j++) {
        M = x[j] > M ? x[j] : M;
        L = x[j] < L ? x[j] : L;
    }
    for (j = 0; j < full; j += RF_SM_LANES)
        for (l = 0; l < RF_SM_LANES; l++) {
            v = RF_EXP(x[j + l] - M);
            e[j + l] = v;
            s[l] += (double) v;
        }
    for (l = 0; l < RF_SM_LANES; l++)
        S += s[l];
    for (j = full; j < V; j++) {
        v = RF_EXP(x[j] - M);
        e[j] = v;
        S += (double) v;
    }
    *mx = M;
    return S + (double) (L - L);                /* L - L: 0, or NaN for -Inf */
}

#undef RF_SM_LANES

/* A language model's sampling (rnnfast.models.lm._sample, through
 * src/_softmax.pxi's scaled_logits_rows): out = (x - max x) / t in double,
 * bitwise the values NumPy's (x.astype(float64) - max) / t gives (a cast
 * is exact; the subtraction and the division are the same two roundings;
 * only a zero's sign can differ, where the max is -0 or 0),
 * in two passes over the row instead of NumPy's five over the whole (R, V)
 * array (docs/performance.md item 178).  The maximum as in rf_softmax_row
 * (an OpenMP SIMD reduction), and a NaN in the row makes it NaN, as
 * np.max's (the flag beside it: `a > b ? a : b` skips NaNs). */
RF_PASS __attribute__((unused)) void
RF_FN(rf_scaled_row)(const RF_REAL* RF_RESTRICT x, double* RF_RESTRICT out, long V, double t)
{
    RF_REAL M = x[0];
    int nan = 0;
    double m;
    long j;
#pragma omp simd reduction(max:M) reduction(|:nan)
    for (j = 0; j < V; j++) {
        M = x[j] > M ? x[j] : M;
        nan |= x[j] != x[j];
    }
    m = nan ? (double) NAN : (double) M;
    for (j = 0; j < V; j++)
        out[j] = ((double) x[j] - m) / t;
}
