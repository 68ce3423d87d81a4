"""rnnfast.interop's Keras converters against Keras 3 itself (on PyTorch's
backend): keras.layers.SimpleRNN / LSTM / GRU <-> rnnfast's Time layers,
Keras's cells <-> rnnfast's cells, in float32 and float64, with and
without biases, both GRU variants."""
import numpy as np
import pytest

import rnnfast
from rnnfast.interop import from_keras, to_keras, to_keras_weights

# Keras's own variables, under NumPy 2 (nothing of rnnfast's)
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

N, T, D, H = 3, 6, 4, 5
# (Keras class name, its options, rnnfast's class, rnnfast's options)
KINDS = [("SimpleRNN", {}, "RNN", dict(nonlinearity="tanh")),
         ("SimpleRNN", dict(activation="relu"), "RNN", dict(nonlinearity="relu")),
         ("LSTM", {}, "LSTM", {}),
         ("GRU", {}, "GRU", dict(reset_after=True)),
         ("GRU", dict(reset_after=False), "GRU", dict(reset_after=False))]
IDS = ["rnn-tanh", "rnn-relu", "lstm", "gru", "gru-reset-before"]


def _close(dtype):
    """float32's rounding; in float64 1e-6 too: Keras's float64 layers on
    PyTorch's backend round somewhere at float32's level (a float64
    SimpleRNN of 6 steps differs from a float64 NumPy loop over its own
    weights by 1.3e-7).  A misplaced gate block or sign is off by O(1),
    and the weights themselves are compared bit for bit."""
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-6, atol=1e-6)
    return lambda got, want, what: np.testing.assert_allclose(got, want, err_msg=what, **tol)


def _keras_with_random_weights(keras, kind, options, dtype, use_bias, cell=False, seed=0):
    """A built Keras layer (or cell) whose weights, biases too, are random
    (Keras starts biases at zero and the forget gate's at one, which
    would hide a misplaced bias block)."""
    cls = getattr(keras.layers, kind + ("Cell" if cell else ""))
    extra = {} if cell else dict(return_sequences=True)
    layer = cls(H, use_bias=use_bias, dtype=dtype, **options, **extra)
    layer.build((None, D) if cell else (None, None, D))
    rng = np.random.default_rng(seed)
    layer.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(dtype)
                       for w in layer.get_weights()])
    return layer


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind,options,ours,our_options", KINDS, ids=IDS)
def test_time_layers_from_and_to_keras(keras, kind, options, ours, our_options, dtype,
                                       use_bias):
    """from_keras of a Keras layer is the rnnfast Time layer of the same
    sequence (outputs equal to Keras's with return_sequences=True, the
    class, dtype and options kept); to_keras of it is a Keras layer of the
    same outputs again, whose weights are the first layer's bit for bit and
    to_keras_weights' arrays."""
    layer = _keras_with_random_weights(keras, kind, options, dtype, use_bias)
    xs = np.random.default_rng(1).standard_normal((N, T, D)).astype(dtype)
    expected = keras.ops.convert_to_numpy(layer(xs))
    got = from_keras(layer)
    assert type(got) is getattr(rnnfast, "Time" + ours)
    assert got.dtype == np.dtype(dtype) and (got.input_size, got.hidden_size) == (D, H)
    assert not got.stateful
    for name, value in our_options.items():
        assert getattr(got, name) == value, name
    close = _close(dtype)
    close(got.forward(xs), expected, "hs against Keras")
    back = to_keras(got)
    assert type(back) is type(layer) and back.return_sequences
    assert back.units == H and back.dtype == dtype
    close(keras.ops.convert_to_numpy(back(xs)), expected, "to_keras's outputs")
    arrays = to_keras_weights(got)
    assert len(arrays) == len(back.get_weights()) == 3          # to_keras: use_bias=True
    for again, mine in zip(back.get_weights(), arrays):
        np.testing.assert_array_equal(again, mine)
    # the same weights (without biases, kernel and recurrent_kernel; zeros
    # run in the bias's place)
    for theirs, again in zip(layer.get_weights(), back.get_weights()):
        np.testing.assert_array_equal(again, theirs)
    if not use_bias:
        assert not arrays[2].any()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind,options,ours,our_options", KINDS, ids=IDS)
