"""rnnfast.trainer: history, TBPTT carry, early stopping, schedules,
checkpoints and exact resume, divergence handling."""
import io
import re

import numpy as np
import pytest

import rnnfast.io as rio
from rnnfast.data import StreamBatcher
from rnnfast.optim import SGD, Adam, ReduceOnPlateau, StepDecay
from rnnfast.trainer import Trainer, TrainingDivergedError


class Linear:
    """Stand-in model: y = X @ w + b, mean squared error."""

    def __init__(self, n_in=3, dtype="float64", nan_at=None, inf_grad_at=None):
        self.n_in, self.dtype = n_in, dtype
        self.params = [np.zeros(n_in, dtype), np.zeros(1, dtype)]
        self.grads = [np.zeros_like(p) for p in self.params]
        self.calls = 0
        self.nan_at, self.inf_grad_at = nan_at, inf_grad_at
        self.modes = []

    def get_config(self):
        return {"n_in": self.n_in, "dtype": self.dtype}

    def train(self, mode=True):
        self.modes.append("train" if mode else "eval")

    def eval(self):
        self.train(False)

    def forward(self, X, y):
        self.calls += 1
        self.X, self.err = X, X @ self.params[0] + self.params[1][0] - y
        loss = float(np.mean(self.err ** 2))
        return float("nan") if self.calls == self.nan_at else loss

    def backward(self):
        g = 2 * self.err / len(self.err)
        self.grads[0][...] = self.X.T @ g
        self.grads[1][...] = g.sum()
        if self.calls == self.inf_grad_at:
            self.grads[0][0] = np.inf


rio.register(Linear, "tests.trainer.Linear")


