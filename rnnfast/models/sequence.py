"""Sequence heads over a stacked (optionally bidirectional) RNN/LSTM/GRU:

    SequenceTagger      synced many-to-many: one label per step
    SequenceClassifier  many-to-one: one class per sequence
    SequenceRegressor   many-to-one: n_outputs real values per sequence

Inputs X are either float features (N, T, input_size), or int token ids
(N, T) read through an embedding when `vocab_size` is given.  `lengths`
(N,) of ints in 1..T makes a batch ragged: steps past a sequence's length
are ignored (token ids there may be anything, e.g. -1 padding).

Padding anywhere, as Keras masks it: `mask_zero=True` (token ids) reads id 0
as padding wherever it lies, as Keras's Embedding(mask_zero=True) does;
`mask_value=v` (float features) a step whose features all equal v, as
keras.layers.Masking(v) does.  Keras skips a masked step (the state stays as
it was), so each sequence is read as its other steps in order: [0, 0, 5, 7],
[5, 0, 7] and [5, 7, 0] give one prediction, and a sequence of padding only
gets the features of the network's zero initial state.  A tagger's masked
steps get what Keras gives them: the previous step's features (zeros before
the first real step), zeros when bidirectional; their labels do not count.

The many-to-one heads read the network's final state h_n of the last
layer: for each sequence the forward direction's state at its own last
step and, when bidirectional, the reverse direction's state at t = 0,
concatenated (N, num_directions * H), forward half first.

`dropout` acts between stacked layers and on the features fed to the
output layer, in training mode only.  Weights: the network's are PyTorch's
U(-1/sqrt(H), 1/sqrt(H)); the embedding N(0, 1); the output layer
U(-1/sqrt(F), 1/sqrt(F)) with zero bias.

Every head: forward(X, y, lengths=None) -> loss, backward(),
predict_scores(X, lengths=None) (evaluation mode), params, grads,
train()/eval(), get_config().  Each class is self-contained: the
scikit-learn estimators build on them.
"""
import numbers

import numpy as np

from ..layers import Affine, Embedding, TimeAffine, TimeDropout
from ..layers.embedding import check_ids
from ..losses import HuberLoss, MSELoss, SoftmaxWithLoss, TimeSoftmaxWithLoss, log_softmax
from .._rnn import first_bad_class_id
from .._validation import check_array, check_int, check_lengths, check_sample_weight
from ._base import CELLS, Model, check_cell, check_probability, child_rng


def _skip_padding(X, keep, lengths):
    """Keras's masking of a checked batch X (N, T) or (N, T, D), keep (N, T)
    marking the steps that are not padding: each row's kept steps moved to
    its front in order, and their counts as the lengths (0 for a row of
    padding only) -> (X, lengths, keep); X, lengths and None when every
    step is kept.  T shrinks to the longest count (at least 1)."""
    if lengths is not None:
        keep &= np.arange(X.shape[1]) < lengths[:, None]
    if keep.all():
        return X, lengths, None
    counts = keep.sum(axis=1)
    order = np.argsort(~keep, axis=1, kind="stable")    # stable: the steps' order kept
    order = order[:, :max(int(counts.max()), 1)]
    if X.ndim == 3:
        order = order[:, :, None]
    return np.take_along_axis(X, order, axis=1), counts.astype(np.intp), keep


