"""rnnfast.io: bit-exact round trips, atomic saves, refusal of bad files."""
import io as _io
import json
import os
import pickle
import re
import zipfile

import numpy as np
import pytest

import rnnfast
import rnnfast.io as rio


def assert_same_params(a, b):
    assert len(a.params) == len(b.params)
    for p, q in zip(a.params, b.params):
        assert p.dtype == q.dtype and p.shape == q.shape
        assert p.tobytes() == q.tobytes()          # bit-exact


NETWORKS = [(rnnfast.RNN, dict(nonlinearity="relu")), (rnnfast.LSTM, {}),
            (rnnfast.GRU, dict(reset_after=False)), (rnnfast.GRU, {}),
            (rnnfast.LSTM, dict(bias=False)), (rnnfast.GRU, dict(bias=False))]


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_network_copy_keeps_zero_biases_read_only(how):
    """A bias=False network runs its kernels with read-only zero biases;
    numpy's copies are writable, so a copy makes its own read-only ones."""
    import copy
    net = rnnfast.GRU(3, 4, num_layers=2, bidirectional=True, bias=False, random_state=0)
    twin = copy.deepcopy(net) if how == "deepcopy" else pickle.loads(pickle.dumps(net))
    assert len(twin._zero_biases) == 4
    assert all(not b.flags.writeable and not b.any() for b in twin._zero_biases)
    xs = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(twin.forward(xs)[0], net.forward(xs)[0])


def test_network_pickled_before_bias_false_still_runs():
    """A network pickled before bias=False existed (no `bias`, no zero
    biases in its state, e.g. in an estimator's joblib file) unpickles as a
    network with biases that runs as before."""
    net = rnnfast.LSTM(3, 4, num_layers=2, random_state=0)
    state = dict(net.__dict__)
    for name in ("bias", "_zero_biases", "_bias_grad_scratch", "_kernel_shapes"):
        del state[name]
    net.__getstate__ = lambda: state            # what the old version pickled
    old = pickle.loads(pickle.dumps(net))
    del net.__getstate__
    assert old.bias is True and "bias=False" not in repr(old)
    xs = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(old.forward(xs)[0], net.forward(xs)[0])
    np.testing.assert_array_equal(old.forward(xs, lengths=[5, 2])[0],
                                  net.forward(xs, lengths=[5, 2])[0])


@pytest.mark.parametrize("cls", ["SequenceClassifier", "SequenceRegressor"])
def test_sequence_model_pickled_before_masking_still_runs(tmp_path, cls):
    """A sequence model pickled before mask_zero and mask_value existed (no
    such attributes, nor config keys) unpickles as an unmasked model that
    predicts as before, saves, and loads with mask_zero=False and
    mask_value=None."""
    from rnnfast import models
    model = getattr(models, cls)(2, vocab_size=9, hidden_size=4, random_state=0).eval()
    state = dict(model.__dict__)
    for name in ("mask_zero", "mask_value", "_masking"):
        del state[name]
    state["_config"] = {k: v for k, v in state["_config"].items()
                        if k not in ("mask_zero", "mask_value")}
    model.__getstate__ = lambda: state            # what the old version pickled
    old = pickle.loads(pickle.dumps(model))
    del model.__getstate__
    assert "mask_zero" not in old.__dict__ and "mask_zero" not in old.get_config()
    ids = np.array([[3, 0, 4, 0], [0, 0, 5, 1]])
    np.testing.assert_array_equal(old.predict_scores(ids), model.predict_scores(ids))
    rio.save(old, tmp_path / "old.npz")
    back = rio.load(tmp_path / "old.npz")
    assert (back.mask_zero, back.mask_value) == (False, None)
    np.testing.assert_array_equal(back.predict_scores(ids), model.predict_scores(ids))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls,extra", NETWORKS)