def test_cells_from_and_to_keras(keras, kind, options, ours, our_options, dtype):
    """One step: from_keras of a Keras cell is the rnnfast cell of the same
    step (h', and c' for LSTM), to_keras of it a Keras cell of that step."""
    step = _keras_with_random_weights(keras, kind, options, dtype, True, cell=True, seed=2)
    rng = np.random.default_rng(3)
    x, h, c = (rng.standard_normal((N, s)).astype(dtype) for s in (D, H, H))
    states = [h, c] if ours == "LSTM" else [h]
    expected_h, expected_states = step(x, states)
    got = from_keras(step)
    assert type(got) is getattr(rnnfast, ours + "Cell") and got.dtype == np.dtype(dtype)
    close = _close(dtype)
    out = got.forward(x, *states)
    if ours == "LSTM":
        close(out[0], keras.ops.convert_to_numpy(expected_h), "h_next")
        close(out[1], keras.ops.convert_to_numpy(expected_states[1]), "c_next")
    else:
        close(out, keras.ops.convert_to_numpy(expected_h), "h_next")
    back = to_keras(got)
    assert type(back) is type(step)
    again, _ = back(x, states)
    close(keras.ops.convert_to_numpy(again), keras.ops.convert_to_numpy(expected_h),
          "to_keras's h_next")
    for theirs, mine in zip(step.get_weights(), back.get_weights()):
        np.testing.assert_array_equal(mine, theirs)


def test_stateful_keras_layer_gives_a_stateful_time_layer(keras):
    """A stateful Keras layer (a static batch size) carries its state from
    call to call; the Time layer from_keras gives does the same."""
    layer = keras.layers.LSTM(H, return_sequences=True, stateful=True)
    layer.build((N, None, D))
    rng = np.random.default_rng(4)
    layer.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5
                       for w in layer.get_weights()])
    ours = from_keras(layer)
    assert ours.stateful
    close = _close("float32")
    for chunk in range(2):
        xs = rng.standard_normal((N, T, D)).astype(np.float32)
        close(ours.forward(xs), keras.ops.convert_to_numpy(layer(xs)), f"chunk {chunk}")


def test_bad_keras_layers_are_refused_naming_the_setting(keras):
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match=r"the LSTM is not built yet"):
        from_keras(keras.layers.LSTM(H))
    for layer, message in [
            (keras.layers.LSTM(H, recurrent_activation="hard_sigmoid"),
             r"recurrent_activation='hard_sigmoid' is not supported; rnnfast's LSTM uses "
             r"'sigmoid'"),
            (keras.layers.GRU(H, activation="relu"),
             r"activation='relu' is not supported; rnnfast's GRU uses 'tanh'"),
            (keras.layers.SimpleRNN(H, activation="sigmoid"),
             r"activation='sigmoid' is not supported; rnnfast's SimpleRNN uses 'tanh' or "
             r"'relu'"),
            (keras.layers.GRU(H, go_backwards=True), r"go_backwards=True is not supported")]:
        layer.build((None, None, D))
        with pytest.raises(ValueError, match=message):
            from_keras(layer)
    layer = keras.layers.GRU(H)
    layer.build((None, None, D))
    weights = layer.get_weights()
    weights[1] = np.full_like(weights[1], np.nan)
    layer.set_weights(weights)
    with pytest.raises(ValueError, match=r"recurrent_kernel \(shape \(5, 15\)\) contains NaN"):
        from_keras(layer)
    with pytest.raises(TypeError, match=r"expected keras.layers.SimpleRNN, LSTM or GRU.*"
                                        r"got rnnfast.networks.LSTM"):
        from_keras(rnnfast.LSTM(D, H))
    with pytest.raises(TypeError, match=r"layer: expected an rnnfast.RNNCell.*got LSTM "
                                        r"\(a network goes whole through to_keras\)"):
        to_keras_weights(rnnfast.LSTM(D, H))
    lstm = rnnfast.TimeLSTM(rng.standard_normal((D, 4 * H)), rng.standard_normal((H, 4 * H)),
                            rng.standard_normal(4 * H))
    lstm.params[1] = np.zeros((H + 1, 4 * H))
    with pytest.raises(ValueError, match=r"TimeLSTM.params\[1\] \(Wh\): expected shape "
                                         r"\(5, 20\), got shape \(6, 20\)"):
        to_keras_weights(lstm)


NETWORKS = [
    lambda: rnnfast.LSTM(D, H, num_layers=2, bidirectional=True, dropout=0.25, random_state=0),
    lambda: rnnfast.GRU(D, H, num_layers=3, bias=False, dtype=np.float64, random_state=1),
    lambda: rnnfast.GRU(D, H, bidirectional=True, reset_after=False, random_state=2),
    lambda: rnnfast.RNN(D, H, nonlinearity="relu", num_layers=2, random_state=3)]