class _SequenceModel(Model):
    """Embedding (optional) -> network -> dropout -> output layer."""
    _many_to_one = True
    # no masking: also what a model pickled before masking existed reads
    mask_zero, mask_value, _masking = False, None, False

    def __init__(self, n_out, input_size=None, vocab_size=None, embedding_size=None,
                 cell="lstm", hidden_size=64, num_layers=1, bidirectional=False,
                 dropout=0.0, dtype=np.float32, random_state=None, mask_zero=False,
                 mask_value=None, **extra):
        if (input_size is None) == (vocab_size is None):
            raise ValueError("input_size, vocab_size: give exactly one (input_size for "
                             "float features (N, T, F), vocab_size for token ids (N, T)); "
                             f"got input_size={input_size!r}, vocab_size={vocab_size!r}")
        check_cell(cell)
        H = check_int(hidden_size, "hidden_size")
        dropout = check_probability(dropout, "dropout")
        if not isinstance(mask_zero, (bool, np.bool_)):
            raise TypeError(f"mask_zero: expected True or False, got {mask_zero!r}")
        self.mask_zero = bool(mask_zero)
        if self.mask_zero and vocab_size is None:
            raise ValueError("mask_zero: True reads token id 0 as padding; it needs "
                             "vocab_size (token ids), not input_size (float features); "
                             "mask_value masks float features")
        if mask_value is not None:
            if (isinstance(mask_value, (bool, np.bool_))
                    or not isinstance(mask_value, numbers.Real)
                    or not np.isfinite(mask_value)):
                raise TypeError(f"mask_value: expected None or a finite real number, got "
                                f"{mask_value!r}")
            if input_size is None:
                raise ValueError("mask_value: masks steps of float features (input_size); "
                                 "token ids (vocab_size) are masked by mask_zero")
            mask_value = float(mask_value)
        self.mask_value = mask_value
        self._masking = self.mask_zero or mask_value is not None
        masking = dict(mask_zero=self.mask_zero, mask_value=mask_value)
        rng = self._setup(dict(input_size=input_size, vocab_size=vocab_size,
                               embedding_size=embedding_size, cell=cell, hidden_size=H,
                               num_layers=num_layers, bidirectional=bool(bidirectional),
                               dropout=dropout, **masking, **extra), dtype, random_state)
        dt = self.dtype
        self.embed = None
        if vocab_size is not None:
            V = check_int(vocab_size, "vocab_size")
            D = H if embedding_size is None else check_int(embedding_size, "embedding_size")
            self.embed = Embedding(rng.standard_normal((V, D)).astype(dt))
        else:
            D = check_int(input_size, "input_size")
            if embedding_size is not None:
                raise ValueError("embedding_size: only used with vocab_size (token ids)")
        self.network = CELLS[cell](D, H, num_layers, bidirectional=bidirectional,
                                   dropout=dropout, dtype=dt, random_state=child_rng(rng))
        self.head_dropout = TimeDropout(dropout, child_rng(rng))
        F = self.network.num_directions * H
        bound = 1 / np.sqrt(F)
        head = Affine if self._many_to_one else TimeAffine
        self.affine = head(rng.uniform(-bound, bound, (F, n_out)).astype(dt),
                           np.zeros(n_out, dt))
        self.layers = [self.network, self.head_dropout, self.affine]
        owners = ([self.embed] if self.embed is not None else []) + [self.network, self.affine]
        self._collect([p for o in owners for p in o.params],
                      [g for o in owners for g in o.grads])
        self._cache = None

    # ------------------------------------------------------------ features
    def _checked(self, X, lengths):
        """-> (X checked: features (N, T, D), or ids (N, T) with padding read
        as 0; lengths (N,) as intp, or None: every sequence fills all T
        steps; keep: None, or with masking the (N, T) steps that are not
        padding, X's kept steps then moved before the padding and lengths
        their counts, which may be 0, see _skip_padding).  Changes nothing
        of the model.  None stays None: the network's compiled common path takes no
        lengths (an array of all T cost a batch of 32 short sequences ~5 us,
        docs/performance.md item 151)."""
        if self.embed is None:
            X = check_array(X, "X", self.dtype, ("N", "T", self.network.input_size))
            if lengths is not None:
                lengths = check_lengths(lengths, X.shape[0], X.shape[1])
            if self.mask_value is None:
                return X, lengths, None
            # compared in X's dtype, as Keras's Masking compares
            return _skip_padding(X, (X != X.dtype.type(self.mask_value)).any(axis=2),
                                 lengths)
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"X: expected token ids of shape (N, T), got shape {X.shape}")
        if lengths is not None:
            lengths = check_lengths(lengths, X.shape[0], X.shape[1])
        if X.dtype.kind in "iu":
            # padding past each length may hold anything: read it as id 0.
            # A copy either way: the embedding keeps the ids for its backward,
            # and the caller's array may change before it
            X = X.copy() if lengths is None else np.where(
                np.arange(X.shape[1]) < lengths[:, None], X, 0)
        X = check_ids(X, "X", self.embed.vocab_size, ("N", "T"))
        return _skip_padding(X, X != 0, lengths) if self.mask_zero else (X, lengths, None)

    def _network_input(self, X):
        """Checked X -> the network's input (N, T, D): X itself, or the
        embedding's rows (which it keeps for its backward)."""
        if self.embed is None:
            return X
        # Embedding (not TimeEmbedding): one lookup over all N*T ids
        return self.embed.forward(X.reshape(-1)).reshape(X.shape + (-1,))

    def _features(self, X, lengths):
        X, lengths, keep = self._checked(X, lengths)
        return self._features_of(self._network_input(X), lengths, keep)

    def _features_of(self, xs, lengths, keep):
        empty = spread = None
        if not self._many_to_one and keep is not None:
            # a masked tagger's kept steps, and where the moved batch holds them
            spread = (keep, np.arange(xs.shape[1]) < lengths[:, None])
        if self._masking and lengths is not None and not lengths.all():
            # sequences of padding only: the network reads one step of them
            # (a kernel length is 1..T), whose features are then zeroed
            empty = lengths == 0
            lengths = np.maximum(lengths, 1)
        hs, state = self.network.forward(xs, lengths=lengths)
        self._cache = (hs.shape, empty, spread)
        if not self._many_to_one:
            return self.head_dropout.forward(hs if spread is None else self._spread(hs, *spread))
        h_n = state[0] if self.network.cell == "lstm" else state
        nd = self.network.num_directions
        # last layer's directions (nd, N, H) -> (N, nd*H), forward half first;
        # one direction: its rows as they lie (h_n is this call's own array)
        feats = h_n[-1] if nd == 1 else np.concatenate(list(h_n[-nd:]), axis=1)
        if empty is not None:           # Keras's zero initial state
            feats = np.where(empty[:, None], 0, feats).astype(self.dtype, copy=False)
        return self.head_dropout.forward(feats)

    def _spread(self, hs, keep, moved):
        """A masked tagger's features at the original steps (N, T, F): a kept
        step gets its own, a masked one what Keras gives it: the previous
        kept step's (zeros before the first), zeros when bidirectional."""
        out = np.zeros(keep.shape + hs.shape[2:], self.dtype)
        out[keep] = hs[moved]
        if self.network.num_directions == 1:
            previous = np.cumsum(keep, axis=1) - 1      # its place in the moved batch
            rows, steps = np.nonzero(~keep & (previous >= 0))
            out[rows, steps] = hs[rows, previous[rows, steps]]
        return out

    def _backward_features(self, dfeats):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward needs a forward first")
        (N, T, F), empty, spread = self._cache
        self._cache = None
        d = self.head_dropout.backward(dfeats)
        if empty is not None and self._many_to_one:
            d = np.where(empty[:, None], 0, d).astype(self.dtype, copy=False)
        if spread is not None:
            # a masked step's label never counts, so the features it was given
            # get no gradient: only the kept steps' go back, one to one
            keep, moved = spread
            back = np.zeros((N, T, F), self.dtype)
            back[moved] = d[keep]
            d = back
        net = self.network
        if self._many_to_one:
            nd, H = net.num_directions, net.hidden_size
            dh = np.zeros((net.num_layers * nd, N, H), self.dtype)
            dh[-nd:] = d.reshape(N, nd, H).transpose(1, 0, 2)
            dstate = (dh, np.zeros_like(dh)) if net.cell == "lstm" else dh
            dxs = net.backward(np.zeros((N, T, F), self.dtype), dstate)
        else:
            dxs = net.backward(d)
        if self.embed is not None:
            self.embed.backward(dxs.reshape(N * T, -1))

    def _scores(self, X, lengths):
        return self.affine.forward(self._features(X, lengths))

    def predict_scores(self, X, lengths=None):
        """Raw scores in evaluation mode (see the subclass for the shape)."""
        return self._in_eval(self._scores, X, lengths)

    def forward(self, X, y, lengths=None, sample_weight=None):
        """The loss of a batch (training mode).  sample_weight (N,): each
        sample's weight in the mean (rnnfast.losses; None: all 1).  X,
        lengths, y and sample_weight are all checked before any layer runs:
        a refused call changes nothing (the dropout draws, the caches the
        last forward left for its backward)."""
        X, lengths, keep = self._checked(X, lengths)
        if keep is None:
            N, T = X.shape[:2]
            # the steps a tagger counts (the many-to-one heads check every
            # label: no mask to build, ~2 us of a 32 x 35 batch)
            counted = (None if lengths is None or self._many_to_one
                       else np.arange(T) < lengths[:, None])
        else:                           # masking: the original steps
            (N, T), counted = keep.shape, keep
        y = self._check_y(y, N, T, counted)
        sample_weight = check_sample_weight(sample_weight, N)
        scores = self.affine.forward(self._features_of(self._network_input(X), lengths, keep))
        # y from the subclass's _check_y (a tagger's padding set to its
        # ignore_label: no mask needed)
        return self.loss_layer.forward(scores, y, sample_weight=sample_weight)

    def backward(self, dout=1.0):
        """Backpropagate the last forward's loss (times dout): fills grads."""
        self._backward_features(self.affine.backward(self.loss_layer.backward(dout)))


