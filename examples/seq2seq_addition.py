"""DLFS2 ch07 with rnnfast: reversed input + Peeky seq2seq on addition.txt.

Recipe of DLFS2 ch07/train_seq2seq.py: wordvec 16, hidden 128, batch 128,
Adam (lr 0.001), global-norm clipping 5.0; DLFS2's exact 45,000 / 5,000
split (rnnfast.data.load_seq2seq).  Accuracy = exact match of the whole
greedy-decoded answer on all 5,000 test rows after every epoch.
Acceptance bar (shared/data/README.md): >= 90 % within 15 epochs; DLFS2's
own run passed 90 % at epoch 11.

    python examples/seq2seq_addition.py [--data ../shared/data/seq2seq/addition.txt]

Writes examples/results/seq2seq_addition.json after every epoch.  With
--checkpoint, a run killed part way continues with --resume (the same
options) from its last finished epoch, exactly as it would have gone on.
Not run in CI (tests/test_examples.py runs it on made-up sums).
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _epochs import (add_checkpoint_flags, at_least_one, at_least_zero,  # noqa: E402
                     checkpointing, train_by_epoch)
from rnnfast.data import load_seq2seq                           # noqa: E402
from rnnfast.models import AttentionSeq2seq, PeekySeq2seq, Seq2seq  # noqa: E402
from rnnfast.optim import Adam                                  # noqa: E402
from rnnfast.trainer import Trainer                             # noqa: E402

MODELS = {"plain": Seq2seq, "peeky": PeekySeq2seq, "attention": AttentionSeq2seq}


def parse(doc, data, hidden, epochs, model, name):
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "seq2seq" / data))
    p.add_argument("--model", choices=sorted(MODELS), default=model)
    p.add_argument("--no-reverse", action="store_true", help="keep the input order")
    p.add_argument("--hidden-size", type=at_least_one, default=hidden)
    p.add_argument("--epochs", type=at_least_one, default=epochs)
    p.add_argument("--max-batches", type=at_least_one, default=None, help="quick tries")
    p.add_argument("--max-test", type=at_least_one, default=None, help="quick tries")
    p.add_argument("--threads", type=at_least_one, default=1, help="BLAS threads")
    p.add_argument("--seed", type=at_least_zero, default=0)
    p.add_argument("--output", default=str(ROOT / "examples" / "results" / f"{name}.json"))
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_checkpoint_flags(p)
    args = p.parse_args()
    return args, checkpointing(p, args)


def run(parsed, name):
    args, (checkpoint, resume_from) = parsed
    from threadpoolctl import threadpool_limits
    threadpool_limits(args.threads)
    data = load_seq2seq(args.data, reverse_input=not args.no_reverse)
    xt, tt = data.x_test[:args.max_test], data.t_test[:args.max_test]
    model = MODELS[args.model](len(data.vocab), 16, args.hidden_size, random_state=args.seed)

    def accuracy(m):
        guess = m.generate(xt, data.start_id, tt.shape[1] - 1)
        return {"test_accuracy": float((guess == tt[:, 1:]).all(axis=1).mean())}
    trainer = Trainer(model, Adam(lr=0.001), clip_norm=5.0, checkpoint=checkpoint,
                      random_state=args.seed, verbose=not args.quiet)
    print(f"{name}: {len(data.x_train):,} train / {len(xt):,} test rows, "
          f"{len(data.vocab)} characters, {type(model).__name__}, hidden "
          f"{args.hidden_size}, reversed input: {not args.no_reverse}", flush=True)
    results = {"script": name, "model": type(model).__name__,
               "reverse_input": not args.no_reverse, "hidden_size": args.hidden_size,
               "threads": args.threads, "epochs": []}

    def report(row):
        return (f"epoch {row['epoch']:2d} | loss {row['loss']:.4f} | test exact match "
                f"{row['test_accuracy']:7.2%} | {row['seconds']:.1f} s/epoch | wall "
                f"{row['wall_seconds']:.0f} s")
    train_by_epoch(trainer, (data.x_train, data.t_train), args.epochs, results, args.output,
                   report, accuracy, resume_from=resume_from, batch_size=128,
                   max_batches=args.max_batches)
    guess = model.generate(xt[:10], data.start_id, tt.shape[1] - 1)
    for x, g, t in zip(xt[:10], guess, tt[:10, 1:]):
        q = data.vocab.decode(x if args.no_reverse else x[::-1]).strip()
        print(f"  {'ok ' if (g == t).all() else 'BAD'} {q} -> {data.vocab.decode(g).strip()}"
              f"  (true {data.vocab.decode(t).strip()})")
    print(f"results in {args.output}")


if __name__ == "__main__":
    run(parse(__doc__, "addition.txt", 128, 15, "peeky", "seq2seq_addition"),
        "seq2seq_addition")
