# Switches of the packed kernel's choices (src/_gemm.h), for A/B timings
# and tests; included by each kernel module (_rnn, _lstm, _gru), each of
# which compiles its own copy of src/_gemm.h's state.  rnnfast._core sets
# all three.
from _blas cimport (rf_use_gemv_segments, rf_use_gemv_groups_of_8, rf_use_half_panels,
                    rf_use_dgemv, rf_use_repack, rf_repacks_kept, rf_packs_trusted)


def use_gemv_groups_of_8(int on):
    """The wide tiles' one-row products in groups of eight panels (1), of
    four (0), or as the CPU and B's size suit (-1, the default;
    src/_gemm.h, rf_gemv8_in_use).  Bitwise the same results.  For A/B
    timings and tests; returns whether groups of eight now run for B 64 x
    256 (where the wide tiles do)."""
    return bool(rf_use_gemv_groups_of_8(on))


def use_gemv_segments(bint on):
    """Send the backward's one-row products dh (+)= dA_t Wh^T to the GEMV by
    segments of K (src/_gemm.h, rf_gemm_packed_dh_f), or to the forward's
    GEMV (one sum over all of K; float32 rounding apart, the same).  For
    A/B timings and tests."""
    rf_use_gemv_segments(on)


def use_half_panels(bint on):
    """The last panel of a ragged N with at most 8 columns on the half-panel
    tiles (src/_gemm.h, rf_tile_kind; the default) or on a whole panel's.
    Bitwise the same results.  For A/B timings and tests."""
    rf_use_half_panels(on)


def use_dgemv(bint on):
    """A float64 product of one row on its GEMV (src/_gemm_d.h; the
    default) or on the one-row tiles.  Bitwise the same results.  For A/B
    timings and tests."""
    rf_use_dgemv(on)


def use_repack(bint on):
    """An inference call's weights packed into the buffer that packed them
    last, storing only what changed (src/_gemm.h, rf_repack_b_f; the
    default), or packed in full into any buffer.  The same bytes either
    way.  For A/B timings and tests."""
    rf_use_repack(on)


def repacks_kept():
    """How many packs of this module found their buffer holding their
    bytes already, and stored nothing (src/_gemm.h, rf_repacks_kept)."""
    return rf_repacks_kept()


def packs_trusted():
    """How many packs of this module a pack epoch let stand as they were
    (src/_blas.pxd, packed_in_epoch)."""
    return rf_packs_trusted()
