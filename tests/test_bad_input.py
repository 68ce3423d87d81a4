"""Never crash: one table of bad inputs over every public entry point.

Each row is (id, callable, expected exception, regex the message must
match).  An expected exception of None means the call must work (empty
batches, T = 0: the callable checks the result itself).  Every row runs in
a forked child process, so a segfault or an abort fails that row instead of
killing pytest; the child also turns RuntimeWarnings into errors, so a row
that "works" by way of a floating-point warning fails too.

The contract (DESIGN.md): a ValueError or TypeError that names the
argument, the shape expected and the shape given; RuntimeError for a
backward before its forward; MemoryError (or ValueError) for sizes too
large to allocate.
"""
import os
import pickle
import re
import select
import signal
import traceback
import warnings

import numpy as np
import pytest

import rnnfast
import rnnfast.io  # noqa: F401  (imported once here, not in each forked child)
import rnnfast.sklearn  # noqa: F401
from rnnfast import models

f32, f64 = np.float32, np.float64
G = {"rnn": 1, "lstm": 4, "gru": 3}


# ------------------------------------------------------------------ helpers
def W(cell, D=3, H=4, dtype=f32, reset_after=False, seed=0):
    """Small random (Wx, Wh, b) for `cell`."""
    rng = np.random.default_rng(seed)
    g = G[cell] * H
    b_shape = (2, g) if reset_after else (g,)
    return tuple((rng.standard_normal(s) * 0.3).astype(dtype)
                 for s in ((D, g), (H, g), b_shape))


def rnn_cell(**kw):
    return rnnfast.RNNCell(*W("rnn", **kw))


def lstm_cell(**kw):
    return rnnfast.LSTMCell(*W("lstm", **kw))


def lm_backward(dout):
    """A language model's backward(dout) after a forward."""
    lm = models.RnnLM(10, hidden_size=4, random_state=0)
    lm.forward(np.array([[1, 2, 3]]), np.array([[2, 3, 4]]))
    lm.backward(dout)


def x2(N=2, D=3):
    return np.ones((N, D), f32)


def h2(N=2, H=4):
    return np.zeros((N, H), f32)


def xs3(N=2, T=5, D=3, dtype=f32):
    return np.ones((N, T, D), dtype)


def forwarded(layer, *args):
    layer.forward(*args)
    return layer


def net_forwarded(net, xs=None):
    net.forward(xs3() if xs is None else xs)
    return net


def replaced(seq, i, value):
    seq[i] = value
    return seq


def twice(layer, *args):
    layer.backward(*args)
    layer.backward(*args)


def torch_lstm(**kw):
    import torch
    torch.manual_seed(0)
    return torch.nn.LSTM(3, 4, **kw)


def torch_with_nan():
    import torch
    m = torch_lstm()
    with torch.no_grad():
        m.weight_hh_l0[1, 2] = float("nan")
    return m


def replaced_cell_tensor():
    """A torch LSTMCell whose weight_hh was replaced by one of another shape."""
    import torch
    m = torch.nn.LSTMCell(3, 4)
    m.weight_hh = torch.nn.Parameter(torch.zeros(16, 5))
    return m


def sk(name):
    from rnnfast import sklearn as rsk
    return getattr(rsk, name)


def Xs(N=6, T=4, D=2):
    return np.random.default_rng(0).standard_normal((N, T, D))


Y6 = np.array([0, 1, 0, 1, 0, 1])


def cli_fails_cleanly(args, pattern):
    """The command line reports a user error on stderr with a non-zero exit
    status, without a Python traceback."""
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "rnnfast", *args], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0, f"exit status 0 for {args}"
    assert "Traceback" not in r.stderr, f"a traceback instead of a message:\n{r.stderr}"
    assert re.search(pattern, r.stderr), r.stderr


