"""A fuzzer of the training loop (rnnfast.trainer.Trainer) against a plain
loop written from its documentation with PyTorch's optimizers, and against
its own promise to resume exactly.

tests/test_trainer.py checks the loop's rules one at a time on a linear
model.  Here every case draws a model (a language model on a token stream,
given as an array or as a StreamBatcher; a sequence classifier, regressor
or tagger on minibatches, with or without lengths; a seq2seq model), its
cell, layers, dropout and dtype, and a training set-up: one of the seven
optimizers with or without weight decay, gradient clipping or none, a
learning-rate schedule (StepDecay, a callable, ReduceOnPlateau in "min" or
"max" mode) or none, an evaluation each epoch from a drawn sequence of
values (ties, NaN and infinities among them; a number or a dict, the dict
empty at some epochs, watched by default or by name), early
stopping with or without restore_best, max_batches, shuffling, drop_last
and the checkpoint interval.  Each case:

* trains with Trainer.fit and, from a copy of the same untrained model
  (its dropout generators included, so both draw the same masks), with a
  loop written here from the documentation: the batches (the trainer's
  Generator's permutations, or the stream's rows at offsets k * (L // N)
  read on from epoch to epoch), the state reset each epoch (or, in two
  language-model cases of five, carried on: carry_state=True), torch's
  clip_grad_norm_, torch.optim's optimizer (its momentum buffer rescaled
  when lr changes: the textbook's velocity keeps the old lr's steps), the
  schedule (the formula, the callable, or torch's ReduceLROnPlateau with
  patience 0 and no threshold) and early stopping.  The weights and every
  history entry must match; where float32 rounding can flip a step (the
  optimizers that divide by a running norm), only the loop's decisions
  are compared: the epochs run and the learning rates;
* resumes from the checkpoint of every epoch that wrote one, in a fresh
  model, optimizer, schedule and trainer: bitwise the same weights,
  optimizer state, learning rate and history as the uninterrupted run;
* fits 1 epoch, then on to the last in a second fit on the same trainer:
  bitwise the same as one fit (where no early stop or restore_best ends
  the first);
* makes bad calls to fit on the trained trainer (a negative epochs, batch
  size 0, an unknown mode, patience 0, a plateau schedule of the other
  mode, training data of the wrong shape or too short for a batch, a
  missing checkpoint or one of another model, the last two with new
  training data), each of which must raise naming what is wrong and leave
  the trainer, its model and its optimizer as they were.

    python tests/fuzz_trainer.py [--cases N] [--minutes M] [--seed S]

prints one line a failing case with the seed that replays it alone
(`--seed S --cases 1`) and exits 1 if any failed.
tests/test_fuzz_trainer.py runs a few fixed seeds in the suite.
"""
import math
import os
import pickle
import shutil
import sys
import tempfile

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import rnnfast.io as rio
from rnnfast.data import StreamBatcher
from rnnfast.models import (AttentionSeq2seq, PeekySeq2seq, RnnLM, Seq2seq,
                            SequenceClassifier, SequenceRegressor, SequenceTagger)
from rnnfast.optim import (SGD, AdaGrad, Adam, AdamW, Momentum, Nesterov, ReduceOnPlateau,
                           RMSprop, StepDecay)
from rnnfast._validation import NonFiniteError
from rnnfast.trainer import Trainer, TrainingDivergedError, _generators

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fuzz_estimators import with_slack  # noqa: E402
from fuzz_networks import close, fuzz_main  # noqa: E402

KINDS = ("lm", "classifier", "regressor", "tagger", "seq2seq")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
SCHEDULES = (None, "step", "callable", "plateau")
EVALS = (None, "number", "dict")
LR = {"sgd": 0.2, "momentum": 0.1, "nesterov": 0.1, "adagrad": 0.1, "rmsprop": 0.01,
      "adam": 0.01, "adamw": 0.01}
# A few optimizer steps of the same model: rounding grows with each step.
TRAIN_TOL = {np.dtype(np.float64): dict(rtol=1e-7, atol=1e-9),
             np.dtype(np.float32): dict(rtol=5e-3, atol=5e-4)}
