"""rnnfast.sklearn: input kinds, the MLP contract, raw text, model
selection and persistence.  scikit-learn's estimator checks are in
test_sklearn_checks.py, Dask in test_sklearn_dask.py, the documented
examples and the real data sets (digits, sunspots) in test_sklearn_docs.py."""
import inspect
import io
import pickle
import re
import warnings

import joblib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import threadpool_limits

from rnnfast.sklearn import RNNClassifier, RNNRegressor, TextTokenizer


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # Small models on shared cores: a second BLAS thread only adds waiting.
    with threadpool_limits(1):
        yield


def ragged_last_step(n=200, seed=0, F=2):
    """Sequences of 3..15 steps whose class is the sign of the *last* step's
    first feature: truncating or misreading the padding loses it."""
    rng = np.random.default_rng(seed)
    X = [rng.standard_normal((rng.integers(3, 16), F)) for _ in range(n)]
    y = np.array([int(x[-1, 0] > 0) for x in X])
    return X, y


def fixed_last_step(n=200, T=6, F=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T, F))
    return X, (X[:, -1, 0] > 0).astype(int)


def toy_reviews(n=200, seed=0):
    """Short 'reviews': filler words and one sentiment word that decides."""
    rng = np.random.default_rng(seed)
    pos, neg = ["good", "great", "fine", "nice"], ["bad", "awful", "poor", "sad"]
    filler = ["the", "a", "movie", "was", "plot", "and", "very", "actors"]
    docs, labels = [], []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(filler, rng.integers(2, 8)))
        words.append(str(rng.choice(pos if label else neg)))
        rng.shuffle(words)
        docs.append(" ".join(words))
        labels.append(["neg", "pos"][label])
    return docs, np.array(labels)


# ------------------------------------------------------------------ input kinds
def test_3d_array():
    X, y = fixed_last_step()
    clf = RNNClassifier(random_state=0).fit(X, y)
    assert clf.n_features_in_ == 2
    assert clf.predict(X).shape == (200,)
    assert clf.score(X, y) > 0.9
    # a 3-D array may have another number of steps at predict time
    assert clf.predict(X[:, :4]).shape == (200,)
    with pytest.raises(ValueError, match="X has 3 features a step, but RNNClassifier "
                                         "is expecting 2"):
        clf.predict(np.zeros((5, 6, 3)))


def test_2d_array_is_one_feature_a_step():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((120, 7))
    y = (X[:, -1] > 0).astype(int)
    a = RNNClassifier(random_state=3, max_iter=20).fit(X, y)
    b = RNNClassifier(random_state=3, max_iter=20).fit(X[:, :, None], y)
    assert a.n_features_in_ == 7          # scikit-learn's tabular meaning: columns
    assert b.n_features_in_ == 1          # features a step
    assert a.model_.network.input_size == b.model_.network.input_size == 1
    assert_allclose(a.predict_proba(X), b.predict_proba(X[:, :, None]), rtol=1e-6)
    with pytest.raises(ValueError, match="X has 5 features, but RNNClassifier is "
                                         "expecting 7 features"):
        a.predict(X[:, :5])


def test_ragged_list_is_padded_never_truncated():
    X, y = ragged_last_step()
    clf = RNNClassifier(random_state=0).fit(X, y)
    assert clf.n_features_in_ == 2
    assert clf.score(X, y) > 0.9
    # padding is invisible: each sequence alone gives the same probabilities
    batch = clf.predict_proba(X[:20])
    alone = np.vstack([clf.predict_proba([x]) for x in X[:20]])
    assert_allclose(batch, alone, rtol=1e-5, atol=1e-6)
    # and so does the same sequence with extra padded neighbours
    longer = [X[0], np.zeros((40, 2))]
    assert_allclose(clf.predict_proba(longer)[0], batch[0], rtol=1e-5, atol=1e-6)


def test_ragged_univariate_list():
    rng = np.random.default_rng(2)
    X = [rng.standard_normal(rng.integers(2, 9)) for _ in range(80)]    # (n_steps_i,)
    y = np.array([x[-1] for x in X])
    reg = RNNRegressor(random_state=0, max_iter=50).fit(X, y)
    assert reg.n_features_in_ == 1
    assert reg.predict(X).shape == (80,)
    # fitted on sequences, a 2-D array is one feature a step
    assert reg.predict(np.zeros((3, 4))).shape == (3,)


