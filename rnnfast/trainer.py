"""The training loop: epochs of forward, backward, clip, update.

    trainer = Trainer(model, optimizer, clip_norm=5.0)
    history = trainer.fit(corpus, epochs=13, batch_size=20, time_size=20,
                          eval_fn=lambda m: {"valid_ppl": perplexity(m, valid)})

Two kinds of data:

* a 1-D array of token ids (or a ``rnnfast.data.StreamBatcher``): language
  modelling with truncated BPTT.  The model's state is reset at the start of
  each epoch (``model.reset_state()``; Zaremba's main.lua, PyTorch's
  word_language_model) and carried from batch to batch; the batcher's read
  position carries across epochs.  ``carry_state=True`` carries the state
  across epochs too (DLFS2's RnnlmTrainer).
* a tuple ``(X, Y)`` or ``(X, Y, lengths)`` of arrays with one row per
  sample: minibatches, reshuffled each epoch by the trainer's seeded
  Generator; ``lengths`` is passed to ``model.forward(..., lengths=...)``.

The model follows the textbook protocol: ``params``, ``grads``,
``forward(x, t) -> loss``, ``backward()``, optionally ``train()``/``eval()``
and ``reset_state()``.  The optimizer has ``update(params, grads)`` and an
``lr`` attribute (rnnfast.optim).

Each epoch may end with an evaluation (``eval_fn(model)`` returning a number
or a dict of numbers, run in evaluation mode), a learning-rate schedule
step, early stopping and an atomic checkpoint (rnnfast.io) from which
``fit(..., resume_from=path)`` continues exactly.  A non-finite loss or
gradient stops training with ``TrainingDivergedError`` before any update is
applied, so the model keeps the weights of the last good step.  The
progress bar goes to stderr and only when ``verbose``.
"""
import copy
import itertools
import math
import numbers
import sys
import time
import types

import numpy as np

from . import io as rio
from .data import StreamBatcher
from .layers.dropout import as_generator
from .optim import _check_rate, clip_grads, global_norm
from ._validation import NonFiniteError, check_int, finite_array


class TrainingDivergedError(FloatingPointError):
    """A non-finite loss or gradient; ``.history`` holds the epochs done."""

    def __init__(self, message, history=None):
        super().__init__(message)
        self.history = history


