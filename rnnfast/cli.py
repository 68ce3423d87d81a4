"""rnnfast's command line.  Each command lives in a small function; the
library itself never prints, only this module does."""
import argparse
import os
import sys


def cmd_info(args):
    """Print rnnfast.show_config(): version, BLAS, build flags.  Returns 0."""
    from ._info import show_config
    show_config()
    return 0


def cmd_bench(args):
    """Side-by-side timing: rnnfast vs PyTorch vs the NumPy reference."""
    import json

    from . import bench

    def split(value, allowed, name):
        items = [v for v in value.split(",") if v]
        bad = [v for v in items if v not in allowed]
        if bad:
            raise SystemExit(f"rnnfast bench: {name}: unknown {bad}; choose from "
                             f"{', '.join(allowed)}")
        return items
    cells = split(args.cells, bench.CELLS, "--cells")
    modes = split(args.modes, bench.MODES, "--modes")
    configs = split(args.configs, tuple(bench.CONFIGS), "--configs")
    impls = ["rnnfast"] + [i for i in split(args.impls, bench.IMPLS, "--impls")
                           if i != "rnnfast"]
    threads = args.threads
    for name in ("settle", "min_time"):
        if not getattr(args, name) >= 0:            # NaN too
            raise ValueError(f"--{name.replace('_', '-')}: expected seconds >= 0, "
                             f"got {getattr(args, name)}")
    header = {}

    def progress(row):
        if not args.json:
            print("  ".join(bench.format_row(row)), flush=True)
    if not args.json:
        print("  ".join(bench.COLUMNS), flush=True)
    header, rows = bench.run(cells, modes, configs, threads, impls, args.dtype,
                             repeats=args.repeats, min_time=args.min_time,
                             settle=args.settle,
                             peak_size=args.peak_size, progress=progress,
                             clock=args.clock)
    if args.json:
        print(json.dumps({"header": header, "rows": rows}, indent=1))
        return 0
    print()
    print(bench.format_header(header))
    print()
    print(bench.format_table(rows, markdown=args.markdown))
    return 0


# ------------------------------------------------- training commands
def _threads(n):
    """A context limiting BLAS to `n` threads (None: leave it alone).  On a
    shared machine one thread per process avoids oversubscription."""
    import contextlib
    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(n)


def _optimizer(name, lr):
    from . import optim
    classes = {"sgd": optim.SGD, "momentum": optim.Momentum, "adam": optim.Adam,
               "rmsprop": optim.RMSprop, "adagrad": optim.AdaGrad}
    return classes[name](lr=lr)


