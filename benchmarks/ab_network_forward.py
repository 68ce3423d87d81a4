"""Two versions of the networks' Python `forward` in one process,
interleaved: the installed one against `_Network.forward` taken from
another networks.py (say an older commit's), run on the same network and
kernels.  For changes of the Python layer alone, whose effect (a few
tenths of a us a call) the machine's drift between processes would hide.
Inference, N = 8, D = H = 64, float32, 1 thread; best of 3 blocks a round,
median of the per-round ratios old/new (above 1: the installed one is
faster).

    git show <rev>:rnnfast/networks.py > /tmp/old_networks.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/ab_network_forward.py /tmp/old_networks.py rnn 1,10 [rounds]

The old function runs in this networks module's namespace (its imports
must still exist there).
"""
import ast
import statistics
import sys

import numpy as np
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import networks

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import best_us_a_call  # noqa: E402

CLASSES = {"rnn": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU}


def old_forward(path):
    """_Network.forward of the networks.py at `path`, compiled against this
    networks module's globals."""
    with open(path) as f:
        tree = ast.parse(f.read())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "_Network")
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "forward")
    namespace = dict(vars(networks))
    exec(compile(ast.Module([fn], []), path, "exec"), namespace)
    return namespace["forward"]


def main(argv):
    if len(argv) < 4 or argv[2] not in CLASSES:
        sys.exit("expected OLD_NETWORKS_PY rnn|lstm|gru T[,T...] [rounds]")
    old = old_forward(argv[1])
    lengths = [int(t) for t in argv[3].split(",")]
    rounds = int(argv[4]) if len(argv) > 4 else 15
    times = {}
    with threadpool_limits(1):
        cases = {}
        for T in lengths:
            net = CLASSES[argv[2]](64, 64, random_state=0).eval()
            xs = np.random.default_rng(0).standard_normal((8, T, 64)).astype(np.float32)
            assert np.array_equal(net.forward(xs)[0], old(net, xs)[0])
            cases[T] = (net, xs, 20000 if T < 100 else 2000)
        for _ in range(rounds):
            for T, (net, xs, n) in cases.items():
                for name, call in (("old", lambda: old(net, xs)),
                                   ("new", lambda: net.forward(xs))):
                    times.setdefault((T, name), []).append(best_us_a_call(call, n))
    for T in lengths:
        o, n = times[T, "old"], times[T, "new"]
        print(f"{argv[2]} infer T={T}: old {statistics.median(o):.3f} us, new "
              f"{statistics.median(n):.3f} us, old/new per round "
              f"{statistics.median([a / b for a, b in zip(o, n)]):.3f}", flush=True)


if __name__ == "__main__":
    main(sys.argv)
