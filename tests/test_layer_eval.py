"""Cells and Time layers have a network's train()/eval(): in evaluation
mode forward runs the kernels' inference straight from the layer
(_dispatch._infer_layers, as a one-layer network), saves nothing for a
backward, and must give bitwise what training mode gives, states included;
backward then refuses with an error that says why.  The seq2seq models'
generate runs their LSTMs so."""
import numpy as np
import pytest

import rnnfast
from rnnfast import _core
from rnnfast.models.seq2seq import AttentionSeq2seq, PeekySeq2seq, Seq2seq

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
TIME = {"rnn": rnnfast.TimeRNN, "lstm": rnnfast.TimeLSTM, "gru": rnnfast.TimeGRU}
CELL = {"rnn": rnnfast.RNNCell, "lstm": rnnfast.LSTMCell, "gru": rnnfast.GRUCell}
# Each cell with its options: ReLU, GRU's reset gate after the product.
VARIANTS = [("rnn", {}), ("rnn", dict(nonlinearity="relu")), ("lstm", {}), ("gru", {}),
            ("gru", dict(reset_after=True))]
IDS = ["rnn", "rnn-relu", "lstm", "gru", "gru-reset-after"]


def weights(cell, D, H, dtype, seed=0, reset_after=False):
    rng = np.random.default_rng(seed)
    G = GATES[cell] * H
    b = (2, G) if reset_after else (G,)
    return [(rng.standard_normal(s) / 3).astype(dtype) for s in ((D, G), (H, G), b)]


def time_layer(cell, options, dtype, D=5, H=6, stateful=False):
    Wx, Wh, b = weights(cell, D, H, dtype, reset_after=options.get("reset_after", False))
    return TIME[cell](Wx, Wh, b, stateful=stateful, **options)


def direct_run(fn):
    """fn()'s result, and whether it ran the direct inference path (the
    scratch's block is only taken by _infer_layers)."""
    _core._SCRATCH.clear()
    result = fn()
    return result, _core._SCRATCH.block_bytes > 0


@pytest.mark.parametrize("cell,options", VARIANTS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,T", [(1, 1), (3, 7), (9, 40)])
def test_time_layer_eval_matches_training_bitwise(cell, options, dtype, N, T):
    layer = time_layer(cell, options, dtype, stateful=True)
    xs = np.random.default_rng(N + T).standard_normal((N, T, 5)).astype(dtype)
    runs = []
    for mode in (True, False):
        layer.train(mode).reset_state()
        # Two chunks: the second starts from the state the first left.
        outs = [layer.forward(xs), layer.forward(xs[:, ::-1])]
        states = [layer.h] + ([layer.c] if cell == "lstm" else [])
        runs.append((outs, [s.copy() for s in states]))
    (train_outs, train_states), (eval_outs, eval_states) = runs
    for a, b in zip(train_outs + train_states, eval_outs + eval_states):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell,options", VARIANTS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eval_matches_training_bitwise_at_every_width(cell, options, dtype):
    """Every hidden size from 1 to 33: a pass's training and inference
    versions vectorise a row in their own ways (16-, 8- and 4-wide parts,
    scalar tails), and each part must round as the others do.  The AVX-512
    clone without FMA had its scalar and 256-bit parts uncontracted and
    its 512-bit part contracted, so H = 8..15 differed in the last bit."""
    xs = np.random.default_rng(3).standard_normal((2, 4, 5)).astype(dtype)
    for H in range(1, 34):
        layer = time_layer(cell, options, dtype, H=H)
        train = layer.train().forward(xs)
        evaluated = layer.eval().forward(xs)
        np.testing.assert_array_equal(train, evaluated, err_msg=f"H = {H}")


@pytest.mark.parametrize("cell,options", VARIANTS, ids=IDS)
def test_time_layer_eval_goes_direct_and_training_does_not(cell, options):
    layer = time_layer(cell, options, np.float32)
    xs = np.random.default_rng(1).standard_normal((4, 6, 5)).astype(np.float32)
    _, direct = direct_run(lambda: layer.eval().forward(xs))
    assert direct
    _, direct = direct_run(lambda: layer.train().forward(xs))
    assert not direct


@pytest.mark.parametrize("cell,options", VARIANTS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cell_eval_matches_training_bitwise(cell, options, dtype):
    Wx, Wh, b = weights(cell, 5, 6, dtype, reset_after=options.get("reset_after", False))
    layer = CELL[cell](Wx, Wh, b, **options)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 5)).astype(dtype)
    state = [rng.standard_normal((4, 6)).astype(dtype) for _ in range(2 if cell == "lstm"
                                                                       else 1)]
    before = [s.copy() for s in state]
    train = layer.forward(x, *state)
    evaluated, direct = direct_run(lambda: layer.eval().forward(x, *state))
    assert direct
    train = train if isinstance(train, tuple) else (train,)
    evaluated = evaluated if isinstance(evaluated, tuple) else (evaluated,)
    for a, b in zip(train, evaluated):
        np.testing.assert_array_equal(a, b)
    for given, kept in zip(state, before):    # the caller's states are read, not written
        np.testing.assert_array_equal(given, kept)


@pytest.mark.parametrize("cell", sorted(TIME))
def test_backward_after_an_eval_forward_says_why(cell):
    layer = time_layer(cell, {}, np.float64)
    xs = np.ones((2, 3, 5))
    dhs = np.ones((2, 3, 6))
    layer.forward(xs)                      # training: a backward may follow
    layer.eval()
    layer.forward(xs)                      # ... not any more: it is not this forward's
    with pytest.raises(RuntimeError, match=rf"Time{cell.upper()}\.backward: the layer is in "
                                           "evaluation mode"):
        layer.backward(dhs)
    layer.train()
    with pytest.raises(RuntimeError, match="called before forward"):
        layer.backward(dhs)                # training mode, but no forward of it yet
    layer.forward(xs)
    assert layer.backward(dhs).shape == xs.shape


