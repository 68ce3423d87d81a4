"""A few fixed cases of the estimators' fuzzer (tests/fuzz_estimators.py)
against PyTorch and their contract, and checks that its comparisons are
live.  Longer runs: `python tests/fuzz_estimators.py --minutes 10`."""
import contextlib

import numpy as np
import pytest

from _torch_twin import import_torch_or_skip

import_torch_or_skip()              # the fuzzer's twin

import rnnfast.sklearn  # noqa: E402
from rnnfast.optim import Adam  # noqa: E402
from rnnfast.sklearn import RNNRegressor, TextTokenizer, _BaseRNN  # noqa: E402

import fuzz_estimators  # noqa: E402
from fuzz_estimators import FORMS, LABELS, describe, draw_case, main, run_case, twin_follows  # noqa: E402,E501

SEEDS = range(100)


def case_of(seed):
    return draw_case(np.random.default_rng([seed, 3]))


def seeds_where(wanted, count, start=0):
    """The first `count` seeds from `start` whose case has what `wanted` asks."""
    found = [s for s in range(start, start + 3000) if wanted(case_of(s))]
    return found[:count]


@pytest.mark.parametrize("seed", SEEDS)
def test_estimator_matches_torch_and_its_contract(seed):
    case = case_of(seed)
    failures = run_case(case, seed)
    assert not failures, describe(case) + "\n" + "\n".join(failures)


def test_the_fixed_seeds_reach_every_form_and_option():
    cases = [case_of(s) for s in SEEDS]
    assert {c["kind"] for c in cases} == {"classifier", "regressor"}
    assert {c["form"] for c in cases} == set(FORMS)
    assert {c["labels"] for c in cases if c["kind"] == "classifier"} == set(LABELS)
    assert {c["cell"] for c in cases} == {"rnn", "lstm", "gru"}
    followed = [c for c in cases if twin_follows(c)]
    assert {c["dtype"].name for c in followed} == {"float32", "float64"}
    assert {c["solver"] for c in followed} == {"adam", "sgd"}
    for option in ("bidirectional", "weighted", "shuffle"):
        assert {c[option] for c in followed} == {False, True}, option
    assert {c["clip_norm"] for c in followed} == {None, 5.0, 0.05}
    assert any(c["alpha"] == 0.1 for c in followed)
    assert any(c["layers"] == 2 for c in followed)
    assert any(c["early_stopping"] for c in cases) and any(c["dropout"] for c in cases)


def _failures(seeds):
    return [f for s in seeds for f in run_case(case_of(s), s)]


def test_the_clipping_is_compared(monkeypatch):
    """The estimators' clipping turned into a no-op: the cases the twin
    follows with clip_norm=0.05 fail their fit."""
    seeds = seeds_where(lambda c: twin_follows(c) and c["clip_norm"] == 0.05, 3)
    monkeypatch.setattr(rnnfast.sklearn, "clip_grads", lambda grads, max_norm: None)
    failures = _failures(seeds)
    assert any(f.startswith("fit: ") for f in failures), failures


def test_the_optimizer_is_compared(monkeypatch):
    """Adam with a learning rate 1 % above the estimator's: the fit fails."""
    def adam_off(self):
        return Adam(lr=1.01 * self.learning_rate_init)

    seeds = seeds_where(lambda c: twin_follows(c) and c["solver"] == "adam", 2)
    monkeypatch.setattr(_BaseRNN, "_new_optimizer", adam_off)
    failures = _failures(seeds)
    assert failures and any(f.startswith("fit: ") for f in failures), failures


def test_the_sample_weights_are_compared(monkeypatch):
    """Sample weights dropped after their check: weighted cases fail."""
    check = rnnfast.sklearn._check_sample_weight

    def dropped(sample_weight, X, **kwargs):
        return np.ones(X.shape[0]) if sample_weight is not None else None

    seeds = seeds_where(lambda c: twin_follows(c) and c["weighted"], 3)
    assert not _failures(seeds)
    monkeypatch.setattr(rnnfast.sklearn, "_check_sample_weight", dropped)
    assert _failures(seeds)
    monkeypatch.setattr(rnnfast.sklearn, "_check_sample_weight", check)


def test_the_targets_scale_is_compared(monkeypatch):
    """A regressor whose targets' mean and scale ignore the weights: the
    weighted regressor cases fail their predictions."""
    check_y = RNNRegressor._check_y

    def unweighted(self, y, n, first_pass, incremental, dtype, sample_weight=None):
        return check_y(self, y, n, first_pass, incremental, dtype, None)

    seeds = seeds_where(lambda c: c["kind"] == "regressor" and c["weighted"], 3)
    monkeypatch.setattr(RNNRegressor, "_check_y", unweighted)
    failures = _failures(seeds)
    assert any(f.startswith(("predict", "fit: ")) for f in failures), failures


