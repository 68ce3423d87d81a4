"""Shared set-up of the asv suite: configurations (rnnfast.bench.CONFIGS),
fixed-seed data and thread control; and a wall-clock timer for the
interleaved A/B scripts.

Every benchmark runs at one BLAS thread unless it says otherwise, so a
result does not depend on what colleagues run on the other core.
"""
import statistics
import time

import numpy as np

try:
    from threadpoolctl import threadpool_limits
except ImportError:                     # asv still runs, with default threads
    threadpool_limits = None

# the configurations of `rnnfast bench`, said once there; gate counts from the layout
from rnnfast._layout import N_GATES  # noqa: E402
from rnnfast.bench import CONFIGS  # noqa: E402


def limit_threads(n=1):
    """Keep a limiter alive on the benchmark object (asv calls setup/teardown)."""
    if threadpool_limits is None:
        return None
    return threadpool_limits(limits=n)


def data(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def weights(cell, D, H, dtype, seed=0, reset_after=False):
    rng = np.random.default_rng(seed)
    G = N_GATES[cell] * H
    bound = 1 / np.sqrt(H)
    bshape = (2, G) if reset_after else (G,)
    return [rng.uniform(-bound, bound, s).astype(dtype) for s in ((D, G), (H, G), bshape)]


def gemm_flops(cell, train, N, T, D, H):
    fwd = 2.0 * N * T * (D + H) * N_GATES[cell] * H
    return 3 * fwd if train else fwd


def network(cell, D, H, dtype, seed=0):
    import rnnfast
    cls = {"rnn": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU}[cell]
    return cls(D, H, dtype=dtype, random_state=seed)


def median_wall_time(call, seconds=0.3):
    """Median wall time of call() over at least 5 calls and `seconds`."""
    times, end = [], time.perf_counter() + seconds
    while len(times) < 5 or time.perf_counter() < end:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def best_time_and_output(call, n=3):
    """(the least wall time of n calls of call(), the last call's output):
    the interleaved A/B scripts that also check both ways' outputs equal."""
    best, out = float("inf"), None
    for _ in range(n):
        t0 = time.perf_counter()
        out = call()
        best = min(best, time.perf_counter() - t0)
    return best, out


def interleaved_ab(ways, call, rounds, warm=True):
    """Two ways of the same call, interleaved in one process: ways is two
    (name, put) pairs, put() setting that way in place.  Each round, for
    each way in turn: put(), an untimed call when warm, then the best of 3
    timed calls; the two outputs must be equal (np.array_equal).  Returns a
    line with both medians (ms) and the median of the per-round ratios
    first / second (the new-interleaved A/B scripts of docs items
    177-182)."""
    times = {name: [] for name, _ in ways}
    for _ in range(rounds):
        outs = []
        for name, put in ways:
            put()
            if warm:
                call()
            t, out = best_time_and_output(call)
            times[name].append(t)
            outs.append(out)
        assert np.array_equal(*outs), "the two ways' outputs differ"
    (a, ta), (b, tb) = times.items()
    ratio = statistics.median(x / y for x, y in zip(ta, tb))
    return (f"{a} {1e3 * statistics.median(ta):.2f} ms, {b} {1e3 * statistics.median(tb):.2f}"
            f" ms, median ratio {ratio:.3f}")


def best_us_a_call(call, n, blocks=3):
    """us a call of `call`: the best of `blocks` blocks of n calls (the
    interleaved A/B scripts of short calls, where the best block is the
    least disturbed by the machine)."""
    best = float("inf")
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(n):
            call()
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


def switch_ab(call, switch, labels, rounds, calls_a_turn=3, pause=0.0):
    """A switch's two settings, interleaved turn by turn in one process:
    switch(False) for labels[0], switch(True) for labels[1], each turn
    `calls_a_turn` calls after an untimed `pause` (s).  Returns a line
    with both medians (ms a call) and the median per-round ratio
    labels[0] / labels[1] with its quartiles; leaves the switch on."""
    times = {label: [] for label in labels}
    for on in (False, True):
        switch(on)
        call()
    for _ in range(rounds):
        for label, on in zip(labels, (False, True)):
            switch(on)
            if pause:
                time.sleep(pause)
            t0 = time.perf_counter()
            for _ in range(calls_a_turn):
                call()
            times[label].append((time.perf_counter() - t0) / calls_a_turn * 1e3)
    switch(True)
    a, b = times[labels[0]], times[labels[1]]
    ratios = [x / y for x, y in zip(a, b)]
    q = statistics.quantiles(ratios, n=4)
    return (f"{labels[0]} {statistics.median(a):7.2f} ms  {labels[1]} {statistics.median(b):7.2f}"
            f" ms  {labels[0]}/{labels[1]} {statistics.median(ratios):.3f} "
            f"(quartiles {q[0]:.3f}-{q[2]:.3f})")