def test_a_training_forward_then_eval_still_has_its_backward():
    """eval() changes what the next forward saves, not what the last saved
    (PyTorch's modules: the mode is read at forward)."""
    layer = time_layer("lstm", {}, np.float64)
    xs = np.random.default_rng(3).standard_normal((2, 4, 5))
    layer.forward(xs)
    layer.eval()
    assert layer.backward(np.ones((2, 4, 6))).shape == xs.shape


def test_cell_backward_after_an_eval_forward_says_why():
    layer = rnnfast.GRUCell(*weights("gru", 5, 6, np.float64)).eval()
    layer.forward(np.ones((2, 5)), np.zeros((2, 6)))
    with pytest.raises(RuntimeError, match=r"GRUCell\.backward: the layer is in evaluation"):
        layer.backward(np.ones((2, 6)))


@pytest.mark.parametrize("cell", sorted(TIME))
def test_eval_refuses_what_training_refuses(cell):
    layer = time_layer(cell, {}, np.float32).eval()
    xs = np.ones((2, 3, 5), np.float32)
    xs[1, 2, 4] = np.nan
    with pytest.raises(ValueError, match="xs"):
        layer.forward(xs)
    with pytest.raises(ValueError, match="xs"):
        layer.forward(np.ones((2, 3, 4), np.float32))      # D = 4, not 5
    layer.params[1] = np.ones((6, 7), np.float32)          # Wh replaced: wrong shape
    with pytest.raises(ValueError, match=r"params\[1\] \(Wh\)"):
        layer.forward(np.ones((2, 3, 5), np.float32))


def test_train_and_eval_return_the_layer_and_a_new_layer_trains():
    layer = time_layer("gru", {}, np.float32)
    assert layer.training
    assert layer.eval() is layer and not layer.training
    assert layer.train() is layer and layer.training
    assert layer.train(False) is layer and not layer.training


@pytest.mark.parametrize("model_class", [Seq2seq, PeekySeq2seq, AttentionSeq2seq])
def test_seq2seq_generate_runs_its_lstms_in_eval_and_gives_the_same_ids(model_class,
                                                                        monkeypatch):
    model = model_class(13, 4, 8, random_state=0)
    xs = np.random.default_rng(5).integers(0, 13, (6, 5))
    ids = model.generate(xs, 1, 7)
    assert model.training and model.encoder.lstm.training and model.decoder.lstm.training
    # The same model with its LSTMs held in training mode (the path before).
    monkeypatch.setattr(rnnfast.TimeLSTM, "train", lambda self, mode=True: self)
    np.testing.assert_array_equal(ids, model.generate(xs, 1, 7))
    monkeypatch.undo()
    model.eval()
    assert not model.encoder.lstm.training and not model.decoder.lstm.training
    np.testing.assert_array_equal(ids, model.generate(xs, 1, 7))
    assert not model.training                   # generate gives back the mode it found
    ts = np.random.default_rng(6).integers(0, 13, (6, 4))
    model.forward(xs, ts)                       # a loss in evaluation ...
    with pytest.raises(RuntimeError, match="evaluation mode"):
        model.backward()                        # ... has no backward
    model.train()
    model.forward(xs, ts)
    model.backward()


NETS = {"rnn": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU}
NET_VARIANTS = VARIANTS[:3] + [("gru", dict(reset_after=False)), ("gru", {}),
                               ("lstm", dict(bias=False))]
NET_IDS = ["rnn", "rnn-relu", "lstm", "gru-reset-before", "gru-reset-after", "lstm-no-bias"]


@pytest.mark.parametrize("layers,bidirectional,lengths,given_state,stateful", [
    (2, True, [5, 1, 3], True, False),
    (3, False, None, True, False),
    (1, True, [1, 1, 1], True, False),
    (2, True, [5, 2, 4], False, True),
    (1, False, None, False, True),
], ids=["2-bi-lengths-state", "3-uni-state", "bi-T1-lengths", "2-bi-lengths-stateful",
        "stateful"])
@pytest.mark.parametrize("cell,options", NET_VARIANTS, ids=NET_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_network_eval_matches_training_bitwise(cell, options, dtype, layers, bidirectional,
                                               lengths, given_state, stateful):
    """A network's evaluation forward (dropout set, but off in eval) gives
    bitwise the outputs and final states of a training forward without
    dropout, with a given state, ragged lengths, 3 layers, and over two
    chunks of a stateful network (the state carried)."""
    rng = np.random.default_rng(6)
    nets = [NETS[cell](4, 5, num_layers=layers, bidirectional=bidirectional, dropout=d,
                       stateful=stateful, dtype=dtype, random_state=1, **options)
            for d in (0.0, 0.5)]
    nets[1].eval()
    nd = 2 if bidirectional else 1
    xs = rng.standard_normal((3, 5, 4)).astype(dtype)
    h = rng.standard_normal((layers * nd, 3, 5)).astype(dtype)
    state = ((h, h / 2) if cell == "lstm" else h) if given_state else None
    runs = []
    for net in nets:
        out = []
        for _ in range(2 if stateful else 1):
            hs, final = net.forward(xs, state, lengths)
            out += [hs] + list(final if cell == "lstm" else (final,))
        runs.append(out)
    assert nets[0].training and not nets[1].training
    for a, b in zip(*runs):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_array_equal(a, b)
