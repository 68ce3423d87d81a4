"""rnnfast.bench: how a measured row is judged against the issue's targets."""
import importlib
import pathlib
import sys

import numpy as np
import pytest


def test_judge_marks_targets_met_not_met_and_out_of_reach():
    from rnnfast.bench import _judge
    base = {"cell": "lstm", "mode": "train", "config": "small"}     # target 1.3
    row = dict(base, ms_torch=10.0, ms_rnnfast=7.0, ratio_torch=1.4)
    _judge(row, ms_at_peak=5.0)          # at the peak: 7 ms -> 5 ms, ratio 1.4 -> 1.96
    assert (row["target"], row["verdict"]) == (1.3, "met")
    assert row["bound"] == pytest.approx(1.96)
    assert row["need_peak"] == pytest.approx(1.3 / 1.96)
    row = dict(base, ms_torch=10.0, ms_rnnfast=10.0, ratio_torch=1.0)
    _judge(row, ms_at_peak=5.0)                  # 2.0 possible: not met
    assert row["verdict"] == "not met"
    row = dict(base, ms_torch=10.0, ms_rnnfast=10.0, ratio_torch=1.0)
    _judge(row, ms_at_peak=8.0)                  # 1.25 < 1.3 even at peak
    assert row["verdict"] == "out of reach" and row["need_peak"] > 1
    row = dict(base, ms_torch=None, ms_rnnfast=10.0, ratio_torch=None)
    _judge(row, ms_at_peak=8.0)
    assert row["verdict"] is None and row["bound"] is None and row["need_peak"] is None


@pytest.mark.parametrize("ratio", [1.29, 1.31])
def test_judge_scales_the_paired_ratio_so_percent_of_peak_agrees_with_the_verdict(ratio):
    """The verdict reads the median of the paired ratios, which can differ
    from the ratio of the two medians (here 10 / 7.8 = 1.282 < 1.3): the
    share of the peak reached is at least the share needed exactly when the
    target is met, and out of reach exactly when more than the peak is
    needed."""
    from rnnfast.bench import _against_peak
    flops = 5.0 * 100e6                  # 5 ms at a 100 GFLOP/s peak
    row = {"cell": "lstm", "mode": "train", "config": "small", "ms_torch": 10.0,
           "ms_rnnfast": 7.8, "ratio_torch": ratio, "flops": flops,
           "gflops": flops / 7.8e-3 / 1e9}
    _against_peak(row, 100.0)
    assert row["peak_fraction"] == pytest.approx(5.0 / 7.8)
    assert (row["peak_fraction"] >= row["need_peak"]) == (row["verdict"] == "met")
    assert row["verdict"] == ("met" if ratio >= 1.3 else "not met")
    assert (row["need_peak"] > 1) == (row["verdict"] == "out of reach")


def test_every_benchmark_script_imports_as_asv_imports_it():
    """asv imports every module of benchmarks/ as a package module
    (benchmarks.<name>), so a script that only works when run directly
    breaks the whole suite's discovery."""
    root = pathlib.Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / "__init__.py").exists():
        pytest.skip("no benchmarks/ beside the tests (installed package)")
    sys.path.insert(0, str(root))
    try:
        for path in sorted((root / "benchmarks").glob("*.py")):
            importlib.import_module(f"benchmarks.{path.stem}")
    finally:
        sys.path.remove(str(root))


def _benchmark_module(name):
    """benchmarks.<name> as asv imports it, or skip when the tests run
    without the repository's benchmarks/ beside them."""
    root = pathlib.Path(__file__).resolve().parents[1]
    if not (root / "benchmarks" / "__init__.py").exists():
        pytest.skip("no benchmarks/ beside the tests (installed package)")
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(f"benchmarks.{name}")
    finally:
        sys.path.remove(str(root))


@pytest.mark.parametrize("argv", [["x", "lstm", "small", "0"], ["x", "lstm", "small", "two"],
                                  ["x", "cnn", "small"], ["x", "lstm", "huge"]])
def test_step_phases_refuses_bad_arguments_naming_them(argv):
    with pytest.raises(SystemExit) as exc:
        _benchmark_module("step_phases").main(argv)
    assert "expected cells among" in str(exc.value) and argv[-1] in str(exc.value)


@pytest.mark.parametrize("rounds", ["0", "1"])
def test_ab_inprocess_refuses_fewer_than_two_rounds_before_loading_anything(rounds):
    """The per-round ratios' quartiles need two rounds: one round ended,
    after timing every case, in statistics.StatisticsError."""
    with pytest.raises(SystemExit) as exc:
        _benchmark_module("ab_inprocess").main(["x", "/nonexistent/old-tree",
                                                "lstm:train:tiny", rounds])
    assert "rounds: expected an integer >= 2" in str(exc.value) and rounds in str(exc.value)