@pytest.mark.parametrize("make", NETWORKS, ids=["lstm-bi-2-dropout", "gru-3-no-bias-float64",
                                                "gru-bi-reset-before", "rnn-relu-2"])
def test_networks_to_and_from_keras(keras, make):
    """to_keras of a network is a keras.Sequential of its layers
    (Bidirectional when it is, Dropout between them) computing its outputs
    hs; from_keras of that is the network again, weights bit for bit."""
    net = make()
    model = to_keras(net)
    kinds = [type(m).__name__ for m in model.layers]
    one = "Bidirectional" if net.bidirectional else {"rnn": "SimpleRNN", "lstm": "LSTM",
                                                     "gru": "GRU"}[net.cell]
    expected = [one] + (["Dropout", one] if net.dropout else [one]) * (net.num_layers - 1)
    assert kinds == expected
    xs = np.random.default_rng(6).standard_normal((N, T, D)).astype(net.dtype)
    dtype = np.dtype(net.dtype).name
    _close(dtype)(keras.ops.convert_to_numpy(model(xs)), net.eval().forward(xs)[0],
                  "Sequential's outputs")
    back = from_keras(model)
    assert type(back) is type(net)
    for name in ("input_size", "hidden_size", "num_layers", "bidirectional", "dropout",
                 "bias", "dtype", "stateful"):
        assert getattr(back, name) == getattr(net, name), name
    assert getattr(back, "reset_after", None) == getattr(net, "reset_after", None)
    assert getattr(back, "nonlinearity", None) == getattr(net, "nonlinearity", None)
    for ours, again in zip(net.params, back.params):
        np.testing.assert_array_equal(again, ours)


