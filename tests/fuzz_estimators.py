"""A fuzzer of the scikit-learn estimators (RNNClassifier, RNNRegressor)
against PyTorch and against their own contract.

tests/test_sklearn.py checks the estimators on a few fixed data sets, and
tests/fuzz_models.py the models under them against PyTorch.  Here every
case draws an estimator's hyperparameters (cell, layers, directions,
dropout, solver, momentum, Adam's betas and epsilon, learning rate and SGD's
schedule of it (constant, invscaling with power_t, adaptive), L2 alpha,
batch size, clipping, shuffling, early stopping, float32 or float64) and data in one of the
forms the estimators take (a 3-D array, a 2-D array or DataFrame of one
feature a step, a ragged list of float arrays, ragged Python lists, token
ids), with labels of any kind (ints, negative ints, floats, strings,
booleans) or real targets of any scale, sample weights (zeros among them)
or none, y and the weights as arrays, lists or pandas Series, on 1 or 2
threads.  Each case:

* fits once, then warm-starts a second fit of 1 to 3 epochs, and, where
  the twin can follow (no dropout, no early stopping), runs the same
  epochs on a float64 PyTorch twin built from the weights the first fit
  left: the same batches (the permutations random_state draws when
  shuffling), each batch's weighted mean loss plus MLP's L2 term
  0.5 * alpha * ||w||^2 / (the batch's weight), torch's
  clip_grad_norm_ and torch.optim's Adam or SGD (momentum, Nesterov; the
  learning rate set at each epoch's end as MLP's schedules set it).
  The weights and the loss curve must match PyTorch's;
* compares predict_proba / predict with the twin's (the targets'
  standardisation computed here from y and the weights), and checks the
  contract: probabilities that sum to one, predict the argmax among
  classes_ in sorted order, score = accuracy or R^2, the same outputs
  for the samples in another order and one at a time, early stopping's
  records;
* refits from scratch (bitwise the same loss curve and predictions),
  trains by partial_fit as many epochs as a fit (bitwise the same weights
  and loss curve, where no shuffling draws anew at each call), and
  pickles the estimator: the copy predicts bitwise the
  same and a partial_fit of both gives bitwise the same weights (the
  optimizer's state and the dropout's generator travel too);
* makes bad calls (predict with another width, NaN, the other kind of
  input, an empty sequence, unknown token ids; fit with y of another
  length, one class, NaN targets, negative or mislaid sample weights,
  warm started or not; partial_fit with an unseen class), each of which
  must raise ValueError or TypeError naming what is wrong and leave the
  estimator as it was (its pickle bytewise the same);
* runs TextTokenizer (char or word level, lowercasing, max_features,
  min_frequency, two patterns) on random documents against scikit-learn's
  CountVectorizer tokenisation, then a Pipeline of it and the case's
  estimator on raw text: bitwise the estimator's outputs on the ids, a
  pickle of the pipeline bitwise the same, bad documents refused.

    python tests/fuzz_estimators.py [--cases N] [--minutes M] [--seed S]

prints one line a failing case with the seed that replays it alone
(`--seed S --cases 1`) and exits 1 if any failed.
tests/test_fuzz_estimators.py runs a few fixed seeds in the suite.
"""
import collections
import os
import pickle
import sys
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.pipeline import make_pipeline
from sklearn.metrics import accuracy_score, r2_score
from threadpoolctl import threadpool_limits

from rnnfast.interop import to_torch_state_dict
from rnnfast.sklearn import RNNClassifier, RNNRegressor, TextTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fuzz_models import TorchNetwork, picked_nll, t64  # noqa: E402
from fuzz_networks import TOL, close, fuzz_main  # noqa: E402

KINDS = ("classifier", "regressor")
FORMS = ("array3d", "tabular", "dataframe", "ragged", "lists", "tokens")
LABELS = ("int", "negative", "float", "str", "bool")
CONTAINERS = ("array", "list", "pandas")           # of y and sample_weight
# Several optimizer steps of a float64 twin: rounding grows with each step.
TRAIN_TOL = {np.dtype(np.float64): dict(rtol=1e-7, atol=1e-9),
             np.dtype(np.float32): dict(rtol=5e-3, atol=5e-4)}


