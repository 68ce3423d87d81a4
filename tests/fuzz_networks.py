"""A differential fuzzer: random networks at the sizes where the fast paths
run, against the numpy reference twin (rnnfast._reference).

tests/test_properties.py draws shapes of 1 to 4: there no product reaches
the packed kernel's wide tiles, its ragged last panels, the one-row GEMVs
by groups or by segments, a step loop split over threads, the prefetches
and chunks of a long call, or the rebuilt saved states.  Here every case
draws its sizes from values around those paths' edges (multiples of 8, 16
and 32, plus and minus one; rows around the tile heights; sometimes a long
sequence), a cell and its options, 1 or 2 layers (dropout between them in
about a third of those), one or two directions, ragged lengths, an initial
state, one case in four a stateful network run in two chunks (ragged ones
with lengths of their own in each chunk), one in five without biases,
float32 or float64, 1 or 2 threads, and a random setting of
every kernel switch of rnnfast._core (each path and its alternative
compute the same sums), with split limits of 1 in half the cases so that
even small calls run on two threads.  It then checks a training forward
and backward (outputs, final states, dL/dxs, dL/dstate, every parameter
gradient) and an evaluation forward against the reference in float64; the
same through a Time layer where the case has one layer, one direction and
no lengths; a save and load of the network (and of the Time layer and
the cell), whose evaluation forward must be bitwise the same; one step of
a cell in every case; and an evaluation forward after one weight of a
matrix changed in place (the packing of an inference call's weights is
kept for the next call and compared row by row), then in two pack
epochs with another weight changed between them.  Every switch is
put back to its default (on; GEMV groups automatic) at the end: run it
where the switches are at their defaults.

    python tests/fuzz_networks.py [--cases N] [--minutes M] [--seed S]

prints one line a failing case, with the seed that replays it alone
(`--seed S --cases 1`), and exits 1 if any failed.  tests/
test_fuzz_networks.py runs a few fixed seeds in the suite.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import _core, _gru, _lstm, _reference, _rnn
from rnnfast._layout import bias_shape
from rnnfast.io import get_config, load, save

TOL = {np.dtype(np.float32): dict(rtol=2e-3, atol=2e-4),
       np.dtype(np.float64): dict(rtol=1e-8, atol=1e-10)}
CELLS = [("rnn", {"nonlinearity": "tanh"}), ("rnn", {"nonlinearity": "relu"}),
         ("lstm", {}), ("gru", {"reset_after": False}), ("gru", {"reset_after": True})]
NETWORKS = {"rnn": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU}
TIME_LAYERS = {"rnn": rnnfast.TimeRNN, "lstm": rnnfast.TimeLSTM, "gru": rnnfast.TimeGRU}
CELL_LAYERS = {"rnn": rnnfast.RNNCell, "lstm": rnnfast.LSTMCell, "gru": rnnfast.GRUCell}
# Widths around the packed layout's edges: panels of 16 floats (8 doubles),
# wide tiles of 32 columns, half panels of at most 8, groups of 4 and 8
# panels for the one-row products.
EDGE_WIDTHS = [1, 2, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 40, 47, 48, 49, 63, 64, 65,
               96, 100, 127, 128, 129, 136, 160, 200, 255, 256, 257]
# Rows around the tile heights (6 and 8) and the row blocks (96, 192).
EDGE_ROWS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 16, 17, 20, 31, 32, 33, 48, 64, 65, 97]
MAX_CASE_CELLS = 3_000_000        # N * T * H * gates, to keep the reference quick


def draw_case(rng):
    """One problem: sizes, options and switches, from rng."""
    cell, opts = CELLS[rng.integers(len(CELLS))]
    dtype = np.dtype(np.float32 if rng.random() < 0.7 else np.float64)
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    while True:
        N = int(rng.choice(EDGE_ROWS))
        H = int(rng.choice(EDGE_WIDTHS))
        D = int(rng.choice(EDGE_WIDTHS))
        # mostly short; sometimes long enough for the long-call paths
        T = int(rng.integers(1, 41)) if rng.random() < 0.8 else int(rng.integers(100, 600))
        if N * T * H * gates <= MAX_CASE_CELLS:
            break
    switches = dict(
        packed=bool(rng.random() < 0.9), packed_dw=bool(rng.random() < 0.9),
        wide=bool(rng.random() < 0.7), unpacked_b=bool(rng.random() < 0.7),
        gemv8=[None, True, False][rng.integers(3)], half=bool(rng.random() < 0.7),
        segments=bool(rng.random() < 0.7), prefetch=bool(rng.random() < 0.7),
        chunks=bool(rng.random() < 0.7), split_packing=bool(rng.random() < 0.7),
        pool=bool(rng.random() < 0.8), direct_infer=bool(rng.random() < 0.7),
        threads=int(rng.integers(1, 3)), split_all=bool(rng.random() < 0.5),
    )
    relu = opts.get("nonlinearity") == "relu"
    stateful = T >= 2 and rng.random() < 0.25
    layers = int(rng.integers(1, 3)) if T * N * H < 400_000 else 1
    dropout = 0.0          # between two layers
    if layers == 2 and rng.random() < 0.3:
        dropout = float(rng.choice([0.25, 0.5]))
    case = dict(cell=cell, opts=opts, dtype=dtype, N=N, T=T, D=D, H=H, stateful=stateful,
                layers=layers, dropout=dropout, bidirectional=bool(rng.random() < 0.4),
                bias=bool(rng.random() < 0.8),
                # lengths of their own for each chunk of a stateful case
                ragged=bool(rng.random() < 0.4),
                with_state=bool(rng.random() < 0.5), switches=switches)
    # drawn last, so that a seed draws the same case as before this switch
    switches["dgemv"] = bool(rng.random() < 0.7)
    switches["narrow"] = bool(rng.random() < 0.7)      # drawn after dgemv, for the same reason
    switches["repack"] = bool(rng.random() < 0.7)      # and after narrow
    switches["tall"] = bool(rng.random() < 0.7)        # and after repack
    switches["align"] = bool(rng.random() < 0.7)       # and after tall
    switches["cols"] = int(rng.choice(3, p=[0.2, 0.4, 0.4]))   # and after align
    return case


class kernel_settings:
    """Sets the switches of a case on all three kernel modules; puts the
    defaults back on exit (every switch's default is on, gemv8 automatic,
    cols 1: the rule)."""

    def __init__(self, sw):
        self.sw = sw

    def __enter__(self):
        sw = self.sw
        _core.use_packed_gemm(sw["packed"], dw=sw["packed_dw"])
        _core.use_wide_tiles(sw["wide"])
        _core.use_unpacked_b(sw["unpacked_b"])
        _core.use_gemv_groups_of_8(sw["gemv8"])
        _core.use_half_panels(sw["half"])
        _core.use_gemv_segments(sw["segments"])
        _core.use_prefetch(sw["prefetch"])
        _core.use_grad_chunks(sw["chunks"])
        _core.use_split_packing(sw["split_packing"])
        _core.use_thread_pool(sw["pool"])
        _core.use_direct_infer(sw["direct_infer"])
        _core.use_dgemv(sw["dgemv"])
        _core.use_narrow_inputs(sw.get("narrow", True))
        _core.use_repack(sw.get("repack", True))
        _core.use_tall_tiles(sw.get("tall", True))
        _core.use_aligned_scratch(sw.get("align", True))
        _core.use_col_split(sw.get("cols", 1))
        self.limits = [m.split_limits() for m in (_rnn, _lstm, _gru)]
        if sw["split_all"]:
            for m in (_rnn, _lstm, _gru):
                m.split_limits(1, 1, 1)
        self.blas = threadpool_limits(sw["threads"])
        return self

    def __exit__(self, *exc):
        self.blas.unregister()
        for m, limits in zip((_rnn, _lstm, _gru), self.limits):
            m.split_limits(*limits)
        _core.use_packed_gemm(True)
        for switch in (_core.use_wide_tiles, _core.use_unpacked_b, _core.use_half_panels,
                       _core.use_gemv_segments, _core.use_prefetch, _core.use_grad_chunks,
                       _core.use_split_packing, _core.use_thread_pool,
                       _core.use_direct_infer, _core.use_dgemv, _core.use_narrow_inputs,
                       _core.use_repack, _core.use_tall_tiles, _core.use_aligned_scratch):
            switch(True)
        _core.use_gemv_groups_of_8(None)
        _core.use_col_split(1)
        return False


def weights(net, layer, d):
    """[Wx, Wh, b] of a layer and direction; b zeros where net has no bias
    (the Time layers and cells then get a zero b, which they also train)."""
    params = net.layer_params(layer, d)
    if net.bias:
        return params
    reset_after = getattr(net, "reset_after", False)         # GRU only
    return params + [np.zeros(bias_shape(net.cell, net.hidden_size, reset_after),
                              net.dtype)]


def reference_network(case, net, xs, h0, c0, lengths, masks=None):
    """The reference's outputs, final states and caches, layer by layer, in
    float64 from the same values: what differs is the kernels' rounding.
    masks: the dropout mask of each layer's input (None: none)."""
    cell, opts, H = case["cell"], case["opts"], case["H"]
    nd = net.num_directions
    x = xs.astype(np.float64)
    caches, h_n, c_n = [], [], []
    for layer in range(net.num_layers):
        if masks is not None and masks[layer] is not None:
            x = x * masks[layer]
        outs = []
        for d in range(nd):
            i = layer * nd + d
            Wx, Wh, b = (p.astype(np.float64) for p in weights(net, layer, d))
            hs_r, h_r, c_r, cache = _reference.sequence_forward(
                cell, x, Wx, Wh, b, h0[i].astype(np.float64),
                c0[i].astype(np.float64) if cell == "lstm" else None, lengths, d == 1, **opts)
            outs.append(hs_r)
            caches.append(cache)
            h_n.append(h_r)
            c_n.append(c_r)
        x = np.concatenate(outs, axis=2)
    return x, np.stack(h_n), (np.stack(c_n) if cell == "lstm" else None), caches


