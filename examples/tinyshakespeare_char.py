"""Character-level LSTM on Tiny Shakespeare with rnnfast.

Model and optimiser after char-rnn's train.lua defaults: 2-layer LSTM with
128 units (embedding 128), BPTT 50, batch 50, RMSprop lr 2e-3 (decay rate
0.95), global-norm clipping 5, no dropout; the lr is multiplied by 0.97 per
epoch after epoch 10.  Split as nanoGPT's data/shakespeare_char/prepare.py:
the first 90 % of the characters train (1,003,854), the last 10 % validate
(111,540), vocabulary = the 65 sorted characters.

Reported: validation cross-entropy in nats per character (state carried
over 50 streams in chunks of 50), comparable in unit and split with
nanoGPT's 1.4697 (6-layer Transformer, GPU) and ~1.88 (its small CPU
config).  Ends with a sample.

    python examples/tinyshakespeare_char.py [--data ../shared/data/tinyshakespeare/input.txt]

Writes examples/results/tinyshakespeare_char.json after every epoch.  With
--checkpoint, a run killed part way continues with --resume (the same
options) from its last finished epoch, exactly as it would have gone on.
Not run in CI (tests/test_examples.py runs it on a made-up text).
"""
import argparse
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _epochs import (add_checkpoint_flags, at_least_one, at_least_zero,  # noqa: E402
                     checkpointing, train_by_epoch)
from rnnfast import io as rio                         # noqa: E402
from rnnfast.data import load_text                    # noqa: E402
from rnnfast.models import RnnLM, perplexity          # noqa: E402
from rnnfast.optim import RMSprop, StepDecay          # noqa: E402
from rnnfast.trainer import Trainer                   # noqa: E402


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" /
                                         "tinyshakespeare" / "input.txt"))
    p.add_argument("--epochs", type=at_least_one, default=20)
    p.add_argument("--hidden-size", type=at_least_one, default=128)
    p.add_argument("--num-layers", type=at_least_one, default=2)
    p.add_argument("--max-batches", type=at_least_one, default=None, help="quick tries")
    p.add_argument("--eval-tokens", type=at_least_one, default=None, help="quick tries")
    p.add_argument("--threads", type=at_least_one, default=1, help="BLAS threads")
    p.add_argument("--seed", type=at_least_zero, default=0)
    p.add_argument("--output", default=str(ROOT / "examples" / "results" /
                                           "tinyshakespeare_char.json"))
    p.add_argument("--save-model", default=None, help="also save the model (.npz)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_checkpoint_flags(p)
    args = p.parse_args()
    return args, checkpointing(p, args)


def main():
    args, (checkpoint, resume_from) = parse()
    from threadpoolctl import threadpool_limits
    threadpool_limits(args.threads)
    data = load_text(args.data, level="char", valid_fraction=0.1)
    valid = data.valid[:args.eval_tokens]
    N = T = 50
    model = RnnLM(len(data.vocab), hidden_size=args.hidden_size, num_layers=args.num_layers,
                  cell="lstm", random_state=args.seed)
    opt = RMSprop(lr=2e-3, decay_rate=0.95)
    trainer = Trainer(model, opt, clip_norm=5.0, lr_schedule=StepDecay(opt, 0.97, 10),
                      checkpoint=checkpoint, random_state=args.seed, verbose=not args.quiet)
    print(f"Tiny Shakespeare: {data.train.size:,} train / {data.valid.size:,} valid "
          f"characters, vocabulary {len(data.vocab)}; LSTM {args.num_layers}x"
          f"{args.hidden_size}", flush=True)
    results = {"script": "tinyshakespeare_char", "hidden_size": args.hidden_size,
               "num_layers": args.num_layers, "threads": args.threads,
               "reference_val_nats": {"nanoGPT shakespeare_char (GPU)": 1.4697,
                                      "nanoGPT CPU config": 1.88}, "epochs": []}

    def report(row):
        return (f"epoch {row['epoch']:2d} | lr {row['lr']:.3g} | train loss {row['loss']:.4f} | "
                f"valid {row['valid_nats']:.4f} nats/char | {row['seconds']:.0f} s "
                f"({row['tokens_per_sec']:,.0f} chars/s) | wall {row['wall_seconds'] / 60:.1f} min")
    train_by_epoch(trainer, data.train, args.epochs, results, args.output, report,
                   lambda m: {"valid_nats": math.log(perplexity(m, valid, N, T))},
                   resume_from=resume_from, batch_size=N, time_size=T,
                   max_batches=args.max_batches)
    best = min(r["valid_nats"] for r in results["epochs"])
    print(f"best validation loss {best:.4f} nats/char (nanoGPT: 1.4697 GPU Transformer, "
          f"~1.88 CPU config)")
    sample = model.generate(data.vocab.encode("ROMEO:\n"), 400, temperature=0.8,
                            random_state=args.seed)
    print(data.vocab.decode(sample))
    if args.save_model:
        rio.save(model, args.save_model, metadata={"vocab": data.vocab.to_dict(),
                                                   "kind": "language-model"})
    print(f"results in {args.output}")


if __name__ == "__main__":
    main()
