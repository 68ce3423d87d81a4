"""A few fixed cases of the differential fuzzer (tests/fuzz_networks.py):
networks at sizes around the packed kernel's edges, with random kernel
switches and thread counts, against the float64 numpy reference.  Longer
runs: `python tests/fuzz_networks.py --minutes 15`."""
import numpy as np
import pytest

import rnnfast

from fuzz_networks import describe, draw_case, run_case

SEEDS = range(60)


def case_of(seed):
    return draw_case(np.random.default_rng([seed, 1]))


def first_case(wanted):
    """(seed, case) of the first seed whose case has what `wanted` asks."""
    seed = next(s for s in range(1000) if wanted(case_of(s)))
    return seed, case_of(seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_network_matches_reference_at_kernel_edges(seed):
    case = case_of(seed)
    failures = run_case(case, seed)
    assert not failures, describe(case) + "\n" + "\n".join(failures)


def test_the_fuzzer_reports_a_wrong_gradient(monkeypatch):
    """The comparison is live: one parameter gradient off by a little in
    one element, and the case fails naming it."""
    backward = rnnfast.LSTM.backward

    def off_by_a_little(self, *args, **kwargs):
        dxs = backward(self, *args, **kwargs)
        self.grads[1][0, 0] += 0.05
        return dxs

    monkeypatch.setattr(rnnfast.LSTM, "backward", off_by_a_little)
    seed, case = first_case(lambda c: c["cell"] == "lstm")
    failures = run_case(case, seed)
    assert [f.split(":")[0] for f in failures] == ["grads[1]"]


def forward_with(weights, net, forward, *args, **kwargs):
    """forward(net, ...) computed with net.params set to `weights` (their
    copies), then put back: what a packing of other weights would give."""
    now = [w.copy() for w in net.params]
    for w, old in zip(net.params, weights):
        w[...] = old
    try:
        return forward(net, *args, **kwargs)
    finally:
        for w, new in zip(net.params, now):
            w[...] = new


def test_the_fuzzer_reports_a_stale_packing(monkeypatch):
    """The check after a weight changed in place is live: a network whose
    evaluation forward keeps computing with the weights of its first one
    (as a kept packing not compared would) fails that check alone."""
    forward = rnnfast.GRU.forward
    first_weights = {}

    def stale(self, *args, **kwargs):
        if self.training:
            return forward(self, *args, **kwargs)
        old = first_weights.setdefault(id(self), [w.copy() for w in self.params])
        return forward_with(old, self, forward, *args, **kwargs)

    monkeypatch.setattr(rnnfast.GRU, "forward", stale)
    seed, case = first_case(lambda c: c["cell"] == "gru")
    failures = run_case(case, seed)
    # and the pack epochs after it, each from the same stale weights
    assert [f.split(":")[0] for f in failures] == [
        "hs (eval, after a weight changed in place)",
        "hs (eval in pack epoch 0, call 0)", "hs (eval in pack epoch 0, call 1)",
        "hs (eval in pack epoch 1, call 0)", "hs (eval in pack epoch 1, call 1)"], failures


def test_the_fuzzer_reports_a_packing_trusted_across_pack_epochs(monkeypatch):
    """The pack epochs' check is live: a network whose evaluation forward
    inside a block keeps computing with the weights of the first block it
    ran in (as an epoch not new to each block would) fails the second
    block's calls alone."""
    forward = rnnfast.LSTM.forward
    first_block = {}

    def trusting(self, *args, **kwargs):
        if self.training or not self._pack_epoch:
            return forward(self, *args, **kwargs)
        old = first_block.setdefault(id(self), [w.copy() for w in self.params])
        return forward_with(old, self, forward, *args, **kwargs)

    monkeypatch.setattr(rnnfast.LSTM, "forward", trusting)
    seed, case = first_case(lambda c: c["cell"] == "lstm")
    failures = run_case(case, seed)
    assert [f.split(":")[0] for f in failures] == [
        "hs (eval in pack epoch 1, call 0)", "hs (eval in pack epoch 1, call 1)"], failures


def test_the_fuzzer_puts_the_switches_back():
    """A case that lowered the split limits and turned the wide and the tall
    tiles off leaves all three as they were."""
    from rnnfast import _core, _lstm, _rnn
    limits, wide = _lstm.split_limits(), _rnn.wide_tiles_in_use()
    tall = _core.use_tall_tiles(True)       # on (False in a build without the tiles)
    seed, case = first_case(lambda c: c["switches"]["split_all"] and not c["switches"]["wide"]
                            and not c["switches"]["tall"])
    run_case(case, seed)
    assert _lstm.split_limits() == limits
    assert _rnn.wide_tiles_in_use() == wide
    assert _core.use_tall_tiles(True) is tall


def test_the_fuzzer_reports_a_dropped_state(monkeypatch):
    """A stateful case is live: a network that forgets its carried state
    before each forward fails its second chunk."""
    forward = rnnfast.RNN.forward

    def forgetful(self, *args, **kwargs):
        self.reset_state()
        return forward(self, *args, **kwargs)

    seed, case = first_case(lambda c: c["stateful"] and c["cell"] == "rnn")
    assert not run_case(case, seed)
    monkeypatch.setattr(rnnfast.RNN, "forward", forgetful)
    failures = run_case(case, seed)
    assert any(f.startswith("hs (chunk 1)") for f in failures), failures


def test_the_fuzzer_checks_the_time_layers(monkeypatch):
    """A one-layer, one-direction case without lengths runs a Time layer
    too: one output of a TimeLSTM in evaluation off by 0.05 fails it."""
    forward = rnnfast.TimeLSTM.forward

    def off_in_eval(self, xs):
        hs = forward(self, xs)
        if not self.training:
            hs[0, 0, 0] += 0.05
        return hs

    seed, case = first_case(lambda c: c["cell"] == "lstm" and c["layers"] == 1
                            and not c["bidirectional"] and not c["ragged"]
                            and not c["stateful"] and not c["with_state"])
    assert not run_case(case, seed)
    monkeypatch.setattr(rnnfast.TimeLSTM, "forward", off_in_eval)
    assert [f.split(":")[0] for f in run_case(case, seed)] == ["Time layer hs (eval, chunk 0)"]


def test_the_fuzzer_checks_the_cells(monkeypatch):
    """Every case runs one step of a cell too: a GRUCell whose dh_prev is
    off by 0.05 in one element fails it."""
    backward = rnnfast.GRUCell.backward

    def off_by_a_little(self, dh_next):
        dx, dh = backward(self, dh_next)
        dh[0, 0] += 0.05
        return dx, dh

    seed, case = first_case(lambda c: c["cell"] == "gru")
    assert not run_case(case, seed)
    monkeypatch.setattr(rnnfast.GRUCell, "backward", off_by_a_little)
    assert [f.split(":")[0] for f in run_case(case, seed)] == ["GRUCell dh_prev"]


def test_the_fuzzer_reports_a_dropout_mask_the_backward_forgot(monkeypatch):
    """A case with dropout is live: a backward that passes the gradient
    down through the layers without the forward's masks fails it, at
    dL/dxs and at the first layer's gradients."""
    import rnnfast.networks
    backward = rnnfast.networks.network_backward

    def without_masks(caches, masks, *args):
        return backward(caches, [None] * len(masks), *args)

    seed, case = first_case(lambda c: c["dropout"])
    assert not run_case(case, seed)
    monkeypatch.setattr(rnnfast.networks, "network_backward", without_masks)
    failed = {f.split(":")[0] for f in run_case(case, seed)}
    assert "dxs" in failed and "grads[0]" in failed, failed


def test_the_fuzzer_reports_lengths_lost_in_a_later_chunk(monkeypatch):
    """A stateful case with lengths is live: a network that drops the
    lengths of every chunk after the first fails that chunk."""
    forward = rnnfast.GRU.forward

    def lengths_once(self, xs, state=None, lengths=None):
        return forward(self, xs, state, lengths if self.state is None else None)

    seed, case = first_case(lambda c: c["stateful"] and c["ragged"] and c["cell"] == "gru")
    assert not run_case(case, seed)
    monkeypatch.setattr(rnnfast.GRU, "forward", lengths_once)
    failures = run_case(case, seed)
    assert any(f.startswith("hs (chunk 1)") for f in failures), failures


def test_the_fuzzer_reports_a_bias_where_there_is_none(monkeypatch):
    """A case without biases is live: a network whose zero stand-ins for
    the biases are not zero fails it."""
    import rnnfast.networks
    make = rnnfast.networks._Network._make_bias_stand_ins

    def small_biases(self):
        make(self)
        self._zero_biases = [np.full(b.shape, 0.01, self.dtype) for b in self._zero_biases]

    seed, case = first_case(lambda c: not c["bias"])
    assert not run_case(case, seed)
    monkeypatch.setattr(rnnfast.networks._Network, "_make_bias_stand_ins", small_biases)
    failures = run_case(case, seed)
    assert any(f.startswith("hs:") for f in failures), failures


def test_the_fuzzer_reports_a_file_that_loads_other_weights(monkeypatch):
    """The save and load of every case is live: a save that writes one
    weight off by 1e-3 fails the case at that array and at the loaded
    network's, cell's and (in a case of one layer and direction) Time
    layer's outputs."""
    import rnnfast.io
    payload = rnnfast.io._object_payload

    def one_weight_off(obj):
        arrays, meta = payload(obj)
        name = sorted(arrays)[-1]
        arrays[name] = arrays[name].copy()
        arrays[name].flat[0] += 1e-3
        return arrays, meta

    seed, case = first_case(lambda c: c["layers"] == 1 and not c["bidirectional"]
                            and not c["ragged"] and (c["stateful"] or not c["with_state"]))
    assert not run_case(case, seed)
    monkeypatch.setattr(rnnfast.io, "_object_payload", one_weight_off)
    failures = run_case(case, seed)
    assert any(f.startswith("load: params[") for f in failures), failures
    name = {"rnn": "RNNCell", "lstm": "LSTMCell", "gru": "GRUCell"}[case["cell"]]
    for message in ("load: hs (eval) differ from the saved network's",
                    "load: Time layer hs (eval) differ from the saved layer's",
                    f"load: {name} forward (eval) differs from the saved cell's"):
        assert message in failures, failures


def test_the_fuzzer_reports_a_loaded_network_with_another_final_state(monkeypatch):
    """The loaded network's final state is compared too, not only hs."""
    import fuzz_networks
    load = fuzz_networks.load

    def final_state_off(path):
        net = load(path)
        if not isinstance(net, rnnfast.networks._Network):      # a cell or Time layer
            return net
        forward = net.forward

        def off(*args, **kwargs):
            hs, final = forward(*args, **kwargs)
            (final[0] if isinstance(final, tuple) else final)[0, 0, 0] += 1
            return hs, final

        net.forward = off
        return net

    case = case_of(0)
    monkeypatch.setattr(fuzz_networks, "load", final_state_off)
    assert run_case(case, 0) == ["load: final state (eval) differs from the saved network's"]


def test_the_fuzzer_takes_float32_relus_lower_layer_kinks_from_the_kernel(monkeypatch):
    """Two float32 ReLU layers with dropout: the reference's first layer
    takes its side of the kink from lower_layer_outputs; given the wrong
    side everywhere (the outputs negated), the first layer's gradients
    fail, and only theirs and what flows from them."""
    import fuzz_networks
    lower = fuzz_networks.lower_layer_outputs
    seed, case = first_case(lambda c: c["opts"].get("nonlinearity") == "relu"
                            and c["layers"] == 2 and c["dropout"] and c["dtype"] == np.float32)
    assert not run_case(case, seed)
    monkeypatch.setattr(fuzz_networks, "lower_layer_outputs", lambda *a: -lower(*a))
    failed = {f.split(":")[0] for f in run_case(case, seed)}
    assert "grads[0]" in failed and "dxs" in failed, failed
    assert not any(name.startswith("hs") or name.startswith("h_n") for name in failed), failed


def test_the_fuzzers_command_line_reports_a_case_that_raises(monkeypatch, capsys):
    import fuzz_networks

    def raises(case, seed):
        raise RuntimeError("boom")

    monkeypatch.setattr(fuzz_networks, "run_case", raises)
    assert fuzz_networks.main(["--cases", "2", "--seed", "4"]) == 1
    out = capsys.readouterr().out
    assert out.count("raised RuntimeError: boom") == 2 and "2 cases from seed 4, 2 failed" in out


@pytest.mark.parametrize("argv,named", [(["--cases", "0"], "--cases"),
                                        (["--minutes", "0"], "--minutes"),
                                        (["--minutes", "-2"], "--minutes"),
                                        (["--seed", "-1"], "--seed")])
def test_the_fuzzers_command_line_refuses_bad_arguments(capsys, argv, named):
    from fuzz_networks import main
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and named in capsys.readouterr().err


def test_the_fuzzers_command_line_runs_cases(capsys):
    from fuzz_networks import main
    assert main(["--cases", "3", "--seed", "5"]) == 0
    assert capsys.readouterr().out.strip().endswith("3 cases from seed 5, 0 failed")