TIMING_KEYS = ("seconds", "tokens_per_sec")


def draw_case(rng):
    def pick(options, p=None):
        return options[rng.choice(len(options), p=p)]

    kind = pick(KINDS)
    case = dict(kind=kind, cell="lstm" if kind == "seq2seq" else pick(("rnn", "lstm", "gru")),
                hidden=int(rng.integers(3, 9)),
                dtype=np.dtype(pick((np.float32, np.float64), p=[0.4, 0.6])),
                optimizer=pick(OPTIMIZERS), weight_decay=pick((0.0, 0.0, 0.01)),
                clip_norm=pick((None, 0.05, 5.0)), schedule=pick(SCHEDULES),
                eval=pick(EVALS), mode=pick(("min", "max")),
                patience=pick((None, None, 1, 2)), restore_best=bool(rng.random() < 0.4),
                epochs=int(rng.integers(2, 5)), max_batches=pick((None, None, 1, 2)),
                shuffle=bool(rng.random() < 0.7), drop_last=bool(rng.random() < 0.5),
                checkpoint_every=int(rng.integers(1, 3)), seed=int(rng.integers(1 << 31)))
    case["lr"] = LR[case["optimizer"]] * float(10 ** rng.uniform(-0.5, 0.5))
    if case["schedule"] == "plateau" and case["eval"] is None:
        case["eval"] = "number"               # a plateau needs a value each epoch
    # the values eval_fn returns, epoch by epoch: small integers (ties),
    # NaN and infinities among them
    values = rng.integers(0, 4, case["epochs"]).astype(float)
    values[rng.random(case["epochs"]) < 0.15] = pick((np.nan, np.inf, -np.inf))
    case["values"] = [float(v) for v in values]
    if kind == "seq2seq":
        case["variant"] = pick(("plain", "peeky", "attention"))
        case["layers"], case["dropout"] = 1, 0.0
    else:
        case["layers"] = pick((1, 1, 2))
        case["dropout"] = pick((0.0, 0.0, 0.3))
    if kind == "lm":
        case["tie"] = bool(rng.random() < 0.3)
        case["stream_form"] = pick(("array", "batcher"))
        case["batch_size"], case["time_size"] = int(rng.integers(1, 4)), int(rng.integers(2, 6))
        case["batches"] = int(rng.integers(1, 4))        # an epoch of the stream
    else:
        case["samples"] = int(rng.integers(3, 13))
        case["batch_size"] = int(rng.integers(1, 6))
        case["ids"] = kind != "seq2seq" and bool(rng.random() < 0.3)
        case["lengths"] = kind not in ("seq2seq",) and bool(rng.random() < 0.5)
        case["bidirectional"] = kind != "seq2seq" and bool(rng.random() < 0.3)
    # a dict eval_fn may return {} at some epochs (nothing to measure):
    # normal epochs, unless early stopping or a plateau needs the value
    case["monitor"], case["missing"] = None, [False] * case["epochs"]
    if case["eval"] == "dict":
        case["monitor"] = pick((None, "score"))
        if case["patience"] is None and case["schedule"] != "plateau" and rng.random() < 0.5:
            missing = rng.random(case["epochs"]) < 0.4
            missing[rng.integers(case["epochs"])] = False     # the key appears once
            case["missing"] = [bool(m) for m in missing]
    # one case in ten with SGD at a learning rate 1e4 to 1e30 times larger, unclipped:
    # it either ends or stops with TrainingDivergedError, the same way when
    # resumed (never with another error from inside the model)
    case["diverge"] = bool(rng.random() < 0.1)
    if case["diverge"]:            # SGD's steps grow with lr (Adam's are bounded by it)
        case["optimizer"] = pick(("sgd", "momentum", "nesterov"))
        case["lr"] = LR[case["optimizer"]] * 10.0 ** int(rng.integers(4, 31))
        case["clip_norm"] = None
    # drawn last, so that the draws above stay those of earlier versions
    case["carry_state"] = kind == "lm" and bool(rng.random() < 0.4)
    return case


