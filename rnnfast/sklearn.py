"""scikit-learn estimators over rnnfast's many-to-one sequence models.

    RNNClassifier   sequences -> one class each   (softmax cross-entropy)
    RNNRegressor    sequences -> one or more real values each (squared error)
    TextTokenizer   raw strings -> token-id sequences, for a Pipeline

They follow scikit-learn's MLPClassifier / MLPRegressor: ``__init__`` only
stores hyperparameters (MLP's names where they mean the same), ``fit``
validates once, builds a ``rnnfast.models.SequenceClassifier`` or
``SequenceRegressor`` and runs minibatch epochs of one forward and one
backward over the whole batch each (the kernels run the time loop), with
early stopping, ``ConvergenceWarning``, ``partial_fit`` and ``warm_start``.

Inputs X (any of):

* a 3-D array ``(n_samples, n_steps, n_features)``;
* a 2-D array ``(n_samples, n_steps)``: one feature a step.  A 2-D array
  is scikit-learn's tabular layout, so ``n_features_in_`` is its number of
  columns and later calls must give as many (fixed-length windows);
* a list of arrays ``(n_steps_i, n_features)`` (or ``(n_steps_i,)`` for one
  feature a step) of different lengths: padded inside, with each true
  length passed to the network, never truncated;
* token ids: a list of 1-D *integer* numpy arrays ``(n_steps_i,)``, read
  through a learned embedding (``TextTokenizer`` returns exactly that).  A
  2-D integer array stays numbers (scikit-learn's convention), unless the
  estimator was fitted on token ids.

Rectangular nested Python lists are read as one array (a list of rows).
"""
import collections
import contextlib
import numbers
import re
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import (_check_sample_weight, check_array,
                                      check_consistent_length,
                                      check_is_fitted, check_scalar, column_or_1d,
                                      validate_data)

from ._validation import NonFiniteError, float_dtype
from .models import SequenceClassifier, SequenceRegressor
from .optim import SGD, Adam, Momentum, Nesterov, _add_scaled, _sum_squares, clip_grads

__all__ = ["RNNClassifier", "RNNRegressor", "TextTokenizer"]

CELLS = ("lstm", "gru", "rnn")
SOLVERS = ("adam", "sgd")
LEARNING_RATES = ("constant", "invscaling", "adaptive")
PREDICT_CHUNK = 512        # rows per forward at prediction time (bounded memory)
NON_FINITE = ("Solver produced non-finite parameter weights (or activations). The input "
              "data may contain large values and need to be preprocessed (or lower "
              "learning_rate_init, or set clip_norm).")


def _batches(n, size):
    """Slices of `size` rows over n rows, the last one shorter: scikit-learn's
    gen_batches(n, size), without its argument validation, which took ~110
    us a call (an epoch's worth of a small model's batch; docs/performance.md
    item 149)."""
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


# ====================================================================== inputs
class _Batch:
    """Validated inputs: padded data, true lengths and what kind they were.

    kind: "tabular" (2-D array, one feature a step), "sequences" (3-D array
    or list of float sequences) or "tokens" (int ids (N, T)).
    lengths is None when every sequence fills all T steps.
    """
    __slots__ = ("kind", "data", "lengths", "n_features")

    def __init__(self, kind, data, lengths, n_features):
        self.kind, self.data, self.lengths, self.n_features = kind, data, lengths, n_features

    def __len__(self):
        return self.data.shape[0]

    def take(self, rows):
        """The samples `rows` (indices or a slice), trimmed to their longest."""
        data = self.data[rows]
        if self.lengths is None:
            return data, None
        lengths = self.lengths[rows]
        T = int(lengths.max()) if lengths.size else 0
        return data[:, :T], lengths


def _as_list_of_samples(X):
    """X's samples as a list when X is a list of sequences, else None.

    A list (tuple, 1-D object array) is a list of sequences when its items
    are numpy arrays or when they differ in length; a rectangular nested
    Python list is one array (scikit-learn's list of rows)."""
    if isinstance(X, (list, tuple)):
        items = list(X)
    elif getattr(X, "ndim", None) == 1 and getattr(X, "dtype", None) is not None and \
            np.dtype(X.dtype).kind in "OUS":
        items = list(X)
    else:
        return None
    if not items:
        return None
    if any(isinstance(x, (str, bytes)) for x in items):
        raise ValueError("X: expected sequences of numbers, got strings; put a "
                         "TextTokenizer first for raw text, e.g. make_pipeline("
                         "TextTokenizer(), RNNClassifier())")
    if all(isinstance(x, np.ndarray) for x in items):
        return items
    sizes = {len(x) if hasattr(x, "__len__") and not isinstance(x, str) else -1
             for x in items}
    if len(sizes) > 1:
        return items
    if getattr(X, "dtype", None) == object:
        return items
    return None