def test_a_sample_read_with_its_batch_is_reported(monkeypatch):
    """Scores that lean on the batch's other samples (1 % of the batch's
    mean added): reading a sample alone gives other outputs."""
    scores = _BaseRNN._scores

    def leaning(self, batch):
        s = scores(self, batch)
        return s + 0.01 * s.mean(axis=0)

    seeds = seeds_where(lambda c: c["n"] > 5, 2)
    monkeypatch.setattr(_BaseRNN, "_scores", leaning)
    failures = _failures(seeds)
    assert any(" alone:" in f for f in failures), failures


def test_a_pickle_without_the_optimizer_is_reported(monkeypatch):
    """A pickle that leaves the optimizer's state out: the copy's
    partial_fit starts a new optimizer and ends elsewhere."""
    getstate = _BaseRNN.__getstate__

    def forgetful(self):
        state = dict(getstate(self))         # (object.__getstate__ gives __dict__ itself)
        state.pop("_optimizer", None)
        return state

    seeds = seeds_where(lambda c: c["solver"] == "adam", 2)
    monkeypatch.setattr(_BaseRNN, "__getstate__", forgetful)
    failures = _failures(seeds)
    assert any(f.startswith("pickle: params[") for f in failures), failures


def test_a_partial_fit_that_restarts_the_optimizer_is_reported(monkeypatch):
    """partial_fit with a new optimizer at each call: two epochs of it no
    longer train as a fit of two epochs."""
    partial_fit = RNNRegressor.partial_fit

    def restarting(self, *args, **kwargs):
        self.__dict__.pop("_optimizer", None)
        return partial_fit(self, *args, **kwargs)

    seeds = seeds_where(lambda c: c["kind"] == "regressor" and c["epochs"] >= 2 and
                        c["solver"] == "adam" and not c["shuffle"] and
                        not c["early_stopping"], 2)
    assert not _failures(seeds)
    monkeypatch.setattr(RNNRegressor, "partial_fit", restarting)
    failures = _failures(seeds)
    assert any(f.startswith("partial_fit: params[") for f in failures), failures


def test_the_refused_fit_it_found_is_caught(monkeypatch):
    """The bug this fuzzer found: a fit refused for its y or sample_weight
    had already set n_features_in_ (and classes_, the input kind, the
    feature names) from its X, so a fitted estimator then refused the data
    it was fitted on.  Without the transaction, the bad calls report it."""
    monkeypatch.setattr(_BaseRNN, "_unchanged_if_refused",
                        lambda self: contextlib.nullcontext())
    failures = _failures(range(6))
    changed = [f for f in failures if "the estimator changed" in f]
    assert changed and all(f.startswith("bad input (fit") for f in changed), failures
    assert any("n_features_in_" in f for f in changed), changed


def test_a_tokenizer_that_forgets_to_lowercase_in_transform_is_reported(monkeypatch):
    tokens = TextTokenizer._tokens

    def case_kept(self, doc, pattern=None):
        if pattern is None:                           # transform's call, not fit's
            return list(doc) if self.level == "char" else self._pattern.findall(doc)
        return tokens(self, doc, pattern)

    monkeypatch.setattr(TextTokenizer, "_tokens", case_kept)
    failures = _failures(range(10))
    assert any(f.startswith("text: transform(") for f in failures), failures


def test_a_vocabulary_in_another_order_is_reported(monkeypatch):
    """Ids given in order of first appearance rather than of falling count."""
    fit = TextTokenizer.fit

    def first_seen(self, X, y=None):
        fit(self, X, y)
        order = {}
        for doc in X:
            for t in self._tokens(doc):
                if t in self.vocabulary_:
                    order.setdefault(t, len(order) + 2)
        self.vocabulary_ = order
        return self

    monkeypatch.setattr(TextTokenizer, "fit", first_seen)
    failures = _failures(range(10))
    assert any(f.startswith("text: ids") for f in failures), failures


def test_the_command_line_runs_the_cases_of_this_module(monkeypatch, capsys):
    """fuzz_networks.fuzz_main's reporting is tested with the models'
    fuzzer; here, that this one's main runs its cases through it."""
    assert main(["--cases", "2", "--seed", "5"]) == 0
    assert capsys.readouterr().out.strip().endswith("2 cases from seed 5, 0 failed")
    monkeypatch.setattr(fuzz_estimators, "run_case", lambda case, seed: ["made up"])
    assert main(["--cases", "1"]) == 1
    assert "FAIL seed=0" in capsys.readouterr().out