# ------------------------------------------------------------ the pieces
def make_data(case):
    """The training data as fit takes it (before the StreamBatcher form)."""
    rng = np.random.default_rng([case["seed"], 1])
    V, T = 7, 4
    if case["kind"] == "lm":
        N, T = case["batch_size"], case["time_size"]
        return rng.integers(0, V, N * T * case["batches"] + 1 + int(rng.integers(0, N * T)))
    n = case["samples"]
    if case["kind"] == "seq2seq":
        xs = rng.integers(1, V, (n, 5))
        ts = rng.integers(1, V, (n, T))
        ts[:, 0] = 0                                     # the start id
        return xs, ts
    X = rng.integers(0, V, (n, T)) if case["ids"] else rng.standard_normal((n, T, 3))
    if case["kind"] == "classifier":
        y = rng.integers(0, 3, n)
    elif case["kind"] == "regressor":
        y = rng.standard_normal(n)
    else:
        y = rng.integers(0, 3, (n, T))
    if case["lengths"]:
        return X, y, rng.integers(1, T + 1, n)
    return X, y


def build_model(case):
    common = dict(dtype=case["dtype"], random_state=case["seed"] % 1000)
    H = case["hidden"]
    if case["kind"] == "lm":
        return RnnLM(7, wordvec_size=H if case["tie"] else 5, hidden_size=H,
                     num_layers=case["layers"], cell=case["cell"], dropout=case["dropout"],
                     tie_weights=case["tie"], **common)
    if case["kind"] == "seq2seq":
        cls = {"plain": Seq2seq, "peeky": PeekySeq2seq, "attention": AttentionSeq2seq}
        return cls[case["variant"]](7, wordvec_size=4, hidden_size=H, **common)
    inputs = dict(vocab_size=7, embedding_size=4) if case["ids"] else dict(input_size=3)
    net = dict(cell=case["cell"], hidden_size=H, num_layers=case["layers"],
               bidirectional=case["bidirectional"], dropout=case["dropout"], **common)
    if case["kind"] == "classifier":
        return SequenceClassifier(3, **inputs, **net)
    if case["kind"] == "regressor":
        return SequenceRegressor(1, **inputs, **net)
    return SequenceTagger(3, **inputs, **net)


def build_optimizer(case):
    lr, wd = case["lr"], case["weight_decay"]
    name = case["optimizer"]
    if name == "adamw":
        return AdamW(lr=lr, weight_decay=wd)
    cls = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": AdaGrad,
           "rmsprop": RMSprop, "adam": Adam}[name]
    return cls(lr=lr, weight_decay=wd)


def torch_optimizer(case, params):
    """torch.optim's twin of build_optimizer(case), at rnnfast's defaults."""
    lr, wd = case["lr"], case["weight_decay"]
    name = case["optimizer"]
    if name in ("sgd", "momentum", "nesterov"):
        return torch.optim.SGD(params, lr=lr, weight_decay=wd,
                               momentum=0.0 if name == "sgd" else 0.9,
                               nesterov=name == "nesterov")
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=1e-7, weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.99, eps=1e-7, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, eps=1e-8, weight_decay=wd)
    return torch.optim.AdamW(params, lr=lr, eps=1e-8, weight_decay=wd)


def decayed_lr(case, epoch):
    """The callable schedule: lr0 * 0.7 ** (epoch - 1)."""
    return case["lr"] * 0.7 ** (epoch - 1)


def build_schedule(case, optimizer):
    if case["schedule"] == "step":
        return StepDecay(optimizer, decay=0.5, start_epoch=1)
    if case["schedule"] == "callable":
        return lambda epoch: decayed_lr(case, epoch)
    if case["schedule"] == "plateau":
        return ReduceOnPlateau(optimizer, factor=0.5, min_lr=case["lr"] / 5, mode=case["mode"])
    return None


