"""PyTorch's side of the parity tests and of the models' fuzzer: running a
torch.nn.RNN / LSTM / GRU on a batch-first (optionally ragged) batch,
rnnfast's parameter gradients under PyTorch's names and layout, and the
torch.optim twin of each rnnfast optimizer."""
import os

import numpy as np

from rnnfast.interop import to_torch_state_dict
from rnnfast.optim import SGD, AdaGrad, Adam, AdamW, Momentum, Nesterov, RMSprop

TORCH_TWINS = {            # rnnfast optimizer -> the torch.optim one with the same rule
    "sgd": (lambda: SGD(lr=0.1), lambda t, p: t.optim.SGD(p, lr=0.1)),
    "momentum": (lambda: Momentum(lr=0.1, momentum=0.9),
                 lambda t, p: t.optim.SGD(p, lr=0.1, momentum=0.9)),
    "nesterov": (lambda: Nesterov(lr=0.1, momentum=0.9),
                 lambda t, p: t.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)),
    "adagrad": (lambda: AdaGrad(lr=0.1, eps=1e-10),
                lambda t, p: t.optim.Adagrad(p, lr=0.1, eps=1e-10)),
    "rmsprop": (lambda: RMSprop(lr=0.01, decay_rate=0.99, eps=1e-8),
                lambda t, p: t.optim.RMSprop(p, lr=0.01, alpha=0.99, eps=1e-8)),
    "adam": (lambda: Adam(lr=0.1, eps=1e-8, weight_decay=0.01),
             lambda t, p: t.optim.Adam(p, lr=0.1, eps=1e-8, weight_decay=0.01)),
    "adamw": (lambda: AdamW(lr=0.1, eps=1e-8, weight_decay=0.05),
              lambda t, p: t.optim.AdamW(p, lr=0.1, eps=1e-8, weight_decay=0.05)),
}


def import_torch_or_skip():
    """torch for a test module that needs it throughout: the module skips
    when torch is missing, except in CI (CI=true), where the ImportError
    fails it (as the conftest's torch fixture does for single tests)."""
    import pytest
    try:
        import torch
    except ImportError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            raise
        pytest.skip("torch not installed (pip install torch==2.13.0)",
                    allow_module_level=True)
    return torch


def grads_by_torch_name(net):
    """net's gradients mapped to PyTorch's names and layout (the mapping of
    the weights, which is linear: transposes, gate order, GRU's flipped z)."""
    class _GradView:
        cell, num_layers, num_directions = net.cell, net.num_layers, net.num_directions

        @staticmethod
        def layer_params(layer, d):
            per = 3 if net.bias else 2
            i = per * (layer * net.num_directions + d)
            return net.grads[i:i + per]
    return to_torch_state_dict(_GradView)


def torch_run(module, x, state, lengths):
    """module on a batch-first x, packed when lengths are given (outputs
    past a sequence's length are zeros, as rnnfast's)."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    if lengths is None:
        return module(x, state)
    packed = pack_padded_sequence(x, torch_tensor(lengths), batch_first=True,
                                  enforce_sorted=False)
    out, fin = module(packed, state)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0], fin


def torch_tensor(values):
    import torch
    return torch.tensor(np.asarray(values))
