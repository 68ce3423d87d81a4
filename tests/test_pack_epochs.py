"""Pack epochs (rnnfast._core.packs_kept; src/_blas.pxd, packed_in_epoch):
inside a block, an inference call whose kernel kept its weights' packing
from an earlier call of the same block uses it as it is.  Each later call
must then pack nothing and give the bytes a full pack gives; a block must
never trust a packing made before it (weights may have changed between
blocks), nor a buffer handed out since to anything else; training calls
pack as always; and the models' generate loops, which run in a block, give
what they give without one."""
import contextlib
import copy
import pickle

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import rnnfast
import rnnfast.models.lm as lm_module
import rnnfast.models.seq2seq as seq2seq_module
from rnnfast import _core
from rnnfast.layers import TimeGRU, TimeLSTM, TimeRNN

from _packs import eval_net_and_inputs, full_pack_output

N, T, H = 20, 20, 200

# name: (class, keyword arguments, D).  D = 16 <= H/2 puts an LSTM's input
# into each step's product (src/_seq.pxd, NarrowInputs: [Wx; Wh] packed
# into one buffer keyed by Wx, and Wx alone for the first step).
NETS = {"rnn": (rnnfast.RNN, {}, 200),
        "lstm": (rnnfast.LSTM, {}, 200),
        "lstm-narrow": (rnnfast.LSTM, {}, 16),
        "gru": (rnnfast.GRU, {}, 200),
        "gru-reset-before": (rnnfast.GRU, {"reset_after": False}, 200)}


def _net_and_inputs(name, dtype, steps=T):
    cls, kw, D = NETS[name]
    return eval_net_and_inputs(cls, kw, D, H, N, steps, dtype)


def _until_trusted(call, limit=40):
    """Calls `call` (inside a block) until one call lets a packing stand.
    The kernels' buffer cache may be full of earlier tests' buffers, and
    keeps a call's packings only once those have been idle for RF_BUF_IDLE
    hand-outs (src/_gemm.h): a few calls."""
    for _ in range(limit):
        before = _core.packs_trusted()
        call()
        if _core.packs_trusted() > before:
            return
    pytest.fail(f"{limit} calls in a block trusted no packing")


