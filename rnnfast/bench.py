"""Side-by-side timing of rnnfast, PyTorch and the NumPy reference.

`rnnfast bench` (see rnnfast.cli) calls `run`.  Everything is timed in one
process, interleaved (rnnfast, torch, reference, rnnfast, torch, ...), so a
colleague's job slows every implementation alike; the ratio reported is the
median of the per-round ratios torch / rnnfast, not a ratio of medians.

A "training step" is the network's forward in training mode plus backward to
the inputs and the parameters, for one unidirectional layer, batch-major
(N, T, D) in every implementation (torch: batch_first=True, x.requires_grad).
"Inference" is rnnfast's eval mode against torch.no_grad().

This module imports torch and threadpoolctl lazily: neither is a dependency
of rnnfast.  It returns rows; only rnnfast.cli prints.
"""
import os
import time

import numpy as np

# name: (N batch, T steps, D input, H hidden)
CONFIGS = {
    "tiny": (1, 100, 64, 64),
    "small": (32, 35, 128, 128),
    "zaremba-small": (20, 20, 200, 200),
    "medium": (64, 100, 64, 256),
    "zaremba-medium": (20, 35, 650, 650),
    "large": (128, 50, 512, 512),
}
CELLS = ("rnn", "lstm", "gru")

# The targets: PyTorch time / rnnfast time, at 1 and at 2 threads.
TARGETS = {("lstm", "train"): {"tiny": 3.0, "small": 1.3, "zaremba-small": 1.3,
                               "medium": 1.5, "zaremba-medium": 1.0, "large": 1.0},
           ("lstm", "infer"): {"tiny": 2.0, "small": 1.0, "zaremba-small": 1.0,
                               "medium": 1.0, "zaremba-medium": 0.9, "large": 0.9}}
for _cell in ("gru", "rnn"):
    for _mode in ("train", "infer"):
        TARGETS[(_cell, _mode)] = dict.fromkeys(CONFIGS, 2.0)
MODES = ("train", "infer")
IMPLS = ("rnnfast", "torch", "reference")
N_GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def gemm_flops(cell, mode, N, T, D, H):
    """Floating-point operations of the GEMMs of one call (element-wise work
    not counted): forward x Wx and h Wh; backward adds dX, dWx, dH, dWh."""
    G = N_GATES[cell] * H
    fwd = 2.0 * N * T * (D + H) * G
    return fwd if mode == "infer" else 3.0 * fwd


# ------------------------------------------------------------ environment
def _rnnfast_kernel(dtype):
    """What runs rnnfast's products at this dtype (the same kernel for
    float32 and float64)."""
    from . import _core
    return _core.kernel_name()