def test_network_round_trip_is_bit_exact(tmp_path, cls, extra, dtype):
    net = cls(3, 5, num_layers=2, bidirectional=True, dropout=0.25, stateful=True,
              dtype=dtype, random_state=1, **extra)
    path = tmp_path / "net.npz"
    rio.save(net, path, metadata={"note": "x"})
    back = rio.load(path)
    assert type(back) is cls and back.dtype == np.dtype(dtype)
    assert rio.get_config(back) == rio.get_config(net)
    assert back.bias == extra.get("bias", True)
    assert_same_params(net, back)
    xs = np.random.default_rng(0).standard_normal((2, 4, 3))
    net.eval(), back.eval()
    np.testing.assert_array_equal(net.forward(xs)[0], back.forward(xs)[0])
    assert rio.read_metadata(path)["metadata"] == {"note": "x"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_model_round_trips_are_bit_exact(tmp_path, dtype):
    from rnnfast import models
    objs = [models.RnnLM(30, hidden_size=6, num_layers=2, tie_weights=True, dtype=dtype,
                         random_state=2)]
    for name in ("Seq2seq", "PeekySeq2seq", "AttentionSeq2seq"):
        if hasattr(models, name):
            objs.append(getattr(models, name)(11, 4, 6, dtype=dtype, random_state=3))
    if hasattr(models, "SequenceClassifier"):
        objs += [models.SequenceClassifier(3, input_size=4, hidden_size=5, cell="gru",
                                           bidirectional=True, dtype=dtype, random_state=4),
                 models.SequenceRegressor(2, input_size=3, hidden_size=4, num_layers=2,
                                          dtype=dtype, random_state=5),
                 models.SequenceTagger(4, vocab_size=20, hidden_size=5, cell="rnn",
                                       dtype=dtype, random_state=6),
                 models.SequenceClassifier(2, vocab_size=9, hidden_size=3, mask_zero=True,
                                           dtype=dtype, random_state=7),
                 models.SequenceRegressor(1, input_size=2, hidden_size=3, mask_value=-1,
                                          dtype=dtype, random_state=8)]
    assert len(objs) >= 4
    for obj in objs:
        path = tmp_path / (type(obj).__name__ + ".npz")
        rio.save(obj, path)
        back = rio.load(path)
        assert type(back) is type(obj)
        assert back.get_config() == obj.get_config()
        assert_same_params(obj, back)


# (class, gate blocks, options given, the options get_config names)
LAYERS = [(rnnfast.RNNCell, 1, dict(nonlinearity="relu"), dict(nonlinearity="relu")),
          (rnnfast.LSTMCell, 4, {}, {}),
          (rnnfast.GRUCell, 3, dict(reset_after=True), dict(reset_after=True)),
          (rnnfast.GRUCell, 3, {}, dict(reset_after=False)),
          (rnnfast.TimeRNN, 1, {}, dict(nonlinearity="tanh", stateful=False)),
          (rnnfast.TimeLSTM, 4, dict(stateful=True), dict(stateful=True)),
          (rnnfast.TimeGRU, 3, dict(reset_after=True),
           dict(reset_after=True, stateful=False)),
          (rnnfast.TimeGRU, 3, dict(stateful=True), dict(reset_after=False, stateful=True))]


def _layer(cls, gates, options, dtype, seed=0):
    rng = np.random.default_rng(seed)
    H = 5
    b_shape = (2, gates * H) if options.get("reset_after") else (gates * H,)
    return cls(rng.standard_normal((3, gates * H)).astype(dtype),
               rng.standard_normal((H, gates * H)).astype(dtype) / 3,
               rng.standard_normal(b_shape).astype(dtype), **options)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls,gates,options,config", LAYERS)
def test_cell_and_time_layer_round_trips_are_bit_exact(tmp_path, cls, gates, options, config,
                                                       dtype):
    """Cells and Time layers save and load as networks do: their sizes,
    dtype and options in the config, their params bit-exact; a stateful
    layer's carried state is not saved (PyTorch's state_dict holds none)."""
    layer = _layer(cls, gates, options, dtype)
    xs = np.random.default_rng(1).standard_normal((2, 4, 3)).astype(dtype)
    if cls.cell == "lstm" and not hasattr(layer, "stateful"):
        layer.forward(xs[:, 0], np.ones((2, 5), dtype), np.ones((2, 5), dtype))
    elif hasattr(layer, "stateful"):
        layer.forward(xs)                       # a stateful layer now carries a state
    path = tmp_path / "layer.npz"
    rio.save(layer, path)
    back = rio.load(path)
    assert type(back) is cls and back.dtype == np.dtype(dtype)
    assert back.get_config() == layer.get_config() == dict(
        input_size=3, hidden_size=5, dtype=np.dtype(dtype).name, **config)
    assert repr(back) == repr(layer)
    assert_same_params(layer, back)
    assert back.training and back._cache is None
    if hasattr(layer, "stateful"):
        assert back.h is None and back.c is None
        layer.reset_state()
        np.testing.assert_array_equal(back.forward(xs), layer.forward(xs))
    else:
        state = [np.full((2, 5), 0.5, dtype)] * (2 if cls.cell == "lstm" else 1)
        np.testing.assert_array_equal(back.forward(xs[:, 0], *state),
                                      layer.forward(xs[:, 0], *state))
    # and the file goes back into a layer of the same class and config
    params = [p.copy() for p in back.params]
    for p in back.params:
        p[...] = 0
    rio.save_checkpoint(path, layer)
    rio.load_checkpoint(path, model=back)
    assert all(np.array_equal(p, q) for p, q in zip(back.params, params))


def assert_bad_configs_refused(saved, tmp_path, changes, missing):
    """load refuses `saved` with each (config change, message) of
    `changes`, and with the config key `missing` deleted."""
    good = meta_of(saved)["config"]
    for change, message in changes:
        with pytest.raises(ValueError, match=message):
            rio.load(with_meta(saved, tmp_path / "bad.npz", config=dict(good, **change)))
    config = dict(good)
    del config[missing]
    with pytest.raises(ValueError, match=f"{meta_of(saved)['class'].split('.')[-1]} needs "
                                         f"{missing}"):
        rio.load(with_meta(saved, tmp_path / "bad.npz", config=config))


def test_layer_files_with_bad_configs_are_refused(tmp_path):
    """A layer file's config is checked as a network's: sizes that do not
    match the arrays, a missing or unknown key, a dtype that is not a
    float, a reset_after that is not a bool."""
    layer = _layer(rnnfast.TimeGRU, 3, dict(reset_after=True), np.float32)
    saved = tmp_path / "gru.npz"
    rio.save(layer, saved)
    assert_bad_configs_refused(saved, tmp_path, [
            (dict(hidden_size=4), r"param.000 has shape \(3, 15\).*\(3, 12\)"),
            (dict(reset_after=False), r"param.002 has shape \(2, 15\).*\(15,\)"),
            (dict(reset_after="yes"), "reset_after: expected True or False"),
            (dict(dtype="int64"), "dtype: expected float32 or float64"),
            (dict(dtype="float64"), "dtype float32.*dtype float64"),
            (dict(input_size=0), "input_size: expected an integer >= 1"),
            (dict(evil="__import__('os')"), "unexpected keyword argument 'evil'"),
            (dict(hidden_size=10 ** 12), "exceeds")], missing="hidden_size")
    with pytest.raises(TypeError, match="config: expected a dict, got list"):
        rnnfast.TimeGRU.from_config([1, 2])
    # a layer whose params were replaced by arrays of another shape is not saved
    layer.params[0] = np.zeros((4, 15), np.float32)
    with pytest.raises(ValueError, match="load would refuse"):
        rio.save(layer, tmp_path / "replaced.npz")
    assert not (tmp_path / "replaced.npz").exists()


# (class, its arrays, get_config's sizes)
PLAIN_LAYERS = [
    (rnnfast.layers.Affine, lambda rng, dt: (rng.standard_normal((3, 4)).astype(dt),
                                             rng.standard_normal(4).astype(dt)),
     dict(input_size=3, output_size=4)),
    (rnnfast.layers.TimeAffine, lambda rng, dt: (rng.standard_normal((2, 7)).astype(dt),
                                                 rng.standard_normal(7).astype(dt)),
     dict(input_size=2, output_size=7)),
    (rnnfast.layers.Embedding, lambda rng, dt: (rng.standard_normal((6, 3)).astype(dt),),
     dict(vocab_size=6, embedding_size=3)),
    (rnnfast.layers.TimeEmbedding, lambda rng, dt: (rng.standard_normal((9, 2)).astype(dt),),
     dict(vocab_size=9, embedding_size=2))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls,arrays,sizes", PLAIN_LAYERS,
                         ids=[c.__name__ for c, *_ in PLAIN_LAYERS])
def test_affine_and_embedding_layers_round_trip_bit_exact(tmp_path, cls, arrays, sizes,
                                                          dtype):
    """The fully connected and embedding layers save and load as the
    recurrent ones do: sizes and dtype in the config, params bit-exact,
    the same forward."""
    rng = np.random.default_rng(3)
    layer = cls(*arrays(rng, dtype))
    rio.save(layer, tmp_path / "layer.npz")
    back = rio.load(tmp_path / "layer.npz")
    assert type(back) is cls and back.get_config() == dict(sizes, dtype=np.dtype(dtype).name)
    assert meta_of(tmp_path / "layer.npz")["class"] == f"rnnfast.layers.{cls.__name__}"
    assert_same_params(layer, back)
    if "vocab_size" in sizes:
        x = rng.integers(0, sizes["vocab_size"], (2, 5) if cls.__name__.startswith("Time")
                         else (4,))
    else:
        x = rng.standard_normal((2, 5, 3, sizes["input_size"])[-(3 if cls.__name__.startswith(
            "Time") else 2):])
    np.testing.assert_array_equal(back.forward(x), layer.forward(x))


@pytest.mark.parametrize("cls,arrays,sizes", PLAIN_LAYERS,
                         ids=[c.__name__ for c, *_ in PLAIN_LAYERS])
def test_affine_and_embedding_pickled_before_get_config_still_save(tmp_path, cls, arrays,
                                                                  sizes):
    """A layer pickled before these layers had get_config (no `_built` in
    its state, e.g. inside an estimator's joblib file) saves with the
    sizes of its weight and loads bit-exact."""
    layer = cls(*arrays(np.random.default_rng(4), np.float32))
    state = dict(layer.__dict__)
    del state["_built"]
    layer.__getstate__ = lambda: state          # what the old version pickled
    old = pickle.loads(pickle.dumps(layer))
    del layer.__getstate__
    assert "_built" not in old.__dict__
    assert old.get_config() == dict(sizes, dtype="float32")
    rio.save(old, tmp_path / "old.npz")
    assert_same_params(layer, rio.load(tmp_path / "old.npz"))


def test_dropout_and_attention_layers_save_and_load(tmp_path):
    """TimeDropout keeps its ratio and int seed (a rebuilt layer draws the
    same masks from the start, as Keras's Dropout keeps its seed; a
    Generator's stream is not saved); TimeAttention has nothing to keep."""
    x = np.random.default_rng(5).standard_normal((2, 6, 3))
    path = tmp_path / "drop.npz"
    for random_state, seed in [(None, None), (np.random.default_rng(7), None),
                               (np.int64(7), 7), (7, 7)]:
        rio.save(rnnfast.layers.TimeDropout(0.4, random_state=random_state), path)
        assert meta_of(path)["class"] == "rnnfast.layers.TimeDropout"
        back = rio.load(path)
        assert type(back) is rnnfast.layers.TimeDropout and back.params == []
        assert back.get_config() == {"ratio": 0.4, "random_state": seed}
    # the last one saved was seeded 7: the same masks as a new layer seeded 7
    out = back.forward(x)
    assert 0 < np.count_nonzero(out) < out.size
    np.testing.assert_array_equal(out, rnnfast.layers.TimeDropout(0.4, 7).forward(x))
    with pytest.raises(ValueError, match=r"ratio: expected a probability in \[0, 1\), "
                                         r"got 1.5"):
        rio.load(with_meta(path, tmp_path / "bad.npz", config={"ratio": 1.5}))
    rio.save(rnnfast.layers.TimeAttention(), tmp_path / "att.npz")
    att = rio.load(tmp_path / "att.npz")
    assert type(att) is rnnfast.layers.TimeAttention and att.get_config() == {}
    np.testing.assert_array_equal(att.forward(x, x[:, :4]),
                                  rnnfast.layers.TimeAttention().forward(x, x[:, :4]))


def test_affine_and_embedding_files_with_bad_configs_are_refused(tmp_path):
    """Their configs are checked as the recurrent layers' are."""
    saved = tmp_path / "affine.npz"
    rio.save(rnnfast.layers.Affine(np.ones((3, 4)), np.zeros(4)), saved)
    assert_bad_configs_refused(saved, tmp_path, [
            (dict(output_size=5), r"param.000 has shape \(3, 4\).*\(3, 5\)"),
            (dict(dtype="int64"), "dtype: expected float32 or float64"),
            (dict(input_size=-1), "input_size: expected an integer >= 0"),
            (dict(output_size=2.0), "output_size: expected an integer >= 0"),
            (dict(evil="__import__('os')"), "unexpected keyword argument 'evil'")],
        missing="output_size")
    with pytest.raises(TypeError, match="config: expected a dict, got list"):
        rnnfast.layers.Embedding.from_config([1, 2])
    # params replaced by arrays of another shape or dtype: refused by name,
    # against the sizes the layer was built with, nothing written
    affine = rnnfast.layers.Affine(np.ones((3, 4)), np.zeros(4))
    affine.params[0] = np.ones((2, 3, 4))
    embedding = rnnfast.layers.Embedding(np.ones((3, 4)))
    embedding.params[0] = np.ones((5, 4), np.float32)
    for layer, message in [
            (affine, r"params\[0\] has shape \(2, 3, 4\) and dtype float64; params\[0\] of "
                     r"the rebuilt rnnfast.layers.Affine has shape \(3, 4\)"),
            (embedding, r"params\[0\] has shape \(5, 4\) and dtype float32; params\[0\] "
                        r"of the rebuilt rnnfast.layers.Embedding has shape \(3, 4\) and "
                        r"dtype float64")]:
        with pytest.raises(ValueError, match=message):
            rio.save(layer, tmp_path / "replaced.npz")
        assert not (tmp_path / "replaced.npz").exists()
    with pytest.raises(ValueError, match="vocab_size: expected an integer >= 1, got 0"):
        rnnfast.layers.Embedding.from_config(dict(vocab_size=0, embedding_size=2,
                                                  dtype="float32"))
    # a layer of 0 outputs stores no values: a config size above the values
    # stored is what load refuses (a file asking for a huge allocation), so
    # save refuses it first, writing nothing
    with pytest.raises(ValueError, match=r"config input_size=3 exceeds the 0 values it "
                                         r"stores \(load would refuse the file"):
        rio.save(rnnfast.layers.Affine(np.ones((3, 0)), np.zeros(0)), tmp_path / "empty.npz")
    assert not (tmp_path / "empty.npz").exists()


class Standin:
    """A tiny registered model: y = x @ W + b, squared error."""

    def __init__(self, n_in=2, n_out=1, dtype="float64"):
        self.config = dict(n_in=n_in, n_out=n_out, dtype=dtype)
        self.params = [np.zeros((n_in, n_out), dtype), np.zeros(n_out, dtype)]
        self.grads = [np.zeros_like(p) for p in self.params]

    def get_config(self):
        return dict(self.config)


rio.register(Standin, "tests.Standin")


def test_atomic_save_keeps_the_old_file_when_saving_fails(tmp_path, monkeypatch):
    net = rnnfast.LSTM(2, 3, random_state=0)
    path = tmp_path / "m.npz"
    rio.save(net, path)
    before = path.read_bytes()
    calls = []
    real = rio._write_member

    def failing(zf, name, array):
        calls.append(name)
        if len(calls) == 3:                 # metadata and one array are written
            raise OSError("disk full (simulated)")
        real(zf, name, array)
    monkeypatch.setattr(rio, "_write_member", failing)
    other = rnnfast.LSTM(2, 3, random_state=1)
    with pytest.raises(OSError, match="disk full"):
        rio.save(other, path)
    assert len(calls) == 3
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]           # no temporary file left
    assert_same_params(rio.load(path), net)