def reference_backward(case, net, dhs, dh_n, dc_n, caches, masks=None):
    """dL/dxs, dL/dh0 (and dc0) and the gradients in net.grads's order;
    masks as in reference_network."""
    H, nd, cell = case["H"], net.num_directions, case["cell"]
    grads = [None] * len(net.params)
    dh0 = [None] * (net.num_layers * nd)
    dc0 = [None] * (net.num_layers * nd)
    dout = dhs.astype(np.float64)
    per = len(net.params) // (net.num_layers * nd)
    for layer in reversed(range(net.num_layers)):
        dx = None
        for d in range(nd):
            i = layer * nd + d
            dx_r, dh0_r, dc0_r, g = _reference.sequence_backward(
                np.ascontiguousarray(dout[:, :, d * H:(d + 1) * H]), dh_n[i].astype(np.float64),
                dc_n[i].astype(np.float64) if cell == "lstm" else None, caches[i])
            dx = dx_r if dx is None else dx + dx_r
            dh0[i], dc0[i] = dh0_r, dc0_r
            grads[i * per:(i + 1) * per] = list(g)[:per]
        if masks is not None and masks[layer] is not None:
            dx = dx * masks[layer]
        dout = dx
    return dout, np.stack(dh0), (np.stack(dc0) if cell == "lstm" else None), grads


