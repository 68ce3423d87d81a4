"""The same Zaremba "small" PTB recipe in PyTorch (CPU), for timing an epoch
side by side with examples/zaremba_ptb_small.py.

Same data, batches (rnnfast.data.StreamBatcher: 20 streams, BPTT 20, state
carried and detached between batches, reset each epoch), model (2-layer
LSTM 200, embedding 200, all weights ~ U(-0.1, 0.1)), loss (cross-entropy
summed over time, averaged over the batch), SGD lr 1 halved after each
epoch past the 5th, global-norm clipping at 5.

    python examples/zaremba_ptb_small_torch.py --epochs 1 --threads 1

Writes examples/results/zaremba_ptb_small_torch.json.  Not run in CI.
"""
import argparse
import json
import math
import os
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _epochs import at_least_one, at_least_zero          # noqa: E402
from rnnfast.data import StreamBatcher, load_ptb      # noqa: E402


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ptb"))
    p.add_argument("--epochs", type=at_least_one, default=1)
    p.add_argument("--max-batches", type=at_least_one, default=None)
    p.add_argument("--eval-tokens", type=at_least_one, default=None)
    p.add_argument("--threads", type=at_least_one, default=1, help="torch threads")
    p.add_argument("--seed", type=at_least_zero, default=0)
    p.add_argument("--output", default=str(ROOT / "examples" / "results" /
                                           "zaremba_ptb_small_torch.json"))
    return p.parse_args()


def build(torch, V, H, layers):
    nn = torch.nn

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, H)
            self.lstm = nn.LSTM(H, H, layers, batch_first=True)
            self.out = nn.Linear(H, V)
            for p in self.parameters():
                nn.init.uniform_(p, -0.1, 0.1)

        def forward(self, x, state):
            hs, state = self.lstm(self.embed(x), state)
            return self.out(hs), state
    return LM()


def perplexity(torch, model, corpus, N, T):
    L = (corpus.size - 1) // N
    xs = torch.from_numpy(corpus[:N * L].reshape(N, L))
    ts = torch.from_numpy(corpus[1:N * L + 1].reshape(N, L))
    total, state = 0.0, None
    with torch.no_grad():
        for s in range(0, L, T):
            logits, state = model(xs[:, s:s + T], state)
            total += torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), ts[:, s:s + T].reshape(-1),
                reduction="sum").item()
    return math.exp(total / (N * L))


def main():
    args = parse()
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = load_ptb(args.data)
    valid, test = data.valid[:args.eval_tokens], data.test[:args.eval_tokens]
    N = T = 20
    model = build(torch, len(data.vocab), 200, 2)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    batcher = StreamBatcher(data.train, N, T)
    results = {"recipe": "zaremba-small", "framework": f"torch {torch.__version__}",
               "threads": args.threads, "epochs": []}
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        lr = 0.5 ** max(0, epoch - 5)
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        state, loss_sum, n = None, 0.0, 0
        total = len(batcher) if args.max_batches is None else min(len(batcher),
                                                                  args.max_batches)
        t0 = time.perf_counter()
        for _ in range(total):
            x, t = (torch.from_numpy(a) for a in batcher.next_batch())
            if state is not None:
                state = tuple(s.detach() for s in state)
            logits, state = model(x, state)
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), t.reshape(-1)) * T
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            loss_sum += loss.item()
            n += 1
        seconds = time.perf_counter() - t0
        model.eval()
        e0 = time.perf_counter()
        row = {"epoch": epoch, "lr": lr, "train_ppl": math.exp(loss_sum / n / T),
               "seconds": seconds, "tokens_per_sec": n * N * T / seconds,
               "valid_ppl": perplexity(torch, model, valid, N, T),
               "test_ppl": perplexity(torch, model, test, 1, 200)}
        row["eval_seconds"] = time.perf_counter() - e0
        row["wall_seconds"] = time.perf_counter() - start
        results["epochs"].append(row)
        print(f"epoch {epoch:2d} | lr {lr:.4g} | train ppl {row['train_ppl']:7.2f} | "
              f"valid ppl {row['valid_ppl']:7.2f} | test ppl {row['test_ppl']:7.2f} | "
              f"{seconds:.0f} s train ({row['tokens_per_sec']:,.0f} words/s), "
              f"{row['eval_seconds']:.0f} s eval", flush=True)
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
