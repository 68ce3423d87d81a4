"""rnnfast: fast CPU recurrent neural networks (RNN, LSTM, GRU).

Layout, gate order and shapes are written down once, in rnnfast._layout.
"""
from .layers import GRUCell, LSTMCell, RNNCell, TimeGRU, TimeLSTM, TimeRNN
from .networks import GRU, LSTM, RNN
from . import interop
from ._info import show_config

__version__ = "0.1.0"

__all__ = ["RNNCell", "LSTMCell", "GRUCell", "TimeRNN", "TimeLSTM", "TimeGRU",
           "RNN", "LSTM", "GRU", "interop", "show_config", "__version__"]

# training: layers beyond the recurrent ones, losses, optimizers, models,
# saving and loading
from . import io, layers, losses, models, optim
__all__ += ["io", "layers", "losses", "models", "optim"]