class SequenceClassifier(_SequenceModel):
    """Many-to-one classifier: X -> logits (N, n_classes); y int (N,) in
    0..n_classes-1; softmax cross-entropy, mean over the batch."""

    def __init__(self, n_classes, input_size=None, vocab_size=None, embedding_size=None,
                 cell="lstm", hidden_size=64, num_layers=1, bidirectional=False,
                 dropout=0.0, dtype=np.float32, random_state=None, mask_zero=False,
                 mask_value=None):
        self.n_classes = check_int(n_classes, "n_classes", minimum=2)
        super().__init__(self.n_classes, input_size, vocab_size, embedding_size, cell,
                         hidden_size, num_layers, bidirectional, dropout, dtype,
                         random_state, mask_zero, mask_value, n_classes=self.n_classes)
        self.loss_layer = SoftmaxWithLoss()

    def _check_y(self, y, N, T, counted):
        y = np.asarray(y)
        if y.shape != (N,):
            raise ValueError(f"y: expected shape ({N},), got shape {y.shape}")
        if y.dtype.kind not in "iu":
            raise TypeError(f"y: expected integer class ids of shape {y.shape}, got dtype {y.dtype}")
        # the compiled test (first_bad_class_id, ~0.5 us) before NumPy's min
        # and max (~2 us), which only word the error; ignore_label=0 lets
        # nothing out of 0..n_classes-1 through
        if y.size and first_bad_class_id(np.ascontiguousarray(y, np.intp).reshape(-1),
                                         self.n_classes, 0) >= 0:
            # every sample counts here: no ignore_label in a many-to-one classifier
            raise ValueError(f"y: class ids must lie in 0..{self.n_classes - 1}, got min "
                             f"{y.min()} and max {y.max()} (shape {y.shape})")
        return y

    def predict_proba(self, X, lengths=None):
        """Class probabilities (N, n_classes)."""
        return np.exp(log_softmax(self.predict_scores(X, lengths)))