def eval_value(case, epoch):
    """What eval_fn returns at `epoch` (counted from 1)."""
    value = case["values"][epoch - 1]
    if case["eval"] == "dict":
        return {} if case["missing"][epoch - 1] else {"score": value}
    return value


def fit_arguments(case, data, trainer):
    """fit's keyword arguments; eval_fn reads the epoch from `trainer`."""
    eval_fn = None
    if case["eval"] is not None:
        def eval_fn(model):
            return eval_value(case, trainer.epoch + 1)
    return dict(epochs=case["epochs"], batch_size=case["batch_size"],
                time_size=case.get("time_size", 35), eval_fn=eval_fn,
                monitor=case["monitor"], mode=case["mode"],
                patience=case["patience"], restore_best=case["restore_best"],
                max_batches=case["max_batches"], shuffle=case["shuffle"],
                drop_last=case["drop_last"])


def train_argument(case, data):
    if case["kind"] == "lm" and case["stream_form"] == "batcher":
        return StreamBatcher(data, case["batch_size"], case["time_size"])
    return data


class KeepingTrainer(Trainer):
    """A Trainer that keeps a copy of every checkpoint it writes, by epoch."""

    def save_checkpoint(self, path):
        super().save_checkpoint(path)
        shutil.copyfile(path, f"{path}.{self.epoch}")


def trainer_run(case, data, directory, resume_epoch=None, first_epochs=None):
    """(model, optimizer, trainer, history) of Trainer.fit; from the
    checkpoint of `resume_epoch` in a fresh model and trainer when given;
    with `first_epochs`, a fit of that many epochs first, then one to the
    end on the same trainer and training data."""
    model = build_model(case)
    optimizer = build_optimizer(case)
    path = os.path.join(directory, "ck.npz")
    trainer = KeepingTrainer(model, optimizer, clip_norm=case["clip_norm"],
                             lr_schedule=build_schedule(case, optimizer),
                             checkpoint=None if resume_epoch is not None else path,
                             checkpoint_every=case["checkpoint_every"],
                             random_state=case["seed"], verbose=False,
                             carry_state=case["carry_state"])
    resume = None if resume_epoch is None else f"{path}.{resume_epoch}"
    train = train_argument(case, data)
    trainer.diverged = None             # TrainingDivergedError's message, if one stopped it
    try:
        if first_epochs is not None:
            trainer.fit(train, **dict(fit_arguments(case, data, trainer), epochs=first_epochs))
        trainer.fit(train, resume_from=resume, **fit_arguments(case, data, trainer))
    except TrainingDivergedError as exc:
        trainer.diverged = str(exc)
    return model, optimizer, trainer, trainer.history


