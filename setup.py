"""Build of rnnfast's Cython kernels (src/*.pyx -> rnnfast._<name>).

Cython directives are set here and only here.  RNNFAST_DEBUG_CYTHON=1 at
build time turns bounds, wraparound and initialized checks back on (and
adds -O0 -g) for debugging the kernels.
"""
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("RNNFAST_DEBUG_CYTHON", "0") not in ("", "0")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "nonecheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}
# -fno-trapping-math (as PyTorch builds) lets GCC if-convert the clamps of
# the float activations in src/_cells.h and so vectorise the element-wise
# passes; it only drops floating-point exception-flag semantics.
# -fno-math-errno lets it vectorise the optimizers' square roots
# (src/_rowops.h; GCC's optimize pragma does not turn errno off): nothing
# here reads errno, and a square root's value is the same either way.
# -fopenmp-simd obeys `#pragma omp simd` (the softmax row's max and min
# reductions, src/_cells_impl.h) without OpenMP's runtime.
compile_args = ["-O0", "-g"] if DEBUG else ["-O3", "-fno-trapping-math", "-fno-math-errno",
                                            "-fopenmp-simd"]

# The three kernels, and the compiled dispatcher that calls them (_dispatch).
KERNELS = ["rnn", "lstm", "gru", "dispatch"]
extensions = [
    Extension(
        f"rnnfast._{name}",
        [f"src/_{name}.pyx"],
        include_dirs=[np.get_include(), "src"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
        depends=["src/_compiler.h", "src/_cells.h", "src/_cells_impl.h", "src/_gemm.h", "src/_gemm_d.h", "src/_gemm_tn_impl.h", "src/_threads.h",
                 "src/_outpool.h", "src/_cells.pxd", "src/_blas.pxd", "src/_seq.pxd",
                 "src/_seqfwd.pxd", "src/_settings.pxd", "src/_arrays.pxd", "src/_affine.pxi", "src/_softmax.pxi",
                 "src/_rowops.pxi", "src/_rowops.h", "src/_kernel_switches.pxi"],
    )
    for name in KERNELS
]

# Recorded in the package so `python -m rnnfast info` can say how it was built.
with open(os.path.join("rnnfast", "_build_info.py"), "w") as fh:
    fh.write("# Written by setup.py at build time.\n")
    fh.write(f"DEBUG_CYTHON = {DEBUG!r}\n")
    fh.write(f"COMPILE_ARGS = {compile_args!r}\n")
    fh.write(f"CFLAGS = {os.environ.get('CFLAGS', '')!r}\n")   # e.g. -DRNNFAST_PASS_NO_AVX512
    fh.write(f"CYTHON_DIRECTIVES = {directives!r}\n")

setup(
    ext_modules=cythonize(extensions, include_path=["src"],
                          compiler_directives=directives),
)
