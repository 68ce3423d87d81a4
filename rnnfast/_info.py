"""`python -m rnnfast info`: version, BLAS in use and build flags."""
import os
import sys


def config():
    """A dict describing this installation (used by show_config and bench)."""
    import numpy as np
    import scipy

    from . import __version__
    try:
        from . import _build_info as build
        flags = {"debug_cython": build.DEBUG_CYTHON, "compile_args": build.COMPILE_ARGS,
                 "cflags": getattr(build, "CFLAGS", ""), "directives": build.CYTHON_DIRECTIVES}
    except ImportError:
        flags = {"debug_cython": "unknown (no _build_info)"}
    info = {"rnnfast": __version__, "python": sys.version.split()[0],
            "numpy": np.__version__, "scipy": scipy.__version__, "build": flags,
            "blas": blas_info(), "float32_kernel": _kernel_name(),
            "float64_kernel": _kernel_name(), "passes": _pass_clone(),
            "env": {k: os.environ.get(k) for k in
                    ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                     "OMP_NUM_THREADS") if os.environ.get(k) is not None}}
    return info


def _kernel_name():
    from . import _core
    return _core.kernel_name()


def _pass_clone():
    from . import _rnn
    return _rnn.pass_clone()


def blas_info():
    """The BLAS libraries loaded in this process, from threadpoolctl, with the
    one scipy's cython_blas (our kernels' BLAS) uses first when known."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "install threadpoolctl to see the BLAS library and kernel"}]
    import scipy.linalg  # noqa: F401  loads scipy's BLAS
    from . import _lstm  # noqa: F401
    rows = [{k: v for k, v in lib.items() if k in
             ("internal_api", "version", "architecture", "num_threads", "filepath")}
            for lib in threadpool_info() if lib.get("user_api") == "blas"]
    rows.sort(key=lambda r: "scipy.libs" not in r.get("filepath", ""))
    return rows


def show_config(file=None):
    """Print the version, the build flags, the products' kernels, the
    element-wise passes' clone and the BLAS libraries in use to `file`
    (sys.stdout by default); `rnnfast info` prints the same."""
    info = config()
    out = file or sys.stdout
    print(f"rnnfast {info['rnnfast']}  (python {info['python']}, numpy {info['numpy']}, "
          f"scipy {info['scipy']})", file=out)
    print("build:", file=out)
    for k, v in info["build"].items():
        print(f"  {k}: {v}", file=out)
    print(f"float32 products: {info['float32_kernel']}", file=out)
    print(f"float64 products: {info['float64_kernel']}", file=out)
    print(f"element-wise passes: the {info['passes']} clone", file=out)
    print("BLAS (threadpoolctl; the kernels use scipy's):", file=out)
    for lib in info["blas"]:
        print("  " + ", ".join(f"{k}={v}" for k, v in lib.items()), file=out)
    if info["env"]:
        print("environment:", file=out)
        for k, v in info["env"].items():
            print(f"  {k}={v}", file=out)
        if "OPENBLAS_CORETYPE" in info["env"]:
            print("  note: OPENBLAS_CORETYPE forces an OpenBLAS kernel; unset it to "
                  "benchmark", file=out)
