"""DLFS2's Rnnlm training step (examples/dlfs2_ptb_lm.py's default recipe:
V = 10,000, embedding 100, one LSTM of 100, N = 20, T = 35, SGD lr 20,
global-norm clip 0.25, float32) in rnnfast's Trainer and in PyTorch
(nn.Embedding, nn.LSTM, nn.Linear, cross_entropy, clip_grad_norm_,
torch.optim.SGD, the state carried and detached), on random ids.

The two run in one process, in alternating rounds of `steps` steps each
(PyTorch then rnnfast), at each thread count; printed: each side's median
ms a step over the rounds, and the median over rounds of PyTorch's time /
rnnfast's (the issue's way: ratios of times measured side by side).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/dlfs2_rnnlm_vs_torch.py [rounds] [steps]

rounds (5) and steps (20) a round.
"""
import statistics
import sys
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from rnnfast.models import RnnLM
from rnnfast.optim import SGD
from rnnfast.trainer import Trainer

V, D, H, N, T = 10_000, 100, 100, 20, 35


class TorchRnnlm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(V, D)
        self.lstm = torch.nn.LSTM(D, H, batch_first=True)
        self.out = torch.nn.Linear(H, V)

    def forward(self, x, state):
        hs, state = self.lstm(self.embed(x), state)
        return self.out(hs), state


def torch_stepper(batches):
    torch.manual_seed(0)
    model = TorchRnnlm()
    opt = torch.optim.SGD(model.parameters(), lr=20.0)
    state = None

    def step(i):
        nonlocal state
        xs, ts = batches[i % len(batches)]
        if state is not None:
            state = tuple(s.detach() for s in state)
        scores, state = model(xs, state)
        loss = torch.nn.functional.cross_entropy(scores.reshape(-1, V), ts.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()
    return step


def rnnfast_stepper(corpus):
    model = RnnLM(V, D, H, random_state=0)
    trainer = Trainer(model, SGD(lr=20.0), clip_norm=0.25, carry_state=True, verbose=False)
    trainer.fit(corpus, epochs=1, batch_size=N, time_size=T, max_batches=1)
    batcher = trainer.batcher

    def step(i):
        trainer.train_step(batcher.next_batch())
    return step


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    rng = np.random.default_rng(0)
    corpus = rng.integers(0, V, N * T * 50 + 1)
    batches = [(torch.from_numpy(rng.integers(0, V, (N, T))),
                torch.from_numpy(rng.integers(0, V, (N, T)))) for _ in range(8)]
    print(f"DLFS2 Rnnlm training step (V={V}, D={D}, H={H}, N={N}, T={T}), "
          f"{rounds} rounds of {steps} steps")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with threadpool_limits(threads):
            sides = {"torch": torch_stepper(batches), "rnnfast": rnnfast_stepper(corpus)}
            for step in sides.values():             # warm-up
                for i in range(3):
                    step(i)
            times = {name: [] for name in sides}
            for _ in range(rounds):
                for name, step in sides.items():
                    t0 = time.perf_counter()
                    for i in range(steps):
                        step(i)
                    times[name].append((time.perf_counter() - t0) / steps * 1e3)
        ratio = statistics.median(t / r for t, r in zip(times["torch"], times["rnnfast"]))
        print(f"{threads} thread(s): torch {statistics.median(times['torch']):.1f} ms, "
              f"rnnfast {statistics.median(times['rnnfast']):.1f} ms a step; "
              f"torch/rnnfast {ratio:.2f} (rounds {min(times['torch']):.1f}-"
              f"{max(times['torch']):.1f} and {min(times['rnnfast']):.1f}-"
              f"{max(times['rnnfast']):.1f} ms)")


if __name__ == "__main__":
    main()