# ------------------------------------------------------------- bad files
@pytest.fixture
def saved(tmp_path):
    net = rnnfast.GRU(2, 3, random_state=0)
    path = tmp_path / "ok.npz"
    rio.save(net, path)
    return path


def write_zip(path, members):
    """members: name -> bytes of a whole .npy member."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name + ".npy", blob)


def npy_bytes(array, allow_pickle=False):
    buf = _io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def members_of(path):
    with zipfile.ZipFile(path) as zf:
        return {n[:-4]: zf.read(n) for n in zf.namelist()}


def meta_of(path):
    return rio.read_metadata(path)


def with_meta(path, out, **changes):
    members = members_of(path)
    meta = meta_of(path)
    meta.update(changes)
    members[rio.META_KEY] = npy_bytes(np.frombuffer(json.dumps(meta).encode(), np.uint8))
    write_zip(out, members)
    return out


def test_truncated_file_is_refused(saved, tmp_path):
    data = saved.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 30):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="not a valid rnnfast file"):
            rio.load(bad)


def test_corrupted_bytes_are_refused(saved, tmp_path):
    data = bytearray(saved.read_bytes())
    weights = rio.load(saved).params[1].tobytes()
    pos = data.index(weights) + 5                 # inside the stored Wh
    data[pos] ^= 0xFF
    bad = tmp_path / "flip.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="CRC"):
        rio.load(bad)


def test_wrong_version_class_and_shapes_are_refused(saved, tmp_path):
    with pytest.raises(ValueError, match="newer rnnfast"):
        rio.load(with_meta(saved, tmp_path / "v.npz", format_version=2))
    with pytest.raises(ValueError, match="unknown class 'os.system'"):
        rio.load(with_meta(saved, tmp_path / "c.npz", **{"class": "os.system"}))
    config = dict(meta_of(saved)["config"], hidden_size=4)
    with pytest.raises(ValueError, match=r"param.000 has shape \(2, 9\).*\(2, 12\)"):
        rio.load(with_meta(saved, tmp_path / "s.npz", config=config))
    config = dict(meta_of(saved)["config"], hidden_size=10 ** 12)
    with pytest.raises(ValueError, match="exceeds"):
        rio.load(with_meta(saved, tmp_path / "big.npz", config=config))
    config = dict(meta_of(saved)["config"], evil="__import__('os')")
    with pytest.raises(ValueError, match="refused its config"):
        rio.load(with_meta(saved, tmp_path / "kw.npz", config=config))


def test_float64_file_does_not_load_into_a_float32_network(saved, tmp_path):
    members = members_of(saved)
    meta = meta_of(saved)
    arr = np.load(_io.BytesIO(members["param.000"])).astype(np.float64)
    members["param.000"] = npy_bytes(arr)
    meta["arrays"][0]["dtype"] = "float64"
    members[rio.META_KEY] = npy_bytes(np.frombuffer(json.dumps(meta).encode(), np.uint8))
    write_zip(tmp_path / "d.npz", members)
    with pytest.raises(ValueError, match="dtype float64.*dtype float32"):
        rio.load(tmp_path / "d.npz")


def test_hostile_files_are_refused_and_nothing_runs(saved, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    # a plain pickle
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="not a zip"):
        rio.load(p)
    # an object array (pickled) as a parameter inside a valid-looking archive
    members = members_of(saved)
    obj = np.empty(6, dtype=object)
    obj[0] = Evil()
    members["param.000"] = npy_bytes(obj, allow_pickle=True)
    write_zip(tmp_path / "obj.npz", members)
    with pytest.raises(ValueError, match="dtype object"):
        rio.load(tmp_path / "obj.npz")
    assert not marker.exists()
    # an absurd shape claimed in a header
    members = members_of(saved)
    header = _io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (2 ** 40, 2 ** 20)})
    members["param.001"] = header.getvalue() + b"\0" * 64
    write_zip(tmp_path / "shape.npz", members)
    with pytest.raises(ValueError, match="claims shape"):
        rio.load(tmp_path / "shape.npz")
    # metadata that is not JSON, and an archive without metadata
    members = members_of(saved)
    members[rio.META_KEY] = npy_bytes(np.frombuffer(b"\xff{not json", np.uint8))
    write_zip(tmp_path / "json.npz", members)
    with pytest.raises(ValueError, match="JSON"):
        rio.load(tmp_path / "json.npz")
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="metadata"):
        rio.load(tmp_path / "plain.npz")


def test_registered_standin_and_refusals_on_save(tmp_path):
    m = Standin(3, 2)
    m.params[0][...] = np.arange(6).reshape(3, 2) / 7
    rio.save(m, tmp_path / "s.npz")
    back = rio.load(tmp_path / "s.npz")
    assert isinstance(back, Standin) and back.get_config() == m.get_config()
    assert_same_params(m, back)

    class Unregistered(Standin):
        pass
    with pytest.raises(TypeError, match="not a registered"):
        rio.save(Unregistered(), tmp_path / "u.npz")
    with pytest.raises(TypeError, match="cannot be stored as JSON"):
        rio.save(m, tmp_path / "j.npz", metadata={"f": object()})
    assert not (tmp_path / "j.npz").exists()


def test_checkpoint_round_trip_with_optimizer(tmp_path):
    from rnnfast import optim
    net = rnnfast.LSTM(2, 3, random_state=0)
    opt = optim.Adam(lr=0.01)
    rng = np.random.default_rng(0)
    for g in net.grads:
        g[...] = rng.standard_normal(g.shape)
    opt.update(net.params, net.grads)
    rio.save_checkpoint(tmp_path / "c.npz", net, opt, state={"epoch": 3})
    net2 = rnnfast.LSTM(2, 3, random_state=5)
    opt2 = optim.Adam(lr=0.5)
    out = rio.load_checkpoint(tmp_path / "c.npz", net2, opt2)
    assert out["state"] == {"epoch": 3} and out["model"] is net2
    assert_same_params(net, net2)
    assert opt2.lr == 0.01 and opt2.t == 1
    for a, b in zip(opt.state, opt2.state):
        for x, y in zip(a, b):
            assert x.tobytes() == y.tobytes()
    # a checkpoint is also a model file
    assert_same_params(rio.load(tmp_path / "c.npz"), net)
    # the settings that differ, by name, on both sides
    with pytest.raises(ValueError, match=r"c\.npz' was written from a rnnfast\.LSTM with "
                       r"hidden_size=3; the model given has hidden_size=4 \(resume"):
        rio.load_checkpoint(tmp_path / "c.npz", rnnfast.LSTM(2, 4))
    with pytest.raises(ValueError, match=r"with dtype='float32', hidden_size=3, "
                       r"num_layers=1; the model given has dtype='float64', hidden_size=5, "
                       r"num_layers=2 \("):
        rio.load_checkpoint(tmp_path / "c.npz", rnnfast.LSTM(2, 5, 2, dtype=np.float64))
    # another class: both whole configs
    with pytest.raises(ValueError, match=r"a rnnfast\.LSTM with config \{.*\}; got a "
                       r"rnnfast\.GRU with config \{.*'reset_after': True"):
        rio.load_checkpoint(tmp_path / "c.npz", rnnfast.GRU(2, 3))
    with pytest.raises(ValueError, match="Adam"):
        rio.load_checkpoint(tmp_path / "c.npz", net2, optim.SGD())


# ------------------------------------------- save refuses what load refuses
SPOILED = {
    "nan-weight": (lambda net: net.params[0].__setitem__((0, 0), np.nan),
                   r"params\[0\] contains NaN or Inf"),
    "inf-bias": (lambda net: net.params[2].__setitem__(0, -np.inf),
                 r"params\[2\] contains NaN or Inf"),
    "float64-copy": (lambda net: net.params.__setitem__(1, net.params[1].astype(np.float64)),
                     r"params\[1\] has shape \(4, 16\) and dtype float64; params\[1\] of "
                     r"the rebuilt rnnfast.LSTM has shape \(4, 16\) and dtype float32"),
    "wrong-shape": (lambda net: net.params.__setitem__(1, np.zeros((5, 16), np.float32)),
                    r"params\[1\] has shape \(5, 16\) and dtype float32; params\[1\] of "
                    r"the rebuilt rnnfast.LSTM has shape \(4, 16\)"),
    "extra-param": (lambda net: net.params.append(np.zeros(3, np.float32)),
                    r"params has 4 arrays; a rnnfast.LSTM with this config has 3"),
}


@pytest.mark.parametrize("saver", ["save", "save_checkpoint"])
@pytest.mark.parametrize("kind", sorted(SPOILED))
def test_save_refuses_params_load_would_refuse_and_keeps_the_old_file(tmp_path, kind, saver):
    from rnnfast import optim
    path = tmp_path / "m.npz"

    def write(net):
        if saver == "save":
            rio.save(net, path)
        else:
            rio.save_checkpoint(path, net, optim.SGD(), state={"epoch": 1})
    net = rnnfast.LSTM(3, 4, random_state=0)
    write(net)
    before = path.read_bytes()
    spoil, message = SPOILED[kind]
    spoil(net)
    with pytest.raises(ValueError, match=f"^obj: {message}.*nothing was written"):
        write(net)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]            # no temporary file either
    rio.load(path)


def test_save_refuses_configs_and_metadata_load_would_refuse(tmp_path):
    from rnnfast import optim
    m = Standin(2, 1)
    m.config["num_rows"] = 10 ** 6                      # load's guard on config sizes
    with pytest.raises(ValueError, match=r"obj: config num_rows=1000000 exceeds the 3 values"):
        rio.save(m, tmp_path / "a.npz")
    m = Standin(2, 1)
    m.config["colour"] = "red"                          # Standin(**config) refuses it
    refused = r"obj: tests.Standin refuses its own config .*colour"
    with pytest.raises(ValueError, match=refused):
        rio.save(m, tmp_path / "b.npz")
    net = rnnfast.GRU(2, 3, random_state=0)
    with pytest.raises(TypeError, match="metadata: expected a dict, got list"):
        rio.save(net, tmp_path / "c.npz", metadata=["not", "a", "dict"])
    opt = optim.Adam()
    opt.update(net.params, [np.zeros_like(p) for p in net.params])
    opt.state[1] = tuple(a.astype(np.float16) for a in opt.state[1])
    with pytest.raises(ValueError, match=r"optimizer: state\[1\]\[0\] holds dtype float16"):
        rio.save_checkpoint(tmp_path / "d.npz", net, opt)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("saver", ["save", "save_checkpoint"])
def test_save_refuses_files_over_the_size_limits_load_applies(tmp_path, monkeypatch, saver):
    """At the exact size limits `load` applies, `save` accepts what load
    accepts and refuses, writing nothing, what load refuses."""
    from rnnfast import optim
    path = tmp_path / "m.npz"
    net = rnnfast.LSTM(3, 4, random_state=0)
    opt = optim.Adam()
    opt.update(net.params, [np.ones_like(p) for p in net.params])

    def write(**meta):
        if saver == "save":
            rio.save(net, path, metadata=meta)
        else:
            rio.save_checkpoint(path, net, opt, state={"epoch": 1}, metadata=meta,
                                extra_arrays=[np.ones(5)])
    write(note="x" * 1000)
    before = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        total = sum(i.file_size for i in zf.infolist())
    with np.load(path) as npz:
        json_bytes = len(npz[rio.META_KEY])             # the metadata's JSON, no header
    limits = [("MAX_TOTAL_BYTES", total, "claim more than",
               rf"^obj: the file would hold {total} bytes"),
              ("MAX_META_BYTES", json_bytes, "metadata member has",
               rf"^metadata: its JSON takes {json_bytes} bytes")]
    for attr, size, load_refusal, save_refusal in limits:
        monkeypatch.setattr(rio, attr, size)            # exactly the file's size: accepted
        write(note="x" * 1000)
        rio.load(path)
        monkeypatch.setattr(rio, attr, size - 1)
        with pytest.raises(ValueError, match=load_refusal):
            rio.load(path)
        with pytest.raises(ValueError, match=save_refusal + ".*nothing was written"):
            write(note="x" * 1000)
        monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]


def test_repeated_saves_rebuild_the_class_once(tmp_path, monkeypatch):
    """The params are checked against the object load would rebuild; a
    checkpoint every epoch must not build that object every time."""
    built = []
    real = rio._instantiate
    monkeypatch.setattr(rio, "_instantiate", lambda cls, config: built.append(cls) or
                        real(cls, config))
    monkeypatch.setattr(rio, "_REBUILT_SPECS", {})
    net = rnnfast.LSTM(3, 5, random_state=0)
    for epoch in range(3):
        net.params[0][0, 0] = epoch
        rio.save_checkpoint(tmp_path / "c.npz", net, state={"epoch": epoch})
    assert built == [rnnfast.LSTM]
    assert_same_params(rio.load(tmp_path / "c.npz"), net)   # load always rebuilds
    assert built == [rnnfast.LSTM, rnnfast.LSTM]


# ------------------------------------------------------------------ paths
def test_paths_may_be_str_bytes_or_pathlike(tmp_path):
    net = rnnfast.LSTM(2, 3, random_state=0)
    as_bytes = os.fsencode(tmp_path / "b.npz")
    rio.save(net, as_bytes)
    assert_same_params(rio.load(as_bytes), net)
    assert_same_params(rio.load(tmp_path / "b.npz"), net)
    rio.save_checkpoint(as_bytes, net, state={"epoch": 2})
    assert rio.load_checkpoint(as_bytes)["state"] == {"epoch": 2}
    assert rio.read_metadata(as_bytes)["class"] == "rnnfast.LSTM"
    with pytest.raises(TypeError, match="path: expected str, bytes or os.PathLike, got int"):
        rio.save(net, 3)
    with pytest.raises(TypeError, match="path: expected str, bytes .* got BytesIO"):
        rio.save(net, _io.BytesIO())
    assert os.listdir(tmp_path) == ["b.npz"]


def _bad_paths(tmp_path):
    """(path, exception type, message) a save must refuse before writing."""
    (tmp_path / "models").mkdir()
    (tmp_path / "a-file").write_bytes(b"x")
    models = str(tmp_path / "models")
    is_dir = re.escape(f"path: {models!r} is a directory")
    missing = str(tmp_path / "missing" / "m.npz")
    return [
        (tmp_path / "models", IsADirectoryError, is_dir),
        (os.fsencode(models), IsADirectoryError, is_dir),
        (str(tmp_path / "new") + os.sep, IsADirectoryError, "ends with a separator"),
        ("", ValueError, "path: got an empty path ''"),
        (missing, FileNotFoundError, re.escape(f"the directory of {missing!r} does not exist")),
        (tmp_path / "a-file" / "m.npz", NotADirectoryError, "is not a directory"),
    ]


def test_save_refuses_bad_paths_naming_them_and_writes_nothing(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)               # the empty path once wrote beside the cwd
    net = rnnfast.LSTM(2, 3, random_state=0)
    for path, error, message in _bad_paths(tmp_path):
        for save in (lambda: rio.save(net, path), lambda: rio.save_checkpoint(path, net)):
            with pytest.raises(error, match=message) as info:
                save()
            assert ".tmp" not in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["a-file", "models", "work"]
    assert os.listdir(tmp_path / "models") == [] and os.listdir(work) == []


def test_check_writable_path_raises_what_save_would_and_writes_nothing(tmp_path):
    for path, error, message in _bad_paths(tmp_path):
        with pytest.raises(error, match=message):
            rio.check_writable_path(path)
    assert sorted(os.listdir(tmp_path)) == ["a-file", "models"]
    target = tmp_path / "models" / "m.npz"
    assert rio.check_writable_path(target) == os.path.realpath(target)
    assert not target.exists()
    if hasattr(os, "symlink"):
        os.symlink(target, tmp_path / "latest.npz")
        assert rio.check_writable_path(tmp_path / "latest.npz") == os.path.realpath(target)
    if os.name == "posix" and os.geteuid() != 0:        # root may write anywhere
        os.chmod(tmp_path / "models", 0o500)
        try:
            with pytest.raises(PermissionError, match="cannot create files"):
                rio.check_writable_path(target)
        finally:
            os.chmod(tmp_path / "models", 0o700)


@pytest.mark.skipif(not hasattr(os, "fork") or os.geteuid() != 0,
                    reason="needs root to drop to another user in a child")
def test_unwritable_directory_is_refused_for_an_ordinary_user():
    """Root may write anywhere, so the test above cannot see the permission
    check when run as root: a forked child drops to user nobody and tries a
    directory it may enter but not write (0755, owned by root)."""
    import tempfile
    directory = tempfile.mkdtemp(prefix="rnnfast-ro-", dir="/tmp")
    os.chmod(directory, 0o755)
    target = os.path.join(directory, "m.npz")
    net = rnnfast.GRU(2, 3, random_state=0)
    try:
        pid = os.fork()
        if pid == 0:                                    # the child: exit 0 on success
            code = 1
            try:
                os.setgid(65534)
                os.setuid(65534)
                for attempt in (lambda: rio.check_writable_path(target),
                                lambda: rio.save(net, target)):
                    try:
                        attempt()
                    except PermissionError as exc:
                        assert "cannot create files in the directory of" in str(exc), exc
                        assert repr(target) in str(exc), exc
                    else:
                        raise AssertionError("no PermissionError")
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        assert os.listdir(directory) == []
    finally:
        os.rmdir(directory)


def test_loading_a_directory_says_it_is_a_directory(tmp_path):
    for read in (rio.load, rio.read_metadata, rio.load_checkpoint):
        with pytest.raises(IsADirectoryError,
                           match=re.escape(f"path: {str(tmp_path)!r} is a directory")):
            read(tmp_path)


def test_checkpoint_extra_arrays_round_trip_and_dtype_check(tmp_path):
    net = rnnfast.LSTM(3, 4, random_state=0)
    extra = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(4, np.float64)]
    path = tmp_path / "ck.npz"
    rio.save_checkpoint(path, net, state={"epoch": 1}, extra_arrays=extra)
    back = rio.load_checkpoint(path)["extra_arrays"]
    assert [a.dtype for a in back] == [np.float32, np.float64]
    for a, b in zip(extra, back):
        np.testing.assert_array_equal(a, b)
    assert rio.load_checkpoint(path)["model"].params[0].shape == net.params[0].shape
    assert rio.load(path).params[0].tobytes() == net.params[0].tobytes()   # still a model
    rio.save_checkpoint(tmp_path / "none.npz", net)
    assert rio.load_checkpoint(tmp_path / "none.npz")["extra_arrays"] == []
    with pytest.raises(TypeError, match=r"extra_arrays\[0\]: expected float32 or float64"):
        rio.save_checkpoint(tmp_path / "bad.npz", net, extra_arrays=[np.zeros(2, np.int64)])
    for bad in (5, np.zeros(3)):                        # one array is not a list of them
        with pytest.raises(TypeError, match="extra_arrays: expected a list of arrays"):
            rio.save_checkpoint(tmp_path / "bad.npz", net, extra_arrays=bad)
    assert not (tmp_path / "bad.npz").exists()