def draw_case(rng):
    """One estimator's hyperparameters and its data's shape, from rng."""
    kind = KINDS[rng.integers(len(KINDS))]
    form = FORMS[rng.integers(len(FORMS))]
    early = bool(rng.random() < 0.2)
    dtype = np.dtype(np.float64 if rng.random() < 0.5 else np.float32)
    solver = "adam" if rng.random() < 0.5 else "sgd"
    case = dict(
        kind=kind, form=form, dtype=dtype,
        n=int(rng.integers(20, 41)) if early else int(rng.integers(4, 41)),
        T=int(rng.integers(1, 13)),
        F=1 if form in ("tabular", "dataframe", "lists") else int(rng.choice([1, 1, 2, 3, 5])),
        cell=["rnn", "lstm", "gru"][rng.integers(3)],
        H=int(rng.choice([1, 2, 3, 5, 8, 17])), layers=int(rng.choice([1, 1, 2])),
        bidirectional=bool(rng.random() < 0.4),
        dropout=float(rng.choice([0.0, 0.0, 0.0, 0.3])),
        embedding_size=None if rng.random() < 0.5 else int(rng.choice([1, 4, 9])),
        V=int(rng.choice([2, 5, 30])),
        solver=solver, lr=0.01 if solver == "adam" else float(rng.choice([0.01, 0.1])),
        momentum=float(rng.choice([0.0, 0.9])), nesterov=bool(rng.random() < 0.5),
        alpha=float(rng.choice([0.0, 1e-4, 0.1])),
        batch_size="auto" if rng.random() < 0.4 else int(rng.integers(1, 45)),
        clip_norm=[None, 5.0, 0.05][rng.integers(3)],
        shuffle=bool(rng.random() < 0.4), early_stopping=early,
        epochs=int(rng.integers(1, 4)), weighted=bool(rng.random() < 0.4),
        labels=LABELS[rng.integers(len(LABELS))], classes=int(rng.choice([2, 3, 4])),
        outputs=int(rng.choice([1, 1, 2, 3])), y1d=bool(rng.random() < 0.5),
        threads=int(rng.integers(1, 3)), random_state=int(rng.integers(2 ** 31)),
        containers=CONTAINERS[rng.integers(len(CONTAINERS))])
    if case["labels"] == "bool":
        case["classes"] = 2
    # Adam's hyperparameters, drawn last so that a seed draws the same case
    # as before they existed (the defaults two times in three)
    adam = [(0.9, 0.999, 1e-8), (0.9, 0.999, 1e-8), (0.5, 0.9, 1e-3)][rng.integers(3)]
    case["beta_1"], case["beta_2"], case["epsilon"] = adam
    # SGD's learning-rate schedule and power_t, drawn after Adam's for the
    # same reason (Adam ignores them, as MLP's does).  'adaptive' only acts
    # when the stopping rule fires: there, no epoch improves on the best
    # loss by tol=1e6, so it fires at every second epoch after the first
    # (with Adam it would stop the fit: tol stays then).
    case["learning_rate"] = ["constant", "constant", "invscaling",
                             "adaptive"][rng.integers(4)]
    case["power_t"] = float(rng.choice([0.5, 0.25, 1.0]))
    adaptive = case["learning_rate"] == "adaptive" and solver == "sgd"
    case["tol"], case["n_iter_no_change"] = (1e6, 1) if adaptive else (1e-4, 10)
    return case


# -------------------------------------------------------------------- data
def make_data(case, rng):
    """(X in the case's form, samples, y, sample_weight): samples[i] is
    sample i as the estimator must read it: float64 (n_steps_i, F) holding
    values of the case's dtype, or int64 ids (n_steps_i,)."""
    n, T, F, form = case["n"], case["T"], case["F"], case["form"]
    dt = case["dtype"]
    ragged = form in ("ragged", "lists", "tokens")
    lengths = rng.integers(1, T + 1, n) if ragged else np.full(n, T)
    if form == "tokens":
        samples = [rng.integers(0, case["V"], L) for L in lengths]
        id_dtype = [np.int64, np.int32, np.uint8][rng.integers(3)]
        X = [s.astype(id_dtype) for s in samples]
    else:
        samples = [rng.standard_normal((L, F)).astype(dt).astype(np.float64) for L in lengths]
        if form == "array3d":
            X = np.stack(samples)
            if rng.random() < 0.3:                   # another layout, another dtype
                X = np.asfortranarray(X.astype(np.float32 if rng.random() < 0.5 else dt))
                samples = list(X.astype(np.float64))  # what float32 kept of them
        elif form == "tabular":
            X = np.stack(samples)[:, :, 0]
        elif form == "dataframe":
            import pandas as pd
            X = pd.DataFrame(np.stack(samples)[:, :, 0],
                             columns=[f"step{t}" for t in range(T)])
        elif form == "ragged":
            X = [s[:, 0] if F == 1 and rng.random() < 0.5 else s for s in samples]
        else:                                        # Python lists of floats
            X = [[float(v) for v in s[:, 0]] for s in samples]
    y = make_targets(case, rng)
    weights = None
    if case["weighted"]:
        weights = rng.uniform(0, 2, n)
        weights[rng.random(n) < 0.2] = 0.0
        weights[rng.integers(n)] = 1.0               # some weight in every fit
    return X, samples, y, weights


def make_targets(case, rng):
    n = case["n"]
    if case["kind"] == "classifier":
        codes = rng.permutation(np.arange(n) % case["classes"])
        return {"int": codes * 3 + 1, "negative": codes - 2, "float": codes * 2.0,
                "str": np.array(["ant", "bee", "cat", "dog"])[codes],
                "bool": codes == 1}[case["labels"]]
    K = case["outputs"]
    y = rng.standard_normal((n, K)) * rng.choice([0.01, 1.0, 300.0]) + rng.choice([0.0, 50.0])
    if rng.random() < 0.15:
        y[:, 0] = 7.0                                # a constant target: scale 1
    return y[:, 0] if K == 1 and case["y1d"] else y