# ------------------------------------------------------------- the twin
def batches_of_epoch(case, data, rng, stream):
    """The batches of one epoch as the documentation describes them."""
    N = case["batch_size"]
    if case["kind"] == "lm":
        T = case["time_size"]
        L = data.shape[0] - 1
        total = L // (N * T)
        if case["max_batches"] is not None:
            total = min(total, case["max_batches"])
        offsets = np.arange(N) * (L // N)
        for _ in range(total):
            idx = (offsets[:, None] + stream["position"] + np.arange(T)[None, :]) % L
            stream["position"] = (stream["position"] + T) % L
            yield data[:-1][idx], data[1:][idx]
        return
    n = data[0].shape[0]
    order = rng.permutation(n) if case["shuffle"] else np.arange(n)
    if case["drop_last"] and n >= N:
        starts = range(0, n - n % N, N)
    else:
        starts = range(0, n, N)
    starts = list(starts)[:case["max_batches"]]
    for start in starts:
        rows = order[start:start + N]
        yield tuple(a[rows] for a in data)


def set_lr(topt, lr, case):
    """Give torch's optimizer a new lr; SGD's momentum buffer (in gradient
    units) is rescaled by old / new, so that its step keeps the old lr's
    velocity as the textbook's v = momentum * v - lr * g does."""
    for group in topt.param_groups:
        old = group["lr"]
        group["lr"] = lr
        if case["optimizer"] in ("momentum", "nesterov") and old != lr:
            for p in group["params"]:
                buf = topt.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    buf.mul_(old / lr)


def twin_run(case, data, model):
    """(history, model, stopped) of the documented loop on `model`, in
    place.  stopped: None, or where the loop met a NaN or Inf (in the loss,
    inside the model's forward or backward, in the gradient norm, or in the
    weights at the end of an epoch), where the trainer promises
    TrainingDivergedError; the epoch it stopped in is not in the history."""
    tparams = [torch.from_numpy(p) for p in model.params]    # shared memory
    topt = torch_optimizer(case, tparams)
    plateau = None
    if case["schedule"] == "plateau":
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            topt, mode=case["mode"], factor=0.5, patience=0, threshold=0.0,
            min_lr=case["lr"] / 5)
    rng = np.random.default_rng(case["seed"])
    stream = {"position": 0}
    history = {}
    best, bad_epochs, best_params = None, 0, None
    for epoch in range(1, case["epochs"] + 1):
        if case["schedule"] == "step":
            set_lr(topt, case["lr"] * 0.5 ** max(0, epoch - 1), case)
        elif case["schedule"] == "callable":
            set_lr(topt, decayed_lr(case, epoch), case)
        model.train()
        if case["kind"] == "lm" and not case["carry_state"]:
            model.reset_state()
        losses, norms = [], []
        for number, batch in enumerate(batches_of_epoch(case, data, rng, stream), 1):
            try:
                if len(batch) == 3:
                    loss = model.forward(batch[0], batch[1], lengths=batch[2])
                else:
                    loss = model.forward(*batch)
                if not math.isfinite(loss):
                    raise NonFiniteError(f"the loss is {loss}")
                model.backward()
                # in float64: float32 squares overflow where the norm does not
                norm = math.sqrt(sum(float(np.dot(g.reshape(-1).astype(np.float64),
                                                  g.reshape(-1))) for g in model.grads))
                if not math.isfinite(norm):
                    raise NonFiniteError(f"the gradient norm is {norm}")
            except NonFiniteError as exc:
                return history, model, f"epoch {epoch}, batch {number}: {exc}"
            for p, g in zip(tparams, model.grads):
                p.grad = torch.from_numpy(g.copy())
            if case["clip_norm"] is not None:
                norm = float(torch.nn.utils.clip_grad_norm_(tparams, case["clip_norm"]))
            topt.step()
            losses.append(float(loss))
            norms.append(norm)
        if not all(np.isfinite(p).all() for p in model.params):
            return history, model, f"epoch {epoch}: an update left NaN or Inf in the weights"
        record = {"epoch": epoch, "loss": float(np.mean(losses)),
                  "grad_norm": float(np.mean(norms)), "lr": topt.param_groups[0]["lr"]}
        value = None
        if case["eval"] is not None:
            value = None if case["missing"][epoch - 1] else case["values"][epoch - 1]
            record["score" if case["eval"] == "dict" else "valid"] = value
        elif case["patience"] is not None:
            value = record["loss"]
        for key, item in record.items():
            history.setdefault(key, []).append(item)
        if plateau is not None:
            old = topt.param_groups[0]["lr"]
            plateau.step(value)
            new = topt.param_groups[0]["lr"]
            for group in topt.param_groups:          # back to old, then through set_lr
                group["lr"] = old
            set_lr(topt, new, case)
        if value is not None:
            if case["mode"] == "min":
                better = best is None or value < best
            else:
                better = best is None or value > best
            if better and math.isfinite(value):
                best, bad_epochs = value, 0
                if case["restore_best"]:
                    best_params = [p.copy() for p in model.params]
            else:
                bad_epochs += 1
            if case["patience"] is not None and bad_epochs >= case["patience"]:
                break
    if best_params is not None:
        for p, b in zip(model.params, best_params):
            p[...] = b
    return history, model, None


