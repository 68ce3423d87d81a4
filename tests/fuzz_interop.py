"""A differential fuzzer of rnnfast.interop's converters, against Keras 3
(on PyTorch's backend) and PyTorch themselves.

tests/test_interop_keras.py and tests/test_parity_torch.py convert a few
fixed objects of 4 to 6 units.  Here every case draws a cell (RNN tanh or
ReLU, LSTM, GRU reset_after False or True), float32 or float64, input and
hidden sizes from small edge values (1 to 33), 1 to 5 sequences of 1 to
7 steps, and what to convert: a cell (one step from a random state), a
Time layer, a network (1 to 3 layers, one or two directions, biases or
not, dropout 0.3 between layers in some) or a sequence model
(SequenceClassifier of 2 to 5 classes, SequenceTagger of 2 to 5 tags
or SequenceRegressor of 1 to 4 outputs, on float features or on token ids
through an embedding, dropout or not; mask_zero (ids) or mask_value
(features) in some, with padding anywhere);
its weights as its constructor draws them, or 2 / sqrt(H) wide, or
U(-3, 3) (the gates saturate).  Then, in evaluation mode:

- to_keras: the Keras object (a cell, a SimpleRNN / LSTM / GRU layer,
  a Sequential) computes the object's outputs (a cell's h' and c', a
  Time layer's or network's hs, a classifier's or tagger's
  predict_proba, a regressor's predict_scores) on random inputs, within float32's
  rounding: in float64 too (within 1e-6), since Keras on PyTorch's
  backend multiplies float64 matrices in float32;
- from_keras of that Keras object gives the object back: the same class,
  config and params, bit for bit, and bitwise the same outputs;
- to_torch (cells, Time layers and networks; a sequence model has no
  PyTorch converter): the module, in eval() and no_grad(), computes the
  same outputs (a network's final states too; float64 within 1e-10), its
  state_dict is to_torch_state_dict's, and from_torch of it gives the
  object's weights back bit for bit (a Time layer's as a one-layer
  network's) and the same outputs; a GRU with reset_after=False, which
  PyTorch has not, must be refused by to_torch and to_torch_state_dict
  with a ValueError.

Every tolerance is widened to 10 times what float32's rounding moves
rnnfast's own outputs by in the case (the object run in the other dtype,
and in float64 with its params and inputs off by a few units of float32's
roundoff): with weights of U(-3, 3) an unsaturated unit multiplies an
error by up to ~3 sqrt(H) a step and a layer, so that a few cases are
all but chaotic.  Where weights are as constructors draw them, that
allowance stays at float32's level.

    python tests/fuzz_interop.py [--cases N] [--minutes M] [--seed S]

prints one line a failing case, with the seed that replays it alone
(`--seed S --cases 1`), and exits 1 if any failed.  tests/
test_fuzz_interop.py runs a few fixed seeds in the suite.
"""
import os
import sys
import warnings

os.environ.setdefault("KERAS_BACKEND", "torch")     # before keras is imported

import numpy as np
import keras  # noqa: E402
import torch  # noqa: E402

import rnnfast  # noqa: E402
from rnnfast import interop  # noqa: E402
from rnnfast._layout import N_GATES, bias_shape  # noqa: E402
from rnnfast.io import get_config  # noqa: E402
from rnnfast.models import SequenceClassifier, SequenceRegressor, SequenceTagger  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fuzz_networks import close, fuzz_main  # noqa: E402

CELLS = [("rnn", {"nonlinearity": "tanh"}), ("rnn", {"nonlinearity": "relu"}),
         ("lstm", {}), ("gru", {"reset_after": False}), ("gru", {"reset_after": True})]
# rnnfast's sequence models build their networks with the defaults (tanh,
# GRU reset_after=True, biases), and interop._model_from_keras refuses
# any other (documented): a model case takes its cell's defaults.
MODEL_OPTIONS = {"rnn": {"nonlinearity": "tanh"}, "lstm": {}, "gru": {"reset_after": True}}
TARGETS = ("cell", "time", "network", "model")
SIZES = [1, 2, 3, 7, 8, 9, 16, 17, 31, 33]
VOCABS = [1, 2, 5, 17, 40]
NETWORKS = {"rnn": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU}
TIME_LAYERS = {"rnn": rnnfast.TimeRNN, "lstm": rnnfast.TimeLSTM, "gru": rnnfast.TimeGRU}
CELL_LAYERS = {"rnn": rnnfast.RNNCell, "lstm": rnnfast.LSTMCell, "gru": rnnfast.GRUCell}
KERAS_NAMES = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}
HEADS = {"classifier": SequenceClassifier, "regressor": SequenceRegressor,
         "tagger": SequenceTagger}
