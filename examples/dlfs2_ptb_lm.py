"""The language models of "Deep Learning from Scratch 2" on PTB, with rnnfast.

Two recipes, as the book's scripts (read, not copied):

- ``rnnlm`` (ch06/train_rnnlm.py, the default): the whole PTB training set;
  embedding 100, a 1-layer LSTM of 100 units, a softmax over the 10,000
  words; BPTT 35, batch 20, plain SGD with lr 20, gradient global norm
  clipped at 0.25, 4 epochs, the loss averaged over tokens.  The book
  reports a test perplexity of about 136 (a public run of the script:
  135.50; another 135.74), measured as ch06's eval_perplexity does: 10
  streams in chunks of 35 steps, the state carried, after reset_state().
- ``simple-rnnlm`` (ch05/train_custom_loop.py): the first 1,000 words of
  the training set (418 word types); embedding 100, a tanh RNN of 100
  units; BPTT 5, batch 10, SGD lr 0.1, no clipping, 100 epochs.  The book's
  notebook run printed a training perplexity of 359.9 after epoch 1 and
  5.26 after epoch 100.

rnnfast's RnnLM initialises its embedding and output layers as the book
does (N(0, 0.01^2), N(0, 1/H), zero biases); its recurrent layer takes
PyTorch's U(-1/sqrt(H), 1/sqrt(H)), so this script redraws it as the book
does (Wx ~ N(0, 1/D), Wh ~ N(0, 1/H), b = 0; ``--init pytorch`` keeps
PyTorch's).  The trainer reads the corpus as N streams that start
(L - 1) // N apart and, with ``carry_state=True``, carries both its read
position and the model's state from one epoch into the next, as the book's
loops do.

    python examples/dlfs2_ptb_lm.py [--recipe rnnlm|simple-rnnlm]
        [--data ../shared/data/ptb] [--checkpoint F [--resume]]

Writes examples/results/dlfs2_<recipe>.json after every epoch.  Not run in
CI (tests/test_examples.py runs it on a made-up corpus).
"""
import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _epochs import (add_checkpoint_flags, at_least_one, at_least_zero,  # noqa: E402
                     checkpointing, train_by_epoch)
from rnnfast.data import load_ptb                     # noqa: E402
from rnnfast.models import RnnLM, perplexity          # noqa: E402
from rnnfast.optim import SGD                         # noqa: E402
from rnnfast.trainer import Trainer                   # noqa: E402

# recipe -> (cell, BPTT T, batch N, lr, clip norm, epochs, words of train, reference)
RECIPES = {
    "rnnlm": dict(cell="lstm", T=35, N=20, lr=20.0, clip_norm=0.25, epochs=4, words=None,
                  reference={"test_ppl": 136, "public runs": [135.50, 135.74]}),
    "simple-rnnlm": dict(cell="rnn", T=5, N=10, lr=0.1, clip_norm=None, epochs=100,
                         words=1000, reference={"train_ppl_epoch_1": 359.9,
                                                "train_ppl_epoch_100": 5.26}),
}


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", choices=sorted(RECIPES), default="rnnlm")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ptb"))
    p.add_argument("--epochs", type=at_least_one, default=None,
                   help="default: the recipe's (4 or 100)")
    p.add_argument("--max-batches", type=at_least_one, default=None,
                   help="batches per epoch (quick tries; default: all)")
    p.add_argument("--eval-tokens", type=at_least_one, default=None,
                   help="evaluate on the first N valid/test tokens (quick tries)")
    p.add_argument("--init", choices=["book", "pytorch"], default="book",
                   help="the recurrent layer's initial weights (default: the book's)")
    p.add_argument("--threads", type=at_least_one, default=1, help="BLAS threads")
    p.add_argument("--seed", type=at_least_zero, default=0)
    p.add_argument("--output", default=None,
                   help="default: examples/results/dlfs2_<recipe>.json")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_checkpoint_flags(p)
    args = p.parse_args()
    return args, checkpointing(p, args)


def book_init(network, seed):
    """The book's TimeRNN / TimeLSTM weights, in place: Wx ~ N(0, 1/D),
    Wh ~ N(0, 1/H) (each gate block alike), b = 0."""
    rng = np.random.default_rng([seed, 1])
    Wx, Wh, b = network.params
    Wx[...] = rng.standard_normal(Wx.shape) / np.sqrt(Wx.shape[0])
    Wh[...] = rng.standard_normal(Wh.shape) / np.sqrt(Wh.shape[0])
    b[...] = 0


def main():
    args, (checkpoint, resume_from) = parse()
    recipe = RECIPES[args.recipe]
    epochs = args.epochs or recipe["epochs"]
    output = args.output or str(ROOT / "examples" / "results" / f"dlfs2_{args.recipe}.json")
    from threadpoolctl import threadpool_limits
    threadpool_limits(args.threads)
    data = load_ptb(args.data)
    train = data.train if recipe["words"] is None else data.train[:recipe["words"]]
    # the book's ch05 sizes its vocabulary by the ids of its 1,000 words
    # (ids in order of first appearance, so they are 0 .. 417)
    vocab_size = len(data.vocab) if recipe["words"] is None else int(train.max()) + 1
    model = RnnLM(vocab_size, wordvec_size=100, hidden_size=100, cell=recipe["cell"],
                  random_state=args.seed)
    if args.init == "book":
        book_init(model.network, args.seed)
    T, N = recipe["T"], recipe["N"]
    valid, test = data.valid[:args.eval_tokens], data.test[:args.eval_tokens]

    def evaluate(m):
        if recipe["words"] is not None:     # ch05 reports its training perplexity only
            return {}
        t0 = time.perf_counter()
        out = {"valid_ppl": perplexity(m, valid, batch_size=10, time_size=35),
               "test_ppl": perplexity(m, test, batch_size=10, time_size=35)}
        out["eval_seconds"] = time.perf_counter() - t0
        return out
    trainer = Trainer(model, SGD(lr=recipe["lr"]), clip_norm=recipe["clip_norm"],
                      carry_state=True, checkpoint=checkpoint, random_state=args.seed,
                      verbose=not args.quiet)
    print(f"DLFS2 {args.recipe}: {train.size:,} training tokens, vocabulary {vocab_size:,}; "
          f"threads {args.threads}", flush=True)
    results = {"recipe": f"dlfs2-{args.recipe}", "reference": recipe["reference"],
               "threads": args.threads, "epochs": []}

    def report(row):
        evals = "" if row.get("test_ppl") is None else (
            f" | valid ppl {row['valid_ppl']:7.2f} | test ppl {row['test_ppl']:7.2f} | "
            f"{row['eval_seconds']:.0f} s eval")
        return (f"epoch {row['epoch']:2d} | train ppl {row['train_ppl']:8.2f}{evals} | "
                f"{row['seconds']:.1f} s train ({row['tokens_per_sec']:,.0f} words/s) | "
                f"wall {row['wall_seconds'] / 60:.1f} min")
    train_by_epoch(trainer, train, epochs, results, output, report, evaluate,
                   resume_from=resume_from,
                   # the loss is the mean over tokens
                   derive=lambda row: {"train_ppl": math.exp(row["loss"])},
                   batch_size=N, time_size=T, max_batches=args.max_batches)
    last = results["epochs"][-1]
    if last.get("test_ppl") is not None:
        print(f"final test perplexity {last['test_ppl']:.2f} (the book: about 136); "
              f"results in {output}")
    else:
        print(f"final training perplexity {last['train_ppl']:.2f} (the book's run: 5.26 "
              f"after epoch 100); results in {output}")


if __name__ == "__main__":
    main()