@pytest.mark.parametrize("kind,options,ours,our_options", KINDS[1:], ids=IDS[1:])
def test_keras_bidirectional_and_stacks_give_networks(keras, kind, options, ours, our_options):
    """Keras's own Bidirectional layer and a Sequential stack of it with
    Dropout between, random weights (biases too): from_keras gives the
    network of the same outputs."""
    cls = getattr(keras.layers, kind)
    model = keras.Sequential(
        [keras.Input((None, D)), keras.layers.Bidirectional(cls(H, return_sequences=True,
                                                                **options)),
         keras.layers.Dropout(0.3),
         keras.layers.Bidirectional(cls(H, return_sequences=True, **options))])
    rng = np.random.default_rng(7)
    model.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(np.float32)
                       for w in model.get_weights()])
    xs = rng.standard_normal((N, T, D)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(model(xs))
    net = from_keras(model)
    assert type(net) is getattr(rnnfast, ours)
    assert (net.num_layers, net.bidirectional, net.dropout) == (2, True, 0.3)
    _close("float32")(net.eval().forward(xs)[0], expected, "hs against Keras")
    alone = from_keras(model.layers[0])                 # a Bidirectional alone
    assert (alone.num_layers, alone.bidirectional, alone.dropout) == (1, True, 0.0)
    _close("float32")(alone.eval().forward(xs)[0],
                      keras.ops.convert_to_numpy(model.layers[0](xs)), "one Bidirectional")


def test_keras_stacks_rnnfast_cannot_hold_are_refused(keras):
    def sequential(*layers):
        return keras.Sequential([keras.Input((None, D))] + list(layers))
    lstm = lambda units=H, **kw: keras.layers.LSTM(units, return_sequences=True, **kw)  # noqa
    for model, message in [
            (sequential(keras.layers.Bidirectional(lstm(), merge_mode="sum")),
             r"merge_mode='sum' is not supported"),
            (sequential(lstm(), keras.layers.GRU(H, return_sequences=True)),
             r"layer 1 \(direction 0\) has \{'cell': 'gru'"),
            (sequential(lstm(), lstm(units=H + 1)), r"'units': 6"),
            (sequential(lstm(), keras.layers.Bidirectional(lstm())), r"'directions': 2"),
            (sequential(lstm(), keras.layers.Dense(3), lstm()),
             r"layer.layers\[1\]: expected keras.layers.SimpleRNN.*got "
             r"keras.src.layers.core.dense.Dense"),
            (sequential(keras.layers.Dropout(0.1), lstm()), r"a Dropout at position 0"),
            (sequential(lstm(), keras.layers.Dropout(0.1), lstm(), keras.layers.Dropout(0.2),
                        lstm()), r"dropout rates \[0.1, 0.2\] between the layers"),
            (sequential(lstm(), keras.layers.Dropout(0.1), lstm(), lstm()),
             r"dropout rates \[0.1, 0.0\] between the layers \(0.0 where there is no "
             r"Dropout\)"),
            (sequential(lstm(), keras.layers.Dropout(0.1)), r"a Dropout after the last layer"),
            (sequential(lstm(), keras.layers.Dense(3)),
             r"the last recurrent layer has return_sequences=True and the Dense "
             r"activation='linear'; rnnfast converts a tagger of every step"),
            (sequential(lstm(), keras.layers.Dense(1, activation="softmax")),
             r"a softmax Dense of 1 unit; a tagger needs 2 tags or more"),

            (sequential(lstm(go_backwards=True)), r"go_backwards=True is not supported")]:
        with pytest.raises((ValueError, TypeError), match=message):
            from_keras(model)
    net = rnnfast.GRU(D, H, random_state=0)
    net.params[1] = np.zeros((H + 1, 3 * H), np.float32)
    with pytest.raises(ValueError, match=r"GRU.params\[1\] \(Wh of layer 0\): expected "
                                         r"shape \(5, 15\)"):
        to_keras(net)


@pytest.mark.parametrize("kind,options,ours,our_options", KINDS, ids=IDS)
def test_keras_rnn_of_one_cell_reads_as_its_layer(keras, kind, options, ours, our_options):
    """keras.layers.RNN(LSTMCell(...)) is an LSTM layer by another name: a
    Time layer alone, a network in a Bidirectional; RNN of a stack of
    cells is refused, naming the cell."""
    rng = np.random.default_rng(8)
    cell = getattr(keras.layers, kind + "Cell")
    layer = keras.layers.RNN(cell(H, **options), return_sequences=True)
    layer.build((None, None, D))
    layer.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(np.float32)
                       for w in layer.get_weights()])
    xs = rng.standard_normal((N, T, D)).astype(np.float32)
    got = from_keras(layer)
    assert type(got) is getattr(rnnfast, "Time" + ours)
    _close("float32")(got.forward(xs), keras.ops.convert_to_numpy(layer(xs)), "hs")
    both = keras.layers.Bidirectional(keras.layers.RNN(cell(H, **options),
                                                       return_sequences=True))
    both.build((None, None, D))
    net = from_keras(both)
    assert type(net) is getattr(rnnfast, ours) and net.bidirectional
    _close("float32")(net.eval().forward(xs)[0], keras.ops.convert_to_numpy(both(xs)), "hs")
    stack = keras.layers.RNN([cell(H, **options), cell(H, **options)])
    stack.build((None, None, D))
    with pytest.raises(TypeError, match=r"layer.cell: expected one keras.layers.SimpleRNNCell"
                                        r".*got keras.src.layers.rnn.stacked_rnn_cells"):
        from_keras(stack)


def _random_weights(model, seed):
    rng = np.random.default_rng(seed)
    model.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(w.dtype)
                       for w in model.get_weights()])
    return rng


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "SimpleRNN"])
def test_keras_classifiers_and_regressors_give_sequence_models(keras, cell):
    """A Keras text classifier (Embedding, a Bidirectional stack, Dropout,
    a softmax Dense) gives a SequenceClassifier whose predict_proba is what
    Keras predicts; a regressor on float features (a linear Dense) a
    SequenceRegressor whose predict_scores is.  to_keras of each is a
    Sequential of the same predictions, and from_keras of that the same
    weights bit for bit."""
    from rnnfast.models import SequenceClassifier, SequenceRegressor
    rec = getattr(keras.layers, cell)
    classifier = keras.Sequential([
        keras.Input((None,), dtype="int64"), keras.layers.Embedding(30, 6),
        keras.layers.Bidirectional(rec(H, return_sequences=True)), keras.layers.Dropout(0.2),
        keras.layers.Bidirectional(rec(H)), keras.layers.Dropout(0.2),
        keras.layers.Dense(3, activation="softmax")])
    rng = _random_weights(classifier, 9)
    ids = rng.integers(0, 30, (N, T))
    ours = from_keras(classifier)
    assert type(ours) is SequenceClassifier and not ours.training
    config = ours.get_config()
    assert (config["vocab_size"], config["embedding_size"], config["cell"],
            config["num_layers"], config["bidirectional"], config["dropout"],
            config["n_classes"]) == (30, 6, {"SimpleRNN": "rnn"}.get(cell, cell.lower()), 2,
                                     True, 0.2, 3)
    close = _close("float32")
    close(ours.predict_proba(ids), keras.ops.convert_to_numpy(classifier(ids)), "proba")
    regressor = keras.Sequential([keras.Input((None, D)), rec(H, return_sequences=True),
                                  rec(H), keras.layers.Dense(2)])
    xs = _random_weights(regressor, 10).standard_normal((N, T, D)).astype(np.float32)
    reg = from_keras(regressor)
    assert type(reg) is SequenceRegressor and reg.get_config()["dropout"] == 0.0
    close(reg.predict_scores(xs), keras.ops.convert_to_numpy(regressor(xs)), "scores")
    for model, x, predict in ((ours, ids, ours.predict_proba), (reg, xs, reg.predict_scores)):
        back = to_keras(model)
        close(keras.ops.convert_to_numpy(back(x)), predict(x), "to_keras's predictions")
        again = from_keras(back)
        assert again.get_config() == model.get_config()
        for a, b in zip(again.params, model.params):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "SimpleRNN"])