def _int_at_least(minimum):
    """An argparse type: integers >= minimum, refused by the flag's name."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value
    return parse


# Counts (--epochs, --max-train, ...): 0 or a negative number would silently
# mean "all rows" or "all but N" when slicing.
_at_least_one = _int_at_least(1)
# --threads (0: leave BLAS alone), --seed, --decay-after: BLAS or NumPy would
# take a negative number, or name another argument.
_at_least_zero = _int_at_least(0)


def _probability(text):
    """argparse type of --top-p: a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def _positive_number(text):
    """argparse type of --decay: a finite number > 0 (checked even where the
    flag goes unused, so that a mistyped value is never silently taken)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _thread_counts(text):
    """argparse type of --threads: comma-separated integers >= 1."""
    counts = []
    for item in (t for t in text.split(",") if t.strip()):
        counts.append(_at_least_one(item.strip()))
    if not counts:
        raise argparse.ArgumentTypeError(f"expected thread counts such as 1,2, got {text!r}")
    return counts


def _check_output(path, option="--output"):
    """Refuse, before any training, a path the model could not be saved to
    (rnnfast.io.check_writable_path: a directory, a missing folder, an empty
    name), as a ValueError naming the option (main: exit code 2)."""
    from . import io as rio
    try:
        rio.check_writable_path(path)
    except (ValueError, OSError) as exc:
        reason = str(exc).removeprefix("path: ")
        raise ValueError(f"{option}: {reason}") from exc


def _report(history, keys):
    """One printed line per epoch from a trainer history (None: an epoch
    without that metric)."""
    for i, epoch in enumerate(history.get("epoch", [])):
        parts = [f"epoch {epoch}", f"train loss {history['loss'][i]:.4f}"]
        parts += [f"{name} {fmt.format(history[key][i])}" for key, name, fmt in keys
                  if key in history and history[key][i] is not None]
        parts += [f"{history['seconds'][i]:.1f} s", f"{history['tokens_per_sec'][i]:,.0f} tok/s"]
        print(" | ".join(parts))


def _lm_data(args):
    from . import data
    if os.path.isdir(args.data):
        return data.load_ptb(args.data, vocab_size=None)
    return data.load_text(args.data, level=args.level, valid_fraction=args.valid_fraction)


def cmd_train_lm(args):
    """Train a language model on a text file or a PTB folder and save it."""
    import math
    from . import io as rio
    from .models import RnnLM, perplexity
    from .optim import StepDecay
    from .trainer import Trainer

    _check_output(args.output)
    checkpoint, resume_from = _checkpointing(args)
    corpus = _lm_data(args)
    print(f"data: {len(corpus.vocab)} {corpus.vocab.level}s in the vocabulary, "
          f"{corpus.train.size:,} training tokens, {corpus.valid.size:,} validation tokens")
    if corpus.valid.size <= args.batch_size:
        # nothing here needs the validation metric (no early stopping, an
        # epoch-based schedule), so train and save without it
        print(f"no validation perplexity: it needs more than --batch-size "
              f"{args.batch_size} validation tokens")
    model = RnnLM(len(corpus.vocab), args.embed_size, args.hidden_size, args.num_layers,
                  cell=args.cell, dropout=args.dropout, init_scale=args.init_scale,
                  random_state=args.seed)
    opt = _optimizer(args.optimizer, args.lr)
    schedule = StepDecay(opt, args.decay, args.decay_after) if args.decay_after else None
    valid = corpus.valid

    def evaluate(m):
        if valid.size <= args.batch_size:
            return {}
        ppl = perplexity(m, valid, args.batch_size, args.time_size)
        return {"valid_ppl": ppl, "valid_nats": math.log(ppl)}
    trainer = Trainer(model, opt, clip_norm=args.clip or None, lr_schedule=schedule,
                      checkpoint=checkpoint, random_state=args.seed, verbose=not args.quiet,
                      carry_state=args.carry_state)
    with _threads(args.threads or None):
        history = trainer.fit(corpus.train, args.epochs, args.batch_size, args.time_size,
                              eval_fn=evaluate, max_batches=args.max_batches,
                              resume_from=resume_from)
    _report(history, [("valid_ppl", "valid ppl", "{:.2f}"),
                      ("valid_nats", "valid nats/token", "{:.4f}")])
    rio.save(model, args.output, metadata={"vocab": corpus.vocab.to_dict(),
                                           "kind": "language-model"})
    print(f"saved {args.output}")
    return 0


def cmd_generate(args):
    """Sample text from a language model saved by train-lm."""
    from . import io as rio
    from .data import Vocab

    model = rio.load(args.model)
    info = rio.read_metadata(args.model)
    meta = info["metadata"]
    # ValueErrors: main() prints them and exits with status 2, as for other user errors
    if not hasattr(model, "generate") or not hasattr(model, "reset_state"):
        raise ValueError(f"{args.model} holds a {info['class']}, "
                         "not a language model (`rnnfast train-lm` saves those; a seq2seq "
                         "model answers questions in `rnnfast train-seq2seq`)")
    if "vocab" not in meta:
        raise ValueError(f"{args.model} is a language model without a vocabulary in its "
                         "metadata (`rnnfast train-lm` saves one; io.save(model, path, "
                         "metadata={'vocab': vocab.to_dict()}) does too)")
    vocab = Vocab.from_dict(meta["vocab"])
    if len(vocab) != model.vocab_size:
        raise ValueError(f"{args.model}'s vocabulary has {len(vocab)} tokens and its model "
                         f"{model.vocab_size}: not a pair train-lm saved")
    try:
        if vocab.level == "char":
            # without --prime: a newline, as at the start of a line, if the
            # training text had one; else its first token
            default = "\n" if "\n" in vocab else vocab.id_to_token[0]
            ids = vocab.encode(args.prime if args.prime else default)
        else:
            words = args.prime.split()
            ids = vocab.encode(words if words else [vocab.eos_token or vocab.id_to_token[0]])
    except ValueError as exc:
        raise ValueError(f"--prime: {str(exc).removeprefix('data: ')}") from exc
    skip = [vocab.unk_id] if vocab.unk_id is not None and len(vocab) > 1 else None
    out = model.generate(ids, args.length, temperature=args.temperature, top_k=args.top_k,
                         top_p=args.top_p, random_state=args.seed, skip_ids=skip)
    text = vocab.decode(out if args.prime else out[len(ids):])
    if vocab.level == "word" and vocab.eos_token:
        text = text.replace(" " + vocab.eos_token + " ", "\n").replace(vocab.eos_token, "\n")
    print(text)
    return 0


def _exact_match(model, x, t, start_id):
    """Share of rows whose greedily decoded answer equals t[:, 1:] exactly."""
    guess = model.generate(x, start_id, t.shape[1] - 1)
    return float((guess == t[:, 1:]).all(axis=1).mean())


def _seq2seq_model(args, vocab_size):
    from .models import AttentionSeq2seq, PeekySeq2seq, Seq2seq
    cls = AttentionSeq2seq if args.attention else PeekySeq2seq if args.peeky else Seq2seq
    return cls(vocab_size, args.embed_size, args.hidden_size, random_state=args.seed)


def _show_examples(model, data, rows, reverse):
    guess = model.generate(data.x_test[rows], data.start_id, data.t_test.shape[1] - 1)
    for r, g in zip(rows, guess):
        q = data.vocab.decode(data.x_test[r][::-1] if reverse else data.x_test[r])
        want = data.vocab.decode(data.t_test[r, 1:])
        mark = "ok " if (g == data.t_test[r, 1:]).all() else "BAD"
        print(f"  {mark} {q.strip():>30} = {data.vocab.decode(g).strip():<12} "
              f"(answer {want.strip()})")


def cmd_train_seq2seq(args):
    """Train a seq2seq model on a DLFS2 addition/date file; exact-match accuracy."""
    from . import io as rio
    from .data import load_seq2seq
    from .trainer import Trainer

    if args.output:
        _check_output(args.output)
    checkpoint, resume_from = _checkpointing(args)
    data = load_seq2seq(args.data, reverse_input=args.reverse)
    x, t = data.x_train, data.t_train
    if args.max_train is not None:
        x, t = x[:args.max_train], t[:args.max_train]
    xt, tt = data.x_test[:args.max_test], data.t_test[:args.max_test]
    print(f"data: {len(x):,} training and {len(xt):,} test rows, {len(data.vocab)} characters")
    if not len(xt):
        print("no test accuracy: the file is too short to hold test rows")
    model = _seq2seq_model(args, len(data.vocab))
    trainer = Trainer(model, _optimizer(args.optimizer, args.lr), clip_norm=args.clip or None,
                      checkpoint=checkpoint, random_state=args.seed, verbose=not args.quiet)
    with _threads(args.threads or None):
        history = trainer.fit((x, t), args.epochs, args.batch_size,
                              eval_fn=lambda m: {"accuracy": _exact_match(
                                  m, xt, tt, data.start_id)} if len(xt) else {},
                              max_batches=args.max_batches, resume_from=resume_from)
        _report(history, [("accuracy", "test exact match", "{:.2%}")])
        _show_examples(model, data, range(min(5, len(data.x_test))), args.reverse)
    if args.output:
        rio.save(model, args.output, metadata={
            "vocab": data.vocab.to_dict(), "kind": "seq2seq", "start_id": data.start_id,
            "reverse_input": bool(args.reverse)})
        print(f"saved {args.output}")
    return 0


def _addition_problems(n, digits, seed):
    """n distinct problems a+b (a, b < 10**digits) in DLFS2's fixed-width
    format, as a Seq2seqData with the question reversed."""
    import numpy as np
    from .data import Vocab
    rng = np.random.default_rng(seed)
    hi = 10 ** digits
    pairs = rng.choice(hi * hi, size=n, replace=False)
    a, b = pairs // hi, pairs % hi
    vocab = Vocab("char", unk_token=None)
    vocab._set(list("0123456789+ _"))
    q_width, a_width = 2 * digits + 1, digits + 1
    x = np.stack([vocab.encode(f"{i}+{j}".ljust(q_width)) for i, j in zip(a, b)])[:, ::-1]
    t = np.stack([vocab.encode("_" + str(i + j).ljust(a_width)) for i, j in zip(a, b)])
    return x, t, vocab


def _time_step(fn, repeats=5):
    import time
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _speed_against_reference(N, T, D, H):
    """Seconds of one LSTM training step (forward + BPTT) on (N, T, D) -> H:
    rnnfast's kernel and the NumPy reference (rnnfast._reference)."""
    import numpy as np
    from . import _reference as ref
    from .layers import TimeLSTM
    rng = np.random.default_rng(0)
    Wx = rng.standard_normal((D, 4 * H)).astype(np.float32) * 0.1
    Wh = rng.standard_normal((H, 4 * H)).astype(np.float32) * 0.1
    b = np.zeros(4 * H, np.float32)
    xs = rng.standard_normal((N, T, D)).astype(np.float32)
    dhs = rng.standard_normal((N, T, H)).astype(np.float32)
    layer = TimeLSTM(Wx, Wh, b)

    def fast():
        layer.forward(xs)
        layer.backward(dhs)

    def slow():
        h0 = np.zeros((N, H), np.float32)
        _, h, c, caches = ref.sequence_forward("lstm", xs, Wx, Wh, b, h0, h0.copy())
        ref.sequence_backward(dhs, np.zeros_like(h), np.zeros_like(c), caches)
    return _time_step(fast), _time_step(slow)