def twin_follows(case):
    """Whether the weights can be compared: float64, or an optimizer whose
    step is linear in the gradient.  Adam, AdaGrad and RMSprop divide by a
    running norm, so in float32 a gradient rounded to the other side of
    zero moves a weight by the whole learning rate."""
    return case["dtype"] == np.float64 or case["optimizer"] in ("sgd", "momentum", "nesterov")


# ------------------------------------------------------------- the case
def same_history(ours, ref):
    """Whether two histories are equal entry by entry (NaN equal to NaN),
    timing keys aside."""
    keys = set(ours) - set(TIMING_KEYS)
    if keys != set(ref) - set(TIMING_KEYS):
        return False
    for key in keys:
        a, b = ours[key], ref[key]
        if len(a) != len(b) or any(not (x == y or (x != x and y != y)) for x, y in zip(a, b)):
            return False
    return True


def run_case(case, seed):
    """A list of what differs from the twin or from the uninterrupted run
    (empty: the case passed)."""
    failures = []
    data = make_data(case)
    directory = tempfile.mkdtemp(prefix="fuzz_trainer_")
    try:
        with threadpool_limits(1), np.errstate(all="ignore"):
            twin_model = build_model(case)
            model, optimizer, trainer, history = trainer_run(case, data, directory)
            twin_failures = []
            if not case["diverge"]:           # a learning rate for chaos: no twin
                twin_history, twin_model, twin_stopped = twin_run(case, data, twin_model)
                if trainer.diverged is not None or twin_stopped is not None:
                    # A drawn learning rate that diverges anyway: the trainer
                    # must stop where the documented loop meets a NaN or Inf,
                    # and go on where it does not.  Where exactly the
                    # roundings of two growing trajectories overflow is
                    # chaos, so only that both stop is compared.
                    if (trainer.diverged is None) != (twin_stopped is None):
                        failures.append(f"training stopped: {trainer.diverged}; the "
                                        f"documented loop stopped: {twin_stopped}")
                else:
                    compare_with_twin(case, model, history, twin_model, twin_history,
                                      twin_failures)
            if twin_failures and diverged(twin_history):
                twin_failures = [f for f in twin_failures if not f.startswith(
                    ("twin: params", "twin: history 'loss'", "twin: history 'grad_norm'"))]
            if twin_failures and twin_follows(case):
                # how far the training itself carries a rounding of the start
                spread = twin_spread(case, data, twin_model, twin_history)
                twin_failures = []
                compare_with_twin(case, model, history, twin_model, twin_history,
                                  twin_failures, spread)
            failures += twin_failures
            saved = sorted(int(name.rsplit(".", 1)[1]) for name in os.listdir(directory)
                           if name.startswith("ck.npz."))
            if not saved and trainer.diverged is None:
                failures.append("no checkpoint was written")
            for epoch in saved:
                resumed = trainer_run(case, data, directory, resume_epoch=epoch)
                compare_resumed(f"resumed from epoch {epoch}",
                                (model, optimizer, trainer, history), resumed, failures)
            if (not case["restore_best"] and trainer.diverged is None
                    and len(history["epoch"]) == case["epochs"]):
                # fit counts epochs from the first fit: two fits are one
                # (restore_best would put back the best weights after the first)
                continued = trainer_run(case, data, tempfile.mkdtemp(dir=directory),
                                        first_epochs=1)
                compare_resumed("a fit of 1 epoch", (model, optimizer, trainer, history),
                                continued, failures)
            bad_call_failures(case, data, trainer, directory, failures)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return failures


def diverged(history):
    """Whether training diverged: an epoch's mean loss 4 times the first's.
    Then every rounding grows without bound, and only the loop's decisions
    (the epochs run, the learning rates) are compared, not where the
    weights ended."""
    losses = history.get("loss", [])
    return bool(losses) and any(not loss <= 4 * abs(losses[0]) for loss in losses)


