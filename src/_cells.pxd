# The fused element-wise passes of the cells, one batch row at a time
# (src/_cells.h: C with `restrict` so GCC vectorises them, and branch-free
# float activations).  Inline fused-type wrappers choose the float or double
# version at compile time, as src/_blas.pxd does for BLAS.
from _blas cimport floating

cdef extern from "_cells.h" nogil:
    const char* rf_pass_clone()
    void rf_rnn_fwd_row_f(float* a, const float* b, float* h, float* out, long H, int relu)
    void rf_rnn_fwd_row_d(double* a, const double* b, double* h, double* out, long H, int relu)
    void rf_rnn_bwd_row_f(float* a, const float* dout, float* dh, long H, int relu)
    void rf_rnn_bwd_row_d(double* a, const double* dout, double* dh, long H, int relu)
    void rf_lstm_fwd_row_f(float* a, const float* b, float* c, float* h, float* out,
                           float* tcs, long H)
    void rf_lstm_fwd_row_d(double* a, const double* b, double* c, double* h, double* out,
                           double* tcs, long H)
    void rf_lstm_bwd_row_f(float* a, const float* tcs, const float* cprev,
                           const float* dout, float* dh, float* dc, long H)
    void rf_lstm_bwd_row_d(double* a, const double* tcs, const double* cprev,
                           const double* dout, double* dh, double* dc, long H)
    void rf_gru_ra_fwd_row_f(float* a, const float* w, const float* bx, const float* bh,
                             float* h, float* out, float* hns, long H)
    void rf_gru_ra_fwd_row_d(double* a, const double* w, const double* bx, const double* bh,
                             double* h, double* out, double* hns, long H)
    void rf_gru_rb_fwd_zr_f(float* a, float* w, const float* bx, const float* h, long H)
    void rf_gru_rb_fwd_zr_d(double* a, double* w, const double* bx, const double* h, long H)
    void rf_gru_rb_fwd_h_f(float* a, const float* w, const float* bx, float* h, float* out,
                           long H)
    void rf_gru_rb_fwd_h_d(double* a, const double* w, const double* bx, double* h,
                           double* out, long H)
    void rf_gru_bwd_row_f(float* a, float* w, const float* hp, const float* dout, float* dh,
                          float* ex, long H, int reset_after)
    void rf_gru_bwd_row_d(double* a, double* w, const double* hp, const double* dout,
                          double* dh, double* ex, long H, int reset_after)
    void rf_gru_rb_bwd_r_f(float* a, float* w, const float* hp, float* dh, long H)
    void rf_gru_rb_bwd_r_d(double* a, double* w, const double* hp, double* dh, long H)


cdef inline void rnn_fwd_row(floating* a, const floating* b, floating* h, floating* out,
                             Py_ssize_t H, bint relu) noexcept nogil:
    if floating is float:
        rf_rnn_fwd_row_f(a, b, h, out, H, relu)
    else:
        rf_rnn_fwd_row_d(a, b, h, out, H, relu)


cdef inline void rnn_bwd_row(floating* a, const floating* dout, floating* dh,
                             Py_ssize_t H, bint relu) noexcept nogil:
    if floating is float:
        rf_rnn_bwd_row_f(a, dout, dh, H, relu)
    else:
        rf_rnn_bwd_row_d(a, dout, dh, H, relu)


cdef inline void lstm_fwd_row(floating* a, const floating* b, floating* c, floating* h,
                              floating* out, floating* tcs, Py_ssize_t H) noexcept nogil:
    if floating is float:
        rf_lstm_fwd_row_f(a, b, c, h, out, tcs, H)
    else:
        rf_lstm_fwd_row_d(a, b, c, h, out, tcs, H)


cdef inline void lstm_bwd_row(floating* a, const floating* tcs, const floating* cprev,
                              const floating* dout, floating* dh, floating* dc,
                              Py_ssize_t H) noexcept nogil:
    if floating is float:
        rf_lstm_bwd_row_f(a, tcs, cprev, dout, dh, dc, H)
    else:
        rf_lstm_bwd_row_d(a, tcs, cprev, dout, dh, dc, H)


cdef inline void gru_ra_fwd_row(floating* a, const floating* w, const floating* bx,
                                const floating* bh, floating* h, floating* out,
                                floating* hns, Py_ssize_t H) noexcept nogil:
    if floating is float:
        rf_gru_ra_fwd_row_f(a, w, bx, bh, h, out, hns, H)
    else:
        rf_gru_ra_fwd_row_d(a, w, bx, bh, h, out, hns, H)


cdef inline void gru_rb_fwd_zr(floating* a, floating* w, const floating* bx,
                               const floating* h, Py_ssize_t H) noexcept nogil:
    if floating is float:
        rf_gru_rb_fwd_zr_f(a, w, bx, h, H)
    else:
        rf_gru_rb_fwd_zr_d(a, w, bx, h, H)


cdef inline void gru_rb_fwd_h(floating* a, const floating* w, const floating* bx,
                              floating* h, floating* out, Py_ssize_t H) noexcept nogil:
    if floating is float:
        rf_gru_rb_fwd_h_f(a, w, bx, h, out, H)
    else:
        rf_gru_rb_fwd_h_d(a, w, bx, h, out, H)


cdef inline void gru_bwd_row(floating* a, floating* w, const floating* hp,
                             const floating* dout, floating* dh, floating* ex,
                             Py_ssize_t H, bint reset_after) noexcept nogil:
    if floating is float:
        rf_gru_bwd_row_f(a, w, hp, dout, dh, ex, H, reset_after)
    else:
        rf_gru_bwd_row_d(a, w, hp, dout, dh, ex, H, reset_after)


cdef inline void gru_rb_bwd_r(floating* a, floating* w, const floating* hp,
                              floating* dh, Py_ssize_t H) noexcept nogil:
    if floating is float:
        rf_gru_rb_bwd_r_f(a, w, hp, dh, H)
    else:
        rf_gru_rb_bwd_r_d(a, w, hp, dh, H)