def regression(n=64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    return X, X @ np.array([1.0, -2.0, 0.5]) + 0.3


def test_history_and_learning():
    X, y = regression()
    t = Trainer(Linear(), SGD(lr=0.1), random_state=0, verbose=False)
    h = t.fit((X, y), epochs=5, batch_size=16)
    assert h["epoch"] == [1, 2, 3, 4, 5]
    assert set(h) == {"epoch", "loss", "grad_norm", "lr", "seconds", "tokens_per_sec"}
    assert all(len(v) == 5 for v in h.values())
    assert h["loss"][-1] < 0.1 * h["loss"][0]
    assert t.model.calls == 5 * 4                        # 64 // 16 batches a epoch


class RecordingLM:
    """Stand-in LM: records what it sees and when its state is reset."""

    def __init__(self):
        self.params, self.grads = [np.zeros(1)], [np.zeros(1)]
        self.events = []

    def reset_state(self):
        self.events.append("reset")

    def forward(self, xs, ts):
        self.events.append((xs.copy(), ts.copy()))
        return 1.0

    def backward(self):
        pass


def test_language_model_carry_across_batches_and_epochs():
    corpus = np.arange(200) % 37
    m = RecordingLM()
    t = Trainer(m, SGD(lr=0.1), verbose=False)
    t.fit(corpus, epochs=3, batch_size=4, time_size=5)
    oracle = StreamBatcher(corpus, 4, 5)
    per_epoch = len(oracle)                             # 199 // 20 = 9
    assert per_epoch == 9
    expected = []
    for _ in range(3):
        expected.append("reset")
        expected += [oracle.next_batch() for _ in range(per_epoch)]
    assert len(m.events) == len(expected)
    for got, want in zip(m.events, expected):
        if want == "reset":
            assert got == "reset"
        else:
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
    # a second fit on the same corpus continues the stream where it stopped
    t.fit(corpus, epochs=4, batch_size=4, time_size=5)
    np.testing.assert_array_equal(m.events[-per_epoch][0], oracle.next_batch()[0])


def test_early_stopping_and_restore_best():
    X, y = regression()
    values = iter([5.0, 4.0, 4.5, 4.6, 4.7, 1.0])
    snapshots = []

    def eval_fn(model):
        snapshots.append([p.copy() for p in model.params])
        return {"score": next(values)}
    m = Linear()
    t = Trainer(m, SGD(lr=0.05), random_state=0, verbose=False)
    h = t.fit((X, y), epochs=6, batch_size=16, eval_fn=eval_fn, patience=2,
              restore_best=True)
    assert h["epoch"] == [1, 2, 3, 4] and h["score"] == [5.0, 4.0, 4.5, 4.6]
    for p, best in zip(m.params, snapshots[1]):
        np.testing.assert_array_equal(p, best)
    assert not np.array_equal(snapshots[1][0], snapshots[3][0])
    assert m.modes.count("eval") == 4                  # evaluation ran in eval mode


def test_schedules():
    X, y = regression()
    opt = SGD(lr=1.0)
    t = Trainer(Linear(), opt, lr_schedule=StepDecay(opt, decay=0.5, start_epoch=2),
                verbose=False)
    h = t.fit((X, y), epochs=4, batch_size=64)
    assert h["lr"] == [1.0, 1.0, 0.5, 0.25]
    opt = SGD(lr=0.01)
    vals = iter([3.0, 2.0, 2.5, 1.0])
    t = Trainer(Linear(), opt, lr_schedule=ReduceOnPlateau(opt, factor=0.25), verbose=False)
    h = t.fit((X, y), epochs=4, batch_size=64, eval_fn=lambda m: next(vals))
    assert h["lr"] == [0.01, 0.01, 0.01, 0.0025]       # lr of each epoch, cut after epoch 3
    assert opt.lr == 0.0025
    with pytest.raises(ValueError, match="eval_fn"):
        Trainer(Linear(), opt, lr_schedule=ReduceOnPlateau(opt),
                verbose=False).fit((X, y), epochs=1)


def test_a_plateau_schedule_watches_the_value_the_way_fit_does():
    """mode="max" (an accuracy): a "max" plateau keeps lr while it rises; a
    "min" one would cut lr at every improvement, so fit refuses the pair
    before training, naming mode, and the model stays as it was."""
    X, y = regression()
    opt = SGD(lr=0.01)
    accuracies = iter([0.5, 0.6, 0.6, 0.7])
    t = Trainer(Linear(), opt, lr_schedule=ReduceOnPlateau(opt, factor=0.5, mode="max"),
                verbose=False)
    h = t.fit((X, y), epochs=4, batch_size=64, eval_fn=lambda m: {"acc": next(accuracies)},
              monitor="acc", mode="max")
    assert h["lr"] == [0.01, 0.01, 0.01, 0.005] and opt.lr == 0.005
    model = Linear()
    t = Trainer(model, opt, lr_schedule=ReduceOnPlateau(opt), verbose=False)
    with pytest.raises(ValueError, match=r"^mode: fit\(mode='max'\) but the lr_schedule "
                                         r"ReduceOnPlateau has mode='min'"):
        t.fit((X, y), epochs=2, eval_fn=lambda m: {"acc": 0.5}, monitor="acc", mode="max")
    assert model.calls == 0 and t.epoch == 0 and opt.lr == 0.005


@pytest.mark.parametrize("kind", ["loss", "grad"])
def test_divergence_stops_and_keeps_the_last_good_weights(kind):
    X, y = regression()
    snap = {}

    class Watch(Linear):
        def forward(self, X, y):
            snap[self.calls + 1] = [p.copy() for p in self.params]
            return super().forward(X, y)
    m = Watch(nan_at=6) if kind == "loss" else Watch(inf_grad_at=6)
    t = Trainer(m, SGD(lr=0.1), clip_norm=1.0, verbose=False)
    with pytest.raises(TrainingDivergedError, match="epoch 2, batch 2") as info:
        t.fit((X, y), epochs=3, batch_size=16)
    for p, good in zip(m.params, snap[6]):
        np.testing.assert_array_equal(p, good)
    assert np.isfinite(m.params[0]).all()
    assert info.value.history["epoch"] == [1]


def test_a_nan_or_inf_inside_a_real_model_is_divergence_and_in_the_data_bad_input():
    """A layer of the model refusing a NaN or Inf between its layers, the
    batch finite, is TrainingDivergedError (it was a ValueError naming the
    layer's argument, e.g. 'dout', that the user never passed); a NaN in
    the data stays the ValueError that names X."""
    from rnnfast import models
    corpus = np.random.default_rng(0).integers(0, 7, 200)
    model = models.RnnLM(7, hidden_size=4, random_state=0)
    t = Trainer(model, SGD(lr=1e30), verbose=False)
    with pytest.raises(TrainingDivergedError, match=r"batch 2: a NaN or Inf inside the "
                                                    r"model's backward \(dout: contains"):
        t.fit(corpus, epochs=1, batch_size=2, time_size=5)
    assert all(np.isfinite(p).all() for p in model.params)    # no update after the NaN

    model = models.RnnLM(7, hidden_size=4, cell="rnn", random_state=0)
    model.network.params[0][...] = np.inf          # every hidden state Inf or NaN
    with pytest.raises(TrainingDivergedError, match="batch 1: a NaN or Inf inside the "
                                                    "model's forward"):
        Trainer(model, SGD(lr=0.1), verbose=False).fit(corpus, epochs=1, batch_size=2,
                                                       time_size=5)

    X = np.random.default_rng(1).standard_normal((8, 4, 3))
    X[5, 2, 1] = np.nan
    model = models.SequenceClassifier(2, input_size=3, hidden_size=4, random_state=0)
    with pytest.raises(ValueError, match="^X: contains NaN or Inf") as info:
        Trainer(model, SGD(lr=0.1), verbose=False).fit((X, np.arange(8) % 2), batch_size=4,
                                                       shuffle=False)
    assert not isinstance(info.value, TrainingDivergedError)


def test_an_update_that_overflows_the_weights_is_divergence_before_the_checkpoint(tmp_path):
    """A finite gradient times a huge lr overflows a weight to Inf at the
    epoch's last batch: TrainingDivergedError naming the epoch, before the
    evaluation and the checkpoint (whose save refused the weights with
    "obj: params[0] contains NaN or Inf" before)."""
    X, y = regression()
    ck = tmp_path / "ck.npz"
    evaluated = []
    t = Trainer(Linear(), SGD(lr=1e308), checkpoint=ck, verbose=False)
    with pytest.raises(TrainingDivergedError, match="in epoch 1: an update left NaN or Inf "
                                                    "in the weights") as info, \
            np.errstate(over="ignore"):
        t.fit((X, y), epochs=2, batch_size=len(X),
              eval_fn=lambda m: evaluated.append(1) or 1.0)
    assert info.value.history == {} and not evaluated and not ck.exists()


def test_clipping_bounds_the_update():
    X, y = regression()
    y = y * 1000
    m = Linear()
    t = Trainer(m, SGD(lr=1.0), clip_norm=0.5, verbose=False)
    h = t.fit((X, y), epochs=1, batch_size=64)
    assert h["grad_norm"][0] > 100
    step = np.sqrt(sum(float((p ** 2).sum()) for p in m.params))
    assert step == pytest.approx(0.5, rel=1e-5)


def test_progress_bar_only_when_verbose(capsys):
    X, y = regression()
    buf = io.StringIO()
    Trainer(Linear(), SGD(lr=0.1), verbose=True, stream=buf).fit((X, y), epochs=2,
                                                                 batch_size=16)
    out = buf.getvalue()
    assert "epoch 2/2" in out and "tok/s" in out and "loss" in out
    Trainer(Linear(), SGD(lr=0.1), verbose=False).fit((X, y), epochs=2, batch_size=16)
    Trainer(Linear(), SGD(lr=0.1)).fit((X, y), epochs=1, batch_size=16)
    captured = capsys.readouterr()
    assert captured.out == "" and "epoch 1/1" in captured.err


def test_resume_continues_exactly_minibatches(tmp_path):
    X, y = regression(100)
    full = Linear()
    Trainer(full, Adam(lr=0.05), random_state=7, verbose=False).fit(
        (X, y), epochs=4, batch_size=16)
    ck = tmp_path / "ck.npz"
    first = Linear()
    Trainer(first, Adam(lr=0.05), random_state=7, checkpoint=ck, verbose=False).fit(
        (X, y), epochs=2, batch_size=16)
    resumed = Linear()
    t = Trainer(resumed, Adam(lr=0.05), random_state=123, checkpoint=ck, verbose=False)
    h = t.fit((X, y), epochs=4, batch_size=16, resume_from=ck)
    assert h["epoch"] == [1, 2, 3, 4]
    for p, q in zip(full.params, resumed.params):
        assert p.tobytes() == q.tobytes()
    assert rio.load_checkpoint(ck)["state"]["epoch"] == 4


def test_resume_continues_exactly_language_model_with_dropout(tmp_path):
    from rnnfast import models
    corpus = np.random.default_rng(1).integers(0, 12, 600)

    def make():
        return models.RnnLM(12, hidden_size=8, num_layers=2, dropout=0.3, random_state=4)
    full = make()
    Trainer(full, Adam(lr=0.01), clip_norm=1.0, verbose=False).fit(
        corpus, epochs=3, batch_size=4, time_size=6)
    ck = tmp_path / "lm.npz"
    part = make()
    Trainer(part, Adam(lr=0.01), clip_norm=1.0, checkpoint=ck, verbose=False).fit(
        corpus, epochs=2, batch_size=4, time_size=6)
    resumed = make()
    Trainer(resumed, Adam(lr=0.01), clip_norm=1.0, verbose=False).fit(
        corpus, epochs=3, batch_size=4, time_size=6, resume_from=ck)
    for p, q in zip(full.params, resumed.params):
        assert p.tobytes() == q.tobytes()


def test_resume_with_no_epochs_loads_and_epoch_a_fit_goes_on_exactly(tmp_path):
    """fit(epochs=0, resume_from=...) only loads (the examples' way to
    resume): then one epoch a fit ends as one uninterrupted fit."""
    from rnnfast import models
    corpus = np.random.default_rng(1).integers(0, 12, 600)

    def make():
        return models.RnnLM(12, hidden_size=8, num_layers=2, dropout=0.3, random_state=4)
    full = make()
    whole = Trainer(full, Adam(lr=0.01), verbose=False).fit(
        corpus, epochs=4, batch_size=4, time_size=6)
    ck = tmp_path / "lm.npz"
    Trainer(make(), Adam(lr=0.01), checkpoint=ck, verbose=False).fit(
        corpus, epochs=2, batch_size=4, time_size=6)
    resumed = make()
    before = [p.copy() for p in resumed.params]
    t = Trainer(resumed, Adam(lr=0.01), verbose=False)
    history = t.fit(corpus, epochs=0, batch_size=4, time_size=6, resume_from=ck)
    assert t.epoch == 2 and history["epoch"] == [1, 2]
    assert history["loss"] == whole["loss"][:2]
    assert any(p.tobytes() != q.tobytes() for p, q in zip(resumed.params, before))
    for epoch in (3, 4):
        history = t.fit(corpus, epochs=epoch, batch_size=4, time_size=6)
    assert history["loss"] == whole["loss"]
    for p, q in zip(full.params, resumed.params):
        assert p.tobytes() == q.tobytes()


def test_resuming_from_the_checkpoint_of_an_early_stop_trains_no_further(tmp_path):
    """The run stopped at epoch 3 (patience 2); resumed from the checkpoint
    written then, it stays stopped: the same history and weights (the best
    epoch's, with restore_best), no batch trained (trained 1 more epoch
    before)."""
    X, y = regression()
    values = [1.0, 2.0, 3.0, 0.0, 0.0]
    ck = tmp_path / "ck.npz"

    def run(model, resume=None):
        t = Trainer(model, SGD(lr=0.05), checkpoint=ck, verbose=False)
        return t.fit((X, y), epochs=5, batch_size=16, eval_fn=lambda m: values[t.epoch],
                     patience=2, restore_best=True, resume_from=resume)
    full = Linear()
    history = run(full)
    assert history["epoch"] == [1, 2, 3]
    resumed = Linear()
    assert run(resumed, resume=ck) == history
    assert resumed.calls == 0
    for p, q in zip(full.params, resumed.params):
        assert p.tobytes() == q.tobytes()


def test_a_stream_batcher_given_to_fit_resumes_at_its_read_position(tmp_path):
    from rnnfast import models
    corpus = np.random.default_rng(2).integers(0, 9, 200)
    ck = tmp_path / "ck.npz"

    def run(epochs, checkpoint=None, resume=None):
        model = models.RnnLM(9, hidden_size=6, random_state=1)
        Trainer(model, SGD(lr=0.5), checkpoint=checkpoint, verbose=False).fit(
            StreamBatcher(corpus, 3, 5), epochs=epochs, max_batches=4, resume_from=resume)
        return model
    full = run(3)
    run(1, checkpoint=ck)                   # the batcher read 4 of its 13 batches
    assert rio.load_checkpoint(ck)["state"]["batcher"] == {"position": 20}
    resumed = run(3, resume=ck)
    for p, q in zip(full.params, resumed.params):
        assert p.tobytes() == q.tobytes()


def test_nan_and_infinities_in_the_history_survive_a_checkpoint(tmp_path):
    """Kept as they were, not as None (they were None after a resume)."""
    X, y = regression()
    values = [float("nan"), float("inf"), -float("inf"), 1.0]
    ck = tmp_path / "ck.npz"
    t = Trainer(Linear(), SGD(lr=0.05), checkpoint=ck, verbose=False)
    history = t.fit((X, y), epochs=4, eval_fn=lambda m: {"score": values[t.epoch]})
    resumed = Trainer(Linear(), SGD(lr=0.05), verbose=False).fit(
        (X, y), epochs=4, eval_fn=lambda m: {}, resume_from=ck)
    assert np.isnan(resumed["score"][0]) and resumed["score"][1:] == values[1:]
    assert resumed["epoch"] == history["epoch"] and resumed["loss"] == history["loss"]


def test_a_refused_resume_leaves_the_trainer_model_and_optimizer_as_they_were(tmp_path):
    """A missing checkpoint with a new corpus kept the new corpus's batcher
    (at position 0); a checkpoint of the same model whose trainer state is
    unusable had already overwritten the weights and the optimizer's state."""
    from rnnfast import models
    corpus = np.random.default_rng(3).integers(0, 9, 200)

    def make():
        return models.RnnLM(9, hidden_size=6, random_state=1)
    model, opt = make(), Adam(lr=0.01)
    t = Trainer(model, opt, verbose=False)
    t.fit(corpus, epochs=1, batch_size=3, time_size=5, max_batches=2)
    other = make()
    rio.save_checkpoint(tmp_path / "bad.npz", other, Adam(lr=0.5), state={"epoch": 7})
    batcher, position = t.batcher, t.batcher.position
    weights = [p.copy() for p in model.params]
    moments = [a.copy() for s in opt.state for a in s]
    for path, error in ((tmp_path / "missing.npz", FileNotFoundError),
                        (tmp_path / "bad.npz", ValueError)):
        for train in (corpus[::-1].copy(), corpus):
            with pytest.raises(error, match="^path: "):
                t.fit(train, epochs=3, batch_size=3, time_size=5, resume_from=path)
            assert t.batcher is batcher and t.batcher.position == position
            assert t.epoch == 1 and opt.lr == 0.01 and opt.t == 2
            assert all(np.array_equal(p, w) for p, w in zip(model.params, weights))
            assert all(np.array_equal(a, b) for a, b in
                       zip([a for s in opt.state for a in s], moments))


def test_minibatches_with_lengths_reach_the_model():
    from rnnfast import models
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 6, 2)).astype(np.float32)
    lengths = rng.integers(1, 7, 60)
    y = (X[np.arange(60), lengths - 1, 0] > 0).astype(int)   # sign of the last real step
    m = models.SequenceClassifier(2, input_size=2, hidden_size=8, random_state=0)
    seen = []
    forward = m.forward

    def spy(xb, yb, lengths=None):
        seen.append(lengths)
        return forward(xb, yb, lengths=lengths)
    m.forward = spy
    h = Trainer(m, Adam(lr=0.05), random_state=0, verbose=False).fit(
        (X, y, lengths), epochs=15, batch_size=20)
    assert all(s is not None and s.shape == (20,) for s in seen)
    assert h["loss"][-1] < 0.5 * h["loss"][0]