def relu_masks_from(outputs, caches, nd, H):
    """Give the reference's ReLU steps the kernel's own outputs as h_next,
    so that its backward takes the kernel's side of the kink wherever a
    pre-activation lies within float32 rounding of 0.  ReLU's derivative
    jumps there: about one unit in a million does, and took a large case's
    gradients with it (most of its dW off by up to ~0.3 %, with the packed
    products off as much as on).  outputs: each layer's (N, T, nd*H)
    outputs from the kernel (lower_layer_outputs for the first of two).
    The outputs themselves are continuous, and compared as they are."""
    for i, (cell, shape, steps) in enumerate(caches):
        layer, d = divmod(i, nd)
        for j, (rows, t, cache) in enumerate(steps):
            x, h, _, Wx, Wh, nonlinearity = cache
            ours = outputs[layer][rows, t, d * H:(d + 1) * H].astype(np.float64)
            steps[j] = (rows, t, (x, h, ours, Wx, Wh, nonlinearity))


def lower_layer_outputs(case, net, xs, state, lengths):
    """The first layer's outputs of a two-layer network, run again as a
    network of that layer alone (the same kernels on the same values, so
    the same outputs), from `state` (the whole network's, or None), in
    training.  The network keeps only the upper layer's input, which its
    dropout has zeroed in places."""
    nd = net.num_directions
    alone = NETWORKS[case["cell"]](case["D"], case["H"], bidirectional=net.bidirectional,
                                   bias=net.bias, dtype=net.dtype, **case["opts"])
    for d in range(nd):
        for ours, theirs in zip(alone.layer_params(0, d), net.layer_params(0, d)):
            ours[...] = theirs
    if state is not None:
        state = state[:nd].copy()
    return alone.forward(xs, state, lengths)[0]


