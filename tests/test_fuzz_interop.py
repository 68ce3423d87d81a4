"""A few fixed cases of the differential fuzzer of rnnfast.interop
(tests/fuzz_interop.py): cells, Time layers, networks and sequence models
through to_keras / from_keras and to_torch / from_torch, against Keras and
PyTorch's outputs; and that its comparisons are live (each deliberate bug
below fails a case that passed, naming the comparison).  Longer runs:
`python tests/fuzz_interop.py --minutes 10`."""
import numpy as np
import pytest

import rnnfast.interop

SEEDS = range(32)


@pytest.fixture
def fuzz(keras):
    """The fuzzer's module, imported once Keras is (the keras fixture sets
    KERAS_BACKEND, skips without Keras locally and fails in CI)."""
    import fuzz_interop
    return fuzz_interop


def case_of(fuzz, seed):
    return fuzz.draw_case(np.random.default_rng([seed, 5]))


def first_case(fuzz, wanted):
    """(seed, case) of the first seed whose case has what `wanted` asks;
    the weights as constructors draw them (no rounding allowance to speak
    of), so that a small deliberate error shows."""
    seed = next(s for s in range(2000)
                if case_of(fuzz, s)["weights"] == "init" and wanted(case_of(fuzz, s)))
    return seed, case_of(fuzz, seed)


def names(failures):
    return {f.split(":")[0] for f in failures}


@pytest.mark.parametrize("seed", SEEDS)
def test_converters_match_keras_and_torch(fuzz, seed):
    case = case_of(fuzz, seed)
    failures = fuzz.run_case(case, seed)
    assert not failures, fuzz.describe(case) + "\n" + "\n".join(failures)


def test_the_fixed_seeds_draw_every_target(fuzz):
    """The suite's seeds cover cells, Time layers, networks, the three models,
    both dtypes and the GRU without a PyTorch equivalent."""
    cases = [case_of(fuzz, s) for s in SEEDS]
    assert {c["target"] for c in cases} == set(fuzz.TARGETS)
    assert {c.get("head") for c in cases} >= {"classifier", "regressor", "tagger"}
    assert {c["dtype"].name for c in cases} == {"float32", "float64"}
    assert any(c["cell"] == "gru" and not c["opts"]["reset_after"] for c in cases)


OUTPUT = {"cell": "h_next", "time": "hs", "network": "hs"}
HEAD_OUTPUT = {"classifier": "predict_proba", "tagger": "predict_proba",
               "regressor": "predict_scores"}


@pytest.mark.parametrize("target", ["cell", "time", "network", "model"])
def test_the_fuzzer_reports_keras_weights_off(fuzz, monkeypatch, target):
    """to_keras that writes one kernel element off by 0.05 fails the Keras
    comparison by name (and from_keras then gives other params), nothing
    of torch's."""
    real = rnnfast.interop._keras_arrays

    def one_off(cell, Wx, Wh, b):
        arrays = real(cell, Wx, Wh, b)
        arrays[0][0, 0] += 0.05
        return arrays

    # (unmasked: a case of masked padding may hide one kernel element, as
    # all-padding rows or steps with feature 0 at a mask value of 0 do)
    seed, case = first_case(fuzz, lambda c: c["target"] == target and not c.get("mask_zero")
                            and c.get("mask_value") is None)
    assert not fuzz.run_case(case, seed)
    monkeypatch.setattr(rnnfast.interop, "_keras_arrays", one_off)
    failures = fuzz.run_case(case, seed)
    output = OUTPUT.get(target) or HEAD_OUTPUT[case["head"]]
    assert names(failures) == {f"Keras {output}", "from_keras"}, failures
    assert "from_keras: params[0] differ" in failures, failures


@pytest.mark.parametrize("head", ["classifier", "tagger", "regressor"])
def test_the_fuzzer_reports_a_model_heads_bias_off(fuzz, monkeypatch, head):
    """A sequence model's output layer is compared too: a Keras model whose
    Dense bias is off by 0.05 in one output fails the prediction."""
    real = rnnfast.interop._model_to_keras

    def bias_off(model, keras):
        out = real(model, keras)
        kernel, bias = out.layers[-1].get_weights()
        bias[0] += 0.05         # one class's (a softmax ignores a shift of all)
        out.layers[-1].set_weights([kernel, bias])
        return out

    seed, case = first_case(fuzz, lambda c: c.get("head") == head)
    assert not fuzz.run_case(case, seed)
    monkeypatch.setattr(rnnfast.interop, "_model_to_keras", bias_off)
    failures = fuzz.run_case(case, seed)
    output = HEAD_OUTPUT[head]
    assert names(failures) == {f"Keras {output}", "from_keras"}, failures