def test_token_sequences_use_an_embedding():
    rng = np.random.default_rng(3)
    X = [rng.integers(0, 10, rng.integers(2, 12)) for _ in range(150)]
    y = np.array([int(x[-1] >= 5) for x in X])
    clf = RNNClassifier(random_state=0, embedding_size=8).fit(X, y)
    assert clf.vocab_size_ == 10
    assert clf.model_.embed is not None
    assert clf.model_.embed.params[0].shape == (10, 8)
    assert clf.score(X, y) > 0.9
    # fitted on tokens, a 2-D integer array is token ids too
    assert clf.predict(np.array([[1, 2, 9], [3, 4, 0]])).shape == (2,)
    with pytest.raises(ValueError, match="token ids must lie in 0..9"):
        clf.predict([np.array([1, 12])])
    with pytest.raises(ValueError, match="fitted on token ids, got float sequences"):
        clf.predict([np.array([0.5, 1.5])])


def test_bad_inputs_are_refused_with_names():
    X, y = ragged_last_step(20)
    with pytest.raises(ValueError, match=r"X\[1\]: a sequence needs at least one step"):
        RNNClassifier().fit([X[0], np.zeros((0, 2))], y[:2])
    with pytest.raises(ValueError, match=r"X\[1\]: expected 2 features a step"):
        RNNClassifier().fit([X[0], np.zeros((4, 3))], y[:2])
    with pytest.raises(ValueError, match="TextTokenizer"):
        RNNClassifier().fit(["some text", "raw"], [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        RNNClassifier().fit([np.full((3, 2), np.nan), X[1]], y[:2])
    with pytest.raises(ValueError, match="Found array with dim 4"):
        RNNClassifier().fit(np.zeros((4, 2, 2, 2)), [0, 1, 0, 1])
    with pytest.raises(NotFittedError):
        RNNRegressor().predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="cell"):
        RNNClassifier(cell="transformer").fit(X, y)
    clf = RNNClassifier(max_iter=2).fit(X, y)
    with pytest.raises(ValueError, match="fitted on float sequences, got token ids"):
        clf.predict([np.array([1, 2])])
    # a 3-D array of 0 steps: was refused by the model, after a new one had
    # replaced the fitted one, as "lengths: each length must lie in 1..T=0"
    proba = clf.predict_proba(X)
    with pytest.raises(ValueError, match=r"X: a sequence needs at least one step, got "
                                         r"shape \(20, 0, 2\)"):
        clf.fit(np.zeros((20, 0, 2)), y)
    assert_array_equal(clf.predict_proba(X), proba)
    with pytest.raises(ValueError, match=r"Input X contains infinity or a value too large "
                                         r"for dtype\('float32'\)"):
        clf.predict(np.full((2, 3, 2), 1e39))


# --------------------------------------------------------------- MLP contract
def test_same_random_state_same_predictions():
    X, y = ragged_last_step(120)
    p1 = RNNClassifier(random_state=7, dropout=0.2, num_layers=2).fit(X, y).predict_proba(X)
    p2 = RNNClassifier(random_state=7, dropout=0.2, num_layers=2).fit(X, y).predict_proba(X)
    p3 = RNNClassifier(random_state=8, dropout=0.2, num_layers=2).fit(X, y).predict_proba(X)
    assert_array_equal(p1, p2)
    assert not np.array_equal(p1, p3)


def test_learned_attributes_and_convergence_warning():
    X, y = fixed_last_step(100)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\)"):
        clf = RNNClassifier(max_iter=3, random_state=0).fit(X, y)
    assert clf.n_iter_ == 3 and len(clf.loss_curve_) == 3
    assert clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None
    assert clf.t_ == 300
    assert_array_equal(clf.classes_, [0, 1])
    # stopping on the training loss: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = RNNClassifier(max_iter=500, tol=1.0, n_iter_no_change=2).fit(X, y)
    assert clf.n_iter_ == 4      # MLP's rule: more than n_iter_no_change epochs


def test_early_stopping_keeps_the_best_validation_weights():
    X, y = fixed_last_step(200)
    clf = RNNClassifier(early_stopping=True, n_iter_no_change=3, max_iter=60,
                        random_state=0).fit(X, y)
    assert clf.best_loss_ is None
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        RNNClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1])


