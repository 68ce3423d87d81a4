import os

import numpy as np
import pytest


def pytest_collection_modifyitems(config, items):
    pass


@pytest.fixture(scope="session")
def torch():
    """PyTorch, the numerical oracle.  Locally the parity tests skip when it
    is missing; in CI (CI=true) a missing torch is a failure, not a skip."""
    try:
        import torch as _torch
    except ImportError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("torch is required in CI: .ci/run installs torch==2.13.0")
        pytest.skip("torch not installed (pip install torch==2.13.0)")
    _torch.set_num_threads(1)
    return _torch


@pytest.fixture(scope="session")
def keras(torch):
    """Keras 3, the oracle of rnnfast.interop's Keras converters, on
    PyTorch's backend (unless KERAS_BACKEND says otherwise).  As torch:
    skipped locally when missing, a failure in CI (the test extra
    installs it)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras as _keras
    except ImportError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("keras is required in CI: pip install -e '.[test]' installs it")
        pytest.skip("keras not installed (pip install 'keras>=3')")
    return _keras


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def split_anything():
    """Every step loop split over the threads BLAS has, however small
    (the split limits put back after the test)."""
    from rnnfast import _gru, _lstm, _rnn
    saved = [(mod, mod.split_limits()) for mod in (_rnn, _lstm, _gru)]
    for mod, _ in saved:
        mod.split_limits(step_flops=1)
    yield
    for mod, limits in saved:
        mod.split_limits(*limits)


@pytest.fixture
def kernels_in_use():
    """use(rnn, lstm, gru): the dispatcher calls these modules' kernel defs
    (an older build's, as benchmarks/ab_inprocess.py does) until rnnfast's
    own are put back, at the latest when the test ends."""
    from rnnfast import _dispatch, _gru, _lstm, _rnn
    yield _dispatch.use_kernels
    _dispatch.use_kernels(_rnn, _lstm, _gru)


@pytest.fixture
def general_path_calls(monkeypatch):
    """How many network forwards took the checked Python path (its
    network_forward), not the compiled common call."""
    from rnnfast import networks
    calls = []
    real = networks.network_forward

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(networks, "network_forward", counted)
    return calls