# close() (fuzz_networks) scales atol by max(1, the largest |reference|),
# and run_case widens it to ROUNDING_FACTOR times what float32 rounding
# moves rnnfast's own outputs by in this case (see rounding_of): with
# weights of U(-3, 3) an unsaturated unit multiplies an error by up to
# ~3 sqrt(H) a step and a layer, and float32's rounding alone grew to
# 7e-4 in a tanh network of 3 layers (seed 49).  Without the allowance
# about one case in 150 went past the fixed tolerances, all of them with
# U(-3, 3) weights; float32's rounding moved rnnfast's own outputs by up
# to 2e-3 of the largest (3,000 seeds).  A misplaced gate block,
# sign or bias is off by far more wherever the outputs are not chaotic.
TOL_TORCH = {np.dtype(np.float32): dict(rtol=2e-4, atol=2e-5),
             np.dtype(np.float64): dict(rtol=1e-10, atol=1e-10)}
# Keras 3 on PyTorch's backend multiplies float64 matrices in float32:
# keras.ops.matmul casts both to keras.backend.result_type("float64",
# "float64"), which is "float32" outside TensorFlow (as JAX without x64),
# and the result back to float64.  Its float64 layers are float32 ones
# in that respect (tests/test_interop_keras.py: 1.3e-7 after 6 steps),
# hence 1e-6 and the float32 rounding allowance in float64 too.
TOL_KERAS = {np.dtype(np.float32): dict(rtol=2e-4, atol=2e-5),
             np.dtype(np.float64): dict(rtol=1e-6, atol=1e-6)}
ROUNDING_FACTOR = 10
ROUNDING_DRAWS = 4
# what float32's rounding becomes in float64 (for torch's float64)
F64_OVER_F32 = 2.0 ** -29


def draw_case(rng):
    """One object to convert: what it is, its cell and options, sizes,
    dtype and weights, from rng."""
    target = TARGETS[rng.integers(len(TARGETS))]
    cell, opts = CELLS[rng.integers(len(CELLS))]
    if target == "model":
        opts = MODEL_OPTIONS[cell]
    case = dict(target=target, cell=cell, opts=dict(opts),
                dtype=np.dtype(np.float32 if rng.random() < 0.6 else np.float64),
                D=int(rng.choice(SIZES)), H=int(rng.choice(SIZES)),
                N=int(rng.integers(1, 6)), T=int(rng.integers(1, 8)),
                layers=1, bidirectional=False, bias=True, dropout=0.0,
                # "init": the constructor's (PyTorch's U(-1/sqrt(H), 1/sqrt(H)));
                # "wide": U(-2/sqrt(H), 2/sqrt(H)); "saturating": U(-3, 3)
                weights=["init", "wide", "saturating"][rng.choice(3, p=[0.4, 0.3, 0.3])])
    if target in ("network", "model"):
        case["layers"] = int(rng.integers(1, 4))
        case["bidirectional"] = bool(rng.random() < 0.5)
        # a model drops out before its output layer too, so with one layer
        if (case["layers"] > 1 or target == "model") and rng.random() < 0.4:
            case["dropout"] = 0.3
    if target == "network":
        case["bias"] = bool(rng.random() < 0.75)
    if target == "model":
        case["head"] = ("classifier", "regressor", "tagger")[rng.integers(3)]
        case["n_out"] = int(rng.integers(1, 5) if case["head"] == "regressor"
                            else rng.integers(2, 6))
        # token ids through an embedding (of D columns) or float features
        case["vocab"] = int(rng.choice(VOCABS)) if rng.random() < 0.5 else None
        # Keras's Embedding(mask_zero=True) or Masking(v): the model's
        # mask_zero (ids) or mask_value (features)
        masked = bool(rng.random() < 0.5)
        case["mask_zero"] = bool(masked and case["vocab"] is not None)
        case["mask_value"] = (float(rng.choice([0.0, -1.0, 0.5]))
                              if masked and case["vocab"] is None else None)
    return case


def _scale(case):
    H = case["H"]
    return {"init": 1 / np.sqrt(H), "wide": 2 / np.sqrt(H), "saturating": 3.0}[case["weights"]]