def test_an_epoch_without_a_metric_is_a_normal_epoch():
    X, y = regression()
    buf = io.StringIO()
    t = Trainer(Linear(), SGD(lr=0.1), random_state=0, verbose=True, stream=buf)
    h = t.fit((X, y), epochs=2, batch_size=16, eval_fn=lambda m: {}, restore_best=True)
    assert h["epoch"] == [1, 2] and "epoch 2/2" in buf.getvalue()
    assert set(h) == {"epoch", "loss", "grad_norm", "lr", "seconds", "tokens_per_sec"}
    # a metric some epochs only: None where it is missing, one item per epoch
    # everywhere; the best epoch is chosen among the epochs that have one
    values = iter([{}, {"score": 2.0}, {}, {"score": 1.0}, {"score": 3.0}])
    snapshots = []

    def eval_fn(model):
        snapshots.append([p.copy() for p in model.params])
        return next(values)
    m = Linear()
    h = Trainer(m, SGD(lr=0.05), random_state=0, verbose=False).fit(
        (X, y), epochs=5, batch_size=16, eval_fn=eval_fn, restore_best=True)
    assert h["score"] == [None, 2.0, None, 1.0, 3.0]
    assert all(len(v) == 5 for v in h.values())
    for p, best in zip(m.params, snapshots[3]):
        np.testing.assert_array_equal(p, best)