def close(name, ours, ref, tol, failures):
    ours, ref = np.asarray(ours), np.asarray(ref)
    if ours.shape != ref.shape:
        failures.append(f"{name}: shape {ours.shape} against {ref.shape}")
        return
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    bad = ~np.isclose(ours, ref, rtol=tol["rtol"], atol=tol["atol"] * scale)
    if bad.any() or not np.isfinite(ours).all():
        err = float(np.nanmax(np.abs(ours.astype(np.float64) - ref)))
        failures.append(f"{name}: {int(bad.sum())} of {bad.size} off, max error {err:.3g} "
                        f"(largest |ref| {scale:.3g})")


def run_case(case, seed):
    """A list of what differs from the reference (empty: the case passed).

    A stateful case runs xs in two chunks, the second from the state the
    first left (truncated BPTT: the backward, of the second chunk, stops at
    its start), against the reference run the same way; with lengths, each
    chunk has its own.  With dropout, the reference takes the masks the
    network drew (kept for its backward), and evaluation none."""
    rng = np.random.default_rng(seed)
    cell, dt, N, T, D, H = (case[k] for k in ("cell", "dtype", "N", "T", "D", "H"))
    net = NETWORKS[cell](D, H, num_layers=case["layers"], bidirectional=case["bidirectional"],
                         dropout=case["dropout"], bias=case["bias"],
                         stateful=case["stateful"], dtype=dt,
                         random_state=int(rng.integers(2 ** 31)), **case["opts"])
    # 1.5 times PyTorch's init (gates further from 1/2), PyTorch's own for
    # ReLU, whose states would otherwise grow without bound over long T.
    scale = (1.0 if case["opts"].get("nonlinearity") == "relu" else 1.5) / np.sqrt(H)
    for w in net.params:
        w[...] = rng.uniform(-scale, scale, w.shape)
    L = net.num_layers * net.num_directions
    xs = rng.standard_normal((N, T, D)).astype(dt)
    h0 = rng.standard_normal((L, N, H)).astype(dt) if case["with_state"] else np.zeros((L, N, H), dt)
    c0 = rng.standard_normal((L, N, H)).astype(dt) if case["with_state"] else np.zeros((L, N, H), dt)
    state = None
    if case["with_state"]:
        state = (h0, c0) if cell == "lstm" else h0
    if case["stateful"]:
        cut = int(rng.integers(1, T))
        chunks = [slice(0, cut), slice(cut, T)]
    else:
        chunks = [slice(0, T)]
    widths = [len(range(T)[chunk]) for chunk in chunks]
    lengths = [rng.integers(1, Tc + 1, N) if case["ragged"] else None for Tc in widths]
    tol = TOL[dt]
    failures = []
    with kernel_settings(case["switches"]):
        h_ref, c_ref, refs = h0, c0, []
        for i, chunk in enumerate(chunks):
            x = xs[:, chunk]
            lens = np.full(N, widths[i]) if lengths[i] is None else lengths[i]
            where = f" (chunk {i})" if case["stateful"] else ""
            start = state if i == 0 else final      # the state this chunk starts from
            hs, final = net.forward(x, state if i == 0 else None, lengths[i])
            masks = net._caches[1]          # the dropout masks the backward will use
            hs_r, h_ref, c_ref, caches = reference_network(case, net, x, h_ref, c_ref, lens,
                                                           masks)
            refs.append(hs_r)
            close("hs" + where, hs, hs_r, tol, failures)
            close("h_n" + where, final[0] if cell == "lstm" else final, h_ref, tol, failures)
            if cell == "lstm":
                close("c_n" + where, final[1], c_ref, tol, failures)
        # the backward of the last chunk
        dhs = rng.standard_normal(hs.shape).astype(dt)
        for n, length in enumerate(lens):
            dhs[n, length:] = 0
        if case["opts"].get("nonlinearity") == "relu" and dt == np.float32:
            outputs = [hs]
            if net.num_layers == 2:
                outputs.insert(0, lower_layer_outputs(case, net, x, start, lengths[-1]))
            relu_masks_from(outputs, caches, net.num_directions, H)
        dh_n = rng.standard_normal((L, N, H)).astype(dt)
        dc_n = rng.standard_normal((L, N, H)).astype(dt)
        dxs = net.backward(dhs, (dh_n, dc_n) if cell == "lstm" else dh_n)
        dxs_r, dh0_r, dc0_r, grads_r = reference_backward(case, net, dhs, dh_n, dc_n, caches,
                                                          masks)
        close("dxs", dxs, dxs_r, tol, failures)
        close("dh0", net.dstate[0] if cell == "lstm" else net.dstate, dh0_r, tol, failures)
        if cell == "lstm":
            close("dc0", net.dstate[1], dc0_r, tol, failures)
        for i, (ours, ref) in enumerate(zip(net.grads, grads_r)):
            close(f"grads[{i}]", ours, ref, tol, failures)
        net.eval()
        if case["stateful"]:
            net.reset_state()
        h_ref, c_ref = h0, c0
        for i, chunk in enumerate(chunks):
            hs_e, _ = net.forward(xs[:, chunk], state if i == 0 else None, lengths[i])
            ref = refs[i]
            if case["dropout"]:
                lens = np.full(N, widths[i]) if lengths[i] is None else lengths[i]
                ref, h_ref, c_ref, _ = reference_network(case, net, xs[:, chunk], h_ref, c_ref,
                                                         lens)
            close(f"hs (eval{', chunk %d' % i if case['stateful'] else ''})", hs_e, ref,
                  tol, failures)
        if (net.num_layers == 1 and net.num_directions == 1 and not case["ragged"]
                and (case["stateful"] or not case["with_state"])):
            time_layer_failures(case, net, xs, h0, c0, chunks, refs, dhs, caches, failures)
        save_load_failures(net, xs[:, chunks[0]], state, lengths[0], failures)
        cell_failures(case, net, xs[:, 0], h0[0], c0[0], rng, failures)
        # One weight of a matrix changed in place between two evaluation
        # calls: an inference call on 2 threads finds the weights' packing
        # kept from the last call and stores only the rows that differ
        # (src/_gemm.h, rf_repack_b_f).  Drawn last, so that a seed draws
        # the same case as before this check.
        if case["stateful"]:
            net.reset_state()
        net.forward(xs[:, chunks[0]], state, lengths[0])
        matrices = [w for w in net.params if w.ndim == 2]
        w = matrices[rng.integers(len(matrices))]
        # a new draw from the init's range: a ReLU network's states stay bounded
        w[tuple(int(rng.integers(n)) for n in w.shape)] = rng.uniform(-scale, scale)
        if case["stateful"]:
            net.reset_state()
        hs_u, _ = net.forward(xs[:, chunks[0]], state, lengths[0])
        lens = np.full(N, widths[0]) if lengths[0] is None else lengths[0]
        ref_u = reference_network(case, net, xs[:, chunks[0]], h0, c0, lens)[0]
        close("hs (eval, after a weight changed in place)", hs_u, ref_u, tol, failures)
        # Then in pack epochs (rnnfast._core.packs_kept; src/_blas.pxd,
        # packed_in_epoch): two calls a block, whose second uses the first's
        # packings as they are, and another weight changed between blocks.
        for block in range(2):
            if block:
                w = matrices[rng.integers(len(matrices))]
                w[tuple(int(rng.integers(n)) for n in w.shape)] = rng.uniform(-scale, scale)
                ref_u = reference_network(case, net, xs[:, chunks[0]], h0, c0, lens)[0]
            with _core.packs_kept(net):
                for call in range(2):
                    if case["stateful"]:
                        net.reset_state()
                    hs_k, _ = net.forward(xs[:, chunks[0]], state, lengths[0])
                    close(f"hs (eval in pack epoch {block}, call {call})", hs_k, ref_u, tol,
                          failures)
    return failures


