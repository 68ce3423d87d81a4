"""What the tests of kept weight packings share (tests/test_repack.py,
tests/test_pack_epochs.py): 2-layer networks in evaluation mode with
inputs, and the output a full pack of every weight gives."""
import numpy as np

from rnnfast import _core


def eval_net_and_inputs(cls, kw, D, H, N, T, dtype):
    """cls(D, H, 2 layers, **kw) in evaluation mode, float `dtype`, and xs
    (N, T, D) drawn from a fixed seed."""
    net = cls(D, H, num_layers=2, dtype=dtype, random_state=0, **kw)
    net.eval()
    xs = np.random.default_rng(1).standard_normal((N, T, D)).astype(dtype)
    return net, xs


def full_pack_output(net, xs):
    """net's output with every weight packed in full into any buffer
    (_core.use_repack(False): no buffer picked by what it held)."""
    _core.use_repack(False)
    try:
        return net.forward(xs)[0].copy()
    finally:
        _core.use_repack(True)