def build(case, rng):
    """The rnnfast object of a case, its weights drawn from rng."""
    cell, dt, D, H, opts = (case[k] for k in ("cell", "dtype", "D", "H", "opts"))
    s = _scale(case)
    if case["target"] in ("cell", "time"):
        G = N_GATES[cell] * H
        shapes = [(D, G), (H, G), bias_shape(cell, H, opts.get("reset_after", False))]
        Wx, Wh, b = (rng.uniform(-s, s, shape).astype(dt) for shape in shapes)
        cls = CELL_LAYERS[cell] if case["target"] == "cell" else TIME_LAYERS[cell]
        return cls(Wx, Wh, b, **opts)
    seed = int(rng.integers(2 ** 31))
    if case["target"] == "network":
        obj = NETWORKS[cell](D, H, num_layers=case["layers"],
                             bidirectional=case["bidirectional"], dropout=case["dropout"],
                             bias=case["bias"], dtype=dt, random_state=seed, **opts)
        params = obj.params
    else:
        cls = HEADS[case["head"]]
        inputs = (dict(input_size=D) if case["vocab"] is None
                  else dict(vocab_size=case["vocab"], embedding_size=D))
        if case["mask_zero"]:
            inputs["mask_zero"] = True
        if case["mask_value"] is not None:
            inputs["mask_value"] = case["mask_value"]
        obj = cls(case["n_out"], cell=cell, hidden_size=H, num_layers=case["layers"],
                  bidirectional=case["bidirectional"], dropout=case["dropout"], dtype=dt,
                  random_state=seed, **inputs)
        params = obj.network.params
        if case["weights"] != "init":       # the output layer's (and its bias) too
            for p in obj.affine.params:
                p[...] = rng.uniform(-s, s, p.shape)
    if case["weights"] != "init":
        for p in params:
            p[...] = rng.uniform(-s, s, p.shape)
    return obj.eval()


def draw_inputs(case, rng):
    """(x, h, c) of a cell's step, xs (N, T, D) of a Time layer or network,
    X (features or token ids) of a model."""
    N, T, D, H, dt = (case[k] for k in ("N", "T", "D", "H", "dtype"))
    if case["target"] == "cell":
        return tuple(rng.standard_normal((N, n)).astype(dt) for n in (D, H, H))
    if case["target"] == "model" and case["vocab"] is not None:
        ids = rng.integers(0, case["vocab"], (N, T)).astype(np.int64)
        if case["mask_zero"]:           # padding anywhere, rows of padding only too
            ids[rng.random((N, T)) < rng.choice([0.2, 0.5, 0.9])] = 0
        return ids
    xs = rng.standard_normal((N, T, D)).astype(dt)
    if case["target"] == "model" and case["mask_value"] is not None:
        # masked steps anywhere, rows of them only too, and steps with one
        # feature at the mask value (read, not masked)
        xs[rng.random((N, T)) < rng.choice([0.2, 0.5, 0.9])] = case["mask_value"]
        xs[rng.random((N, T)) < 0.2, 0] = case["mask_value"]
    return xs


def ours(case, obj, inputs, final=True):
    """{name: array} of what rnnfast's object computes in evaluation mode
    (final: a network's final states too)."""
    target = case["target"]
    if target == "cell":
        x, h, c = inputs
        if case["cell"] == "lstm":
            h1, c1 = obj.eval().forward(x, h.copy(), c.copy())
            return {"h_next": h1, "c_next": c1}
        return {"h_next": obj.eval().forward(x, h.copy())}
    if target == "time":
        return {"hs": obj.eval().forward(inputs)}
    if target == "network":
        hs, state = obj.eval().forward(inputs)
        out = {"hs": hs}
        if final:
            out["h_n"], out["c_n"] = state if case["cell"] == "lstm" else (state, None)
            if out["c_n"] is None:
                del out["c_n"]
        return out
    if case["head"] != "regressor":
        return {"predict_proba": obj.predict_proba(inputs)}
    return {"predict_scores": obj.predict_scores(inputs)}


def twin(case, obj, dtype):
    """obj in another dtype: its params cast (exactly to float64; rounded
    to float32), the same config otherwise."""
    if case["target"] in ("cell", "time"):
        cls = CELL_LAYERS[case["cell"]] if case["target"] == "cell" else TIME_LAYERS[case["cell"]]
        return cls(*(p.astype(dtype) for p in obj.params), **case["opts"])
    config = get_config(obj)
    config["dtype"] = np.dtype(dtype).name
    other = (NETWORKS[case["cell"]] if case["target"] == "network" else type(obj))(**config)
    for p, q in zip(other.params, obj.params):
        p[...] = q
    return other.eval()