def test_keras_taggers_give_sequence_taggers(keras, cell):
    """A Keras tagger (the last recurrent layer returning sequences, a
    softmax Dense on every step, or the same Dense in TimeDistributed)
    gives a SequenceTagger whose predict_proba (N, T, n_tags) is what
    Keras predicts; to_keras of it is a Sequential of the same
    predictions, and from_keras of that the same weights bit for bit."""
    from rnnfast.models import SequenceTagger
    rec = getattr(keras.layers, cell)
    rng = np.random.default_rng(12)
    ids = rng.integers(0, 30, (N, T))
    xs = rng.standard_normal((N, T, D))
    taggers = [
        (keras.Sequential([keras.Input((None,), dtype="int64"), keras.layers.Embedding(30, 6),
                           keras.layers.Bidirectional(rec(H, return_sequences=True)),
                           keras.layers.Dropout(0.3),
                           keras.layers.Dense(4, activation="softmax")]), ids, "float32"),
        (keras.Sequential([keras.Input((None, D), dtype="float64"),
                           rec(H, return_sequences=True, dtype="float64"),
                           rec(H, return_sequences=True, dtype="float64"),
                           keras.layers.TimeDistributed(keras.layers.Dense(
                               3, activation="softmax", dtype="float64"), dtype="float64")]),
         xs, "float64")]
    for seed, (tagger, x, dtype) in enumerate(taggers):
        _random_weights(tagger, 20 + seed)
        ours = from_keras(tagger)
        assert type(ours) is SequenceTagger and not ours.training
        config = ours.get_config()
        assert (config["n_tags"], config["dtype"], config["num_layers"]) == (
            tagger.layers[-1].get_weights()[0].shape[1], dtype, 1 if seed == 0 else 2)
        assert config["dropout"] == (0.3 if seed == 0 else 0.0)
        close = _close(dtype)
        proba = ours.predict_proba(x)
        assert proba.shape[:2] == (N, T)
        close(proba, keras.ops.convert_to_numpy(tagger(x)), "proba")
        back = to_keras(ours)
        close(keras.ops.convert_to_numpy(back(x)), proba, "to_keras's predictions")
        again = from_keras(back)
        assert again.get_config() == config
        for a, b in zip(again.params, ours.params):
            np.testing.assert_array_equal(a, b)