def test_partial_fit_needs_classes_first():
    X, y = fixed_last_step(120)
    clf = RNNClassifier(random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X, y)
    for _ in range(3):
        clf.partial_fit(X[:60], y[:60], classes=np.array([0, 1, 2]))
        clf.partial_fit(X[60:], y[60:])
    assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.n_iter_ == 6 and len(clf.loss_curve_) == 6 and clf.t_ == 360
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.predict_proba(X).shape == (120, 3)
    with pytest.raises(ValueError, match="not in `self.classes_`"):
        clf.partial_fit(X[:4], [0, 1, 3, 0])
    with pytest.raises(ValueError, match="features a step"):
        clf.partial_fit(X[:, :, :1], y)
    reg = RNNRegressor(random_state=0)
    for _ in range(3):
        reg.partial_fit(X, X[:, -1, 0])
    assert reg.n_iter_ == 3 and reg.t_ == 360


def test_warm_start_continues():
    X, y = fixed_last_step(100)
    clf = RNNClassifier(max_iter=4, warm_start=True, random_state=0)
    with pytest.warns(ConvergenceWarning):
        clf.fit(X, y)
    first = [p.copy() for p in clf.model_.params]
    model = clf.model_
    with pytest.warns(ConvergenceWarning):
        clf.fit(X, y)
    assert clf.model_ is model and len(clf.loss_curve_) == 8
    assert any(not np.array_equal(a, b) for a, b in zip(first, clf.model_.params))
    with pytest.raises(ValueError, match="warm_start can only be used where `y` has the "
                                         "same classes"):
        clf.fit(X, np.where(y == 1, 2, y))


def test_regressor_standardises_targets_and_multioutput():
    X, _ = fixed_last_step(150)
    Y = np.column_stack([1000 + 300 * X[:, -1, 0], -0.01 * X[:, -2, 1]])
    reg = RNNRegressor(random_state=0).fit(X, Y)
    assert reg.n_outputs_ == 2
    pred = reg.predict(X)
    assert pred.shape == (150, 2) and pred.dtype == np.float64
    assert reg.score(X, Y) > 0.8
    assert abs(pred[:, 0].mean() - 1000) < 30


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_constant_target_is_not_standardised_into_noise():
    """Found by tests/fuzz_estimators.py: a constant output's weighted mean
    is not exactly the constant, so its standard deviation came out as
    rounding (~1e-15) instead of 0, and dividing by it made the output's
    standardised targets rounding noise of order 1, which the network then
    fitted (other noise for y in another memory layout).  Now such an output
    keeps scale 1 and targets ~0 (StandardScaler's rule): y in C or Fortran
    order fits the same."""
    X, _ = fixed_last_step(60, T=3)
    rng = np.random.default_rng(1)
    Y = np.column_stack([X[:, -1, 0], np.full(60, 7.1)])
    w = rng.uniform(0.5, 2.0, 60)
    common = dict(hidden_size=4, max_iter=3, shuffle=False, dtype=np.float64, random_state=0)
    a = RNNRegressor(**common).fit(X, Y, sample_weight=w)
    b = RNNRegressor(**common).fit(X, np.asfortranarray(Y), sample_weight=w)
    assert_allclose(a.predict(X), b.predict(X), rtol=1e-9)
    assert a.loss_curve_[0] < 1.0      # the constant output adds ~0, not ~1
    # the network learns to give 0 there (as behind a StandardScaler)
    assert np.abs(a.predict(X)[:, 1] - 7.1).max() < 0.1


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_validation_split_of_zero_weights_is_refused_before_training():
    """Found by tests/fuzz_estimators.py: with early stopping, a validation
    split drawn among samples of weight 0 only made scikit-learn's
    accuracy_score / r2_score raise after the first epoch, from inside the
    fit.  Now the split is checked before training, with its own message."""
    X, _ = fixed_last_step(20, T=3)
    y = X[:, -1, 0]
    w = np.zeros(20)
    w[:2] = 1.0
    outcomes = []
    for seed in range(12):
        est = RNNRegressor(hidden_size=3, max_iter=2, early_stopping=True,
                           validation_fraction=0.5, random_state=seed)
        try:
            est.fit(X, y, sample_weight=w)
            outcomes.append("fitted")
        except ValueError as exc:
            assert str(exc).startswith("sample_weight: all 10 samples of the early-stopping "
                                       "validation split"), exc
            assert not hasattr(est, "model_") and not hasattr(est, "n_features_in_")
            outcomes.append("refused")
    assert set(outcomes) == {"fitted", "refused"}, outcomes