def rounding_of(case, obj, inputs, want, rng):
    """{name: how far float32's rounding can move rnnfast's output `name`}:
    the largest change, from the outputs of the object in float64 (a
    float32 case's params cast exactly), of the object in float32 (a
    float64 case's rounded) and of the float64 one with every param and
    input off by up to 4 units of float32's roundoff, at random
    (ROUNDING_DRAWS draws from rng; 4: a float32 step rounds the sums of
    D + H products, the gates and the state, and Keras's float64 layers
    do all of it in float32).  The draws: one float32 run can be luckier
    than another float32 implementation by 20 times (four of 40,000
    cases failed on the float32 run alone, seed 407853 with Keras 8.8e-6
    off and rnnfast's float32 3.9e-7, draws of one unit 1e-5)."""
    def cast(a, dtype):
        return a.astype(dtype) if a.dtype.kind == "f" else a       # not token ids

    def cast_all(dtype):
        return (tuple(cast(a, dtype) for a in inputs) if isinstance(inputs, tuple)
                else cast(inputs, dtype))
    exact_obj = obj if case["dtype"] == np.float64 else twin(case, obj, np.float64)
    inputs64 = cast_all(np.float64)
    exact = ours(case, exact_obj, inputs64)
    runs = [want if case["dtype"] == np.float32 else
            ours(case, twin(case, obj, np.float32), cast_all(np.float32))]
    if ROUNDING_DRAWS:
        off = twin(case, exact_obj, np.float64)
        params = [p.copy() for p in off.params]
        u = 4 * 2.0 ** -24
        for _ in range(ROUNDING_DRAWS):
            for p, q in zip(off.params, params):
                p[...] = q * (1 + rng.uniform(-u, u, q.shape))
            shaken = tuple(a * (1 + rng.uniform(-u, u, a.shape)) if a.dtype.kind == "f" else a
                           for a in (inputs64 if isinstance(inputs64, tuple) else (inputs64,)))
            runs.append(ours(case, off, shaken if isinstance(inputs64, tuple) else shaken[0]))
    return {k: max(float(np.abs(run[k].astype(np.float64) - exact[k]).max(initial=0.0))
                   for run in runs) for k in want}


def close_to(name, got, want, tol, rounding, failures):
    """fuzz_networks.close, its atol at least ROUNDING_FACTOR * rounding
    (of float32; scaled down to float64's for torch's float64)."""
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    tol = dict(tol, atol=max(tol["atol"], ROUNDING_FACTOR * rounding / scale))
    n = len(failures)
    close(name, got, want, tol, failures)
    if len(failures) > n:
        failures[-1] += f" (float32's rounding moves rnnfast's by {rounding:.3g})"


def same_outputs(what, got, want, failures):
    """got and want ({name: array}) bitwise the same."""
    for name, w in want.items():
        g = got.get(name)
        if g is None or g.shape != w.shape or g.dtype != w.dtype or not np.array_equal(g, w):
            failures.append(f"{what}: {name} differ from the original's")


def same_params(what, back, params, failures):
    if len(back.params) != len(params):
        failures.append(f"{what}: {len(back.params)} params against {len(params)}")
        return
    for i, (a, b) in enumerate(zip(back.params, params)):
        if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b):
            failures.append(f"{what}: params[{i}] differ")


def _config(obj):
    config = get_config(obj)
    config.pop("random_state", None)    # a model's seed, which no converter carries
    return config


def keras_failures(case, obj, inputs, want, rounding, failures):
    """to_keras: the Keras object's outputs against rnnfast's (want);
    from_keras of it: the object again."""
    tol = TOL_KERAS[case["dtype"]]
    k = interop.to_keras(obj)
    name = KERAS_NAMES[case["cell"]]
    expected = {"cell": name + "Cell", "time": name}.get(case["target"], "Sequential")
    if type(k).__name__ != expected:
        failures.append(f"to_keras: a {type(k).__name__}, expected a {expected}")
        return
    if case["target"] == "cell":
        x, h, c = inputs
        h1, states = k(x, [h, c] if case["cell"] == "lstm" else [h])
        got = {"h_next": h1}
        if case["cell"] == "lstm":
            got["c_next"] = states[1]
    else:
        got = {next(iter(want)): k(inputs)}
    for key, w in want.items():
        close_to(f"Keras {key}", keras.ops.convert_to_numpy(got[key]), w, tol, rounding[key],
                 failures)
    back = interop.from_keras(k)
    if type(back) is not type(obj) or _config(back) != _config(obj):
        failures.append(f"from_keras: {type(back).__name__} {_config(back)} against "
                        f"{type(obj).__name__} {_config(obj)}")
        return
    same_params("from_keras", back, obj.params, failures)
    same_outputs("from_keras", ours(case, back, inputs), want, failures)


