"""An inference call on 2 threads packs its weights into the buffer that
packed them last, comparing each 64-byte row of the packing with what the
buffer holds and storing only from the first row that differs
(src/_gemm.h, rf_repack_b_f; src/_seq.pxd, reusing_packs).  A second call
with the same weights must find its packings there, and a weight changed
in place between calls, anywhere in a matrix (its first row, the middle of
a panel, the ragged last panel of G = 200 or 600), must reach the output:
every call gives the bytes a full pack gives (_core.use_repack(False))."""
import os

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import _core

from _packs import eval_net_and_inputs, full_pack_output

N, T, H = 20, 20, 200

# name: (class, keyword arguments, D).  D = 16 <= H/2 puts an LSTM's input
# into each step's product (src/_seq.pxd, NarrowInputs: [Wx; Wh] packed as
# two repacks into one buffer, and Wx alone for the first step).
NETS = {"rnn": (rnnfast.RNN, {}, 200),
        "rnn-relu": (rnnfast.RNN, {"nonlinearity": "relu"}, 200),
        "lstm": (rnnfast.LSTM, {}, 200),
        "lstm-narrow": (rnnfast.LSTM, {}, 16),
        "gru": (rnnfast.GRU, {}, 200),
        "gru-reset-before": (rnnfast.GRU, {"reset_after": False}, 200)}


@pytest.fixture
def two_cpus():
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs")


def _net_and_inputs(name, dtype):
    cls, kw, D = NETS[name]
    return eval_net_and_inputs(cls, kw, D, H, N, T, dtype)


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_repacks_find_the_same_weights_and_see_each_change(name, dtype, two_cpus):
    net, xs = _net_and_inputs(name, dtype)
    with threadpool_limits(2):
        first = net.forward(xs)[0].copy()
        # Buffers of the tests before may fill the kernels' slots until they
        # have been idle for RF_BUF_IDLE hand-outs (src/_gemm.h): a few calls.
        for _ in range(10):
            kept = _core.repacks_kept()
            again = net.forward(xs)[0].copy()
            if _core.repacks_kept() > kept:
                break
        else:
            pytest.fail("ten calls packed everything again")
        np.testing.assert_array_equal(again, first)
        np.testing.assert_array_equal(again, full_pack_output(net, xs))
        for i, w in enumerate(net.params):
            if w.ndim != 2:
                continue
            rows, cols = w.shape
            for at in [(0, 0), (rows // 2, cols // 2), (rows - 1, cols - 1)]:
                w[at] += 0.5
                changed = net.forward(xs)[0].copy()
                assert not np.array_equal(changed, again), f"params[{i}]{at}: no effect"
                np.testing.assert_array_equal(changed, full_pack_output(net, xs),
                                              err_msg=f"params[{i}]{at}")
                again = changed


@pytest.mark.parametrize("name", ["rnn", "lstm", "lstm-narrow", "gru"])
def test_one_thread_and_training_pack_in_full(name, two_cpus):
    """The rule (reusing_packs): at 1 thread comparing the rows cost more
    than storing them, and a training call's weights have changed."""
    net, xs = _net_and_inputs(name, np.float32)
    with threadpool_limits(1):
        net.forward(xs)
        kept = _core.repacks_kept()
        net.forward(xs)
        assert _core.repacks_kept() == kept
    net.train()
    with threadpool_limits(2):
        for _ in range(2):
            ys, _ = net.forward(xs)
            net.backward(np.ones_like(ys))
        assert _core.repacks_kept() == kept


def test_a_new_network_at_the_same_address_is_packed_anew(two_cpus):
    """A buffer picked by the address of the matrix it held is compared, not
    trusted: weights of another network in the same memory reach the
    output."""
    net, xs = _net_and_inputs("rnn", np.float32)
    with threadpool_limits(2):
        net.forward(xs)
        for w in net.params:
            w[...] = np.random.default_rng(7).uniform(-0.1, 0.1, w.shape)
        ys = net.forward(xs)[0].copy()
    np.testing.assert_array_equal(ys, full_pack_output(net, xs))


def test_calls_from_python_threads_share_the_kept_packings_safely(two_cpus):
    """Inference calls of one network from two Python threads and of another
    from a third, all at once (the kernels release the GIL; the buffer
    cache's slots are taken under a lock): every output bitwise the one of
    a call alone."""
    import threading
    nets = [_net_and_inputs(name, np.float32) for name in ("lstm", "gru")]
    jobs = [0, 1, 0]                    # the network each Python thread calls
    with threadpool_limits(2):
        alone = [net.forward(xs)[0].copy() for net, xs in nets]
        wrong = []

        def run(k):
            net, xs = nets[jobs[k]]
            for _ in range(30):
                if not np.array_equal(net.forward(xs)[0], alone[jobs[k]]):
                    wrong.append(k)
        threads = [threading.Thread(target=run, args=(k,)) for k in range(len(jobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not wrong, wrong