def blas_kernel():
    """(internal_api, version, architecture) of the BLAS scipy's cython_blas
    (and so rnnfast's kernels) uses, from threadpoolctl; None if unknown."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    import scipy.linalg  # noqa: F401  loads scipy's BLAS
    libs = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
    libs.sort(key=lambda lib: "scipy.libs" not in lib.get("filepath", ""))
    if not libs:
        return None
    lib = libs[0]
    return (lib.get("internal_api"), lib.get("version"), lib.get("architecture"))


def environment_warnings():
    """Messages about settings that make numbers unrepresentative."""
    out = []
    core = os.environ.get("OPENBLAS_CORETYPE")
    if core:
        out.append(f"OPENBLAS_CORETYPE={core} forces an OpenBLAS kernel (often an older, "
                   "slower one); unset it for benchmarks: "
                   "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE rnnfast bench ...")
    l2 = os.environ.get("OPENBLAS_L2_SIZE")
    if l2:
        out.append(f"OPENBLAS_L2_SIZE={l2} overrides OpenBLAS's cache blocking")
    try:
        load = os.getloadavg()[0]
        cpus = os.cpu_count() or 1
        if load > 0.5:
            out.append(f"load average {load:.2f} on {cpus} CPUs: other jobs are running, "
                       "absolute times are noisy (ratios less so)")
    except OSError:
        pass
    return out


def thread_limit(n):
    """A context manager limiting every BLAS/OpenMP pool (and torch) to n."""
    import contextlib

    @contextlib.contextmanager
    def limit():
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            threadpool_limits = None
        torch = _torch()
        old = torch.get_num_threads() if torch is not None else None
        if torch is not None:
            torch.set_num_threads(n)
        try:
            if threadpool_limits is None:
                yield
            else:
                with threadpool_limits(limits=n):
                    yield
        finally:
            if torch is not None:
                torch.set_num_threads(old)
    return limit()


def gemm_peak(threads=1, size=1536, repeats=12, clock=time.perf_counter, dtype=np.float32):
    """Best GFLOP/s of scipy's sgemm, or dgemm for dtype float64 (the BLAS
    the kernels call) on a square product of `size`, at `threads` threads
    (best of `repeats`: a disturbed run can only make a product slower, so
    the best is the peak)."""
    from scipy.linalg.blas import dgemm, sgemm
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype: expected float32 or float64, got {dtype}")
    gemm = sgemm if dtype == np.float32 else dgemm
    rng = np.random.default_rng(0)
    a = np.asfortranarray(rng.standard_normal((size, size)).astype(dtype))
    b = np.asfortranarray(rng.standard_normal((size, size)).astype(dtype))
    c = np.zeros((size, size), dtype, order="F")
    best = float("inf")
    with thread_limit(threads):
        gemm(1.0, a, b, c=c, overwrite_c=True)
        for _ in range(repeats):
            t0 = clock()
            gemm(1.0, a, b, c=c, overwrite_c=True)
            best = min(best, clock() - t0)
    return 2.0 * size ** 3 / best / 1e9


def sgemm_peak(threads=1, size=1536, repeats=12, clock=time.perf_counter):
    """gemm_peak in float32."""
    return gemm_peak(threads, size, repeats, clock)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


# ------------------------------------------------------------ the callables
def make_case(impl, cell, mode, N, T, D, H, dtype=np.float32, seed=0):
    """A zero-argument callable running one call of `impl`, or None when the
    implementation is unavailable.  Inputs and weights come from `seed`."""
    import rnnfast
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((N, T, D)).astype(dtype)
    dhs = rng.standard_normal((N, T, H)).astype(dtype)
    cls = {"rnn": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU}[cell]
    net = cls(D, H, dtype=dtype, random_state=seed)
    if impl == "rnnfast":
        if mode == "train":
            def call():
                net.forward(xs)
                net.backward(dhs)
        else:
            net.eval()

            def call():
                net.forward(xs)
        return call
    if impl == "torch":
        torch = _torch()
        if torch is None:
            return None
        tcls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        tdt = torch.float32 if np.dtype(dtype) == np.float32 else torch.float64
        mod = tcls(D, H, batch_first=True).to(tdt)
        with torch.no_grad():
            for name, value in rnnfast.interop.to_torch_state_dict(net).items():
                getattr(mod, name).copy_(torch.from_numpy(value))
        x = torch.from_numpy(xs)
        dy = torch.from_numpy(dhs)
        if mode == "train":
            mod.train()
            x.requires_grad_(True)

            def call():
                x.grad = None
                mod.zero_grad(set_to_none=True)
                y, _ = mod(x)
                y.backward(dy)
        else:
            mod.eval()

            def call():
                with torch.no_grad():
                    mod(x)
        return call
    if impl == "reference":
        from . import _reference as ref
        Wx, Wh, b = net.layer_params(0)
        h0 = np.zeros((N, H), dtype)
        c0 = h0.copy() if cell == "lstm" else None
        opts = {"reset_after": True} if cell == "gru" else {}

        def call():
            hs, h, c, caches = ref.sequence_forward(cell, xs, Wx, Wh, b, h0, c0, **opts)
            if mode == "train":
                ref.sequence_backward(dhs, np.zeros_like(h0),
                                      None if c0 is None else np.zeros_like(h0), caches)
        return call
    raise ValueError(f"impl: expected one of {IMPLS}, got {impl!r}")


def time_interleaved(calls, repeats=7, min_time=0.02, max_time=None, clock=time.perf_counter,
                     settle=0.0):
    """Per-round times (seconds per call) of each callable, interleaved.

    Each round runs every callable `number` times in turn (A..A B..B ...),
    `number` chosen so the slowest-needed round of each callable lasts about
    `min_time`.  max_time stops early (after at least 3 rounds) once the
    total exceeds it.  settle: an untimed sleep (seconds) before each
    callable's turn, so that the thread pool of the one before is idle
    again: OpenMP (PyTorch) and OpenBLAS workers spin for a while after a
    parallel region, and at 2 threads the next library would share its
    cores with them (measured: rnnfast's LSTM training step, zaremba-small,
    2 threads, 6.3-7.2 ms right after PyTorch's turn, 4.9-5.6 ms after a
    20 ms pause; PyTorch's own times did not change).  Returns {name:
    [seconds per call, one per round]}."""
    numbers = {}
    for name, fn in calls.items():
        fn()                                     # warm up (allocations, caches)
        t0 = clock()
        fn()
        dt = clock() - t0
        numbers[name] = max(1, int(min_time / max(dt, 1e-7)))
    times = {name: [] for name in calls}
    start = time.perf_counter()
    for r in range(repeats):
        for name, fn in calls.items():
            n = numbers[name]
            if settle:
                time.sleep(settle)
            t0 = clock()
            for _ in range(n):
                fn()
            times[name].append((clock() - t0) / n)
        if max_time is not None and r >= 2 and time.perf_counter() - start > max_time:
            break
    return times


def run(cells=CELLS, modes=MODES, configs=tuple(CONFIGS), threads=(1, 2),
        impls=IMPLS, dtype=np.float32, repeats=7, min_time=0.02, reference_max_ms=2000,
        peak_size=1536, progress=None, clock="wall", settle=0.02):
    """Time every combination; returns (header dict, list of row dicts).

    clock="cpu" times single-thread runs with the process's CPU time
    (time.process_time), which a loaded machine disturbs far less than wall
    time; runs at more than one thread always use wall time.

    A row: cell, mode, config, threads, N, T, D, H, ms_<impl> (median),
    ratio_<impl> (median over rounds of impl time / rnnfast time), gflops
    (rnnfast, GEMM flops only) and peak_fraction (of the GEMM peak at that
    thread count and dtype: sgemm's, dgemm's for float64).  The reference is skipped (None) for a case whose first
    call takes longer than reference_max_ms."""
    dtype = np.dtype(dtype)
    header = {"blas": blas_kernel(), "warnings": environment_warnings(),
              "rnnfast_kernel": _rnnfast_kernel(dtype),
              "torch": getattr(_torch(), "__version__", None),
              "dtype": dtype.name, "load": _load(), "peak_gflops": {},
              "clock": {n: ("cpu" if clock == "cpu" and n == 1 else "wall") for n in threads},
              "settle": settle}
    for n in threads:
        header["peak_gflops"][n] = gemm_peak(
            n, peak_size, clock=time.process_time if header["clock"][n] == "cpu"
            else time.perf_counter, dtype=dtype)
    if any(n > 1 for n in threads):
        # OpenBLAS's threads spin ~0.1 s after the threaded peak; the first
        # row at 2 threads would share a core with them (docs/performance.md,
        # item 117).  Let them go to sleep first.
        time.sleep(0.25)
    rows = []
    for n in threads:
        with thread_limit(n):
            for cell in cells:
                for mode in modes:
                    for cfg in configs:
                        N, T, D, H = CONFIGS[cfg]
                        calls = {}
                        for impl in impls:
                            fn = make_case(impl, cell, mode, N, T, D, H, dtype)
                            if fn is None:
                                continue
                            if impl == "reference" and _too_slow(fn, reference_max_ms):
                                continue
                            calls[impl] = fn
                        timer = (time.process_time if header["clock"][n] == "cpu"
                                 else time.perf_counter)
                        times = time_interleaved(calls, repeats, min_time, clock=timer,
                                                 settle=settle)
                        row = {"cell": cell, "mode": mode, "config": cfg, "threads": n,
                               "N": N, "T": T, "D": D, "H": H}
                        base = np.array(times["rnnfast"])
                        for impl in impls:
                            if impl in times:
                                t = np.array(times[impl])
                                row[f"ms_{impl}"] = 1e3 * float(np.median(t))
                                row[f"ratio_{impl}"] = float(np.median(t / base))
                            else:
                                row[f"ms_{impl}"] = row[f"ratio_{impl}"] = None
                        row["flops"] = gemm_flops(cell, mode, N, T, D, H)
                        row["gflops"] = row["flops"] / (row["ms_rnnfast"] * 1e-3) / 1e9
                        _against_peak(row, header["peak_gflops"][n])
                        rows.append(row)
                        if progress is not None:
                            progress(row)
    # The peak once more at the end: a disturbed measurement can only be too
    # low, so the higher of the two stands, and the rows are judged against it.
    for n in threads:
        again = gemm_peak(n, peak_size, clock=time.process_time if header["clock"][n] == "cpu"
                          else time.perf_counter, dtype=dtype)
        if again > header["peak_gflops"][n]:
            header["peak_gflops"][n] = again
            for row in rows:
                if row["threads"] == n:
                    _against_peak(row, again)
    return header, rows


def _against_peak(row, peak_gflops):
    row["peak_fraction"] = row["gflops"] / peak_gflops
    _judge(row, row["flops"] / (peak_gflops * 1e6))


def _judge(row, ms_at_peak):
    """Against the issue's target: `bound` is the largest torch/rnnfast
    ratio physically possible, the measured ratio had rnnfast taken only
    the time of its GEMM flops at 100 % of the measured GEMM peak
    (everything else taken as free, so a true upper bound); `need_peak` the
    fraction of the peak at which those flops would have to run to meet the
    target (above 1: impossible); `verdict` is met, not met, or out of reach
    (target above the bound).

    All three scale the paired ratio (the median of torch/rnnfast over the
    interleaved rounds), never the ratio of the two medians, so that "%
    peak" >= "need % peak" exactly when the verdict is met."""
    target = TARGETS.get((row["cell"], row["mode"]), {}).get(row["config"])
    row["target"] = target
    ratio = row.get("ratio_torch")
    row["bound"] = None if ratio is None else ratio * row["ms_rnnfast"] / ms_at_peak
    row["need_peak"] = (None if target is None or row["bound"] is None
                        else target / row["bound"])
    if target is None or row.get("ratio_torch") is None:
        row["verdict"] = None
    elif row["ratio_torch"] >= target:
        row["verdict"] = "met"
    elif row["bound"] < target:
        row["verdict"] = "out of reach"
    else:
        row["verdict"] = "not met"


