"""A few fixed cases of the models' differential fuzzer (tests/fuzz_models.py)
against PyTorch, and checks that its comparisons are live.  Longer runs:
`python tests/fuzz_models.py --minutes 10`."""

import numpy as np
import pytest

from _torch_twin import import_torch_or_skip

import_torch_or_skip()              # the fuzzer's twin

import rnnfast.io  # noqa: E402
from rnnfast.layers import TimeDropout  # noqa: E402
from rnnfast.losses import _RegressionLoss  # noqa: E402
from rnnfast.layers import TimeAttention  # noqa: E402
from rnnfast.models import RnnLM, Seq2seq, SequenceClassifier  # noqa: E402
from rnnfast.models.seq2seq import PeekyDecoder  # noqa: E402

import fuzz_models  # noqa: E402
import fuzz_networks  # noqa: E402
from fuzz_models import describe, draw_case, main, run_case  # noqa: E402

SEEDS = range(80)


def case_of(seed):
    return draw_case(np.random.default_rng([seed, 2]))


def first_case(wanted, start=0):
    """(seed, case) of the first seed from `start` whose case has what
    `wanted` asks."""
    seed = next(s for s in range(start, start + 2000) if wanted(case_of(s)))
    return seed, case_of(seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_model_matches_torch(seed):
    case = case_of(seed)
    failures = run_case(case, seed)
    assert not failures, describe(case) + "\n" + "\n".join(failures)


def test_the_fixed_seeds_reach_every_model_and_option():
    cases = [case_of(s) for s in SEEDS]
    assert {c["kind"] for c in cases} == {"lm", "classifier", "regressor", "tagger",
                                          "seq2seq"}
    pairs = [(c["variant"], c["padded"]) for c in cases if c["kind"] == "seq2seq"]
    assert {v for v, _ in pairs} == {"plain", "peeky", "attention"}
    assert {p for _, p in pairs} == {False, True}
    assert {c["cell"] for c in cases} == {"rnn", "lstm", "gru"}
    assert {c["dtype"].name for c in cases} == {"float32", "float64"}
    lms = [c for c in cases if c["kind"] == "lm"]
    heads = [c for c in cases if c["kind"] in ("classifier", "regressor", "tagger")]
    assert any(c["tie_weights"] for c in lms) and any(c["loss_mask"] for c in lms)
    assert {c["reduction"] for c in lms} == {"mean", "sum_time"}
    assert any(c["dropout"] and c["layers"] > 1 for c in cases)
    for option in ("bidirectional", "ids", "ragged", "weighted"):
        assert {c[option] for c in heads} == {False, True}, option
    assert any(c["V"] == 4000 for c in lms)


def test_a_wrong_embedding_gradient_is_reported(monkeypatch):
    backward = RnnLM.backward

    def off_by_a_little(self, *args, **kwargs):
        backward(self, *args, **kwargs)
        self.embed.grads[0][0, 0] += 0.05

    monkeypatch.setattr(RnnLM, "backward", off_by_a_little)
    seed, case = first_case(lambda c: c["kind"] == "lm")
    failures = run_case(case, seed)
    assert [f.split(":")[0] for f in failures] == ["embedding grad (chunk 0)",
                                                    "embedding grad (chunk 1)"]


def test_a_language_model_that_drops_its_state_is_reported(monkeypatch):
    forward = RnnLM.forward

    def forgetful(self, *args, **kwargs):
        self.reset_state()
        return forward(self, *args, **kwargs)

    seed, case = first_case(lambda c: c["kind"] == "lm" and c["T"] > 1)
    assert not run_case(case, seed)
    monkeypatch.setattr(RnnLM, "forward", forgetful)
    failures = run_case(case, seed)
    assert any(f.startswith("loss (chunk 1)") for f in failures), failures
    assert not any("chunk 0" in f for f in failures), failures


def test_a_perplexity_that_drops_the_state_between_chunks_is_reported(monkeypatch):
    """Evaluation calls that start each chunk from zeros: the perplexity of
    streams longer than a chunk fails, and only it and greedy decoding (one
    call a token) do."""
    scores = RnnLM._scores

    def forgetful(self, xs, last_only=False):
        if not self.training:
            self.reset_state()
        return scores(self, xs, last_only)

    monkeypatch.setattr(RnnLM, "_scores", forgetful)
    seed = next(s for s in range(500) if case_of(s)["kind"] == "lm" and
                "perplexity" in " ".join(run_case(case_of(s), s)))
    names = {f.split(":")[0] for f in run_case(case_of(seed), seed)}
    assert "perplexity" in names and names <= {"perplexity", "generate",
                                               "generate (sampled)"}, names


@pytest.mark.parametrize("cls, kind", [(RnnLM, "lm"), (Seq2seq, "seq2seq")])
def test_greedy_decoding_is_compared(monkeypatch, cls, kind):
    """The last decoded id shifted by one, for a language model and for an
    encoder-decoder: the float64 case fails at its decoding only."""
    generate = cls.generate

    def shifted(self, *args, **kwargs):
        ids = generate(self, *args, **kwargs)
        ids[..., -1] = (ids[..., -1] + 1) % self.vocab_size
        return ids

    monkeypatch.setattr(cls, "generate", shifted)
    seed, case = first_case(lambda c: c["kind"] == kind and c["dtype"].name == "float64")
    failures = run_case(case, seed)
    expected = ["generate", "generate (sampled)"] if kind == "lm" else ["generate"]
    assert [f.split(":")[0] for f in failures] == expected, failures


def test_sampled_decoding_is_compared(monkeypatch):
    """A language model's sampler that draws at temperature 1 whatever it is
    asked: a float64 case whose draw was at another temperature fails its
    sampled generate only."""
    import rnnfast.models.lm as lm_module
    sample = lm_module._sample

    def at_temperature_one(logits, temperature, *args):
        return sample(logits, 1.0 if temperature else 0.0, *args)

    monkeypatch.setattr(lm_module, "_sample", at_temperature_one)
    seed = next(s for s in range(300) if case_of(s)["kind"] == "lm"
                and case_of(s)["dtype"].name == "float64" and run_case(case_of(s), s))
    failures = run_case(case_of(seed), seed)
    assert [f.split(":")[0] for f in failures] == ["generate (sampled)"], failures


def test_the_dropout_masks_are_compared(monkeypatch):
    """Dropout that scales what it keeps by 1.01 more than the mask it
    records: a case with dropout fails its loss."""
    forward = TimeDropout.forward

    def scaled(self, xs):
        out = forward(self, xs)
        return out * 1.01 if self.mask is not None else out

    seed, case = first_case(lambda c: c["kind"] == "classifier" and c["dropout"] > 0)
    assert not run_case(case, seed)
    monkeypatch.setattr(TimeDropout, "forward", scaled)
    failures = run_case(case, seed)
    assert any(f.startswith("loss") for f in failures), failures


def test_evaluation_scores_are_compared(monkeypatch):
    predict_scores = SequenceClassifier.predict_scores

    def shifted(self, *args, **kwargs):
        return predict_scores(self, *args, **kwargs) + 0.01

    monkeypatch.setattr(SequenceClassifier, "predict_scores", shifted)
    seed, case = first_case(lambda c: c["kind"] == "classifier")
    failures = run_case(case, seed)
    assert [f.split(":")[0] for f in failures] == ["predict_scores (eval)"]


def test_the_regression_weights_bug_it_found_is_caught(monkeypatch):
    """The bug this fuzzer found: MSELoss/HuberLoss's gradient divided by
    max(sum of weights, 1).  Put back, it fails weighted regressor cases."""
    def old_backward(self, dout=1.0):
        g, n = self._cache
        return g * g.dtype.type(dout / max(n, 1))

    monkeypatch.setattr(_RegressionLoss, "backward", old_backward)
    weighted = [s for s in range(2000) if (lambda c: c["kind"] == "regressor"
                                           and c["weighted"] and c["N"] <= 3)(case_of(s))]
    failing = [s for s in weighted[:40] if run_case(case_of(s), s)]
    assert failing, weighted[:40]


def test_the_attention_is_compared(monkeypatch):
    forward = TimeAttention.forward

    def scaled(self, hs_enc, hs_dec):
        return forward(self, hs_enc, hs_dec) * 1.01

    seed, case = first_case(lambda c: c["kind"] == "seq2seq" and c["variant"] == "attention"
                            and c["dtype"].name == "float64")
    assert not run_case(case, seed)
    monkeypatch.setattr(TimeAttention, "forward", scaled)
    failures = run_case(case, seed)
    assert failures and failures[0].startswith("loss"), failures


def test_a_peeky_decoder_that_forgets_the_peeks_gradient_is_reported(monkeypatch):
    """The encoder's h reaches the loss through the decoder's first state
    and every step's peek: a backward that returns the first alone fails
    the encoder's gradients, and the loss and the decoder's still agree."""
    def no_peeks(self, dscore):
        H = self.lstm.hidden_size
        dout = self.lstm.backward(self.affine.backward(dscore)[:, :, H:])
        self.embed.backward(dout[:, :, H:])
        return self.lstm.dh

    monkeypatch.setattr(PeekyDecoder, "backward", no_peeks)
    seed, case = first_case(lambda c: c["kind"] == "seq2seq" and c["variant"] == "peeky")
    failures = run_case(case, seed)
    assert failures and all(f.startswith("encoder") for f in failures), failures


def test_a_load_that_changes_a_weight_is_reported(monkeypatch):
    load = rnnfast.io.load

    def corrupt(path):
        model = load(path)
        model.params[-1][...] += 0.5
        return model

    monkeypatch.setattr(fuzz_networks, "load", corrupt)     # saved_and_loaded's
    seed, case = first_case(lambda c: c["kind"] == "tagger")
    failures = run_case(case, seed)
    assert failures[0].startswith("load: params[") and \
        failures[-1] == "load: evaluation scores differ from the saved model's", failures


def test_the_optimizer_steps_are_compared(monkeypatch):
    """A twin whose torch.optim learning rate is 1 % off fails the params
    after the steps, and nothing else."""
    from rnnfast.optim import SGD
    monkeypatch.setattr(fuzz_models, "TORCH_TWINS", {
        "sgd": (lambda: SGD(lr=0.1), lambda t, p: t.optim.SGD(p, lr=0.101))})
    seed, case = first_case(lambda c: c["kind"] == "classifier")
    failures = run_case(case, seed)
    assert failures and all(f.startswith("sgd step params[") for f in failures), failures


def test_the_clipping_is_compared(monkeypatch):
    """rnnfast's clip_grads turned into a no-op: the clipped cases fail."""
    monkeypatch.setattr(fuzz_models, "clip_grads", lambda grads, max_norm: None)
    failing = [f for s in range(30) for f in run_case(case_of(s), s)]
    assert failing and all("step params[" in f and f.split(":")[0].endswith("(clipped)")
                           for f in failing), failing


def _bad_input_failures(cases):
    return [f for s, c in cases for f in run_case(c, s) if f.startswith("bad input")]


def test_a_refused_call_that_runs_the_network_first_is_reported(monkeypatch):
    """RnnLM.forward as it was before the models' fuzzer: xs checked by the
    embedding (as "ids"), ts and mask by the loss after the network had
    advanced the carried state.  Both kinds of failure are reported."""
    def old_forward(self, xs, ts, mask=None):
        return self.loss_layer.forward(self._scores(xs), ts, mask)

    lms = [(s, case_of(s)) for s in range(300) if case_of(s)["kind"] == "lm"][:10]
    assert not _bad_input_failures(lms)
    monkeypatch.setattr(RnnLM, "forward", old_forward)
    failures = _bad_input_failures(lms)
    assert any("does not start with 'xs': ids:" in f for f in failures), failures
    assert any("the model changed" in f for f in failures), failures


def test_a_refused_call_that_overwrites_a_cache_is_reported(monkeypatch):
    """The heads' forward as it was before: the embedding's lookup (which
    keeps the ids for the backward) before y and sample_weight are checked.
    A refused call between a forward and its backward then changes the
    embedding's gradient: reported.  Seq2seq's alike, with the encoder run
    before a padded ts is refused."""
    from rnnfast._validation import check_sample_weight
    from rnnfast.models.sequence import _SequenceModel

    def heads_old(self, X, y, lengths=None, sample_weight=None):
        X, lengths, keep = self._checked(X, lengths)
        xs = self._network_input(X)
        if keep is None:
            T = X.shape[1]
            counted = None if lengths is None else np.arange(T) < lengths[:, None]
        else:
            T, counted = keep.shape[1], keep
        y = self._check_y(y, X.shape[0], T, counted)
        sample_weight = check_sample_weight(sample_weight, X.shape[0])
        return self.loss_layer.forward(
            self.affine.forward(self._features_of(xs, lengths, keep)), y,
            sample_weight=sample_weight)

    def seq2seq_old(self, xs, ts):
        xs, ts = self._check(xs, ts)
        state = self.encoder.forward(xs)
        return self.loss_layer.forward(
            self.decoder.forward(self._decoder_inputs(ts), state), ts[:, 1:])

    cases = [(s, case_of(s)) for s in range(400)
             if case_of(s)["kind"] == "seq2seq" or case_of(s).get("ids")][:30]
    assert not _bad_input_failures(cases)
    monkeypatch.setattr(_SequenceModel, "forward", heads_old)
    monkeypatch.setattr(Seq2seq, "forward", seq2seq_old)
    failures = _bad_input_failures(cases)
    changed = [f for f in failures if f.endswith("the backward after it gives other gradients")]
    assert any(f.startswith("bad input (ts padded") for f in changed), failures
    assert any(f.startswith(("bad input (y", "bad input (sample_weight")) for f in changed), \
        failures


def test_an_accepted_bad_input_is_reported(monkeypatch):
    """Sample weights no longer checked before the network runs: negative or
    NaN weights, or weights of another batch, fail the case, as accepted
    (or refused by the loss after the dropout draws: "the model changed")."""
    import rnnfast.models.sequence as sequence
    monkeypatch.setattr(sequence, "check_sample_weight", lambda w, n: None)
    heads = [(s, case_of(s)) for s in range(300)
             if case_of(s)["kind"] in ("classifier", "regressor", "tagger")][:15]
    failures = _bad_input_failures(heads)
    assert all(f.startswith("bad input (sample_weight") for f in failures), failures
    assert any(f.endswith("accepted") for f in failures), failures


def test_the_command_line_runs_and_reports_a_raising_case(monkeypatch, capsys):
    assert main(["--cases", "3", "--seed", "5"]) == 0
    assert capsys.readouterr().out.strip().endswith("3 cases from seed 5, 0 failed")

    def boom(case, seed):
        raise ValueError("xs: bad")

    monkeypatch.setattr(fuzz_models, "run_case", boom)
    assert main(["--cases", "2"]) == 1
    out = capsys.readouterr().out
    assert "FAIL seed=0" in out and "raised ValueError: xs: bad" in out
    assert out.strip().endswith("2 cases from seed 0, 2 failed")


@pytest.mark.parametrize("args", [["--cases", "0"], ["--minutes", "-1"], ["--seed", "-2"]])
def test_the_command_line_refuses_bad_arguments(args):
    with pytest.raises(SystemExit):
        main(args)
