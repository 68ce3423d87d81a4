"""asv benchmarks of the recurrent layers, numpy/scipy style: one class per
subject, params/param_names, fixed-seed data in setup, NotImplementedError
in setup to skip a combination.

A training step is forward in training mode + backward to the inputs and
the parameters.  All at one thread (benchmarks.common.limit_threads).
"""
import time

import numpy as np

from .common import CONFIGS, data, gemm_flops, limit_threads, network, weights

CELLS = ["rnn", "lstm", "gru"]
DTYPES = ["float32", "float64"]


class Cell:
    """One time step of RNNCell / LSTMCell / GRUCell (batch and sizes of a
    configuration): forward in training and in eval mode, training step."""
    params = [CELLS, list(CONFIGS), DTYPES]
    param_names = ["cell", "config", "dtype"]

    def setup(self, cell, config, dtype):
        import rnnfast
        self._limit = limit_threads(1)
        N, _, D, H = CONFIGS[config]
        Wx, Wh, b = weights(cell, D, H, dtype)
        cls = {"rnn": rnnfast.RNNCell, "lstm": rnnfast.LSTMCell, "gru": rnnfast.GRUCell}
        self.layer = cls[cell](Wx, Wh, b)
        self.eval_layer = cls[cell](Wx, Wh, b).eval()
        self.x = data((N, D), dtype, 1)
        self.h = data((N, H), dtype, 2)
        self.dh = data((N, H), dtype, 3)
        self.args = (self.x, self.h, self.h) if cell == "lstm" else (self.x, self.h)
        self.dargs = (self.dh, self.dh) if cell == "lstm" else (self.dh,)

    def teardown(self, *params):
        if self._limit is not None:
            self._limit.unregister()

    def time_forward(self, *params):
        self.layer.forward(*self.args)

    def time_infer(self, *params):
        self.eval_layer.forward(*self.args)

    def time_train_step(self, *params):
        self.layer.forward(*self.args)
        self.layer.backward(*self.dargs)


class TimeLayer:
    """A whole sequence through TimeRNN / TimeLSTM / TimeGRU: forward (in
    training mode), inference (eval mode), and the training step (forward
    + BPTT)."""
    params = [CELLS, list(CONFIGS), DTYPES]
    param_names = ["cell", "config", "dtype"]
    timeout = 180

    def setup(self, cell, config, dtype):
        import rnnfast
        self._limit = limit_threads(1)
        N, T, D, H = CONFIGS[config]
        Wx, Wh, b = weights(cell, D, H, dtype)
        cls = {"rnn": rnnfast.TimeRNN, "lstm": rnnfast.TimeLSTM, "gru": rnnfast.TimeGRU}
        self.layer = cls[cell](Wx, Wh, b)
        self.eval_layer = cls[cell](Wx, Wh, b).eval()
        self.xs = data((N, T, D), dtype, 1)
        self.dhs = data((N, T, H), dtype, 2)
        self.flops = gemm_flops(cell, True, N, T, D, H)

    def teardown(self, *params):
        if self._limit is not None:
            self._limit.unregister()

    def time_forward(self, *params):
        self.layer.forward(self.xs)

    def time_infer(self, *params):
        self.eval_layer.forward(self.xs)

    def time_train_step(self, *params):
        self.layer.forward(self.xs)
        self.layer.backward(self.dhs)



class TrainStep:
    """Peak memory and GEMM throughput of a Time layer's training step
    (float32; compare GFLOP/s with `rnnfast bench`'s measured sgemm peak)."""
    params = [CELLS, list(CONFIGS)]
    param_names = ["cell", "config"]
    timeout = 180

    def setup(self, cell, config):
        TimeLayer.setup(self, cell, config, "float32")

    teardown = TimeLayer.teardown

    def peakmem_train_step(self, *params):
        self.layer.forward(self.xs)
        self.layer.backward(self.dhs)

    def track_train_gflops(self, *params):
        """GEMM GFLOP/s of a training step (best of 3)."""
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            self.layer.forward(self.xs)
            self.layer.backward(self.dhs)
            best = min(best, time.perf_counter() - t0)
        return self.flops / best / 1e9
    track_train_gflops.unit = "GFLOP/s"


class Network:
    """rnnfast.RNN/LSTM/GRU (one layer) beside PyTorch and the NumPy
    reference, scipy-style with the implementation as a parameter.  float32,
    the three smaller configurations (the reference is a Python loop)."""
    params = [CELLS, ["tiny", "small", "zaremba-small"], ["rnnfast", "torch", "reference"],
              ["train", "infer"]]
    param_names = ["cell", "config", "impl", "mode"]
    timeout = 180

    def setup(self, cell, config, impl, mode):
        from rnnfast import bench
        self._limit = limit_threads(1)
        N, T, D, H = CONFIGS[config]
        if impl == "torch":
            try:
                import torch
            except ImportError:
                raise NotImplementedError("PyTorch is not installed")
            torch.set_num_threads(1)
        self.call = bench.make_case(impl, cell, mode, N, T, D, H, np.float32)

    def teardown(self, *params):
        if self._limit is not None:
            self._limit.unregister()

    def time_call(self, *params):
        self.call()