def _pad_sequences(items, dtype, estimator):
    """A list of samples -> _Batch of kind "tokens" or "sequences"."""
    name = type(estimator).__name__
    arrays = []
    for i, x in enumerate(items):
        if isinstance(x, str) or (isinstance(x, np.ndarray) and x.dtype.kind in "OSU"
                                  and x.ndim == 0):
            raise ValueError(f"X[{i}]: expected a sequence of numbers, got a string; "
                             f"put a TextTokenizer before {name} for raw text")
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"X[{i}]: expected an array of shape (n_steps,) or "
                             f"(n_steps, n_features), got {type(x).__name__} ({exc})") from exc
        if arr.ndim not in (1, 2):
            raise ValueError(f"X[{i}]: expected shape (n_steps,) or (n_steps, n_features), "
                             f"got shape {arr.shape}")
        if arr.shape[0] == 0:
            raise ValueError(f"X[{i}]: a sequence needs at least one step, got shape "
                             f"{arr.shape}")
        arrays.append(arr)
    lengths = np.array([a.shape[0] for a in arrays], dtype=np.intp)
    T = int(lengths.max())
    if all(a.ndim == 1 and a.dtype.kind in "iu" for a in arrays):
        data = np.zeros((len(arrays), T), dtype=np.int64)
        for i, a in enumerate(arrays):
            if a.min() < 0:
                raise ValueError(f"X[{i}]: token ids must be >= 0, got {a.min()}")
            if a.max() > np.iinfo(np.int64).max:      # before the cast wraps it
                raise ValueError(f"X[{i}]: token ids must be < 2**63, got {a.max()}")
            data[i, :a.shape[0]] = a
        return _Batch("tokens", data, lengths, 1)
    F = arrays[0].shape[1] if arrays[0].ndim == 2 else 1
    data = np.zeros((len(arrays), T, F), dtype=dtype)
    for i, a in enumerate(arrays):
        f = a.shape[1] if a.ndim == 2 else 1
        if f != F:
            raise ValueError(f"X[{i}]: expected {F} features a step like X[0], got shape "
                             f"{a.shape}")
        a = check_array(a.reshape(a.shape[0], f), dtype=dtype, estimator=estimator,
                        input_name=f"X[{i}]")
        data[i, :a.shape[0]] = a
    return _Batch("sequences", data, lengths, F)


def _check_X(estimator, X, dtype, reset):
    """Any accepted form of X -> _Batch.  With reset=False X must match the
    kind and width seen in fit."""
    name = type(estimator).__name__
    kind = None if reset else estimator._input_kind
    items = _as_list_of_samples(X)
    if items is not None:
        batch = _pad_sequences(items, dtype, estimator)
        if kind is None and hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
    else:
        ndim = getattr(X, "ndim", None)
        if ndim is None and not hasattr(X, "shape"):
            try:
                ndim = np.asarray(X).ndim
            except (ValueError, TypeError):
                ndim = None
        if ndim == 3:
            arr = check_array(X, dtype=dtype, allow_nd=True, estimator=estimator,
                              input_name="X")
            if arr.shape[1] < 1:      # (a list's sequences are checked alike)
                raise ValueError(f"X: a sequence needs at least one step, got shape "
                                 f"{arr.shape}")
            if arr.shape[2] < 1:
                raise ValueError(f"X: expected at least 1 feature a step, got shape "
                                 f"{arr.shape}")
            batch = _Batch("sequences", arr, None, arr.shape[2])
            if kind is None and hasattr(estimator, "feature_names_in_"):
                del estimator.feature_names_in_
        elif kind == "tokens":
            arr = check_array(X, dtype=None, estimator=estimator, input_name="X")
            if arr.dtype.kind not in "iu":
                raise ValueError(f"X: {name} was fitted on token ids; expected integer "
                                 f"ids (n_samples, n_steps), got dtype {arr.dtype}")
            if arr.size and arr.min() < 0:
                raise ValueError(f"X: token ids must be >= 0, got {arr.min()}")
            batch = _Batch("tokens", arr.astype(np.int64), None, 1)
        elif kind in (None, "tabular"):
            # scikit-learn's tabular layout: validate_data keeps n_features_in_
            # (here the number of steps) and the feature names consistent
            arr = validate_data(estimator, X, dtype=dtype, reset=reset)
            return _Batch("tabular", arr[:, :, None], None, arr.shape[1])
        else:   # fitted on sequences: a 2-D array is one feature a step
            arr = check_array(X, dtype=dtype, estimator=estimator, input_name="X")
            batch = _Batch("sequences", arr[:, :, None], None, 1)
    if kind is None:
        estimator.n_features_in_ = batch.n_features
        return batch
    if batch.kind != kind:
        what = {"tabular": "a 2-D array (n_samples, n_steps)",
                "sequences": "float sequences", "tokens": "token ids"}
        raise ValueError(f"X: {name} was fitted on {what[kind]}, got {what[batch.kind]}")
    if batch.kind == "sequences" and batch.n_features != estimator.n_features_in_:
        raise ValueError(f"X has {batch.n_features} features a step, but {name} is "
                         f"expecting {estimator.n_features_in_} features a step as input")
    if batch.kind == "tokens" and batch.data.size and \
            batch.data.max() >= estimator.vocab_size_:
        raise ValueError(f"X: token ids must lie in 0..{estimator.vocab_size_ - 1} (the "
                         f"ids seen in fit), got {batch.data.max()}; map unseen tokens to "
                         f"a known id (TextTokenizer maps them to 1)")
    return batch