def given(case, values):
    """y or sample_weight as the case hands them to the estimator: the
    array, a list, or a pandas Series (a DataFrame for 2-D targets)."""
    if values is None or case["containers"] == "array":
        return values
    if case["containers"] == "list":
        return values.tolist()
    import pandas as pd
    return pd.Series(values) if values.ndim == 1 else pd.DataFrame(values)


def build(case):
    cls = RNNClassifier if case["kind"] == "classifier" else RNNRegressor
    return cls(cell=case["cell"], hidden_size=case["H"], num_layers=case["layers"],
               bidirectional=case["bidirectional"], dropout=case["dropout"],
               embedding_size=case["embedding_size"], solver=case["solver"],
               learning_rate_init=case["lr"], alpha=case["alpha"],
               batch_size=case["batch_size"], max_iter=1, early_stopping=case["early_stopping"],
               validation_fraction=0.2, shuffle=case["shuffle"], clip_norm=case["clip_norm"],
               momentum=case["momentum"], nesterovs_momentum=case["nesterov"],
               random_state=case["random_state"], dtype=case["dtype"],
               beta_1=case["beta_1"], beta_2=case["beta_2"], epsilon=case["epsilon"],
               learning_rate=case["learning_rate"], power_t=case["power_t"],
               tol=case["tol"], n_iter_no_change=case["n_iter_no_change"])


def targets_for_the_model(case, y, weights):
    """What the network is trained to output, computed here: class codes in
    sorted label order, or the targets standardised with the (weighted)
    mean and standard deviation of each output (1 for a constant one)."""
    if case["kind"] == "classifier":
        classes = np.unique(y)
        return classes, np.searchsorted(classes, y)
    y2 = y.reshape(len(y), -1)
    mean = np.average(y2, axis=0, weights=weights)
    var = np.average((y2 - mean) ** 2, axis=0, weights=weights)
    kept = y2 if weights is None else y2[weights > 0]      # what the mean sees
    constant = (kept == kept[0]).all(axis=0)
    scale = np.where(constant, 1.0, np.sqrt(var))
    return (mean, scale), (y2 - mean) / scale