def _change_in_place(net):
    """Weights changed in place (same arrays, same addresses): each layer's
    Wx and Wh in their first row and in the middle of a panel."""
    for k, p in enumerate(net.params):
        if p.ndim == 2:
            p[0, 0] += 0.25
            p[p.shape[0] // 2, 37] -= 0.5 + 0.125 * k


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("steps", [T, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(NETS))
def test_later_calls_in_a_block_pack_nothing_and_give_the_same_bytes(name, dtype, steps,
                                                                      threads):
    net, xs = _net_and_inputs(name, dtype, steps)
    with threadpool_limits(threads):
        expected = full_pack_output(net, xs)
        before = _core.packs_trusted()
        net.forward(xs)
        assert _core.packs_trusted() == before      # no block: nothing trusted
        with _core.packs_kept(net):
            outs = [net.forward(xs)[0].copy()]
            _until_trusted(lambda: outs.append(net.forward(xs)[0].copy()))
            counts = [_core.packs_trusted()]
            for _ in range(3):
                outs.append(net.forward(xs)[0].copy())
                counts.append(_core.packs_trusted())
    for out in outs:
        np.testing.assert_array_equal(out, expected)
    per_call = np.diff(counts)
    # Two layers, each with at least Wh packed (N = 20 rows a product).
    assert per_call[0] >= 2, counts
    assert np.all(per_call == per_call[0]), counts


@pytest.mark.parametrize("name", list(NETS))
def test_a_change_between_blocks_is_seen(name):
    net, xs = _net_and_inputs(name, np.float32)
    with _core.packs_kept(net):
        _until_trusted(lambda: net.forward(xs))     # packings stamped with this block
    _change_in_place(net)
    expected = full_pack_output(net, xs)
    with _core.packs_kept(net):
        got = [net.forward(xs)[0].copy(), net.forward(xs)[0].copy()]
    for out in got:
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("name", list(NETS))
def test_a_buffer_handed_out_unkeyed_loses_its_epoch(name):
    # With use_repack(False) the kernels hand buffers out by size alone
    # (src/_gemm.h, rf_buf_alloc_keyed): the buffer of a packing stamped
    # with the block's epoch may come back for the same matrix unmatched,
    # and must then be packed again, not trusted.
    net, xs = _net_and_inputs(name, np.float32)
    with _core.packs_kept(net):
        _until_trusted(lambda: net.forward(xs))
        _change_in_place(net)
        before = _core.packs_trusted()
        got = full_pack_output(net, xs)
        assert _core.packs_trusted() == before
    changed, _ = _net_and_inputs(name, np.float32)
    _change_in_place(changed)
    np.testing.assert_array_equal(got, full_pack_output(changed, xs))


def test_a_narrow_packing_is_trusted_only_for_the_wh_it_was_made_from():
    # The narrow path packs [Wx; Wh] into one buffer keyed by Wx alone: two
    # networks sharing one Wx array, each with its own Wh, in one block.
    first, xs = _net_and_inputs("lstm-narrow", np.float32)
    second = rnnfast.LSTM(16, H, num_layers=2, random_state=7).eval()
    second.params[0] = first.params[0]
    expected = [full_pack_output(net, xs) for net in (first, second)]
    with _core.packs_kept(first, second):
        _until_trusted(lambda: second.forward(xs))
        for _ in range(2):
            for net, out in ((second, expected[1]), (second, expected[1]),
                             (first, expected[0]), (first, expected[0])):
                np.testing.assert_array_equal(net.forward(xs)[0], out)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_training_calls_in_a_block_pack_as_always(name):
    net, xs = _net_and_inputs(name, np.float32)
    net.train()
    dhs = np.ones((N, T, H), np.float32)
    before = _core.packs_trusted()
    with _core.packs_kept(net):
        net.forward(xs)
        net.backward(dhs)
        _change_in_place(net)
        out = net.forward(xs)[0].copy()
    assert _core.packs_trusted() == before
    net.eval()
    np.testing.assert_array_equal(out, full_pack_output(net, xs))


def test_blocks_nest_each_with_its_epoch_and_restore_the_one_before():
    net, _ = _net_and_inputs("rnn", np.float32)
    layer = TimeRNN(np.zeros((3, 4), np.float32), np.zeros((4, 4), np.float32),
                    np.zeros(4, np.float32))
    assert net._pack_epoch == 0 and layer._pack_epoch == 0
    with _core.packs_kept(net, layer) as outer:
        assert outer > 1 and net._pack_epoch == outer and layer._pack_epoch == outer
        with _core.packs_kept(net) as inner:
            assert inner not in (0, 1, outer)
            assert net._pack_epoch == inner and layer._pack_epoch == outer
        assert net._pack_epoch == outer
        with pytest.raises(KeyError):
            with _core.packs_kept(layer):
                raise KeyError("inside")
        assert layer._pack_epoch == outer
    assert "_pack_epoch" not in vars(net) and "_pack_epoch" not in vars(layer)
    assert net._pack_epoch == 0 and layer._pack_epoch == 0


@pytest.mark.parametrize("cls", [TimeRNN, TimeLSTM, TimeGRU])
def test_a_stateful_time_layer_in_a_block_steps_as_without_one(cls):
    rng = np.random.default_rng(2)
    D, H = 64, 256          # Wh large enough to be packed (not read as it lies)
    G = {TimeRNN: 1, TimeLSTM: 4, TimeGRU: 3}[cls] * H
    weights = [rng.standard_normal((D, G)).astype(np.float32) * 0.1,
               rng.standard_normal((H, G)).astype(np.float32) * 0.1,
               rng.standard_normal(G).astype(np.float32) * 0.1]
    xs = rng.standard_normal((32, 6, D)).astype(np.float32)

    def steps(block):
        layer = cls(*[w.copy() for w in weights], stateful=True).eval()
        before = _core.packs_trusted()
        with block(layer):
            outs = [layer.forward(xs[:, t:t + 1]) for t in range(xs.shape[1])]
        return np.concatenate(outs, axis=1), _core.packs_trusted() - before

    steps(_core.packs_kept)         # the cache may need a first pass (_until_trusted)
    kept, trusted = steps(_core.packs_kept)
    plain, none = steps(lambda layer: contextlib.nullcontext())
    np.testing.assert_array_equal(kept, plain)
    assert trusted > 0 and none == 0


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("model", ["Seq2seq", "PeekySeq2seq", "AttentionSeq2seq"])
def test_seq2seq_generate_runs_in_a_block_and_decodes_as_without_one(model, threads,
                                                                      monkeypatch):
    m = getattr(seq2seq_module, model)(13, 16, 64, random_state=0)
    xs = np.random.default_rng(3).integers(0, 13, (40, 7))
    with threadpool_limits(threads):
        m.generate(xs, 6, 12)       # the cache may need a first pass (_until_trusted)
        before = _core.packs_trusted()
        kept = m.generate(xs, 6, 12)
        assert _core.packs_trusted() > before
        monkeypatch.setattr(seq2seq_module, "packs_kept",
                            lambda *layers: contextlib.nullcontext())
        plain = m.generate(xs, 6, 12)
    np.testing.assert_array_equal(kept, plain)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_language_model_generate_runs_in_a_block_and_samples_as_without_one(cell,
                                                                           monkeypatch):
    lm = lm_module.RnnLM(60, 32, 128, num_layers=2, cell=cell, random_state=0)
    ids = np.random.default_rng(4).integers(0, 60, (24, 5))
    lm.generate(ids, 10, random_state=5)    # as in the test above
    before = _core.packs_trusted()
    kept = lm.generate(ids, 10, random_state=5)
    assert _core.packs_trusted() > before
    monkeypatch.setattr(lm_module, "packs_kept", lambda *layers: contextlib.nullcontext())
    plain = lm.generate(ids, 10, random_state=5)
    np.testing.assert_array_equal(kept, plain)


def test_slots_full_of_idle_buffers_still_keep_every_layers_packing():
    # Other networks' packings fill the LSTM module's 16 kept buffers; once
    # they are idle (RF_BUF_IDLE hand-outs, src/_gemm.h), each of this
    # network's four packings (two layers, Wx and Wh) must get a buffer of
    # its own, not take another layer's at every call.
    for i in range(10):
        other = rnnfast.LSTM(24 + 8 * i, 24 + 8 * i, num_layers=2, random_state=i).eval()
        other.forward(np.zeros((20, 20, 24 + 8 * i), np.float32))
    net, xs = _net_and_inputs("lstm", np.float64)
    with _core.packs_kept(net):
        _until_trusted(lambda: net.forward(xs))
        for _ in range(40):             # past RF_BUF_IDLE hand-outs
            net.forward(xs)
        for _ in range(3):
            before = _core.packs_trusted()
            net.forward(xs)
            assert _core.packs_trusted() - before == 4


@pytest.mark.parametrize("copy_of", [copy.deepcopy, lambda obj: pickle.loads(pickle.dumps(obj))])
def test_a_copy_made_inside_a_block_is_not_in_it(copy_of):
    # Its weights are other arrays, which a training step may change in
    # place: an epoch carried into the copy would trust their first packing.
    net, xs = _net_and_inputs("lstm", np.float32)
    layer = TimeLSTM(*[p.copy() for p in net.params[:3]])
    layer.eval()
    with _core.packs_kept(net, layer):
        copies = [copy_of(net), copy_of(layer)]
    for obj in copies:
        assert "_pack_epoch" not in vars(obj) and obj._pack_epoch == 0
    copied_net = copies[0]
    copied_net.forward(xs)
    copied_net.forward(xs)
    _change_in_place(copied_net)
    np.testing.assert_array_equal(copied_net.forward(xs)[0],
                                  full_pack_output(copied_net, xs))


def test_blocks_ended_out_of_order_leave_no_epoch_behind():
    # Two threads' blocks on one network, the first ending first: when the
    # second ends, the first's epoch is over and must not come back.
    net, _ = _net_and_inputs("rnn", np.float32)
    first, second = _core.packs_kept(net), _core.packs_kept(net)
    first.__enter__()
    live = second.__enter__()
    assert net._pack_epoch == live
    first.__exit__(None, None, None)
    assert net._pack_epoch == live          # the live block's
    second.__exit__(None, None, None)
    assert "_pack_epoch" not in vars(net) and net._pack_epoch == 0
    # and in the other order, the first block's epoch comes back
    first, second = _core.packs_kept(net), _core.packs_kept(net)
    outer = first.__enter__()
    second.__enter__()
    second.__exit__(None, None, None)
    assert net._pack_epoch == outer
    first.__exit__(None, None, None)
    assert "_pack_epoch" not in vars(net)