def test_early_stopping_needs_a_metric_from_eval_fn():
    X, y = regression()
    for monitor in (None, "score"):
        t = Trainer(Linear(), SGD(lr=0.1), verbose=False)
        with pytest.raises(ValueError, match="eval_fn.*epoch 1.*patience"):
            t.fit((X, y), epochs=3, batch_size=16, eval_fn=lambda m: {}, patience=2,
                  monitor=monitor)
    # a misspelt monitor is still named as such
    t = Trainer(Linear(), SGD(lr=0.1), verbose=False)
    with pytest.raises(ValueError, match="monitor: 'scor'"):
        t.fit((X, y), epochs=1, batch_size=16, eval_fn=lambda m: {"score": 1.0},
              monitor="scor")


def test_restore_best_after_resume_gives_the_uninterrupted_weights(tmp_path):
    X, y = regression()
    values = [1.0, 5.0, 6.0, 7.0]                      # epoch 1 is the best

    def run(epochs, ckpt=None, resume=None):
        m = Linear()
        t = Trainer(m, SGD(lr=0.05), checkpoint=ckpt, random_state=0, verbose=False)
        t.fit((X, y), epochs=epochs, batch_size=16, eval_fn=lambda _: values[t.epoch],
              restore_best=True, resume_from=resume)
        return m
    full = run(4)
    ck = tmp_path / "ck.npz"
    run(2, ckpt=ck)                                    # the best epoch is in the checkpoint
    resumed = run(4, ckpt=tmp_path / "ck2.npz", resume=ck)
    for p, q in zip(full.params, resumed.params):
        assert p.tobytes() == q.tobytes()
    # a checkpoint written before the best weights were saved still resumes
    ckpt = rio.load_checkpoint(ck)
    state = {k: v for k, v in ckpt["state"].items() if k != "has_best_params"}
    assert len(ckpt["extra_arrays"]) == len(full.params)     # the best weights, as arrays
    old = tmp_path / "old.npz"
    rio.save_checkpoint(old, ckpt["model"], SGD(lr=0.05), state=state)
    h = Trainer(Linear(), SGD(lr=0.05), verbose=False).fit(
        (X, y), epochs=3, batch_size=16, eval_fn=lambda _: 2.0, restore_best=True,
        resume_from=old)
    assert h["epoch"] == [1, 2, 3]