def saved_and_loaded(obj, failures):
    """obj (a network, cell, Time layer or model) through rnnfast.io.save
    and load: the
    loaded object, with a failure added for another class or config or a
    param not bitwise equal; None (and a failure) for another class or
    config."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "saved.npz")
        save(obj, path)
        loaded = load(path)
    if type(loaded) is not type(obj) or get_config(loaded) != get_config(obj):
        failures.append(f"load: {type(loaded).__name__} {get_config(loaded)} against "
                        f"{type(obj).__name__} {get_config(obj)}")
        return None
    for i, (ours, theirs) in enumerate(zip(loaded.params, obj.params)):
        if ours.dtype != theirs.dtype or not np.array_equal(ours, theirs):
            failures.append(f"load: params[{i}] differ")
    return loaded


def save_load_failures(net, xs, state, lengths, failures):
    """net through rnnfast.io.save and load: the same class and config,
    params bitwise equal, and an evaluation forward (outputs and final
    state) bitwise equal to net's."""
    loaded = saved_and_loaded(net, failures)
    if loaded is None:
        return
    loaded.eval()
    net.reset_state()
    hs, final = net.forward(xs, state, lengths)
    hs_l, final_l = loaded.forward(xs, state, lengths)
    if not np.array_equal(hs, hs_l):
        failures.append("load: hs (eval) differ from the saved network's")
    pairs = zip(final, final_l) if isinstance(final, tuple) else [(final, final_l)]
    if not all(np.array_equal(a, b) for a, b in pairs):
        failures.append("load: final state (eval) differs from the saved network's")