@pytest.mark.parametrize("argv", [["x", "0"], ["x", "64", "two"], ["x", "k"]])
def test_blas_streaming_refuses_bad_arguments_naming_them(argv):
    with pytest.raises(SystemExit) as exc:
        _benchmark_module("blas_streaming").main(argv)
    assert "expected [K] [rounds]" in str(exc.value) and argv[-1] in str(exc.value)


def test_fma_bound_reads_the_bench_table_and_bounds_by_the_fma_peak(tmp_path, capsys):
    """benchmarks/fma_bound.py reads rnnfast bench's own Markdown table and
    bounds each row by the measured ratio scaled to the flops at the FMA peak."""
    from rnnfast.bench import _against_peak, format_table
    fma_bound = _benchmark_module("fma_bound")
    rows = []
    # small: the paired ratio (1.25) is not the ratio of the medians (1.2)
    for config, ms_torch, ratio in (("small", 12.0, 1.25), ("medium", 30.0, 3.0)):
        row = {"cell": "lstm", "mode": "train", "config": config, "threads": 1,
               "ms_rnnfast": 10.0, "ms_torch": ms_torch, "ratio_torch": ratio,
               "flops": 1e9, "gflops": 100.0}           # 1 GFLOP in 10 ms
        _against_peak(row, 100.0)
        rows.append(row)
    path = tmp_path / "run.md"
    path.write_text("header line\n" + format_table(rows, markdown=True) + "\n")
    read = fma_bound.read_rows(path)
    # At the sgemm peak (100) the GFLOP takes 10 ms: bound 1.25 < 1.3.
    assert read[("lstm", "train", "small", 1)] == (1.25, 12.0, pytest.approx(1.0), 1.3,
                                                   "out of reach", 10.0)
    fma_bound.main(["x", "125", "250", str(path)])
    out = capsys.readouterr().out
    # At an FMA peak of 125 it takes 8 ms: 1.25 * 10 / 8 = 1.56, within
    # reach of faster products than OpenBLAS's.  The met row is left out.
    assert "| lstm | train | small | 1 | 1.25 | 1.56 | 1.3 | out of reach |" in out
    assert "medium" not in out


@pytest.mark.parametrize("argv", [["x"], ["x", "116", "two", "f.md"]])
def test_fma_bound_refuses_bad_arguments(argv):
    with pytest.raises(SystemExit) as exc:
        _benchmark_module("fma_bound").main(argv)
    assert "FMA" in str(exc.value)


def test_gemm_peak_follows_the_dtype_and_the_header_names_it(monkeypatch):
    """A float64 bench is judged against dgemm's peak, not sgemm's (which
    is about twice it): the header says which one it measured."""
    import scipy.linalg.blas as blas
    from rnnfast.bench import format_header, gemm_peak, sgemm_peak
    calls = []

    def spy(name):
        real = getattr(blas, name)

        def gemm(alpha, a, b, **kwargs):
            calls.append((name, a.dtype, b.dtype, kwargs["c"].dtype))
            return real(alpha, a, b, **kwargs)
        monkeypatch.setattr(blas, name, gemm)
    spy("sgemm")
    spy("dgemm")
    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
    single = gemm_peak(1, 256, repeats=3)
    assert calls and set(calls) == {("sgemm", f32, f32, f32)}
    calls.clear()
    double = gemm_peak(1, 256, repeats=3, dtype=np.float64)
    assert calls and set(calls) == {("dgemm", f64, f64, f64)}
    calls.clear()
    assert single > 0 and double > 0
    assert sgemm_peak(1, 256, repeats=3) > 0
    assert calls and set(calls) == {("sgemm", f32, f32, f32)}
    header = {"blas": None, "torch": None, "load": (0, 0, 0), "clock": {1: "wall"},
              "settle": 0, "warnings": [], "peak_gflops": {1: double}}
    assert "measured dgemm peak: 1 thread" in format_header(dict(header, dtype="float64"))
    assert "measured sgemm peak: 1 thread" in format_header(dict(header, dtype="float32"))
    with pytest.raises(ValueError, match="dtype: expected float32 or float64, got float16"):
        gemm_peak(1, 64, dtype=np.float16)


@pytest.mark.parametrize("case,env,named", [
    ("lstm:train", {}, "case"), ("cnn:train:small", {}, "cell"), ("lstm:fit:small", {}, "mode"),
    ("lstm:train:huge", {}, "config"), ("lstm:train:8,10,4", {}, "config"),
    ("lstm:train:8,0,4,4", {}, "config"), ("lstm:train:small", {"THREADS": "two"}, "THREADS"),
    ("lstm:train:small", {"SECS": "-1"}, "SECS")])
def test_loop_calls_refuses_bad_arguments_naming_them(monkeypatch, case, env, named):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exc:
        _benchmark_module("loop_calls").main(case)
    assert named in str(exc.value)


def test_loop_calls_runs_a_case(monkeypatch, capsys):
    monkeypatch.setenv("SECS", "0.05")
    _benchmark_module("loop_calls").main("gru:train:4,3,2,5")
    assert "gru:train:4,3,2,5, 1 thread(s):" in capsys.readouterr().out