def test_a_new_corpus_is_never_mistaken_for_the_last_one():
    m = RecordingLM()
    t = Trainer(m, SGD(lr=0.1), verbose=False)
    corpus = np.array([1, 2] * 50, np.int32)           # copied by the batcher (not int64)
    t.fit(corpus, epochs=1, batch_size=2, time_size=5)
    corpus[:] = np.array([7, 8] * 50)                  # same object, same size, new ids
    t.fit(corpus, epochs=2, batch_size=2, time_size=5)
    assert set(np.unique(m.events[-1][0])) == {7, 8}
    a = np.array([1, 2] * 50, np.int32)
    t.fit(a, epochs=3, batch_size=2, time_size=5)
    del a                                              # its id() may be reused by b
    b = np.array([3, 4] * 50, np.int32)
    t.fit(b, epochs=4, batch_size=2, time_size=5)
    assert set(np.unique(m.events[-1][0])) == {3, 4}
    # the same ids again (even as another array): the stream continues
    position = t.batcher.position
    t.fit(b.copy(), epochs=5, batch_size=2, time_size=5)
    assert t.batcher.position == (position + 5 * len(t.batcher)) % t.batcher.data_size


@pytest.mark.parametrize("first", [float("inf"), float("nan")])
def test_plateau_schedule_with_a_non_finite_best_checkpoints_and_resumes(tmp_path, first):
    X, y = regression()

    def run(epochs, ckpt, resume=None):
        opt = SGD(lr=0.01)
        vals = [first, 3.0, 2.0, 2.5]
        t = Trainer(Linear(), opt, lr_schedule=ReduceOnPlateau(opt, factor=0.5),
                    checkpoint=ckpt, verbose=False)
        h = t.fit((X, y), epochs=epochs, batch_size=64, eval_fn=lambda _: vals[t.epoch],
                  resume_from=resume)
        return h, opt
    full, full_opt = run(4, tmp_path / "full.npz")
    ck = tmp_path / "ck.npz"
    run(1, ck)                                         # the schedule's best is non-finite
    resumed, resumed_opt = run(4, tmp_path / "ck2.npz", resume=ck)
    assert resumed["lr"] == full["lr"] and resumed_opt.lr == full_opt.lr