def test_keras_functional_chains_and_sigmoid_heads(keras):
    """A functional keras.Model that is a chain of layers converts as the
    Sequential of those layers: Keras's IMDB example (an Embedding, two
    Bidirectional LSTMs, a sigmoid Dense of one unit) gives a two-class
    SequenceClassifier whose predict_proba[:, 1] is Keras's output; a
    chain of recurrent layers alone a network; a one-unit sigmoid on
    every step a two-tag SequenceTagger."""
    from rnnfast.models import SequenceClassifier, SequenceTagger
    layers = keras.layers
    rng = np.random.default_rng(13)
    ids = rng.integers(0, 40, (N, T))
    xs = rng.standard_normal((N, T, D)).astype(np.float32)
    close = _close("float32")

    inputs = keras.Input((None,), dtype="int64")
    x = layers.Embedding(40, 8)(inputs)
    x = layers.Bidirectional(layers.LSTM(H, return_sequences=True))(x)
    x = layers.Bidirectional(layers.LSTM(H))(x)
    imdb = keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))
    _random_weights(imdb, 30)
    ours = from_keras(imdb)
    assert type(ours) is SequenceClassifier and ours.n_classes == 2
    proba = ours.predict_proba(ids)
    close(proba[:, 1:], keras.ops.convert_to_numpy(imdb(ids)), "sigmoid")
    close(keras.ops.convert_to_numpy(to_keras(ours)(ids)), proba, "to_keras's softmax")

    inputs = keras.Input((None, D))
    hs = layers.GRU(H, return_sequences=True)(layers.GRU(H, return_sequences=True)(inputs))
    chain = keras.Model(inputs, hs)
    _random_weights(chain, 31)
    net = from_keras(chain)
    assert type(net) is rnnfast.GRU and net.num_layers == 2
    close(net.eval().forward(xs)[0], keras.ops.convert_to_numpy(chain(xs)), "hs")

    inputs = keras.Input((None, D))
    x = layers.SimpleRNN(H, return_sequences=True)(inputs)
    tagger = keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))
    _random_weights(tagger, 32)
    ours = from_keras(tagger)
    assert type(ours) is SequenceTagger and ours.n_tags == 2
    close(ours.predict_proba(xs)[..., 1:], keras.ops.convert_to_numpy(tagger(xs)), "tags")


def test_keras_functional_models_that_are_not_chains_are_refused(keras):
    layers = keras.layers
    a, b = keras.Input((None, D)), keras.Input((None, D))
    two_inputs = keras.Model([a, b], layers.LSTM(H)(layers.Concatenate()([a, b])))
    x = keras.Input((None, D))
    h = layers.LSTM(H, return_sequences=True)(x)
    two_outputs = keras.Model(x, [layers.LSTM(H)(h), h])
    skip = keras.Model(x, layers.Concatenate()([h, layers.LSTM(H, return_sequences=True)(h)]))
    three = keras.Model(x, layers.Dense(3, activation="sigmoid")(layers.LSTM(H)(x)))
    for model, message in [
            (two_inputs, r"layer: a functional Model of 2 inputs and 1 outputs; rnnfast "
                         r"converts a chain of layers"),
            (two_outputs, r"a functional Model of 1 inputs and 2 outputs"),
            (skip, r"its Concatenate 'concatenate\w*' takes 2 inputs and gives 1 outputs"),
            (three, r"a sigmoid Dense of 3 units \(independent labels\)")]:
        with pytest.raises(ValueError, match=message):
            from_keras(model)


def test_sequence_models_to_keras_and_back(keras):
    """rnnfast's own models (its random weights, float64 too) through
    to_keras and back: the same predictions, the same weights."""
    from rnnfast.models import SequenceClassifier, SequenceRegressor
    rng = np.random.default_rng(11)
    for model, x in [
            (SequenceClassifier(4, vocab_size=20, cell="gru", hidden_size=H, num_layers=2,
                                dropout=0.1, random_state=0), rng.integers(0, 20, (N, T))),
            (SequenceRegressor(3, input_size=D, cell="lstm", hidden_size=H,
                               bidirectional=True, dtype=np.float64, random_state=1),
             rng.standard_normal((N, T, D)))]:
        model.eval()
        keras_model = to_keras(model)
        want = (model.predict_proba(x) if isinstance(model, SequenceClassifier)
                else model.predict_scores(x))
        _close(np.dtype(model.dtype).name)(keras.ops.convert_to_numpy(keras_model(x)), want,
                                           type(model).__name__)
        again = from_keras(keras_model)
        for a, b in zip(again.params, model.params):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "SimpleRNN"])
