"""Central finite differences for the gradient checks (float64)."""
import numpy as np


def central_difference(loss, flat, i, eps=1e-6):
    """d loss() / d flat[i], perturbing the (flattened view of an) array in place."""
    old = flat[i]
    flat[i] = old + eps
    up = loss()
    flat[i] = old - eps
    down = loss()
    flat[i] = old
    return (up - down) / (2 * eps)


def numerical_grad(loss, array, eps=1e-6):
    """d loss() / d array, perturbing `array` in place element by element."""
    grad = np.zeros_like(array)
    flat, gflat = array.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        gflat[i] = central_difference(loss, flat, i, eps)
    return grad


def assert_grad_close(analytic, numeric, name, rtol=1e-5, atol=1e-7):
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol,
                               err_msg=f"gradient of {name}")