def twin_spread(case, data, twin_model, twin_history):
    """{("history", key) or ("params", i): the largest distance between the
    twin and a second twin started from every weight moved by one unit in
    the last place}: what the training amplifies a rounding into (a
    diverging SGD run in float32 ends far from any twin)."""
    moved = build_model(case)
    for p in moved.params:
        p[...] = np.nextafter(p, np.inf)
    moved_history, moved, _ = twin_run(case, data, moved)
    spread = {}
    for key in ("loss", "grad_norm"):
        spread["history", key] = float(np.max(np.abs(
            np.subtract(moved_history[key], twin_history[key]))))
    for i, (p, q) in enumerate(zip(moved.params, twin_model.params)):
        spread["params", i] = float(np.max(np.abs(p.astype(np.float64) - q)))
    return spread


def compare_with_twin(case, model, history, twin_model, twin_history, failures, spread=None):
    """Fails what differs from the twin; with `spread`, 30 times the twin's
    own spread is allowed on top of the tolerance (a spread that is not
    finite: the trajectory is chaos, and that entry is not compared)."""
    def tol_for(what, ref):
        tol = TRAIN_TOL[case["dtype"]]
        if spread is None:
            return tol
        if not math.isfinite(spread[what]):
            return None
        return with_slack(tol, 30 * spread[what], ref)
    epochs, twin_epochs = history.get("epoch", []), twin_history.get("epoch", [])
    if epochs != twin_epochs:
        failures.append(f"twin: epochs run {epochs}, the documented loop {twin_epochs}")
        return
    for key in twin_history:
        ours = history.get(key)
        if ours is None:
            failures.append(f"twin: history has no {key!r}")
            continue
        if key in ("epoch", "lr", "valid", "score"):
            if not same_history({key: ours}, {key: twin_history[key]}) and not (
                    key == "lr" and np.allclose(ours, twin_history[key], rtol=1e-12)):
                failures.append(f"twin: history {key!r} {ours} against {twin_history[key]}")
        elif twin_follows(case):
            tol = tol_for(("history", key), twin_history[key])
            if tol is not None:
                close(f"twin: history {key!r}", ours, twin_history[key], tol, failures)
    if twin_follows(case):
        for i, (p, q) in enumerate(zip(model.params, twin_model.params)):
            tol = tol_for(("params", i), q)
            if tol is not None:
                close(f"twin: params[{i}] {p.shape}", p, q, tol, failures)


def compare_resumed(where, full, resumed, failures):
    """Fails what differs, bit for bit, between the uninterrupted run
    `full` and `resumed` (each (model, optimizer, trainer, history))."""
    model, optimizer, trainer, history = full
    r_model, r_optimizer, r_trainer, r_history = resumed
    if not same_history(r_history, history):
        failures.append(f"{where}: history {strip(r_history)} against {strip(history)}")
    if r_trainer.diverged != trainer.diverged:
        failures.append(f"{where}: stopped by {r_trainer.diverged!r} against "
                        f"{trainer.diverged!r}")
    if r_trainer.epoch != trainer.epoch:
        failures.append(f"{where}: trainer.epoch {r_trainer.epoch} against {trainer.epoch}")
    for i, (p, q) in enumerate(zip(r_model.params, model.params)):
        if not np.array_equal(p, q):
            failures.append(f"{where}: params[{i}] {p.shape} differ by up to "
                            f"{float(np.nanmax(np.abs(p - q))):.3g}")
    if r_optimizer.lr != optimizer.lr:
        failures.append(f"{where}: optimizer.lr {r_optimizer.lr} against {optimizer.lr}")
    state, r_state = getattr(optimizer, "state", None) or [], getattr(r_optimizer, "state",
                                                                      None) or []
    flat = [a for s in state for a in s]
    r_flat = [a for s in r_state for a in s]
    if len(flat) != len(r_flat) or not all(np.array_equal(a, b) for a, b in zip(flat, r_flat)):
        failures.append(f"{where}: the optimizer's state differs")
    if getattr(optimizer, "t", None) != getattr(r_optimizer, "t", None):
        failures.append(f"{where}: optimizer.t {getattr(r_optimizer, 't', None)} against "
                        f"{getattr(optimizer, 't', None)}")