def cmd_demo(args):
    """Teach a reversed, peeky seq2seq to add 3-digit numbers; no data needed."""
    import time
    from .models import PeekySeq2seq
    from .optim import Adam, StepDecay
    from .trainer import Trainer

    n_test = 1000
    x, t, vocab = _addition_problems(args.train_size + n_test, 3, args.seed)
    xt, tt = x[-n_test:], t[-n_test:]
    x, t = x[:-n_test], t[:-n_test]
    start_id = vocab.token_to_id["_"]
    print(f"rnnfast demo: a seq2seq LSTM (reversed input, peeky decoder, hidden "
          f"{args.hidden_size}) learns 3-digit addition from {len(x):,} generated problems;\n"
          f"accuracy = exact match of the whole answer on {n_test:,} held-out problems.")
    model = PeekySeq2seq(len(vocab), 16, args.hidden_size, random_state=args.seed)
    opt = Adam(lr=args.lr)
    trainer = Trainer(model, opt, clip_norm=5.0, lr_schedule=StepDecay(opt, 0.5, 3),
                      random_state=args.seed, verbose=not args.quiet)
    start = time.perf_counter()
    with _threads(args.threads or None):
        history = trainer.fit((x, t), args.epochs, 128, max_batches=args.max_batches,
                              eval_fn=lambda m: {"accuracy": _exact_match(m, xt, tt,
                                                                          start_id)})
        _report(history, [("accuracy", "held-out exact match", "{:.1%}")])
        print(f"trained in {time.perf_counter() - start:.1f} s; some held-out problems:")
        guess = model.generate(xt[:8], start_id, tt.shape[1] - 1)
        for q, g, want in zip(xt[:8], guess, tt[:8, 1:]):
            mark = "ok " if (g == want).all() else "BAD"
            print(f"  {mark} {vocab.decode(q[::-1]).strip():>7} = "
                  f"{vocab.decode(g).strip():<4}  (true {vocab.decode(want).strip()})")
        N, T, H = 128, x.shape[1], args.hidden_size
        fast, slow = _speed_against_reference(N, T, 16, H)
    print(f"one LSTM training step (forward + BPTT, batch {N}, {T} steps, 16 -> {H}, "
          f"float32): rnnfast {fast * 1e3:.2f} ms, NumPy reference {slow * 1e3:.2f} ms "
          f"(speed-up {slow / fast:.1f}x)")
    return 0