def cell_failures(case, net, x, h, c, rng, failures):
    """One step of a cell (RNNCell, LSTMCell, GRUCell) with the first
    layer's weights, from x (N, D) and the case's state, in training (its
    backward from random dh_next, dc_next) and in evaluation (the direct
    path), against the reference's step in float64."""
    cell, dt = case["cell"], case["dtype"]
    tol = TOL[dt]
    f64 = [p.astype(np.float64) for p in weights(net, 0, 0)]
    x64, h64, c64 = (a.astype(np.float64) for a in (x, h, c))
    layer = CELL_LAYERS[cell](*(p.copy() for p in weights(net, 0, 0)), **case["opts"])
    dh_next = rng.standard_normal(h.shape).astype(dt)
    dc_next = rng.standard_normal(h.shape).astype(dt)
    if cell == "lstm":
        h_r, c_r, cache = _reference.lstm_step(x64, h64, c64, *f64)
        dx_r, dh_r, dc_r, *g_r = _reference.lstm_step_backward(dh_next.astype(np.float64),
                                                               dc_next.astype(np.float64),
                                                               cache)
    else:
        step = _reference.gru_step if cell == "gru" else _reference.rnn_step
        back = _reference.gru_step_backward if cell == "gru" else _reference.rnn_step_backward
        h_r, cache = step(x64, h64, *f64, **case["opts"])
        if case["opts"].get("nonlinearity") == "relu" and dt == np.float32:
            layer_h = layer.forward(x, h)     # the kernel's side of ReLU's kink
            cache = cache[:2] + (layer_h.astype(np.float64),) + cache[3:]
        dx_r, dh_r, *g_r = back(dh_next.astype(np.float64), cache)
    for mode in ("train", "eval"):
        getattr(layer, mode)()
        out = layer.forward(x, h, c) if cell == "lstm" else layer.forward(x, h)
        h_next = out[0] if cell == "lstm" else out
        close(f"{type(layer).__name__} h_next ({mode})", h_next, h_r, tol, failures)
        if cell == "lstm":
            close(f"LSTMCell c_next ({mode})", out[1], c_r, tol, failures)
    layer.train()
    layer.forward(x, h, c) if cell == "lstm" else layer.forward(x, h)
    if cell == "lstm":
        dx, dh, dc = layer.backward(dh_next, dc_next)
        close("LSTMCell dc_prev", dc, dc_r, tol, failures)
    else:
        dx, dh = layer.backward(dh_next)
    name = type(layer).__name__
    close(f"{name} dx", dx, dx_r, tol, failures)
    close(f"{name} dh_prev", dh, dh_r, tol, failures)
    for j, (ours, ref) in enumerate(zip(layer.grads, g_r)):
        close(f"{name} grads[{j}]", ours, ref, tol, failures)
    loaded = saved_and_loaded(layer, failures)
    if loaded is not None:
        state = (h, c) if cell == "lstm" else (h,)
        out, out_l = layer.eval().forward(x, *state), loaded.eval().forward(x, *state)
        if not np.array_equal(np.asarray(out), np.asarray(out_l)):    # (h, c) stacked
            failures.append(f"load: {name} forward (eval) differs from the saved cell's")