def with_empty_file(fn):
    """fn(the path of a new empty file), in a temporary directory removed after."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="rnnfast-bad-input-") as folder:
        path = os.path.join(folder, "empty.txt")
        open(path, "w").close()
        return fn(path)


# ---------------------------------------------------- the "works" rows
def works_time_T0(cls, **kw):
    layer = cls(*W(cls.cell, **kw))
    hs = layer.forward(np.ones((2, 0, 3), f32))
    assert hs.shape == (2, 0, 4)
    dxs = layer.backward(np.ones((2, 0, 4), f32))
    assert dxs.shape == (2, 0, 3) and not any(g.any() for g in layer.grads)


def works_time_N0(cls, **kw):
    layer = cls(*W(cls.cell, **kw))
    assert layer.forward(np.ones((0, 5, 3), f32)).shape == (0, 5, 4)
    assert layer.backward(np.ones((0, 5, 4), f32)).shape == (0, 5, 3)


def works_cell_N0():
    cell = lstm_cell()
    h, c = cell.forward(np.ones((0, 3)), np.zeros((0, 4)), np.zeros((0, 4)))
    assert h.shape == c.shape == (0, 4)
    dx, dh, dc = cell.backward(np.zeros((0, 4)), np.zeros((0, 4)))
    assert dx.shape == (0, 3)


def works_net_T0():
    net = rnnfast.GRU(3, 4, num_layers=2, bidirectional=True)
    hs, h_n = net.forward(np.ones((2, 0, 3)))
    assert hs.shape == (2, 0, 8) and h_n.shape == (4, 2, 4) and not h_n.any()
    assert net.backward(np.ones((2, 0, 8))).shape == (2, 0, 3)


def works_net_N0():
    net = rnnfast.LSTM(3, 4, num_layers=2, bidirectional=True)
    hs, (h, c) = net.forward(np.ones((0, 5, 3)), lengths=np.zeros(0, int))
    assert hs.shape == (0, 5, 8) and h.shape == c.shape == (4, 0, 4)
    assert net.backward(np.ones((0, 5, 8))).shape == (0, 5, 3)


def works_readonly_and_strided():
    """Read-only, Fortran-ordered, negative-stride inputs are converted."""
    net = rnnfast.LSTM(3, 4, random_state=0)
    xs = np.asfortranarray(np.random.default_rng(0).standard_normal((2, 5, 3)))
    xs.flags.writeable = False
    a, _ = net.forward(xs[:, ::-1])
    b, _ = net.forward(np.ascontiguousarray(xs[:, ::-1]))
    assert np.array_equal(a, b)


def works_lm_empty():
    lm = models.RnnLM(10, hidden_size=4)
    assert np.isfinite(lm.forward(np.zeros((2, 0), int), np.zeros((2, 0), int)))


# ---------------------------------------------------------------- the table
V = ValueError
T = TypeError
R = RuntimeError
M = MemoryError
S = r"\(2, 5, 3\)"          # the shape of xs3(), as messages print it

CASES = [
    # -------- cells: construction
    ("cell-Wh-gate-width", lambda: rnnfast.RNNCell(np.zeros((3, 4)), np.zeros((4, 5)),
                                                   np.zeros(4)),
     V, r"Wh: expected shape \(4, 4\).*got shape \(4, 5\)"),
    ("lstmcell-Wx-gate-width", lambda: rnnfast.LSTMCell(np.zeros((3, 8)), np.zeros((4, 16)),
                                                        np.zeros(16)),
     V, r"Wx: expected shape \(D, 16\), got shape \(3, 8\)"),
    ("grucell-b-reset-after", lambda: rnnfast.GRUCell(*W("gru")[:2], np.zeros(12),
                                                      reset_after=True),
     V, r"b: expected shape \(2, 12\), got shape \(12,\)"),
    ("cell-Wh-rank1", lambda: rnnfast.RNNCell(np.zeros((3, 4)), np.zeros(16), np.zeros(4)),
     V, r"Wh: expected shape \(H, G\*H\), got shape \(16,\)"),
    ("cell-string-weights", lambda: rnnfast.RNNCell(np.full((3, 4), "a"), np.zeros((4, 4)),
                                                    np.zeros(4)),
     T, r"Wx: expected real numbers.*<U1 \(shape \(3, 4\)\)"),
    ("cell-object-bias", lambda: rnnfast.RNNCell(np.zeros((3, 4)), np.zeros((4, 4)),
                                                 np.array([0, 0, 0, None], object)),
     T, r"b: expected real numbers.*object"),
    ("cell-nan-weights", lambda: rnnfast.GRUCell(np.full((3, 12), np.nan), *W("gru")[1:]),
     V, r"Wx: contains NaN or Inf \(shape \(3, 12\)\)"),
    ("cell-bad-nonlinearity", lambda: rnnfast.RNNCell(*W("rnn"), nonlinearity="sigmoid"),
     V, r"nonlinearity: expected 'tanh' or 'relu', got 'sigmoid'"),
    # -------- cells: forward / backward
    ("cell-x-wrong-D", lambda: rnn_cell().forward(np.ones((2, 5)), h2()),
     V, r"x: expected shape \(N, 3\), got shape \(2, 5\)"),
    ("cell-x-rank3", lambda: rnn_cell().forward(np.ones((2, 1, 3)), h2()),
     V, r"x: expected shape \(N, 3\), got shape \(2, 1, 3\)"),
    ("cell-x-complex", lambda: rnn_cell().forward(np.ones((2, 3), complex), h2()),
     T, r"x: expected real numbers.*\(N, 3\).*complex128"),
    ("cell-x-ragged-list", lambda: rnn_cell().forward([[1, 2, 3], [1, 2]], h2()),
     T, r"x: expected an array of shape \(N, 3\), got list"),
    ("cell-h-batch-mismatch", lambda: rnn_cell().forward(x2(), h2(N=3)),
     V, r"h_prev: expected shape \(2, 4\), got shape \(3, 4\)"),
    ("lstmcell-c-mismatch", lambda: lstm_cell().forward(x2(), h2(), np.zeros((2, 5))),
     V, r"c_prev: expected shape \(2, 4\), got shape \(2, 5\)"),
    ("cell-x-nan", lambda: rnn_cell().forward(np.full((2, 3), np.nan), h2()),
     V, r"x: contains NaN or Inf \(shape \(2, 3\)\)"),
    ("cell-h-inf", lambda: rnnfast.GRUCell(*W("gru")).forward(x2(), np.full((2, 4), np.inf)),
     V, r"h_prev: contains NaN or Inf"),
    ("cell-h-none", lambda: rnn_cell().forward(x2(), None),
     T, r"h_prev: expected real numbers.*\(2, 4\)"),
    ("cell-backward-first", lambda: rnn_cell().backward(h2()),
     R, r"RNNCell\.backward called before forward"),
    ("lstmcell-backward-twice", lambda: twice(forwarded(lstm_cell(), x2(), h2(), h2()),
                                              h2(), h2()),
     R, r"LSTMCell\.backward called before forward \(or twice"),
    ("cell-dh-wrong-shape", lambda: forwarded(rnn_cell(), x2(), h2()).backward(np.ones((2, 3))),
     V, r"dh_next: expected shape \(2, 4\), got shape \(2, 3\)"),
    ("lstmcell-dc-wrong-batch", lambda: forwarded(lstm_cell(), x2(), h2(), h2()).backward(
        h2(), h2(N=1)),
     V, r"dc_next: expected shape \(2, 4\), got shape \(1, 4\)"),
    ("cell-N0-works", works_cell_N0, None, None),
    # -------- Time layers
    ("time-xs-rank2", lambda: rnnfast.TimeLSTM(*W("lstm")).forward(np.ones((2, 3))),
     V, r"xs: expected shape \(N, T, 3\), got shape \(2, 3\)"),
    ("time-xs-wrong-D", lambda: rnnfast.TimeGRU(*W("gru")).forward(xs3(D=2)),
     V, r"xs: expected shape \(N, T, 3\), got shape \(2, 5, 2\)"),
    ("time-xs-strings", lambda: rnnfast.TimeRNN(*W("rnn")).forward(np.full((2, 5, 3), "1.0")),
     T, r"xs: expected real numbers.*\(N, T, 3\).*<U3"),
    ("time-xs-datetime", lambda: rnnfast.TimeRNN(*W("rnn")).forward(
        np.zeros((2, 5, 3), "datetime64[s]")),
     T, r"xs: expected real numbers.*datetime64"),
    ("time-backward-first", lambda: rnnfast.TimeGRU(*W("gru")).backward(np.ones((2, 5, 4))),
     R, r"TimeGRU\.backward called before forward"),
    ("time-dhs-wrong-T", lambda: forwarded(rnnfast.TimeLSTM(*W("lstm")), xs3()).backward(
        np.ones((2, 4, 4))),
     V, r"dhs: expected shape \(2, 5, 4\), got shape \(2, 4, 4\)"),
    ("time-dhs-nan", lambda: forwarded(rnnfast.TimeRNN(*W("rnn")), xs3()).backward(
        np.full((2, 5, 4), np.nan)),
     V, r"dhs: contains NaN or Inf \(shape \(2, 5, 4\)\)"),
    ("timelstm-state-without-c", lambda: rnnfast.TimeLSTM(*W("lstm")).set_state(h2()),
     V, r"c: an LSTM state needs both h and c"),
    ("timegru-state-with-c", lambda: rnnfast.TimeGRU(*W("gru")).set_state(h2(), h2()),
     V, r"c: a GRU has no cell state"),
    ("time-state-wrong-H", lambda: rnnfast.TimeRNN(*W("rnn")).set_state(np.zeros((2, 5))),
     V, r"h: expected shape \(N, 4\), got shape \(2, 5\)"),
    ("timelstm-c-mismatch", lambda: rnnfast.TimeLSTM(*W("lstm")).set_state(h2(), h2(N=3)),
     V, r"c: expected shape \(2, 4\), got shape \(3, 4\)"),
    ("time-stateful-batch-change", lambda: forwarded(
        rnnfast.TimeLSTM(*W("lstm"), stateful=True), xs3()).forward(xs3(N=3)),
     V, r"xs: a stateful layer carries a state of batch size 2, got xs of shape \(3, 5, 3\)"),
    ("time-params-replaced", lambda: replaced(
        (layer := rnnfast.TimeLSTM(*W("lstm"))).params, 1, np.zeros((2, 16), f32))
        and layer.forward(xs3()),
     V, r"TimeLSTM\.params\[1\] \(Wh\): expected shape \(4, 16\), got shape \(2, 16\)"),
    ("time-params-fortran", lambda: replaced(
        (layer := rnnfast.TimeRNN(*W("rnn"))).params, 1, np.zeros((4, 8), f32)[:, ::2])
        and layer.forward(xs3()),
     V, r"TimeRNN\.params\[1\] \(Wh\): expected a C-contiguous array of shape \(4, 4\)"),
    ("time-grads-wrong-dtype", lambda: replaced(
        (layer := forwarded(rnnfast.TimeGRU(*W("gru")), xs3())).grads, 2, np.zeros(12))
        and layer.backward(np.ones((2, 5, 4))),
     T, r"TimeGRU\.grads\[2\] \(db\): expected dtype float32 \(shape \(12,\)\), got dtype float64"),
    ("time-grads-readonly", lambda: (layer := forwarded(rnnfast.TimeRNN(*W("rnn")), xs3()))
        .grads[0].setflags(write=False) or layer.backward(np.ones((2, 5, 4))),
     V, r"TimeRNN\.grads\[0\] \(dWx\): is read-only \(shape \(3, 4\)\)"),
    ("timernn-T0-works", lambda: works_time_T0(rnnfast.TimeRNN), None, None),
    ("timelstm-T0-works", lambda: works_time_T0(rnnfast.TimeLSTM), None, None),
    ("timegru-N0-works", lambda: works_time_N0(rnnfast.TimeGRU), None, None),
    ("time-hidden-size-0", lambda: rnnfast.TimeGRU(*W("gru", H=0)), V,
     r"Wx, Wh: input size D and hidden size H must be >= 1, got Wx of shape \(3, 0\) "
     r"and Wh of shape \(0, 0\)"),
    ("cell-input-size-0", lambda: rnnfast.LSTMCell(*W("lstm", D=0)), V,
     r"Wx, Wh: input size D and hidden size H must be >= 1, got Wx of shape \(0, 16\)"),
    # -------- networks: construction
    ("net-input-size-0", lambda: rnnfast.LSTM(0, 4), V, r"input_size: expected an integer >= 1, got 0"),
    ("net-hidden-float", lambda: rnnfast.GRU(3, 4.0), T, r"hidden_size: expected an integer >= 1, got 4\.0"),
    ("net-layers-bool", lambda: rnnfast.RNN(3, 4, num_layers=True), T, r"num_layers: expected an integer"),
    ("net-dtype-float16", lambda: rnnfast.RNN(3, 4, dtype=np.float16), T,
     r"dtype: expected float32 or float64, got float16"),
    ("net-dtype-complex", lambda: rnnfast.RNN(3, 4, dtype="complex64"), T,
     r"dtype: expected float32 or float64, got complex64"),
    ("net-dropout-1", lambda: rnnfast.LSTM(3, 4, dropout=1.0), V,
     r"dropout: expected a probability in \[0, 1\), got 1\.0"),
    ("net-dropout-nan", lambda: rnnfast.LSTM(3, 4, dropout=float("nan")), V, r"dropout: .*nan"),
    ("net-random-state-str", lambda: rnnfast.GRU(3, 4, random_state="seed"), T,
     r"random_state: expected None, an int or a numpy Generator, got 'seed'"),
    ("net-nonlinearity", lambda: rnnfast.RNN(3, 4, nonlinearity="gelu"), V, r"nonlinearity"),
    ("net-too-large-to-allocate", lambda: rnnfast.RNN(10 ** 6, 10 ** 6), M, r"allocate"),
    # -------- networks: forward / backward
    ("net-xs-rank4", lambda: rnnfast.LSTM(3, 4).forward(np.ones((1, 2, 5, 3))), V,
     r"xs: expected shape \(N, T, 3\), got shape \(1, 2, 5, 3\)"),
    ("net-xs-complex", lambda: rnnfast.GRU(3, 4).forward(xs3() + 0j), T,
     r"xs: expected real numbers.*complex64"),
    ("net-xs-object", lambda: rnnfast.RNN(3, 4).forward(xs3().astype(object)), T,
     r"xs: expected real numbers.*object"),
    ("net-xs-overflows-float32", lambda: rnnfast.LSTM(3, 4).forward(xs3(dtype=f64) * 1e300),
     V, r"xs: contains NaN or Inf \(shape \(2, 5, 3\)\)"),
    ("net-lengths-zero", lambda: rnnfast.LSTM(3, 4).forward(xs3(), lengths=[0, 5]), V,
     r"lengths: each length must lie in 1\.\.T=5, got min 0 and max 5"),
    ("net-lengths-too-long", lambda: rnnfast.GRU(3, 4, bidirectional=True).forward(
        xs3(), lengths=[6, 5]),
     V, r"lengths: each length must lie in 1\.\.T=5, got min 5 and max 6"),
    ("net-lengths-negative", lambda: rnnfast.RNN(3, 4).forward(xs3(), lengths=[-1, 2]), V,
     r"lengths: each length must lie in 1\.\.T=5, got min -1"),
    ("net-lengths-uint64-huge", lambda: rnnfast.RNN(3, 4).forward(
        xs3(), lengths=np.array([2 ** 63, 3], np.uint64)),
     V, r"lengths: each length must lie in 1\.\.T=5, got min 3 and max 9223372036854775808"),
    ("net-lengths-float", lambda: rnnfast.RNN(3, 4).forward(xs3(), lengths=[2.0, 5.0]), T,
     r"lengths: expected integers of shape \(2,\), got dtype float64"),
    ("net-lengths-wrong-N", lambda: rnnfast.RNN(3, 4).forward(xs3(), lengths=[5, 5, 5]), V,
     r"lengths: expected shape \(2,\), got shape \(3,\)"),
    ("net-state-wrong-layers", lambda: rnnfast.GRU(3, 4, num_layers=2).forward(
        xs3(), np.zeros((1, 2, 4))),
     V, r"state: expected shape \(2, 2, 4\), got shape \(1, 2, 4\)"),
    ("net-state-nan", lambda: rnnfast.RNN(3, 4).forward(xs3(), np.full((1, 2, 4), np.nan)),
     V, r"state: contains NaN or Inf"),
    ("lstm-state-not-pair", lambda: rnnfast.LSTM(3, 4).forward(xs3(), np.zeros((1, 2, 4))),
     T, r"state: an LSTM state is a pair \(h, c\), each of shape \(1, 2, 4\), got ndarray"),
    ("lstm-state-c-mismatch", lambda: rnnfast.LSTM(3, 4, bidirectional=True).forward(
        xs3(), (np.zeros((2, 2, 4)), np.zeros((1, 2, 4)))),
     V, r"state\[1\] \(c\): expected shape \(2, 2, 4\), got shape \(1, 2, 4\)"),
    ("net-backward-first", lambda: rnnfast.RNN(3, 4).backward(np.ones((2, 5, 4))),
     R, r"RNN\.backward needs a forward in training mode first"),
    ("net-backward-after-eval-forward", lambda: net_forwarded(rnnfast.LSTM(3, 4).eval())
        .backward(np.ones((2, 5, 4))),
     R, r"LSTM\.backward needs a forward in training mode"),
    ("net-dhs-bidirectional-width", lambda: net_forwarded(
        rnnfast.GRU(3, 4, bidirectional=True)).backward(np.ones((2, 5, 4))),
     V, r"dhs: expected shape \(2, 5, 8\), got shape \(2, 5, 4\)"),
    ("net-dstate-wrong", lambda: net_forwarded(rnnfast.LSTM(3, 4)).backward(
        np.ones((2, 5, 4)), (h2()[None], np.zeros((1, 3, 4)))),
     V, r"dstate\[1\] \(c\): expected shape \(1, 2, 4\), got shape \(1, 3, 4\)"),
    ("net-stateful-batch-change", lambda: net_forwarded(rnnfast.RNN(3, 4, stateful=True))
        .forward(xs3(N=3)),
     V, r"xs: this stateful network carries a state of batch size 2, got xs of shape "
        r"\(3, 5, 3\)"),
    ("net-xs-broadcast-too-large", lambda: rnnfast.RNN(3, 4).forward(
        np.broadcast_to(np.zeros((1, 1, 3), f32), (10 ** 6, 10 ** 6, 3))),
     M, r"allocate"),
    ("net-blas-32bit-overflow", lambda: rnnfast.LSTM(1, 1024).forward(
        np.zeros((1, 2 ** 20, 1), f32)),
     V, r"xs: N\*T\*G\*H = 4294967296 elements exceeds the kernels' limit"),
    ("net-params-replaced-shape", lambda: replaced(
        (net := rnnfast.LSTM(3, 4, bidirectional=True)).params, 4, np.zeros((2, 16), f32))
        and net.forward(xs3()),
     V, r"LSTM\.params\[4\] \(Wh of layer 0, reverse\): expected shape \(4, 16\), "
        r"got shape \(2, 16\)"),
    ("net-params-replaced-bias", lambda: replaced(
        (net := rnnfast.GRU(3, 4)).params, 2, np.zeros(1, f32)) and net.forward(xs3()),
     V, r"GRU\.params\[2\] \(b of layer 0\): expected shape \(2, 12\), got shape \(1,\)"),
    ("net-bias-not-a-bool", lambda: rnnfast.GRU(3, 4, bias="False"),
     T, r"bias: expected True or False, got 'False'"),
    ("to-torch-module-not-a-network", lambda: rnnfast.interop.to_torch({"cell": "lstm"}),
     T, r"net: expected an rnnfast\.RNN, LSTM or GRU network, an rnnfast\.RNNCell, "
        r"LSTMCell or GRUCell, or an rnnfast\.TimeRNN, TimeLSTM or TimeGRU, got dict"),
    ("to-torch-module-gru-reset-before", lambda: rnnfast.interop.to_torch(
        rnnfast.GRU(3, 4, reset_after=False)),
     V, r"reset_after=False has no PyTorch equivalent"),
    ("adamw-negative-decay", lambda: rnnfast.optim.AdamW(weight_decay=-0.1),
     V, r"weight_decay: expected a number >= 0"),
    ("net-no-bias-params-replaced", lambda: replaced(
        (net := rnnfast.GRU(3, 4, bidirectional=True, bias=False)).params, 3,
        np.zeros((4, 5), f32)) and net.forward(xs3()),
     V, r"GRU\.params\[3\] \(Wh of layer 0, reverse\): expected shape \(4, 12\), "
        r"got shape \(4, 5\)"),
    # a bias appended to a bias=False network's params must not be used quietly
    ("net-no-bias-params-bias-appended", lambda: (net := rnnfast.GRU(
        3, 4, reset_after=False, bias=False)).params.append(np.zeros(12, f32))
        or net.forward(xs3()),
     V, r"GRU\.params: expected 2 arrays, got 3"),
    ("net-no-bias-grads-appended", lambda: (net := net_forwarded(rnnfast.LSTM(
        3, 4, bias=False))).grads.append(np.zeros(16, f32)) or net.backward(np.ones((2, 5, 4))),
     V, r"LSTM\.grads: expected 2 arrays, got 3"),
    # bias is fixed at construction: changed afterwards, the kernels were
    # given a list that did not fit their layers (a segfault)
    ("net-bias-set-false-after-construction", lambda: setattr(
        net := rnnfast.LSTM(3, 4, num_layers=2), "bias", False) or net.forward(xs3()),
     V, r"LSTM\.params: 6 arrays do not fit bias=False, num_layers=2, bidirectional=False"),
    ("net-bias-set-true-after-construction", lambda: setattr(
        net := rnnfast.GRU(3, 4, bias=False), "bias", True) or net.forward(xs3()),
     V, r"GRU\.params: 2 arrays do not fit bias=True, num_layers=1"),
    ("net-bias-set-false-before-backward", lambda: setattr(
        net := net_forwarded(rnnfast.RNN(3, 4, num_layers=2)), "bias", False)
        or net.backward(np.ones((2, 5, 4), f32)),
     V, r"RNN\.grads: 6 arrays do not fit bias=False"),
    # so are num_layers and bidirectional (the fast path, training and
    # evaluation, read the params list past its end: a segfault)
    ("net-num-layers-raised", lambda: setattr(
        net := rnnfast.LSTM(3, 4, num_layers=2), "num_layers", 3) or net.forward(xs3()),
     V, r"LSTM\.params: 6 arrays do not fit bias=True, num_layers=3"),
    ("net-num-layers-raised-eval", lambda: setattr(
        net := rnnfast.GRU(3, 4, num_layers=2).eval(), "num_layers", 3) or net.forward(xs3()),
     V, r"GRU\.params: 6 arrays do not fit bias=True, num_layers=3"),
    ("net-bidirectional-set", lambda: setattr(
        net := rnnfast.RNN(3, 4).eval(), "bidirectional", True) or net.forward(xs3()),
     V, r"RNN\.params: 3 arrays do not fit .*bidirectional=True"),
    ("net-params-replaced-dtype", lambda: replaced(
        (net := rnnfast.RNN(3, 4)).params, 0, np.zeros((3, 4))) and net.forward(xs3()),
     T, r"RNN\.params\[0\] \(Wx of layer 0\): expected dtype float32 \(shape \(3, 4\)\), "
        r"got dtype float64"),
    ("net-grads-replaced", lambda: replaced(
        (net := net_forwarded(rnnfast.LSTM(3, 4, num_layers=2))).grads, 4, np.zeros((3, 3), f32))
        and net.backward(np.ones((2, 5, 4))),
     V, r"LSTM\.grads\[4\] \(dWh of layer 1\): expected shape \(4, 16\), got shape \(3, 3\)"),
    ("net-T0-works", works_net_T0, None, None),
    ("net-N0-works", works_net_N0, None, None),
    ("net-readonly-strided-works", works_readonly_and_strided, None, None),
    # -------- interop (PyTorch)
    ("from-torch-not-a-module", lambda: rnnfast.interop.from_torch(rnnfast.LSTM(3, 4)),
     T, r"module: expected torch\.nn\.RNN, LSTM or GRU, or torch\.nn\.RNNCell, LSTMCell or "
        r"GRUCell, got rnnfast\.networks\.LSTM"),
    ("from-torch-proj-size", lambda: rnnfast.interop.from_torch(torch_lstm(proj_size=2)),
     V, r"module: LSTM with proj_size > 0 is not supported"),
    ("from-torch-bfloat16", lambda: rnnfast.interop.from_torch(
        torch_lstm().to(__import__("torch").bfloat16)),
     T, r"module: expected float32 or float64 weights, got weight_ih_l0 of dtype "
        r"torch\.bfloat16 and shape \(16, 3\)"),
    ("from-torch-nan-weights", lambda: rnnfast.interop.from_torch(torch_with_nan()),
     V, r"module: weight_hh_l0 \(shape \(16, 4\)\) contains NaN or Inf"),
    ("from-torch-cell-float16", lambda: rnnfast.interop.from_torch(
        __import__("torch").nn.GRUCell(3, 4).half()),
     T, r"module: expected float32 or float64 weights, got weight_ih of dtype "
        r"torch\.float16 and shape \(12, 3\)"),
    ("from-torch-cell-replaced-tensor", lambda: rnnfast.interop.from_torch(
        replaced_cell_tensor()),
     V, r"module\.weight_hh: expected shape \(16, 4\) for a LSTMCell\(input_size=3, "
        r"hidden_size=4\), got \(16, 5\)"),
    ("to-torch-cell-gru-reset-before", lambda: rnnfast.interop.to_torch(
        rnnfast.GRUCell(np.zeros((3, 12), f32), np.zeros((4, 12), f32), np.zeros(12, f32))),
     V, r"reset_after=False has no PyTorch equivalent"),
    ("to-torch-net-params-replaced", lambda: rnnfast.interop.to_torch_state_dict(replaced(
        (net := rnnfast.LSTM(3, 4, bidirectional=True)).params, 4, np.zeros((5, 5), f32))
        and net),
     V, r"LSTM\.params\[4\] \(Wh of layer 0, reverse\): expected shape \(4, 16\), "
        r"got shape \(5, 5\)"),
    ("to-torch-net-params-other-dtype", lambda: rnnfast.interop.to_torch(replaced(
        (net := rnnfast.GRU(3, 4)).params, 0, np.zeros((3, 12), np.float64)) and net),
     T, r"GRU\.params\[0\] \(Wx of layer 0\): expected dtype float32"),
    ("to-torch-cell-params-replaced", lambda: rnnfast.interop.to_torch_state_dict(replaced(
        (cell := rnnfast.LSTMCell(np.zeros((3, 16), f32), np.zeros((4, 16), f32),
                                  np.zeros(16, f32))).params, 1, np.zeros((16, 4), f32))
        and cell),
     V, r"LSTMCell\.params\[1\] \(Wh\): expected shape \(4, 16\), got shape \(16, 4\)"),
    ("to-torch-not-a-network", lambda: rnnfast.interop.to_torch_state_dict({"a": 1}),
     T, r"net: expected an rnnfast\.RNN, LSTM or GRU network, an rnnfast\.RNNCell, "
        r"LSTMCell or GRUCell, or an rnnfast\.TimeRNN, TimeLSTM or TimeGRU, got dict"),
    ("to-torch-time-layer-params-replaced", lambda: rnnfast.interop.to_torch(replaced(
        (layer := rnnfast.TimeGRU(np.zeros((3, 12), f32), np.zeros((4, 12), f32),
                                  np.zeros((2, 12), f32), reset_after=True)).params,
        2, np.zeros(12, f32)) and layer),
     V, r"TimeGRU\.params\[2\] \(b\): expected shape \(2, 12\), got shape \(12,\)"),
    ("to-torch-time-layer-gru-reset-before", lambda: rnnfast.interop.to_torch_state_dict(
        rnnfast.TimeGRU(np.zeros((3, 12), f32), np.zeros((4, 12), f32), np.zeros(12, f32))),
     V, r"reset_after=False has no PyTorch equivalent"),
    ("to-torch-gru-reset-before", lambda: rnnfast.interop.to_torch_state_dict(
        rnnfast.GRU(3, 4, reset_after=False)),
     V, r"reset_after=False has no PyTorch equivalent"),
    # -------- models
    ("lm-ids-out-of-vocab", lambda: models.RnnLM(10, hidden_size=4).forward(
        np.array([[1, 10]]), np.array([[1, 2]])),
     V, r"^xs: ids must lie in 0\.\.9 \(vocab_size=10\), got min 1 and max 10"),
    ("lm-ids-float", lambda: models.RnnLM(10, hidden_size=4).forward(
        np.array([[1.5, 2]]), np.array([[1, 2]])),
     T, r"^xs: expected integer ids of shape \(N, T\), got dtype float64"),
    ("lm-targets-wrong-shape", lambda: models.RnnLM(10, hidden_size=4).forward(
        np.array([[1, 2]]), np.array([[1, 2, 3]])),
     V, r"ts: expected shape \(1, 2\), got shape \(1, 3\)"),
    ("lm-backward-first", lambda: models.RnnLM(10, hidden_size=4).backward(),
     R, r"backward called before forward"),
    ("lm-backward-dout-nan", lambda: lm_backward(float("nan")),
     V, r"^dout: expected a finite number whose quotient by the loss's denominator"),
    ("lm-backward-dout-str", lambda: lm_backward("1"),
     T, r"^dout: expected a real number \(dL/dloss\), got str '1'"),
    ("lm-too-large-to-allocate", lambda: models.RnnLM(10 ** 7, hidden_size=10 ** 6),
     M, r"allocate"),
    ("lm-T0-works", works_lm_empty, None, None),
    ("seq2seq-encoder-backward-first", lambda: models.seq2seq.Encoder(
        10, 4, 5, np.random.default_rng(0), np.float32).backward(np.zeros((2, 5), f32)),
     R, r"Encoder\.backward needs a forward first"),
    ("seq2seq-start-id", lambda: models.Seq2seq(10, 4, 5).generate(np.array([[1, 2]]), 99, 3),
     V, r"start_id: ids must lie in 0\.\.9"),
    ("seq2seq-empty-source", lambda: models.Seq2seq(10, 4, 5).forward(
        np.zeros((2, 0), int), np.ones((2, 3), int)),
     V, r"xs: .*\(2, 0\)"),
    ("attention-seq2seq-empty-source", lambda: models.AttentionSeq2seq(10, 4, 5).forward(
        np.zeros((2, 0), int), np.ones((2, 3), int)),
     V, r"xs: .*\(2, 0\)"),
    ("classifier-X-nan", lambda: models.SequenceClassifier(
        3, input_size=3, hidden_size=4).forward(np.full((2, 5, 3), np.nan), np.array([0, 1])),
     V, r"X: contains NaN or Inf \(shape \(2, 5, 3\)\)"),
    ("classifier-label-out-of-range", lambda: models.SequenceClassifier(
        3, input_size=3, hidden_size=4).forward(xs3(), np.array([0, 7])),
     V, r"class ids must lie in 0\.\.2"),
    ("classifier-label-negative", lambda: models.SequenceClassifier(
        3, input_size=3, hidden_size=4).forward(xs3(), np.array([0, -1])),
     V, r"y: .*0\.\.2"),
    ("classifier-lengths-too-long", lambda: models.SequenceClassifier(
        3, vocab_size=5, hidden_size=4).forward(np.array([[1, 2]]), np.array([0]), lengths=[3]),
     V, r"lengths: each length must lie in 1\.\.T=2, got min 3"),
    ("classifier-mask-zero-not-bool", lambda: models.SequenceClassifier(
        3, vocab_size=5, mask_zero="yes"),
     T, r"mask_zero: expected True or False, got 'yes'"),
    ("regressor-mask-zero-on-features", lambda: models.SequenceRegressor(
        1, input_size=3, mask_zero=True),
     V, r"mask_zero: True reads token id 0 as padding; it needs vocab_size"),
    ("regressor-mask-value-nan", lambda: models.SequenceRegressor(
        1, input_size=3, mask_value=float("nan")),
     T, r"mask_value: expected None or a finite real number, got nan"),
    ("classifier-mask-value-string", lambda: models.SequenceClassifier(
        2, input_size=3, mask_value="0"),
     T, r"mask_value: expected None or a finite real number, got '0'"),
    ("classifier-mask-value-on-ids", lambda: models.SequenceClassifier(
        2, vocab_size=5, mask_value=0.0),
     V, r"mask_value: masks steps of float features \(input_size\); token ids"),
    ("classifier-mask-zero-negative-id", lambda: models.SequenceClassifier(
        3, vocab_size=5, mask_zero=True).predict_scores(np.array([[1, 0, -2]])),
     V, r"X: ids must lie in 0\.\.4"),
    ("regressor-y-nan", lambda: models.SequenceRegressor(
        1, input_size=3, hidden_size=4).forward(xs3(), np.array([np.nan, 1.0])),
     V, r"y: contains NaN or Inf"),
    ("tagger-y-wrong-T", lambda: models.SequenceTagger(
        3, input_size=3, hidden_size=4).forward(xs3(), np.ones((2, 4), int)),
     V, r"y: expected shape \(2, 5\), got shape \(2, 4\)"),
    ("tagger-proba-X-wrong-D", lambda: models.SequenceTagger(
        3, input_size=3, hidden_size=4).predict_proba(np.ones((2, 5, 4), f32)),
     V, r"X: expected shape \(N, T, 3\), got shape \(2, 5, 4\)"),
    ("tagger-proba-lengths-past-T", lambda: models.SequenceTagger(
        3, input_size=3, hidden_size=4).predict_proba(xs3(), lengths=[5, 6]),
     V, r"lengths: each length must lie in 1\.\.T=5, got min 5 and max 6"),
    # -------- estimators (rnnfast.sklearn)
    ("sk-X-nan", lambda: sk("RNNClassifier")(max_iter=2).fit(np.full((6, 4, 2), np.nan), Y6),
     V, r"NaN"),
    ("sk-X-rank4", lambda: sk("RNNClassifier")(max_iter=2).fit(np.ones((6, 4, 2, 1)), Y6),
     V, r"dim 4"),
    ("sk-beta-1-one", lambda: sk("RNNClassifier")(max_iter=2, beta_1=1.0).fit(Xs(), Y6),
     V, r"beta_1 == 1\.0, must be < 1"),
    ("sk-beta-2-negative", lambda: sk("RNNRegressor")(max_iter=2, beta_2=-0.1).fit(
        Xs(), np.ones(6)),
     V, r"beta_2 == -0\.1, must be >= 0"),
    ("sk-learning-rate-unknown", lambda: sk("RNNClassifier")(
        max_iter=2, solver="sgd", learning_rate="optimal").fit(Xs(), Y6),
     V, r"learning_rate: expected one of \('constant', 'invscaling', 'adaptive'\), "
        r"got 'optimal'"),
    ("sk-power-t-negative", lambda: sk("RNNRegressor")(
        max_iter=2, solver="sgd", learning_rate="invscaling", power_t=-0.5).fit(
        Xs(), np.ones(6)),
     V, r"power_t == -0\.5, must be >= 0"),
    ("sk-epsilon-zero", lambda: sk("RNNClassifier")(max_iter=2, epsilon=0.0).fit(Xs(), Y6),
     V, r"epsilon == 0\.0, must be > 0"),
    ("sk-epsilon-string", lambda: sk("RNNClassifier")(max_iter=2, epsilon="1e-8").fit(
        Xs(), Y6),
     T, r"epsilon must be an instance of"),
    ("sk-y-length", lambda: sk("RNNRegressor")(max_iter=2).fit(Xs(), np.ones(5)),
     V, r"inconsistent numbers of samples: \[6, 5\]"),
    ("sk-X-complex", lambda: sk("RNNClassifier")(max_iter=2).fit(Xs() + 1j, Y6),
     V, r"Complex data not supported"),
    ("sk-predict-unfitted", lambda: sk("RNNClassifier")().predict(Xs()),
     V, r"not fitted yet"),
    ("sk-features-mismatch", lambda: sk("RNNClassifier")(max_iter=2).fit(Xs(), Y6).predict(
        Xs(D=3)),
     V, r"X has 3 features a step, but RNNClassifier is expecting 2"),
    ("sk-ragged-list-bad-D", lambda: sk("RNNClassifier")(max_iter=2).fit(
        [np.ones((3, 2)), np.ones((5, 3))], [0, 1]),
     V, r"X\[1\]: expected 2 features a step like X\[0\], got shape \(5, 3\)"),
    ("sk-empty-sequence", lambda: sk("RNNClassifier")(max_iter=2).fit(
        [np.ones((0, 2)), np.ones((5, 2))], [0, 1]),
     V, r"X\[0\]: a sequence needs at least one step, got shape \(0, 2\)"),
    ("sk-regressor-y-nan", lambda: sk("RNNRegressor")(max_iter=2).fit(Xs(), np.full(6, np.nan)),
     V, r"y contains NaN"),
    # -------- files and command line
    ("io-load-missing", lambda: __import__("rnnfast.io").io.load("/nonexistent/model.npz"),
     FileNotFoundError, r"path: no such file: '/nonexistent/model\.npz'"),
    ("io-save-unregistered", lambda: __import__("rnnfast.io").io.save(
        __import__("rnnfast.data").data.Vocab(), "/tmp/never-written.npz"),
     T, r"obj: Vocab is not a registered rnnfast class"),
    ("io-save-time-layer-params-replaced", lambda: __import__("rnnfast.io").io.save(
        replaced((layer := rnnfast.TimeLSTM(*W("lstm"))).params, 0,
                 np.zeros((5, 16), f32)) and layer, "/tmp/never-written.npz"),
     V, r"obj: params\[0\] has shape \(5, 16\) and dtype float32; params\[0\] of the "
        r"rebuilt rnnfast\.TimeLSTM has shape \(3, 16\).*load would refuse"),
    ("io-save-dropout-ratio-changed", lambda: __import__("rnnfast.io").io.save(
        setattr(layer := rnnfast.layers.TimeDropout(0.5, 3), "ratio", 1.5) or layer,
        "/tmp/never-written.npz"),
     V, r"obj: rnnfast\.layers\.TimeDropout refuses its own config \{'ratio': 1\.5, "
        r"'random_state': 3\}: ratio: expected a probability in \[0, 1\), got 1\.5 \(load "
        r"would refuse"),
    ("cli-unknown-command", lambda: cli_fails_cleanly(["fly"], r"invalid choice: 'fly'"),
     None, None),
    ("cli-generate-missing-file", lambda: cli_fails_cleanly(
        ["generate", "/nonexistent/model.npz"], r"no such file"), None, None),
    ("cli-train-lm-empty-file", lambda: with_empty_file(lambda path: cli_fails_cleanly(
        ["train-lm", path], r"path: '.*empty\.txt' is empty: no text to train on")),
     None, None),
    ("cli-demo-negative-epochs", lambda: cli_fails_cleanly(
        ["demo", "--epochs", "-3"], r"--epochs: expected an integer >= 1, got -3"), None, None),
]

NEEDS_TORCH = {"from-torch-proj-size", "from-torch-bfloat16", "from-torch-nan-weights"}


# ------------------------------------------------------------------ runner
def _run_in_child(fn, timeout=120):
    """Run fn() in a forked child with warnings as errors.  Returns
    ("ok", None, None, None), or ("raised", exception, traceback text, None),
    or ("crashed", None, None, signal number)."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:                                          # child
        os.close(rfd)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)
                fn()
            result = ("ok", None, None, None)
        except BaseException as exc:                      # noqa: B902 - reported
            tb = traceback.format_exc()
            try:
                pickle.dumps(exc)
                result = ("raised", exc, tb, None)
            except Exception:
                result = ("raised", RuntimeError(f"unpicklable {type(exc).__name__}: {exc}"),
                          tb, None)
        with os.fdopen(wfd, "wb") as f:
            f.write(pickle.dumps(result))
        os._exit(0)
    os.close(wfd)
    chunks = []
    with os.fdopen(rfd, "rb") as f:
        while True:
            ready, _, _ = select.select([f], [], [], timeout)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"timed out after {timeout} s")
            chunk = os.read(f.fileno(), 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return ("crashed", None, None, os.WTERMSIG(status))
    if not chunks:
        return ("crashed", None, None, f"exit status {os.WEXITSTATUS(status)}, no result")
    return pickle.loads(b"".join(chunks))


def _run(fn):
    if hasattr(os, "fork"):
        return _run_in_child(fn)
    try:                                  # no fork (Windows): in process
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            fn()
        return ("ok", None, None, None)
    except Exception as exc:
        return ("raised", exc, traceback.format_exc(), None)


@pytest.mark.parametrize("fn,expected,pattern",
                         [pytest.param(fn, exc, pat, id=i) for i, fn, exc, pat in CASES])
def test_bad_input(request, fn, expected, pattern):
    if request.node.callspec.id in NEEDS_TORCH:
        request.getfixturevalue("torch")      # conftest: fails in CI, skips locally
    kind, exc, tb, sig = _run(fn)
    assert kind != "crashed", f"the process crashed ({sig})"
    if expected is None:
        assert kind == "ok", f"expected to work, raised:\n{tb}"
        return
    assert kind == "raised", f"expected {expected.__name__}, nothing was raised"
    assert isinstance(exc, expected), \
        f"expected {expected.__name__}, got {type(exc).__name__}: {exc}\n{tb}"
    assert pattern is not None

    assert re.search(pattern, str(exc)), f"message {str(exc)!r} does not match {pattern!r}"


def test_table_is_large_and_ids_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 30


@pytest.mark.parametrize("where", ["network xs", "network dhs", "time layer dhs",
                                   "affine x", "affine dout", "loss xs"])
def test_every_nan_refusal_is_a_non_finite_error(where):
    """Python checks and the checks folded into the kernels raise the same
    class, a ValueError, which a training loop tells apart from other bad
    input (rnnfast.trainer turns one met between a model's layers into
    TrainingDivergedError)."""
    from rnnfast._validation import NonFiniteError
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((2, 5, 3)).astype(np.float32)
    bad = np.full((2, 5, 4), np.nan, np.float32)
    with pytest.raises(NonFiniteError, match="contains NaN or Inf"):
        if where == "network xs":
            rnnfast.GRU(3, 4).forward(np.where(xs > 1, np.inf, xs))
        elif where == "network dhs":
            net = rnnfast.LSTM(3, 4)
            net.forward(xs)
            net.backward(bad)
        elif where == "time layer dhs":
            f = np.float32
            layer = rnnfast.TimeRNN(np.ones((3, 4), f), np.ones((4, 4), f), np.zeros(4, f))
            layer.forward(xs)
            layer.backward(bad)
        elif where == "affine x":
            from rnnfast.layers import TimeAffine
            affine = TimeAffine(np.ones((3, 2), np.float32), np.zeros(2, np.float32))
            affine.forward(np.where(xs > 1, np.nan, xs))
        elif where == "affine dout":
            # the public backward scans dout (a model's own softmax gradient,
            # finite by construction, skips the scan: RnnLM.backward)
            from rnnfast.layers import TimeAffine
            affine = TimeAffine(np.ones((3, 4), np.float32), np.zeros(4, np.float32))
            affine.forward(xs)
            affine.backward(bad)
        else:
            from rnnfast.losses import TimeSoftmaxWithLoss
            TimeSoftmaxWithLoss().forward(bad, np.zeros((2, 5), int))