class CallOverhead:
    """The fixed cost of a call: a network (one layer) on a batch of 8,
    D = H = 64, for T = 1 (one step, as in generation and decoding) and
    T = 10, inference and a training step.  At these sizes the products
    take ~1 us, so what is timed is mostly what each call pays besides
    them (checks, buffers, dispatch, packing; docs/performance.md items
    36, 50-51)."""
    params = [CELLS, [1, 10], ["infer", "train"]]
    param_names = ["cell", "T", "mode"]

    def setup(self, cell, T, mode):
        self._limit = limit_threads(1)
        self.net = network(cell, 64, 64, "float32").train(mode == "train")
        self.xs = data((8, T, 64), "float32", 1)
        self.dhs = data((8, T, 64), "float32", 2)
        self.training = mode == "train"
        self.time_call(cell, T, mode)      # the buffers of the first call

    def teardown(self, *params):
        if self._limit is not None:
            self._limit.unregister()

    def time_call(self, cell, T, mode):
        self.net.forward(self.xs)
        if self.training:
            self.net.backward(self.dhs)


class SequenceLength:
    """Time per token and memory as T grows (N=8, D=H=64, LSTM, float32):
    full BPTT keeps activations for every step (memory linear in T); a
    stateful layer fed 100-step chunks keeps one chunk's (memory flat).
    The chunked case feeds one 100-step chunk of data T/100 times, so that
    peakmem measures the layer, not an input array that grows with T (as
    it did before: 146 MB at T = 10,000, 81 MB of it the inputs)."""
    params = [[10, 100, 1000, 10000], ["full", "chunks"]]
    param_names = ["T", "bptt"]
    timeout = 300

    def setup(self, T, bptt):
        import rnnfast
        self._limit = limit_threads(1)
        self.N, self.D, self.H = 8, 64, 64
        Wx, Wh, b = weights("lstm", self.D, self.H, "float32")
        self.layer = rnnfast.TimeLSTM(Wx, Wh, b, stateful=bptt == "chunks")
        self.chunk = T if bptt == "full" else min(T, 100)
        self.xs = data((self.N, self.chunk, self.D), "float32", 1)
        self.dhs = data((self.N, self.chunk, self.H), "float32", 2)
        self.T = T

    def teardown(self, *params):
        if self._limit is not None:
            self._limit.unregister()

    def _train(self):
        self.layer.reset_state()
        for _ in range(0, self.T, self.chunk):
            self.layer.forward(self.xs)
            self.layer.backward(self.dhs)

    def time_train(self, T, bptt):
        self._train()

    def peakmem_train(self, T, bptt):
        self._train()

    def track_us_per_token(self, T, bptt):
        """Microseconds of training per token (N*T), best of 3."""
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            self._train()
            best = min(best, time.perf_counter() - t0)
        return 1e6 * best / (self.N * T)
    track_us_per_token.unit = "us/token"


class LongSequence:
    """A network's training step on long sequences, each cell (N=8,
    D=H=64, float32): T = 100 against T = 10,000, where the step loops
    prefetch each row's next step and the backward's gradients run chunk
    by chunk of steps (docs/performance.md items 60-61).  The ratio of the
    two us/token tracks is the time-per-token flatness."""
    params = [CELLS, [100, 10000]]
    param_names = ["cell", "T"]
    timeout = 300

    def setup(self, cell, T):
        self._limit = limit_threads(1)
        self.net = network(cell, 64, 64, "float32")
        self.xs = data((8, T, 64), "float32", 1)
        self.dhs = data((8, T, 64), "float32", 2)
        self.time_train(cell, T)          # the buffers of the first call

    def teardown(self, *params):
        if self._limit is not None:
            self._limit.unregister()

    def time_train(self, cell, T):
        self.net.forward(self.xs)
        self.net.backward(self.dhs)

    def track_us_per_token(self, cell, T):
        """Microseconds of a training step per token (8 T), best of 3."""
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            self.time_train(cell, T)
            best = min(best, time.perf_counter() - t0)
        return 1e6 * best / (8 * T)
    track_us_per_token.unit = "us/token"


class Estimator:
    """scikit-learn estimators' fit on a small synthetic task (skipped where
    rnnfast.sklearn cannot be imported, e.g. without scikit-learn)."""
    params = [["lstm", "gru"]]
    param_names = ["cell"]
    timeout = 300

    def setup(self, cell):
        try:
            from rnnfast.sklearn import RNNClassifier
        except ImportError:
            raise NotImplementedError("rnnfast.sklearn is not available")
        self._limit = limit_threads(1)
        rng = np.random.default_rng(0)
        self.X = rng.standard_normal((256, 20, 4)).astype(np.float32)
        self.y = (self.X[:, :, 0].sum(axis=1) > 0).astype(int)
        self.make = lambda: RNNClassifier(cell=cell, hidden_size=32, max_iter=5,
                                          random_state=0)

    def teardown(self, *params):
        if getattr(self, "_limit", None) is not None:
            self._limit.unregister()

    def time_fit(self, cell):
        self.make().fit(self.X, self.y)

    def peakmem_fit(self, cell):
        self.make().fit(self.X, self.y)

    def track_train_score(self, cell):
        return float(self.make().fit(self.X, self.y).score(self.X, self.y))
    track_train_score.unit = "accuracy"