class SequenceRegressor(_SequenceModel):
    """Many-to-one regressor: X -> (N, n_outputs); y (N, n_outputs), or (N,)
    when n_outputs == 1.  loss "squared_error" (mean over all outputs) or
    "huber" (with huber_delta)."""

    def __init__(self, n_outputs=1, input_size=None, vocab_size=None, embedding_size=None,
                 cell="lstm", hidden_size=64, num_layers=1, bidirectional=False,
                 dropout=0.0, loss="squared_error", huber_delta=1.0, dtype=np.float32,
                 random_state=None, mask_zero=False, mask_value=None):
        self.n_outputs = check_int(n_outputs, "n_outputs")
        if loss not in ("squared_error", "huber"):
            raise ValueError(f"loss: expected 'squared_error' or 'huber', got {loss!r}")
        super().__init__(self.n_outputs, input_size, vocab_size, embedding_size, cell,
                         hidden_size, num_layers, bidirectional, dropout, dtype,
                         random_state, mask_zero, mask_value, n_outputs=self.n_outputs,
                         loss=loss, huber_delta=huber_delta)
        self.loss_layer = MSELoss() if loss == "squared_error" else HuberLoss(huber_delta)

    def _check_y(self, y, N, T, counted):
        y = np.asarray(y)
        if y.ndim == 1 and self.n_outputs == 1:
            y = y[:, None]
        return check_array(y, "y", self.dtype, (N, self.n_outputs))


