"""A few fixed cases of the training loop's fuzzer (tests/fuzz_trainer.py)
against a documented loop with PyTorch's optimizers and its own exact
resume, and checks that its comparisons are live.  Longer runs:
`python tests/fuzz_trainer.py --minutes 10`."""
import numpy as np
import pytest

from _torch_twin import import_torch_or_skip

import_torch_or_skip()              # the fuzzer's twin

import rnnfast.trainer  # noqa: E402
from rnnfast.optim import StepDecay  # noqa: E402
from rnnfast.trainer import Trainer  # noqa: E402

import fuzz_trainer  # noqa: E402
from fuzz_trainer import (KINDS, OPTIMIZERS, SCHEDULES, describe, draw_case, main,  # noqa: E402
                          run_case, twin_follows)

SEEDS = range(120)


def case_of(seed):
    return draw_case(np.random.default_rng([seed, 4]))


def seeds_where(wanted, count):
    """The first `count` seeds whose case has what `wanted` asks."""
    return [s for s in range(3000) if wanted(case_of(s))][:count]


def failures_of(seeds):
    """The seeds' failures; a case that raises is one, as in the fuzzer's
    command line."""
    failures = []
    for s in seeds:
        try:
            failures += run_case(case_of(s), s)
        except Exception as exc:
            failures.append(f"raised {type(exc).__name__}: {exc}")
    return failures


@pytest.mark.parametrize("seed", SEEDS)
def test_trainer_matches_the_documented_loop_and_resumes_exactly(seed):
    case = case_of(seed)
    failures = run_case(case, seed)
    assert not failures, describe(case) + "\n" + "\n".join(failures)


def test_the_fixed_seeds_reach_every_kind_and_option():
    cases = [case_of(s) for s in SEEDS]
    assert {c["kind"] for c in cases} == set(KINDS)
    assert {c["optimizer"] for c in cases if twin_follows(c)} == set(OPTIMIZERS)
    assert {c["schedule"] for c in cases} == set(SCHEDULES)
    assert {(c["schedule"], c["mode"]) for c in cases} >= {("plateau", "min"),
                                                            ("plateau", "max")}
    assert {c["stream_form"] for c in cases if c["kind"] == "lm"} == {"array", "batcher"}
    assert {c["clip_norm"] for c in cases} == {None, 0.05, 5.0}
    assert {c["patience"] for c in cases} == {None, 1, 2}
    for option in ("restore_best", "shuffle", "drop_last"):
        assert {c[option] for c in cases} == {False, True}, option
    assert any(c["lengths"] for c in cases if c["kind"] != "lm")
    assert any(c["dropout"] for c in cases) and any(c["layers"] == 2 for c in cases)
    assert any(not np.isfinite(c["values"]).all() for c in cases if c["eval"])
    assert {c["dtype"].name for c in cases} == {"float32", "float64"}
    assert any(any(c["missing"]) for c in cases)            # epochs whose dict is empty
    assert {c["monitor"] for c in cases if c["eval"] == "dict"} == {None, "score"}
    assert any(c["diverge"] for c in cases)
    assert {c["carry_state"] for c in cases if c["kind"] == "lm"} == {False, True}


def test_a_trainer_that_resets_a_carried_state_or_checkpoints_none_is_reported(monkeypatch):
    """carry_state=True: a trainer that resets the state at each epoch
    anyway differs from the twin; one whose checkpoints lose the carried
    state resumes differently from the uninterrupted run."""
    seeds = seeds_where(lambda c: c["carry_state"] and c["epochs"] >= 3
                        and c["checkpoint_every"] == 1 and not c["diverge"], 3)
    assert not failures_of(seeds)
    monkeypatch.setattr(Trainer, "__init__", lambda self, *a, carry_state=False, **k:
                        ORIGINAL_INIT(self, *a, **k))
    assert any(f.startswith("twin: ") for f in failures_of(seeds))
    monkeypatch.undo()
    monkeypatch.setattr(rnnfast.trainer, "_carried_arrays", lambda model: [])
    assert any(f.startswith("resume") for f in failures_of(seeds)), failures_of(seeds)