# ------------------------------------------------------------ PyTorch's twin
class TorchEstimator:
    """The fitted estimator's model in float64 PyTorch (embedding, one
    single-layer torch RNN per layer, linear output), its weights copied.
    An LSTM's or plain RNN's single bias b = b_ih + b_hh sits in bias_ih,
    with bias_hh held at zero, so that the L2 term and the optimizer see
    the same numbers as the estimator's."""

    def __init__(self, est, case):
        model = est.model_
        self.case, self.net = case, TorchNetwork(model.network)
        for m in self.net.layers:
            for name, p in m.named_parameters():
                if name.startswith("bias_hh") and case["cell"] != "gru":
                    p.requires_grad_(False)
        self.E = None if model.embed is None else t64(model.embed.params[0]).requires_grad_()
        self.W = t64(model.affine.params[0]).requires_grad_()
        self.b = t64(model.affine.params[1]).requires_grad_()

    def params(self):
        net = [p for m in self.net.layers for p in m.parameters() if p.requires_grad]
        return ([self.E] if self.E is not None else []) + net + [self.W, self.b]

    def scores(self, samples, rows):
        batch = [samples[i] for i in rows]
        lengths = np.array([len(s) for s in batch])
        T = int(lengths.max())
        if self.E is not None:
            ids = np.zeros((len(batch), T), np.int64)
            for i, s in enumerate(batch):
                ids[i, :len(s)] = s
            x = self.E[torch.tensor(ids)]
        else:
            x = np.zeros((len(batch), T, batch[0].shape[1]))
            for i, s in enumerate(batch):
                x[i, :len(s)] = s
            x = t64(x)
        _, h_n, _ = self.net(x, lengths)
        nd = self.net.net.num_directions
        return torch.cat(list(h_n[-nd:]), dim=1) @ self.W + self.b

    def loss(self, scores, targets, w):
        w = t64(w)
        if self.case["kind"] == "classifier":
            nll = picked_nll(scores, targets, np.ones(len(targets), bool))
            return (w * nll).sum() / w.sum()
        d = scores - t64(targets)
        return (w[:, None] * d * d).sum() / (w.sum() * d.shape[1])

    def optimizer(self):
        case, params = self.case, self.params()
        if case["solver"] == "adam":
            return torch.optim.Adam(params, lr=case["lr"], betas=(case["beta_1"],
                                                                  case["beta_2"]),
                                    eps=case["epsilon"])
        if case["momentum"] == 0:
            return torch.optim.SGD(params, lr=case["lr"])
        return torch.optim.SGD(params, lr=case["lr"], momentum=case["momentum"],
                               nesterov=case["nesterov"])

    def next_learning_rate(self, lr, seen, no_improvement):
        """MLP's SGD schedules at an epoch's end -> (learning rate, count of
        epochs without improvement): 'invscaling' from the samples seen;
        'adaptive' divides by 5 when the count passes n_iter_no_change
        (case tol=1e6: every epoch after a fit's first counts)."""
        case = self.case
        if case["solver"] != "sgd":
            return lr, no_improvement
        if case["learning_rate"] == "invscaling":
            return case["lr"] / (seen + 1) ** case["power_t"], no_improvement
        if case["learning_rate"] == "adaptive" and no_improvement > case["n_iter_no_change"]:
            return (lr / 5 if lr > 1e-6 else lr), 0
        return lr, no_improvement

    @staticmethod
    def set_learning_rate(opt, lr):
        """torch.optim.SGD at another lr, its momentum buffers rescaled by
        old / new: torch keeps velocity in gradient units, MLP (and
        rnnfast.optim.Momentum) in weight units, which a new lr leaves as
        they are."""
        for group in opt.param_groups:
            for p in group["params"]:
                buf = opt.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    buf.mul_(group["lr"] / lr)
            group["lr"] = lr

    def fit_epochs(self, samples, targets, weights, epochs):
        """`epochs` epochs of a fit warm-started after one epoch -> the
        loss curve."""
        case, params, opt = self.case, self.params(), self.optimizer()
        n = len(samples)
        lr, seen, no_improvement = case["lr"], n, 0     # after the first fit's epoch
        size = 32 if case["batch_size"] == "auto" else case["batch_size"]
        size = min(size, n)
        draws = np.random.RandomState(case["random_state"])   # a fit's shuffling
        curve = []
        for _ in range(epochs):
            order = draws.permutation(n) if case["shuffle"] else np.arange(n)
            total = 0.0
            for start in range(0, n, size):
                rows = order[start:start + size]
                w = np.ones(len(rows)) if weights is None else weights[rows]
                if w.sum() == 0:                     # a batch of no samples: skipped
                    continue
                opt.zero_grad()
                loss = self.loss(self.scores(samples, rows), targets[rows], w)
                l2 = 0.5 * case["alpha"] * sum((p * p).sum() for p in params) / w.sum()
                (loss + l2).backward()
                total += (loss.item() + l2.item()) * len(rows)
                if case["clip_norm"] is not None:
                    torch.nn.utils.clip_grad_norm_(params, case["clip_norm"])
                opt.step()
            curve.append(total / n)
            seen += n
            lr, no_improvement = self.next_learning_rate(lr, seen, no_improvement + 1)
            self.set_learning_rate(opt, lr)
        return curve

    def perturb(self, rel, seed):
        """Every weight times (1 + rel * N(0, 1))."""
        draws = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.params():
                p.mul_(1 + rel * torch.randn(p.shape, generator=draws, dtype=p.dtype))

    def weights(self):
        """{name: the twin's weights}, named as `estimator_weights` names them."""
        out = {} if self.E is None else {"embedding": self.E.detach().numpy()}
        for layer, m in enumerate(self.net.layers):
            for name, p in m.named_parameters():
                out[name.replace("_l0", f"_l{layer}")] = p.detach().numpy()
        out.update({"output W": self.W.detach().numpy(), "output b": self.b.detach().numpy()})
        return out


def estimator_weights(est):
    """{name: the estimator's weights}, the network's under PyTorch's names."""
    model = est.model_
    out = {} if model.embed is None else {"embedding": model.embed.params[0]}
    out.update(to_torch_state_dict(model.network))
    out.update({"output W": model.affine.params[0], "output b": model.affine.params[1]})
    return out


def with_slack(tol, slack, ref):
    """tol with `slack` more absolute error allowed (close() scales atol by
    max(1, |ref|))."""
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    return dict(rtol=tol["rtol"], atol=tol["atol"] + slack / scale)


def twin_follows(case):
    """The twin runs the second fit's epochs unless dropout draws masks it
    cannot see, early stopping splits the data, or float32 Adam (see
    TRAIN_TOL: Adam divides by sqrt(v), so a gradient that float32 rounds
    to the other side of zero moves a weight by the whole learning rate)."""
    return (case["dropout"] == 0 and not case["early_stopping"]
            and not (case["dtype"] == np.float32 and case["solver"] == "adam"))


# ------------------------------------------------------------------- cases
def run_case(case, seed):
    """A list of what differs from PyTorch's twin or the contract (empty:
    the case passed)."""
    rng = np.random.default_rng(seed)
    X, samples, y, weights = make_data(case, rng)
    failures = []
    with threadpool_limits(case["threads"]), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", DataConversionWarning)
        warnings.filterwarnings("ignore", message="Got `batch_size` larger")
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        est = fitted_twice(case, X, y, weights, failures, samples)
        if est is None:                 # refused for its split (and checked)
            return failures
        prediction_failures(case, est, X, samples, y, weights, failures)
        order_failures(case, est, X, rng, failures)
        if case["early_stopping"]:
            early_stopping_failures(case, est, failures)
        again = fitted_twice(case, X, y, weights, [], None)
        if again.loss_curve_ != est.loss_curve_ or not np.array_equal(
                outputs(again, X), outputs(est, X)):
            failures.append("refit with the same random_state: another loss curve or "
                            "other outputs")
        if not case["shuffle"] and not case["early_stopping"]:
            partial_fit_failures(case, X, y, weights, failures)
        pickle_failures(case, est, X, y, weights, failures)
        bad_call_failures(case, est, X, samples, y, weights, rng, failures)
        text_failures(case, rng, failures)
    return failures


