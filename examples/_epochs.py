"""What the example scripts share: training one epoch at a time, with the
results file rewritten after every epoch, and ``--checkpoint``/``--resume``,
so that a reproduction killed part way (they run for minutes to an hour)
continues from its last finished epoch exactly as it would have gone on.

A resumed run's results file holds every epoch, the ones before the
checkpoint included: the rows are rebuilt from the trainer's history, which
the checkpoint carries (``wall_seconds`` too: it is recorded there, so it
counts the time of the earlier runs).
"""
import json
import os
import sys
import time

from rnnfast.cli import _add_checkpoint_flags, _at_least_one, _at_least_zero, _checkpointing

# as rnnfast's command line: the argparse types of the scripts' count flags
# (a count below the minimum is a usage error naming the flag), and
# --checkpoint and --resume, with the same meaning as in `rnnfast train-lm`
at_least_one, at_least_zero = _at_least_one, _at_least_zero
add_checkpoint_flags = _add_checkpoint_flags


def checkpointing(parser, args):
    """(Trainer's checkpoint, the path to resume from or None); an unusable
    combination ends the script with the parser's usage error, before any
    data is read."""
    try:
        return _checkpointing(args)
    except ValueError as exc:
        parser.error(str(exc))


def train_by_epoch(trainer, train, epochs, results, output, report, eval_fn,
                   resume_from=None, derive=None, **fit_kwargs):
    """Train `trainer` on `train` up to epoch `epochs` in all.

    After each epoch: results["epochs"] becomes one row per epoch so far (the
    history's values, eval_fn's metrics and "wall_seconds" among them, plus
    what derive(row) returns), `output` is rewritten (atomically) and
    report(row) is printed.  resume_from: a checkpoint to continue from.
    fit_kwargs go to every Trainer.fit call."""
    if resume_from is not None:
        try:
            trainer.fit(train, epochs=0, resume_from=resume_from, **fit_kwargs)
        except ValueError as exc:        # another run's checkpoint, a damaged file
            print(f"{os.path.basename(sys.argv[0])}: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        print(f"resumed from {resume_from} after epoch {trainer.epoch}", flush=True)
    past = trainer.history.get("wall_seconds") or [0.0]
    offset = past[-1] or 0.0
    start = time.perf_counter()

    def evaluate(model):
        metrics = dict(eval_fn(model))
        metrics["wall_seconds"] = offset + time.perf_counter() - start
        return metrics

    while True:
        history = trainer.history
        results["epochs"] = [_row(history, i, derive) for i in range(len(history.get("epoch", [])))]
        if results["epochs"]:
            _write_json(results, output)
        if trainer.epoch >= epochs:
            return results
        trainer.fit(train, epochs=trainer.epoch + 1, eval_fn=evaluate, **fit_kwargs)
        print(report(_row(trainer.history, -1, derive)), flush=True)


def _row(history, i, derive):
    row = {k: v[i] for k, v in history.items()}
    if derive is not None:
        row.update(derive(row))
    return row


def _write_json(results, path):
    """A file that is either the old results or the new ones, never half."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp")
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, path)