@pytest.mark.parametrize("bad", [-0.5, 0.0, float("nan"), float("inf"), "0.1", None])
def test_an_lr_schedule_returning_a_bad_lr_is_refused_before_the_epoch(bad):
    X, y = regression()
    m = Linear()
    t = Trainer(m, SGD(lr=0.1), lr_schedule=lambda e: 0.1 if e == 1 else bad,
                verbose=False)
    with pytest.raises(ValueError, match=r"lr_schedule: .*epoch 2.*" + re.escape(repr(bad))):
        t.fit((X, y), epochs=3, batch_size=16)
    assert m.calls == 4                                # no batch of epoch 2 ran
    assert t.optimizer.lr == 0.1 and np.isfinite(m.params[0]).all()


def test_max_batches_draws_exactly_that_many_batches():
    corpus = np.arange(201) % 10
    m = RecordingLM()
    t = Trainer(m, SGD(lr=0.1), verbose=False)
    t.fit(corpus, epochs=2, batch_size=2, time_size=5, max_batches=2)
    oracle = StreamBatcher(corpus, 2, 5)
    batches = [e for e in m.events if e != "reset"]
    assert len(batches) == 4 and t.batcher.position == 20
    for got in batches:
        np.testing.assert_array_equal(got[0], oracle.next_batch()[0])
    # minibatches: k batches an epoch, and the shuffle is unchanged by the cut
    X, y = regression()
    t = Trainer(Linear(), SGD(lr=0.1), random_state=3, verbose=False)
    t.fit((X, y), epochs=2, batch_size=16, max_batches=2)
    assert t.model.calls == 4
    rng = np.random.default_rng(3)
    rng.permutation(64), rng.permutation(64)
    assert t.rng.bit_generator.state == rng.bit_generator.state