def _add_common_training(p, epochs, batch_size, lr, optimizer, clip):
    p.add_argument("--epochs", type=_at_least_one, default=epochs)
    p.add_argument("--batch-size", type=_at_least_one, default=batch_size)
    p.add_argument("--optimizer", choices=["sgd", "momentum", "adam", "rmsprop", "adagrad"],
                   default=optimizer)
    p.add_argument("--lr", type=float, default=lr, help="learning rate")
    p.add_argument("--clip", type=float, default=clip,
                   help="global gradient-norm clipping (0: none)")
    p.add_argument("--seed", type=_at_least_zero, default=0)
    p.add_argument("--threads", type=_at_least_zero, default=1,
                   help="BLAS threads (default 1; 0 leaves BLAS alone)")
    p.add_argument("--max-batches", type=_at_least_one, default=None,
                   help="at most this many batches per epoch (quick tries)")
    _add_checkpoint_flags(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_checkpoint_flags(p):
    """--checkpoint and --resume (also the example scripts')."""
    p.add_argument("--checkpoint", default=None,
                   help="save the training state there after every epoch (atomically)")
    p.add_argument("--resume", action="store_true",
                   help="continue from --checkpoint, given the same options, up to "
                   "--epochs in all")


def _checkpointing(args):
    """(Trainer's checkpoint, fit's resume_from) from --checkpoint and
    --resume, refused before any training when unusable."""
    if args.resume and args.checkpoint is None:
        raise ValueError("--resume: needs --checkpoint, the file to continue from")
    if args.checkpoint is not None:
        _check_output(args.checkpoint, "--checkpoint")
    if args.resume and not os.path.isfile(args.checkpoint):
        raise ValueError(f"--resume: no checkpoint at {args.checkpoint!r} to continue from")
    return args.checkpoint, args.checkpoint if args.resume else None


def _add_training_commands(sub):
    p = sub.add_parser("train-lm", help="train a language model on a text file or a "
                       "Penn Treebank folder")
    p.add_argument("data", help="a text file, or a folder with ptb.{train,valid,test}.txt")
    p.add_argument("--level", choices=["char", "word"], default="char",
                   help="tokens of a text file (a PTB folder is always word level)")
    p.add_argument("--valid-fraction", type=float, default=0.1,
                   help="last part of a text file held out (nanoGPT: 0.1)")
    p.add_argument("--cell", choices=["lstm", "gru", "rnn"], default="lstm")
    p.add_argument("--embed-size", type=_at_least_one, default=None, help="default: hidden size")
    p.add_argument("--hidden-size", type=_at_least_one, default=128)
    p.add_argument("--num-layers", type=_at_least_one, default=2)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--init-scale", type=float, default=None,
                   help="all weights ~ U(-s, s) (Zaremba: 0.1)")
    p.add_argument("--time-size", type=_at_least_one, default=50, help="BPTT length")
    p.add_argument("--decay", type=_positive_number, default=0.5,
                   help="lr factor per epoch ...")
    p.add_argument("--decay-after", type=_at_least_zero, default=0,
                   help="... after this epoch (0: constant lr)")
    p.add_argument("--carry-state", action="store_true",
                   help="carry the state across epochs (DLFS2's RnnlmTrainer); by default "
                   "each epoch starts from zeros (Zaremba's main.lua)")
    p.add_argument("--output", "-o", default="lm.npz", help="where to save the model")
    _add_common_training(p, epochs=5, batch_size=32, lr=2e-3, optimizer="adam", clip=5.0)
    p.set_defaults(func=cmd_train_lm)

    p = sub.add_parser("generate", help="sample text from a model saved by train-lm")
    p.add_argument("model", help="a .npz written by `rnnfast train-lm`")
    p.add_argument("--prime", default="", help="text to start from")
    p.add_argument("--length", type=_at_least_zero, default=300, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=0.8, help="0: greedy")
    p.add_argument("--top-k", type=_at_least_one, default=None)
    p.add_argument("--top-p", type=_probability, default=None,
                   help="nucleus sampling: the likeliest tokens up to this mass, in (0, 1]")
    p.add_argument("--seed", type=_at_least_zero, default=None)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("train-seq2seq", help="train a seq2seq model on a DLFS2 "
                       "addition/date file")
    p.add_argument("data", help="addition.txt or date.txt (question_answer lines)")
    p.add_argument("--reverse", action="store_true", help="reverse the input (Sutskever)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--peeky", action="store_true", help="peeky decoder")
    kind.add_argument("--attention", action="store_true", help="attention decoder")
    p.add_argument("--embed-size", type=_at_least_one, default=16)
    p.add_argument("--hidden-size", type=_at_least_one, default=128)
    p.add_argument("--max-train", type=_at_least_one, default=None,
                   help="use the first N rows")
    p.add_argument("--max-test", type=_at_least_one, default=None,
                   help="evaluate on the first N")
    p.add_argument("--output", "-o", default=None, help="save the model there")
    _add_common_training(p, epochs=10, batch_size=128, lr=1e-3, optimizer="adam", clip=5.0)
    p.set_defaults(func=cmd_train_seq2seq)

    p = sub.add_parser("demo", help="learn 3-digit addition in seconds, no "
                       "download (then compare one step with the NumPy reference)")
    p.add_argument("--epochs", type=_at_least_one, default=5)
    p.add_argument("--train-size", type=_at_least_one, default=20000)
    p.add_argument("--hidden-size", type=_at_least_one, default=128)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=_at_least_zero, default=0)
    p.add_argument("--threads", type=_at_least_zero, default=1,
                   help="BLAS threads (0: leave alone)")
    p.add_argument("--max-batches", type=_at_least_one, default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo)


