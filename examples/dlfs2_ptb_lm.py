"""The language models of "Deep Learning from Scratch 2" on PTB, with rnnfast.

Three recipes, as the book's scripts (read, not copied):

- ``rnnlm`` (ch06/train_rnnlm.py, the default): the whole PTB training set;
  embedding 100, a 1-layer LSTM of 100 units, a softmax over the 10,000
  words; BPTT 35, batch 20, plain SGD with lr 20, gradient global norm
  clipped at 0.25, 4 epochs, the loss averaged over tokens.  The book
  reports a test perplexity of about 136 (a public run of the script:
  135.50; another 135.74), measured as ch06's eval_perplexity does: 10
  streams in chunks of 35 steps, the state carried, after reset_state().
- ``better-rnnlm`` (ch06/train_better_rnnlm.py): embedding = hidden = 650,
  two LSTM layers, dropout 0.5 after the embedding and after each LSTM
  layer, the output layer's weights tied to the embedding's; BPTT 35,
  batch 20, SGD lr 20, clip 0.25, 40 epochs, lr / 4 after any epoch whose
  validation perplexity is not the best so far, the state reset after
  each epoch.  The book: test perplexity about 75.76 (over four hours
  here: an epoch takes minutes).
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
(L - 1) // N apart and carries its read position from one epoch into the
next; ``carry_state=True`` carries the model's state too, as the book's
loops for ``rnnlm`` and ``simple-rnnlm`` do (``better-rnnlm``'s resets it
after each epoch).

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
from rnnfast.optim import SGD, ReduceOnPlateau        # noqa: E402
from rnnfast.trainer import Trainer                   # noqa: E402

# recipe -> model (cell, size of the embedding and each layer, layers, dropout,
# tied weights), training (BPTT T, batch N, lr, clip norm, epochs, lr / 4 on a
# plateau, state carried across epochs), words of train used (None: all) and
# the book's numbers
_LM = dict(cell="lstm", layers=1, dropout=0.0, tie=False, T=35, N=20, lr=20.0,
           clip_norm=0.25, plateau=False, carry=True, words=None)
RECIPES = {
    "rnnlm": dict(_LM, size=100, epochs=4,
                  reference={"test_ppl": 136, "public runs": [135.50, 135.74]}),
    "better-rnnlm": dict(_LM, size=650, layers=2, dropout=0.5, tie=True, epochs=40,
                         plateau=True, carry=False, reference={"test_ppl": 75.76}),
    "simple-rnnlm": dict(_LM, cell="rnn", size=100, T=5, N=10, lr=0.1, clip_norm=None,
                         epochs=100, words=1000,
                         reference={"train_ppl_epoch_1": 359.9, "train_ppl_epoch_100": 5.26}),
}


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", choices=sorted(RECIPES), default="rnnlm")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ptb"))
    p.add_argument("--epochs", type=at_least_one, default=None,
                   help="default: the recipe's (4, 40 or 100)")
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
    """The book's TimeRNN / TimeLSTM weights, in place, in every layer:
    Wx ~ N(0, 1/D), Wh ~ N(0, 1/H) (each gate block alike), b = 0."""
    rng = np.random.default_rng([seed, 1])
    for layer in range(network.num_layers):
        Wx, Wh, b = network.layer_params(layer)
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
    model = RnnLM(vocab_size, wordvec_size=recipe["size"], hidden_size=recipe["size"],
                  num_layers=recipe["layers"], cell=recipe["cell"], dropout=recipe["dropout"],
                  tie_weights=recipe["tie"], random_state=args.seed)
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
    opt = SGD(lr=recipe["lr"])
    # better-rnnlm: lr / 4 after an epoch whose validation perplexity (the
    # first key evaluate returns) is not the best so far
    trainer = Trainer(model, opt, clip_norm=recipe["clip_norm"],
                      lr_schedule=ReduceOnPlateau(opt, factor=0.25) if recipe["plateau"]
                      else None,
                      carry_state=recipe["carry"], checkpoint=checkpoint,
                      random_state=args.seed, verbose=not args.quiet)
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
        print(f"final test perplexity {last['test_ppl']:.2f} (the book: about "
              f"{recipe['reference']['test_ppl']}); results in {output}")
    else:
        print(f"final training perplexity {last['train_ppl']:.2f} (the book's run: 5.26 "
              f"after epoch 100); results in {output}")


if __name__ == "__main__":
    main()