def test_argument_checks_name_the_argument():
    assert Trainer(Linear(), SGD(lr=0.1), clip_norm=np.float32(1.5)).clip_norm == 1.5
    assert Trainer(Linear(), SGD(lr=0.1), clip_norm=np.int64(2)).clip_norm == 2.0
    for bad in (True, 0, -1.0, float("nan"), "1"):
        with pytest.raises(ValueError, match="clip_norm"):
            Trainer(Linear(), SGD(lr=0.1), clip_norm=bad)
    X, y = regression()
    for bad in (None, np.array([1.0, 2.0]), "abc", {"score": None}):
        with pytest.raises(TypeError, match="eval_fn: .*epoch 1"):
            Trainer(Linear(), SGD(lr=0.1), verbose=False).fit(
                (X, y), epochs=1, batch_size=16, eval_fn=lambda _: bad)
    h = Trainer(Linear(), SGD(lr=0.1), verbose=False).fit(
        (X, y), epochs=1, batch_size=16, eval_fn=lambda _: {"a": np.float32(2), "b": 3})
    assert h["a"] == [2.0] and h["b"] == [3.0]
    with pytest.raises(TypeError, match="random_state"):
        Trainer(Linear(), SGD(lr=0.1), random_state="a")


def test_resume_called_alone_refuses_an_unusable_checkpoint_changing_nothing(tmp_path):
    X, y = regression()
    model, opt = Linear(), Adam(lr=0.01)
    t = Trainer(model, opt, verbose=False)
    t.fit((X, y), epochs=2, batch_size=16)
    rio.save_checkpoint(tmp_path / "bad.npz", Linear(), Adam(lr=0.5), state={"epoch": 9})
    weights, moments = [p.copy() for p in model.params], [a.copy() for s in opt.state for a in s]
    with pytest.raises(ValueError, match="holds no usable trainer state"):
        t.resume(tmp_path / "bad.npz")
    assert t.epoch == 2 and opt.lr == 0.01 and len(t.history["epoch"]) == 2
    assert all(np.array_equal(p, w) for p, w in zip(model.params, weights))
    assert all(np.array_equal(a, b) for a, b in zip([a for s in opt.state for a in s], moments))


def _tiny_lm(cell="lstm", seed=4):
    from rnnfast import models
    return models.RnnLM(12, hidden_size=8, num_layers=2, cell=cell, random_state=seed)


def _by_hand(model, corpus, epochs, reset, N=4, T=6, lr=0.5):
    """The textbook's loop: losses of every batch, the state reset at each
    epoch's start or carried on (DLFS2's RnnlmTrainer)."""
    batcher, losses = StreamBatcher(corpus, N, T), []
    opt = SGD(lr=lr)
    for _ in range(epochs):
        if reset:
            model.reset_state()
        for xs, ts in batcher:
            losses.append(model.forward(xs, ts))
            model.backward()
            opt.update(model.params, model.grads)
    return losses