def time_layer_failures(case, net, xs, h0, c0, chunks, refs, dhs, caches, failures):
    """The same case through a Time layer (TimeRNN, TimeLSTM, TimeGRU) with
    the network's weights, in training and in evaluation (which has its
    own direct path): its outputs against the reference's, and the last
    chunk's backward, which starts from a zero final-state gradient."""
    cell, dt, H = case["cell"], case["dtype"], case["H"]
    tol = TOL[dt]
    Wx, Wh, b = (p.copy() for p in weights(net, 0, 0))
    layer = TIME_LAYERS[cell](Wx, Wh, b, stateful=case["stateful"], **case["opts"])
    for mode in ("train", "eval"):
        getattr(layer, mode)()
        layer.reset_state()
        if case["with_state"]:
            layer.set_state(h0[0], c0[0] if cell == "lstm" else None)
        for i, chunk in enumerate(chunks):
            hs = layer.forward(xs[:, chunk])
            close(f"Time layer hs ({mode}, chunk {i})", hs, refs[i], tol, failures)
        if mode == "train":
            dxs = layer.backward(dhs)
            zero = np.zeros((1, dhs.shape[0], H))
            dxs_r, dh0_r, dc0_r, grads_r = reference_backward(case, net, dhs, zero, zero,
                                                              caches)
            close("Time layer dxs", dxs, dxs_r, tol, failures)
            close("Time layer dh", layer.dh, dh0_r[0], tol, failures)
            if cell == "lstm":
                close("Time layer dc", layer.dc, dc0_r[0], tol, failures)
            for j, (ours, ref) in enumerate(zip(layer.grads, grads_r)):
                close(f"Time layer grads[{j}]", ours, ref, tol, failures)
    # saved and loaded: a loaded stateful layer starts from zeros, as the
    # original after reset_state
    loaded = saved_and_loaded(layer, failures)
    if loaded is not None:
        layer.reset_state()
        if not np.array_equal(layer.forward(xs[:, chunks[0]]),
                              loaded.eval().forward(xs[:, chunks[0]])):
            failures.append("load: Time layer hs (eval) differ from the saved layer's")


def describe(case):
    sw = case["switches"]
    on = ",".join(k for k, v in sw.items() if v is True)
    off = ",".join(k for k, v in sw.items() if v is False)
    return (f"{case['cell']}{case['opts'] or ''} {case['dtype']} N={case['N']} T={case['T']} "
            f"D={case['D']} H={case['H']} layers={case['layers']} "
            f"dropout={case['dropout']} bias={case['bias']} "
            f"bidir={case['bidirectional']} ragged={case['ragged']} state={case['with_state']} "
            f"stateful={case['stateful']} "
            f"threads={sw['threads']} gemv8={sw['gemv8']} on=[{on}] off=[{off}]")


def fuzz_main(argv, description, draw_case, run_case, describe, stream, cases=200):
    """The command line of a fuzzer: cases from consecutive seeds (a case's
    draw from default_rng([seed, stream])), run_case(case, seed) -> its
    failures, one line a failing case; exit status 1 if any failed.
    draw_case, run_case and describe are called through the module they
    come from at each case, so that a test can replace them."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--cases", type=int, default=cases)
    ap.add_argument("--minutes", type=float, default=None,
                    help="run until this much time has passed (overrides --cases)")
    ap.add_argument("--seed", type=int, default=0, help="the first case's seed")
    args = ap.parse_args(argv)
    if args.cases < 1:
        ap.error(f"--cases: expected at least 1, got {args.cases}")
    if args.minutes is not None and not args.minutes > 0:
        ap.error(f"--minutes: expected a positive number, got {args.minutes}")
    if args.seed < 0:
        ap.error(f"--seed: expected 0 or more, got {args.seed}")
    t_end = time.monotonic() + 60 * args.minutes if args.minutes else None
    seed, done, failed = args.seed, 0, 0
    while (t_end is None and done < args.cases) or (t_end is not None and time.monotonic() < t_end):
        case = draw_case(np.random.default_rng([seed, stream]))
        try:
            failures = run_case(case, seed)
        except Exception as exc:        # a case that raises is a failure too, reported
            failures = [f"raised {type(exc).__name__}: {exc}"]
        if failures:
            failed += 1
            print(f"FAIL seed={seed}: {describe(case)}\n    " + "\n    ".join(failures),
                  flush=True)
        done += 1
        seed += 1
    print(f"{done} cases from seed {args.seed}, {failed} failed")
    return 1 if failed else 0


def main(argv=None):
    return fuzz_main(argv, __doc__.split("\n\n")[0], lambda rng: draw_case(rng),
                     lambda case, seed: run_case(case, seed), lambda case: describe(case),
                     stream=1)


if __name__ == "__main__":
    sys.exit(main())