def _constant(var, mean, n):
    """Whether each variance of n values is rounding error, not spread: a
    constant target's weighted mean is not exactly the constant, and
    dividing by the square root of the rounding (~1e-15) would blow that
    rounding up to targets of order 1.  StandardScaler's bound
    (sklearn.preprocessing._data._is_constant_feature)."""
    eps = np.finfo(np.float64).eps
    return var <= n * eps * var + (n * np.abs(mean) * eps) ** 2


# ================================================================== estimators
class _BaseRNN(BaseEstimator):
    """Shared hyperparameters, validation and the training loop."""

    def __init__(self, cell="lstm", hidden_size=32, num_layers=1, bidirectional=False,
                 dropout=0.0, embedding_size=None, solver="adam", learning_rate_init=0.01,
                 alpha=0.0001, batch_size="auto", max_iter=200, tol=1e-4,
                 n_iter_no_change=10, early_stopping=False, validation_fraction=0.1,
                 shuffle=True, clip_norm=5.0, momentum=0.9, nesterovs_momentum=True,
                 random_state=None, verbose=False, warm_start=False, dtype=np.float32,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, learning_rate="constant",
                 power_t=0.5):
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.embedding_size = embedding_size
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.alpha = alpha
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.shuffle = shuffle
        self.clip_norm = clip_norm
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.dtype = dtype
        # last, so that the arguments before keep their positions
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.learning_rate = learning_rate
        self.power_t = power_t

    # MLP's Adam hyperparameters and SGD's learning-rate schedule came after
    # the others: an estimator pickled before them (a joblib file) loads with
    # their defaults, which it trained with.
    _ADDED_DEFAULTS = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8,
                       "learning_rate": "constant", "power_t": 0.5}

    def __setstate__(self, state):
        for name, default in self._ADDED_DEFAULTS.items():
            state.setdefault(name, default)
        super().__setstate__(state)

    # ---------------------------------------------------------- checks
    def _check_hyperparameters(self):
        for name, options in (("cell", CELLS), ("solver", SOLVERS),
                              ("learning_rate", LEARNING_RATES)):
            if getattr(self, name) not in options:
                raise ValueError(f"{name}: expected one of {options}, got "
                                 f"{getattr(self, name)!r}")
        check_scalar(self.hidden_size, "hidden_size", numbers.Integral, min_val=1)
        check_scalar(self.num_layers, "num_layers", numbers.Integral, min_val=1)
        check_scalar(self.dropout, "dropout", numbers.Real, min_val=0, max_val=1,
                     include_boundaries="left")
        if self.embedding_size is not None:
            check_scalar(self.embedding_size, "embedding_size", numbers.Integral, min_val=1)
        check_scalar(self.learning_rate_init, "learning_rate_init", numbers.Real,
                     min_val=0, include_boundaries="neither")
        check_scalar(self.alpha, "alpha", numbers.Real, min_val=0)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            check_scalar(self.batch_size, "batch_size", numbers.Integral, min_val=1)
        check_scalar(self.max_iter, "max_iter", numbers.Integral, min_val=1)
        check_scalar(self.tol, "tol", numbers.Real, min_val=0)
        if self.n_iter_no_change != np.inf:
            check_scalar(self.n_iter_no_change, "n_iter_no_change", numbers.Integral,
                         min_val=1)
        check_scalar(self.validation_fraction, "validation_fraction", numbers.Real,
                     min_val=0, max_val=1, include_boundaries="neither")
        if self.clip_norm is not None:
            check_scalar(self.clip_norm, "clip_norm", numbers.Real, min_val=0,
                         include_boundaries="neither")
        check_scalar(self.momentum, "momentum", numbers.Real, min_val=0, max_val=1,
                     include_boundaries="left")
        for name in ("beta_1", "beta_2"):       # as MLPClassifier: [0, 1)
            check_scalar(getattr(self, name), name, numbers.Real, min_val=0, max_val=1,
                         include_boundaries="left")
        check_scalar(self.epsilon, "epsilon", numbers.Real, min_val=0,
                     include_boundaries="neither")
        check_scalar(self.power_t, "power_t", numbers.Real, min_val=0)
        for name in ("bidirectional", "early_stopping", "shuffle", "nesterovs_momentum",
                     "warm_start"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name}: expected True or False, got "
                                f"{getattr(self, name)!r}")
        return float_dtype(self.dtype)

    # ------------------------------------------------------------ model
    def _new_model(self, batch, n_outputs, dtype, rng):
        if batch.kind == "tokens":
            self.vocab_size_ = int(batch.data.max()) + 1
            inputs = dict(vocab_size=self.vocab_size_, embedding_size=self.embedding_size)
        else:
            inputs = dict(input_size=batch.data.shape[2])
        try:
            return self._model_class(
                n_outputs, **inputs, cell=self.cell, hidden_size=self.hidden_size,
                num_layers=self.num_layers, bidirectional=bool(self.bidirectional),
                dropout=float(self.dropout), dtype=dtype,
                random_state=int(rng.randint(np.iinfo(np.int32).max)))
        except MemoryError as exc:
            if batch.kind != "tokens":
                raise
            # The embedding has a row for every id up to the largest: one
            # stray huge id asks for terabytes.
            raise MemoryError(
                f"X: the largest token id is {self.vocab_size_ - 1}, so the embedding "
                f"would need {self.vocab_size_} rows, more memory than there is; token "
                "ids must number a vocabulary densely from 0 (TextTokenizer does)") from exc

    def _new_optimizer(self):
        lr = float(self.learning_rate_init)
        if self.solver == "adam":
            return Adam(lr=lr, beta1=float(self.beta_1), beta2=float(self.beta_2),
                        eps=float(self.epsilon))
        if self.momentum == 0:
            return SGD(lr=lr)
        cls = Nesterov if self.nesterovs_momentum else Momentum
        return cls(lr=lr, momentum=float(self.momentum))

    def _scores(self, batch):
        """The model's raw outputs for every sample, in fixed-size chunks."""
        out = []
        for rows in _batches(len(batch), PREDICT_CHUNK):
            data, lengths = batch.take(rows)
            out.append(self.model_.predict_scores(data, lengths))
        return np.concatenate(out, axis=0)

    # ------------------------------------------------------------- fit
    @contextlib.contextmanager
    def _unchanged_if_refused(self):
        """A call refused inside this block leaves the estimator as it was.
        The checks and the set-up set what they learn as they go
        (n_features_in_ and feature_names_in_ by scikit-learn's
        validate_data, classes_, the targets' scale, a new model); a fitted
        estimator must not keep them from a fit it refused (a split too
        small for early stopping, a vocabulary too large for memory).  The
        block only rebinds attributes, so a shallow copy of them is enough
        to put them back.  Training itself is outside: a fit that diverges
        leaves its weights, as MLP's does."""
        saved = dict(self.__dict__)
        try:
            yield
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    def _fit(self, X, y, incremental, sample_weight=None):
        with self._unchanged_if_refused():
            start = self._set_up(*self._checked_fit_inputs(X, y, incremental, sample_weight),
                                 incremental)
        return self._train(*start, incremental)

    def _checked_fit_inputs(self, X, y, incremental, sample_weight):
        """Every check of a fit or partial_fit, before anything is trained:
        -> (dtype, batch, y encoded, sample_weight, first_pass)."""
        dtype = self._check_hyperparameters()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "model_") or (not self.warm_start and not incremental)
        if not first_pass and float_dtype(self.model_.dtype) != dtype:
            raise ValueError(f"dtype: the fitted model is {self.model_.dtype}, got "
                             f"dtype={dtype}; refit without warm_start")
        batch = _check_X(self, X, dtype, reset=first_pass)
        if first_pass:
            self._input_kind = batch.kind
        if sample_weight is not None:
            # MLP's check, plus weights >= 0 (rnnfast.losses refuses others)
            sample_weight = _check_sample_weight(sample_weight, np.empty((len(batch), 0)),
                                                 dtype=np.float64, ensure_non_negative=True)
        y = self._check_y(y, len(batch), first_pass, incremental, dtype, sample_weight)
        return dtype, batch, y, sample_weight, first_pass

    def _set_up(self, dtype, batch, y, sample_weight, first_pass, incremental):
        """What a fit starts from: the model (new on a first pass), the
        records of the stopping rule, the optimizer, the validation split
        -> (batch, y, sample_weight, training indices, validation data)."""
        self._random_state = check_random_state(self.random_state)
        if first_pass or not incremental:
            self.n_iter_ = 0          # epochs of this fit (summed over partial_fit calls)
        if first_pass:
            self.model_ = self._new_model(batch, self._n_outputs(), dtype,
                                          self._random_state)
            self.loss_curve_ = []
            self.t_ = 0
        # What the stopping rule tracks: new on a first pass, and when a warm
        # start turns early_stopping on or off (its records would not fit).
        if first_pass or bool(self.early_stopping) != (self.validation_scores_ is not None):
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.validation_scores_ = None
                self.best_validation_score_ = None
                self.best_loss_ = np.inf
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._new_optimizer()
        return (batch, y, sample_weight) + self._validation_split(batch, y, sample_weight)

    def _train(self, batch, y, sample_weight, train_idx, val, incremental):
        try:
            self._fit_stochastic(batch, y, incremental, sample_weight, train_idx, val)
        except ValueError as exc:
            # the inputs were checked finite: NaN/Inf met inside the model (it
            # refuses them) means training diverged
            if self._weights_finite() and not isinstance(exc, NonFiniteError):
                raise
            raise ValueError(NON_FINITE) from exc
        if not self._weights_finite():
            raise ValueError(NON_FINITE)
        return self

    def _weights_finite(self):
        return all(np.isfinite(p).all() for p in self.model_.params)

    def _validation_split(self, batch, y, sample_weight):
        """(training sample indices, validation (batch, y, weights) or None).
        Drawn right after a first pass's weights, from the same generator."""
        train_idx = np.arange(len(batch))
        if not self.early_stopping:
            return train_idx, None
        stratify = y if self._is_classifier else None
        train_idx, val_idx = train_test_split(
            train_idx, random_state=self._random_state, test_size=self.validation_fraction,
            stratify=stratify)
        if val_idx.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase "
                             "'validation_fraction' or the size of your dataset.")
        if sample_weight is not None and not sample_weight[val_idx].any():
            # its weighted score would be 0 / 0: refused now, before training
            raise ValueError(
                f"sample_weight: all {val_idx.shape[0]} samples of the early-stopping "
                f"validation split (validation_fraction={self.validation_fraction}) "
                "have weight 0, so its weighted score is undefined; drop the samples of "
                "weight 0, raise validation_fraction, or change random_state")
        return train_idx, (_Batch(batch.kind, batch.data[val_idx],
                                  None if batch.lengths is None else batch.lengths[val_idx],
                                  batch.n_features), y[val_idx],
                           None if sample_weight is None else sample_weight[val_idx])

    def _fit_stochastic(self, batch, y, incremental, sample_weight, train_idx, val):
        model, opt, rng = self.model_, self._optimizer, self._random_state
        sw = sample_weight
        n_train = train_idx.shape[0]
        if self.batch_size == "auto":
            batch_size = min(self._auto_batch, n_train)
        else:
            if self.batch_size > n_train:
                warnings.warn("Got `batch_size` larger than sample size. It is going to "
                              "be clipped")
            batch_size = min(self.batch_size, n_train)
        model.train()
        converged = False
        for _ in range(self.max_iter):
            order = rng.permutation(train_idx) if self.shuffle else train_idx
            total = 0.0
            for sl in _batches(n_train, batch_size):
                rows = order[sl]
                data, lengths = batch.take(rows)
                nb = rows.shape[0]
                # MLP's weighting: the batch's loss is the weighted mean, and
                # its size (for the L2 term) the sum of its weights
                w = None if sw is None else sw[rows]
                size = nb if w is None else float(w.sum())
                if size == 0:           # only weights 0: a batch of no samples
                    continue
                total += model.forward(data, y[rows], lengths, sample_weight=w) * nb
                model.backward()
                if self.alpha:
                    # MLP's L2: 0.5 * alpha * ||w||^2 / batch size added to the loss
                    _add_scaled(model.grads, model.params, self.alpha / size)
                    total += 0.5 * self.alpha * _sum_squares(model.params) * nb / size
                if self.clip_norm is not None:
                    clip_grads(model.grads, self.clip_norm)
                opt.update(model.params, model.grads)
            self.n_iter_ += 1
            self.t_ += n_train
            loss = total / n_train
            self.loss_ = loss
            self.loss_curve_.append(loss)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
            self._update_no_improvement_count(val)
            self._schedule_learning_rate(opt)
            if self._no_improvement_count > self.n_iter_no_change:
                what = "Validation score" if val is not None else "Training loss"
                msg = (f"{what} did not improve more than tol={self.tol} for "
                       f"{self.n_iter_no_change} consecutive epochs.")
                if self._adaptive_lower_learning_rate(opt):
                    if self.verbose:
                        print(msg + f" Setting learning rate to {opt.lr:f}")
                    self._no_improvement_count = 0
                else:
                    if self.verbose:
                        print(msg + (" Learning rate too small." if self._adaptive()
                                     else "") + " Stopping.")
                    converged = True
                    break
            if incremental:
                break
        if not converged and not incremental:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                          "reached and the optimization hasn't converged yet.",
                          ConvergenceWarning)
        if val is not None and self._best_params is not None:
            for p, best in zip(model.params, self._best_params):
                p[...] = best
        model.eval()

    # MLP's learning-rate schedules, for solver='sgd' only (Adam ignores
    # them, as MLP's does): sklearn.neural_network._stochastic_optimizers.
    def _schedule_learning_rate(self, opt):
        """'invscaling', at the end of each epoch: learning_rate_init /
        (t_ + 1) ** power_t, t_ the samples seen so far."""
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            opt.lr = float(self.learning_rate_init) / (self.t_ + 1) ** float(self.power_t)

    def _adaptive(self):
        return self.solver == "sgd" and self.learning_rate == "adaptive"

    def _adaptive_lower_learning_rate(self, opt):
        """'adaptive', when the stopping rule fires: divide the learning
        rate by 5 and go on (True), unless it is already at most 1e-6
        (False: stop, as for the other schedules)."""
        if not self._adaptive() or opt.lr <= 1e-6:
            return False
        opt.lr /= 5.0
        return True

    def _update_no_improvement_count(self, val):
        if val is not None:
            score = self._score_batch(*val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = [p.copy() for p in self.model_.params]
        else:
            self._best_params = None
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def fit(self, X, y, sample_weight=None):
        """Fit the model to sequences X and targets y.

        Parameters
        ----------
        X : array of shape (n_samples, n_steps, n_features) or (n_samples, n_steps),
            or a list of arrays (n_steps_i, n_features), or a list of 1-D int
            arrays of token ids.
        y : array-like of shape (n_samples,) (or (n_samples, n_outputs) for
            the regressor).
        sample_weight : array-like of shape (n_samples,), default=None
            Weights >= 0, as MLPClassifier's: each minibatch's loss is the
            weighted mean, the L2 term is divided by the batch's weight, and
            the early-stopping score is weighted.  None: all 1.

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    def _validate_for_predict(self, X):
        check_is_fitted(self, "model_")
        return _check_X(self, X, float_dtype(self.model_.dtype), reset=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags


class RNNClassifier(ClassifierMixin, _BaseRNN):
    """Recurrent-network classifier: one class per sequence (many-to-one).

    A stacked, optionally bidirectional LSTM, GRU or plain RNN reads each
    sequence; its final state (forward direction at each sequence's own last
    step, reverse direction at step 0) feeds a softmax output layer trained
    with cross-entropy.  Follows ``sklearn.neural_network.MLPClassifier``.

    Parameters
    ----------
    cell : {'lstm', 'gru', 'rnn'}, default='lstm'
    hidden_size : int, default=32
        Units per layer and direction.
    num_layers : int, default=1
    bidirectional : bool, default=False
    dropout : float in [0, 1), default=0.0
        Between stacked layers and before the output layer, in training only.
    embedding_size : int or None, default=None
        Embedding width for token-id inputs (None: hidden_size).
    solver : {'adam', 'sgd'}, default='adam'
    learning_rate_init : float, default=0.01
    alpha : float, default=1e-4
        L2 penalty as in MLP: ``0.5 * alpha * ||w||^2 / batch size`` is added
        to each minibatch's mean loss, over all parameters.
    batch_size : int or 'auto', default='auto'
        'auto' is min(32, n_samples).
    max_iter : int, default=200
        Epochs (passes over the training data).
    tol, n_iter_no_change : stop when the training loss (or, with
        early_stopping, the validation accuracy) has not improved by tol for
        n_iter_no_change consecutive epochs.  Defaults 1e-4 and 10.
    early_stopping : bool, default=False
        Hold out validation_fraction (default 0.1, stratified) and keep the
        weights of the best validation accuracy.
    shuffle : bool, default=True
    clip_norm : float or None, default=5.0
        Global gradient-norm clipping per minibatch.
    momentum, nesterovs_momentum : for solver='sgd' (defaults 0.9, True).
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        For solver='sgd', as in MLPClassifier: 'invscaling' sets the step
        to ``learning_rate_init / (t_ + 1) ** power_t`` after each epoch
        (t_: samples seen); 'adaptive' divides it by 5 each time the
        stopping rule fires, and stops once it is at most 1e-6.
    power_t : float >= 0, default=0.5
        The exponent of 'invscaling'.
    beta_1, beta_2, epsilon : for solver='adam' (defaults 0.9, 0.999, 1e-8),
        as in MLPClassifier: the decay rates of the first and second moment
        estimates, in [0, 1), and the denominator's epsilon, > 0.
    random_state : None, int or RandomState
        Weights, dropout, shuffling and the validation split.
    verbose : bool, default=False
    warm_start : bool, default=False
    dtype : np.float32 (default) or np.float64

    Attributes
    ----------
    classes_, n_features_in_, feature_names_in_ (2-D DataFrame input only),
    vocab_size_ (token inputs only), model_ (the rnnfast SequenceClassifier),
    loss_, loss_curve_, best_loss_, validation_scores_,
    best_validation_score_, n_iter_, t_.
    """
    _model_class = SequenceClassifier
    _is_classifier = True
    _auto_batch = 32

    def _n_outputs(self):
        return len(self.classes_)

    def _check_y(self, y, n, first_pass, incremental, dtype, sample_weight=None):
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the "
                             "target y is None")
        y = column_or_1d(check_array(y, ensure_2d=False, dtype=None, input_name="y"),
                         warn=True)
        check_consistent_length(np.empty(n), y)
        check_classification_targets(y)
        if first_pass and not incremental:
            self._label_encoder = LabelEncoder().fit(y)
            self.classes_ = self._label_encoder.classes_
            if len(self.classes_) < 2:
                raise ValueError(f"{type(self).__name__} needs samples of at least 2 "
                                 f"classes in the data, but the data contains only one "
                                 f"class: {self.classes_[0]!r}")
        elif self.warm_start and not incremental:
            if set(unique_labels(y)) != set(self.classes_):
                raise ValueError("warm_start can only be used where `y` has the same "
                                 "classes as in the previous call to fit. Previously got "
                                 f"{self.classes_}, `y` has {unique_labels(y)}")
        elif np.setdiff1d(unique_labels(y), self.classes_).size:
            raise ValueError(f"`y` has classes not in `self.classes_`. "
                             f"`self.classes_` has {self.classes_}. 'y' has "
                             f"{unique_labels(y)}.")
        return self._label_encoder.transform(y)

    def partial_fit(self, X, y, *, sample_weight=None, classes=None):
        """One epoch over (X, y).  `classes` (all the classes, e.g.
        ``np.unique(y_all)``) is required on the first call; sample_weight
        as in fit.  Both by keyword: before sample_weight, `classes` came
        third, and a list of classes passed there must not be read as
        weights."""
        with self._unchanged_if_refused():      # classes_ too, on a first call
            if not hasattr(self, "classes_"):
                if classes is None:
                    raise ValueError("classes must be passed on the first call to "
                                     "partial_fit.")
                self._label_encoder = LabelEncoder().fit(column_or_1d(np.asarray(classes)))
                self.classes_ = self._label_encoder.classes_
                if len(self.classes_) < 2:
                    raise ValueError(f"classes: {type(self).__name__} needs at least 2 "
                                     f"classes, got {self.classes_}")
            elif classes is not None and not np.array_equal(
                    self.classes_, np.unique(np.asarray(classes))):
                raise ValueError(f"`classes={np.asarray(classes)}` is not the same as on "
                                 f"last call to partial_fit, was: {self.classes_}")
            start = self._set_up(*self._checked_fit_inputs(X, y, True, sample_weight), True)
        return self._train(*start, True)

    def _score_batch(self, batch, y_enc, sample_weight):
        return accuracy_score(y_enc, self._scores(batch).argmax(axis=1),
                              sample_weight=sample_weight)

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), columns in classes_ order."""
        s = self._scores(self._validate_for_predict(X)).astype(np.float64)
        s -= s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
        return p

    def predict_log_proba(self, X):
        return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most probable class of each sequence."""
        s = self._scores(self._validate_for_predict(X))
        return self.classes_[s.argmax(axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags


class RNNRegressor(RegressorMixin, _BaseRNN):
    """Recurrent-network regressor: one value (or n_outputs values) per
    sequence, squared error.  Same hyperparameters as RNNClassifier.

    The targets are standardised inside (each output to mean 0, variance 1,
    from the first fit or partial_fit call; a constant output keeps scale
    1) and predictions mapped back, so
    the defaults work whatever the targets' units; loss_curve_ is in the
    standardised units.

    Attributes: n_features_in_, n_outputs_, model_ (the rnnfast
    SequenceRegressor), loss_, loss_curve_, best_loss_, validation_scores_
    (R^2), best_validation_score_, n_iter_, t_, vocab_size_ (token inputs).
    """
    _model_class = SequenceRegressor
    _is_classifier = False
    _auto_batch = 32

    def _n_outputs(self):
        return self.n_outputs_

    def _check_y(self, y, n, first_pass, incremental, dtype, sample_weight=None):
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the "
                             "target y is None")
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if y.ndim not in (1, 2):
            raise ValueError(f"y: expected shape (n_samples,) or (n_samples, n_outputs), "
                             f"got shape {y.shape}")
        check_consistent_length(np.empty(n), y)
        y2 = y.reshape(n, -1)
        if first_pass:
            self.n_outputs_ = y2.shape[1]
            self._y_1d = y.ndim == 1
            # weighted as the loss is, so that integer weights are repeats
            self._y_mean = np.average(y2, axis=0, weights=sample_weight)
            var = np.average((y2 - self._y_mean) ** 2, axis=0, weights=sample_weight)
            self._y_scale = np.where(_constant(var, self._y_mean, n), 1.0, np.sqrt(var))
        elif y2.shape[1] != self.n_outputs_:
            raise ValueError(f"y: expected {self.n_outputs_} outputs as in fit, got "
                             f"shape {y.shape}")
        return ((y2 - self._y_mean) / self._y_scale).astype(dtype)

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y); sample_weight as in fit."""
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def _score_batch(self, batch, y_std, sample_weight):
        return r2_score(y_std, self._scores(batch), sample_weight=sample_weight)

    def predict(self, X):
        """Predicted values, (n_samples,) or (n_samples, n_outputs), float64."""
        s = self._scores(self._validate_for_predict(X)).astype(np.float64)
        y = s * self._y_scale + self._y_mean
        return y.ravel() if self._y_1d else y

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


# ==================================================================== text
class TextTokenizer(TransformerMixin, BaseEstimator):
    """Raw strings -> token-id sequences, for ``make_pipeline(TextTokenizer(),
    RNNClassifier())``.

    Parameters
    ----------
    level : {'char', 'word'}, default='char'
        'char': every character is a token; 'word': the matches of
        token_pattern.
    lowercase : bool, default=True
    token_pattern : str, default=r"(?u)\\b\\w+\\b"
        Regular expression of a word (level='word' only).
    max_features : int or None, default=None
        Keep only the most frequent tokens (ties: first seen first).
    min_frequency : int, default=1
        Drop tokens seen fewer times in fit.

    Attributes
    ----------
    vocabulary_ : dict token -> id.  Ids start at 2: id 0 is padding (never
        emitted) and id 1 the unknown token (tokens not in the vocabulary).
    vocab_size_ : int, len(vocabulary_) + 2.

    transform(X) returns a list of 1-D int64 arrays, one per string, of the
    string's own length; a string with no token gives [1] (one unknown
    token), so every sequence has at least one step.
    """
    PAD, UNK = 0, 1

    def __init__(self, level="char", lowercase=True, token_pattern=r"(?u)\b\w+\b",
                 max_features=None, min_frequency=1):
        self.level = level
        self.lowercase = lowercase
        self.token_pattern = token_pattern
        self.max_features = max_features
        self.min_frequency = min_frequency

    def _docs(self, X):
        if isinstance(X, (str, bytes)):
            raise ValueError("Iterable over raw text documents expected, string object "
                             "received.")
        docs = list(X)
        for i, d in enumerate(docs):
            if not isinstance(d, str):
                raise TypeError(f"X[{i}]: expected a string, got {type(d).__name__}")
        return docs

    def _tokens(self, doc, pattern=None):
        if self.lowercase:
            doc = doc.lower()
        if self.level == "char":
            return list(doc)
        return (pattern or self._pattern).findall(doc)

    def fit(self, X, y=None):
        if self.level not in ("char", "word"):
            raise ValueError(f"level: expected 'char' or 'word', got {self.level!r}")
        if self.max_features is not None:
            check_scalar(self.max_features, "max_features", numbers.Integral, min_val=1)
        check_scalar(self.min_frequency, "min_frequency", numbers.Integral, min_val=1)
        # the pattern is kept only with the vocabulary it made: a refused fit
        # leaves a fitted tokenizer as it was
        pattern = re.compile(self.token_pattern)
        if self.level == "word" and pattern.groups > 1:
            # findall would give tuples of groups as tokens (CountVectorizer refuses too)
            raise ValueError(f"token_pattern: expected at most one capturing group, got "
                             f"{pattern.groups} in {self.token_pattern!r}")
        docs = self._docs(X)
        if not docs:
            raise ValueError("X: expected at least one document, got none")
        counts = collections.Counter()
        for d in docs:
            counts.update(self._tokens(d, pattern))
        kept = [t for t, c in counts.items() if c >= self.min_frequency]
        # most frequent first; Counter keeps first-seen order among ties
        kept.sort(key=lambda t: -counts[t])
        if self.max_features is not None:
            kept = kept[:self.max_features]
        self._pattern = pattern
        self.vocabulary_ = {t: i + 2 for i, t in enumerate(kept)}
        self.vocab_size_ = len(self.vocabulary_) + 2
        return self

    def transform(self, X):
        check_is_fitted(self)
        get = self.vocabulary_.get
        out = []
        for d in self._docs(X):
            ids = [get(t, self.UNK) for t in self._tokens(d)] or [self.UNK]
            out.append(np.array(ids, dtype=np.int64))
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = True
        return tags