@pytest.mark.parametrize("carry", [False, True])
def test_carry_state_carries_the_state_into_the_next_epoch(carry):
    """carry_state=True is the textbook loop that never resets; the default
    resets at each epoch's start.  An eval_fn that runs the model (and so
    moves its state) changes neither."""
    corpus = np.random.default_rng(2).integers(0, 12, 400)
    want = _by_hand(_tiny_lm(), corpus, 3, reset=not carry)
    other = _by_hand(_tiny_lm(), corpus, 3, reset=carry)
    per_epoch = len(StreamBatcher(corpus, 4, 6))
    assert want[per_epoch] != other[per_epoch]        # the two differ from epoch 2 on
    model = _tiny_lm()
    probe = np.random.default_rng(3).integers(0, 12, (4, 6))
    h = Trainer(model, SGD(lr=0.5), carry_state=carry, verbose=False).fit(
        corpus, epochs=3, batch_size=4, time_size=6,
        eval_fn=lambda m: float(m.forward(probe, probe)))
    np.testing.assert_allclose(h["loss"], [np.mean(want[i:i + per_epoch])
                                           for i in range(0, 3 * per_epoch, per_epoch)],
                               rtol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_resume_with_carry_state_continues_exactly(tmp_path, cell):
    """The checkpoint keeps the carried state (h, and c for an LSTM), so a
    resumed run ends bit for bit where the uninterrupted one ends."""
    corpus = np.random.default_rng(1).integers(0, 12, 400)
    fit = dict(batch_size=4, time_size=6)
    full = _tiny_lm(cell)
    Trainer(full, Adam(lr=0.01), carry_state=True, verbose=False).fit(corpus, epochs=3, **fit)
    ck = tmp_path / "lm.npz"
    part = _tiny_lm(cell)
    Trainer(part, Adam(lr=0.01), carry_state=True, checkpoint=ck, verbose=False).fit(
        corpus, epochs=2, **fit)
    assert len(rio.load_checkpoint(ck)["extra_arrays"]) == (2 if cell == "lstm" else 1)
    resumed = _tiny_lm(cell)
    Trainer(resumed, Adam(lr=0.01), carry_state=True, verbose=False).fit(
        corpus, epochs=3, resume_from=ck, **fit)
    for p, q in zip(full.params, resumed.params):
        assert p.tobytes() == q.tobytes()
    # a run that resets each epoch cannot take it, nor another batch size:
    # refused by name, nothing changed
    for kwargs, message in [(dict(carry_state=False), "carry_state=True"),
                            (dict(carry_state=True), "of 4 streams; this fit reads 5")]:
        other = _tiny_lm(cell)
        before = [p.copy() for p in other.params]
        with pytest.raises(ValueError, match=message):
            Trainer(other, Adam(lr=0.01), verbose=False, **kwargs).fit(
                corpus, epochs=3, batch_size=5, time_size=6, resume_from=ck)
        assert all((p == q).all() for p, q in zip(other.params, before))


def test_carry_state_refusals_name_it(tmp_path):
    with pytest.raises(TypeError, match="carry_state: expected True or False, got 'yes'"):
        Trainer(Linear(), SGD(lr=0.1), carry_state="yes")
    with pytest.raises(ValueError, match=r"carry_state: only a language model's stream .* "
                                         r"got \(X, Y\) minibatches"):
        Trainer(Linear(), SGD(lr=0.1), carry_state=True, verbose=False).fit(
            regression(), epochs=1, batch_size=16)
    with pytest.raises(ValueError, match="carry_state: a checkpoint must keep the carried "
                                         "state, and RecordingLM has no rnnfast network"):
        Trainer(RecordingLM(), SGD(lr=0.1), carry_state=True, checkpoint=tmp_path / "c.npz")
    # without a checkpoint any model may carry its own state: no reset
    m = RecordingLM()
    Trainer(m, SGD(lr=0.1), carry_state=True, verbose=False).fit(
        np.arange(200) % 37, epochs=2, batch_size=4, time_size=5)
    assert "reset" not in m.events


def test_a_checkpoints_carried_state_that_cannot_be_the_networks_is_refused():
    """What a damaged checkpoint's carried-state arrays are checked for
    (a resume turns the ValueError into one naming the path)."""
    from rnnfast.trainer import _checked_carried
    lstm, gru = _tiny_lm("lstm"), _tiny_lm("gru")          # 2 layers of 8, float32
    h = np.zeros((2, 4, 8), np.float32)
    assert _checked_carried(lstm, []) is None
    assert _checked_carried(gru, [h]) is h
    assert all(a is b for a, b in zip(_checked_carried(lstm, [h, h + 1]), (h,)))
    for model, arrays, message in [
            (lstm, [h], "has 1 arrays; a lstm network's has 2"),
            (gru, [h, h], "has 2 arrays; a gru network's has 1"),
            (gru, [np.zeros((1, 4, 8), np.float32)], r"h has shape \(1, 4, 8\) and dtype "
                                                     r"float32; the network's is \(2, N, 8\)"),
            (gru, [np.zeros((2, 4, 8))], "dtype float64; the network's is .* of float32"),
            (lstm, [h, np.zeros((2, 3, 8), np.float32)], "batch sizes 4 and 3"),
            (RecordingLM(), [h], "the model has no rnnfast network")]:
        with pytest.raises(ValueError, match=message):
            _checked_carried(model, arrays)