# ------------------------------------------------------------ bad calls
def fingerprint(trainer):
    """The bytes of everything a fit may change: the trainer's checkpointed
    state and which batcher it holds, the model's weights and generators,
    the optimizer's lr and state, the best weights kept."""
    optimizer = trainer.optimizer
    state = [a.tobytes() for s in (getattr(optimizer, "state", None) or []) for a in s]
    return pickle.dumps((trainer._state(), id(trainer.batcher),
                         [p.tobytes() for p in trainer.model.params],
                         [g.bit_generator.state for _, g in _generators(trainer.model)],
                         optimizer.lr, getattr(optimizer, "t", None), state,
                         [b.tobytes() for b in trainer._best_params or []]))


def bad_calls(case, data, directory):
    """(what, fit's keyword changes, the train argument, the error's start)."""
    other = dict(case, hidden=case["hidden"] + 1)
    foreign = os.path.join(directory, "other.npz")
    rio.save_checkpoint(foreign, build_model(other), build_optimizer(other), state={})
    missing = os.path.join(directory, "missing.npz")
    if case["kind"] == "lm":
        # N * T ids give N * T - 1 (input, target) pairs: less than a batch
        wrong, short = data.reshape(1, -1), data[:case["batch_size"] * case["time_size"]]
        new = data[::-1].copy()
        if case["stream_form"] == "batcher":
            new = StreamBatcher(new, case["batch_size"], case["time_size"])
        wrong_error, short_error = "train:", "corpus:"
    else:
        wrong = (data[0], data[1][:-1]) + data[2:]
        short = (data[0][:0],) + tuple(a[:0] for a in data[1:])
        new = tuple(a[::-1].copy() for a in data)
        wrong_error = short_error = "train:"
    calls = [("epochs=-1", dict(epochs=-1), data, "epochs:"),
             ("batch_size=0", dict(batch_size=0), data, "batch_size:"),
             ("mode='up'", dict(mode="up"), data, "mode:"),
             ("patience=0", dict(patience=0), data, "patience:"),
             ("train of the wrong shape", {}, wrong, wrong_error),
             ("train too short", {}, short, short_error),
             ("a missing checkpoint, new train", dict(resume_from=missing), new, "path:"),
             ("another model's checkpoint, new train", dict(resume_from=foreign), new,
              "model:")]
    if case["schedule"] == "plateau":
        flipped = "max" if case["mode"] == "min" else "min"
        calls.append((f"mode={flipped!r} against the plateau's", dict(mode=flipped), data,
                      "mode:"))
    return calls


def bad_call_failures(case, data, trainer, directory, failures):
    before = fingerprint(trainer)
    for what, changes, train, error in bad_calls(case, data, directory):
        kwargs = dict(fit_arguments(case, data, trainer), **changes)
        kwargs["epochs"] = changes.get("epochs", case["epochs"] + 1)  # would train more
        try:
            trainer.fit(train_argument(case, train) if train is data else train, **kwargs)
        except (ValueError, TypeError, OSError) as exc:
            if not str(exc).startswith(error):
                failures.append(f"bad call ({what}): the message does not start with "
                                f"{error!r}: {exc}")
        else:
            failures.append(f"bad call ({what}): accepted")
        if fingerprint(trainer) != before:
            failures.append(f"bad call ({what}): the trainer, model or optimizer changed")
            before = fingerprint(trainer)


def strip(history):
    return {k: v for k, v in history.items() if k not in TIMING_KEYS}


def describe(case):
    return " ".join(f"{k}={v}" for k, v in case.items() if k != "seed") + \
        f" seed={case['seed']}"


def main(argv=None):
    torch.set_num_threads(1)
    return fuzz_main(argv, __doc__.split("\n\n")[0], lambda rng: draw_case(rng),
                     lambda case, seed: run_case(case, seed), lambda case: describe(case),
                     stream=4, cases=100)


if __name__ == "__main__":
    sys.exit(main())