def test_keras_mask_zero_gives_mask_zero_models(keras, cell):
    """A Keras classifier or regressor on Embedding(mask_zero=True) skips
    id 0 wherever it lies (leading, interior and trailing padding, and a
    sequence of padding only, which gets the zero initial state): the
    converted model has mask_zero=True and predicts what Keras predicts on
    such ids, through a bidirectional stack; to_keras of it masks again."""
    from rnnfast.models import SequenceClassifier, SequenceRegressor
    rec = getattr(keras.layers, cell)
    rng = np.random.default_rng(31)
    ids = rng.integers(1, 12, (6, 7))
    ids[0, :3] = 0                    # leading ('pre', Keras's default) padding
    ids[1, 4:] = 0                    # trailing ('post') padding
    ids[2, [1, 3, 4]] = 0             # zeros inside
    ids[3] = 0                        # padding only
    ids[4, 0] = ids[4, -1] = 0
    for activation, n_out, kind in (("softmax", 3, SequenceClassifier),
                                    ("linear", 2, SequenceRegressor)):
        theirs = keras.Sequential([
            keras.Input((None,), dtype="int64"), keras.layers.Embedding(12, 5, mask_zero=True),
            keras.layers.Bidirectional(rec(H, return_sequences=True)),
            keras.layers.Dropout(0.1), keras.layers.Bidirectional(rec(H)),
            keras.layers.Dropout(0.1), keras.layers.Dense(n_out, activation=activation)])
        _random_weights(theirs, 32)
        ours = from_keras(theirs)
        assert type(ours) is kind and ours.get_config()["mask_zero"] is True
        predict = ours.predict_proba if kind is SequenceClassifier else ours.predict_scores
        want = keras.ops.convert_to_numpy(theirs(ids))
        _close("float32")(predict(ids), want, f"{kind.__name__} on padded ids")
        # without the mask the zeros are read as tokens: the test can tell
        unmasked = kind(n_out, vocab_size=12, embedding_size=5, cell=ours.network.cell,
                        hidden_size=H, num_layers=2, bidirectional=True)
        for a, b in zip(unmasked.params, ours.params):
            a[...] = b
        assert np.abs(unmasked.eval().predict_scores(ids) - ours.predict_scores(ids)).max() > 1e-3
        back = to_keras(ours)
        assert back.layers[0].mask_zero
        _close("float32")(keras.ops.convert_to_numpy(back(ids)), want, "to_keras's predictions")


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "SimpleRNN"])
def test_keras_masking_gives_mask_value_models(keras, cell):
    """A Keras regressor or classifier on float features behind
    keras.layers.Masking(v) skips every step whose features all equal v
    (leading, inner, trailing, a sequence of them only; a step with one
    feature at v is read): the converted model has mask_value=v and
    predicts what Keras predicts; to_keras of it masks again."""
    from rnnfast.models import SequenceClassifier, SequenceRegressor
    rec = getattr(keras.layers, cell)
    rng = np.random.default_rng(41)
    xs = rng.standard_normal((6, 7, D)).astype(np.float32)
    pad = -1.5
    xs[0, :3] = pad
    xs[1, 4:] = pad
    xs[2, [1, 3, 4]] = pad
    xs[3] = pad
    xs[4, 2, 0] = pad                   # one feature only: not a masked step
    for activation, n_out, kind in (("linear", 2, SequenceRegressor),
                                    ("softmax", 3, SequenceClassifier)):
        theirs = keras.Sequential([
            keras.Input((None, D)), keras.layers.Masking(pad),
            keras.layers.Bidirectional(rec(H, return_sequences=True)),
            keras.layers.Bidirectional(rec(H)), keras.layers.Dense(n_out, activation=activation)])
        _random_weights(theirs, 42)
        ours = from_keras(theirs)
        assert type(ours) is kind and ours.get_config()["mask_value"] == pad
        predict = ours.predict_proba if kind is SequenceClassifier else ours.predict_scores
        want = keras.ops.convert_to_numpy(theirs(xs))
        _close("float32")(predict(xs), want, f"{kind.__name__} on masked steps")
        back = to_keras(ours)
        assert type(back.layers[0]).__name__ == "Masking" and back.layers[0].mask_value == pad
        _close("float32")(keras.ops.convert_to_numpy(back(xs)), want, "to_keras's predictions")


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "SimpleRNN"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_keras_masked_taggers_give_masked_sequence_taggers(keras, cell, bidirectional):
    """A Keras tagger behind Embedding(mask_zero=True) or Masking(v) gives
    a SequenceTagger with mask_zero or mask_value whose predict_proba is
    Keras's at every step, masked ones too (the previous step's output, or
    zeros before the first real step; zeros in a Bidirectional), through a
    stack of two; to_keras of it masks again."""
    from rnnfast.models import SequenceTagger
    rec = getattr(keras.layers, cell)

    def layer():
        one = rec(H, return_sequences=True)
        return keras.layers.Bidirectional(one) if bidirectional else one
    rng = np.random.default_rng(51)
    ids = rng.integers(1, 12, (5, 7))
    xs = rng.standard_normal((5, 7, D)).astype(np.float32)
    for rows in (ids, xs):
        rows[0, :3] = 0
        rows[1, 4:] = 0
        rows[2, [1, 3, 4]] = 0
        rows[3] = 0
    for first, x, option in ((keras.layers.Embedding(12, 5, mask_zero=True), ids, "mask_zero"),
                             (keras.layers.Masking(0.0), xs, "mask_value")):
        theirs = keras.Sequential([
            keras.Input((None,) if x is ids else (None, D), dtype="int64" if x is ids
                        else "float32"),
            first, layer(), keras.layers.Dropout(0.2), layer(), keras.layers.Dropout(0.2),
            keras.layers.Dense(4, activation="softmax")])
        _random_weights(theirs, 52)
        ours = from_keras(theirs)
        assert type(ours) is SequenceTagger
        assert ours.get_config()[option] == (True if option == "mask_zero" else 0.0)
        want = keras.ops.convert_to_numpy(theirs(x))
        _close("float32")(ours.predict_proba(x), want, f"tagger behind {option}")
        back = to_keras(ours)
        _close("float32")(keras.ops.convert_to_numpy(back(x)), want, "to_keras's predictions")


