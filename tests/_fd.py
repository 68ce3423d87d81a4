"""Sampled central finite differences for the training-layer and model
gradient checks (float64).  Checking a random subset of each array's
entries keeps the model checks fast while any wiring error still shows."""
import numpy as np

from tests._gradcheck import central_difference


def check_grad(loss, array, analytic, name, n=12, eps=1e-6, rtol=1e-5, atol=1e-8,
               seed=0):
    """Compare analytic d loss()/d array with central differences at up to
    `n` random entries, perturbing `array` in place."""
    flat, g = array.reshape(-1), np.asarray(analytic).reshape(-1)
    assert flat.base is array or flat.base is array.base or np.shares_memory(flat, array)
    idx = np.random.default_rng(seed).choice(flat.size, min(n, flat.size), replace=False)
    num = np.array([central_difference(loss, flat, i, eps) for i in idx])
    np.testing.assert_allclose(g[idx], num, rtol=rtol, atol=atol,
                               err_msg=f"gradient of {name}")