def _generators(obj, path="model", seen=None, depth=0):
    """(path, Generator) for every numpy Generator held by the model or its
    layers (dropout masks), in a fixed order, so checkpoints can restore them."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 6:
        return
    seen.add(id(obj))
    if isinstance(obj, np.random.Generator):
        yield path, obj
        return
    if isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            yield from _generators(item, f"{path}[{i}]", seen, depth + 1)
        return
    if isinstance(obj, (type, types.ModuleType, types.FunctionType, types.MethodType)) \
            or not hasattr(obj, "__dict__"):
        return
    for name in sorted(vars(obj)):
        value = vars(obj)[name]
        if isinstance(value, np.ndarray):
            continue
        yield from _generators(value, f"{path}.{name}", seen, depth + 1)


def _nonfinite(text):
    """float(text) for the text of a NaN or an infinity saved in a checkpoint."""
    value = float(text)
    if math.isfinite(value):
        raise ValueError(f"expected the text of a NaN or an infinity, got {text!r}")
    return value


def _finite(array):
    """Whether an array of the data holds no NaN or Inf (ids always do not)."""
    a = np.asarray(array)
    return a.dtype.kind not in "fc" or finite_array(np.ascontiguousarray(a))


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _best_weights(arrays, like):
    """A checkpoint's saved best weights, checked against the model's params."""
    if len(arrays) != len(like):
        raise ValueError(f"the checkpoint holds {len(arrays)} best weights, the model has "
                         f"{len(like)} params")
    for a, p in zip(arrays, like):
        if a.shape != p.shape:
            raise ValueError(f"a best weight of shape {a.shape} where the model has {p.shape}")
    return [a.astype(p.dtype, copy=True) for a, p in zip(arrays, like)]


def _metric(value, name, epoch):
    """A number returned by eval_fn, as a float; anything else names eval_fn."""
    if value is None or isinstance(value, (bool, np.bool_, str, bytes)) or np.ndim(value):
        raise TypeError(f"eval_fn: expected a number{name} at epoch {epoch}, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"eval_fn: expected a number{name} at epoch {epoch}, got "
                        f"{value!r}") from None


class _Progress:
    """One carriage-return line per epoch on a text stream."""

    def __init__(self, stream, epoch, epochs, total, unit):
        self.stream, self.epoch, self.epochs = stream, epoch, epochs
        self.total, self.unit = total, unit
        self.last = 0.0

    def update(self, done, loss, rate, force=False):
        now = time.perf_counter()
        if not force and now - self.last < 0.2 and done < self.total:
            return
        self.last = now
        width = 20
        fill = int(width * done / max(self.total, 1))
        self.stream.write(f"\repoch {self.epoch}/{self.epochs} [{'#' * fill}{'.' * (width - fill)}]"
                          f" {done}/{self.total} loss {loss:.4f} {rate:,.0f} {self.unit}/s ")
        self.stream.flush()

    def close(self, summary):
        self.stream.write("\r" + summary + " " * 20 + "\n")
        self.stream.flush()


class Trainer:
    """Trainer(model, optimizer, clip_norm=None, lr_schedule=None, ...)

    clip_norm: rescale all gradients together when their global L2 norm
        exceeds it (Pascanu et al.; DLFS2's clip_grads; Zaremba's 5).
    lr_schedule: rnnfast.optim.StepDecay (``step(epoch)`` before each epoch),
        rnnfast.optim.ReduceOnPlateau (``step(value)`` after each
        evaluation, with the monitored value), or a callable
        ``epoch -> lr`` (epochs count from 1).
    checkpoint: a path; the model, the optimizer state, the epoch, the RNG
        states and the history are saved there atomically every
        `checkpoint_every` epochs.
    random_state: None, an int or a Generator; shuffles minibatches.
    carry_state: language modelling only (a 1-D corpus or a StreamBatcher):
        False (default) resets the model's state at each epoch's start;
        True carries it from an epoch's last batch into the next epoch's
        first, as DLFS2's RnnlmTrainer (the evaluation between them does
        not disturb it, and checkpoints keep it, for an rnnfast model
        whose ``network`` holds the state).
    verbose: a progress bar with the loss and tokens per second on
        `stream` (stderr by default).
    """

    def __init__(self, model, optimizer, clip_norm=None, lr_schedule=None, checkpoint=None,
                 checkpoint_every=1, random_state=None, verbose=True, stream=None,
                 carry_state=False):
        for attr in ("params", "grads", "forward", "backward"):
            if not hasattr(model, attr):
                raise TypeError(f"model: expected an object with params, grads, forward and "
                                f"backward, got {type(model).__name__} without {attr}")
        if not hasattr(optimizer, "update"):
            raise TypeError(f"optimizer: expected an object with update(params, grads), got "
                            f"{type(optimizer).__name__}")
        # any real number (numpy scalars too), but not a bool: True is no norm
        if clip_norm is not None and not (isinstance(clip_norm, numbers.Real)
                                          and not isinstance(clip_norm, (bool, np.bool_))
                                          and clip_norm > 0):
            raise ValueError(f"clip_norm: expected a positive number or None, got {clip_norm!r}")
        self.model, self.optimizer = model, optimizer
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        self.lr_schedule = lr_schedule
        self.checkpoint = checkpoint
        self.checkpoint_every = check_int(checkpoint_every, "checkpoint_every")
        self.rng = as_generator(random_state)
        if not isinstance(carry_state, (bool, np.bool_)):
            raise TypeError(f"carry_state: expected True or False, got {carry_state!r}")
        self.carry_state = bool(carry_state)
        if self.carry_state and checkpoint is not None and _state_holder(model) is None:
            raise ValueError(f"carry_state: a checkpoint must keep the carried state, and "
                             f"{type(model).__name__} has no rnnfast network as `network` "
                             "to take it from; use carry_state=False or no checkpoint")
        self.verbose = bool(verbose)
        self.stream = stream
        self.epoch = 0
        self.history = {}
        self.batcher = None
        self._batcher_sizes = None
        self._early = {"best": None, "best_epoch": None, "bad_epochs": 0}
        self._best_params = None

    # ----------------------------------------------------------- data
    def _prepare(self, train, batch_size, time_size):
        if isinstance(train, StreamBatcher):
            # kept as the trainer's batcher: checkpoints save its read position
            self.batcher, self._batcher_sizes = train, None
            return "stream", train
        if isinstance(train, (tuple, list)):
            if len(train) not in (2, 3):
                raise ValueError(f"train: expected (X, Y) or (X, Y, lengths), got a "
                                 f"{type(train).__name__} of {len(train)} items")
            arrays = [np.asarray(a) for a in train]
            n = arrays[0].shape[0] if arrays[0].ndim else 0
            for name, a in zip(("X", "Y", "lengths"), arrays):
                if a.ndim == 0 or a.shape[0] != n:
                    raise ValueError(f"train: {name} must have one row per sample like X "
                                     f"(shape {arrays[0].shape}), got shape {a.shape}")
            if n == 0:
                raise ValueError("train: X holds no samples")
            return "minibatch", arrays
        arr = np.asarray(train)
        if arr.ndim == 1:
            # the same ids and sizes again: keep the batcher and its position.
            # Compared by content, not id(): a freed corpus's id is reused by
            # new arrays, and an array edited in place keeps its id
            sizes = (batch_size, time_size)
            b = self.batcher
            same = (b is not None and self._batcher_sizes == sizes and arr.dtype.kind in "iu"
                    and arr.size == b.data_size + 1 and np.array_equal(arr[:-1], b.xs)
                    and arr[-1] == b.ts[-1])
            if not same:
                self.batcher = StreamBatcher(arr, batch_size, time_size)
                self._batcher_sizes = sizes
            return "stream", self.batcher
        raise ValueError(f"train: expected a 1-D corpus of token ids (L,), a StreamBatcher "
                         f"or a tuple (X, Y), got an array of shape {arr.shape}")

    def _minibatches(self, arrays, batch_size, shuffle, drop_last):
        n = arrays[0].shape[0]
        order = self.rng.permutation(n) if shuffle else np.arange(n)
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        for start in range(0, stop, batch_size):
            idx = order[start:start + batch_size]
            yield tuple(a[idx] for a in arrays)

    # ----------------------------------------------------------- steps
    def _params_grads(self):
        return list(self.model.params), list(self.model.grads)

    def train_step(self, batch):
        """One forward, backward, clip and update; returns (loss, grad norm).
        Raises TrainingDivergedError (without updating) on a non-finite loss
        or gradient, or a NaN or Inf that a layer of the model refused
        between its layers (the batch itself finite; a NaN in the data
        stays the ValueError that names it)."""
        try:
            if len(batch) == 3:
                loss = self.model.forward(batch[0], batch[1], lengths=batch[2])
            else:
                loss = self.model.forward(batch[0], batch[1])
        except NonFiniteError as exc:
            if not all(_finite(a) for a in batch):
                raise
            raise TrainingDivergedError(f"a NaN or Inf inside the model's forward ({exc})",
                                        self.history) from None
        loss = float(loss)
        if not math.isfinite(loss):
            raise TrainingDivergedError(f"the loss is {loss}", self.history)
        try:
            self.model.backward()
        except NonFiniteError as exc:     # backward takes nothing from the data
            raise TrainingDivergedError(f"a NaN or Inf inside the model's backward ({exc})",
                                        self.history) from None
        params, grads = self._params_grads()
        if self.clip_norm is None:
            norm = global_norm(grads)
        else:
            norm = clip_grads(grads, self.clip_norm)
        if not math.isfinite(norm):
            raise TrainingDivergedError(f"the gradient norm is {norm}", self.history)
        self.optimizer.update(params, grads)
        return loss, norm

    # ------------------------------------------------------ schedules
    def _schedule_before(self, epoch):
        s = self.lr_schedule
        if s is None or _is_plateau(s):
            return
        if hasattr(s, "step"):
            s.step(epoch)
            return
        lr = s(epoch)
        # checked as the optimizers check lr, before any batch of the epoch:
        # a negative lr trains uphill, a NaN one poisons every weight
        try:
            lr = _check_rate(lr, "lr")
        except (TypeError, ValueError):
            raise ValueError(f"lr_schedule: for epoch {epoch} returned lr {lr!r}; expected "
                             f"a finite number > 0") from None
        self.optimizer.lr = lr

    def _check_schedule_mode(self, mode):
        """A plateau schedule must watch the value the way fit does: a "min"
        one fed accuracies would cut lr at every improvement."""
        schedule_mode = getattr(self.lr_schedule, "mode", None)
        if _is_plateau(self.lr_schedule) and schedule_mode not in (None, mode):
            raise ValueError(f"mode: fit(mode={mode!r}) but the lr_schedule "
                             f"{type(self.lr_schedule).__name__} has mode={schedule_mode!r}; "
                             "give both the same (whether higher or lower is better)")

    def _schedule_after(self, value):
        if self.lr_schedule is not None and _is_plateau(self.lr_schedule):
            if value is None:
                raise ValueError("lr_schedule: a plateau schedule needs eval_fn (and "
                                 "monitor) to give it a value each epoch")
            self.lr_schedule.step(value)

    # ------------------------------------------------------------ fit
    def fit(self, train, epochs=1, batch_size=32, time_size=35, eval_fn=None, monitor=None,
            mode="min", patience=None, restore_best=False, max_batches=None, shuffle=True,
            drop_last=True, resume_from=None):
        """Train until epoch `epochs` (counted from the first fit, so a resumed
        run continues up to the same total).  Returns the history: a dict of
        lists, one item per epoch ("epoch", "loss" (mean training loss),
        "grad_norm" (mean, before clipping), "lr", "seconds",
        "tokens_per_sec", and what eval_fn returns: a number as "valid", a
        dict under its keys; None in the epochs whose dict lacks a key, so an
        eval_fn may return {} when it has nothing to measure).

        monitor: the history key early stopping and plateau schedules watch
            (default: "valid", or eval_fn's first key); mode "min" or "max"
            (a plateau lr_schedule must have the same mode).
        patience: stop after this many epochs without a better value
            (without eval_fn: of the training loss; with eval_fn, an epoch
            without the monitored value is a ValueError).
        restore_best: at the end, put back the weights of the best epoch
            (among the epochs that have the monitored value).
        max_batches: at most this many batches per epoch (quick runs).
        resume_from: a checkpoint of this set-up (save_checkpoint's) to
            continue from, exactly as the uninterrupted run would have gone
            on (a run early stopping ended stays ended).  A refused
            checkpoint leaves the trainer, its model and its optimizer as
            they were.  With epochs=0 it only loads (then `trainer.epoch`
            and `trainer.history` say where the run stands; the scripts in
            examples/ go on from there one epoch a fit).
        """
        epochs = check_int(epochs, "epochs", minimum=0)
        batch_size = check_int(batch_size, "batch_size")
        time_size = check_int(time_size, "time_size")
        if mode not in ("min", "max"):
            raise ValueError(f"mode: expected 'min' or 'max', got {mode!r}")
        self._check_schedule_mode(mode)
        if patience is not None:
            patience = check_int(patience, "patience")
        if max_batches is not None:
            max_batches = check_int(max_batches, "max_batches")
        # A refused set-up (new data, then a missing or unusable checkpoint)
        # leaves the trainer, its model and its optimizer as they were.
        before = self._snapshot(with_model=resume_from is not None)
        try:
            kind, data = self._prepare(train, batch_size, time_size)
            if self.carry_state and kind != "stream":
                raise ValueError("carry_state: only a language model's stream (a 1-D corpus "
                                 "or a StreamBatcher) carries a state across epochs; got "
                                 "(X, Y) minibatches")
            if resume_from is not None:
                self._resume(resume_from)
                self._check_schedule_mode(mode)  # the checkpoint's schedule has its own
        except BaseException:
            self._restore(before)
            raise
        if resume_from is not None:
            if patience is not None and self._early["bad_epochs"] >= patience:
                # written when early stopping ended the run: resumed, it stays
                # ended (with restore_best, the best weights are put back below)
                epochs = self.epoch
        stream = self.stream if self.stream is not None else sys.stderr
        model = self.model
        while self.epoch < epochs:
            epoch = self.epoch + 1
            self._schedule_before(epoch)
            if hasattr(model, "train"):
                model.train()
            if kind == "stream":
                if hasattr(model, "reset_state") and not self.carry_state:
                    model.reset_state()
                total = len(data)
                batches = (data.next_batch() for _ in itertools.count())
            else:
                n = data[0].shape[0]
                total = n // batch_size if drop_last and n >= batch_size else -(-n // batch_size)
                batches = self._minibatches(data, batch_size, shuffle, drop_last)
            if max_batches is not None:
                total = min(total, max_batches)
            # draw exactly `total` batches: one more would move the stream past
            # text that is never trained on
            batches = itertools.islice(batches, total)
            bar = _Progress(stream, epoch, epochs, total, "tok") if self.verbose else None
            start = time.perf_counter()
            loss_sum = norm_sum = 0.0
            tokens = done = 0
            for batch in batches:
                try:
                    loss, norm = self.train_step(batch)
                except TrainingDivergedError as exc:
                    if bar is not None:
                        stream.write("\n")
                    raise TrainingDivergedError(
                        f"training diverged at epoch {epoch}, batch {done + 1}: {exc}; no "
                        "update was applied, so the model keeps the weights of the last "
                        "good step (lower the learning rate or set clip_norm)",
                        self.history) from None
                x = batch[0]
                tokens += x.shape[0] * (x.shape[1] if x.ndim >= 2 else 1)
                loss_sum += loss
                norm_sum += norm
                done += 1
                if bar is not None:
                    elapsed = time.perf_counter() - start
                    bar.update(done, loss_sum / done, tokens / max(elapsed, 1e-9))
            # An update from a finite gradient can still overflow a weight; the
            # next batch would stop on it, but the epoch's evaluation and
            # checkpoint come first (a checkpoint refuses such weights).
            if not all(finite_array(p) for p in model.params):
                if bar is not None:
                    stream.write("\n")
                raise TrainingDivergedError(
                    f"training diverged in epoch {epoch}: an update left NaN or Inf in the "
                    "weights (lower the learning rate or set clip_norm); the last "
                    "checkpoint, if any, holds the last epoch that ended well",
                    self.history)
            seconds = time.perf_counter() - start
            record = {"epoch": epoch, "loss": loss_sum / max(done, 1),
                      "grad_norm": norm_sum / max(done, 1),
                      "lr": float(getattr(self.optimizer, "lr", float("nan"))),
                      "seconds": seconds, "tokens_per_sec": tokens / max(seconds, 1e-9)}
            metrics = {} if eval_fn is None else self._evaluate(eval_fn)
            record.update(metrics)
            self.epoch = epoch
            self._append_history(record)
            # an eval_fn may return {} (e.g. no validation data): a normal epoch
            # without a metric; only what needs one (patience, plateau) refuses it
            key = monitor or ("valid" if "valid" in record or eval_fn is None else
                              next((k for k in record if k not in _TRAIN_KEYS), None))
            value = record.get(key)
            if monitor is not None and value is None and (eval_fn is None or metrics):
                raise ValueError(f"monitor: {monitor!r} is not in the history keys "
                                 f"{sorted(record)}")
            if value is None and patience is not None:
                if eval_fn is not None:
                    wanted = "metric" if monitor is None else repr(monitor)
                    raise ValueError(
                        f"eval_fn: returned no {wanted} at epoch {epoch} (got {metrics}); "
                        f"early stopping (patience={patience}) needs one every epoch")
                value = record["loss"]
            self._schedule_after(value)
            stop = self._early_stopping(value, mode, patience, restore_best)
            if bar is not None:
                bar.close(self._summary(record, epochs))
            if self.checkpoint is not None and (epoch % self.checkpoint_every == 0
                                                or epoch == epochs or stop):
                self.save_checkpoint(self.checkpoint)
            if stop:
                break
        if restore_best and self._best_params is not None:
            for p, best in zip(self.model.params, self._best_params):
                p[...] = best
        return self.history

    def _snapshot(self, with_model):
        """What fit's set-up may change: the batcher and, with_model (a
        resume), the trainer's state, the model's weights and generators,
        the optimizer's attributes and the schedule's."""
        snap = {"batcher": (self.batcher, self._batcher_sizes)}
        if with_model:
            snap.update(
                position=None if self.batcher is None else self.batcher.state_dict(),
                trainer=copy.deepcopy({k: getattr(self, k) for k in _RESUMED}),
                rng=self.rng.bit_generator.state,
                model_rngs=[(g, g.bit_generator.state) for _, g in _generators(self.model)],
                params=[p.copy() for p in self.model.params],
                carried=_get_carried(self.model),
                # any object with update() and lr may be the optimizer
                optimizer=copy.deepcopy(getattr(self.optimizer, "__dict__", None)),
                schedule=copy.copy(getattr(self.lr_schedule, "__dict__", None)))
        return snap

    def _restore(self, snap):
        old_batcher = self.batcher
        self.batcher, self._batcher_sizes = snap["batcher"]
        if "trainer" not in snap:
            return
        if snap["position"] is not None and self.batcher is old_batcher:
            self.batcher.load_state_dict(snap["position"])
        for k, v in snap["trainer"].items():
            setattr(self, k, v)
        self.rng.bit_generator.state = snap["rng"]
        for g, state in snap["model_rngs"]:
            g.bit_generator.state = state
        for p, saved in zip(self.model.params, snap["params"]):
            p[...] = saved                      # in place: views and ties stay
        _set_carried(self.model, snap["carried"])
        if snap["optimizer"] is not None:
            vars(self.optimizer).clear()
            vars(self.optimizer).update(snap["optimizer"])
        if snap["schedule"] is not None:
            vars(self.lr_schedule).update(snap["schedule"])

    def _append_history(self, record):
        """One item per epoch in every list: None for a key this epoch's
        record lacks (a metric eval_fn returned only some epochs)."""
        done = len(self.history.get("epoch", []))
        for key, value in record.items():
            self.history.setdefault(key, [None] * done).append(value)
        for values in self.history.values():
            if len(values) == done:
                values.append(None)

    def _evaluate(self, eval_fn):
        model = self.model
        if hasattr(model, "eval"):
            model.eval()
        # a carried state goes on into the next epoch as training left it,
        # whatever eval_fn runs through the model
        carried = _get_carried(model) if self.carry_state else None
        try:
            result = eval_fn(model)
        finally:
            if hasattr(model, "train"):
                model.train()
            if self.carry_state:
                _set_carried(model, carried)
        epoch = self.epoch + 1
        if isinstance(result, dict):
            return {str(k): _metric(v, f" for {k!r}", epoch) for k, v in result.items()}
        return {"valid": _metric(result, " or a dict of numbers", epoch)}

    def _early_stopping(self, value, mode, patience, restore_best):
        if value is None:
            return False
        e = self._early
        better = e["best"] is None or (value < e["best"] if mode == "min" else value > e["best"])
        if better and math.isfinite(value):
            e.update(best=value, best_epoch=self.epoch, bad_epochs=0)
            if restore_best:
                self._best_params = [p.copy() for p in self.model.params]
        else:
            e["bad_epochs"] += 1
        return patience is not None and e["bad_epochs"] >= patience

    @staticmethod
    def _summary(record, epochs):
        parts = [f"epoch {record['epoch']}/{epochs}", f"loss {record['loss']:.4f}"]
        parts += [f"{k} {v:.4g}" for k, v in record.items() if k not in _TRAIN_KEYS]
        parts += [f"lr {record['lr']:.3g}", f"{record['tokens_per_sec']:,.0f} tok/s",
                  f"{record['seconds']:.1f} s"]
        return " | ".join(parts)

    # ---------------------------------------------------- checkpoints
    def _state(self):
        schedule = nonfinite = None
        if self.lr_schedule is not None and hasattr(self.lr_schedule, "__dict__"):
            schedule = {k: v for k, v in vars(self.lr_schedule).items()
                        if v is None or isinstance(v, (bool, int, float, str))}
            # JSON has no inf/NaN, but a plateau's best may be one: None in
            # "schedule", the value itself (as text) in "schedule_nonfinite"
            nonfinite = {k: repr(v) for k, v in schedule.items()
                         if isinstance(v, float) and not math.isfinite(v)}
            schedule = {k: _finite_or_none(v) for k, v in schedule.items()}
        # a history's NaN or inf (a metric, a diverging loss) likewise: None in
        # "history", its text in "history_nonfinite" under key and index
        history_nonfinite = {k: {str(i): repr(v) for i, v in enumerate(vs)
                                 if isinstance(v, float) and not math.isfinite(v)}
                             for k, vs in self.history.items()}
        return {
            "epoch": self.epoch,
            "rng": self.rng.bit_generator.state,
            "model_rngs": {p: g.bit_generator.state for p, g in _generators(self.model)},
            "batcher": None if self.batcher is None else self.batcher.state_dict(),
            "history": {k: [_finite_or_none(v) for v in vs] for k, vs in self.history.items()},
            "history_nonfinite": {k: v for k, v in history_nonfinite.items() if v} or None,
            "schedule": schedule,
            "early": {k: _finite_or_none(v) for k, v in self._early.items()},
            "schedule_nonfinite": nonfinite or None,
            "has_best_params": self._best_params is not None,
            # carry_state: the state the next epoch starts from, as the
            # arrays after the best weights (h, or h and c); None otherwise
            "carried_state": (len(_carried_arrays(self.model)) if self.carry_state
                              else None),
        }

    def save_checkpoint(self, path):
        """Model, optimizer state, epoch, RNG states and history, atomically."""
        # restore_best's weights go too: without them a resumed run could not
        # go back to a best epoch that came before the checkpoint
        extra = list(self._best_params or [])
        if self.carry_state:
            extra += _carried_arrays(self.model)
        rio.save_checkpoint(path, self.model, self.optimizer, state=self._state(),
                            extra_arrays=extra or None)

    def resume(self, path):
        """Load a checkpoint written by `save_checkpoint` into this trainer's
        model and optimizer and continue from its epoch.  A checkpoint
        refused (missing, of another model, an unusable trainer state)
        leaves the trainer, its model and its optimizer as they were."""
        before = self._snapshot(with_model=True)
        try:
            return self._resume(path)
        except BaseException:
            self._restore(before)
            raise

    def _resume(self, path):
        loaded = rio.load_checkpoint(path, self.model, self.optimizer)
        state = loaded["state"]
        try:
            self.epoch = check_int(state["epoch"], "epoch", minimum=0)
            self.rng.bit_generator.state = state["rng"]
            saved = state.get("model_rngs", {})
            for p, g in _generators(self.model):
                if p in saved:
                    g.bit_generator.state = saved[p]
            if state.get("batcher") is not None:
                if self.batcher is None:
                    raise ValueError("the checkpoint comes from a language-model run; "
                                     "pass the same corpus to fit")
                self.batcher.load_state_dict(state["batcher"])
            self.history = {k: list(v) for k, v in state["history"].items()}
            for k, items in (state.get("history_nonfinite") or {}).items():
                for i, text in items.items():
                    self.history[k][int(i)] = _nonfinite(text)
            if state.get("schedule") and self.lr_schedule is not None:
                nonfinite = state.get("schedule_nonfinite") or {}
                for k, v in state["schedule"].items():
                    if hasattr(self.lr_schedule, k):
                        setattr(self.lr_schedule, k,
                                _nonfinite(nonfinite[k]) if k in nonfinite else v)
            self._early.update(state.get("early", {}))
            # older checkpoints have no best weights (restore_best then keeps
            # the best epoch seen after the resume, as before)
            extra = loaded["extra_arrays"]
            n_best = len(self.model.params) if state.get("has_best_params") else 0
            if state.get("has_best_params"):
                self._best_params = _best_weights(extra[:n_best], list(self.model.params))
            carried = state.get("carried_state")
            if self.carry_state:
                # a checkpoint of a run that reset its state each epoch (or
                # an older one) carries none: the next epoch starts from zeros
                arrays = extra[n_best:n_best + (carried or 0)]
                if arrays and self.batcher is not None \
                        and arrays[0].shape[1] != self.batcher.batch_size:
                    raise ValueError(f"the carried state is of {arrays[0].shape[1]} streams; "
                                     f"this fit reads {self.batcher.batch_size} (resume with "
                                     "the same batch_size)")
                _set_carried(self.model, _checked_carried(self.model, arrays))
            elif carried:
                raise ValueError("the checkpoint comes from a run with carry_state=True; "
                                 "resume it with carry_state=True")
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ValueError(f"path: {path!r} holds no usable trainer state ({exc})") from exc
        return self


def _state_holder(model):
    """The rnnfast network whose carried state carry_state keeps
    (``model.network`` of rnnfast's models), or None."""
    from .networks import _Network
    network = getattr(model, "network", None)
    return network if isinstance(network, _Network) else None


def _get_carried(model):
    """The model's carried state as it is (None, h, or (h, c)); copies."""
    holder = _state_holder(model)
    if holder is None or holder.state is None:
        return None
    return copy.deepcopy(holder.state)


def _set_carried(model, state):
    holder = _state_holder(model)
    if holder is not None:
        holder.state = state


def _carried_arrays(model):
    """The carried state as a list of arrays: [], [h] or [h, c]."""
    state = _get_carried(model)
    if state is None:
        return []
    return list(state) if isinstance(state, tuple) else [state]


def _checked_carried(model, arrays):
    """A checkpoint's carried-state arrays as the network's state, refused
    (ValueError) when they cannot be its state."""
    holder = _state_holder(model)
    if not arrays:
        return None
    if holder is None:
        raise ValueError("the checkpoint carries a state, and the model has no rnnfast "
                         "network as `network` to take it")
    want = 2 if holder.cell == "lstm" else 1
    rows = holder.num_layers * (2 if holder.bidirectional else 1)
    if len(arrays) != want:
        raise ValueError(f"the carried state has {len(arrays)} arrays; a {holder.cell} "
                         f"network's has {want}")
    for name, a in zip(("h", "c"), arrays):
        if a.ndim != 3 or a.shape[0] != rows or a.shape[2] != holder.hidden_size \
                or a.dtype != np.dtype(holder.dtype):
            raise ValueError(f"the carried state's {name} has shape {a.shape} and dtype "
                             f"{a.dtype}; the network's is ({rows}, N, "
                             f"{holder.hidden_size}) of {np.dtype(holder.dtype)}")
        if a.shape[1] != arrays[0].shape[1]:
            raise ValueError(f"the carried state's h and c have batch sizes "
                             f"{arrays[0].shape[1]} and {a.shape[1]}")
    return tuple(arrays) if want == 2 else arrays[0]


_TRAIN_KEYS = ("epoch", "loss", "grad_norm", "lr", "seconds", "tokens_per_sec")
# The trainer's attributes a resume sets (besides generators and batcher).
_RESUMED = ("epoch", "history", "_early", "_best_params")


def _is_plateau(schedule):
    return type(schedule).__name__ == "ReduceOnPlateau" or getattr(
        schedule, "needs_metric", False)