def test_solvers_sizes_and_dtype():
    X, y = ragged_last_step(60)
    for kw in (dict(solver="sgd", learning_rate_init=0.1), dict(solver="sgd", momentum=0.0),
               dict(cell="gru", bidirectional=True, num_layers=2, dropout=0.1),
               dict(cell="rnn", dtype=np.float64, batch_size=7, shuffle=False)):
        clf = RNNClassifier(max_iter=5, random_state=0, **kw)
        with pytest.warns(ConvergenceWarning):
            clf.fit(X, y)
        assert np.all(np.isfinite(clf.predict_proba(X)))
    assert clf.model_.dtype == np.float64


def test_adam_hyperparameters_reach_the_optimizer():
    """beta_1, beta_2 and epsilon (MLPClassifier's names) are Adam's: their
    defaults train the very model of before (the same loss curve, bitwise),
    other values another, and each reaches the optimizer."""
    X, y = fixed_last_step(60)
    kw = dict(hidden_size=8, max_iter=4, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        default = RNNClassifier(**kw).fit(X, y)
        explicit = RNNClassifier(beta_1=0.9, beta_2=0.999, epsilon=1e-8, **kw).fit(X, y)
        curves = [RNNClassifier(**{name: value}, **kw).fit(X, y).loss_curve_
                  for name, value in (("beta_1", 0.0), ("beta_2", 0.5), ("epsilon", 0.5))]
    assert explicit.loss_curve_ == default.loss_curve_
    for curve in curves:
        assert curve != default.loss_curve_
    opt = RNNRegressor(beta_1=0.8, beta_2=0.99, epsilon=1e-6)._new_optimizer()
    assert (opt.beta1, opt.beta2, opt.eps) == (0.8, 0.99, 1e-6)
    assert RNNClassifier().get_params()["epsilon"] == 1e-8


def _learning_rates_of_each_step(monkeypatch, est, X, y):
    """est fitted, with the learning rate of each optimizer step recorded."""
    from rnnfast import optim
    seen = []

    def update(self, params, grads, _update=optim.Optimizer.update):
        seen.append(self.lr)
        return _update(self, params, grads)
    monkeypatch.setattr(optim.Optimizer, "update", update)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    return seen


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_invscaling_sets_the_learning_rate_after_each_epoch_as_mlp_does(monkeypatch,
                                                                         momentum):
    """learning_rate='invscaling' (solver='sgd'): each epoch after the first
    steps at learning_rate_init / (t_ + 1) ** power_t, t_ the samples seen
    before it; the last rate is MLPRegressor's own after as many epochs of
    as many samples (its optimizer, scikit-learn's code, as the oracle)."""
    from sklearn.neural_network import MLPRegressor
    X, y = fixed_last_step(30)
    kw = dict(solver="sgd", learning_rate="invscaling", power_t=0.3, learning_rate_init=0.05,
              momentum=momentum, batch_size=10, max_iter=4, shuffle=False)
    est = RNNClassifier(hidden_size=4, random_state=0, **kw)
    seen = _learning_rates_of_each_step(monkeypatch, est, X, y)
    expected = [0.05 / (t + 1) ** 0.3 if t else 0.05 for t in (0, 30, 60, 90)]
    assert seen == [rate for rate in expected for _ in range(3)]       # 3 batches an epoch
    assert est.t_ == 120
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPRegressor(hidden_layer_sizes=(3,), random_state=0, **kw).fit(
            X[:, -1, :], y.astype(float))
    assert mlp.t_ == est.t_ and est._optimizer.lr == pytest.approx(
        mlp._optimizer.learning_rate, rel=1e-15)


def test_adaptive_divides_the_learning_rate_by_5_and_stops_below_1e_6_as_mlp_does(
        monkeypatch, capsys):
    """learning_rate='adaptive' (solver='sgd'): each time the stopping rule
    fires the rate is divided by 5 and training goes on, until it is at
    most 1e-6; then the fit stops.  With tol=1e6 no epoch after the first
    improves, so the rule fires every second epoch: MLPRegressor (the
    oracle) stops after as many epochs at the same rate."""
    from sklearn.neural_network import MLPRegressor
    X, y = fixed_last_step(20)
    kw = dict(solver="sgd", learning_rate="adaptive", learning_rate_init=1e-4, tol=1e6,
              n_iter_no_change=1, batch_size=20, max_iter=50, shuffle=False, verbose=True)
    est = RNNClassifier(hidden_size=4, random_state=0, **kw)
    seen = _learning_rates_of_each_step(monkeypatch, est, X, y)
    out = capsys.readouterr().out
    # 1e-4, /5 after epochs 3, 5, 7: 2e-5, 4e-6, 8e-7 <= 1e-6, so epoch 9 stops it
    rates = [1e-4] * 3 + [2e-5] * 2 + [4e-6] * 2 + [8e-7] * 2
    assert seen == pytest.approx(rates, rel=1e-15) and est.n_iter_ == 9
    assert out.count("Setting learning rate to") == 3
    assert "Learning rate too small. Stopping." in out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPRegressor(hidden_layer_sizes=(3,), random_state=0, **dict(kw, verbose=False)
                           ).fit(X[:, -1, :], y.astype(float))
    assert mlp.n_iter_ == est.n_iter_
    assert est._optimizer.lr == pytest.approx(mlp._optimizer.learning_rate, rel=1e-15)


@pytest.mark.parametrize("learning_rate", ["invscaling", "adaptive"])
def test_adam_ignores_the_learning_rate_schedule_as_mlp_does(learning_rate):
    """The schedules are SGD's: with solver='adam' a fit trains bitwise the
    model of learning_rate='constant' (and the stopping rule stops it)."""
    X, y = fixed_last_step(30)
    kw = dict(hidden_size=4, max_iter=6, random_state=0, tol=1e6, n_iter_no_change=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        constant = RNNClassifier(**kw).fit(X, y)
        scheduled = RNNClassifier(learning_rate=learning_rate, power_t=0.9, **kw).fit(X, y)
    assert scheduled.loss_curve_ == constant.loss_curve_ and constant.n_iter_ == 3
    for a, b in zip(scheduled.model_.params, constant.model_.params):
        assert_array_equal(a, b)


def test_an_estimator_pickled_before_the_adam_hyperparameters_loads():
    """A fitted estimator pickled before beta_1, beta_2 and epsilon existed
    (simulated: the attributes removed before pickling) loads with their
    defaults, predicts as before and fits again."""
    X, y = fixed_last_step(40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = RNNClassifier(hidden_size=8, max_iter=2, random_state=0).fit(X, y)
    expected = clf.predict_proba(X)
    for name in ("beta_1", "beta_2", "epsilon", "learning_rate", "power_t"):
        delattr(clf, name)
    old = pickle.loads(pickle.dumps(clf))
    assert (old.beta_1, old.beta_2, old.epsilon) == (0.9, 0.999, 1e-8)
    assert (old.learning_rate, old.power_t) == ("constant", 0.5)
    assert_array_equal(old.predict_proba(X), expected)
    assert clone(old).get_params() == RNNClassifier(hidden_size=8, max_iter=2,
                                                    random_state=0).get_params()
    # the defaults a loaded old pickle gets are __init__'s
    signature = inspect.signature(RNNClassifier.__init__)
    for name, default in RNNClassifier._ADDED_DEFAULTS.items():
        assert signature.parameters[name].default == default, name


def test_non_finite_weights_are_reported():
    X, y = fixed_last_step(40)
    reg = RNNRegressor(solver="sgd", learning_rate_init=1e30, momentum=0.0,
                       clip_norm=None, max_iter=3)
    with pytest.raises(ValueError, match="non-finite parameter weights"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            reg.fit(X, y * 1.0)


def test_verbose_reports_each_iteration(capsys):
    X, y = fixed_last_step(40)
    with pytest.warns(ConvergenceWarning):
        RNNClassifier(max_iter=2, verbose=True).fit(X, y)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Iteration 2, loss = " in out


# ------------------------------------------------------------------- text
def test_text_tokenizer_char_and_word():
    docs = ["Good movie", "bad movie!", "good good"]
    tok = TextTokenizer(level="word").fit(docs)
    assert tok.vocabulary_ == {"good": 2, "movie": 3, "bad": 4}
    assert tok.vocab_size_ == 5
    out = tok.transform(["a GOOD film", "", "movie"])
    assert [o.tolist() for o in out] == [[1, 2, 1], [1], [3]]      # 1: unknown
    assert all(o.dtype == np.int64 for o in out)
    small = TextTokenizer(level="word", max_features=1).fit(docs)
    assert small.vocabulary_ == {"good": 2}
    rare = TextTokenizer(level="word", min_frequency=2).fit(docs)
    assert set(rare.vocabulary_) == {"good", "movie"}
    chars = TextTokenizer(lowercase=False).fit(["ab", "ba c"])
    assert chars.transform(["abz"])[0].tolist() == [chars.vocabulary_["a"],
                                                    chars.vocabulary_["b"], 1]
    with pytest.raises(ValueError, match="string object received"):
        tok.transform("one string")
    with pytest.raises(TypeError, match=r"X\[1\]: expected a string"):
        tok.transform(["ok", 3])
    with pytest.raises(NotFittedError):
        TextTokenizer().transform(["x"])


@pytest.mark.parametrize("level", ["char", "word"])
def test_pipeline_trains_on_raw_text(level):
    docs, labels = toy_reviews()
    pipe = make_pipeline(TextTokenizer(level=level), RNNClassifier(random_state=0))
    scores = cross_val_score(pipe, docs, labels, cv=3)
    assert scores.mean() > 0.9
    pipe.fit(docs, labels)
    assert_array_equal(pipe.predict(["a great movie", "the plot was awful"]),
                       ["pos", "neg"])


# ------------------------------------------------- model selection, persistence
def test_cross_val_and_grid_search_index_ragged_and_3d():
    X, y = ragged_last_step(150)
    scores = cross_val_score(RNNClassifier(random_state=0, max_iter=50), X, y, cv=3)
    assert scores.mean() > 0.8
    X3, y3 = fixed_last_step(150)
    gs = GridSearchCV(RNNClassifier(random_state=0, max_iter=30),
                      {"cell": ["gru", "lstm"]}, cv=3).fit(X3, y3)
    assert gs.best_score_ > 0.8
    gs = GridSearchCV(RNNRegressor(random_state=0, max_iter=20),
                      {"hidden_size": [4, 8]}, cv=2).fit(X, np.array([x[-1, 0] for x in X]))
    assert gs.best_estimator_.predict(X).shape == (150,)


def test_pipeline_gridsearch_clone_pickle_joblib():
    X, y = fixed_last_step(160, T=5, F=3)
    flat = X.reshape(160, -1)                   # a tabular source, reshaped in the pipe
    pipe = make_pipeline(StandardScaler(),
                         FunctionTransformer(np.reshape, kw_args={"shape": (-1, 5, 3)}),
                         RNNClassifier(random_state=0, max_iter=25))
    gs = GridSearchCV(pipe, {"rnnclassifier__hidden_size": [8, 16],
                             "rnnclassifier__cell": ["lstm", "gru"]}, cv=2, n_jobs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gs.fit(flat, y)
    best = gs.best_estimator_
    expected = best.predict_proba(flat)
    assert gs.best_score_ > 0.8
    # pickle and joblib round trips: identical predictions
    assert_array_equal(pickle.loads(pickle.dumps(best)).predict_proba(flat), expected)
    buf = io.BytesIO()
    joblib.dump(best, buf)
    buf.seek(0)
    assert_array_equal(joblib.load(buf).predict_proba(flat), expected)
    # a clone is unfitted and, refitted, gives the very same model
    twin = clone(best)
    with pytest.raises(NotFittedError):
        twin.predict(flat)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        twin.fit(flat, y)
    assert_array_equal(twin.predict_proba(flat), expected)


# The real-data checks (digits CV >= 0.97, sunspots vs persistence) run the
# examples of docs/sklearn.md as written: tests/test_sklearn_docs.py.


def test_token_ids_that_would_wrap_or_exhaust_memory_are_named():
    y = np.array([0, 1] * 5)
    huge = [np.array([1, 2 ** 64 - 1], np.uint64), np.array([2, 3], np.uint64)] * 5
    with pytest.raises(ValueError, match=r"X\[0\]: token ids must be < 2\*\*63"):
        RNNClassifier(max_iter=1, hidden_size=4).fit(huge, y)
    # 2**45 rows of 8-byte floats: more than a 47-bit address space, so the
    # allocation fails whatever the machine's overcommit setting
    stray = [np.array([1, 2 ** 45]), np.array([2, 3])] * 5
    with pytest.raises(MemoryError, match=f"largest token id is {2 ** 45}"):
        RNNClassifier(max_iter=1, hidden_size=4).fit(stray, y)
    # a fitted estimator refitted on them keeps its model and vocabulary
    small = [np.array([1, 2]), np.array([2, 3])] * 5
    fitted = RNNClassifier(max_iter=1, hidden_size=4, random_state=0).fit(small, y)
    proba = fitted.predict_proba(small)
    with pytest.raises(MemoryError):
        fitted.fit(stray, y)
    assert fitted.vocab_size_ == 4
    assert_array_equal(fitted.predict_proba(small), proba)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("first,then", [(False, True), (True, False)])
def test_warm_start_may_turn_early_stopping_on_or_off(first, then):
    X = np.random.default_rng(0).standard_normal((40, 4, 2))
    y = np.arange(40) % 2
    clf = RNNClassifier(max_iter=2, hidden_size=4, warm_start=True, early_stopping=first,
                        random_state=0).fit(X, y)
    clf.set_params(early_stopping=then).fit(X, y)
    assert (clf.validation_scores_ is not None) == then
    assert len(clf.loss_curve_) == 4          # the warm start went on from the first fit


def test_text_tokenizer_refuses_a_pattern_of_several_groups():
    with pytest.raises(ValueError, match="token_pattern: expected at most one capturing group"):
        TextTokenizer(level="word", token_pattern=r"(\w)(\w+)").fit(["ab cd"])
    vocab = TextTokenizer(level="word", token_pattern=r"(\w+)").fit(["ab cd"]).vocabulary_
    assert set(vocab) == {"ab", "cd"}


def test_a_refused_refit_leaves_the_tokenizer_as_it_was():
    """A refit with a new token_pattern that is refused (here for its X)
    must not pair the new pattern with the old vocabulary."""
    tok = TextTokenizer(level="word").fit(["ab cd", "cd ef"])
    before = tok.transform(["ab ef zz"])
    tok.set_params(token_pattern=r"\w")
    with pytest.raises(ValueError, match="string object received"):
        tok.fit("ab cd")
    assert_array_equal(tok.transform(["ab ef zz"])[0], before[0])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_refused_fit_leaves_a_fitted_estimator_as_it_was():
    """The bug tests/fuzz_estimators.py found: a fit refused for its y had
    already set n_features_in_ (and classes_) from its X, and the fitted
    estimator then refused the data it had been fitted on."""
    X, y = fixed_last_step(n=30, T=4, F=2)
    est = RNNClassifier(hidden_size=4, max_iter=2, random_state=0).fit(X, y)
    proba = est.predict_proba(X)
    wider = np.ones((30, 4, 3))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.fit(wider, y[:-1])
    with pytest.raises(ValueError, match="only one class"):
        est.fit(wider, np.zeros(30, int) + 5)
    with pytest.raises(ValueError, match="least populated class"):   # the split's
        est.set_params(early_stopping=True).fit(wider[:4], [0, 0, 0, 1])
    assert est.n_features_in_ == 2 and list(est.classes_) == [0, 1]
    assert_array_equal(est.predict_proba(X), proba)

# ------------------------------------------------------- sample_weight
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore:Got `batch_size` larger")
@pytest.mark.parametrize("cls", [RNNClassifier, RNNRegressor])
def test_integer_sample_weights_are_repeated_samples_on_one_full_batch(cls):
    """With one batch a step and no shuffling (so repeating samples does not
    regroup them), weights 0, 1, 2, 3 train exactly as removing, keeping,
    doubling and tripling the samples: MLPClassifier's semantics (and the
    regressor's target scaling is weighted too)."""
    X, y = fixed_last_step(n=24, T=4)
    if cls is RNNRegressor:
        y = X[:, -1, 0] + 0.5 * X[:, 0, 1]
    w = np.tile([0, 1, 2, 3], 6)
    rep = np.repeat(np.arange(24), w)
    common = dict(hidden_size=6, max_iter=15, batch_size=200, shuffle=False, alpha=1e-3,
                  dtype=np.float64, random_state=0)
    weighted = cls(**common).fit(X, y, sample_weight=w)
    repeated = cls(**common).fit(X[rep], y[rep])
    assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-9)
    get = "predict_proba" if cls is RNNClassifier else "predict"
    assert_allclose(getattr(weighted, get)(X), getattr(repeated, get)(X), rtol=1e-8,
                    atol=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("cls", [RNNClassifier, RNNRegressor])
def test_weights_scaled_by_a_constant_fit_the_same(cls):
    """Without the L2 term (alpha=0) a batch's loss is the weighted mean, so
    weights and the same weights times 0.01 (summing to ~0.2 a batch) fit
    the same model.  The regressor's losses once divided the gradient by
    max(sum of weights, 1): such weights trained it up to 5x slower."""
    X, y = fixed_last_step(n=60, T=4)
    if cls is RNNRegressor:
        y = X[:, -1, 0] + 0.5 * X[:, 0, 1]
    w = np.random.default_rng(0).uniform(0.2, 1.0, 60)
    common = dict(hidden_size=6, max_iter=5, batch_size=32, alpha=0.0, dtype=np.float64,
                  random_state=0)
    a = cls(**common).fit(X, y, sample_weight=w)
    b = cls(**common).fit(X, y, sample_weight=0.01 * w)
    assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-9)
    for p, q in zip(a.model_.params, b.model_.params):
        assert_allclose(p, q, rtol=1e-8, atol=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sample_weight_steers_the_fit_and_reaches_every_path():
    """Weighting one class up moves the predictions its way; partial_fit,
    early stopping (the held-out rows scored with their weights) and
    GridSearchCV's fit parameters take the weights; bad weights are refused
    by name."""
    X, y = fixed_last_step(n=120)
    y = np.where(np.arange(120) % 3 == 0, 1, y)                  # some label noise
    common = dict(hidden_size=8, max_iter=25, random_state=0)
    plain = RNNClassifier(**common).fit(X, y)
    heavy = RNNClassifier(**common).fit(X, y, sample_weight=np.where(y == 1, 20.0, 1.0))
    assert heavy.predict_proba(X)[:, 1].mean() > plain.predict_proba(X)[:, 1].mean() + 0.05
    w = np.linspace(0.5, 2.0, 120)
    inc = RNNClassifier(**common)
    inc.partial_fit(X, y, sample_weight=w, classes=[0, 1])
    inc.partial_fit(X, y, sample_weight=w)
    assert inc.n_iter_ == 2
    with pytest.raises(TypeError):              # classes (or weights) by keyword only
        inc.partial_fit(X, y, w)
    for est, target in ((RNNClassifier(**common, early_stopping=True), y),
                        (RNNRegressor(**common, early_stopping=True), X[:, -1, 0])):
        seen, score = [], est._score_batch

        def weighted_score(batch, y_val, sample_weight, seen=seen, score=score):
            seen.append((batch.data, sample_weight))
            return score(batch, y_val, sample_weight)
        est._score_batch = weighted_score
        est.fit(X, target, sample_weight=w)
        # each epoch scores the held-out rows with their own weights
        assert len(seen) == est.n_iter_ and len(est.validation_scores_) == est.n_iter_
        for data, sample_weight in seen:
            X32 = X.astype(data.dtype)
            rows = [int(np.flatnonzero((X32 == d).all(axis=(1, 2)))[0]) for d in data]
            assert len(rows) == 12 and sample_weight is not None
            assert_array_equal(sample_weight, w[rows])
    search = GridSearchCV(RNNClassifier(**common), {"hidden_size": [4, 8]}, cv=2)
    search.fit(X, y, sample_weight=w)
    assert search.best_params_["hidden_size"] in (4, 8)
    for bad, message in (([1.0] * 3, "sample_weight.shape == (3,), expected (120,)"),
                         (-w, "Negative values in data passed to `sample_weight`"),
                         (0 * w, "Sample weights must contain at least one non-zero")):
        with pytest.raises(ValueError, match=re.escape(message)):
            RNNClassifier(**common).fit(X, y, sample_weight=np.asarray(bad))