ORIGINAL_INIT = Trainer.__init__


def test_a_trainer_that_does_not_clip_is_reported(monkeypatch):
    seeds = seeds_where(lambda c: c["clip_norm"] == 0.05 and twin_follows(c), 4)
    assert not failures_of(seeds)
    monkeypatch.setattr(rnnfast.trainer, "clip_grads",
                        lambda grads, max_norm: rnnfast.trainer.global_norm(grads))
    failures = failures_of(seeds)
    assert any(f.startswith("twin: params") for f in failures), failures


def test_a_trainer_that_does_not_shuffle_is_reported(monkeypatch):
    seeds = seeds_where(lambda c: c["kind"] != "lm" and c["shuffle"] and c["samples"] >
                        c["batch_size"] and twin_follows(c), 4)
    original = Trainer._minibatches
    monkeypatch.setattr(Trainer, "_minibatches", lambda self, arrays, batch_size, shuffle,
                        drop_last: original(self, arrays, batch_size, False, drop_last))
    failures = failures_of(seeds)
    assert any(f.startswith("twin: ") for f in failures), failures


def test_a_schedule_stepped_one_epoch_late_is_reported(monkeypatch):
    seeds = seeds_where(lambda c: c["schedule"] == "step" and c["epochs"] >= 3, 3)
    monkeypatch.setattr(StepDecay, "step", lambda self, epoch: setattr(
        self.optimizer, "lr", self.lr_at(max(epoch - 1, 1))))
    failures = failures_of(seeds)
    assert any(f.startswith("twin: history 'lr'") for f in failures), failures


def test_a_twin_with_torchs_momentum_under_a_changing_lr_is_reported(monkeypatch):
    """The twin rescales torch's momentum buffer when lr changes, so that it
    follows the textbook's velocity: without the rescaling, the weights of
    momentum cases with a schedule differ (the comparison is live, and the
    two momentum conventions do differ)."""
    seeds = seeds_where(lambda c: c["optimizer"] in ("momentum", "nesterov")
                        and c["schedule"] in ("step", "callable") and c["epochs"] >= 3
                        and twin_follows(c), 3)
    assert not failures_of(seeds)

    def set_lr_as_torch(topt, lr, case):
        for group in topt.param_groups:
            group["lr"] = lr
    monkeypatch.setattr(fuzz_trainer, "set_lr", set_lr_as_torch)
    failures = failures_of(seeds)
    assert any(f.startswith("twin: params") for f in failures), failures


def test_each_resume_fault_fixed_is_reported(monkeypatch):
    """The faults the fuzzer found, put back one at a time: history NaNs
    saved as None, a given StreamBatcher's position not saved, an early
    stop resumed into more training."""
    nonfinite = seeds_where(lambda c: c["eval"] and not np.isfinite(c["values"]).all(), 4)
    original_state = Trainer._state

    def state_without_nonfinite(self):
        state = original_state(self)
        state["history_nonfinite"] = None
        return state
    monkeypatch.setattr(Trainer, "_state", state_without_nonfinite)
    assert any("history" in f for f in failures_of(nonfinite))
    monkeypatch.undo()

    batcher = seeds_where(lambda c: c["kind"] == "lm" and c["stream_form"] == "batcher"
                          and c["checkpoint_every"] == 1 and c["epochs"] >= 3, 3)
    original_prepare = Trainer._prepare

    def prepare_without_keeping(self, train, batch_size, time_size):
        kept = self.batcher, self._batcher_sizes
        kind, data = original_prepare(self, train, batch_size, time_size)
        if isinstance(train, rnnfast.trainer.StreamBatcher):
            self.batcher, self._batcher_sizes = kept
        return kind, data
    monkeypatch.setattr(Trainer, "_prepare", prepare_without_keeping)
    assert any(f.startswith("resumed from epoch") for f in failures_of(batcher))
    monkeypatch.undo()

    stops = seeds_where(lambda c: c["patience"] == 1 and c["epochs"] >= 3 and c["eval"], 6)
    original_fit = Trainer.fit

    def fit_that_forgets_the_stop(self, *args, **kwargs):
        if kwargs.get("resume_from") is not None and kwargs["patience"] is not None:
            kwargs["patience"] = 10             # the stop is not seen on resuming
        return original_fit(self, *args, **kwargs)
    monkeypatch.setattr(Trainer, "fit", fit_that_forgets_the_stop)
    assert any(f.startswith("resumed from epoch") for f in failures_of(stops))


