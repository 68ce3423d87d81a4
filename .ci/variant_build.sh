#!/usr/bin/env bash
# Build the Cython kernels as a variant in a throw-away copy of the working
# tree, then run the kernel, parity, property, bad-input and fuzzer tests
# against that copy.  The installed, optimised build is never touched.
#
#   .ci/variant_build.sh debug          # RNNFAST_DEBUG_CYTHON=1: bounds,
#                                       # wraparound, initialized and None
#                                       # checks on, -O0 -g
#   .ci/variant_build.sh avx2-passes    # the element-wise passes without
#                                       # their AVX-512 clone, so that an
#                                       # AVX-512 CPU runs the AVX2 one
#                                       # (x86-64-v3, src/_cells.h)
#   .ci/variant_build.sh blas-only      # RNNFAST_NO_PACKED_GEMM: no packed
#                                       # kernel, every product on BLAS, as
#                                       # on a CPU without AVX2 and FMA or
#                                       # a compiler without GCC's vectors
#   .ci/variant_build.sh debug tests/test_x.py   # or any pytest arguments
set -euo pipefail
variant="${1:?usage: .ci/variant_build.sh debug|avx2-passes|blas-only [pytest arguments]}"
shift
case "$variant" in
    debug) build_env=(RNNFAST_DEBUG_CYTHON=1) ;;
    avx2-passes) build_env=(CFLAGS="${CFLAGS:-} -DRNNFAST_PASS_NO_AVX512") ;;
    blas-only) build_env=(CFLAGS="${CFLAGS:-} -DRNNFAST_NO_PACKED_GEMM") ;;
    *) echo "unknown variant '$variant': expected debug, avx2-passes or blas-only" >&2
       exit 2 ;;
esac
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/rnnfast-$variant.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The tracked files as they are in the working tree (uncommitted edits too).
(cd "$repo" && git ls-files -z | tar --null -T - -cf -) | tar -xf - -C "$work"
rm -f "$work"/rnnfast/*.so "$work"/src/*.c      # force a fresh cythonize and compile

cd "$work"
env "${build_env[@]}" python setup.py -q build_ext --inplace >build.log 2>&1 \
    || { cat build.log; exit 1; }

export PYTHONPATH="$work${PYTHONPATH:+:$PYTHONPATH}"
RNNFAST_VARIANT="$variant" python - <<'PY'
import os, rnnfast, rnnfast._build_info as b, rnnfast._lstm as k, rnnfast._rnn as r
here, variant = os.getcwd(), os.environ["RNNFAST_VARIANT"]
assert rnnfast.__file__.startswith(here), f"imported {rnnfast.__file__}, not the {variant} copy"
assert k.__file__.startswith(here), f"kernel {k.__file__} is not the {variant} build"
if variant == "debug":
    assert b.DEBUG_CYTHON and b.CYTHON_DIRECTIVES["boundscheck"], "not a debug build"
elif variant == "blas-only":
    import rnnfast._core as c
    assert not c.use_packed_gemm(True), "the packed kernel is still built in"
else:
    assert r.pass_clone() not in ("x86-64-v4", "avx512f"), "the passes still have their AVX-512 clone"
print(f"{variant} build in {here}: {b.COMPILE_ARGS} {b.CYTHON_DIRECTIVES}; "
      f"passes: the {r.pass_clone()} clone")
PY

if [ "$#" -eq 0 ]; then
    set -- tests/test_kernels_reference.py tests/test_gradcheck.py \
           tests/test_parity_torch.py tests/test_layers_core.py \
           tests/test_properties.py tests/test_bad_input.py \
           tests/test_fuzz_networks.py tests/test_fuzz_models.py \
           tests/test_inference_chunks.py
fi
python -m pytest -q -p no:cacheprovider "$@"
