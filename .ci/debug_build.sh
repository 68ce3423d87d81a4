#!/usr/bin/env bash
# Build the Cython kernels with RNNFAST_DEBUG_CYTHON=1 (bounds, wraparound,
# initialized and None checks on, -O0 -g) in a throw-away copy of the
# working tree, then run the kernel, parity, property and bad-input tests
# against that copy.  The installed, optimised build is never touched.
#
#   .ci/debug_build.sh                 # the default test selection
#   .ci/debug_build.sh tests/test_x.py # or any pytest arguments
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/rnnfast-debug.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The tracked files as they are in the working tree (uncommitted edits too).
(cd "$repo" && git ls-files -z | tar --null -T - -cf -) | tar -xf - -C "$work"
rm -f "$work"/rnnfast/*.so "$work"/src/*.c      # force a fresh cythonize and compile

cd "$work"
RNNFAST_DEBUG_CYTHON=1 python setup.py -q build_ext --inplace >build.log 2>&1 \
    || { cat build.log; exit 1; }

export PYTHONPATH="$work${PYTHONPATH:+:$PYTHONPATH}"
python - <<'EOF'
import os, rnnfast, rnnfast._build_info as b, rnnfast._lstm as k
here = os.getcwd()
assert rnnfast.__file__.startswith(here), f"imported {rnnfast.__file__}, not the debug copy"
assert k.__file__.startswith(here), f"kernel {k.__file__} is not the debug build"
assert b.DEBUG_CYTHON and b.CYTHON_DIRECTIVES["boundscheck"], "not a debug build"
print(f"debug build in {here}: {b.COMPILE_ARGS} {b.CYTHON_DIRECTIVES}")
EOF

if [ "$#" -eq 0 ]; then
    set -- tests/test_kernels_reference.py tests/test_gradcheck.py \
           tests/test_parity_torch.py tests/test_layers_core.py \
           tests/test_properties.py tests/test_bad_input.py
fi
python -m pytest -q -p no:cacheprovider "$@"