class SequenceTagger(_SequenceModel):
    """Synced many-to-many: X -> logits (N, T, n_tags); y int (N, T).
    Steps past `lengths`, masked steps (mask_zero, mask_value) and labels
    equal to ignore_label do not count; the loss is the mean over the
    steps that do."""
    _many_to_one = False

    def __init__(self, n_tags, input_size=None, vocab_size=None, embedding_size=None,
                 cell="lstm", hidden_size=64, num_layers=1, bidirectional=False,
                 dropout=0.0, ignore_label=-1, dtype=np.float32, random_state=None,
                 mask_zero=False, mask_value=None):
        self.n_tags = check_int(n_tags, "n_tags", minimum=2)
        super().__init__(self.n_tags, input_size, vocab_size, embedding_size, cell,
                         hidden_size, num_layers, bidirectional, dropout, dtype,
                         random_state, mask_zero, mask_value, n_tags=self.n_tags,
                         ignore_label=ignore_label)
        self.loss_layer = TimeSoftmaxWithLoss(ignore_label=ignore_label)

    def _check_y(self, y, N, T, counted):
        """y with the labels of the steps not counted (past each length, or
        masked; counted (N, T) bool, or None: all) set to ignore_label."""
        y = np.asarray(y)
        if y.shape != (N, T):
            raise ValueError(f"y: expected shape ({N}, {T}), got shape {y.shape}")
        if y.dtype.kind not in "iu":
            raise TypeError(f"y: expected integer tag ids of shape ({N}, {T}), got dtype "
                            f"{y.dtype}")
        mask = np.ones((N, T), bool) if counted is None else counted
        # labels past a sequence's length (or masked) are padding: never range-checked
        y = np.where(mask, y, self.loss_layer.ignore_label)
        bad = mask & (y != self.loss_layer.ignore_label) & ((y < 0) | (y >= self.n_tags))
        if bad.any():
            raise ValueError(f"y: tag ids must lie in 0..{self.n_tags - 1} (or equal "
                             f"ignore_label={self.loss_layer.ignore_label}), got "
                             f"{y[bad][0]}")
        return y

    def predict_proba(self, X, lengths=None):
        """Tag probabilities (N, T, n_tags), each step's softmax over the
        tags (evaluation mode).  Steps past a sequence's length hold the
        output layer's answer to the zero features the network gives
        there (with masking, what a masked step gets): ignore them."""
        return np.exp(log_softmax(self.predict_scores(X, lengths)))