def build_parser():
    """The argparse parser of `rnnfast`: one subcommand (info, bench,
    train-lm, generate, train-seq2seq, demo) each, its function in `func`."""
    from . import __version__
    parser = argparse.ArgumentParser(prog="rnnfast", description=__doc__)
    parser.add_argument("--version", action="version", version=f"rnnfast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="version, BLAS library and kernel, build flags")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("bench", help="time rnnfast against PyTorch and the NumPy "
                       "reference, interleaved in one process")
    p.add_argument("--cells", default="rnn,lstm,gru", help="comma-separated: rnn,lstm,gru")
    p.add_argument("--modes", default="train,infer", help="comma-separated: train,infer")
    p.add_argument("--configs", default="tiny,small,zaremba-small,medium,zaremba-medium,"
                   "large", help="comma-separated configuration names")
    p.add_argument("--threads", type=_thread_counts, default="1,2",
                   help="comma-separated thread counts")
    p.add_argument("--impls", default="rnnfast,torch,reference",
                   help="comma-separated: rnnfast,torch,reference")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--repeats", type=_at_least_one, default=7, help="interleaved rounds")
    p.add_argument("--settle", type=float, default=0.02,
                   help="untimed pause (s) before each library's turn, so the thread pool "
                        "of the one before is idle again (0: none)")
    p.add_argument("--min-time", type=float, default=0.02,
                   help="seconds per round per implementation (small calls repeat)")
    p.add_argument("--peak-size", type=_at_least_one, default=1536,
                   help="matrix size of the GEMM peak measurement (sgemm; dgemm with "
                        "--dtype float64)")
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                   help="cpu: time 1-thread runs by process CPU time (robust on a "
                   "loaded machine); more threads always use wall time")
    p.add_argument("--markdown", action="store_true", help="final table in Markdown")
    p.add_argument("--json", action="store_true", help="print JSON only")
    p.set_defaults(func=cmd_bench)
    _add_training_commands(sub)
    return parser


def main(argv=None):
    """Run `rnnfast <command>` on argv (None: sys.argv[1:]); returns the
    command's exit status.  A ValueError, TypeError or OSError (a missing
    file included) exits with status 2 and a one-line message rather than
    a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except FileNotFoundError as exc:
        what = f"no such file: {exc.filename}" if exc.filename is not None else exc
        parser.exit(2, f"rnnfast {args.command}: error: {what}\n")
    except (ValueError, TypeError, OSError) as exc:
        # a user error (bad option value, bad or unreadable file): a message and
        # exit status 2 like argparse's own errors, not a traceback
        parser.exit(2, f"rnnfast {args.command}: error: {exc}\n")


if __name__ == "__main__":
    sys.exit(main())