def fitted_twice(case, X, y, weights, failures, samples):
    """A first fit (max_iter=1), then a warm-started second of
    case["epochs"] epochs, followed by the twin when samples are given.

    Training can amplify rounding: a fit that blows up (loss 3 -> 74)
    moved weights by 3e-4 for a start moved by 1e-7 (seed 63184, float32),
    and 60 steps of SGD at an effective rate of 1 moved them by 0.02 for a
    start moved by 1e-16 (seed 104622, float64).  So a second twin starts
    from weights moved by the case's rounding (2**-24 in float32, 2**-53
    in float64), and 30 times the spread of the two twins' results is
    allowed on top of TRAIN_TOL (nothing where training is calm)."""
    est = build(case)
    if not refused_for_its_split(est, lambda: est.fit(X, given(case, y),
                                                      sample_weight=given(case, weights)),
                                 weights, failures):
        return None
    twins = []
    if samples is not None and twin_follows(case):
        twins = [TorchEstimator(est, case), TorchEstimator(est, case)]
        twins[1].perturb(2.0 ** (-24 if case["dtype"] == np.float32 else -53),
                         case["random_state"])
    est.set_params(warm_start=True, max_iter=case["epochs"])
    if not refused_for_its_split(est, lambda: est.fit(X, given(case, y),
                                                      sample_weight=given(case, weights)),
                                 weights, failures):
        return None
    if twins:
        _, targets = targets_for_the_model(case, y, weights)
        curves = [t.fit_epochs(samples, targets, weights, case["epochs"]) for t in twins]
        refs = [t.weights() for t in twins]
        spread = {name: 30 * float(np.abs(ref - refs[-1][name]).max())
                  for name, ref in refs[0].items()}
        curve_spread = 30 * float(np.abs(np.subtract(curves[0], curves[-1])).max())
        tol = TRAIN_TOL[case["dtype"]]
        if est.n_iter_ != case["epochs"]:
            failures.append(f"fit: n_iter_ {est.n_iter_}, expected {case['epochs']}")
        close("fit: loss_curve_", est.loss_curve_[1:], curves[0],
              with_slack(tol, curve_spread, curves[0]), failures)
        ours = estimator_weights(est)
        for name, ref in refs[0].items():
            close(f"fit: {name}", ours[name], ref, with_slack(tol, spread[name], ref),
                  failures)
    return est


def refused_for_its_split(est, fit, weights, failures):
    """fit() -> True, or False where it was refused because early
    stopping's validation split holds only samples of weight 0 (a draw of
    the split; then the estimator must be as it was)."""
    before = fingerprint(est)
    try:
        fit()
        return True
    except ValueError as exc:
        if weights is None or "of the early-stopping validation split" not in str(exc):
            raise
    if fingerprint(est) != before:
        failures.append("fit refused for its validation split: the estimator changed")
    return False


def outputs(est, X):
    return est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X)