def test_the_fuzzer_reports_a_bias_from_keras_dropped(fuzz, monkeypatch):
    """from_keras that drops a layer's bias (reads it as zeros) gives other
    params and other outputs than the network sent to Keras."""
    real = rnnfast.interop.from_keras_weights

    def no_bias(cell, kernel, recurrent_kernel, bias):
        Wx, Wh, b = real(cell, kernel, recurrent_kernel, bias)
        return Wx, Wh, np.zeros_like(b)

    seed, case = first_case(fuzz, lambda c: c["target"] == "network" and c["bias"])
    assert not fuzz.run_case(case, seed)
    monkeypatch.setattr(rnnfast.interop, "from_keras_weights", no_bias)
    failures = fuzz.run_case(case, seed)
    assert names(failures) == {"from_keras"}, failures
    assert "from_keras: params[2] differ" in failures, failures
    assert "from_keras: hs differ from the original's" in failures, failures


@pytest.mark.parametrize("target", ["cell", "time", "network"])
def test_the_fuzzer_reports_torch_weights_off(fuzz, monkeypatch, target):
    """to_torch (and to_torch_state_dict) with one input weight off by 0.05
    fails the torch comparison by name, and from_torch gives other
    params; nothing of Keras's."""
    real = rnnfast.interop.to_torch_weights

    def one_off(cell, Wx, Wh, b):
        w_ih, w_hh, b_ih, b_hh = real(cell, Wx, Wh, b)
        w_ih[0, 0] += 0.05
        return w_ih, w_hh, b_ih, b_hh

    seed, case = first_case(fuzz, lambda c: c["target"] == target
                            and c["opts"].get("reset_after", True))
    assert not fuzz.run_case(case, seed)
    monkeypatch.setattr(rnnfast.interop, "to_torch_weights", one_off)
    failures = fuzz.run_case(case, seed)
    output = OUTPUT[target]
    assert {f"torch {output}", "from_torch"} <= names(failures) <= {
        f"torch {output}", "torch h_n", "torch c_n", "from_torch"}, failures
    assert "from_torch: params[0] differ" in failures, failures


def test_the_fuzzer_reports_weights_from_torch_off(fuzz, monkeypatch):
    """from_torch that reads one recurrent weight off by 0.05: other params,
    other outputs than the object's."""
    real = rnnfast.interop.from_torch_weights

    def one_off(*args, **kwargs):
        Wx, Wh, b = real(*args, **kwargs)
        Wh = Wh.copy()
        Wh[0, 0] += 0.05
        return Wx, Wh, b

    seed, case = first_case(fuzz, lambda c: c["target"] == "time" and c["T"] >= 3
                            and c["opts"].get("reset_after", True))
    assert not fuzz.run_case(case, seed)
    monkeypatch.setattr(rnnfast.interop, "from_torch_weights", one_off)
    failures = fuzz.run_case(case, seed)
    assert failures == ["from_torch: params[1] differ",
                        "from_torch: hs differ from the original's"], failures


def test_the_fuzzer_reports_a_reset_before_gru_sent_to_torch(fuzz, monkeypatch):
    """A GRU with reset_after=False has no PyTorch equivalent: a to_torch
    that gives a module for it anyway fails the case."""
    import torch

    def anything(obj):
        return torch.nn.GRU(obj.input_size, obj.hidden_size, batch_first=True)

    seed, case = first_case(fuzz, lambda c: c["cell"] == "gru" and c["target"] != "model"
                            and not c["opts"]["reset_after"])
    assert not fuzz.run_case(case, seed)
    monkeypatch.setattr(rnnfast.interop, "to_torch", anything)
    assert fuzz.run_case(case, seed) == [
        "to_torch: a GRU with reset_after=False gave a GRU, expected ValueError"]


def test_the_rounding_allowance_stays_small_where_nothing_is_chaotic(fuzz):
    """The tolerance widens with float32's own rounding of the case: for
    weights as constructors draw them that is at float32's level, far
    below the deliberate errors above."""
    for seed in range(40):
        case = case_of(fuzz, seed)
        if case["weights"] != "init":
            continue
        rng = np.random.default_rng(seed)
        obj = fuzz.build(case, rng)
        inputs = fuzz.draw_inputs(case, rng)
        want = fuzz.ours(case, obj, inputs)
        rounding = fuzz.rounding_of(case, obj, inputs, want, rng)
        scale = max(1.0, max(float(np.abs(w).max()) for w in want.values()))
        assert max(rounding.values()) < 1e-5 * scale, (fuzz.describe(case), rounding)


def test_the_command_line_runs_and_reports_a_raising_case(fuzz, monkeypatch, capsys):
    """main wires this module's cases into fuzz_networks.fuzz_main (whose
    argument checks tests/test_fuzz_networks.py covers)."""
    assert fuzz.main(["--cases", "3", "--seed", "5"]) == 0
    assert capsys.readouterr().out.strip().endswith("3 cases from seed 5, 0 failed")

    def raises(case, seed):
        raise RuntimeError("boom")

    monkeypatch.setattr(fuzz, "run_case", raises)
    assert fuzz.main(["--cases", "2", "--seed", "4"]) == 1
    out = capsys.readouterr().out
    assert out.count("raised RuntimeError: boom") == 2 and "2 cases from seed 4, 2 failed" in out