def test_keras_models_rnnfast_cannot_hold_are_refused(keras):
    def model(*layers, inputs=None):
        return keras.Sequential([keras.Input((None, D)) if inputs is None else inputs]
                                + list(layers))
    ids = keras.Input((None,), dtype="int64")
    for m, message in [
            (model(keras.layers.Masking(0.0), keras.layers.LSTM(H)),
             r"a Sequential with a Masking layer and no Dense"),
            (model(keras.layers.Masking(float("nan")), keras.layers.LSTM(H),
                   keras.layers.Dense(2)),
             r"layers\[0\]: a Masking of mask_value=nan; rnnfast's features are finite"),
            (model(keras.layers.Masking(float("-inf")), keras.layers.LSTM(H),
                   keras.layers.Dense(2)),
             r"layers\[0\]: a Masking of mask_value=-inf; rnnfast's features are finite"),
            (model(keras.layers.LSTM(H, return_sequences=True), keras.layers.Masking(0.0),
                   keras.layers.LSTM(H), keras.layers.Dense(2)),
             r"layers\[1\]: a Masking at position 1; rnnfast reads a Masking layer only "
             r"first"),
            (model(keras.layers.LSTM(H), keras.layers.Dense(2, activation="relu")),
             r"a Dense with activation='relu'; expected 'softmax'"),
            (model(keras.layers.GRU(H, reset_after=False), keras.layers.Dense(2)),
             r"rnnfast's sequence models use reset_after=True"),
            (model(keras.layers.SimpleRNN(H, activation="relu"), keras.layers.Dense(2)),
             r"use nonlinearity='tanh'; the recurrent layers have nonlinearity='relu'"),
            (model(keras.layers.LSTM(H), keras.layers.Dense(1, activation="softmax")),
             r"a softmax Dense of 1 unit"),
            (model(keras.layers.Embedding(9, 4), keras.layers.LSTM(H, return_sequences=True),
                   inputs=ids), r"a Sequential with an Embedding and no Dense"),
            (model(keras.layers.LSTM(H, dtype="float64"), keras.layers.Dense(2)),
             r"the Dense's kernel are float32 and the recurrent layers' float64")]:
        with pytest.raises((ValueError, TypeError), match=message):
            from_keras(m)


def test_bad_exports_and_unbuilt_models_are_refused(keras):
    """to_keras names what it takes; a model whose params were replaced is
    refused by name, as io.save refuses it; an unbuilt Sequential (no
    keras.Input, never called) is refused, naming the layer."""
    from rnnfast.models import RnnLM, SequenceClassifier
    with pytest.raises(TypeError, match=r"layer: expected an rnnfast cell, Time layer, "
                                        r"network .*SequenceTagger or SequenceRegressor, "
                                        r"got RnnLM"):
        to_keras(RnnLM(9, hidden_size=H))
    model = SequenceClassifier(3, input_size=D, hidden_size=H, random_state=0)
    model.params[3] = np.zeros((H + 1, 3), np.float32)         # the output layer's W
    with pytest.raises(ValueError, match=r"layer: params\[3\] has shape \(6, 3\) and dtype "
                                         r"float32; params\[3\] of the rebuilt "
                                         r"SequenceClassifier has shape \(5, 3\)"):
        to_keras(model)
    model = SequenceClassifier(3, input_size=D, hidden_size=H, random_state=0)
    model.params[0][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"layer: params\[0\] contains NaN or Inf"):
        to_keras(model)
    unbuilt = keras.Sequential([keras.layers.LSTM(H), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"layer.layers\[0\]: the LSTM is not built yet"):
        from_keras(unbuilt)