def _too_slow(fn, limit_ms):
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3 > limit_ms


def _load():
    try:
        return tuple(round(x, 2) for x in os.getloadavg())
    except OSError:
        return None


# -------------------------------------------------------------- formatting
def format_header(header):
    """The header dict of `run` -> text, one line each: BLAS, rnnfast's
    kernel, torch, dtype, load, clocks and settle, the GEMM peak per thread
    count, then one "WARNING: ..." line per warning."""
    lines = []
    blas = header["blas"]
    if blas:
        lines.append(f"BLAS (scipy's, used by the kernels): {blas[0]} {blas[1]}, "
                     f"kernel {blas[2]}")
    else:
        lines.append("BLAS: unknown (install threadpoolctl to see the kernel)")
    if "rnnfast_kernel" in header:
        lines.append(f"rnnfast's products: {header['rnnfast_kernel']}")
    lines.append(f"torch: {header['torch'] or 'not installed'}   dtype: {header['dtype']}   "
                 f"load average: {header['load']}   clock: " + ", ".join(
                     f"{n} thr {c}" for n, c in header.get("clock", {}).items())
                 + f"   settle: {header.get('settle', 0) * 1e3:.0f} ms")
    gemm = "dgemm" if header.get("dtype") == "float64" else "sgemm"
    lines.append(f"measured {gemm} peak: " + ", ".join(
        f"{n} thread{'s' if n > 1 else ''} {g:.0f} GFLOP/s"
        for n, g in header["peak_gflops"].items()))
    for w in header["warnings"]:
        lines.append("WARNING: " + w)
    return "\n".join(lines)