def test_a_second_fit_that_starts_its_generator_again_is_reported(monkeypatch):
    """fit counts epochs from the first fit and goes on drawing from the same
    Generator: one that reseeded at each fit would shuffle epoch 2 as epoch 1."""
    seeds = seeds_where(lambda c: c["kind"] != "lm" and c["shuffle"] and not c["restore_best"]
                        and c["patience"] is None and c["samples"] > c["batch_size"], 4)
    assert not failures_of(seeds)
    original_fit = Trainer.fit

    def fit_reseeding(self, *args, **kwargs):
        self.rng = np.random.default_rng(self.rng.bit_generator.seed_seq)
        return original_fit(self, *args, **kwargs)
    monkeypatch.setattr(Trainer, "fit", fit_reseeding)
    failures = failures_of(seeds)
    assert any(f.startswith("a fit of 1 epoch") for f in failures), failures


def test_a_refused_fit_that_changes_the_trainer_is_reported(monkeypatch):
    seeds = seeds_where(lambda c: c["kind"] == "lm", 2)
    assert not failures_of(seeds)
    monkeypatch.setattr(Trainer, "_restore", lambda self, snap: None)
    failures = failures_of(seeds)
    assert any(f.startswith("bad call (a missing checkpoint, new train): the trainer")
               for f in failures), failures


def test_divergence_reported_as_another_error_is_reported(monkeypatch):
    """The two ways a diverging model used to end in a ValueError from
    inside (a layer refusing a NaN between layers; the checkpoint refusing
    weights an update overflowed) put back: the cases at a huge learning
    rate raise it."""
    seeds = [s for s in range(600) if case_of(s)["diverge"]][:25]
    assert not failures_of(seeds)
    monkeypatch.setattr(rnnfast.trainer, "NonFiniteError", type("Never", (Exception,), {}))
    monkeypatch.setattr(rnnfast.trainer, "finite_array", lambda array: True)
    failures = failures_of(seeds)
    assert any(f.startswith("raised ValueError: ") and "contains NaN or Inf" in f
               for f in failures), failures


# a case not drawn to diverge whose learning rate (Nesterov at 0.31,
# unclipped) makes the documented loop meet a NaN in its third epoch
UNPLANNED_DIVERGENCE = 208915


def test_a_trainer_that_does_not_stop_where_the_documented_loop_diverges_is_reported(
        monkeypatch):
    case = case_of(UNPLANNED_DIVERGENCE)
    assert not case["diverge"]
    assert not run_case(case, UNPLANNED_DIVERGENCE)        # both stop
    # a trainer that skips a batch with a NaN instead of stopping
    step = Trainer.train_step

    def skipping(self, batch):
        try:
            return step(self, batch)
        except rnnfast.trainer.TrainingDivergedError:
            return 0.0, 0.0
    monkeypatch.setattr(Trainer, "train_step", skipping)
    failures = run_case(case, UNPLANNED_DIVERGENCE)
    assert any(f.startswith("training stopped: None; the documented loop stopped: epoch 3")
               for f in failures), failures


def test_the_command_line_runs_and_reports_a_failing_case(monkeypatch, capsys):
    assert main(["--cases", "2", "--seed", "5"]) == 0
    assert "2 cases from seed 5, 0 failed" in capsys.readouterr().out
    monkeypatch.setattr(fuzz_trainer, "run_case", lambda case, seed: ["made up"])
    assert main(["--cases", "1", "--seed", "7"]) == 1
    out = capsys.readouterr().out
    assert "FAIL seed=7:" in out and "made up" in out