def prediction_failures(case, est, X, samples, y, weights, failures):
    """predict / predict_proba / score against the twin and the contract."""
    tol = TOL[case["dtype"]]
    n = case["n"]
    with torch.no_grad():
        scores = TorchEstimator(est, case).scores(samples, np.arange(n)).numpy()
    what, _ = targets_for_the_model(case, y, weights)
    if case["kind"] == "classifier":
        classes = what
        if not np.array_equal(est.classes_, classes):
            failures.append(f"classes_ {est.classes_} against the sorted labels {classes}")
            return
        ref = np.exp(scores - scores.max(axis=1, keepdims=True))
        ref /= ref.sum(axis=1, keepdims=True)
        proba = est.predict_proba(X)
        close("predict_proba", proba, ref, tol, failures)
        if not np.allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12) or (proba < 0).any():
            failures.append("predict_proba: rows that are not probabilities")
        pred = est.predict(X)
        if not np.array_equal(pred, est.classes_[proba.argmax(axis=1)]):
            failures.append("predict: not the class of the largest probability")
        top2 = np.sort(ref, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 1e-3       # no near-tie for float32 to flip
        if not np.array_equal(pred[clear], classes[ref.argmax(axis=1)][clear]):
            failures.append("predict: another class than PyTorch's")
        close("predict_log_proba", est.predict_log_proba(X), np.log(proba), tol, failures)
        expected_score = accuracy_score(y, pred, sample_weight=weights)
    else:
        mean, scale = what
        ref = scores * scale + mean
        if case["outputs"] == 1:
            ref = ref[:, 0]
        pred = est.predict(X)
        if pred.shape != ref.shape:
            failures.append(f"predict: shape {pred.shape}, expected {ref.shape}")
            return
        # relative to the targets' own scale: a float32 network's output,
        # times that scale
        close("predict", (pred - mean.squeeze()) / scale.squeeze(),
              (ref - mean.squeeze()) / scale.squeeze(), tol, failures)
        # as handed to score: r2_score is ill-conditioned on a constant
        # output (a denominator of rounding error), and a DataFrame's
        # column order of summing rounds otherwise than an array's
        expected_score = r2_score(given(case, y), pred, sample_weight=given(case, weights))
    score = est.score(X, given(case, y), sample_weight=given(case, weights))
    if not np.isclose(score, expected_score, rtol=1e-12, atol=1e-12):
        failures.append(f"score {score} against {expected_score}")


def reordered(case, X, rows):
    """The samples `rows` of X, in that order, in X's own form."""
    if case["form"] == "dataframe":
        return X.iloc[rows]
    if isinstance(X, np.ndarray):
        return X[rows]
    return [X[i] for i in rows]


def order_failures(case, est, X, rng, failures):
    """The outputs of the samples in another order, and of a few alone,
    are theirs in X (each sequence is read alone: batching, padding and
    the batch's longest length change nothing but rounding)."""
    tol = TOL[case["dtype"]]
    full = outputs(est, X)
    perm = rng.permutation(case["n"])
    close("outputs of the samples in another order", outputs(est, reordered(case, X, perm)),
          full[perm], tol, failures)
    for i in rng.choice(case["n"], min(3, case["n"]), replace=False):
        close(f"outputs of sample {i} alone", outputs(est, reordered(case, X, [i])),
              full[[i]], tol, failures)


def early_stopping_failures(case, est, failures):
    """Early stopping's records over both fits (a warm start keeps them)."""
    epochs = len(est.loss_curve_)
    if len(est.validation_scores_) != epochs:
        failures.append(f"early stopping: {len(est.validation_scores_)} validation scores "
                        f"for {epochs} epochs")
    elif est.best_validation_score_ != max(est.validation_scores_):
        failures.append(f"early stopping: best_validation_score_ "
                        f"{est.best_validation_score_} is not the best of "
                        f"{est.validation_scores_}")
    if case["kind"] == "classifier" and not all(0 <= s <= 1 for s in est.validation_scores_):
        failures.append(f"early stopping: accuracies outside [0, 1]: {est.validation_scores_}")


def partial_fit_failures(case, X, y, weights, failures):
    """Epochs of partial_fit from scratch train as one fit of as many
    epochs does (without shuffling, which draws anew at each call), bitwise:
    the same first weights, targets' scale, optimizer and dropout draws."""
    epochs = case["epochs"]
    y, weights = given(case, y), given(case, weights)
    whole = build(case).set_params(max_iter=epochs).fit(X, y, sample_weight=weights)
    parts = build(case)
    extra = {"classes": np.unique(y)} if case["kind"] == "classifier" else {}
    for _ in range(epochs):
        parts.partial_fit(X, y, sample_weight=weights, **extra)
    if parts.loss_curve_ != whole.loss_curve_:
        failures.append(f"partial_fit: loss curve {parts.loss_curve_} against fit's "
                        f"{whole.loss_curve_}")
    for i, (a, b) in enumerate(zip(parts.model_.params, whole.model_.params)):
        if not np.array_equal(a, b):
            failures.append(f"partial_fit: params[{i}] differ from fit's")


def pickle_failures(case, est, X, y, weights, failures):
    """A pickled copy predicts bitwise the same, and one partial_fit of both
    leaves bitwise the same weights."""
    copy = pickle.loads(pickle.dumps(est))
    if not np.array_equal(outputs(copy, X), outputs(est, X)):
        failures.append("pickle: the copy's outputs differ")
    for e in (est, copy):
        e.set_params(early_stopping=False)           # partial_fit refuses it
        e.partial_fit(X, given(case, y), sample_weight=given(case, weights))
    for i, (a, b) in enumerate(zip(est.model_.params, copy.model_.params)):
        if not np.array_equal(a, b):
            failures.append(f"pickle: params[{i}] differ after a partial_fit of both")


# ---------------------------------------------------------------- bad input
def bad_calls(case, est, X, samples, y, weights, rng):
    """[(what, call, words)]: calls of the fitted estimator with one thing
    wrong; the error message must contain one of `words`.  The fits pass X
    of another width too, which a fit from scratch (warm_start=False)
    accepts and a warm start refuses first ("features", or "was fitted
    on" another kind of input)."""
    n, form = case["n"], case["form"]
    sw = {"sample_weight": weights}
    calls = []
    if form == "tokens":
        floats = [rng.standard_normal((len(x), 2)) for x in X]
        calls.append(("predict float sequences", lambda: est.predict(floats),
                      ["token ids"]))
        bad = [x.astype(np.int64) for x in X]
        bad[rng.integers(n)][0] = -1
        calls.append(("predict a negative id", lambda: est.predict(bad), ["token ids"]))
        bad2 = [x.astype(np.int64) for x in X]
        bad2[rng.integers(n)][-1] = est.vocab_size_
        calls.append(("predict an unseen id", lambda: est.predict(bad2), ["token ids"]))
        wider = floats
    else:
        arr = np.stack(samples) if form not in ("ragged", "lists") else None
        if form in ("ragged", "lists"):
            wider = [np.ones((len(x), case["F"] + 1)) for x in X]
            nan = [np.array(x, np.float64) for x in X]
            empty = list(X)
            empty[rng.integers(n)] = [] if form == "lists" else np.zeros((0, case["F"]))
            calls.append(("predict an empty sequence", lambda: est.predict(empty),
                          ["at least one step"]))
        elif form == "array3d":
            wider = np.ones(arr.shape[:2] + (case["F"] + 1,))
            nan = arr.copy()
            no_steps = np.zeros((n, 0, case["F"]))
            calls.append(("predict sequences of no step", lambda: est.predict(no_steps),
                          ["at least one step"]))
            calls.append(("fit sequences of no step", lambda: est.fit(no_steps, y),
                          ["at least one step"]))
        else:
            wider = np.ones((n, case["T"] + 1))
            nan = arr[:, :, 0].copy()
        i = rng.integers(n)
        if isinstance(nan, list):
            nan[i] = nan[i].copy()
            nan[i].flat[0] = np.nan
        else:
            nan[i].flat[0] = np.nan
        calls.append(("predict with NaN", lambda: est.predict(nan), ["NaN"]))
        calls.append(("predict one feature more", lambda: est.predict(wider),
                      ["features", "was fitted on"]))
        ids = [rng.integers(0, 3, case["T"]) for _ in range(n)]
        calls.append(("predict token ids", lambda: est.predict(ids), ["token ids"]))
    calls.append(("fit another width with y of another length",
                  lambda: est.fit(wider, y[:-1], sample_weight=None),
                  ["inconsistent numbers of samples"]))
    if case["kind"] == "classifier":
        calls.append(("fit another width with one class",
                      lambda: est.fit(wider, np.repeat(y[:1], n)), ["class"]))
        unseen = y.astype(np.int64) if y.dtype == bool else y.copy()
        unseen[rng.integers(n)] = "zebra" if y.dtype.kind == "U" else 99
        calls.append(("partial_fit an unseen class",
                      lambda: est.partial_fit(X, unseen, **sw), ["classes"]))
    else:
        nan_y = np.array(y, np.float64)
        nan_y.flat[rng.integers(nan_y.size)] = np.nan
        calls.append(("fit another width with a NaN target",
                      lambda: est.fit(wider, nan_y), ["NaN"]))
    negative = np.ones(n)
    negative[rng.integers(n)] = -1.0
    calls.append(("fit another width with a negative sample weight",
                  lambda: est.fit(wider, y, sample_weight=negative), ["sample_weight"]))
    calls.append(("fit sample weights of another length",
                  lambda: est.fit(X, y, sample_weight=np.ones(n + 1)),
                  ["sample_weight", "inconsistent"]))
    return calls


def fingerprint(est):
    """Each attribute's pickle (its state, the model's weights and
    optimizer's moments included)."""
    return {k: pickle.dumps(v) for k, v in vars(est).items()}


def bad_call_failures(case, est, X, samples, y, weights, rng, failures):
    for what, call, words in bad_calls(case, est, X, samples, y, weights, rng):
        est.set_params(warm_start=bool(rng.random() < 0.5))
        if est.warm_start and "another width" in what:
            words = words + ["features", "was fitted on"]
        before = fingerprint(est)
        label = f"bad input ({what}, warm_start={est.warm_start})"
        try:
            call()
        except (ValueError, TypeError) as exc:
            if not any(w in str(exc) for w in words):
                failures.append(f"{label}: message {str(exc)[:160]!r} names none of {words}")
        except Exception as exc:                     # noqa: BLE001  (reported)
            failures.append(f"{label}: raised {type(exc).__name__}: {str(exc)[:160]}")
        else:
            failures.append(f"{label}: accepted")
            continue
        after = fingerprint(est)
        changed = sorted(k for k in before.keys() | after.keys()
                         if before.get(k) != after.get(k))
        if changed:
            failures.append(f"{label}: the estimator changed: {', '.join(changed)}")
            est.__dict__.clear()                     # the next call starts from the fit
            est.__dict__.update({k: pickle.loads(v) for k, v in before.items()})


# -------------------------------------------------------------------- text
WORDS = ["ab", "Ab", "cd", "x", "yy", "Z9", "_q", "été", "ÉTÉ", "ß", "1", "o'k"]
SEPARATORS = [" ", "  ", ", ", ".", "!\n", "\t", "-"]


def make_docs(rng, n):
    """n short documents of a small vocabulary in mixed case, with
    punctuation, accents, digits and underscores; one in ten empty."""
    docs = []
    for _ in range(n):
        if rng.random() < 0.1:
            docs.append("")
            continue
        parts = []
        for _ in range(rng.integers(1, 8)):
            parts += [WORDS[rng.integers(len(WORDS))], SEPARATORS[rng.integers(len(SEPARATORS))]]
        docs.append("".join(parts))
    return docs


def tokens_of(tok, doc):
    """The tokens TextTokenizer's documentation promises, by another hand:
    scikit-learn's CountVectorizer word analyzer with the same pattern and
    lowercasing (unigrams, no accent stripping), or every character."""
    if tok.level == "char":
        return list(doc.lower() if tok.lowercase else doc)
    return CountVectorizer(lowercase=tok.lowercase,
                           token_pattern=tok.token_pattern).build_analyzer()(doc)


def text_failures(case, rng, failures):
    """TextTokenizer on random documents against CountVectorizer's
    tokenisation (vocabulary: the tokens seen at least min_frequency times,
    the max_features most frequent, ids 2.. by falling count; transform:
    each token's id, 1 for an unknown one, [1] for no token), then a
    Pipeline of it and the case's estimator: its outputs bitwise those of
    the estimator on the tokenizer's ids, and of its pickle; bad documents
    refused by name and the pipeline left as it was."""
    n = max(case["n"], 4)
    docs = make_docs(rng, n)
    params = dict(level=["char", "word"][rng.integers(2)], lowercase=bool(rng.random() < 0.7),
                  max_features=None if rng.random() < 0.6 else int(rng.integers(1, 8)),
                  min_frequency=int(rng.choice([1, 1, 2, 3])))
    if rng.random() < 0.3:
        params["token_pattern"] = r"(?u)\b\w\w+\b"        # CountVectorizer's own
    tok = TextTokenizer(**params).fit(docs)
    counts = collections.Counter(t for d in docs for t in tokens_of(tok, d))
    kept = {t for t, c in counts.items() if c >= params["min_frequency"]}
    vocab = tok.vocabulary_
    wanted = len(kept) if params["max_features"] is None else min(len(kept),
                                                                 params["max_features"])
    if not set(vocab) <= kept or len(vocab) != wanted:
        failures.append(f"text: vocabulary {sorted(vocab)} against the tokens kept "
                        f"{sorted(kept)} (max_features={params['max_features']})")
        return
    by_id = sorted(vocab, key=vocab.get)
    if sorted(vocab.values()) != list(range(2, len(vocab) + 2)) or tok.vocab_size_ != \
            len(vocab) + 2 or any(counts[a] < counts[b] for a, b in zip(by_id, by_id[1:])):
        failures.append(f"text: ids {vocab} are not 2.. by falling count")
    if vocab and any(counts[t] > counts[by_id[-1]] for t in kept - set(vocab)):
        failures.append("text: max_features dropped a token more frequent than one kept")
    probes = docs + make_docs(rng, 5)
    for doc, ids in zip(probes, tok.transform(probes)):
        want = [vocab.get(t, 1) for t in tokens_of(tok, doc)] or [1]
        if ids.dtype != np.int64 or ids.tolist() != want:
            failures.append(f"text: transform({doc!r}) = {ids.tolist()}, expected {want}")
            return

    est = build(case).set_params(max_iter=1, early_stopping=False)
    y = make_targets(dict(case, n=n), rng)
    pipe = make_pipeline(TextTokenizer(**params), est).fit(docs, y)
    ids = pipe[0].transform(docs)
    if not np.array_equal(outputs(pipe, docs), outputs(pipe[-1], ids)):
        failures.append("text: the pipeline's outputs differ from the estimator's on the ids")
    if not np.array_equal(outputs(pickle.loads(pickle.dumps(pipe)), docs), outputs(pipe, docs)):
        failures.append("text: the pickled pipeline's outputs differ")
    before = pickle.dumps(pipe)
    for what, bad, error, words in [("a string", "one document", ValueError, "string object"),
                                    ("a number among the documents", docs[:1] + [3.5],
                                     TypeError, "X[1]")]:
        try:
            outputs(pipe, bad)
        except error as exc:
            if words not in str(exc):
                failures.append(f"text: predict {what}: message {str(exc)!r} lacks {words!r}")
        except Exception as exc:                     # noqa: BLE001  (reported)
            failures.append(f"text: predict {what}: raised {type(exc).__name__}: {exc}")
        else:
            failures.append(f"text: predict {what}: accepted")
    if pickle.dumps(pipe) != before:
        failures.append("text: the refused calls changed the pipeline")


def describe(case):
    return " ".join(f"{k}={v}" for k, v in case.items())


def main(argv=None):
    torch.set_num_threads(1)
    return fuzz_main(argv, __doc__.split("\n\n")[0], lambda rng: draw_case(rng),
                     lambda case, seed: run_case(case, seed), lambda case: describe(case),
                     stream=3, cases=100)


if __name__ == "__main__":
    sys.exit(main())