COLUMNS = ("cell", "mode", "config", "thr", "rnnfast ms", "torch ms", "ref ms",
           "torch/rnnfast", "ref/rnnfast", "GFLOP/s", "% peak", "target", "bound",
           "need % peak", "verdict")


def format_row(row):
    """A row dict of `run` -> a tuple of strings, one per COLUMNS ("-"
    where an optional value is None or missing)."""
    def ms(v):
        return "-" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")

    def ratio(v):
        return "-" if v is None else f"{v:.2f}"
    return (row["cell"], row["mode"], row["config"], str(row["threads"]),
            ms(row["ms_rnnfast"]), ms(row.get("ms_torch")), ms(row.get("ms_reference")),
            ratio(row.get("ratio_torch")), ratio(row.get("ratio_reference")),
            f"{row['gflops']:.1f}", f"{100 * row['peak_fraction']:.0f}",
            ratio(row.get("target")), ratio(row.get("bound")),
            "-" if row.get("need_peak") is None else f"{100 * row['need_peak']:.0f}",
            row.get("verdict") or "-")


def format_table(rows, markdown=False):
    """Rows of `run` -> a table with a COLUMNS header: aligned plain text
    (the first three columns left-aligned, the others right-aligned), or
    with markdown=True a Markdown table."""
    cells = [COLUMNS] + [format_row(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    if markdown:
        out = ["| " + " | ".join(COLUMNS) + " |",
               "|" + "|".join(" --- " for _ in COLUMNS) + "|"]
        out += ["| " + " | ".join(c) + " |" for c in cells[1:]]
        return "\n".join(out)
    return "\n".join("  ".join(c[i].rjust(widths[i]) if i > 2 else c[i].ljust(widths[i])
                               for i in range(len(COLUMNS))) for c in cells)