def torch_failures(case, obj, inputs, want, rounding, failures):
    """to_torch: the module's outputs against rnnfast's (want), its
    state_dict to_torch_state_dict's; from_torch of it: the weights and
    outputs again.  A GRU with reset_after=False must be refused."""
    if case["cell"] == "gru" and not case["opts"]["reset_after"]:
        for name in ("to_torch", "to_torch_state_dict"):
            try:
                got = getattr(interop, name)(obj)
            except ValueError:
                continue
            failures.append(f"{name}: a GRU with reset_after=False gave a "
                            f"{type(got).__name__}, expected ValueError")
        return
    tol = TOL_TORCH[case["dtype"]]
    module = interop.to_torch(obj).eval()
    state = interop.to_torch_state_dict(obj)
    theirs = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    if sorted(theirs) != sorted(state) or not all(
            theirs[k].dtype == state[k].dtype and np.array_equal(theirs[k], state[k])
            for k in state):
        failures.append(f"to_torch: state_dict {sorted(theirs)} is not to_torch_state_dict's "
                        f"{sorted(state)}")
    with torch.no_grad():
        if case["target"] == "cell":
            x, h, c = (torch.from_numpy(a) for a in inputs)
            if case["cell"] == "lstm":
                h1, c1 = module(x, (h, c))
                got = {"h_next": h1, "c_next": c1}
            else:
                got = {"h_next": module(x, h)}
        else:
            out, final = module(torch.from_numpy(inputs))
            got = {"hs": out}
            if case["target"] == "network":
                got["h_n"], got["c_n"] = final if case["cell"] == "lstm" else (final, None)
    for key, w in want.items():
        r = rounding[key] * (F64_OVER_F32 if case["dtype"] == np.float64 else 1.0)
        close_to(f"torch {key}", got[key].numpy(), w, tol, r, failures)
    back = interop.from_torch(module)
    if case["target"] == "time":
        # a one-layer torch.nn.RNN / LSTM / GRU comes back as a network
        expected = NETWORKS[case["cell"]]
        config = dict(input_size=case["D"], hidden_size=case["H"], num_layers=1,
                      bidirectional=False, dropout=0.0, stateful=False,
                      dtype=case["dtype"].name, **case["opts"])
    else:
        expected, config = type(obj), _config(obj)
    if type(back) is not expected or _config(back) != config:
        failures.append(f"from_torch: {type(back).__name__} {_config(back)} against "
                        f"{expected.__name__} {config}")
        return
    same_params("from_torch", back, obj.params, failures)
    again = ours(dict(case, target="network") if case["target"] == "time" else case,
                 back, inputs, final=case["target"] == "network")
    same_outputs("from_torch", again, {k: want[k] for k in again}, failures)


def run_case(case, seed):
    """A list of what differs (empty: the case passed)."""
    rng = np.random.default_rng(seed)
    obj = build(case, rng)
    inputs = draw_inputs(case, rng)
    want = ours(case, obj, inputs)
    rounding = rounding_of(case, obj, inputs, want, rng)
    failures = []
    with warnings.catch_warnings():
        # Keras's own variables under NumPy 2 (nothing of rnnfast's)
        warnings.filterwarnings("ignore", "__array__ implementation doesn't accept a copy",
                                DeprecationWarning)
        keras_want = want if case["target"] != "network" else {"hs": want["hs"]}
        keras_failures(case, obj, inputs, keras_want, rounding, failures)
        if case["target"] != "model":       # no PyTorch converter for a model
            torch_failures(case, obj, inputs, want, rounding, failures)
    return failures


def describe(case):
    what = case["target"]
    if what == "model":
        what = (f"{case['head']}(n_out={case['n_out']}, "
                + ("features" if case["vocab"] is None else f"vocab={case['vocab']}")
                + (", mask_zero=True" if case["mask_zero"] else "")
                + (f", mask_value={case['mask_value']}" if case["mask_value"] is not None
                   else "") + ")")
    return (f"{what} {case['cell']}{case['opts'] or ''} {case['dtype']} N={case['N']} "
            f"T={case['T']} D={case['D']} H={case['H']} layers={case['layers']} "
            f"bidir={case['bidirectional']} bias={case['bias']} dropout={case['dropout']} "
            f"weights={case['weights']}")


def main(argv=None):
    return fuzz_main(argv, __doc__.split("\n\n")[0], lambda rng: draw_case(rng),
                     lambda case, seed: run_case(case, seed), lambda case: describe(case),
                     stream=5, cases=100)


if __name__ == "__main__":
    sys.exit(main())
